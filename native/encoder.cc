// Kernels of the image encoders (ViT / CLIP towers): LayerNorm, the GELU family, bias add,
// bidirectional attention and the patch layout of the patch embedding. Written once over Highway
// (compiled per SIMD target, dispatched at run time: cpu.cc); the oracle is
// src/backend/ts/encoder.ts. Row statistics accumulate in double in a fixed order; attention runs
// its two products per block of query rows as single-threaded sgemm calls, parallel over
// (row, head, block), so results do not depend on thread timing.

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

thread_local std::vector<float> t_scores;  // per-thread (block, T) scores

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

void GeluRange(float* out, const float* x, long i0, long i1, int kind) {
  const DF d;
  const long N = static_cast<long>(hn::Lanes(d));
  for (long i = i0; i < i1; i += N) {
    const size_t k = static_cast<size_t>(i1 - i < N ? i1 - i : N);
    const bool full = static_cast<long>(k) == N;
    const VF r = GeluVec(d, full ? hn::LoadU(d, x + i) : LoadPart(d, x + i, k), kind);
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

// Query rows [t0, t0 + nq) of head h of row b: P = softmax(Q K^T * scale) over all T keys, out = P V.
void EncoderAttnBlock(float* out, const float* q, const float* k, const float* v, long qStride, long kvStride, long nq, long T, long hs, float scale) {
  if (t_scores.size() < static_cast<size_t>(nq * T)) t_scores.resize(static_cast<size_t>(nq * T));
  float* P = t_scores.data();
  cblas_sgemm(kCblasRowMajor, kCblasNoTrans, kCblasTrans, static_cast<int>(nq), static_cast<int>(T), static_cast<int>(hs), scale, q,
              static_cast<int>(qStride), k, static_cast<int>(kvStride), 0.0f, P, static_cast<int>(T));
  for (long i = 0; i < nq; i++) {
    float* row = P + i * T;
    Scale(row, 1.0f / ExpSubSum(row, Max(row, T), T), T);
  }
  cblas_sgemm(kCblasRowMajor, kCblasNoTrans, kCblasNoTrans, static_cast<int>(nq), static_cast<int>(hs), static_cast<int>(T), 1.0f, P,
              static_cast<int>(T), v, static_cast<int>(kvStride), 0.0f, out, static_cast<int>(qStride));
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
HWY_EXPORT(EncoderAttnBlock);

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
    HWY_DYNAMIC_DISPATCH(GeluRange)(out, x, v0 * kBlock, v1 * kBlock < n ? v1 * kBlock : n, static_cast<int>(kind));
  });
}

void bias_add(float* x, const float* bias, long rows, long dim) {
  parallel_for(rows, threads_for(static_cast<double>(rows) * dim, kGrain * 4),
               [&](long r0, long r1) { HWY_DYNAMIC_DISPATCH(BiasAddRows)(x, bias, r0, r1, dim); });
}

void encoder_attention(float* out, const float* q, const float* k, const float* v, const AttnShape& s) {
  const long T = s.T, H = s.H, hs = s.hs, rep = s.H / s.Hkv, qStride = H * hs, kvStride = s.Hkv * hs;
  const long blocks = (T + kEncQB - 1) / kEncQB;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hs)));
  parallel_items(s.B * H * blocks, threads_for(2.0 * s.B * H * T * T * hs, 1 << 15), [&](long item) {
    const long blk = item % blocks, bh = item / blocks, h = bh % H, b = bh / H;
    const long t0 = blk * kEncQB, nq = T - t0 < kEncQB ? T - t0 : kEncQB;
    HWY_DYNAMIC_DISPATCH(EncoderAttnBlock)(out + (b * T + t0) * qStride + h * hs, q + (b * T + t0) * qStride + h * hs,
                                           k + b * T * kvStride + (h / rep) * hs, v + b * T * kvStride + (h / rep) * hs, qStride, kvStride,
                                           nq, T, hs, scale);
  });
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
