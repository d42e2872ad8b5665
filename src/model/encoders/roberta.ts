// The Hugging Face RoBERTa (`RobertaModel`, `RobertaForQuestionAnswering`,
// `RobertaForSequenceClassification`; `RobertaForMaskedLM`'s lm_head is skipped): config.json +
// model.safetensors, keys with or without the `roberta.` prefix, on the backend's kernels:
//   position_ids = cumsum(ids != pad) * (ids != pad) + pad (from the ids, not the attention mask:
//   real tokens get pad+1, pad+2, ...; pads keep pad) -> LayerNorm(word[ids] + token_type[tt] +
//   position[pos]) (= hidden[0]) -> N post-LN layers (stack.ts) with the padding mask on the keys
//   (padded positions are still computed as queries, as in HF) -> last_hidden_state = hidden[N]
//   -> the checkpoint's heads: qa_outputs (start / end logits), classifier.dense + tanh +
//   classifier.out_proj on <s>, pooler.
// Checked against ../shared/fixtures/roberta-tiny-prompts (made by refencoders.py).

import * as path from 'node:path';
import type { Backend } from '../../backend/backend.js';
import { atFile, check, LlamaAdapterError } from '../../core/errors.js';
import { readSafetensors } from '../../core/safetensors.js';
import type { Matrix } from '../../core/weights.js';
import type { PromptHost, PromptProjections, SourceGrads } from '../method.js';
import { type RobertaConfig, readRobertaConfig, robertaMaxTokens } from './config.js';
import { type EncoderForwardOptions, type EncoderOutput, EncoderStack } from './stack.js';
import { HfTensors, type LinearHead, readHead, readLayer } from './tensors.js';

export interface RobertaInput {
  ids: Int32Array; // (B, T) token ids
  B: number;
  T: number;
  mask?: Int32Array | null; // (B, T) 1 = real token, 0 = padding (default: all 1)
  tokenTypes?: Int32Array | null; // (B, T) token type ids (default 0)
}

export class RobertaModel implements PromptHost {
  readonly kind = 'roberta';
  readonly fingerprint: string;
  readonly qaOutputs: LinearHead | null; // RobertaForQuestionAnswering (2, C)
  readonly classifier: { dense: LinearHead; outProj: LinearHead } | null; // RobertaForSequenceClassification
  readonly pooler: LinearHead | null; // RobertaModel's pooler.dense (C, C)
  private readonly word: Matrix; // (V, C)
  private readonly position: Matrix; // (maxPositions, C)
  private readonly tokenType: Matrix; // (typeVocab, C)
  private readonly embW: Float32Array; // (C) embeddings.LayerNorm
  private readonly embB: Float32Array;
  private readonly stack: EncoderStack;
  private lastM = 0;

  constructor(
    readonly path: string,
    readonly config: RobertaConfig,
    t: HfTensors,
    readonly backend: Backend,
  ) {
    const c = config,
      C = c.hidden,
      I = c.intermediate;
    const E = 'embeddings.';
    this.word = t.mat(`${E}word_embeddings.weight`, c.vocabSize, C);
    this.position = t.mat(`${E}position_embeddings.weight`, c.maxPositions, C);
    this.tokenType = t.mat(`${E}token_type_embeddings.weight`, c.typeVocab, C);
    this.embW = t.tensor(`${E}LayerNorm.weight`, [C]);
    this.embB = t.tensor(`${E}LayerNorm.bias`, [C]);
    const layers = Array.from({ length: c.layers }, (_, i) => {
      const L = `encoder.layer.${i}.`,
        A = `${L}attention.`;
      return readLayer(
        t,
        {
          wq: `${A}self.query.weight`,
          bq: `${A}self.query.bias`,
          wk: `${A}self.key.weight`,
          bk: `${A}self.key.bias`,
          wv: `${A}self.value.weight`,
          bv: `${A}self.value.bias`,
          wo: `${A}output.dense.weight`,
          bo: `${A}output.dense.bias`,
          ln1w: `${A}output.LayerNorm.weight`,
          ln1b: `${A}output.LayerNorm.bias`,
          ln2w: `${L}output.LayerNorm.weight`,
          ln2b: `${L}output.LayerNorm.bias`,
          fc1: `${L}intermediate.dense.weight`,
          fc1b: `${L}intermediate.dense.bias`,
          fc2: `${L}output.dense.weight`,
          fc2b: `${L}output.dense.bias`,
        },
        C,
        I,
        true,
      );
    });
    this.qaOutputs = readHead(t, 'qa_outputs', C);
    const dense = t.file.has('classifier.dense.weight') ? readHead(t, 'classifier.dense', C) : null;
    const outProj = dense ? readHead(t, 'classifier.out_proj', C) : null;
    this.classifier = dense && outProj ? { dense, outProj } : null;
    this.pooler = readHead(t, 'pooler.dense', C, true);
    this.fingerprint = t.fingerprint();
    this.stack = new EncoderStack(backend, layers, { C, H: c.heads, I, act: c.act, eps: c.eps, preNorm: false });
  }

  /** The longest input, in tokens (max_position_embeddings - pad - 1). */
  get maxTokens(): number {
    return robertaMaxTokens(this.config);
  }

  get attnShape() {
    return this.stack.attnShape;
  }

  promptProjections(l: number): PromptProjections {
    return this.stack.promptProjections(l);
  }

  /** A readable shape (adapter files record it). */
  get shape(): string {
    const c = this.config;
    return `roberta C=${c.hidden} layers=${c.layers} heads=${c.heads} mlp=${c.intermediate} vocab=${c.vocabSize} positions=${c.maxPositions}`;
  }

  /** HF position ids (B, T): pad + 1, pad + 2, ... over the non-pad ids of each row; pads keep pad. */
  positionIds(ids: Int32Array, B: number, T: number): Int32Array {
    const pad = this.config.padId,
      pos = new Int32Array(B * T);
    for (let b = 0; b < B; b++) {
      let n = 0;
      for (let t = 0; t < T; t++) pos[b * T + t] = ids[b * T + t] === pad ? pad : pad + ++n;
    }
    return pos;
  }

  /** last_hidden_state (B, T, C), with the source's prompts. */
  forward(x: RobertaInput, o: EncoderForwardOptions = {}): EncoderOutput {
    const c = this.config,
      be = this.backend;
    const { ids, B, T } = x;
    const C = c.hidden,
      M = B * T;
    check(B >= 1 && T >= 1 && ids.length === M, `RoBERTa forward: ${ids.length} ids for ${B} rows of ${T}`);
    check(T <= this.maxTokens, `RoBERTa forward: ${T} tokens per row, the model takes at most ${this.maxTokens}`);
    for (let i = 0; i < M; i++)
      if (!(ids[i] >= 0 && ids[i] < c.vocabSize))
        throw new LlamaAdapterError(`RoBERTa forward: token id ${ids[i]} in row ${Math.floor(i / T)} is outside the vocabulary (0..${c.vocabSize - 1})`);
    const mask = x.mask ?? null;
    if (mask) {
      check(mask.length === M, `RoBERTa forward: the attention mask has ${mask.length} entries, expected ${B} x ${T}`);
      for (let b = 0; b < B; b++)
        check(
          mask.subarray(b * T, (b + 1) * T).some((m) => m !== 0),
          `RoBERTa forward: row ${b} has no unmasked token`,
        );
    }
    const tt = x.tokenTypes ?? new Int32Array(M);
    check(tt.length === M && tt.every((v) => v >= 0 && v < c.typeVocab), `RoBERTa forward: token type ids must be ${M} values below ${c.typeVocab}`);
    if (o.source) check(o.source.host === this, 'this prompt method was created for another model instance');
    const h = new Float32Array(M * C),
      tmp = new Float32Array(M * C);
    be.embed(h, this.word, ids, M);
    be.embed(tmp, this.tokenType, tt, M);
    be.add(h, tmp, M * C);
    be.embed(tmp, this.position, this.positionIds(ids, B, T), M);
    be.add(h, tmp, M * C);
    be.layerNorm(h, h, this.embW, this.embB, M, C, c.eps);
    const hidden: Float32Array[] | undefined = o.keep ? [] : undefined;
    this.stack.run(h, B, T, mask, o.source ?? null, o.train === true, hidden);
    if (o.train) this.lastM = M;
    return { last: h, hidden };
  }

  /** Hook gradients of the prompt source from d last_hidden_state (B, T, C), after forward(train: true). */
  backward(dLast: Float32Array): SourceGrads<unknown> {
    const C = this.config.hidden;
    check(dLast.length === this.lastM * C, `RoBERTa backward: d last_hidden_state has ${dLast.length} values, expected ${this.lastM} x ${C}`);
    return this.stack.back(dLast.slice());
  }
}

/** Load an HF RoBERTa directory (config.json + model.safetensors). */
export function loadRoberta(dir: string, backend: Backend): RobertaModel {
  const config = readRobertaConfig(path.join(dir, 'config.json'));
  const file = path.join(dir, 'model.safetensors');
  return atFile(file, () => new RobertaModel(dir, config, new HfTensors(readSafetensors(file), 'roberta.', 'embeddings.word_embeddings.weight'), backend));
}
