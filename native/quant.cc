// Products with ggml block-quantized weights (Q8_0, Q4_0, Q4_1, Q5_0, Q4_K, Q5_K, Q6_K; layouts
// and exact semantics in src/core/quant.ts, the oracle). matmul quantizes each row of x per block
// to 8 bits (Q8_0 / Q8_1 / Q8_K, as llama.cpp's CPU backend does) and sums exact integer block
// dot products times the two scales; matmulBack and embed dequantize rows exactly (fp32 dy).
//
// Written once, compiled per SIMD target (foreach_target.h): the inner loops are plain loops over
// bytes and small integers, which the compiler vectorizes with each target's instructions (the
// HWY_BEFORE_NAMESPACE region enables them). Weight blocks are unpacked into int8 once per block
// and reused by every row of x (register blocking over rows comes from that reuse in L1).

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "quant.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "hwy/highway.h"
#include "common.h"
#include "simd-inl.h"

#include <cstring>
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

/** One row of x quantized: q (K), per-block d (and Q8_1's s), Q8_K's bsums per 16. */
struct Acts {
  std::vector<int8_t> q;
  std::vector<float> d, s;
  std::vector<int32_t> bsums;
  void size(long K) {
    if (static_cast<long>(q.size()) < K) {
      q.resize(K);
      d.resize(K / 32 + 1);
      s.resize(K / 32 + 1);
      bsums.resize(K / 16 + 1);
    }
  }
};

}  // namespace quant
}  // namespace la
#endif

HWY_BEFORE_NAMESPACE();
namespace la {
namespace HWY_NAMESPACE {
using namespace la::quant;

// Quantize x (K) for products with type t (see quantizeActs in src/core/quant.ts: float32 arithmetic).
void QuantizeActs(int t, const float* x, long K, Acts* a) {
  if (type_info(t).k) {
    for (long b = 0; b < K / 256; b++) {
      const float* xb = x + 256 * b;
      int8_t* q = a->q.data() + 256 * b;
      float max = 0, amax = 0;
      for (int j = 0; j < 256; j++) {
        const float ax = std::fabs(xb[j]);
        if (ax > amax) {
          amax = ax;
          max = xb[j];
        }
      }
      if (amax == 0) {
        a->d[b] = 0;
        std::memset(q, 0, 256);
      } else {
        const float iscale = -127.f / max;
        for (int j = 0; j < 256; j++) {
          const int v = rne(iscale * xb[j]);
          q[j] = static_cast<int8_t>(v < 127 ? v : 127);
        }
        a->d[b] = 1 / iscale;
      }
      for (int j = 0; j < 16; j++) {
        int s = 0;
        for (int i = 0; i < 16; i++) s += q[16 * j + i];
        a->bsums[16 * b + j] = s;
      }
    }
    return;
  }
  for (long b = 0; b < K / 32; b++) {
    const float* xb = x + 32 * b;
    float amax = 0;
    for (int j = 0; j < 32; j++) amax = std::fmax(amax, std::fabs(xb[j]));
    const float d = amax / 127.f;
    const float id = amax != 0 ? 127.f / amax : 0.f;
    int sum = 0;
    for (int j = 0; j < 32; j++) {
      const int v = rne(xb[j] * id);
      a->q[32 * b + j] = static_cast<int8_t>(v);
      sum += v;
    }
    a->d[b] = half_to_f32(f32_to_half(d));
    a->s[b] = half_to_f32(f32_to_half(d * static_cast<float>(sum)));
  }
}

static inline int32_t dot32(const int8_t* w, const int8_t* x, int n) {
  int32_t s = 0;
  for (int i = 0; i < n; i++) s += static_cast<int32_t>(w[i]) * x[i];
  return s;
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

// The contribution of block b (unpacked p) with the activations of one row.
static inline float BlockDot(int t, const Unpacked& p, const Acts& a, long b) {
  switch (t) {
    case 12:
    case 13: {
      const int8_t* q = a.q.data() + 256 * b;
      int32_t isum = 0, msum = 0;
      for (int j = 0; j < 8; j++) {
        isum += p.sc[j] * dot32(p.u + 32 * j, q + 32 * j, 32);
        msum += p.mn[j] * (a.bsums[16 * b + 2 * j] + a.bsums[16 * b + 2 * j + 1]);
      }
      return a.d[b] * p.d * static_cast<float>(isum) - a.d[b] * p.dmin * static_cast<float>(msum);
    }
    case 14: {
      const int8_t* q = a.q.data() + 256 * b;
      int32_t isum = 0;
      for (int j = 0; j < 16; j++) isum += p.sc[j] * dot32(p.u + 16 * j, q + 16 * j, 16);
      return p.d * a.d[b] * static_cast<float>(isum);
    }
    default: {
      const float r = p.d * a.d[b] * static_cast<float>(dot32(p.u, a.q.data() + 32 * b, 32));
      return t == 3 ? r + p.m * a.s[b] : r;
    }
  }
}

// out[m, n0:n1] (+)= x[m] . W[n] for all m < M, x already quantized into acts[0..M).
void QuantRange(float* out, const Acts* acts, const uint8_t* w, int t, long N, long K, long M, long n0, long n1, bool acc) {
  const TypeInfo ti = type_info(t);
  const long nb = K / ti.block, rb = nb * ti.bytes;
  thread_local Unpacked p;
  float sums[64];
  for (long n = n0; n < n1; n++) {
    const uint8_t* row = w + n * rb;
    for (long m0 = 0; m0 < M; m0 += 64) {
      const long mc = M - m0 < 64 ? M - m0 : 64;
      for (long i = 0; i < mc; i++) sums[i] = 0;
      for (long b = 0; b < nb; b++) {
        Unpack(t, row + b * ti.bytes, &p);
        for (long i = 0; i < mc; i++) sums[i] += BlockDot(t, p, acts[m0 + i], b);
      }
      for (long i = 0; i < mc; i++) {
        float* o = out + (m0 + i) * N + n;
        *o = acc ? *o + sums[i] : sums[i];
      }
    }
  }
}

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

HWY_EXPORT(QuantizeActs);
HWY_EXPORT(QuantRange);
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
  static thread_local std::vector<quant::Acts> acts;
  if (static_cast<long>(acts.size()) < M) acts.resize(M);
  for (long m = 0; m < M; m++) {
    acts[m].size(K);
    HWY_DYNAMIC_DISPATCH(QuantizeActs)(w.qtype, x + m * K, K, &acts[m]);
  }
  const quant::Acts* a = acts.data();
  const uint8_t* wd = static_cast<const uint8_t*>(w.data);
  const int nt = threads_for(static_cast<double>(M) * N * K, 1 << 15);
  auto body = [&](long n0, long n1) { HWY_DYNAMIC_DISPATCH(QuantRange)(out, a, wd, w.qtype, N, K, M, n0, n1, acc); };
  if (M <= 4) parallel_for_affine(N, nt, body);
  else parallel_for(N, nt, body, 2);
}

// out (M, K) (+)= dy (M, N) · W with W quantized: rows dequantized exactly into fp32 panels, then
// the same sgemm the f32 path uses (per thread, a column range of out: whole blocks).
void quant_matmul_back(float* out, const float* dy, const Mat& w, long M, bool acc) {
  const long N = w.rows, K = w.cols;
  if (M <= 0 || K <= 0) return;
  const long blk = quant_block(w.qtype), rb = quant_row_bytes(w.qtype, K);
  const long chunks = K / blk;
  const int nt = threads_for(static_cast<double>(M) * N * K, 1 << 17);
  const uint8_t* wd = static_cast<const uint8_t*>(w.data);
  parallel_for(chunks, nt, [&](long c0, long c1) {
    const long k0 = c0 * blk, kw = (c1 - c0) * blk;
    const long PN = 256;
    static thread_local std::vector<float> panel;
    if (panel.size() < static_cast<size_t>(PN * kw)) panel.resize(PN * kw);
    for (long p = 0; p < N; p += PN) {
      const long pn = N - p < PN ? N - p : PN;
      for (long r = 0; r < pn; r++)
        HWY_DYNAMIC_DISPATCH(DequantRow)(w.qtype, wd + (p + r) * rb + c0 * quant::type_info(w.qtype).bytes, panel.data() + r * kw, kw);
      cblas_sgemm(kCblasRowMajor, kCblasNoTrans, kCblasNoTrans, static_cast<int>(M), static_cast<int>(kw), static_cast<int>(pn), 1.0f, dy + p,
                  static_cast<int>(N), panel.data(), static_cast<int>(kw), (acc || p > 0) ? 1.0f : 0.0f, out + k0, static_cast<int>(K));
    }
  }, 2);
}

}  // namespace la
#endif  // HWY_ONCE
