// Frozen backbones for task heads: what each base model gives a head (features at chosen rows) and
// how a head's gradient goes back to the prompt hook. ViT: last_hidden_state at CLS; RoBERTa:
// last_hidden_state at <s> (sequence classification) or at every token (span extraction); LLaMA
// (causal, so only the last token has read the whole text): the final-normed hidden state at each
// row's last real token. Each also gives the PromptHost the prompt methods use (LLaMA: its layers'
// wk / wv, no biases).

import type { LlamaModel } from '../../model/model.js';
import type { PromptHost, PromptSource, SourceGrads } from '../../model/method.js';
import type { RobertaInput, RobertaModel } from '../../model/encoders/roberta.js';
import type { VitModel } from '../../model/encoders/vit.js';

export type BackboneArch = 'vit' | 'roberta' | 'llama';

export interface Backbone<In> {
  readonly arch: BackboneArch;
  readonly host: object; // the base model: the prompt source's host
  readonly view: PromptHost; // its attention shape and key/value projections
  readonly width: number; // feature width C
  /** Features (n, C) of a batch; `train` keeps what backward needs (with a source). */
  features(x: In, source: PromptSource<unknown> | null, train: boolean): { feats: Float32Array; n: number };
  /** Hook gradients from d features (n, C), after features(train: true) with a source. */
  backward(dFeats: Float32Array): SourceGrads<unknown>;
}

export interface ImageBatch {
  pixels: Float32Array; // (B, 3, S, S) preprocessed
  B: number;
}

export class VitBackbone implements Backbone<ImageBatch> {
  readonly arch = 'vit';
  readonly width: number;
  private B = 0;

  constructor(readonly host: VitModel) {
    this.width = host.config.hidden;
  }

  get view(): PromptHost {
    return this.host;
  }

  features(x: ImageBatch, source: PromptSource<unknown> | null, train: boolean): { feats: Float32Array; n: number } {
    const { last } = this.host.forward(x.pixels, x.B, { source, train });
    const C = this.width,
      T = this.host.tokens;
    const feats = new Float32Array(x.B * C);
    for (let b = 0; b < x.B; b++) feats.set(last.subarray(b * T * C, b * T * C + C), b * C);
    this.B = x.B;
    return { feats, n: x.B };
  }

  backward(dFeats: Float32Array): SourceGrads<unknown> {
    const C = this.width,
      T = this.host.tokens;
    const dLast = new Float32Array(this.B * T * C);
    for (let b = 0; b < this.B; b++) dLast.set(dFeats.subarray(b * C, (b + 1) * C), b * T * C);
    return this.host.backward(dLast);
  }
}

export class RobertaBackbone implements Backbone<RobertaInput> {
  readonly arch = 'roberta';
  readonly width: number;
  private B = 0;
  private T = 0;

  /** `pick`: 'first' = the <s> token of each row (classification), 'all' = every token (spans). */
  constructor(
    readonly host: RobertaModel,
    readonly pick: 'first' | 'all',
  ) {
    this.width = host.config.hidden;
  }

  get view(): PromptHost {
    return this.host;
  }

  features(x: RobertaInput, source: PromptSource<unknown> | null, train: boolean): { feats: Float32Array; n: number } {
    const { last } = this.host.forward(x, { source, train });
    this.B = x.B;
    this.T = x.T;
    if (this.pick === 'all') return { feats: last, n: x.B * x.T };
    const C = this.width;
    const feats = new Float32Array(x.B * C);
    for (let b = 0; b < x.B; b++) feats.set(last.subarray(b * x.T * C, b * x.T * C + C), b * C);
    return { feats, n: x.B };
  }

  backward(dFeats: Float32Array): SourceGrads<unknown> {
    if (this.pick === 'all') return this.host.backward(dFeats);
    const C = this.width;
    const dLast = new Float32Array(this.B * this.T * C);
    for (let b = 0; b < this.B; b++) dLast.set(dFeats.subarray(b * C, (b + 1) * C), b * this.T * C);
    return this.host.backward(dLast);
  }
}

export interface TokenBatch {
  tokens: number[][]; // (B, T) right-padded ids
  lengths: number[]; // real tokens per row (features at lengths[b] - 1)
}

/** A LLaMA model's PromptHost: its width, layers, heads and each layer's wk / wv (no biases). */
export function llamaPromptHost(m: LlamaModel): PromptHost {
  const c = m.config;
  return {
    backend: m.backend,
    fingerprint: m.fingerprint,
    attnShape: { width: c.dim, layers: c.nLayers, heads: c.nHeads, kvHeads: c.nKvHeads, headDim: c.headDim },
    promptProjections: (l) => ({ wk: m.weights.layers[l].wk, bk: null, wv: m.weights.layers[l].wv, bv: null }),
  };
}

export class LlamaBackbone implements Backbone<TokenBatch> {
  readonly arch = 'llama';
  readonly width: number;
  readonly view: PromptHost;

  constructor(readonly host: LlamaModel) {
    this.width = host.config.dim;
    this.view = llamaPromptHost(host);
  }

  features(x: TokenBatch, source: PromptSource<unknown> | null, train: boolean): { feats: Float32Array; n: number } {
    const T = x.tokens[0]?.length ?? 0;
    const rows = Int32Array.from(x.lengths, (len, b) => b * T + len - 1);
    return { feats: this.host.features(x.tokens, rows, source as PromptSource | null, train), n: rows.length };
  }

  backward(dFeats: Float32Array): SourceGrads<unknown> {
    return this.host.featuresBackward(dFeats)[0] as SourceGrads<unknown>;
  }
}
