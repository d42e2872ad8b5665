// Plain-TypeScript row and elementwise kernels: RMSNorm, RoPE, SiLU-gate, residual add, argmax,
// bf16 conversion, embedding. Stateless: one object shared by every TS backend.

import { dequantizeRow, quantRowBytes } from '../../core/quant.js';
import { f16ToF32Into, toBf16Into, type Matrix } from '../../core/weights.js';
import type { Kernels } from '../backend.js';

export const rowKernels = {
  rmsnorm(out: Float32Array, x: Float32Array, w: Float32Array, rows: number, dim: number, eps: number, rstd?: Float32Array): void {
    for (let r = 0; r < rows; r++) {
      const o = r * dim;
      let ss = 0;
      for (let i = 0; i < dim; i++) ss += x[o + i] * x[o + i];
      const s = 1 / Math.sqrt(ss / dim + eps);
      if (rstd) rstd[r] = s;
      for (let i = 0; i < dim; i++) out[o + i] = x[o + i] * s * w[i];
    }
  },

  // y = w * x * s, s = (mean(x^2) + eps)^-1/2  =>  dx = s * (w*dy) - x * s^3 / dim * sum(w*dy*x)
  rmsnormBack(dx: Float32Array, dy: Float32Array, x: Float32Array, w: Float32Array, rstd: Float32Array, rows: number, dim: number, accumulate: boolean): void {
    for (let r = 0; r < rows; r++) {
      const o = r * dim;
      const s = rstd[r];
      let dot = 0;
      for (let i = 0; i < dim; i++) dot += w[i] * dy[o + i] * x[o + i];
      const c = (dot * s * s * s) / dim;
      for (let i = 0; i < dim; i++) {
        const g = s * w[i] * dy[o + i] - c * x[o + i];
        dx[o + i] = accumulate ? dx[o + i] + g : g;
      }
    }
  },

  rope(x: Float32Array, B: number, T: number, H: number, hs: number, pos: Int32Array, cos: Float32Array, sin: Float32Array, inverse: boolean): void {
    const half = hs >> 1;
    const sign = inverse ? -1 : 1;
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        const p = (pos[b] + t) * half;
        const rowOff = (b * T + t) * H * hs;
        for (let h = 0; h < H; h++) {
          const o = rowOff + h * hs;
          for (let i = 0; i < half; i++) {
            const c = cos[p + i],
              s = sign * sin[p + i];
            const x0 = x[o + 2 * i],
              x1 = x[o + 2 * i + 1];
            x[o + 2 * i] = x0 * c - x1 * s;
            x[o + 2 * i + 1] = x0 * s + x1 * c;
          }
        }
      }
    }
  },

  siluGate(out: Float32Array, a: Float32Array, b: Float32Array, n: number): void {
    for (let i = 0; i < n; i++) {
      const v = a[i];
      out[i] = (v / (1 + Math.exp(-v))) * b[i];
    }
  },

  siluGateBack(da: Float32Array, db: Float32Array, dy: Float32Array, a: Float32Array, b: Float32Array, n: number): void {
    for (let i = 0; i < n; i++) {
      const v = a[i];
      const sig = 1 / (1 + Math.exp(-v));
      const g = dy[i];
      db[i] = g * v * sig;
      da[i] = g * b[i] * sig * (1 + v * (1 - sig));
    }
  },

  add(x: Float32Array, y: Float32Array, n: number): void {
    for (let i = 0; i < n; i++) x[i] += y[i];
  },

  argmax(x: Float32Array, n: number): number {
    let best = 0;
    let max = x[0];
    for (let i = 1; i < n; i++) {
      const v = x[i];
      if (v > max) {
        max = v;
        best = i;
      }
    }
    return best;
  },

  /** out (n) = x rounded to bf16, ties to even. */
  toBf16(out: Uint16Array, x: Float32Array, n: number): void {
    toBf16Into(out, x, n);
  },

  /** out (n) = x widened to fp32 (exact). */
  fromBf16(out: Float32Array, x: Uint16Array, n: number): void {
    const u = new Uint32Array(out.buffer, out.byteOffset, n);
    for (let i = 0; i < n; i++) u[i] = x[i] << 16;
  },

  embed(out: Float32Array, table: Matrix, ids: Int32Array, n: number): void {
    const dim = table.cols;
    for (let i = 0; i < n; i++) {
      const id = ids[i];
      if (table.dtype === 'f32') out.set(table.data.subarray(id * dim, id * dim + dim), i * dim);
      else if (table.dtype === 'f16') f16ToF32Into(out.subarray(i * dim, i * dim + dim), table.data.subarray(id * dim, id * dim + dim), dim);
      else if (table.dtype !== 'bf16') dequantizeRow(table.dtype, table.data, id * quantRowBytes(table.dtype, dim), out, i * dim, dim);
      else {
        const u = new Uint32Array(out.buffer, out.byteOffset + i * dim * 4, dim);
        for (let k = 0; k < dim; k++) u[k] = table.data[id * dim + k] << 16;
      }
    }
  },
} satisfies Partial<Kernels>;
