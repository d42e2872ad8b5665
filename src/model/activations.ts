// Preallocated activation buffers for one forward (and backward) pass over up to (B, T) tokens.
// Grow-only: a pass with a smaller batch uses prefixes of the same buffers, so a decode loop or
// a training loop allocates nothing per step. In training mode the layers that the backward
// pass visits (the adapted ones) keep their own LayerActs; the others share one scratch set.

import type { LlamaConfig } from '../config.js';

export interface LayerActs {
  xIn: Float32Array; // (M, dim) residual stream entering the layer
  rstd1: Float32Array; // (M) 1/rms of xIn
  h: Float32Array; // (M, dim) rmsnorm(xIn) (also reused for the FFN input)
  q: Float32Array; // (M, nHeads*hs) after RoPE
  k: Float32Array; // (M, nKvHeads*hs) after RoPE
  v: Float32Array; // (M, nKvHeads*hs)
  probs: Float32Array; // (B, nHeads, T, T) causal softmax (training only)
  pprobs: Float32Array; // (B, nHeads, T, K) prompt softmax (adapted layers)
  att: Float32Array; // (M, nHeads*hs) attention output before wo
  xMid: Float32Array; // (M, dim) residual stream after attention
  rstd2: Float32Array; // (M) 1/rms of xMid
  a: Float32Array; // (M, hidden) ffn gate pre-activation  h W1^T
  b: Float32Array; // (M, hidden) ffn up  h W3^T
}

function layerActs(c: LlamaConfig, B: number, T: number, K: number, withProbs: boolean): LayerActs {
  const M = B * T, q = c.nHeads * c.headDim, kv = c.nKvHeads * c.headDim;
  return {
    xIn: new Float32Array(M * c.dim), rstd1: new Float32Array(M), h: new Float32Array(M * c.dim),
    q: new Float32Array(M * q), k: new Float32Array(M * kv), v: new Float32Array(M * kv),
    probs: new Float32Array(withProbs ? B * c.nHeads * T * T : 0),
    pprobs: new Float32Array(B * c.nHeads * T * K),
    att: new Float32Array(M * q), xMid: new Float32Array(M * c.dim), rstd2: new Float32Array(M),
    a: new Float32Array(M * c.hiddenDim), b: new Float32Array(M * c.hiddenDim),
  };
}

export class Activations {
  B = 0; // capacity in rows
  T = 0; // capacity in positions
  K = 0; // capacity in prompt length
  trainFrom = -1; // first layer with its own saved LayerActs (-1: inference only)
  shared!: LayerActs; // scratch for layers that are not saved
  saved: (LayerActs | null)[] = []; // per layer, training only
  x = new Float32Array(0); // (M, dim) residual stream
  tmp = new Float32Array(0); // (M, max(dim, hidden)) scratch
  g = new Float32Array(0); // (M, hidden) silu(a)*b
  ids = new Int32Array(0); // (M) token ids
  pos = new Int32Array(0); // (B) start positions

  constructor(private readonly c: LlamaConfig) {}

  /** Make room for (B, T) tokens, prompt length K; trainFrom >= 0 keeps layers >= trainFrom for backward (-1: any layout). */
  ensure(B: number, T: number, K: number, trainFrom: number): void {
    // inference (trainFrom -1) can run on a training layout; only a new training layout reallocates
    if (trainFrom < 0) trainFrom = this.trainFrom;
    if (B <= this.B && T <= this.T && K <= this.K && trainFrom === this.trainFrom) return;
    // (B, T)-shaped buffers (probs) depend on T as a stride, so reallocate all on any growth.
    B = Math.max(B, this.B);
    T = Math.max(T, this.T);
    K = Math.max(K, this.K, 1);
    const c = this.c, M = B * T;
    this.B = B;
    this.T = T;
    this.K = K;
    this.trainFrom = trainFrom;
    this.shared = layerActs(c, B, T, K, false);
    this.saved = Array.from({ length: c.nLayers }, (_, l) =>
      trainFrom >= 0 && l >= trainFrom ? layerActs(c, B, T, K, l > trainFrom) : null);
    this.x = new Float32Array(M * c.dim);
    this.tmp = new Float32Array(M * Math.max(c.dim, c.hiddenDim, c.nHeads * c.headDim));
    this.g = new Float32Array(M * c.hiddenDim);
    this.ids = new Int32Array(M);
    this.pos = new Int32Array(B);
  }

  layer(l: number): LayerActs {
    return this.saved[l] ?? this.shared;
  }
}
