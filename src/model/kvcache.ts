// Slot key/value cache for incremental decoding: one (slots, S, Hkv*hs) buffer pair per layer,
// allocated once per engine; slot i's keys for absolute position p live at [i, p]. `rows` maps
// each batch row of the next forward to its slot.

import type { LlamaConfig } from '../core/config.js';

/** What the forward pass needs of a cache. */
export interface KVView {
  readonly k: readonly Float32Array[]; // per layer (slots, S, Hkv*hs)
  readonly v: readonly Float32Array[]; // per layer (slots, S, Hkv*hs)
  readonly S: number; // positions per slot
  readonly rows: Int32Array; // (>= B) slot of batch row b
}

export class KVCache implements KVView {
  readonly k: Float32Array[]; // per layer (slots, S, Hkv*hs)
  readonly v: Float32Array[]; // per layer (slots, S, Hkv*hs)
  /** (slots) the batch-row -> slot map of the next forward; the caller fills rows[0..B-1]. */
  readonly rows: Int32Array;

  constructor(
    c: LlamaConfig,
    readonly slots: number,
    readonly S: number,
  ) {
    const n = slots * S * c.nKvHeads * c.headDim;
    this.k = Array.from({ length: c.nLayers }, () => new Float32Array(n));
    this.v = Array.from({ length: c.nLayers }, () => new Float32Array(n));
    this.rows = new Int32Array(slots);
  }
}
