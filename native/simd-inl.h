// Per-target SIMD helpers every kernel file builds on (Google Highway, compiled once per target by
// foreach_target.h in each kernel file): loads and stores of a partial vector, exp, dot, axpy,
// max, exp-and-sum, bf16 / f16 widening and bf16 rounding. Each kernel file includes this inside its
// per-target pass, so everything here is per target and inlined into the kernels.
//
// Partial vectors: Highway's MaskedLoad/BlendedStore read (and BlendedStore writes back) the whole
// vector on targets without hardware masking (SSE4, NEON), which could touch memory past the
// caller's array or race with a thread writing the neighbouring elements. LoadPart/StorePart use
// the hardware masks on AVX2/AVX-512 and a small stack copy elsewhere.

// Per-target include guard (Highway's convention for -inl.h files).
#if defined(LA_SIMD_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef LA_SIMD_INL_H_
#undef LA_SIMD_INL_H_
#else
#define LA_SIMD_INL_H_
#endif

#include <cstring>

#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace la {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;
using DU16 = hn::Rebind<uint16_t, DF>;  // as many u16 lanes as DF has floats
using DU32 = hn::RebindToUnsigned<DF>;
using DI32 = hn::RebindToSigned<DF>;

// Targets whose MaskedLoad / BlendedStore of 32-bit lanes use hardware masks (no access beyond n).
#undef LA_HW_MASK32
#if HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
#define LA_HW_MASK32 1
#else
#define LA_HW_MASK32 0
#endif

/** The first n (< Lanes) floats at p, zero beyond; reads nothing past p[n - 1]. */
HWY_INLINE VF LoadPart(DF d, const float* HWY_RESTRICT p, size_t n) {
#if LA_HW_MASK32
  return hn::MaskedLoad(hn::FirstN(d, n), d, p);
#else
  HWY_ALIGN float buf[hn::MaxLanes(d)] = {};
  std::memcpy(buf, p, n * sizeof(float));
  return hn::Load(d, buf);
#endif
}

/** Store the first n (< Lanes) lanes of v at p; writes nothing else. */
HWY_INLINE void StorePart(DF d, VF v, float* HWY_RESTRICT p, size_t n) {
#if LA_HW_MASK32
  hn::BlendedStore(v, hn::FirstN(d, n), d, p);
#else
  HWY_ALIGN float buf[hn::MaxLanes(d)];
  hn::Store(v, d, buf);
  std::memcpy(p, buf, n * sizeof(float));
#endif
}

/** Lanes bf16 values (the upper halves of fp32) widened exactly to fp32. */
HWY_INLINE VF LoadBf16(DF d, const uint16_t* HWY_RESTRICT p) {
  const DU16 d16;
  const DU32 du;
  return hn::BitCast(d, hn::ShiftLeft<16>(hn::PromoteTo(du, hn::LoadU(d16, p))));
}

/** The first n (< Lanes) bf16 values at p widened, zero beyond. */
HWY_INLINE VF LoadBf16Part(DF d, const uint16_t* HWY_RESTRICT p, size_t n) {
  HWY_ALIGN uint16_t buf[hn::MaxLanes(d)] = {};
  std::memcpy(buf, p, n * sizeof(uint16_t));
  return LoadBf16(d, buf);
}

/** Lanes IEEE halves widened exactly to fp32. */
HWY_INLINE VF LoadF16(DF d, const uint16_t* HWY_RESTRICT p) {
  const hn::Rebind<hwy::float16_t, DF> dh;
  return hn::PromoteTo(d, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(p)));
}

/** The first n (< Lanes) halves at p widened, zero beyond. */
HWY_INLINE VF LoadF16Part(DF d, const uint16_t* HWY_RESTRICT p, size_t n) {
  HWY_ALIGN uint16_t buf[hn::MaxLanes(d)] = {};
  std::memcpy(buf, p, n * sizeof(uint16_t));
  return LoadF16(d, buf);
}

// Weight kinds of the float kernels: the element type of a Mat that is not quantized.
constexpr int kWF32 = 0, kWBF16 = 1, kWF16 = 2;

/** Lanes weights at p (fp32, or bf16 / f16 widened). */
template <int WK>
HWY_INLINE VF LoadW(DF d, const void* w, long off) {
  if constexpr (WK == kWBF16) return LoadBf16(d, static_cast<const uint16_t*>(w) + off);
  else if constexpr (WK == kWF16) return LoadF16(d, static_cast<const uint16_t*>(w) + off);
  else return hn::LoadU(d, static_cast<const float*>(w) + off);
}
template <int WK>
HWY_INLINE VF LoadWPart(DF d, const void* w, long off, size_t n) {
  if constexpr (WK == kWBF16) return LoadBf16Part(d, static_cast<const uint16_t*>(w) + off, n);
  else if constexpr (WK == kWF16) return LoadF16Part(d, static_cast<const uint16_t*>(w) + off, n);
  else return LoadPart(d, static_cast<const float*>(w) + off, n);
}

/** fp32 lanes rounded to bf16 (ties to even, NaN kept quiet): the bf16 bits in each lane's upper half. */
HWY_INLINE hn::Vec<DU32> Bf16RoundBits(DF d, VF v) {
  const DU32 du;
  const auto u = hn::BitCast(du, v);
  const auto r = hn::Add(u, hn::Add(hn::Set(du, 0x7fffu), hn::And(hn::ShiftRight<16>(u), hn::Set(du, 1u))));
  return hn::IfThenElse(hn::RebindMask(du, hn::IsNaN(v)), hn::Or(u, hn::Set(du, 0x00400000u)), r);
}

/** v rounded to the nearest bf16, kept as fp32. */
HWY_INLINE VF RoundBf16(DF d, VF v) {
  const DU32 du;
  return hn::BitCast(d, hn::And(Bf16RoundBits(d, v), hn::Set(du, 0xffff0000u)));
}

/**
 * exp(x) per lane: Cephes-style range reduction and a degree-6 polynomial (~1 ulp); NaN stays NaN
 * (the clamps keep it: x86 min/max return their second operand, NEON and scalar propagate it).
 * AVX-512 scales by 2^n with vscalefps (x clamped to [-104, 89]: results below FLT_MIN are flushed
 * under the kernels' FTZ mode anyway); other targets build 2^n in the exponent bits, which needs n
 * in [-126, 127], so x is clamped to [-87.3, 88.3] there (exp(88.3) = 2.0e38 stands in for larger
 * values, which only overflow to inf on AVX-512).
 */
HWY_INLINE VF Exp(DF d, VF x) {
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
  const VF xc = hn::Min(hn::Set(d, 89.0f), hn::Max(hn::Set(d, -104.0f), x));
#else
  const VF xc = hn::Min(hn::Set(d, 88.3f), hn::Max(hn::Set(d, -87.3f), x));
#endif
  const VF n = hn::Round(hn::Mul(xc, hn::Set(d, 1.44269504088896341f)));
  VF r = hn::NegMulAdd(n, hn::Set(d, 0.693359375f), xc);
  r = hn::NegMulAdd(n, hn::Set(d, -2.12194440e-4f), r);
  VF p = hn::Set(d, 1.9875691500E-4f);
  p = hn::MulAdd(p, r, hn::Set(d, 1.3981999507E-3f));
  p = hn::MulAdd(p, r, hn::Set(d, 8.3334519073E-3f));
  p = hn::MulAdd(p, r, hn::Set(d, 4.1665795894E-2f));
  p = hn::MulAdd(p, r, hn::Set(d, 1.6666665459E-1f));
  p = hn::MulAdd(p, r, hn::Set(d, 5.0000001201E-1f));
  p = hn::MulAdd(p, hn::Mul(r, r), hn::Add(r, hn::Set(d, 1.0f)));
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
  return VF{_mm512_scalef_ps(p.raw, n.raw)};
#else
  const DI32 di;
  return hn::Mul(p, hn::BitCast(d, hn::ShiftLeft<23>(hn::Add(hn::ConvertTo(di, n), hn::Set(di, 127)))));
#endif
}

HWY_INLINE float ReduceSum(DF d, VF v) { return hn::GetLane(hn::SumOfLanes(d, v)); }

/** sum_i a[i] * b[i] (fp32; two accumulators, then the tail, in a fixed order). */
HWY_INLINE float Dot(const float* HWY_RESTRICT a, const float* HWY_RESTRICT b, long n) {
  const DF d;
  const long N = static_cast<long>(hn::Lanes(d));
  VF s0 = hn::Zero(d), s1 = hn::Zero(d);
  long i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    s0 = hn::MulAdd(hn::LoadU(d, a + i), hn::LoadU(d, b + i), s0);
    s1 = hn::MulAdd(hn::LoadU(d, a + i + N), hn::LoadU(d, b + i + N), s1);
  }
  for (; i + N <= n; i += N) s0 = hn::MulAdd(hn::LoadU(d, a + i), hn::LoadU(d, b + i), s0);
  if (i < n) s1 = hn::MulAdd(LoadPart(d, a + i, n - i), LoadPart(d, b + i, n - i), s1);
  return ReduceSum(d, hn::Add(s0, s1));
}

/** y[i] += a * x[i]. */
HWY_INLINE void Axpy(float* HWY_RESTRICT y, float a, const float* HWY_RESTRICT x, long n) {
  const DF d;
  const long N = static_cast<long>(hn::Lanes(d));
  const VF av = hn::Set(d, a);
  long i = 0;
  for (; i + N <= n; i += N) hn::StoreU(hn::MulAdd(av, hn::LoadU(d, x + i), hn::LoadU(d, y + i)), d, y + i);
  if (i < n) StorePart(d, hn::MulAdd(av, LoadPart(d, x + i, n - i), LoadPart(d, y + i, n - i)), y + i, n - i);
}

/** max_i x[i] (-inf for n == 0). */
HWY_INLINE float Max(const float* HWY_RESTRICT x, long n) {
  const DF d;
  const long N = static_cast<long>(hn::Lanes(d));
  VF m = hn::Set(d, -INFINITY);
  long i = 0;
  for (; i + N <= n; i += N) m = hn::Max(m, hn::LoadU(d, x + i));
  if (i < n) {
    const size_t k = static_cast<size_t>(n - i);
    m = hn::Max(m, hn::IfThenElse(hn::FirstN(d, k), LoadPart(d, x + i, k), hn::Set(d, -INFINITY)));
  }
  return hn::GetLane(hn::MaxOfLanes(d, m));
}

/** x[i] = exp(x[i] - sub); returns the sum of the results (fp32, fixed order). */
HWY_INLINE float ExpSubSum(float* HWY_RESTRICT x, float sub, long n) {
  const DF d;
  const long N = static_cast<long>(hn::Lanes(d));
  const VF mv = hn::Set(d, sub);
  VF s = hn::Zero(d);
  long i = 0;
  for (; i + N <= n; i += N) {
    const VF e = Exp(d, hn::Sub(hn::LoadU(d, x + i), mv));
    hn::StoreU(e, d, x + i);
    s = hn::Add(s, e);
  }
  if (i < n) {
    const size_t k = static_cast<size_t>(n - i);
    const VF e = hn::IfThenElseZero(hn::FirstN(d, k), Exp(d, hn::Sub(LoadPart(d, x + i, k), mv)));
    StorePart(d, e, x + i, k);
    s = hn::Add(s, e);
  }
  return ReduceSum(d, s);
}

using DD = hn::ScalableTag<double>;
using DFH = hn::Rebind<float, DD>;  // as many floats as DD has doubles

/** sum_i a[i] * b[i] (* c[i] when c) in double. */
HWY_INLINE double DotD(const float* HWY_RESTRICT a, const float* HWY_RESTRICT b, const float* HWY_RESTRICT c, long n) {
  const DD dd;
  const DFH dh;
  const long N = static_cast<long>(hn::Lanes(dd));
  auto s0 = hn::Zero(dd), s1 = hn::Zero(dd);
  long i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    auto p0 = hn::Mul(hn::PromoteTo(dd, hn::LoadU(dh, a + i)), hn::PromoteTo(dd, hn::LoadU(dh, b + i)));
    auto p1 = hn::Mul(hn::PromoteTo(dd, hn::LoadU(dh, a + i + N)), hn::PromoteTo(dd, hn::LoadU(dh, b + i + N)));
    if (c) {
      p0 = hn::Mul(p0, hn::PromoteTo(dd, hn::LoadU(dh, c + i)));
      p1 = hn::Mul(p1, hn::PromoteTo(dd, hn::LoadU(dh, c + i + N)));
    }
    s0 = hn::Add(s0, p0);
    s1 = hn::Add(s1, p1);
  }
  double s = hn::GetLane(hn::SumOfLanes(dd, hn::Add(s0, s1)));
  for (; i < n; i++) s += static_cast<double>(a[i]) * b[i] * (c ? static_cast<double>(c[i]) : 1.0);
  return s;
}

/**
 * The softmax backward of one row of probabilities pr (n): dr[j] = pr[j] (dr[j] - sum_k pr[k] dr[k]) scale,
 * dr holding dP on entry (the dot product in double).
 */
HWY_INLINE void SoftmaxBackRow(const float* HWY_RESTRICT pr, float* HWY_RESTRICT dr, long n, float scale) {
  const DF d;
  const long N = static_cast<long>(hn::Lanes(d));
  const VF dotv = hn::Set(d, static_cast<float>(DotD(pr, dr, nullptr, n))), sv = hn::Set(d, scale);
  long j = 0;
  for (; j + N <= n; j += N) hn::StoreU(hn::Mul(hn::Mul(hn::LoadU(d, pr + j), hn::Sub(hn::LoadU(d, dr + j), dotv)), sv), d, dr + j);
  const float dotf = hn::GetLane(dotv);
  for (; j < n; j++) dr[j] = pr[j] * (dr[j] - dotf) * scale;
}

/** x[i] *= a. */
HWY_INLINE void Scale(float* HWY_RESTRICT x, float a, long n) {
  const DF d;
  const long N = static_cast<long>(hn::Lanes(d));
  const VF av = hn::Set(d, a);
  long i = 0;
  for (; i + N <= n; i += N) hn::StoreU(hn::Mul(av, hn::LoadU(d, x + i)), d, x + i);
  if (i < n) StorePart(d, hn::Mul(av, LoadPart(d, x + i, n - i)), x + i, n - i);
}

/** Widen n IEEE halves to fp32 (exact). */
HWY_INLINE void F16ToF32(float* HWY_RESTRICT dst, const uint16_t* HWY_RESTRICT src, long n) {
  const DF d;
  const long N = static_cast<long>(hn::Lanes(d));
  long i = 0;
  for (; i + N <= n; i += N) hn::StoreU(LoadF16(d, src + i), d, dst + i);
  if (i < n) StorePart(d, LoadF16Part(d, src + i, static_cast<size_t>(n - i)), dst + i, static_cast<size_t>(n - i));
}

/** Widen n bf16 values to fp32. */
HWY_INLINE void Bf16ToF32(float* HWY_RESTRICT dst, const uint16_t* HWY_RESTRICT src, long n) {
  const DF d;
  const long N = static_cast<long>(hn::Lanes(d));
  long i = 0;
  for (; i + N <= n; i += N) hn::StoreU(LoadBf16(d, src + i), d, dst + i);
  uint32_t* u = reinterpret_cast<uint32_t*>(dst);
  for (; i < n; i++) u[i] = static_cast<uint32_t>(src[i]) << 16;
}

/** dst = src rounded to the nearest bf16 (kept as fp32). */
HWY_INLINE void RoundBf16Array(float* HWY_RESTRICT dst, const float* HWY_RESTRICT src, long n) {
  const DF d;
  const long N = static_cast<long>(hn::Lanes(d));
  long i = 0;
  for (; i + N <= n; i += N) hn::StoreU(RoundBf16(d, hn::LoadU(d, src + i)), d, dst + i);
  const uint32_t* s = reinterpret_cast<const uint32_t*>(src);
  uint32_t* o = reinterpret_cast<uint32_t*>(dst);
  for (; i < n; i++) o[i] = bf16_round_bits(s[i]) & 0xffff0000u;
}

}  // namespace HWY_NAMESPACE
}  // namespace la
HWY_AFTER_NAMESPACE();

#endif  // per-target include guard
