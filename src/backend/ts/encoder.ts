// Plain-TypeScript kernels of the image encoders (ViT / CLIP towers): LayerNorm, the GELU family,
// bias add, bidirectional attention and the patch layout of the patch embedding. The oracle the
// native versions (native/encoder.cc) are tested against. Stateless except attention's score row.

import { GELU, type GeluKind, type Kernels } from '../backend.js';

/**
 * erfc(z) for z >= 0 by the Chebyshev-fitted rational form of Numerical Recipes (erfcc: fractional
 * error below 1.2e-7 everywhere). The native kernel evaluates the same expression.
 */
function erfcPos(z: number): number {
  const t = 1 / (1 + 0.5 * z);
  const p =
    -1.26551223 +
    t *
      (1.00002368 +
        t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  return t * Math.exp(-z * z + p);
}

/** erf(x), |error| < 1.2e-7 (JavaScript's Math has no erf). */
export function erf(x: number): number {
  const e = 1 - erfcPos(Math.abs(x));
  return x < 0 ? -e : e;
}

/** One activation value (see Backend.gelu). */
export function geluValue(x: number, kind: GeluKind): number {
  if (kind === GELU.quick) return x / (1 + Math.exp(-1.702 * x));
  if (kind === GELU.tanh) {
    const u = Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x);
    return 0.5 * x * (1 + Math.tanh(u));
  }
  return 0.5 * x * (1 + erf(x * Math.SQRT1_2));
}

/** The encoder kernels; attention keeps one grow-only score row. */
export function encoderKernels(): Pick<Kernels, 'layerNorm' | 'gelu' | 'biasAdd' | 'encoderAttention' | 'patches'> {
  let scores = new Float32Array(0); // (T) scores of one query

  return {
    layerNorm(out, x, w, b, rows, dim, eps, mean, rstd) {
      for (let r = 0; r < rows; r++) {
        const o = r * dim;
        let s = 0;
        for (let i = 0; i < dim; i++) s += x[o + i];
        const mu = s / dim;
        let v = 0;
        for (let i = 0; i < dim; i++) v += (x[o + i] - mu) * (x[o + i] - mu);
        const rs = 1 / Math.sqrt(v / dim + eps);
        if (mean) mean[r] = mu;
        if (rstd) rstd[r] = rs;
        for (let i = 0; i < dim; i++) out[o + i] = (x[o + i] - mu) * rs * w[i] + b[i];
      }
    },

    gelu(out, x, n, kind) {
      for (let i = 0; i < n; i++) out[i] = geluValue(x[i], kind);
    },

    biasAdd(x, bias, rows, dim) {
      for (let r = 0; r < rows; r++) for (let i = 0; i < dim; i++) x[r * dim + i] += bias[i];
    },

    encoderAttention(out, q, k, v, s) {
      const { B, T, H, Hkv, hs } = s;
      const rep = H / Hkv,
        qStride = H * hs,
        kvStride = Hkv * hs,
        scale = 1 / Math.sqrt(hs);
      if (scores.length < T) scores = new Float32Array(T);
      const sc = scores;
      for (let b = 0; b < B; b++) {
        for (let h = 0; h < H; h++) {
          const kvh = Math.floor(h / rep);
          for (let t = 0; t < T; t++) {
            const qo = (b * T + t) * qStride + h * hs;
            let max = -Infinity;
            for (let j = 0; j < T; j++) {
              const ko = (b * T + j) * kvStride + kvh * hs;
              let d = 0;
              for (let i = 0; i < hs; i++) d += q[qo + i] * k[ko + i];
              sc[j] = d * scale;
              if (sc[j] > max) max = sc[j];
            }
            let sum = 0;
            for (let j = 0; j < T; j++) sum += sc[j] = Math.exp(sc[j] - max);
            for (let i = 0; i < hs; i++) out[qo + i] = 0;
            for (let j = 0; j < T; j++) {
              const p = sc[j] / sum,
                vo = (b * T + j) * kvStride + kvh * hs;
              for (let i = 0; i < hs; i++) out[qo + i] += p * v[vo + i];
            }
          }
        }
      }
    },

    patches(out, pixels, B, C, size, p) {
      const g = size / p,
        row = C * p * p;
      for (let b = 0; b < B; b++)
        for (let gy = 0; gy < g; gy++)
          for (let gx = 0; gx < g; gx++) {
            let o = (b * g * g + gy * g + gx) * row;
            for (let c = 0; c < C; c++)
              for (let dy = 0; dy < p; dy++) {
                const src = ((b * C + c) * size + gy * p + dy) * size + gx * p;
                for (let dx = 0; dx < p; dx++) out[o++] = pixels[src + dx];
              }
          }
    },
  };
}
