// Where a backend's buffers live, and the model's sync points. Every buffer is named by a typed
// array the caller owns. On a host backend (ts, native: `hostMemory`) that array is the storage.
// On a device backend (webgpu) it names a device buffer of the same size that the backend makes
// on first use, and the host array is only a staging copy:
//
//   - an array a kernel has written lives on the device: its host copy is current only after
//     `await memory.sync(array)` (a sync point: the model has a few, e.g. logits and losses);
//   - host writes into an array that no kernel has written are seen by the next kernel (the
//     device compares it with what it last uploaded); into one a kernel has written, only after
//     `memory.upload(array)`;
//   - frozen weights (Matrix data, and arrays passed to `memory.constant`) are uploaded once, per
//     view, and must not change.
//
// Model code is written once for both: it moves data between buffers with copy / fill / gather /
// scatter below (never `set` or loops on arrays a kernel wrote), and marks its sync points as
// `yield [arrays]` inside a generator (`Steps`), which `runSync` runs on a host backend and
// `runAsync` on any backend. So `forward()` stays synchronous where it can be, and `forwardAsync()`
// works everywhere.

import { LlamaAdapterError } from '../core/errors.js';

/** Any typed array a kernel may take. */
export type Buf = Float32Array | Int32Array | Uint16Array | Uint8Array;

export interface Memory {
  /** true: buffers live on a device and kernels only queue work (see the header). */
  readonly device: boolean;
  /** dst[dOff .. dOff+n) = src[sOff .. sOff+n) (elements). */
  copy(dst: Float32Array, dOff: number, src: Float32Array, sOff: number, n: number): void;
  /** dst[off .. off+n) = value. */
  fill(dst: Float32Array, value: number, off: number, n: number): void;
  /** dst (n, dim) = rows idx[0..n) of src (rows, dim). */
  gather(dst: Float32Array, src: Float32Array, idx: Int32Array, n: number, dim: number): void;
  /** rows idx[0..n) of dst (rows, dim) = src (n, dim); other rows are untouched. */
  scatter(dst: Float32Array, src: Float32Array, idx: Int32Array, n: number, dim: number): void;
  /** The host wrote into these arrays (ones a kernel also writes): the device copies are stale. */
  upload(...a: Buf[]): void;
  /** Frozen arrays (weights, tables): uploaded once, never compared again. */
  constant(...a: Buf[]): void;
  /** Make the host copies of these arrays current (waits for the queued kernels that write them). */
  sync(...a: Buf[]): Promise<void>;
}

/** The memory of a host backend: the arrays are the storage, every operation is immediate. */
export const hostMemory: Memory = {
  device: false,
  copy(dst, dOff, src, sOff, n) {
    dst.set(src.subarray(sOff, sOff + n), dOff);
  },
  fill(dst, value, off, n) {
    dst.fill(value, off, off + n);
  },
  gather(dst, src, idx, n, dim) {
    for (let i = 0; i < n; i++) dst.set(src.subarray(idx[i] * dim, idx[i] * dim + dim), i * dim);
  },
  scatter(dst, src, idx, n, dim) {
    for (let i = 0; i < n; i++) dst.set(src.subarray(i * dim, i * dim + dim), idx[i] * dim);
  },
  upload() {},
  constant() {},
  sync: async () => {},
};

/**
 * A computation with sync points: each `yield` names arrays whose host copies the code after it
 * reads; the generator's return value is the result.
 */
export type Steps<T> = Generator<readonly Buf[], T, void>;

/**
 * Run `steps` synchronously. On a device backend it cannot wait, so it throws, naming `asyncName`
 * (the method that works on every backend).
 */
export function runSync<T>(memory: Memory, steps: Steps<T>, asyncName: string): T {
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
    if (memory.device) {
      steps.return(undefined as T);
      throw new LlamaAdapterError(`this backend computes on a device, asynchronously: use ${asyncName}() (it works on every backend)`);
    }
  }
}

/** Run `steps`, waiting at each sync point (on a host backend it runs straight through). */
export async function runAsync<T>(memory: Memory, steps: Steps<T>): Promise<T> {
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
    if (memory.device && r.value.length) await memory.sync(...r.value);
  }
}
