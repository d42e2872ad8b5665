// Attention kernels: causal attention over a KV cache (per-row start positions, GQA), its
// backward for full causal passes, and the LLaMA-Adapter gated prompt branch with its backward.
//
// Parallel work is split by query rows (b, h, t), claimed one at a time so that causal rows of
// different lengths balance across threads. Gradients that sum over many query rows (dk, dv, dpk, dpv,
// dgate) are formed in a second pass partitioned by their own rows, summing contributions in a
// fixed order, so results never depend on thread timing.

#include "common.h"

#include <vector>

namespace la {

namespace {

thread_local std::vector<float> t_row;  // per-thread score row (S or K)

float* row_scratch(size_t n) {
  if (t_row.size() < n) t_row.resize(n);
  return t_row.data();
}

inline void zero(float* p, long n) { std::memset(p, 0, n * sizeof(float)); }

#if LA_AVX512
// o (hs) = sum_j p_j v_j with p_j = p[j] * inv written back to p; NV = ceil(hs / 16) accumulators
// stay in registers across j (an axpy per j would round-trip o through memory every step). The
// FMA sequence per element is the same as zero + axpy per j, so results are identical.
template <int NV>
void attend_values_nv(float* o, float* p, float inv, const float* v, long stride, long n, int hs) {
  const __mmask16 last = tail_mask(hs - (NV - 1) * 16);
  __m512 acc[NV];
  for (int r = 0; r < NV; r++) acc[r] = _mm512_setzero_ps();
  for (long j = 0; j < n; j++) {
    const float pj = p[j] * inv;
    p[j] = pj;
    const __m512 pv = _mm512_set1_ps(pj);
    const float* vr = v + j * stride;
    for (int r = 0; r < NV - 1; r++) acc[r] = _mm512_fmadd_ps(pv, _mm512_loadu_ps(vr + 16 * r), acc[r]);
    acc[NV - 1] = _mm512_fmadd_ps(pv, _mm512_maskz_loadu_ps(last, vr + 16 * (NV - 1)), acc[NV - 1]);
  }
  for (int r = 0; r < NV - 1; r++) _mm512_storeu_ps(o + 16 * r, acc[r]);
  _mm512_mask_storeu_ps(o + 16 * (NV - 1), last, acc[NV - 1]);
}
#endif

// sc[j] = (q . k_j) * scale for j < n. Heads of up to 16 dims keep q in a register (the common
// dot() reloads it and branches per key); the sum is the same as dot()'s.
void attend_scores(float* sc, const float* q, const float* k, long stride, long n, int hs, float scale) {
#if LA_AVX512
  if (hs <= 16) {
    const __mmask16 m = tail_mask(hs);
    const __m512 qv = _mm512_maskz_loadu_ps(m, q);
    for (long j = 0; j < n; j++) sc[j] = _mm512_reduce_add_ps(_mm512_maskz_mul_ps(m, qv, _mm512_maskz_loadu_ps(m, k + j * stride))) * scale;
    return;
  }
#endif
  for (long j = 0; j < n; j++) sc[j] = dot(q, k + j * stride, hs) * scale;
}

void attend_values(float* o, float* p, float inv, const float* v, long stride, long n, int hs) {
#if LA_AVX512
  switch ((hs + 15) / 16) {
    case 1: return attend_values_nv<1>(o, p, inv, v, stride, n, hs);
    case 2: return attend_values_nv<2>(o, p, inv, v, stride, n, hs);
    case 3: return attend_values_nv<3>(o, p, inv, v, stride, n, hs);
    case 4: return attend_values_nv<4>(o, p, inv, v, stride, n, hs);
    case 5: return attend_values_nv<5>(o, p, inv, v, stride, n, hs);
    case 6: return attend_values_nv<6>(o, p, inv, v, stride, n, hs);
    case 7: return attend_values_nv<7>(o, p, inv, v, stride, n, hs);
    case 8: return attend_values_nv<8>(o, p, inv, v, stride, n, hs);
    default: break;
  }
#endif
  zero(o, hs);
  for (long j = 0; j < n; j++) {
    const float pj = p[j] * inv;
    p[j] = pj;
    axpy(o, pj, v + j * stride, hs);
  }
}

constexpr long kQB = 64;        // query rows per block on the GEMM path
constexpr long kGemmMinT = 16;  // query rows per call from which the forward uses the GEMM path

// P (nq, nkeys), rows ld apart = causal softmax(Q K^T * scale) for nq query rows (q rows qStride
// apart, k rows kvStride apart); row i sees keys 0 .. n0 + i and is zero beyond. One sgemm, so the
// forward and attention_back's recomputation produce the same bits for the same block.
void causal_softmax_block(float* P, long ld, const float* q, long qStride, const float* k, long kvStride, long nq, long nkeys, long hs,
                          float scale, long n0) {
  cblas_sgemm(kCblasRowMajor, kCblasNoTrans, kCblasTrans, static_cast<int>(nq), static_cast<int>(nkeys), static_cast<int>(hs), scale, q,
              static_cast<int>(qStride), k, static_cast<int>(kvStride), 0.0f, P, static_cast<int>(ld));
  for (long i = 0; i < nq; i++) {
    float* row = P + i * ld;
    const long n = n0 + i + 1;
    const float mx = vmax(row, static_cast<int>(n));
    la::scale(row, 1.0f / exp_sub_sum(row, mx, static_cast<int>(n)), n);
    zero(row + n, ld - n);
  }
}

}  // namespace

// out (B, T, H*hs), q (B, T, H*hs), kc/vc (nCacheRows, S, Hkv*hs), pos (B); query row b reads cache
// row cacheRows[b] (b when cacheRows is null).
// Few query rows (decode): one row per work item, dot products and axpys over the visible keys.
// Many rows (prefill, training): blocks of kQB query rows per (b, h), scores and outputs by
// single-threaded sgemm calls inside each work item (OpenBLAS runs one thread per caller).
void attention(float* out, const float* q, const float* kc, const float* vc, const int32_t* pos, const AttnShape& s,
               const int32_t* cacheRows) {
  const long B = s.B, T = s.T, S = s.S, H = s.H, Hkv = s.Hkv, hs = s.hs;
  const long rep = H / Hkv, qStride = H * hs, kvStride = Hkv * hs;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hs)));
  auto cacheRow = [&](long b) { return (cacheRows ? static_cast<long>(cacheRows[b]) : b) * S * kvStride; };
  double work = 0;
  for (long b = 0; b < B; b++) work += static_cast<double>(H) * T * (pos[b] + (T + 1) / 2.0) * hs * 4;
  const int nt = threads_for(work, 1 << 15);
  if (T >= kGemmMinT) {
    const long nQb = (T + kQB - 1) / kQB;
    parallel_items(B * H * nQb, nt, [&](long item) {
      const long qb = item % nQb, bh = item / nQb, h = bh % H, b = bh / H, kvh = h / rep;
      const long t0 = qb * kQB, t1 = t0 + kQB < T ? t0 + kQB : T, nq = t1 - t0;
      const long nmax = static_cast<long>(pos[b]) + t1;  // keys visible to the block's last row
      float* sc = row_scratch(static_cast<size_t>(nq * nmax));  // scores (nq, nmax)
      const float* kb = kc + cacheRow(b) + kvh * hs;
      const float* vb = vc + cacheRow(b) + kvh * hs;
      causal_softmax_block(sc, nmax, q + (b * T + t0) * qStride + h * hs, qStride, kb, kvStride, nq, nmax, hs, scale, pos[b] + t0);
      cblas_sgemm(kCblasRowMajor, kCblasNoTrans, kCblasNoTrans, static_cast<int>(nq), static_cast<int>(hs), static_cast<int>(nmax), 1.0f, sc,
                  static_cast<int>(nmax), vb, static_cast<int>(kvStride), 0.0f, out + (b * T + t0) * qStride + h * hs,
                  static_cast<int>(qStride));
    });
    return;
  }
  parallel_items(B * H * T, nt, [&](long item) {
    const long t = item % T, bh = item / T, h = bh % H, b = bh / H;
    const long kvh = h / rep;
    const long n = static_cast<long>(pos[b]) + t + 1;
    const float* qv = q + (b * T + t) * qStride + h * hs;
    const float* kb = kc + cacheRow(b) + kvh * hs;
    const float* vb = vc + cacheRow(b) + kvh * hs;
    float* sc = row_scratch(static_cast<size_t>(n));
    attend_scores(sc, qv, kb, kvStride, n, static_cast<int>(hs), scale);
    const float mx = vmax(sc, static_cast<int>(n));
    const float inv = 1.0f / exp_sub_sum(sc, mx, static_cast<int>(n));
    attend_values(out + (b * T + t) * qStride + h * hs, sc, inv, vb, kvStride, n, static_cast<int>(hs));
  });
}

// Full causal pass (pos = 0, S = T). dq (B, T, H*hs), dk/dv (B, T, Hkv*hs) overwritten.
// Per (b, h) and causal block of query rows [t0, t1) (keys [0, t1) only: about half the full TxT
// work), with single-threaded sgemm calls: the block's probabilities P are recomputed exactly as
// the forward's GEMM path computes them (same sgemm shape, same softmax), then
//   dP = dO V^T;  dS = P o (dP - rowsum(P o dP)) / sqrt(hs);  dQ = dS K;  dK_h += dS^T Q;  dV_h += P^T dO.
// Nothing (B, H, T, T)-sized is kept between forward and backward: P lives in a per-thread
// (64, T) block. With GQA the per-head dK_h / dV_h go to a scratch buffer and a second pass sums
// each group's heads in order (no racing accumulation).
void attention_back(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k, const float* v,
                    const AttnShape& s) {
  const long B = s.B, T = s.T, H = s.H, Hkv = s.Hkv, hs = s.hs;
  const long rep = H / Hkv, qStride = H * hs, kvStride = Hkv * hs;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hs)));
  const int nt = threads_for(static_cast<double>(B) * H * T * T * hs * 8, 1 << 15);
  // Per-head key/value gradients (2, B, T, H, hs) when heads share a KV head (grow-only: a fresh
  // allocation per call paged in 16 MB per layer on large).
  thread_local std::vector<float> t_part;
  if (rep > 1 && t_part.size() < static_cast<size_t>(2 * B * T * H * hs)) t_part.resize(static_cast<size_t>(2 * B * T * H * hs));
  float* part = t_part.data();
  const int ihs = static_cast<int>(hs), iq = static_cast<int>(qStride), ikv = static_cast<int>(kvStride);
  parallel_items(B * H, nt, [&](long item) {
    const long h = item % H, b = item / H, kvh = h / rep;
    const float* dO = dout + b * T * qStride + h * hs;
    const float* Q = q + b * T * qStride + h * hs;
    const float* Kg = k + b * T * kvStride + kvh * hs;
    const float* Vg = v + b * T * kvStride + kvh * hs;
    float* dKh = rep > 1 ? part + b * T * qStride + h * hs : dk + b * T * kvStride + kvh * hs;
    float* dVh = rep > 1 ? part + (B + b) * T * qStride + h * hs : dv + b * T * kvStride + kvh * hs;
    const int ld = rep > 1 ? iq : ikv;
    // Last block first: it writes every dK/dV row (beta 0), the earlier ones add to the rows they see.
    const long nQb = (T + kQB - 1) / kQB;
    float* pb = row_scratch(static_cast<size_t>(2 * kQB * T));  // (nq, t1) probabilities
    float* dp = pb + kQB * T;                                  // (nq, t1) dP, then dS
    for (long qb = nQb - 1; qb >= 0; qb--) {
      const long t0 = qb * kQB, t1 = t0 + kQB < T ? t0 + kQB : T, nq = t1 - t0;
      const int inq = static_cast<int>(nq), it1 = static_cast<int>(t1);
      const float beta = qb == nQb - 1 ? 0.0f : 1.0f;
      causal_softmax_block(pb, t1, Q + t0 * qStride, qStride, Kg, kvStride, nq, t1, hs, scale, t0);
      cblas_sgemm(kCblasRowMajor, kCblasNoTrans, kCblasTrans, inq, it1, ihs, 1.0f, dO + t0 * qStride, iq, Vg, ikv, 0.0f, dp, it1);
      for (long i = 0; i < nq; i++) {
        const long t = t0 + i;
        const float* pr = pb + i * t1;
        float* d = dp + i * t1;
        double dotv = 0;
        for (long j = 0; j <= t; j++) dotv += static_cast<double>(pr[j]) * d[j];
        const float dotf = static_cast<float>(dotv);
        for (long j = 0; j <= t; j++) d[j] = pr[j] * (d[j] - dotf) * scale;
        zero(d + t + 1, t1 - t - 1);
      }
      cblas_sgemm(kCblasRowMajor, kCblasNoTrans, kCblasNoTrans, inq, ihs, it1, 1.0f, dp, it1, Kg, ikv, 0.0f, dq + (b * T + t0) * qStride + h * hs, iq);
      cblas_sgemm(kCblasRowMajor, kCblasTrans, kCblasNoTrans, it1, ihs, inq, 1.0f, dp, it1, Q + t0 * qStride, iq, beta, dKh, ld);
      cblas_sgemm(kCblasRowMajor, kCblasTrans, kCblasNoTrans, it1, ihs, inq, 1.0f, pb, it1, dO + t0 * qStride, iq, beta, dVh, ld);
    }
  });
  if (rep == 1) return;
  // dK/dV rows (b, j, kvh) = sum over the group's heads, in head order.
  parallel_for(B * T, threads_for(static_cast<double>(B) * T * H * hs * 2, 1 << 15), [&](long r0, long r1) {
    for (long r = r0; r < r1; r++) {
      for (long kvh = 0; kvh < Hkv; kvh++) {
        float* dkr = dk + r * kvStride + kvh * hs;
        float* dvr = dv + r * kvStride + kvh * hs;
        const float* pk = part + r * qStride + kvh * rep * hs;
        const float* pv = part + (B * T + r) * qStride + kvh * rep * hs;
        std::memcpy(dkr, pk, hs * sizeof(float));
        std::memcpy(dvr, pv, hs * sizeof(float));
        for (long hh = 1; hh < rep; hh++) {
          for (long i = 0; i < hs; i++) dkr[i] += pk[hh * hs + i];
          for (long i = 0; i < hs; i++) dvr[i] += pv[hh * hs + i];
        }
      }
    }
  });
}

// out (B, T, H*hs) += gate[h] softmax(q pk^T / sqrt(hs)) pv; pk/pv (K, Hkv*hs); probs (B, H, T, K).
// A head with gate exactly 0 leaves out untouched (bit for bit).
void prompt_attention(float* out, const float* q, const float* pk, const float* pv, const float* gate, const PromptShape& s, float* probs) {
  const long B = s.B, T = s.T, K = s.K, H = s.H, Hkv = s.Hkv, hs = s.hs;
  const long rep = H / Hkv, qStride = H * hs, kvStride = Hkv * hs;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hs)));
  const int nt = threads_for(static_cast<double>(B) * H * T * K * hs * 4, 1 << 15);
  parallel_for(B * H * T, nt, [&](long i0, long i1) {
    float* sc = row_scratch(static_cast<size_t>(K));
    for (long item = i0; item < i1; item++) {
      const long t = item % T, bh = item / T, h = bh % H, b = bh / H;
      const long kvh = h / rep;
      const float g = gate[h];
      const float* qv = q + (b * T + t) * qStride + h * hs;
      for (long j = 0; j < K; j++) sc[j] = dot(qv, pk + j * kvStride + kvh * hs, static_cast<int>(hs)) * scale;
      const float mx = vmax(sc, static_cast<int>(K));
      const float inv = 1.0f / exp_sub_sum(sc, mx, static_cast<int>(K));
      for (long j = 0; j < K; j++) sc[j] *= inv;
      if (probs) std::memcpy(probs + item * K, sc, K * sizeof(float));
      if (g == 0.0f) continue;  // zero gate: the branch contributes exactly nothing
      float* o = out + (b * T + t) * qStride + h * hs;
      for (long j = 0; j < K; j++) axpy(o, g * sc[j], pv + j * kvStride + kvh * hs, static_cast<int>(hs));
    }
  });
}

// dq (accumulate, may be null), dpk/dpv (K, Hkv*hs) (accumulate), dgate (H) (accumulate).
void prompt_attention_back(float* dq, float* dpk, float* dpv, float* dgate, const float* dout, const float* q, const float* pk,
                           const float* pv, const float* gate, const float* probs, const PromptShape& s) {
  const long B = s.B, T = s.T, K = s.K, H = s.H, Hkv = s.Hkv, hs = s.hs;
  const long rep = H / Hkv, qStride = H * hs, kvStride = Hkv * hs;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hs)));
  const long rows = B * H * T;  // query rows (b, h, t), probs order
  // Grow-only scratch of the calling thread (no allocation per call).
  thread_local std::vector<float> t_ds;   // (B, H, T, K)
  thread_local std::vector<double> t_dg;  // (B, H, T)
  if (t_ds.size() < static_cast<size_t>(rows * K)) t_ds.resize(static_cast<size_t>(rows * K));
  if (t_dg.size() < static_cast<size_t>(rows)) t_dg.resize(static_cast<size_t>(rows));
  float* ds = t_ds.data();
  double* dg = t_dg.data();
  const int nt = threads_for(static_cast<double>(rows) * K * hs * 6, 1 << 15);

  // Pass 1: per query row: d_j = dout · pv_j, dgate part, ds row, dq row.
  parallel_for(rows, nt, [&](long i0, long i1) {
    for (long item = i0; item < i1; item++) {
      const long t = item % T, bh = item / T, h = bh % H, b = bh / H;
      const long kvh = h / rep;
      const float g = gate[h];
      const float* go = dout + (b * T + t) * qStride + h * hs;
      const float* pr = probs + item * K;
      float* dsr = ds + item * K;
      double dgs = 0, dotv = 0;
      for (long j = 0; j < K; j++) {
        const float d = dot(go, pv + j * kvStride + kvh * hs, static_cast<int>(hs));
        dgs += static_cast<double>(pr[j]) * d;
        dsr[j] = g * d;
        dotv += static_cast<double>(pr[j]) * dsr[j];
      }
      dg[item] = dgs;
      const float dotf = static_cast<float>(dotv);
      for (long j = 0; j < K; j++) dsr[j] = pr[j] * (dsr[j] - dotf) * scale;
      if (dq) {
        float* dqr = dq + (b * T + t) * qStride + h * hs;
        for (long j = 0; j < K; j++) axpy(dqr, dsr[j], pk + j * kvStride + kvh * hs, static_cast<int>(hs));
      }
    }
  });
  // Pass 2: per prompt row (kvh, j): sum over (b, hh, t) in order.
  parallel_for(Hkv * K, nt, [&](long i0, long i1) {
    for (long item = i0; item < i1; item++) {
      const long j = item % K, kvh = item / K;
      float* dkr = dpk + j * kvStride + kvh * hs;
      float* dvr = dpv + j * kvStride + kvh * hs;
      for (long b = 0; b < B; b++)
        for (long hh = 0; hh < rep; hh++) {
          const long h = kvh * rep + hh;
          const float g = gate[h];
          for (long t = 0; t < T; t++) {
            const long row = (b * H + h) * T + t;
            const float* qt = q + (b * T + t) * qStride + h * hs;
            const float* gt = dout + (b * T + t) * qStride + h * hs;
            axpy(dkr, ds[row * K + j], qt, static_cast<int>(hs));
            axpy(dvr, g * probs[row * K + j], gt, static_cast<int>(hs));
          }
        }
    }
  });
  // dgate[h] += sum_t per (b, h), b in order (as the oracle does).
  for (long h = 0; h < H; h++)
    for (long b = 0; b < B; b++) {
      double acc = 0;
      for (long t = 0; t < T; t++) acc += dg[(b * H + h) * T + t];
      dgate[h] += static_cast<float>(acc);
    }
}

}  // namespace la
