// Key/value cache for incremental decoding: one (B, S, nKvHeads*hs) buffer pair per layer,
// allocated once per generation; row b's keys for absolute position p live at [b, p].

import type { LlamaConfig } from '../core/config.js';

/** What the forward pass needs of a cache: per-layer (rows, S, kvDim) buffers and the stride S. */
export interface KVView {
  readonly k: readonly Float32Array[]; // per layer (rows, S, kvDim)
  readonly v: readonly Float32Array[]; // per layer (rows, S, kvDim)
  readonly S: number; // positions per row
}

export class KVCache implements KVView {
  readonly k: Float32Array[];
  readonly v: Float32Array[];
  private readonly rows: KVView[];

  constructor(c: LlamaConfig, readonly B: number, readonly S: number) {
    const kv = c.nKvHeads * c.headDim;
    const n = B * S * kv;
    this.k = Array.from({ length: c.nLayers }, () => new Float32Array(n));
    this.v = Array.from({ length: c.nLayers }, () => new Float32Array(n));
    this.rows = Array.from({ length: B }, (_, b) => ({
      S,
      k: this.k.map((t) => t.subarray(b * S * kv, (b + 1) * S * kv)),
      v: this.v.map((t) => t.subarray(b * S * kv, (b + 1) * S * kv)),
    }));
  }

  /** A one-row view of row b (for prefilling rows of different lengths one at a time). */
  row(b: number): KVView {
    return this.rows[b];
  }
}
