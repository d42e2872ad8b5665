// Plain-TypeScript attention kernels: causal self-attention over a KV cache, its backward, and
// the zero-init gated adaption-prompt branch with its backward. One softmax per branch (the two
// branches are normalised separately, as in LLaMA-Adapter).

import type { Kernels } from '../backend.js';

/**
 * sc[j] = exp(q·k_j * scale - max) for keys j < n (k_j at k[kBase + j*kvStride]); returns the sum.
 * Shared by attention(), its recomputation in attentionBack() (so both see the same values) and
 * promptAttention().
 */
function expScores(
  sc: Float32Array,
  q: Float32Array,
  qo: number,
  k: Float32Array,
  kBase: number,
  kvStride: number,
  n: number,
  hs: number,
  scale: number,
): number {
  let max = -Infinity;
  for (let j = 0; j < n; j++) {
    const ko = kBase + j * kvStride;
    let d = 0;
    for (let i = 0; i < hs; i++) d += q[qo + i] * k[ko + i];
    d *= scale;
    sc[j] = d;
    if (d > max) max = d;
  }
  let sum = 0;
  for (let j = 0; j < n; j++) {
    const e = Math.exp(sc[j] - max);
    sc[j] = e;
    sum += e;
  }
  return sum;
}

/** Heads per kv head, row strides of q (H*hs) and k/v (Hkv*hs), and the score scale 1/sqrt(hs). */
function heads(s: { H: number; Hkv: number; hs: number }): { rep: number; qStride: number; kvStride: number; scale: number } {
  return { rep: s.H / s.Hkv, qStride: s.H * s.hs, kvStride: s.Hkv * s.hs, scale: 1 / Math.sqrt(s.hs) };
}

/** The attention kernels with their own grow-only score rows (one set per TS backend). */
export function attentionKernels(): Pick<Kernels, 'attention' | 'attentionBack' | 'promptAttention' | 'promptAttentionBack'> {
  let scores = new Float32Array(0); // (S) or (K) row of scores for one query
  let dscores = new Float32Array(0);

  const ensure = (n: number): void => {
    if (scores.length < n) {
      scores = new Float32Array(n);
      dscores = new Float32Array(n);
    }
  };

  return {
    // kc/vc (nCacheRows, S, Hkv*hs): query row b reads cache row cacheRows[b] (b without cacheRows)
    attention(out, q, kc, vc, pos, s, cacheRows) {
      const { B, T, S, H, hs } = s;
      const { rep, qStride, kvStride, scale } = heads(s);
      ensure(S);
      const sc = scores;
      for (let b = 0; b < B; b++) {
        const cr = cacheRows ? cacheRows[b] : b;
        for (let h = 0; h < H; h++) {
          const kvh = Math.floor(h / rep);
          for (let t = 0; t < T; t++) {
            const n = pos[b] + t + 1; // keys 0..n-1 visible
            const qo = (b * T + t) * qStride + h * hs;
            const inv = 1 / expScores(sc, q, qo, kc, cr * S * kvStride + kvh * hs, kvStride, n, hs, scale);
            for (let i = 0; i < hs; i++) out[qo + i] = 0;
            for (let j = 0; j < n; j++) {
              const vo = (cr * S + j) * kvStride + kvh * hs;
              const p = sc[j] * inv;
              for (let i = 0; i < hs; i++) out[qo + i] += p * vc[vo + i];
            }
          }
        }
      }
    },

    attentionBack(dq, dk, dv, dout, q, k, v, s) {
      const { B, T, H, hs } = s;
      const S = T;
      const { rep, qStride, kvStride, scale } = heads(s);
      ensure(S);
      const dp = dscores,
        pr = scores;
      dq.fill(0, 0, B * T * qStride);
      dk.fill(0, 0, B * T * kvStride);
      dv.fill(0, 0, B * T * kvStride);
      for (let b = 0; b < B; b++) {
        for (let h = 0; h < H; h++) {
          const kvh = Math.floor(h / rep);
          for (let t = 0; t < T; t++) {
            const n = t + 1;
            const qo = (b * T + t) * qStride + h * hs;
            // the row's probabilities, recomputed as attention() computes them
            const inv = 1 / expScores(pr, q, qo, k, b * S * kvStride + kvh * hs, kvStride, n, hs, scale);
            for (let j = 0; j < n; j++) pr[j] *= inv;
            let dot = 0;
            for (let j = 0; j < n; j++) {
              const vo = (b * S + j) * kvStride + kvh * hs;
              let d = 0;
              for (let i = 0; i < hs; i++) d += dout[qo + i] * v[vo + i];
              dp[j] = d;
              dot += d * pr[j];
            }
            for (let j = 0; j < n; j++) {
              const p = pr[j];
              const ds = p * (dp[j] - dot) * scale;
              const ko = (b * S + j) * kvStride + kvh * hs;
              for (let i = 0; i < hs; i++) {
                dq[qo + i] += ds * k[ko + i];
                dk[ko + i] += ds * q[qo + i];
                dv[ko + i] += p * dout[qo + i];
              }
            }
          }
        }
      }
    },

    promptAttention(out, q, pk, pv, gate, s, probs) {
      const { B, T, K, H, hs } = s;
      const { rep, qStride, kvStride, scale } = heads(s);
      ensure(K);
      const sc = scores;
      for (let b = 0; b < B; b++) {
        for (let h = 0; h < H; h++) {
          const kvh = Math.floor(h / rep);
          const g = gate[h];
          for (let t = 0; t < T; t++) {
            const qo = (b * T + t) * qStride + h * hs;
            const inv = 1 / expScores(sc, q, qo, pk, kvh * hs, kvStride, K, hs, scale);
            const po = ((b * H + h) * T + t) * K;
            for (let j = 0; j < K; j++) {
              const p = sc[j] * inv;
              if (probs) probs[po + j] = p;
              if (g === 0) continue; // zero gate: the branch contributes exactly nothing
              const vo = j * kvStride + kvh * hs;
              const gp = g * p;
              for (let i = 0; i < hs; i++) out[qo + i] += gp * pv[vo + i];
            }
          }
        }
      }
    },

    promptAttentionBack(dq, dpk, dpv, dgate, dout, q, pk, pv, gate, probs, s) {
      const { B, T, K, H, hs } = s;
      const { rep, qStride, kvStride, scale } = heads(s);
      ensure(K);
      const dp = dscores;
      for (let b = 0; b < B; b++) {
        for (let h = 0; h < H; h++) {
          const kvh = Math.floor(h / rep);
          const g = gate[h];
          let dg = 0;
          for (let t = 0; t < T; t++) {
            const qo = (b * T + t) * qStride + h * hs;
            const po = ((b * H + h) * T + t) * K;
            // dP_j = g * dout · pv_j ; d gate = dout · sum_j P_j pv_j = sum_j P_j (dout · pv_j)
            let dot = 0;
            for (let j = 0; j < K; j++) {
              const vo = j * kvStride + kvh * hs;
              let d = 0;
              for (let i = 0; i < hs; i++) d += dout[qo + i] * pv[vo + i];
              const p = probs[po + j];
              dg += p * d;
              dp[j] = g * d;
              dot += p * g * d;
            }
            for (let j = 0; j < K; j++) {
              const p = probs[po + j];
              const ds = p * (dp[j] - dot) * scale;
              const ko = j * kvStride + kvh * hs;
              const gp = g * p;
              for (let i = 0; i < hs; i++) {
                if (dq) dq[qo + i] += ds * pk[ko + i];
                dpk[ko + i] += ds * q[qo + i];
                dpv[ko + i] += gp * dout[qo + i];
              }
            }
          }
          dgate[h] += dg;
        }
      }
    },
  };
}
