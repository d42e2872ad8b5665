// The Hugging Face ViT (`ViTModel`, `ViTForImageClassification`): config.json + model.safetensors,
// keys with or without the `vit.` prefix, on the backend's kernels:
//   pixels (B, 3, S, S) -> p x p tiles (row-major, each flattened (c, dy, dx)) . projection^T + bias
//   -> [cls_token; patches] + position_embeddings (= hidden[0], no LayerNorm) -> N pre-LN layers
//   (stack.ts) -> last_hidden_state = layernorm(hidden[N]) -> classifier(last[:, 0]) (the
//   checkpoint's head, when it has one) / pooled = tanh(pooler.dense(last[:, 0])) (a bare ViTModel).
// Prompt methods hook into the layers (stack.ts); training backpropagates from d last_hidden_state.
// Checked against ../shared/fixtures/vit-tiny-prompts (made by refencoders.py).

import * as path from 'node:path';
import type { Backend } from '../../backend/backend.js';
import { atFile, check } from '../../core/errors.js';
import { readSafetensors } from '../../core/safetensors.js';
import type { Matrix } from '../../core/weights.js';
import type { PromptHost, PromptProjections, SourceGrads } from '../method.js';
import { readVitConfig, type VitConfig, vitTokens } from './config.js';
import { type EncoderForwardOptions, type EncoderOutput, EncoderStack } from './stack.js';
import { HfTensors, type LinearHead, readHead, readLayer } from './tensors.js';

export class VitModel implements PromptHost {
  readonly kind = 'vit';
  readonly fingerprint: string;
  readonly classifier: LinearHead | null; // ViTForImageClassification's head (num_labels, C)
  readonly pooler: LinearHead | null; // ViTModel's pooler.dense (C, C)
  private readonly patchW: Matrix; // (C, 3 p^2)
  private readonly patchB: Float32Array; // (C)
  private readonly cls: Float32Array; // (C)
  private readonly pos: Float32Array; // (n+1, C)
  private readonly normW: Float32Array; // (C) final layernorm
  private readonly normB: Float32Array;
  private readonly stack: EncoderStack;
  private finalIn = new Float32Array(0); // (M, C) hidden[N] of the last training forward
  private finalMean = new Float32Array(0); // (M)
  private finalRstd = new Float32Array(0);
  private lastM = 0;

  constructor(
    readonly path: string,
    readonly config: VitConfig,
    t: HfTensors,
    readonly backend: Backend,
  ) {
    const c = config,
      C = c.hidden,
      p = c.patchSize,
      I = c.intermediate,
      n = vitTokens(c);
    const E = 'embeddings.';
    this.cls = t.tensor(`${E}cls_token`, [1, 1, C]);
    this.pos = t.tensor(`${E}position_embeddings`, [1, n, C]);
    this.patchW = t.mat(`${E}patch_embeddings.projection.weight`, C, c.channels * p * p, [C, c.channels, p, p]);
    this.patchB = t.tensor(`${E}patch_embeddings.projection.bias`, [C]);
    const layers = Array.from({ length: c.layers }, (_, i) => {
      const L = `encoder.layer.${i}.`,
        A = `${L}attention.`;
      return readLayer(
        t,
        {
          wq: `${A}attention.query.weight`,
          bq: `${A}attention.query.bias`,
          wk: `${A}attention.key.weight`,
          bk: `${A}attention.key.bias`,
          wv: `${A}attention.value.weight`,
          bv: `${A}attention.value.bias`,
          wo: `${A}output.dense.weight`,
          bo: `${A}output.dense.bias`,
          ln1w: `${L}layernorm_before.weight`,
          ln1b: `${L}layernorm_before.bias`,
          ln2w: `${L}layernorm_after.weight`,
          ln2b: `${L}layernorm_after.bias`,
          fc1: `${L}intermediate.dense.weight`,
          fc1b: `${L}intermediate.dense.bias`,
          fc2: `${L}output.dense.weight`,
          fc2b: `${L}output.dense.bias`,
        },
        C,
        I,
        c.qkvBias,
      );
    });
    this.normW = t.tensor('layernorm.weight', [C]);
    this.normB = t.tensor('layernorm.bias', [C]);
    this.classifier = readHead(t, 'classifier', C);
    this.pooler = readHead(t, 'pooler.dense', C, true);
    this.fingerprint = t.fingerprint();
    this.stack = new EncoderStack(backend, layers, { C, H: c.heads, I, act: c.act, eps: c.eps, preNorm: true });
  }

  /** Tokens per image (patches + CLS). */
  get tokens(): number {
    return vitTokens(this.config);
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
    return `vit C=${c.hidden} layers=${c.layers} heads=${c.heads} mlp=${c.intermediate} patch=${c.patchSize} image=${c.imageSize}`;
  }

  /** last_hidden_state (B, T, C) of B preprocessed images (B, 3, S, S), with the source's prompts. */
  forward(pixels: Float32Array, B: number, o: EncoderForwardOptions = {}): EncoderOutput {
    const c = this.config,
      be = this.backend;
    const C = c.hidden,
      S = c.imageSize,
      p = c.patchSize,
      T = this.tokens,
      n = T - 1,
      M = B * T,
      F = c.channels * p * p;
    check(B >= 1 && pixels.length === B * c.channels * S * S, `ViT forward: ${pixels.length} pixel values for ${B} images of ${c.channels}x${S}x${S}`);
    if (o.source) check(o.source.host === this, 'this prompt method was created for another model instance');
    const tiles = new Float32Array(B * n * F); // (B, n, 3p^2)
    be.patches(tiles, pixels, B, c.channels, S, p);
    const e = new Float32Array(B * n * C); // (B*n, C)
    be.matmul(e, tiles, this.patchW, B * n);
    be.biasAdd(e, this.patchB, B * n, C);
    const h = new Float32Array(M * C); // (B, T, C) residual stream
    for (let b = 0; b < B; b++) {
      h.set(this.cls, b * T * C);
      h.set(e.subarray(b * n * C, (b + 1) * n * C), (b * T + 1) * C);
      be.add(h.subarray(b * T * C, (b + 1) * T * C), this.pos, T * C);
    }
    const hidden: Float32Array[] | undefined = o.keep ? [] : undefined;
    this.stack.run(h, B, T, null, o.source ?? null, o.train === true, hidden);
    const last = new Float32Array(M * C);
    if (o.train) {
      if (this.finalIn.length < M * C) {
        this.finalIn = new Float32Array(M * C);
        this.finalMean = new Float32Array(M);
        this.finalRstd = new Float32Array(M);
      }
      this.finalIn.set(h);
      this.lastM = M;
    }
    be.layerNorm(last, h, this.normW, this.normB, M, C, c.eps, o.train ? this.finalMean : undefined, o.train ? this.finalRstd : undefined);
    return { last, hidden };
  }

  /** Hook gradients of the prompt source from d last_hidden_state (B, T, C), after forward(train: true). */
  backward(dLast: Float32Array): SourceGrads<unknown> {
    const C = this.config.hidden,
      M = this.lastM;
    check(dLast.length === M * C, `ViT backward: d last_hidden_state has ${dLast.length} values, expected ${M} x ${C}`);
    const dh = new Float32Array(M * C);
    this.backend.layerNormBack(dh, dLast, this.finalIn, this.normW, this.finalMean, this.finalRstd, M, C, false);
    return this.stack.back(dh);
  }
}

/** Load an HF ViT directory (config.json + model.safetensors). */
export function loadVit(dir: string, backend: Backend): VitModel {
  const config = readVitConfig(path.join(dir, 'config.json'));
  const file = path.join(dir, 'model.safetensors');
  return atFile(file, () => new VitModel(dir, config, new HfTensors(readSafetensors(file), 'vit.', 'embeddings.cls_token'), backend));
}
