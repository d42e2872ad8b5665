// LlamaModel: a loaded frozen base model (config, weights, tokenizer, backend) and its
// operations: forward (logits), loss, lossAndGrads (adapter training). Any number of adapters
// (AdapterMethods, model/method.ts) can run over one LlamaModel; each call or batch row names its
// own. Generation lives a layer above (generate/: the step-wise engine and its thin loops).

import type { Backend } from '../backend/backend.js';
import type { LlamaConfig } from '../core/config.js';
import { check, LlamaAdapterError } from '../core/errors.js';
import type { ModelFormat } from '../formats/model-file.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { isQuantized, type ModelWeights, type WeightDtype } from '../core/weights.js';
import { Activations } from './activations.js';
import { BackwardBuffers, backwardPass } from './backward.js';
import { forwardPass, type ForwardContext } from './forward.js';
import { zerosLike, type AdapterMethod, type MethodHost, type PromptSource } from './method.js';
import { ropeTables, type RopeTables } from './rope.js';

export interface ModelInfo {
  path: string; // what was loaded
  format: ModelFormat; // the model file's format
  sourceDtypes: string[]; // dtypes in the file
  dtype: WeightDtype; // dtype of the frozen matrices in memory (as requested; a GGUF's quantized tensors stay as stored)
}

export interface ForwardOptions {
  /** One adapter (or any prompt source) for every row, or one per row (null = base model for that row). */
  adapter?: PromptSource | null | readonly (PromptSource | null)[];
}

export interface LossAndGrads {
  loss: number; // mean cross-entropy over targets != -100
  tokens: number; // number of targets that carried loss
  grads: Map<string, Float32Array>; // keyed like trainableTensors(adapter)
}

export class LlamaModel implements ForwardContext, MethodHost {
  readonly rope: RopeTables;
  private acts: Activations;
  private bwd: BackwardBuffers;

  constructor(
    readonly config: LlamaConfig,
    readonly weights: ModelWeights,
    readonly tokenizer: Tokenizer,
    readonly backend: Backend,
    readonly fingerprint: string,
    readonly info: ModelInfo,
  ) {
    this.rope = ropeTables(config, config.maxSeqLen);
    // bf16 or quantized weights: the activations training saves for backward are stored in bf16
    // (half their memory; for a quantized base it is QLoRA's bf16 compute over a 4-bit model)
    this.acts = new Activations(config, info.dtype === 'bf16' || isQuantized(weights.layers[0].wq) || isQuantized(weights.layers[0].w2));
    this.bwd = new BackwardBuffers(config);
  }

  /** Shared activation workspace (grow-only), for generation and training loops. */
  get activations(): Activations {
    return this.acts;
  }

  /** Check a batch of token rows: same length, ids in range, within the context. */
  private checkTokens(tokens: readonly (readonly number[])[]): { B: number; T: number } {
    const B = tokens.length;
    check(B > 0, 'forward: empty batch');
    const T = tokens[0].length;
    check(T > 0, 'forward: empty token row');
    for (let b = 0; b < B; b++) {
      check(tokens[b].length === T, `forward: row ${b} has ${tokens[b].length} tokens, row 0 has ${T} (pad rows to one length)`);
      for (const id of tokens[b]) {
        if (!(Number.isInteger(id) && id >= 0 && id < this.config.vocabSize)) {
          throw new LlamaAdapterError(`forward: token id ${id} in row ${b} is outside the vocabulary (0..${this.config.vocabSize - 1})`);
        }
      }
    }
    check(T <= this.config.maxSeqLen, `input of ${T} tokens is longer than the model's context of ${this.config.maxSeqLen} tokens`);
    return { B, T };
  }

  private sources(adapter: ForwardOptions['adapter'], B: number): (PromptSource | null)[] | null {
    if (!adapter) return null;
    if (Array.isArray(adapter)) {
      check(adapter.length === B, `forward: ${adapter.length} adapters given for ${B} rows`);
      for (const a of adapter) if (a) this.checkOwn(a);
      return adapter.some((a) => a) ? [...adapter] : null;
    }
    const a = adapter as PromptSource;
    this.checkOwn(a);
    return new Array<PromptSource | null>(B).fill(a);
  }

  /** Throws unless the adapter (prompt source) was created for or loaded onto this model instance. */
  checkOwn(a: PromptSource): void {
    if (a.host !== this) throw new LlamaAdapterError('this adapter was created for or loaded onto another model instance');
  }

  /** Logits (B, T, vocab), row-major, for equal-length rows of token ids. */
  forward(tokens: readonly (readonly number[])[], options: ForwardOptions = {}): Float32Array {
    const { B, T } = this.checkTokens(tokens);
    const src = this.sources(options.adapter, B);
    this.acts.ensure(B, T, maxPromptLength(src), -1);
    const ids = this.acts.ids;
    for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) ids[b * T + t] = tokens[b][t];
    this.acts.pos.fill(0, 0, B);
    const logits = new Float32Array(B * T * this.config.vocabSize);
    forwardPass(this, this.acts, { B, T, cache: null, sources: src, train: false, logitRows: null, logits });
    return logits;
  }

  /**
   * Mean next-token cross-entropy of the adapter's model and its gradient with respect to the
   * adapter's parameters. targets[b][t] is the id position t must predict; -100 = no loss.
   */
  lossAndGrads(
    tokens: readonly (readonly number[])[],
    targets: readonly (readonly number[])[],
    adapter: AdapterMethod,
    into?: Map<string, Float32Array>,
  ): LossAndGrads {
    const { B, T } = this.checkTokens(tokens);
    this.checkOwn(adapter);
    const { rows, tg } = this.lossRows(targets, B, T);
    const grads = into ?? zerosLike(adapter);
    const r = this.trainStep(tokens, B, T, rows, tg, adapter, grads);
    return { loss: r, tokens: rows.length, grads };
  }

  /** The (b*T + t) rows that carry loss and their target ids; targets checked against the vocabulary. */
  private lossRows(targets: readonly (readonly number[])[], B: number, T: number): { rows: Int32Array; tg: Int32Array } {
    check(targets.length === B && targets.every((r) => r.length === T), 'targets must have the shape of tokens');
    const rows: number[] = [];
    const tg: number[] = [];
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        const y = targets[b][t];
        if (y === -100) continue;
        check(Number.isInteger(y) && y >= 0 && y < this.config.vocabSize, `target ${y} at [${b}, ${t}] is outside the vocabulary (use -100 for no loss)`);
        rows.push(b * T + t);
        tg.push(y);
      }
    }
    return { rows: Int32Array.from(rows), tg: Int32Array.from(tg) };
  }

  /** Mean cross-entropy (no gradients) with an optional adapter; returns { loss, tokens }. */
  loss(
    tokens: readonly (readonly number[])[],
    targets: readonly (readonly number[])[],
    adapter: AdapterMethod | null = null,
  ): { loss: number; tokens: number } {
    const { B, T } = this.checkTokens(tokens);
    const { rows, tg } = this.lossRows(targets, B, T);
    if (rows.length === 0) return { loss: 0, tokens: 0 };
    const src = this.sources(adapter, B);
    this.acts.ensure(B, T, maxPromptLength(src), -1);
    for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) this.acts.ids[b * T + t] = tokens[b][t];
    this.acts.pos.fill(0, 0, B);
    const V = this.config.vocabSize;
    const { logits } = this.acts.lossBuffers(rows.length, V);
    forwardPass(this, this.acts, { B, T, cache: null, sources: src, train: false, logitRows: rows, logits });
    return { loss: this.backend.crossEntropy(logits, tg, rows.length, V, null, 1) / rows.length, tokens: rows.length };
  }

  /** Forward + backward on prepared rows; writes grads, returns the mean loss (0 if no targets). */
  trainStep(
    tokens: readonly (readonly number[])[],
    B: number,
    T: number,
    logitRows: Int32Array,
    targets: Int32Array,
    adapter: AdapterMethod,
    grads: Map<string, Float32Array>,
  ): number {
    const n = logitRows.length;
    if (n === 0) {
      for (const g of grads.values()) g.fill(0);
      return 0;
    }
    const acts = this.acts;
    acts.ensure(B, T, adapter.promptLength, adapter.firstLayer);
    for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) acts.ids[b * T + t] = tokens[b][t];
    acts.pos.fill(0, 0, B);
    const V = this.config.vocabSize;
    const { logits, finalRstd } = acts.lossBuffers(n, V);
    const sources = new Array<PromptSource>(B).fill(adapter);
    forwardPass(this, acts, { B, T, cache: null, sources, train: true, logitRows, logits, finalRstd });
    const loss = this.backend.crossEntropy(logits, targets, n, V, logits, 1 / n) / n;
    this.bwd.ensure(B * T, adapter.promptLength);
    backwardPass(this, acts, this.bwd, adapter, B, T, logitRows, logits, finalRstd);
    adapter.paramGrads(this.bwd.layers, grads);
    return loss;
  }
}

/** The longest prompt length K among the rows' sources (1 when none: buffers need a size). */
export function maxPromptLength(src: readonly (PromptSource | null)[] | null): number {
  let K = 1;
  for (const s of src ?? []) if (s) K = Math.max(K, s.promptLength);
  return K;
}
