// Products with ggml block-quantized weights (Q8_0, Q4_0, Q4_1, Q5_0, Q4_K, Q5_K, Q6_K; layouts
// and exact semantics in src/core/quant.ts, the oracle). matmul quantizes each row of x per block
// to 8 bits (Q8_0 / Q8_1 / Q8_K, as llama.cpp's CPU backend does) and sums exact integer block
// dot products times the two scales; matmulBack (linear.cc) and embed dequantize rows exactly (fp32 dy).
//
// Written once, compiled per SIMD target (foreach_target.h):
//  * activations are quantized with Highway vectors (the oracle's float32 arithmetic, exactly);
//  * AVX2 and AVX-512: register tiles of integer block products in llama.cpp's style
//    (quant-x86-inl.h), with AVX512_VNNI's vpdpbusd / vpdpwssd where the CPU has them (the
//    int8Dot feature); a decode row (M = 1) takes QDims::NR1 weight rows per pass, more rows
//    take QDims::MR x NR tiles over L2-sized blocks of x;
//  * every other target (SSE4, scalar, NEON): weight blocks unpacked to signed bytes and used by
//    up to 64 rows of x (quant-blocks-inl.h), with NEON's 8-bit dot products (vdotq_s32 where the
//    CPU has ARMv8.2 dotprod: int8Dot again; else vmull_s8).
// Rows of the output are split over the thread pool by groups of weight rows (decode rows keep
// each thread on its own weight rows from step to step: parallel_for_affine).

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "quant.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "hwy/highway.h"
#include "common.h"
#include "simd-inl.h"

#include <array>
#include <cstring>
#include <utility>
#include <vector>

#ifndef LA_QUANT_ONCE_
#define LA_QUANT_ONCE_
namespace la {
namespace quant {

/** IEEE half -> float (exact). */
inline float half_to_f32(uint16_t h) {
  const uint32_t s = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
  uint32_t bits;
  if (e == 0) {
    if (m == 0) bits = s;
    else {  // subnormal: normalise
      e = 127 - 15 + 1;
      while (!(m & 0x400)) {
        m <<= 1;
        e--;
      }
      bits = s | (e << 23) | ((m & 0x3ff) << 13);
    }
  } else if (e == 31) bits = s | 0x7f800000u | (m << 13);
  else bits = s | ((e + 127 - 15) << 23) | (m << 13);
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

/** float -> IEEE half, round to nearest even (as F16C's vcvtps2ph with rounding 0). */
inline uint16_t f32_to_half(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  const uint32_t sign = (b >> 16) & 0x8000u;
  const int e32 = (b >> 23) & 0xff;
  uint32_t m = b & 0x7fffffu;
  if (e32 == 0xff) return static_cast<uint16_t>(sign | 0x7c00u | (m ? 0x200u | (m >> 13) : 0));
  const int e = e32 - 112;
  if (e >= 31) return static_cast<uint16_t>(sign | 0x7c00u);
  if (e <= 0) {
    if (e < -10) return static_cast<uint16_t>(sign);
    m |= 0x800000u;
    const int shift = 14 - e;
    uint32_t h = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1), halfv = 1u << (shift - 1);
    if (rem > halfv || (rem == halfv && (h & 1))) h++;
    return static_cast<uint16_t>(sign | h);
  }
  uint32_t h = (static_cast<uint32_t>(e) << 10) | (m >> 13);
  const uint32_t rem = m & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++;
  return static_cast<uint16_t>(sign | h);
}

inline float rhalf(const uint8_t* p) { return half_to_f32(static_cast<uint16_t>(p[0] | (p[1] << 8))); }

/** Round half to even (nearest_int / _MM_ROUND_NEAREST); |v| < 2^22. */
inline int rne(float v) { return static_cast<int>(std::nearbyint(v)); }

/** (scale, min) of sub-block j of a K-quant's 12 scale bytes (get_scale_min_k4). */
inline void scale_min_k4(int j, const uint8_t* q, int* sc, int* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

struct TypeInfo {
  int block, bytes;
  bool k;  // activations Q8_K (else Q8_0 / Q8_1)
};
inline TypeInfo type_info(int t) {
  switch (t) {
    case 8: return {32, 34, false};
    case 2: return {32, 18, false};
    case 3: return {32, 20, false};
    case 6: return {32, 22, false};
    case 12: return {256, 144, true};
    case 13: return {256, 176, true};
    case 14: return {256, 210, true};
    default: return {0, 0, false};
  }
}

/**
 * M rows of x quantized for products with one weight type (QuantizeActRows); row r's values at
 * q + r * K, the scales of its block b at d[b * M + r] (the rows of a tile side by side).
 */
struct Acts {
  long M = 0, K = 0, nb = 0;  // nb: activation blocks per row (K / 32, or K / 256 for Q8_K)
  int8_t* q = nullptr;        // (M, K) the 8-bit values
  float* d = nullptr;         // (nb, M) block scales as products use them (Q8_0 / Q8_1: rounded to half); + 8 spare
  float* s = nullptr;         // (nb, M) Q8_1: d * (sum of q) rounded to half
  int32_t* sum = nullptr;     // (M, nb) Q8_0 / Q8_1: sum of q per block
  int16_t* bsums = nullptr;   // (M, K / 16) Q8_K: sum of q per 16 values
  int16_t* bsums32 = nullptr; // (M, K / 32) Q8_K: sum of q per 32 values (a K-quant sub-block)
};

/** Storage behind an Acts (grow-only). */
struct ActsBuf {
  std::vector<int8_t> q;
  std::vector<float> d, s;
  std::vector<int32_t> sum;
  std::vector<int16_t> bsums, bsums32;
  Acts view(int t, long M, long K) {
    Acts a;
    a.M = M, a.K = K, a.nb = K / type_info(t).block;
    grow(q, M * K), grow(d, M * a.nb + 8), grow(s, M * a.nb), grow(sum, M * a.nb), grow(bsums, M * K / 16), grow(bsums32, M * K / 32);
    a.q = q.data(), a.d = d.data(), a.s = s.data(), a.sum = sum.data(), a.bsums = bsums.data(), a.bsums32 = bsums32.data();
    return a;
  }
  template <class V>
  static void grow(V& v, long n) {
    if (static_cast<long>(v.size()) < n) v.resize(n);
  }
};

}  // namespace quant
}  // namespace la
#endif

HWY_BEFORE_NAMESPACE();
namespace la {
namespace HWY_NAMESPACE {
using namespace la::quant;

// ---- activations

// Row r of x (K) quantized as the scalar oracle does (quantizeActs in src/core/quant.ts); the
// vector path below must give the same bits. A block holding a NaN goes this way (the vector
// maximum handles NaN differently).
static void QuantizeBlockScalar(bool k, const float* xb, int8_t* q, float* d, float* s, int32_t* sum) {
  if (k) {
    float max = 0, amax = 0;
    for (int j = 0; j < 256; j++) {
      const float ax = std::fabs(xb[j]);
      if (ax > amax) {
        amax = ax;
        max = xb[j];
      }
    }
    if (amax == 0) {
      *d = 0;
      std::memset(q, 0, 256);
      return;
    }
    const float iscale = -127.f / max;
    for (int j = 0; j < 256; j++) {
      const int v = rne(iscale * xb[j]);
      q[j] = static_cast<int8_t>(v < 127 ? v : 127);
    }
    *d = 1 / iscale;
    return;
  }
  float amax = 0;
  for (int j = 0; j < 32; j++) amax = std::fmax(amax, std::fabs(xb[j]));
  const float dd = amax / 127.f;
  const float id = amax != 0 ? 127.f / amax : 0.f;
  int total = 0;
  for (int j = 0; j < 32; j++) {
    const int v = rne(xb[j] * id);
    q[j] = static_cast<int8_t>(v);
    total += v;
  }
  *d = half_to_f32(f32_to_half(dd));
  *s = half_to_f32(f32_to_half(dd * static_cast<float>(total)));
  *sum = total;
}

// Rows [r0, r1) of x (M, K) quantized into a for products with type t.
void QuantizeActRows(int t, const float* x, long r0, long r1, const Acts* ap) {
  const Acts& a = *ap;
  const DF df;
  const DI32 di;
  const hn::Rebind<int8_t, DF> d8;
  const long L = static_cast<long>(hn::Lanes(df));
  const bool k = type_info(t).k;
  const long K = a.K, bl = k ? 256 : 32;
  for (long r = r0; r < r1; r++) {
    for (long b = 0; b < K / bl; b++) {
      const float* xb = x + r * K + bl * b;
      int8_t* q = a.q + r * K + bl * b;
      float* d = a.d + b * a.M + r;
      VF m = hn::Zero(df);
      auto nan = hn::Zero(df);
      for (long j = 0; j < bl; j += L) {
        const VF v = hn::LoadU(df, xb + j);
        m = hn::Max(m, hn::Abs(v));
        nan = hn::Or(nan, hn::VecFromMask(df, hn::IsNaN(v)));
      }
      const bool anyNan = !hn::AllTrue(df, hn::Eq(nan, hn::Zero(df)));
      if (anyNan) QuantizeBlockScalar(k, xb, q, d, a.s + b * a.M + r, a.sum + r * a.nb + b);
      const float amax = hn::GetLane(hn::MaxOfLanes(df, m));
      if (k) {
        if (!anyNan) {
          if (amax == 0) {
            *d = 0;
            std::memset(q, 0, 256);
          } else {
            float max = 0;  // the first value of largest magnitude, with its sign
            for (long j = 0; j < 256; j++)
              if (std::fabs(xb[j]) == amax) {
                max = xb[j];
                break;
              }
            const float iscale = -127.f / max;
            const VF vs = hn::Set(df, iscale);
            for (long j = 0; j < 256; j += L) {
              const auto v = hn::Min(hn::NearestInt(hn::Mul(vs, hn::LoadU(df, xb + j))), hn::Set(di, 127));
              hn::StoreU(hn::DemoteTo(d8, v), d8, q + j);
            }
            *d = 1 / iscale;
          }
        }
        for (long g = 0; g < 16; g++) {
          int s16 = 0;
          for (long i = 0; i < 16; i++) s16 += q[16 * g + i];
          a.bsums[r * (K / 16) + 16 * b + g] = static_cast<int16_t>(s16);
        }
        for (long g = 0; g < 8; g++)
          a.bsums32[r * (K / 32) + 8 * b + g] = static_cast<int16_t>(a.bsums[r * (K / 16) + 16 * b + 2 * g] + a.bsums[r * (K / 16) + 16 * b + 2 * g + 1]);
        continue;
      }
      if (anyNan) continue;
      const float dd = amax / 127.f;
      const VF vid = hn::Set(df, amax != 0 ? 127.f / amax : 0.f);
      auto total = hn::Zero(di);
      for (long j = 0; j < 32; j += L) {
        const auto v = hn::NearestInt(hn::Mul(hn::LoadU(df, xb + j), vid));
        total = hn::Add(total, v);
        hn::StoreU(hn::DemoteTo(d8, v), d8, q + j);
      }
      const int32_t sum = hn::GetLane(hn::SumOfLanes(di, total));
      *d = half_to_f32(f32_to_half(dd));
      a.s[b * a.M + r] = half_to_f32(f32_to_half(dd * static_cast<float>(sum)));
      a.sum[r * a.nb + b] = sum;
    }
  }
}

// One weight block (at wb) unpacked to int8 values u (block size) plus its scales: Q*_0/Q4_1 give
// d (and m); K-quants give per-sub-block scales sc/mn. For Q4_0/Q5_0 the values are already offset.
struct Unpacked {
  alignas(64) int8_t u[256];
  float d, m, dmin;
  int sc[16], mn[8];
};

static inline void Unpack(int t, const uint8_t* o, Unpacked* p) {
  switch (t) {
    case 8:
      p->d = rhalf(o);
      std::memcpy(p->u, o + 2, 32);
      break;
    case 2:
      p->d = rhalf(o);
      for (int j = 0; j < 16; j++) {
        p->u[j] = static_cast<int8_t>((o[2 + j] & 0xF) - 8);
        p->u[j + 16] = static_cast<int8_t>((o[2 + j] >> 4) - 8);
      }
      break;
    case 3:
      p->d = rhalf(o);
      p->m = rhalf(o + 2);
      for (int j = 0; j < 16; j++) {
        p->u[j] = static_cast<int8_t>(o[4 + j] & 0xF);
        p->u[j + 16] = static_cast<int8_t>(o[4 + j] >> 4);
      }
      break;
    case 6: {
      p->d = rhalf(o);
      uint32_t qh;
      std::memcpy(&qh, o + 2, 4);
      for (int j = 0; j < 16; j++) {
        p->u[j] = static_cast<int8_t>(((o[6 + j] & 0xF) | (((qh >> j) << 4) & 0x10)) - 16);
        p->u[j + 16] = static_cast<int8_t>(((o[6 + j] >> 4) | ((qh >> (j + 12)) & 0x10)) - 16);
      }
      break;
    }
    case 12:
    case 13: {
      const bool five = t == 13;
      p->d = rhalf(o);
      p->dmin = rhalf(o + 2);
      for (int j = 0; j < 8; j++) scale_min_k4(j, o + 4, &p->sc[j], &p->mn[j]);
      const uint8_t* qs = o + (five ? 48 : 16);
      const uint8_t* qh = o + 16;
      for (int c = 0; c < 4; c++) {
        for (int l = 0; l < 32; l++) {
          p->u[64 * c + l] = static_cast<int8_t>(qs[32 * c + l] & 0xF);
          p->u[64 * c + 32 + l] = static_cast<int8_t>(qs[32 * c + l] >> 4);
        }
        if (five)
          for (int l = 0; l < 32; l++) {
            p->u[64 * c + l] = static_cast<int8_t>(p->u[64 * c + l] + ((qh[l] >> (2 * c)) & 1) * 16);
            p->u[64 * c + 32 + l] = static_cast<int8_t>(p->u[64 * c + 32 + l] + ((qh[l] >> (2 * c + 1)) & 1) * 16);
          }
      }
      break;
    }
    case 14: {
      p->d = rhalf(o + 208);
      for (int j = 0; j < 16; j++) p->sc[j] = static_cast<int8_t>(o[192 + j]);
      for (int h = 0; h < 2; h++) {
        const uint8_t* ql = o + 64 * h;
        const uint8_t* qh = o + 128 + 32 * h;
        int8_t* y = p->u + 128 * h;
        for (int l = 0; l < 32; l++) {
          y[l] = static_cast<int8_t>(((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32);
          y[l + 32] = static_cast<int8_t>(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
          y[l + 64] = static_cast<int8_t>(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
          y[l + 96] = static_cast<int8_t>(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
        }
      }
      break;
    }
  }
}

// ---- products

#if HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
// Register tiles of the x86 kernels, per weight type: MR rows of x by NR weight rows; one row of x
// (decode) by NR1 weight rows. Decode streams each weight row once, from DRAM on any real model:
// one row at a time with software prefetch (PrefetchRows) keeps a single sequential stream per
// thread, which the hardware prefetchers follow (bench/README.md, "Kernel decisions": 1.5-2.5x
// the bandwidth of 4 interleaved rows on Zen 4; 4 rows win only while the matrix sits in L3).
template <int T>
struct QDims {
  static constexpr bool kK = T == 12 || T == 13 || T == 14;  // K-quants: 32-bit sums per super-block besides the float ones
#if HWY_TARGET == HWY_AVX2
  static constexpr int MR = 2, NR = 2, NR1 = 1;  // 16 vector registers
#else
  static constexpr int MR = 4, NR = kK ? 3 : 4, NR1 = 1;  // 32
#endif
};
#define LA_QX_VNNI 0
#include "quant-x86-inl.h"
#undef LA_QX_VNNI
#if HWY_TARGET != HWY_AVX2
#pragma GCC push_options
#pragma GCC target("avx512vnni")
#define LA_QX_VNNI 1
#include "quant-x86-inl.h"
#undef LA_QX_VNNI
#pragma GCC pop_options
#endif
#define LA_QX 1
#else
#define LA_QX 0
#endif

#define LA_QB_DOTPROD 0
#include "quant-blocks-inl.h"
#undef LA_QB_DOTPROD
#if HWY_TARGET == HWY_NEON
#pragma GCC push_options
#pragma GCC target("arch=armv8.2-a+dotprod")
#define LA_QB_DOTPROD 1
#include "quant-blocks-inl.h"
#undef LA_QB_DOTPROD
#pragma GCC pop_options
#endif

// out[m, n0:n1] (+)= x[m] . W[n] for all m < M, x already quantized into a.
void QuantRange(float* out, const Acts* a, const uint8_t* w, int t, long N, long M, long n0, long n1, bool acc) {
#if LA_QX
#if HWY_TARGET != HWY_AVX2
  if (g_features.int8Dot && qxv::Range(t, out, *a, w, N, M, n0, n1, acc)) return;
#endif
  if (qx::Range(t, out, *a, w, N, M, n0, n1, acc)) return;
#endif
#if HWY_TARGET == HWY_NEON
  if (g_features.int8Dot) {
    qpd::Range(t, out, *a, w, N, M, n0, n1, acc);
    return;
  }
#endif
  qp::Range(t, out, *a, w, N, M, n0, n1, acc);
}

/** Weight rows QuantRange computes together for M rows of x (threads take whole groups). */
long QuantGroup(int t, long M) {
#if LA_QX
  switch (t) {
    case 12: return M == 1 ? QDims<12>::NR1 : QDims<12>::NR;
    case 13: return M == 1 ? QDims<13>::NR1 : QDims<13>::NR;
    case 14: return M == 1 ? QDims<14>::NR1 : QDims<14>::NR;
    default: return M == 1 ? QDims<8>::NR1 : QDims<8>::NR;
  }
#else
  (void)t, (void)M;
  return 1;
#endif
}
#undef LA_QX

// out (n) = the n values of row data (a whole number of blocks), dequantized exactly (dequantizeRow).
void DequantRow(int t, const uint8_t* data, float* out, long n) {
  const TypeInfo ti = type_info(t);
  Unpacked p;
  for (long b = 0; b < n / ti.block; b++) {
    Unpack(t, data + b * ti.bytes, &p);
    float* y = out + b * ti.block;
    switch (t) {
      case 12:
      case 13:
        for (int j = 0; j < 8; j++) {
          const float d1 = p.d * static_cast<float>(p.sc[j]), m1 = p.dmin * static_cast<float>(p.mn[j]);
          for (int l = 0; l < 32; l++) y[32 * j + l] = d1 * static_cast<float>(p.u[32 * j + l]) - m1;
        }
        break;
      case 14:
        for (int j = 0; j < 16; j++) {
          const float d1 = p.d * static_cast<float>(p.sc[j]);
          for (int l = 0; l < 16; l++) y[16 * j + l] = d1 * static_cast<float>(p.u[16 * j + l]);
        }
        break;
      case 3:
        for (int l = 0; l < 32; l++) y[l] = static_cast<float>(p.u[l]) * p.d + p.m;
        break;
      default:
        for (int l = 0; l < 32; l++) y[l] = static_cast<float>(p.u[l]) * p.d;
    }
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace la
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace la {

HWY_EXPORT(QuantizeActRows);
HWY_EXPORT(QuantRange);
HWY_EXPORT(QuantGroup);
HWY_EXPORT(DequantRow);

bool quant_type_known(int t) { return quant::type_info(t).block > 0; }
long quant_block(int t) { return quant::type_info(t).block; }
long quant_row_bytes(int t, long cols) {
  const quant::TypeInfo ti = quant::type_info(t);
  return ti.block ? cols / ti.block * ti.bytes : 0;
}

void quant_dequant_row(int t, const void* data, float* out, long n) { HWY_DYNAMIC_DISPATCH(DequantRow)(t, static_cast<const uint8_t*>(data), out, n); }

// out (M, N) (+)= x (M, K) · W^T with W quantized: x quantized per row, integer block products.
void quant_matmul(float* out, const float* x, const Mat& w, long M, bool acc) {
  const long N = w.rows, K = w.cols;
  if (M <= 0 || N <= 0) return;
  static thread_local quant::ActsBuf buf;
  const quant::Acts a = buf.view(w.qtype, M, K);
  parallel_for(M, threads_for(static_cast<double>(M) * K, 1 << 16), [&](long r0, long r1) {
    HWY_DYNAMIC_DISPATCH(QuantizeActRows)(w.qtype, x, r0, r1, &a);
  }, 1);
  const uint8_t* wd = static_cast<const uint8_t*>(w.data);
  const int nt = threads_for(static_cast<double>(M) * N * K, 1 << 15);
  const long g = HWY_DYNAMIC_DISPATCH(QuantGroup)(w.qtype, M), groups = (N + g - 1) / g;
  // By value, so a decode step's job travels in the worker's pool slot (common.h).
  const quant::Acts* ap = &a;
  const int qt = w.qtype;
  auto body = [out, ap, wd, qt, N, M, g, acc](long g0, long g1) {
    HWY_DYNAMIC_DISPATCH(QuantRange)(out, ap, wd, qt, N, M, g0 * g, g1 * g < N ? g1 * g : N, acc);
  };
  if (M <= 4) parallel_for_affine(groups, nt, body);
  else parallel_for(groups, nt, body, 2);
}

}  // namespace la
#endif  // HWY_ONCE
