// Plain-TypeScript linear algebra kernels (the oracle). Straightforward loops, unrolled enough
// to be usable on the small real models; the native backend is the fast path.

import { actsBuffer, dequantizeRow, dotRow, quantizeActs, quantRowBytes, type QuantizedActs } from '../../core/quant.js';
import { f16ToF32Into, isQuantized, roundBf16, type Matrix } from '../../core/weights.js';
import { checkSameWidth, type Kernels } from '../backend.js';

/** Row `n` of a weight matrix as fp32 (a view for f32; decoded into `scratch` for bf16, f16 and quantized types). */
function weightRow(w: Matrix, n: number, scratch: Float32Array): Float32Array {
  const K = w.cols;
  if (w.dtype === 'f32') return w.data.subarray(n * K, n * K + K);
  if (w.dtype === 'f16') {
    f16ToF32Into(scratch, w.data.subarray(n * K, n * K + K), K);
    return scratch;
  }
  if (w.dtype !== 'bf16') {
    dequantizeRow(w.dtype, w.data, n * quantRowBytes(w.dtype, K), scratch, 0, K);
    return scratch;
  }
  const u = new Uint32Array(scratch.buffer, scratch.byteOffset, K);
  const src = w.data;
  const o = n * K;
  for (let k = 0; k < K; k++) u[k] = src[o + k] << 16;
  return scratch;
}

function dot(a: Float32Array, ao: number, b: Float32Array, K: number): number {
  let s0 = 0,
    s1 = 0,
    s2 = 0,
    s3 = 0;
  let k = 0;
  for (; k + 3 < K; k += 4) {
    s0 += a[ao + k] * b[k];
    s1 += a[ao + k + 1] * b[k + 1];
    s2 += a[ao + k + 2] * b[k + 2];
    s3 += a[ao + k + 3] * b[k + 3];
  }
  for (; k < K; k++) s0 += a[ao + k] * b[k];
  return s0 + s1 + (s2 + s3);
}

/** matmul / matmulBack with their own grow-only scratch (one set per TS backend). */
export function linearKernels(): Pick<Kernels, 'matmul' | 'matmul2' | 'matmul3' | 'matmulBack'> {
  let scratch = new Float32Array(0); // one decoded bf16 / f16 / quantized weight row
  let rounded = new Float32Array(0); // activations rounded to bf16
  let acts: QuantizedActs = actsBuffer(0); // one row of x quantized to 8 bits

  /** bf16 weights multiply bf16 activations: the first n values of x rounded to bf16 (a copy). */
  const bf16Input = (x: Float32Array, n: number): Float32Array => {
    if (rounded.length < n) rounded = new Float32Array(n);
    roundBf16(rounded, x, n);
    return rounded;
  };

  const row = (w: Matrix, n: number): Float32Array => {
    if (w.dtype !== 'f32' && scratch.length < w.cols) scratch = new Float32Array(w.cols);
    return weightRow(w, n, scratch);
  };

  /** out (M, N) (+)= x (M, K) · W^T. */
  const matmul = (out: Float32Array, x: Float32Array, w: Matrix, M: number, accumulate = false): void => {
    const N = w.rows,
      K = w.cols;
    if (isQuantized(w)) {
      // quantized W: each row of x quantized to 8 bits, integer block products (core/quant.ts)
      if (acts.q.length < K) acts = actsBuffer(K);
      const rb = quantRowBytes(w.dtype, K);
      for (let m = 0; m < M; m++) {
        quantizeActs(w.dtype, x, m * K, K, acts);
        for (let n = 0; n < N; n++) {
          const s = dotRow(w.dtype, w.data, n * rb, acts, K);
          out[m * N + n] = accumulate ? out[m * N + n] + s : s;
        }
      }
      return;
    }
    if (w.dtype === 'bf16') x = bf16Input(x, M * K);
    for (let n = 0; n < N; n++) {
      const wr = row(w, n);
      for (let m = 0; m < M; m++) {
        const s = dot(x, m * K, wr, K);
        out[m * N + n] = accumulate ? out[m * N + n] + s : s;
      }
    }
  };

  return {
    matmul,
    matmul2(outA: Float32Array, outB: Float32Array, x: Float32Array, wA: Matrix, wB: Matrix, M: number): void {
      checkSameWidth('ts', 'matmul2', [wA, wB]);
      matmul(outA, x, wA, M);
      matmul(outB, x, wB, M);
    },
    matmul3(outA: Float32Array, outB: Float32Array, outC: Float32Array, x: Float32Array, wA: Matrix, wB: Matrix, wC: Matrix, M: number): void {
      checkSameWidth('ts', 'matmul3', [wA, wB, wC]);
      matmul(outA, x, wA, M);
      matmul(outB, x, wB, M);
      matmul(outC, x, wC, M);
    },

    /** out (M, K) = dy (M, N) · W (a quantized W dequantized exactly; dy stays fp32). */
    matmulBack(out: Float32Array, dy: Float32Array, w: Matrix, M: number, accumulate = false): void {
      const N = w.rows,
        K = w.cols;
      if (w.dtype === 'bf16') dy = bf16Input(dy, M * N);
      if (!accumulate) out.fill(0, 0, M * K);
      for (let n = 0; n < N; n++) {
        const wr = row(w, n);
        for (let m = 0; m < M; m++) {
          const g = dy[m * N + n];
          if (g === 0) continue;
          const o = m * K;
          for (let k = 0; k < K; k++) out[o + k] += g * wr[k];
        }
      }
    },
  };
}
