// Preallocated activation buffers for one forward (and backward) pass over up to (B, T) tokens.
// Grow-only: a pass with a smaller batch uses prefixes of the same buffers, so a decode loop or
// a training loop allocates nothing per step. In training mode the layers that the backward
// pass visits (the adapted ones) keep what backward needs (LayerActs); the others share one
// scratch set. With bf16 storage (a bf16-weight model) a kept layer's large buffers live in
// bf16: the forward computes them in the shared fp32 set and `store` rounds them away; backward
// `restore`s them into the shared set (half the memory, one conversion each way per layer).

import type { Backend } from '../backend/backend.js';
import type { LlamaConfig } from '../core/config.js';

/** What backward reads of one layer (fp32 working set). */
export interface LayerActs {
  xIn: Float32Array; // (M, dim) residual stream entering the layer
  rstd1: Float32Array; // (M) 1/rms of xIn
  q: Float32Array; // (M, nHeads*hs) after RoPE
  k: Float32Array; // (M, nKvHeads*hs) after RoPE
  v: Float32Array; // (M, nKvHeads*hs)
  pprobs: Float32Array; // (B, nHeads, T, K) prompt softmax (adapted layers)
  xMid: Float32Array; // (M, dim) residual stream after attention
  rstd2: Float32Array; // (M) 1/rms of xMid
  a: Float32Array; // (M, hidden) ffn gate pre-activation  h W1^T
  b: Float32Array; // (M, hidden) ffn up  h W3^T
}

/** The large LayerActs fields, the ones bf16 storage rounds (rstd and pprobs stay fp32). */
const BIG = ['xIn', 'q', 'k', 'v', 'xMid', 'a', 'b'] as const;
type BigField = (typeof BIG)[number];
type Packed = Record<BigField, Uint16Array>;

/** Element counts of the large fields for a (B, T) pass. */
function bigLengths(c: LlamaConfig, B: number, T: number): Record<BigField, number> {
  const M = B * T,
    q = c.nHeads * c.headDim,
    kv = c.nKvHeads * c.headDim;
  return {
    xIn: M * c.dim,
    q: M * q,
    k: M * kv,
    v: M * kv,
    xMid: M * c.dim,
    a: M * c.hiddenDim,
    b: M * c.hiddenDim,
  };
}

function layerActs(c: LlamaConfig, B: number, T: number, K: number): LayerActs {
  const M = B * T,
    n = bigLengths(c, B, T);
  return {
    xIn: new Float32Array(n.xIn),
    rstd1: new Float32Array(M),
    q: new Float32Array(n.q),
    k: new Float32Array(n.k),
    v: new Float32Array(n.v),
    pprobs: new Float32Array(B * c.nHeads * T * K),
    xMid: new Float32Array(n.xMid),
    rstd2: new Float32Array(M),
    a: new Float32Array(n.a),
    b: new Float32Array(n.b),
  };
}

export class Activations {
  B = 0; // capacity in rows
  T = 0; // capacity in positions
  K = 0; // capacity in prompt length
  trainFrom = -1; // first layer with its own saved LayerActs (-1: inference only)
  shared!: LayerActs; // scratch for layers that are not saved (and the bf16 layers' working set)
  saved: (LayerActs | null)[] = []; // per layer, training only
  private packed: (Packed | null)[] = []; // per layer, bf16 storage of saved[l]'s large fields
  x = new Float32Array(0); // (M, dim) residual stream
  h = new Float32Array(0); // (M, dim) rmsnorm output (attention, then FFN input)
  att = new Float32Array(0); // (M, nHeads*hs) attention output before wo
  tmp = new Float32Array(0); // (M, max(dim, hidden)) scratch
  g = new Float32Array(0); // (M, hidden) silu(a)*b
  private logitsBuf = new Float32Array(0); // (rows, vocab) logits at the loss rows, grow-only
  private rstdBuf = new Float32Array(0); // (rows) final-norm 1/rms at the loss rows, grow-only
  private rowLossBuf = new Float32Array(0); // (rows) each loss row's cross-entropy, grow-only
  ids = new Int32Array(0); // (M) token ids
  pos = new Int32Array(0); // (B) start positions

  /** bf16Storage: keep the saved layers' large buffers in bf16 (see the header). */
  constructor(
    private readonly c: LlamaConfig,
    readonly bf16Storage = false,
  ) {}

  /** Make room for (B, T) tokens, prompt length K; trainFrom >= 0 keeps layers >= trainFrom for backward (-1: any layout). */
  ensure(B: number, T: number, K: number, trainFrom: number): void {
    // inference (trainFrom -1) can run on a training layout; only a new training layout reallocates
    if (trainFrom < 0) trainFrom = this.trainFrom;
    if (B <= this.B && T <= this.T && K <= this.K && trainFrom === this.trainFrom) return;
    // (B, T)-shaped buffers (pprobs) depend on T as a stride, so reallocate all on any growth.
    B = Math.max(B, this.B);
    T = Math.max(T, this.T);
    K = Math.max(K, this.K, 1);
    const c = this.c,
      M = B * T;
    this.B = B;
    this.T = T;
    this.K = K;
    this.trainFrom = trainFrom;
    const keep = (l: number): boolean => trainFrom >= 0 && l >= trainFrom;
    this.shared = layerActs(c, B, T, K);
    this.saved = Array.from({ length: c.nLayers }, (_, l) => {
      if (!keep(l)) return null;
      if (!this.bf16Storage) return layerActs(c, B, T, K);
      // large fields alias the shared working set; the small ones are the layer's own
      const s = this.shared;
      return {
        ...s,
        rstd1: new Float32Array(M),
        rstd2: new Float32Array(M),
        pprobs: new Float32Array(B * c.nHeads * T * K),
      };
    });
    this.packed = Array.from({ length: c.nLayers }, (_, l) => {
      if (!keep(l) || !this.bf16Storage) return null;
      const n = bigLengths(c, B, T);
      return Object.fromEntries(BIG.map((f) => [f, new Uint16Array(n[f])])) as Packed;
    });
    this.x = new Float32Array(M * c.dim);
    this.h = new Float32Array(M * c.dim);
    this.att = new Float32Array(M * c.nHeads * c.headDim);
    this.tmp = new Float32Array(M * Math.max(c.dim, c.hiddenDim, c.nHeads * c.headDim));
    this.g = new Float32Array(M * c.hiddenDim);
    this.ids = new Int32Array(M);
    this.pos = new Int32Array(B);
  }

  /** (rows, V) logits, (rows) final rstd and (rows) row losses for a loss pass: views of grow-only
   * buffers (a training loop would otherwise allocate, and page in, rows*V floats per step: 65 MB on large). */
  lossBuffers(rows: number, V: number): { logits: Float32Array; finalRstd: Float32Array; rowLoss: Float32Array } {
    if (this.logitsBuf.length < rows * V) this.logitsBuf = new Float32Array(rows * V);
    if (this.rstdBuf.length < rows) {
      this.rstdBuf = new Float32Array(rows);
      this.rowLossBuf = new Float32Array(rows);
    }
    return { logits: this.logitsBuf.subarray(0, rows * V), finalRstd: this.rstdBuf.subarray(0, rows), rowLoss: this.rowLossBuf.subarray(0, rows) };
  }

  /** Layer l's working set in the forward pass (its own saved set, or the shared scratch). */
  layer(l: number): LayerActs {
    return this.saved[l] ?? this.shared;
  }

  /** After layer l's training forward of a (B, T) pass: move its large buffers to bf16 storage (no-op in fp32). */
  store(l: number, be: Backend, B: number, T: number): void {
    const p = this.packed[l];
    if (!p) return;
    const A = this.saved[l]!,
      n = bigLengths(this.c, B, T);
    for (const f of BIG) if (n[f] > 0) be.toBf16(p[f], A[f], n[f]);
  }

  /** Before layer l's backward: its LayerActs, widened back from bf16 storage when stored there. */
  restore(l: number, be: Backend, B: number, T: number): LayerActs {
    const A = this.layer(l),
      p = this.packed[l];
    if (!p) return A;
    const n = bigLengths(this.c, B, T);
    for (const f of BIG) if (n[f] > 0) be.fromBf16(A[f], p[f], n[f]);
    return A;
  }
}
