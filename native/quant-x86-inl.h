// Integer block products of ggml-quantized weights with 8-bit activations on x86 (256-bit
// vectors), in llama.cpp's style: the weights of a block are unpacked in registers to unsigned
// bytes (Q4/Q5 nibbles, Q6_K's 6-bit values; Q8_0 as |w| with x's sign flipped, or w + 128
// on VNNI), multiplied with the signed activation bytes (vpmaddubsw + vpmaddwd on AVX2;
// vpdpbusd / vpdpwssd on AVX512_VNNI), summed exactly in 32-bit lanes per block (per super-block
// for K-quants, with the 6-bit sub-block scales applied as 16-bit multipliers), and only then
// converted to float and scaled. An offset of the unsigned form (Q4_0's 8, Q5_0's 16, Q6_K's 32,
// VNNI Q8_0's 128) is taken off exactly with x's block sums; Q4_K/Q5_K's mins with Q8_K's bsums.
//
// Register tiles: MR rows of x by NR weight rows; each weight block is unpacked once per tile and
// used by all MR rows, each x block loaded once and used by all NR weight rows.
//
// Included by quant.cc inside its AVX2 and AVX-512 passes (la::HWY_NAMESPACE), once as qx (AVX2
// instructions) and, in the AVX-512 pass, once more as qxv inside `#pragma GCC target
// ("avx512vnni")` with LA_QX_VNNI 1 (the EVEX forms only: Highway 1.0.3's AVX3_DL target would
// also enable the VEX-only AVX-VNNI, which Zen 4 does not have). Needs quant.cc's Acts.

#if LA_QX_VNNI
#define LA_QX_NS qxv
#else
#define LA_QX_NS qx
#endif

namespace LA_QX_NS {

/** Per 32-bit lane: acc + the four products of unsigned u and signed x bytes in it. */
HWY_INLINE __m256i DotU8(__m256i acc, __m256i u, __m256i x) {
#if LA_QX_VNNI
  return _mm256_dpbusd_epi32(acc, u, x);
#else
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), _mm256_set1_epi16(1)));
#endif
}

/** Per 32-bit lane: acc + the two products of 16-bit p and s in it. */
HWY_INLINE __m256i DotI16(__m256i acc, __m256i p, __m256i s) {
#if LA_QX_VNNI
  return _mm256_dpwssd_epi32(acc, p, s);
#else
  return _mm256_add_epi32(acc, _mm256_madd_epi16(p, s));
#endif
}

HWY_INLINE float HSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

/** The IEEE half at p as a float (exact). */
HWY_INLINE float HalfAt(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

HWY_INLINE __m256i Load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
HWY_INLINE __m128i Load128(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }

/** The 32 nibbles of 16 bytes as bytes: low nibbles first (values 0-15), then high nibbles (16-31). */
HWY_INLINE __m256i Nibbles32(const uint8_t* p) {
  const __m128i q = Load128(p);
  return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(0x0F));
}

/** Byte i = 16 where bit i of the 32-bit word at p is set, else 0. */
HWY_INLINE __m256i Bits32To16s(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
  const __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(v)), shuf);
  const __m256i bit = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ull));
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit), _mm256_set1_epi8(16));
}

/** The float accumulators of a tile, zeroed. */
template <int MR, int NR>
HWY_INLINE void ZeroSums(__m256 (&sum)[MR][NR]) {
#pragma GCC unroll 8
  for (int i = 0; i < MR; i++)
#pragma GCC unroll 8
    for (int j = 0; j < NR; j++) sum[i][j] = _mm256_setzero_ps();
}

/** out[i * ldo + j] (+)= the lanes of sum[i][j] added up (+ extra[i][j]). */
template <int MR, int NR>
HWY_INLINE void StoreSums(float* out, long ldo, const __m256 (&sum)[MR][NR], bool acc, const float (*extra)[NR] = nullptr) {
#pragma GCC unroll 8
  for (int i = 0; i < MR; i++)
#pragma GCC unroll 8
    for (int j = 0; j < NR; j++) {
      float* o = out + i * ldo + j;
      const float v = HSum(sum[i][j]) + (extra ? extra[i][j] : 0.0f);
      *o = acc ? *o + v : v;
    }
}

#ifndef LA_QX_PF
#define LA_QX_PF 4096
#endif
/**
 * Decode (one row of x, every weight byte used once): each of the NR weight rows' bytes LA_QX_PF
 * ahead of the block at `off`, asked into L1 (a block of BYTES spans up to BYTES / 64 + 1 lines).
 */
template <int MR, int NR, int BYTES>
HWY_INLINE void PrefetchRows(const uint8_t* w, long rb, long off) {
  if constexpr (MR == 1) {
#pragma GCC unroll 8
    for (int j = 0; j < NR; j++)
#pragma GCC unroll 4
      for (int o = 0; o < BYTES; o += 64) _mm_prefetch(reinterpret_cast<const char*>(w + j * rb + off + LA_QX_PF + o), _MM_HINT_T0);
  }
}

/** Rows m0 .. m0 + MR of the activations: their bytes and their sums per 32 (Q8_0), per 32 or per 16 (Q8_K) values. */
template <int MR, class S>
HWY_INLINE void TileRows(const Acts& a, long m0, const S* sums, long sumsPerRow, const int8_t* (&xr)[MR], const S* (&xs)[MR]) {
#pragma GCC unroll 8
  for (int i = 0; i < MR; i++) xr[i] = a.q + (m0 + i) * a.K, xs[i] = sums + (m0 + i) * sumsPerRow;
}

// ---- 32-value blocks: Q8_0 (8), Q4_0 (2), Q4_1 (3), Q5_0 (6); activations Q8_0 (Q8_1 for Q4_1).
template <int T>
struct B32 {
  static constexpr int kBytes = T == 8 ? 34 : T == 2 ? 18 : T == 3 ? 20 : 22;
  // The unsigned form of a weight is its value + kOff (Q8_0 on AVX2: |w|, with the sign moved to x).
  static constexpr int kOff = T == 2 ? 8 : T == 6 ? 16 : (T == 8 && LA_QX_VNNI) ? 128 : 0;
};

template <int T, int MR, int NR>
void Tile32(float* out, long ldo, const Acts& a, long m0, const uint8_t* w, long rb, bool acc) {
  using B = B32<T>;
  const long nb = a.K / 32, M = a.M;
  const int8_t* xr[MR];
  const int32_t* xs[MR];
  TileRows<MR>(a, m0, a.sum, nb, xr, xs);
  const float* dx = a.d + m0;  // x's scale of row m0 + i, block b: dx[b * M + i]
  const float* sx = a.s + m0;
  __m256 sum[MR][NR];
  ZeroSums(sum);
  float msum[MR][NR] = {};
  for (long b = 0; b < nb; b++) {
    PrefetchRows<MR, NR, B::kBytes>(w, rb, b * B::kBytes);
    __m256i u[NR], sg[NR];
    __m256 dw[NR];
    float mw[NR];
#pragma GCC unroll 8
    for (int j = 0; j < NR; j++) {
      const uint8_t* p = w + j * rb + b * B::kBytes;
      dw[j] = _mm256_set1_ps(HalfAt(p));
      if constexpr (T == 8) {
        const __m256i v = Load256(p + 2);
#if LA_QX_VNNI
        u[j] = _mm256_xor_si256(v, _mm256_set1_epi8(static_cast<char>(0x80)));
#else
        u[j] = _mm256_sign_epi8(v, v);  // |w|; -128 becomes 128 as an unsigned byte
        sg[j] = v;
#endif
      } else if constexpr (T == 2) {
        u[j] = Nibbles32(p + 2);
      } else if constexpr (T == 3) {
        u[j] = Nibbles32(p + 4);
        mw[j] = HalfAt(p + 2);
      } else {
        u[j] = _mm256_or_si256(Nibbles32(p + 6), Bits32To16s(p + 2));
      }
    }
    (void)sg;
    (void)mw;
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
      const __m256i x = Load256(xr[i] + 32 * b);
      const __m256 dxi = _mm256_broadcast_ss(dx + b * M + i);
      __m256i init = _mm256_setzero_si256();
      if constexpr (B::kOff != 0) init = _mm256_zextsi128_si256(_mm_cvtsi32_si128(-B::kOff * xs[i][b]));
#pragma GCC unroll 8
      for (int j = 0; j < NR; j++) {
        __m256i s;
#if !LA_QX_VNNI
        if constexpr (T == 8) s = DotU8(init, u[j], _mm256_sign_epi8(x, sg[j]));
        else
#endif
          s = DotU8(init, u[j], x);
        sum[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw[j], dxi), sum[i][j]);
        if constexpr (T == 3) msum[i][j] += mw[j] * sx[b * M + i];
      }
    }
  }
  StoreSums(out, ldo, sum, acc, msum);
}

// ---- Q4_K (12) and Q5_K (13): 256-value super-blocks of 8 sub-blocks (6-bit scale and min each).
template <int T, int MR, int NR>
void TileQ45K(float* out, long ldo, const Acts& a, long m0, const uint8_t* w, long rb, bool acc) {
  constexpr bool kFive = T == 13;
  constexpr int kBytes = kFive ? 176 : 144;
  const long nb = a.K / 256, M = a.M;
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  const int8_t* xr[MR];
  const int16_t* xs[MR];
  TileRows<MR>(a, m0, a.bsums32, a.K / 32, xr, xs);
  const float* dx = a.d + m0;
  __m256 sum[MR][NR];
  ZeroSums(sum);
  for (long b = 0; b < nb; b++) {
    PrefetchRows<MR, NR, kBytes>(w, rb, b * kBytes);
    __m256 dw[NR], dmw[NR];
    __m128i mins[NR];
    alignas(32) int16_t sc[NR][8];
#pragma GCC unroll 8
    for (int j = 0; j < NR; j++) {
      const uint8_t* p = w + j * rb + b * kBytes;
      dw[j] = _mm256_set1_ps(HalfAt(p));
      dmw[j] = _mm256_set1_ps(HalfAt(p + 2));
      // get_scale_min_k4 for all 8 sub-blocks at once: bytes 0-7 scales, 8-15 mins
      uint32_t u[4];
      std::memcpy(u, p + 4, 12);
      constexpr uint32_t k1 = 0x3f3f3f3f, k2 = 0x0f0f0f0f, k3 = 0x03030303;
      u[3] = ((u[2] >> 4) & k2) | (((u[1] >> 6) & k3) << 4);
      const uint32_t aux = u[1] & k1;
      u[1] = (u[2] & k2) | (((u[0] >> 6) & k3) << 4);
      u[2] = aux;
      u[0] &= k1;
      const __m256i ms = _mm256_cvtepu8_epi16(_mm_set_epi32(static_cast<int>(u[3]), static_cast<int>(u[2]), static_cast<int>(u[1]), static_cast<int>(u[0])));
      _mm_store_si128(reinterpret_cast<__m128i*>(sc[j]), _mm256_castsi256_si128(ms));
      mins[j] = _mm256_extracti128_si256(ms, 1);
    }
    __m256i isum[MR][NR];
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 8
      for (int j = 0; j < NR; j++) isum[i][j] = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
      __m256i lo[NR], hi[NR];
#pragma GCC unroll 8
      for (int j = 0; j < NR; j++) {
        const uint8_t* p = w + j * rb + b * kBytes;
        const __m256i q = Load256(p + (kFive ? 48 : 16) + 32 * c);
        lo[j] = _mm256_and_si256(q, m4);
        hi[j] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        if constexpr (kFive) {
          // bit 2c (low half) and 2c+1 (high half) of each qh byte, as 16
          const __m256i qh = Load256(p + 16);
          const __m256i b16 = _mm256_set1_epi8(16);
          lo[j] = _mm256_or_si256(lo[j], _mm256_and_si256(c < 2 ? _mm256_slli_epi16(qh, 4 - 2 * c) : _mm256_srli_epi16(qh, 2 * c - 4), b16));
          hi[j] = _mm256_or_si256(hi[j], _mm256_and_si256(c < 2 ? _mm256_slli_epi16(qh, 3 - 2 * c) : _mm256_srli_epi16(qh, 2 * c - 3), b16));
        }
      }
#pragma GCC unroll 8
      for (int i = 0; i < MR; i++) {
        const int8_t* xq = xr[i] + 256 * b + 64 * c;
        const __m256i xl = Load256(xq), xh = Load256(xq + 32);
#pragma GCC unroll 8
        for (int j = 0; j < NR; j++) {
          isum[i][j] = DotI16(isum[i][j], _mm256_maddubs_epi16(lo[j], xl), _mm256_set1_epi16(sc[j][2 * c]));
          isum[i][j] = DotI16(isum[i][j], _mm256_maddubs_epi16(hi[j], xh), _mm256_set1_epi16(sc[j][2 * c + 1]));
        }
      }
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
      const __m256 dxi = _mm256_broadcast_ss(dx + b * M + i);
      // the mins: sum over sub-blocks of min * (x's sum over the sub-block)
      const __m128i xsb = Load128(xs[i] + 8 * b);
#pragma GCC unroll 8
      for (int j = 0; j < NR; j++) {
        const __m256 msum = _mm256_cvtepi32_ps(_mm256_zextsi128_si256(_mm_madd_epi16(mins[j], xsb)));
        sum[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[i][j]), _mm256_mul_ps(dw[j], dxi), sum[i][j]);
        sum[i][j] = _mm256_fnmadd_ps(msum, _mm256_mul_ps(dmw[j], dxi), sum[i][j]);
      }
    }
  }
  StoreSums(out, ldo, sum, acc);
}

// ---- Q6_K (14): 256-value super-blocks, 6-bit values (stored + 32), an int8 scale per 16.
template <int MR, int NR>
void TileQ6K(float* out, long ldo, const Acts& a, long m0, const uint8_t* w, long rb, bool acc) {
  const long nb = a.K / 256, M = a.M;
  const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
  const int8_t* xr[MR];
  const int16_t* xs[MR];
  TileRows<MR>(a, m0, a.bsums, a.K / 16, xr, xs);
  const float* dx = a.d + m0;
  __m256 sum[MR][NR];
  ZeroSums(sum);
  for (long b = 0; b < nb; b++) {
    PrefetchRows<MR, NR, 210>(w, rb, b * 210);
    __m256 dw[NR];
    __m256i sc16[NR];
    alignas(32) int16_t scv[NR][8][16];  // the scales of each 32 values (two 16-groups) as 16-bit lanes
#pragma GCC unroll 8
    for (int j = 0; j < NR; j++) {
      const uint8_t* p = w + j * rb + b * 210;
      dw[j] = _mm256_set1_ps(HalfAt(p + 208));
      const __m128i s8 = Load128(p + 192);
      sc16[j] = _mm256_cvtepi8_epi16(s8);
#pragma GCC unroll 8
      for (int k = 0; k < 8; k++) {
        const __m128i idx = _mm_set_epi64x(0x0101010101010101ll * (2 * k + 1), 0x0101010101010101ll * (2 * k));
        _mm256_store_si256(reinterpret_cast<__m256i*>(scv[j][k]), _mm256_cvtepi8_epi16(_mm_shuffle_epi8(s8, idx)));
      }
    }
    __m256i isum[MR][NR];
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
      // the stored values are q + 32: take 32 * sum over groups of scale * (x's sum over the group)
      const __m256i bs = Load256(xs[i] + 16 * b);
#pragma GCC unroll 8
      for (int j = 0; j < NR; j++) isum[i][j] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_madd_epi16(sc16[j], bs), 5));
    }
    // the 8 runs of 32 values: half h (ql + 64h, qh + 32h), run n at y offset 128h + 32n takes
    // ql's low (n < 2) or high nibbles of bytes 32 (n & 1) .., and bits 2n, 2n + 1 of qh
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++)
#pragma GCC unroll 4
      for (int n = 0; n < 4; n++) {
        __m256i v[NR];
#pragma GCC unroll 8
        for (int j = 0; j < NR; j++) {
          const uint8_t* p = w + j * rb + b * 210;
          const __m256i ql = Load256(p + 64 * h + 32 * (n & 1));
          const __m256i qh = Load256(p + 128 + 32 * h);
          const __m256i lo = n < 2 ? _mm256_and_si256(ql, m4) : _mm256_and_si256(_mm256_srli_epi16(ql, 4), m4);
          const __m256i hb = n == 0 ? _mm256_slli_epi16(qh, 4) : n == 1 ? _mm256_slli_epi16(qh, 2) : n == 2 ? qh : _mm256_srli_epi16(qh, 2);
          v[j] = _mm256_or_si256(lo, _mm256_and_si256(hb, m30));
        }
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++) {
          const __m256i x = Load256(xr[i] + 256 * b + 128 * h + 32 * n);
#pragma GCC unroll 8
          for (int j = 0; j < NR; j++)
            isum[i][j] = DotI16(isum[i][j], _mm256_maddubs_epi16(v[j], x), _mm256_load_si256(reinterpret_cast<const __m256i*>(scv[j][4 * h + n])));
        }
      }
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
      const __m256 dxi = _mm256_broadcast_ss(dx + b * M + i);
#pragma GCC unroll 8
      for (int j = 0; j < NR; j++) sum[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[i][j]), _mm256_mul_ps(dw[j], dxi), sum[i][j]);
    }
  }
  StoreSums(out, ldo, sum, acc);
}

template <int T, int MR, int NR>
void Tile(float* out, long ldo, const Acts& a, long m0, const uint8_t* w, long rb, bool acc) {
  if constexpr (T == 12 || T == 13) TileQ45K<T, MR, NR>(out, ldo, a, m0, w, rb, acc);
  else if constexpr (T == 14) TileQ6K<MR, NR>(out, ldo, a, m0, w, rb, acc);
  else Tile32<T, MR, NR>(out, ldo, a, m0, w, rb, acc);
}

using TileFn = void (*)(float*, long, const Acts&, long, const uint8_t*, long, bool);

// kTiles<T>[mr - 1][nr - 1] = Tile<T, mr, nr> for mr <= MR, nr <= NR; kTiles1<T>[nr - 1]: one row, nr <= NR1 (QDims<T>)
template <int T, int MR, int... NRs>
constexpr std::array<TileFn, sizeof...(NRs)> TileRow(std::integer_sequence<int, NRs...>) {
  return {{&Tile<T, MR, NRs + 1>...}};
}
template <int T, int... MRs>
constexpr std::array<std::array<TileFn, QDims<T>::NR>, sizeof...(MRs)> TileTable(std::integer_sequence<int, MRs...>) {
  return {{TileRow<T, MRs + 1>(std::make_integer_sequence<int, QDims<T>::NR>())...}};
}
template <int T>
constexpr auto kTiles = TileTable<T>(std::make_integer_sequence<int, QDims<T>::MR>());
template <int T>
constexpr auto kTiles1 = TileRow<T, 1>(std::make_integer_sequence<int, QDims<T>::NR1>());

/** out[m, n] (+)= x[m] . W[n] for m < M, n0 <= n < n1 (x quantized in a). */
template <int T>
void RangeT(float* out, const Acts& a, const uint8_t* w, long N, long M, long n0, long n1, bool acc) {
  constexpr int MR = QDims<T>::MR, NR = QDims<T>::NR, NR1 = QDims<T>::NR1;
  const long rb = quant_row_bytes(T, a.K);
  if (M == 1) {
    for (long n = n0; n < n1; n += NR1) {
      const int nr = static_cast<int>(n1 - n < NR1 ? n1 - n : NR1);
      kTiles1<T>[nr - 1](out + n, N, a, 0, w + n * rb, rb, acc);
    }
    return;
  }
  // Rows of x in blocks of MC (their bytes within ~256 KB of L2); each group of NR weight rows
  // stays in L1 while the block's rows pass.
  long MC = (262144 / a.K) / MR * MR;
  if (MC < MR) MC = MR;
  for (long mc = 0; mc < M; mc += MC) {
    const long me = mc + MC < M ? mc + MC : M;
    for (long n = n0; n < n1; n += NR) {
      const int nr = static_cast<int>(n1 - n < NR ? n1 - n : NR);
      for (long m = mc; m < me; m += MR) {
        const int mr = static_cast<int>(me - m < MR ? me - m : MR);
        kTiles<T>[mr - 1][nr - 1](out + m * N + n, N, a, m, w + n * rb, rb, acc);
      }
    }
  }
}

inline bool Range(int t, float* out, const Acts& a, const uint8_t* w, long N, long M, long n0, long n1, bool acc) {
  switch (t) {
    case 8: RangeT<8>(out, a, w, N, M, n0, n1, acc); return true;
    case 2: RangeT<2>(out, a, w, N, M, n0, n1, acc); return true;
    case 3: RangeT<3>(out, a, w, N, M, n0, n1, acc); return true;
    case 6: RangeT<6>(out, a, w, N, M, n0, n1, acc); return true;
    case 12: RangeT<12>(out, a, w, N, M, n0, n1, acc); return true;
    case 13: RangeT<13>(out, a, w, N, M, n0, n1, acc); return true;
    case 14: RangeT<14>(out, a, w, N, M, n0, n1, acc); return true;
    default: return false;
  }
}

}  // namespace LA_QX_NS

#undef LA_QX_NS
