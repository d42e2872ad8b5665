// The portable products of ggml-quantized weights with 8-bit activations (every SIMD target
// without hand-written tiles: SSE4, scalar, NEON): each weight block is unpacked to signed bytes
// once (Unpack, quant.cc) and used by up to 64 rows of x; block sums are exact integers, then
// scaled in float. On NEON the 8-bit dot products are intrinsics: vmull_s8 + vpadalq_s16, or
// vdotq_s32 in the flavour compiled for ARMv8.2 dotprod (LA_QB_DOTPROD 1, namespace qpd, inside
// `#pragma GCC target("arch=armv8.2-a+dotprod")`); elsewhere a plain loop the compiler vectorizes.
// Included by quant.cc inside each per-target pass (la::HWY_NAMESPACE).

#if LA_QB_DOTPROD
#define LA_QB_NS qpd
#else
#define LA_QB_NS qp
#endif

namespace LA_QB_NS {

/** sum of n (a multiple of 16) products of signed bytes. */
static inline int32_t Dot8(const int8_t* w, const int8_t* x, int n) {
#if HWY_TARGET == HWY_NEON
  int32x4_t acc = vdupq_n_s32(0);
  for (int i = 0; i < n; i += 16) {
    const int8x16_t a = vld1q_s8(w + i), b = vld1q_s8(x + i);
#if LA_QB_DOTPROD
    acc = vdotq_s32(acc, a, b);
#else
    int16x8_t p = vmull_s8(vget_low_s8(a), vget_low_s8(b));  // |w x| <= 128 * 127: a pair fits in 16 bits
    p = vmlal_s8(p, vget_high_s8(a), vget_high_s8(b));
    acc = vpadalq_s16(acc, p);
#endif
  }
  return vaddvq_s32(acc);
#else
  int32_t s = 0;
  for (int i = 0; i < n; i++) s += static_cast<int32_t>(w[i]) * x[i];
  return s;
#endif
}

// The contribution of block b (unpacked p) with row r of the activations.
static inline float BlockDot(int t, const Unpacked& p, const Acts& a, long r, long b) {
  switch (t) {
    case 12:
    case 13: {
      const int8_t* q = a.q + r * a.K + 256 * b;
      const int16_t* bs = a.bsums32 + r * (a.K / 32) + 8 * b;
      int32_t isum = 0, msum = 0;
      for (int j = 0; j < 8; j++) {
        isum += p.sc[j] * Dot8(p.u + 32 * j, q + 32 * j, 32);
        msum += p.mn[j] * bs[j];
      }
      const float d = a.d[b * a.M + r];
      return d * p.d * static_cast<float>(isum) - d * p.dmin * static_cast<float>(msum);
    }
    case 14: {
      const int8_t* q = a.q + r * a.K + 256 * b;
      int32_t isum = 0;
      for (int j = 0; j < 16; j++) isum += p.sc[j] * Dot8(p.u + 16 * j, q + 16 * j, 16);
      return p.d * a.d[b * a.M + r] * static_cast<float>(isum);
    }
    default: {
      const float v = p.d * a.d[b * a.M + r] * static_cast<float>(Dot8(p.u, a.q + r * a.K + 32 * b, 32));
      return t == 3 ? v + p.m * a.s[b * a.M + r] : v;
    }
  }
}

/** out[m, n] (+)= x[m] . W[n] for m < M, n0 <= n < n1 (x quantized in a). */
static void Range(int t, float* out, const Acts& a, const uint8_t* w, long N, long M, long n0, long n1, bool acc) {
  const TypeInfo ti = type_info(t);
  const long nb = a.K / ti.block, rb = nb * ti.bytes;
  thread_local Unpacked p;
  float sums[64];
  for (long n = n0; n < n1; n++) {
    const uint8_t* row = w + n * rb;
    for (long m0 = 0; m0 < M; m0 += 64) {
      const long mc = M - m0 < 64 ? M - m0 : 64;
      for (long i = 0; i < mc; i++) sums[i] = 0;
      for (long b = 0; b < nb; b++) {
        Unpack(t, row + b * ti.bytes, &p);
        for (long i = 0; i < mc; i++) sums[i] += BlockDot(t, p, a, m0 + i, b);
      }
      for (long i = 0; i < mc; i++) {
        float* o = out + (m0 + i) * N + n;
        *o = acc ? *o + sums[i] : sums[i];
      }
    }
  }
}

}  // namespace LA_QB_NS

#undef LA_QB_NS
