// Plain-TypeScript kernels of the encoders (ViT / CLIP towers, RoBERTa): LayerNorm, the GELU family,
// bias add, bidirectional attention and the patch layout of the patch embedding; prefix attention
// (shared prompt keys/values in one softmax with the row's own keys, padding mask, optional causal
// order) and the backward kernels the encoders' training needs (LayerNorm, GELU, prefix attention).
// The oracle the native versions (native/encoder.cc) are tested against. Stateless except
// attention's score rows.

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

/** d act(x) / dx (see Backend.gelu). */
function geluGrad(x: number, kind: GeluKind): number {
  if (kind === GELU.quick) {
    const s = 1 / (1 + Math.exp(-1.702 * x));
    return s + 1.702 * x * s * (1 - s);
  }
  if (kind === GELU.tanh) {
    const c = Math.sqrt(2 / Math.PI);
    const th = Math.tanh(c * (x + 0.044715 * x * x * x));
    return 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * c * (1 + 3 * 0.044715 * x * x);
  }
  return 0.5 * (1 + erf(x * Math.SQRT1_2)) + (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI);
}

type EncoderKernelNames =
  | 'layerNorm'
  | 'layerNormBack'
  | 'gelu'
  | 'geluBack'
  | 'biasAdd'
  | 'encoderAttention'
  | 'prefixAttention'
  | 'prefixAttentionBack'
  | 'patches';

/** The encoder kernels; attention keeps grow-only score rows. */
export function encoderKernels(): Pick<Kernels, EncoderKernelNames> {
  let scores = new Float32Array(0); // (K + T) probabilities of one query
  let dscores = new Float32Array(0); // (K + T) their gradients

  /**
   * Row (b, h, t) of prefix attention: scores[j] = probability of key j, prompts first (j < K) then
   * the row's tokens (K + j); hidden keys get exactly 0. Returns false when no key is visible.
   */
  const probsRow = (
    q: Float32Array,
    k: Float32Array,
    pk: Float32Array,
    mask: Int32Array | null,
    causal: boolean,
    b: number,
    h: number,
    t: number,
    s: { T: number; K: number; H: number; Hkv: number; hs: number },
  ): boolean => {
    const { T, K, H, Hkv, hs } = s;
    const kvh = Math.floor(h / (H / Hkv)),
      qStride = H * hs,
      kvStride = Hkv * hs,
      scale = 1 / Math.sqrt(hs);
    if (scores.length < K + T) {
      scores = new Float32Array(K + T);
      dscores = new Float32Array(K + T);
    }
    const sc = scores,
      qo = (b * T + t) * qStride + h * hs;
    let max = -Infinity;
    for (let j = 0; j < K + T; j++) {
      const tok = j - K;
      if (tok >= 0 && ((mask && mask[b * T + tok] === 0) || (causal && tok > t))) {
        sc[j] = -Infinity;
        continue;
      }
      const src = tok < 0 ? pk : k,
        ko = tok < 0 ? j * kvStride + kvh * hs : (b * T + tok) * kvStride + kvh * hs;
      let d = 0;
      for (let i = 0; i < hs; i++) d += q[qo + i] * src[ko + i];
      sc[j] = d * scale;
      if (sc[j] > max) max = sc[j];
    }
    if (max === -Infinity) return false;
    let sum = 0;
    for (let j = 0; j < K + T; j++) sum += sc[j] = Math.exp(sc[j] - max);
    for (let j = 0; j < K + T; j++) sc[j] /= sum;
    return true;
  };

  const kernels: Pick<Kernels, EncoderKernelNames> = {
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

    layerNormBack(dx, dy, x, w, mean, rstd, rows, dim, accumulate) {
      // xhat = (x - mean) rstd, g = dy w: dx = rstd (g - mean(g) - xhat mean(g xhat))
      for (let r = 0; r < rows; r++) {
        const o = r * dim,
          mu = mean[r],
          rs = rstd[r];
        let sg = 0,
          sgx = 0;
        for (let i = 0; i < dim; i++) {
          const g = dy[o + i] * w[i];
          sg += g;
          sgx += g * (x[o + i] - mu) * rs;
        }
        sg /= dim;
        sgx /= dim;
        for (let i = 0; i < dim; i++) {
          const d = rs * (dy[o + i] * w[i] - sg - (x[o + i] - mu) * rs * sgx);
          dx[o + i] = accumulate ? dx[o + i] + d : d;
        }
      }
    },

    gelu(out, x, n, kind) {
      for (let i = 0; i < n; i++) out[i] = geluValue(x[i], kind);
    },

    geluBack(dx, dy, x, n, kind) {
      for (let i = 0; i < n; i++) dx[i] = dy[i] * geluGrad(x[i], kind);
    },

    biasAdd(x, bias, rows, dim) {
      for (let r = 0; r < rows; r++) for (let i = 0; i < dim; i++) x[r * dim + i] += bias[i];
    },

    encoderAttention(out, q, k, v, s) {
      kernels.prefixAttention(out, q, k, v, EMPTY, EMPTY, { B: s.B, T: s.T, K: 0, H: s.H, Hkv: s.Hkv, hs: s.hs }, null, false);
    },

    prefixAttention(out, q, k, v, pk, pv, s, mask, causal) {
      const { B, T, K, H, Hkv, hs } = s;
      const rep = H / Hkv,
        qStride = H * hs,
        kvStride = Hkv * hs;
      for (let b = 0; b < B; b++)
        for (let h = 0; h < H; h++) {
          const kvh = Math.floor(h / rep);
          for (let t = 0; t < T; t++) {
            const qo = (b * T + t) * qStride + h * hs;
            for (let i = 0; i < hs; i++) out[qo + i] = 0;
            if (!probsRow(q, k, pk, mask, causal, b, h, t, s)) continue; // no visible key: zero output
            for (let j = 0; j < K + T; j++) {
              const p = scores[j];
              if (p === 0) continue;
              const src = j < K ? pv : v,
                vo = j < K ? j * kvStride + kvh * hs : (b * T + j - K) * kvStride + kvh * hs;
              for (let i = 0; i < hs; i++) out[qo + i] += p * src[vo + i];
            }
          }
        }
    },

    prefixAttentionBack(dq, dk, dv, dpk, dpv, dout, q, k, v, pk, pv, s, mask, causal) {
      const { B, T, K, H, Hkv, hs } = s;
      const rep = H / Hkv,
        qStride = H * hs,
        kvStride = Hkv * hs,
        scale = 1 / Math.sqrt(hs);
      dq.fill(0, 0, B * T * qStride);
      dk.fill(0, 0, B * T * kvStride);
      dv.fill(0, 0, B * T * kvStride);
      for (let b = 0; b < B; b++)
        for (let h = 0; h < H; h++) {
          const kvh = Math.floor(h / rep);
          for (let t = 0; t < T; t++) {
            if (!probsRow(q, k, pk, mask, causal, b, h, t, s)) continue;
            const qo = (b * T + t) * qStride + h * hs;
            const pr = scores,
              dp = dscores;
            let dot = 0;
            for (let j = 0; j < K + T; j++) {
              const src = j < K ? pv : v,
                vo = j < K ? j * kvStride + kvh * hs : (b * T + j - K) * kvStride + kvh * hs;
              let d = 0;
              for (let i = 0; i < hs; i++) d += dout[qo + i] * src[vo + i];
              dp[j] = d;
              dot += pr[j] * d;
            }
            for (let j = 0; j < K + T; j++) {
              const p = pr[j];
              if (p === 0) continue;
              const ds = p * (dp[j] - dot) * scale;
              const ko = j < K ? j * kvStride + kvh * hs : (b * T + j - K) * kvStride + kvh * hs;
              const key = j < K ? pk : k,
                dkey = j < K ? dpk : dk,
                dval = j < K ? dpv : dv;
              for (let i = 0; i < hs; i++) {
                dq[qo + i] += ds * key[ko + i];
                dkey[ko + i] += ds * q[qo + i];
                dval[ko + i] += p * dout[qo + i];
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
  return kernels;
}

const EMPTY = new Float32Array(0);
