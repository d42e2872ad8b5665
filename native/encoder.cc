// Kernels of the encoders (ViT / CLIP towers, RoBERTa): LayerNorm, the GELU family, bias add, the
// patch layout of the patch embedding, and prefix attention (K shared prompt keys/values in one
// softmax with the row's own keys, a key padding mask, optionally causal; K = 0 and no mask is the
// plain bidirectional attention of encoderAttention), with the backward kernels training needs
// (LayerNorm, GELU, prefix attention). Written once over Highway (compiled per SIMD target,
// dispatched at run time: cpu.cc); the oracle is src/backend/ts/encoder.ts. Row statistics
// accumulate in double in a fixed order; attention runs its products per block of query rows as
// single-threaded sgemm calls, parallel over (row, head, block) forward and (row, head) backward;
// gradients summed over heads or rows are reduced in a fixed order afterwards, so results do not
// depend on thread timing.

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "encoder.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "hwy/highway.h"
#include "common.h"
#include "simd-inl.h"

#include <vector>

HWY_BEFORE_NAMESPACE();
namespace la {
namespace HWY_NAMESPACE {

thread_local std::vector<float> t_scores;  // per-thread (block, K + T) probabilities (forward)
thread_local std::vector<float> t_back;    // per-thread 2 x (block, K + T): probabilities and their gradients (backward)
constexpr long kBackQB = 64;               // backward: query rows per block

void LayerNormRows(float* out, const float* x, const float* w, const float* b, long r0, long r1, long dim, float eps, float* mean, float* rstd) {
  const DF d;
  const long N = static_cast<long>(hn::Lanes(d));
  for (long r = r0; r < r1; r++) {
    const float* xr = x + r * dim;
    float* o = out + r * dim;
    double s = 0;
    for (long i = 0; i < dim; i++) s += xr[i];
    const double mu = s / dim;
    double v = 0;
    for (long i = 0; i < dim; i++) v += (xr[i] - mu) * (xr[i] - mu);
    const float rs = static_cast<float>(1.0 / std::sqrt(v / dim + eps));
    const float m = static_cast<float>(mu);
    if (mean) mean[r] = m;
    if (rstd) rstd[r] = rs;
    const VF mv = hn::Set(d, m), sv = hn::Set(d, rs);
    long i = 0;
    for (; i + N <= dim; i += N)
      hn::StoreU(hn::MulAdd(hn::Mul(hn::Sub(hn::LoadU(d, xr + i), mv), sv), hn::LoadU(d, w + i), hn::LoadU(d, b + i)), d, o + i);
    for (; i < dim; i++) o[i] = (xr[i] - m) * rs * w[i] + b[i];
  }
}

// erfc(z), z >= 0: the rational form of src/backend/ts/encoder.ts (erfcPos), fractional error < 1.2e-7.
HWY_INLINE VF ErfcPos(DF d, VF z) {
  const VF one = hn::Set(d, 1.0f);
  const VF t = hn::Div(one, hn::MulAdd(hn::Set(d, 0.5f), z, one));
  VF p = hn::Set(d, 0.17087277f);
  for (float c : {-0.82215223f, 1.48851587f, -1.13520398f, 0.27886807f, -0.18628806f, 0.09678418f, 0.37409196f, 1.00002368f, -1.26551223f})
    p = hn::MulAdd(p, t, hn::Set(d, c));
  return hn::Mul(t, Exp(d, hn::Sub(p, hn::Mul(z, z))));
}

HWY_INLINE VF GeluVec(DF d, VF x, int kind) {
  const VF one = hn::Set(d, 1.0f), half = hn::Set(d, 0.5f);
  if (kind == 2) return hn::Div(x, hn::Add(one, Exp(d, hn::Mul(hn::Set(d, -1.702f), x))));  // quick_gelu
  if (kind == 1) {                                                                           // tanh form: tanh(u) = 1 - 2 / (exp(2u) + 1)
    const VF u = hn::Mul(hn::Set(d, 0.7978845608028654f), hn::MulAdd(hn::Mul(hn::Set(d, 0.044715f), x), hn::Mul(x, x), x));
    const VF th = hn::Sub(one, hn::Div(hn::Set(d, 2.0f), hn::Add(Exp(d, hn::Add(u, u)), one)));
    return hn::Mul(hn::Mul(half, x), hn::Add(one, th));
  }
  // erf GELU: 0.5 x (1 + erf(x / sqrt 2)), erf(z) = sign(z) (1 - erfc(|z|))
  const VF z = hn::Mul(x, hn::Set(d, 0.7071067811865476f));
  const VF e = hn::Sub(one, ErfcPos(d, hn::Abs(z)));
  return hn::Mul(hn::Mul(half, x), hn::Add(one, hn::CopySignToAbs(e, z)));
}

// d act(x) / dx (see GeluVec).
HWY_INLINE VF GeluGradVec(DF d, VF x, int kind) {
  const VF one = hn::Set(d, 1.0f), half = hn::Set(d, 0.5f);
  if (kind == 2) {  // s + 1.702 x s (1 - s)
    const VF sg = hn::Div(one, hn::Add(one, Exp(d, hn::Mul(hn::Set(d, -1.702f), x))));
    return hn::MulAdd(hn::Mul(hn::Mul(hn::Set(d, 1.702f), x), sg), hn::Sub(one, sg), sg);
  }
  if (kind == 1) {  // 0.5 (1 + th) + 0.5 x (1 - th^2) c (1 + 3 a x^2)
    const VF c = hn::Set(d, 0.7978845608028654f), a = hn::Set(d, 0.044715f);
    const VF u = hn::Mul(c, hn::MulAdd(hn::Mul(a, x), hn::Mul(x, x), x));
    const VF th = hn::Sub(one, hn::Div(hn::Set(d, 2.0f), hn::Add(Exp(d, hn::Add(u, u)), one)));
    const VF du = hn::Mul(c, hn::MulAdd(hn::Mul(hn::Set(d, 3.0f), a), hn::Mul(x, x), one));
    return hn::MulAdd(hn::Mul(hn::Mul(half, x), hn::NegMulAdd(th, th, one)), du, hn::Mul(half, hn::Add(one, th)));
  }
  // Phi(x) + x phi(x)
  const VF z = hn::Mul(x, hn::Set(d, 0.7071067811865476f));
  const VF e = hn::Sub(one, ErfcPos(d, hn::Abs(z)));
  const VF phi = hn::Mul(hn::Set(d, 0.3989422804014327f), Exp(d, hn::Mul(hn::Set(d, -0.5f), hn::Mul(x, x))));
  return hn::MulAdd(x, phi, hn::Mul(half, hn::Add(one, hn::CopySignToAbs(e, z))));
}

// out = act(x), or with dy: out = dy act'(x) (the backward).
void GeluRange(float* out, const float* x, const float* dy, long i0, long i1, int kind) {
  const DF d;
  const long N = static_cast<long>(hn::Lanes(d));
  for (long i = i0; i < i1; i += N) {
    const size_t k = static_cast<size_t>(i1 - i < N ? i1 - i : N);
    const bool full = static_cast<long>(k) == N;
    const VF xv = full ? hn::LoadU(d, x + i) : LoadPart(d, x + i, k);
    const VF r = dy ? hn::Mul(full ? hn::LoadU(d, dy + i) : LoadPart(d, dy + i, k), GeluGradVec(d, xv, kind)) : GeluVec(d, xv, kind);
    if (full) hn::StoreU(r, d, out + i);
    else StorePart(d, r, out + i, k);
  }
}

void BiasAddRows(float* x, const float* bias, long r0, long r1, long dim) {
  const DF d;
  const long N = static_cast<long>(hn::Lanes(d));
  for (long r = r0; r < r1; r++) {
    float* xr = x + r * dim;
    long i = 0;
    for (; i + N <= dim; i += N) hn::StoreU(hn::Add(hn::LoadU(d, xr + i), hn::LoadU(d, bias + i)), d, xr + i);
    for (; i < dim; i++) xr[i] += bias[i];
  }
}

void LayerNormBackRows(float* dx, const float* dy, const float* x, const float* w, const float* mean, const float* rstd, long r0, long r1, long dim,
                       bool acc) {
  const DF d;
  const long N = static_cast<long>(hn::Lanes(d));
  for (long r = r0; r < r1; r++) {
    const float* xr = x + r * dim;
    const float* gr = dy + r * dim;
    float* o = dx + r * dim;
    const float mu = mean[r], rs = rstd[r];
    double sg = 0, sgx = 0;
    for (long i = 0; i < dim; i++) {
      const double g = static_cast<double>(gr[i]) * w[i];
      sg += g;
      sgx += g * ((static_cast<double>(xr[i]) - mu) * rs);
    }
    const float mg = static_cast<float>(sg / dim), mgx = static_cast<float>(sgx / dim);
    // d = rs (dy w - mean(g) - xhat mean(g xhat)), xhat = (x - mu) rs
    const VF rv = hn::Set(d, rs), muv = hn::Set(d, mu), mgv = hn::Set(d, mg), mgxv = hn::Set(d, mgx);
    long i = 0;
    for (; i + N <= dim; i += N) {
      const VF xh = hn::Mul(hn::Sub(hn::LoadU(d, xr + i), muv), rv);
      VF v = hn::Mul(rv, hn::Sub(hn::Sub(hn::Mul(hn::LoadU(d, gr + i), hn::LoadU(d, w + i)), mgv), hn::Mul(xh, mgxv)));
      if (acc) v = hn::Add(v, hn::LoadU(d, o + i));
      hn::StoreU(v, d, o + i);
    }
    for (; i < dim; i++) {
      const float v = rs * (gr[i] * w[i] - mg - (xr[i] - mu) * rs * mgx);
      o[i] = acc ? o[i] + v : v;
    }
  }
}

// x[i] = exp(x[i] - sub), exactly 0 where x[i] is -inf (a hidden key); returns the sum (the same
// order and values as ExpSubSum where nothing is hidden).
HWY_INLINE float ExpSubSumHidden(float* HWY_RESTRICT x, float sub, long n) {
  const DF d;
  const long N = static_cast<long>(hn::Lanes(d));
  const VF mv = hn::Set(d, sub), ninf = hn::Set(d, -INFINITY);
  VF s = hn::Zero(d);
  long i = 0;
  for (; i + N <= n; i += N) {
    const VF xv = hn::LoadU(d, x + i);
    const VF e = hn::IfThenZeroElse(hn::Eq(xv, ninf), Exp(d, hn::Sub(xv, mv)));
    hn::StoreU(e, d, x + i);
    s = hn::Add(s, e);
  }
  if (i < n) {
    const size_t k = static_cast<size_t>(n - i);
    const VF xv = LoadPart(d, x + i, k);
    const VF e = hn::IfThenElseZero(hn::FirstN(d, k), hn::IfThenZeroElse(hn::Eq(xv, ninf), Exp(d, hn::Sub(xv, mv))));
    StorePart(d, e, x + i, k);
    s = hn::Add(s, e);
  }
  return ReduceSum(d, s);
}

// P (nq, K + T), rows ld apart: the probabilities of query rows [t0, t0 + nq) of one (row, head) over
// [prompt keys; token keys] (q rows qStride apart, keys kvStride apart); token key j is hidden when
// mask (this row's T entries, or null) is 0 there or, if causal, j > t0 + i. Hidden keys get 0; a
// query that sees no key gets a zero row. One sgemm per part, so the forward and the backward's
// recomputation produce the same bits for the same block.
void PrefixProbs(float* P, long ld, const float* q, long qStride, const float* pk, const float* k, long kvStride, long nq, long K, long T, long hs,
                 float scale, const int32_t* mask, bool causal, long t0) {
  const int inq = static_cast<int>(nq), ihs = static_cast<int>(hs), iq = static_cast<int>(qStride), ikv = static_cast<int>(kvStride),
            ild = static_cast<int>(ld);
  if (K > 0) cblas_sgemm(kCblasRowMajor, kCblasNoTrans, kCblasTrans, inq, static_cast<int>(K), ihs, scale, q, iq, pk, ikv, 0.0f, P, ild);
  if (T > 0) cblas_sgemm(kCblasRowMajor, kCblasNoTrans, kCblasTrans, inq, static_cast<int>(T), ihs, scale, q, iq, k, ikv, 0.0f, P + K, ild);
  const long n = K + T;
  for (long i = 0; i < nq; i++) {
    float* row = P + i * ld;
    if (mask || causal)
      for (long j = 0; j < T; j++)
        if ((mask && mask[j] == 0) || (causal && j > t0 + i)) row[K + j] = -INFINITY;
    const float m = Max(row, n);
    if (m == -INFINITY) {
      std::memset(row, 0, n * sizeof(float));
      continue;
    }
    Scale(row, 1.0f / ExpSubSumHidden(row, m, n), n);
  }
}

// Forward, query rows [t0, t0 + nq) of head h of row b: out = P_prompts pv + P_tokens v.
void PrefixAttnBlock(float* out, const float* q, const float* pk, const float* pv, const float* k, const float* v, long qStride, long kvStride, long nq,
                     long K, long T, long hs, float scale, const int32_t* mask, bool causal, long t0) {
  const long n = K + T;
  if (t_scores.size() < static_cast<size_t>(nq * n)) t_scores.resize(static_cast<size_t>(nq * n));
  float* P = t_scores.data();
  PrefixProbs(P, n, q, qStride, pk, k, kvStride, nq, K, T, hs, scale, mask, causal, t0);
  const int inq = static_cast<int>(nq), ihs = static_cast<int>(hs), iq = static_cast<int>(qStride), ikv = static_cast<int>(kvStride),
            in = static_cast<int>(n);
  if (K > 0) cblas_sgemm(kCblasRowMajor, kCblasNoTrans, kCblasNoTrans, inq, ihs, static_cast<int>(K), 1.0f, P, in, pv, ikv, 0.0f, out, iq);
  if (T > 0) cblas_sgemm(kCblasRowMajor, kCblasNoTrans, kCblasNoTrans, inq, ihs, static_cast<int>(T), 1.0f, P + K, in, v, ikv, K > 0 ? 1.0f : 0.0f, out, iq);
}

// Backward of one (row, head), query blocks in order: P recomputed per block, then
//   dP = dO [pv; v]^T;  dS = P o (dP - rowsum(P o dP)) / sqrt(hs);  dQ = dS [pk; k];
//   dK_h (+)= dS_tok^T Q;  dV_h (+)= P_tok^T dO;  dPK_h (+)= dS_prm^T Q;  dPV_h (+)= P_prm^T dO.
// dK_h / dV_h rows are ldkv apart; dPK_h / dPV_h are (K, hs) blocks of this head's own.
void PrefixBackHead(float* dq, float* dKh, float* dVh, long ldkv, float* dPKh, float* dPVh, const float* dO, const float* Q, const float* PK,
                    const float* PV, const float* Kg, const float* Vg, long T, long K, long qStride, long kvStride, long hs, float scale,
                    const int32_t* mask, bool causal) {
  const long n = K + T, nQb = (T + kBackQB - 1) / kBackQB;
  if (nQb == 0) {
    std::memset(dPKh, 0, K * hs * sizeof(float));
    std::memset(dPVh, 0, K * hs * sizeof(float));
    return;
  }
  if (t_back.size() < static_cast<size_t>(2 * kBackQB * n)) t_back.resize(static_cast<size_t>(2 * kBackQB * n));
  float* pb = t_back.data();    // (nq, n) probabilities
  float* dp = pb + kBackQB * n;  // (nq, n) dP, then dS
  const int ihs = static_cast<int>(hs), iq = static_cast<int>(qStride), ikv = static_cast<int>(kvStride), in = static_cast<int>(n),
            iK = static_cast<int>(K), iT = static_cast<int>(T), ild = static_cast<int>(ldkv);
  for (long qb = 0; qb < nQb; qb++) {
    const long t0 = qb * kBackQB, nq = T - t0 < kBackQB ? T - t0 : kBackQB;
    const int inq = static_cast<int>(nq);
    const float beta = qb == 0 ? 0.0f : 1.0f;
    const float* Qb = Q + t0 * qStride;
    const float* dOb = dO + t0 * qStride;
    PrefixProbs(pb, n, Qb, qStride, PK, Kg, kvStride, nq, K, T, hs, scale, mask, causal, t0);
    if (K > 0) cblas_sgemm(kCblasRowMajor, kCblasNoTrans, kCblasTrans, inq, iK, ihs, 1.0f, dOb, iq, PV, ikv, 0.0f, dp, in);
    cblas_sgemm(kCblasRowMajor, kCblasNoTrans, kCblasTrans, inq, iT, ihs, 1.0f, dOb, iq, Vg, ikv, 0.0f, dp + K, in);
    for (long i = 0; i < nq; i++) SoftmaxBackRow(pb + i * n, dp + i * n, n, scale);
    float* dqb = dq + t0 * qStride;
    if (K > 0) cblas_sgemm(kCblasRowMajor, kCblasNoTrans, kCblasNoTrans, inq, ihs, iK, 1.0f, dp, in, PK, ikv, 0.0f, dqb, iq);
    cblas_sgemm(kCblasRowMajor, kCblasNoTrans, kCblasNoTrans, inq, ihs, iT, 1.0f, dp + K, in, Kg, ikv, K > 0 ? 1.0f : 0.0f, dqb, iq);
    cblas_sgemm(kCblasRowMajor, kCblasTrans, kCblasNoTrans, iT, ihs, inq, 1.0f, dp + K, in, Qb, iq, beta, dKh, ild);
    cblas_sgemm(kCblasRowMajor, kCblasTrans, kCblasNoTrans, iT, ihs, inq, 1.0f, pb + K, in, dOb, iq, beta, dVh, ild);
    if (K > 0) {
      cblas_sgemm(kCblasRowMajor, kCblasTrans, kCblasNoTrans, iK, ihs, inq, 1.0f, dp, in, Qb, iq, beta, dPKh, ihs);
      cblas_sgemm(kCblasRowMajor, kCblasTrans, kCblasNoTrans, iK, ihs, inq, 1.0f, pb, in, dOb, iq, beta, dPVh, ihs);
    }
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace la
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <cstring>

namespace la {

HWY_EXPORT(LayerNormRows);
HWY_EXPORT(GeluRange);
HWY_EXPORT(BiasAddRows);
HWY_EXPORT(LayerNormBackRows);
HWY_EXPORT(PrefixAttnBlock);
HWY_EXPORT(PrefixBackHead);

namespace {
constexpr double kGrain = 1 << 16;  // elements per thread below which a streaming kernel stays single-threaded
constexpr long kBlock = 64;         // elementwise ranges split in whole blocks (a multiple of every target's lanes)
constexpr long kEncQB = 64;         // attention: query rows per block
}  // namespace

void layer_norm(float* out, const float* x, const float* w, const float* b, long rows, long dim, float eps, float* mean, float* rstd) {
  parallel_for(rows, threads_for(static_cast<double>(rows) * dim * 3, kGrain),
               [&](long r0, long r1) { HWY_DYNAMIC_DISPATCH(LayerNormRows)(out, x, w, b, r0, r1, dim, eps, mean, rstd); });
}

void gelu(float* out, const float* x, long n, long kind) {
  parallel_for((n + kBlock - 1) / kBlock, threads_for(n * 16.0, kGrain), [&](long v0, long v1) {
    HWY_DYNAMIC_DISPATCH(GeluRange)(out, x, nullptr, v0 * kBlock, v1 * kBlock < n ? v1 * kBlock : n, static_cast<int>(kind));
  });
}

void bias_add(float* x, const float* bias, long rows, long dim) {
  parallel_for(rows, threads_for(static_cast<double>(rows) * dim, kGrain * 4),
               [&](long r0, long r1) { HWY_DYNAMIC_DISPATCH(BiasAddRows)(x, bias, r0, r1, dim); });
}

void layer_norm_back(float* dx, const float* dy, const float* x, const float* w, const float* mean, const float* rstd, long rows, long dim,
                     bool accumulate) {
  parallel_for(rows, threads_for(static_cast<double>(rows) * dim * 6, kGrain),
               [&](long r0, long r1) { HWY_DYNAMIC_DISPATCH(LayerNormBackRows)(dx, dy, x, w, mean, rstd, r0, r1, dim, accumulate); });
}

void gelu_back(float* dx, const float* dy, const float* x, long n, long kind) {
  parallel_for((n + kBlock - 1) / kBlock, threads_for(n * 24.0, kGrain), [&](long v0, long v1) {
    HWY_DYNAMIC_DISPATCH(GeluRange)(dx, x, dy, v0 * kBlock, v1 * kBlock < n ? v1 * kBlock : n, static_cast<int>(kind));
  });
}

void encoder_attention(float* out, const float* q, const float* k, const float* v, const AttnShape& s) {
  prefix_attention(out, q, k, v, nullptr, nullptr, PromptShape{s.B, s.T, 0, s.H, s.Hkv, s.hs}, nullptr, false);
}

void prefix_attention(float* out, const float* q, const float* k, const float* v, const float* pk, const float* pv, const PromptShape& s,
                      const int32_t* mask, bool causal) {
  const long T = s.T, K = s.K, H = s.H, hs = s.hs, rep = s.H / s.Hkv, qStride = H * hs, kvStride = s.Hkv * hs;
  const long blocks = (T + kEncQB - 1) / kEncQB;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hs)));
  parallel_items(s.B * H * blocks, threads_for(2.0 * s.B * H * T * (T + K) * hs, 1 << 15), [&](long item) {
    const long blk = item % blocks, bh = item / blocks, h = bh % H, b = bh / H, kvh = h / rep;
    const long t0 = blk * kEncQB, nq = T - t0 < kEncQB ? T - t0 : kEncQB;
    HWY_DYNAMIC_DISPATCH(PrefixAttnBlock)(out + (b * T + t0) * qStride + h * hs, q + (b * T + t0) * qStride + h * hs, pk ? pk + kvh * hs : nullptr,
                                          pv ? pv + kvh * hs : nullptr, k + b * T * kvStride + kvh * hs, v + b * T * kvStride + kvh * hs, qStride,
                                          kvStride, nq, K, T, hs, scale, mask ? mask + b * T : nullptr, causal, t0);
  });
}

// dq (B, T, H*hs), dk/dv (B, T, Hkv*hs) overwritten; dpk/dpv (K, Hkv*hs) accumulate. Parallel over
// (row, head); with GQA the per-head dK_h / dV_h go to scratch and each group's heads are summed in
// order afterwards; the per-(row, head) prompt gradients are summed over rows and heads in order.
void prefix_attention_back(float* dq, float* dk, float* dv, float* dpk, float* dpv, const float* dout, const float* q, const float* k, const float* v,
                           const float* pk, const float* pv, const PromptShape& s, const int32_t* mask, bool causal) {
  const long B = s.B, T = s.T, K = s.K, H = s.H, Hkv = s.Hkv, hs = s.hs, rep = H / Hkv, qStride = H * hs, kvStride = Hkv * hs;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hs)));
  thread_local std::vector<float> t_part, t_ppart;  // (2, B, T, H, hs) per-head dK/dV with GQA; (2, B, H, K, hs) per-head prompt grads
  if (rep > 1 && t_part.size() < static_cast<size_t>(2 * B * T * qStride)) t_part.resize(static_cast<size_t>(2 * B * T * qStride));
  if (t_ppart.size() < static_cast<size_t>(2 * B * H * K * hs)) t_ppart.resize(static_cast<size_t>(2 * B * H * K * hs));
  float* part = t_part.data();
  float* ppart = t_ppart.data();
  parallel_items(B * H, threads_for(4.0 * B * H * T * (T + K) * hs, 1 << 15), [&](long item) {
    const long h = item % H, b = item / H, kvh = h / rep;
    float* dKh = rep > 1 ? part + b * T * qStride + h * hs : dk + b * T * kvStride + kvh * hs;
    float* dVh = rep > 1 ? part + (B + b) * T * qStride + h * hs : dv + b * T * kvStride + kvh * hs;
    HWY_DYNAMIC_DISPATCH(PrefixBackHead)(dq + b * T * qStride + h * hs, dKh, dVh, rep > 1 ? qStride : kvStride, ppart + item * K * hs,
                                         ppart + (B * H + item) * K * hs, dout + b * T * qStride + h * hs, q + b * T * qStride + h * hs,
                                         pk ? pk + kvh * hs : nullptr, pv ? pv + kvh * hs : nullptr, k + b * T * kvStride + kvh * hs,
                                         v + b * T * kvStride + kvh * hs, T, K, qStride, kvStride, hs, scale, mask ? mask + b * T : nullptr, causal);
  });
  if (rep > 1)
    parallel_for(B * T, threads_for(2.0 * B * T * qStride, kGrain), [&](long r0, long r1) {
      for (long r = r0; r < r1; r++)
        for (long kvh = 0; kvh < Hkv; kvh++)
          for (long i = 0; i < hs; i++) {
            float sk = 0, sv = 0;
            for (long hh = 0; hh < rep; hh++) {
              sk += part[r * qStride + (kvh * rep + hh) * hs + i];
              sv += part[(B * T + r) * qStride + (kvh * rep + hh) * hs + i];
            }
            dk[r * kvStride + kvh * hs + i] = sk;
            dv[r * kvStride + kvh * hs + i] = sv;
          }
    });
  for (long j = 0; j < K; j++)
    for (long kvh = 0; kvh < Hkv; kvh++)
      for (long i = 0; i < hs; i++) {
        float sk = 0, sv = 0;
        for (long b = 0; b < B; b++)
          for (long hh = 0; hh < rep; hh++) {
            const long item = b * H + kvh * rep + hh;
            sk += ppart[(item * K + j) * hs + i];
            sv += ppart[((B * H + item) * K + j) * hs + i];
          }
        dpk[j * kvStride + kvh * hs + i] += sk;
        dpv[j * kvStride + kvh * hs + i] += sv;
      }
}

void patches(float* out, const float* pixels, long B, long C, long size, long p) {
  const long g = size / p, row = C * p * p;
  parallel_for(B * g * g, threads_for(static_cast<double>(B) * C * size * size, kGrain * 4), [&](long i0, long i1) {
    for (long i = i0; i < i1; i++) {
      const long b = i / (g * g), gy = (i / g) % g, gx = i % g;
      float* o = out + i * row;
      for (long c = 0; c < C; c++)
        for (long dy = 0; dy < p; dy++, o += p) std::memcpy(o, pixels + ((b * C + c) * size + gy * p + dy) * size + gx * p, p * sizeof(float));
    }
  });
}

}  // namespace la
#endif  // HWY_ONCE
