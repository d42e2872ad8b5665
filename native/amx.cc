// bf16-weight GEMM on Intel AMX tiles (TMUL), used for matmul / matmulBack with bf16 weights
// and many rows (prefill, training). Compiled with target attributes so the file builds with any
// GCC >= 11 whatever -march says; used only when the CPU reports AMX-BF16 and the kernel grants
// the tile-data permission (arch_prctl ARCH_REQ_XCOMP_PERM).
//
// Accuracy: the weights are exactly bf16; activations are rounded to bf16 (ties to even) and
// products accumulate in fp32 tiles: bf16 x bf16 -> fp32, what Backend.matmul specifies for bf16
// weights (every other bf16 kernel path rounds the same way). With the bf16Split feature each
// activation is instead split into hi = bf16(x) and lo = bf16(x - hi) and C accumulates W·hi +
// W·lo, so every product carries ~16 mantissa bits of x (matches fp32 sgemm to ~1e-5 relative) at
// twice the tile work (bench/README.md, "Kernel decisions": about half the speed).

// Layout: C (M, N) (+)= X (M, Kd) · B where B[kd, n] = W[n, kd] (matmul, W (N, Kd)) or
// W[kd, n] (matmulBack, W (Kd, N)). X is converted once to bf16 tiles (Mp, Kp), zero-padded (hi
// and lo when split);
// each thread owns a range of N and, per (NC columns x KC depth) block, packs B into VNNI tiles
// (16 depth pairs x 16 columns x 2), then runs 32x32 output blocks (2x2 tiles of 16x16 fp32)
// that accumulate in place in out (tile rows N floats apart; a bounce block at the edges).
// Tile loads are interleaved with the products and the next step's tiles prefetched into L1
// (with the in-place output, the largest single gain of this kernel: bench/README.md).

#include "common.h"

#include <vector>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && (__GNUC__ >= 11)
#define LA_AMX_BUILD 1
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#else
#define LA_AMX_BUILD 0
#endif

namespace la {

#if LA_AMX_BUILD

namespace {

constexpr long NC = 256;   // columns per packed B block
constexpr long KC = 2048;  // depth per packed B block (multiple of 32)

struct alignas(64) TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

// Activations as tiles: tile (mt, kb) of rows 16mt.. and depth 32kb.. holds hi (then lo when
// split), each 16 rows x 32 bf16 contiguous (1 KB), so tile loads read 1 KB runs, never 16 rows a power of
// two apart (which would share L1 sets). Owned by the calling thread, read by the workers.
thread_local std::vector<uint16_t> t_a;     // (Mp/16, Kp/32, 1 or 2 (split), 16, 32)
thread_local std::vector<uint16_t> t_bpack; // packed B block, per thread: (NC/16, KC/32, 16, 32)

inline long round_up(long a, long b) { return (a + b - 1) / b * b; }

// The kernels below are compiled for AVX-512 + AVX512_BF16 + AMX (the rest of the addon for the
// baseline) and run only where cpu.cc found AMX or AVX512_BF16 and an AVX-512 target in force.
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512bf16,amx-tile,amx-bf16")
inline __mmask16 tail_mask(int n) { return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1u); }

/** 16 fp32 lanes rounded to bf16 (ties to even, NaN kept quiet): the bf16 value in each lane's upper 16 bits. */
inline __m512i bf16_round_bits(__m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1))));
  return _mm512_mask_or_epi32(r, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), u, _mm512_set1_epi32(0x00400000));
}

// fp32 -> bf16 round-to-nearest-even (NaN kept quiet), 16 lanes, as 16-bit values in a 256-bit vector.
inline __m256i to_bf16(__m512 v) {
  return _mm512_cvtepi32_epi16(_mm512_srli_epi32(bf16_round_bits(v), 16));
}

inline __m512 from_bf16(__m256i h) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// Rows [m0, m1) of X (M, Kd) -> hi/lo tiles of A, zero beyond Kd and beyond M.
template <bool SPLIT>
void split_rows(uint16_t* A, const float* x, long Kd, long Kp, long m0, long m1, long M) {
  const long nKb = Kp / 32, ts = SPLIT ? 1024 : 512;
  for (long m = m0; m < m1; m++) {
    uint16_t* base = A + (m / 16) * nKb * ts + (m % 16) * 32;
    const float* xr = x + m * Kd;
    for (long kb = 0; kb < nKb; kb++) {
      uint16_t* hi = base + kb * ts;
      uint16_t* lo = hi + 512;
      for (int h = 0; h < 2; h++) {
        const long k = kb * 32 + h * 16;
        const long left = m < M ? Kd - k : 0;
        const __mmask16 mk = left <= 0 ? (__mmask16)0 : tail_mask(left > 16 ? 16 : static_cast<int>(left));
        const __m512 v = _mm512_maskz_loadu_ps(mk, xr + k);
        const __m256i hv = to_bf16(v);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(hi + h * 16), hv);
        if (SPLIT) _mm256_storeu_si256(reinterpret_cast<__m256i*>(lo + h * 16), to_bf16(_mm512_sub_ps(v, from_bf16(hv))));
      }
    }
  }
}

// Pack B for columns [n0, n0 + NC) (clipped to N), depth [k0, k0 + kc) into tiles:
// tile (j, kb) at bp + (j * (kc/32) + kb) * 512 u16; row p holds (B[k0+kb*32+2p, n], B[.. +1, n]) for n = 16j..16j+15.
void pack_b(uint16_t* bp, const uint16_t* w, bool wTrans, long N, long Kd, long n0, long ncols,
                                                     long k0, long kc) {
  const long kbs = kc / 32;
  for (long j = 0; j < ncols / 16; j++) {
    for (long kb = 0; kb < kbs; kb++) {
      uint32_t* tile = reinterpret_cast<uint32_t*>(bp + (j * kbs + kb) * 512);
      const long nb = n0 + j * 16, kd0 = k0 + kb * 32;
      const bool full = nb + 16 <= N && kd0 + 32 <= Kd;
      if (!wTrans) {
        // B[kd, n] = W[n, kd]: 32-bit word (kd pair p) of row n; tile[p][c] = W32[nb + c][kd0/2 + p].
        if (full) {
          __m512i rowv[16];
          for (int c = 0; c < 16; c++) rowv[c] = _mm512_loadu_si512(w + (nb + c) * Kd + kd0);
          // 16x16 transpose of 32-bit words.
          __m512i t[16];
          for (int c = 0; c < 16; c += 2) {
            t[c] = _mm512_unpacklo_epi32(rowv[c], rowv[c + 1]);
            t[c + 1] = _mm512_unpackhi_epi32(rowv[c], rowv[c + 1]);
          }
          __m512i u[16];
          for (int c = 0; c < 16; c += 4) {
            u[c] = _mm512_unpacklo_epi64(t[c], t[c + 2]);
            u[c + 1] = _mm512_unpackhi_epi64(t[c], t[c + 2]);
            u[c + 2] = _mm512_unpacklo_epi64(t[c + 1], t[c + 3]);
            u[c + 3] = _mm512_unpackhi_epi64(t[c + 1], t[c + 3]);
          }
          // u[4g + i], 128-bit lane L: rows 4g..4g+3 at word 4L + i. Gather the four groups per word.
          for (int i = 0; i < 4; i++) {
            __m512i v0 = _mm512_shuffle_i32x4(u[i], u[4 + i], 0x88);
            __m512i v1 = _mm512_shuffle_i32x4(u[i], u[4 + i], 0xdd);
            __m512i v2 = _mm512_shuffle_i32x4(u[8 + i], u[12 + i], 0x88);
            __m512i v3 = _mm512_shuffle_i32x4(u[8 + i], u[12 + i], 0xdd);
            _mm512_storeu_si512(tile + (0 + i) * 16, _mm512_shuffle_i32x4(v0, v2, 0x88));
            _mm512_storeu_si512(tile + (8 + i) * 16, _mm512_shuffle_i32x4(v0, v2, 0xdd));
            _mm512_storeu_si512(tile + (4 + i) * 16, _mm512_shuffle_i32x4(v1, v3, 0x88));
            _mm512_storeu_si512(tile + (12 + i) * 16, _mm512_shuffle_i32x4(v1, v3, 0xdd));
          }
        } else {
          for (int p = 0; p < 16; p++)
            for (int c = 0; c < 16; c++) {
              long n = nb + c, kd = kd0 + 2 * p;
              uint32_t lo = (n < N && kd < Kd) ? w[n * Kd + kd] : 0;
              uint32_t hi = (n < N && kd + 1 < Kd) ? w[n * Kd + kd + 1] : 0;
              tile[p * 16 + c] = lo | (hi << 16);
            }
        }
      } else {
        // B[kd, n] = W[kd, n], W (Kd, N): tile[p][c] = W[kd0+2p, nb+c] | W[kd0+2p+1, nb+c] << 16.
        const bool pair = full && nb + 32 <= N;  // tiles j, j + 1 both full (j even)
        if (j % 2 == 1 && full) {
          // written with tile j - 1 (full implies that pair was full)
        } else if (pair) {
          // Tiles j and j + 1 together: each weight row gives one whole 64-byte line (32 columns),
          // where one tile alone would read half lines.
          uint32_t* tile1 = reinterpret_cast<uint32_t*>(bp + ((j + 1) * kbs + kb) * 512);
          for (int p = 0; p < 16; p++) {
            const __m512i ra = _mm512_loadu_si512(w + (kd0 + 2 * p) * N + nb);
            const __m512i rb = _mm512_loadu_si512(w + (kd0 + 2 * p + 1) * N + nb);
            const __m512i a0 = _mm512_cvtepu16_epi32(_mm512_castsi512_si256(ra));
            const __m512i b0 = _mm512_cvtepu16_epi32(_mm512_castsi512_si256(rb));
            const __m512i a1 = _mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(ra, 1));
            const __m512i b1 = _mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(rb, 1));
            _mm512_storeu_si512(tile + p * 16, _mm512_or_si512(a0, _mm512_slli_epi32(b0, 16)));
            _mm512_storeu_si512(tile1 + p * 16, _mm512_or_si512(a1, _mm512_slli_epi32(b1, 16)));
          }
        } else if (full) {
          for (int p = 0; p < 16; p++) {
            __m512i a = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + (kd0 + 2 * p) * N + nb)));
            __m512i b = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + (kd0 + 2 * p + 1) * N + nb)));
            _mm512_storeu_si512(tile + p * 16, _mm512_or_si512(a, _mm512_slli_epi32(b, 16)));
          }
        } else {
          for (int p = 0; p < 16; p++)
            for (int c = 0; c < 16; c++) {
              long n = nb + c, kd = kd0 + 2 * p;
              uint32_t lo = (n < N && kd < Kd) ? w[kd * N + n] : 0;
              uint32_t hi = (n < N && kd + 1 < Kd) ? w[(kd + 1) * N + n] : 0;
              tile[p * 16 + c] = lo | (hi << 16);
            }
        }
      }
    }
  }
}

// The blocking both engines share: per (NC columns x KC depth) block of this thread's column
// range [nA, nB), pack B into the thread's buffer and call body(bp, n0, ncols, k0, kbs, load)
// (ncols a multiple of 32; load: accumulate onto out, after the first depth block or when acc).
template <class F>
void for_each_packed_block(const uint16_t* w, bool wTrans, long N, long Kd, long Kp, long nA, long nB, bool acc, F&& body) {
  if (t_bpack.size() < static_cast<size_t>(NC * KC)) t_bpack.resize(NC * KC);
  uint16_t* bp = t_bpack.data();
  for (long n0 = nA; n0 < nB; n0 += NC) {
    const long ncols = round_up((nB - n0) < NC ? (nB - n0) : NC, 32);
    for (long k0 = 0; k0 < Kp; k0 += KC) {
      const long kc = (Kp - k0) < KC ? (Kp - k0) : KC;
      pack_b(bp, w, wTrans, N, Kd, n0, ncols, k0, kc);
      body(static_cast<const uint16_t*>(bp), n0, ncols, k0, kc / 32, acc || k0 > 0);
    }
  }
}

// Copy rows [m0, m0 + 32) x cols [n0, n0 + 32) of out (M, N), clipped, into a 32x32 bounce block as
// 2x2 tiles (zeros outside, or everywhere when !load), and back (store).
void bounce(float* blk, float* out, long M, long N, long m0, long n0, bool load, bool store) {
  for (int r = 0; r < 32; r++) {
    for (int h = 0; h < 2; h++) {
      float* t = blk + ((r / 16) * 2 + h) * 256 + (r % 16) * 16;
      const long m = m0 + r, n = n0 + h * 16;
      const long cnt = (m < M && n < N) ? (N - n < 16 ? N - n : 16) : 0;
      const __mmask16 mk = cnt > 0 ? tail_mask(static_cast<int>(cnt)) : (__mmask16)0;
      if (store) {
        if (cnt > 0) _mm512_mask_storeu_ps(out + m * N + n, mk, _mm512_loadu_ps(t));
      } else {
        _mm512_storeu_ps(t, load ? _mm512_maskz_loadu_ps(mk, out + m * N + n) : _mm512_setzero_ps());
      }
    }
  }
}

template <bool SPLIT>
void amx_thread(const uint16_t* A, float* out, const uint16_t* w, bool wTrans, long M, long N,
                                                                             long Kd, long Kp, long Mp, long nA, long nB, bool acc) {
  TileConfig cfg;
  std::memset(&cfg, 0, sizeof cfg);
  cfg.palette_id = 1;
  for (int t = 0; t < 8; t++) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  _tile_loadconfig(&cfg);

  alignas(64) float blk[4 * 256];  // bounce block for 2x2 tiles that straddle the edge of out
  const long nKb = Kp / 32, ts = SPLIT ? 1024 : 512;
  const long ldo = N * 4;  // bytes between rows of out

  for_each_packed_block(w, wTrans, N, Kd, Kp, nA, nB, acc, [&](const uint16_t* bp, long n0, long ncols, long k0, long kbs, bool load) {
      for (long mt = 0; mt < Mp / 16; mt += 2) {
        const uint16_t* a0 = A + (mt * nKb + k0 / 32) * ts;
        const uint16_t* a1 = a0 + nKb * ts;
        for (long j = 0; j < ncols / 16; j += 2) {
          const long m = mt * 16, n = n0 + j * 16;
          // The 32x32 output block is read and written in place (tile rows N floats apart) when it
          // lies inside out, else through the bounce block.
          const bool inside = m + 32 <= M && n + 32 <= N;
          float* c00 = inside ? out + m * N + n : blk;
          float* c01 = inside ? c00 + 16 : blk + 256;
          float* c10 = inside ? c00 + 16 * N : blk + 512;
          float* c11 = inside ? c10 + 16 : blk + 768;
          const long ld = inside ? ldo : 64;
          if (!inside) bounce(blk, out, M, N, m, n, load, false);
          if (load || !inside) {
            _tile_loadd(0, c00, ld);
            _tile_loadd(1, c01, ld);
            _tile_loadd(2, c10, ld);
            _tile_loadd(3, c11, ld);
          } else {
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
          }
          const uint16_t* b0 = bp + (j * kbs) * 512;
          const uint16_t* b1 = bp + ((j + 1) * kbs) * 512;
          for (long kb = 0; kb < kbs; kb++) {
            // Loads interleaved with the products: tiles are not renamed, so a load into a tile
            // waits for the product that last read it; this order lets each load overlap a product.
            _tile_loadd(4, a0 + kb * ts, 64);
            _tile_loadd(6, b0 + kb * 512, 64);
            if (kb + 1 < kbs) {
              // The next step's tiles into L1 (1 KB each = 16 lines), hidden behind the products.
              const char* pa0 = reinterpret_cast<const char*>(a0 + (kb + 1) * ts);
              const char* pa1 = reinterpret_cast<const char*>(a1 + (kb + 1) * ts);
              const char* pb0 = reinterpret_cast<const char*>(b0 + (kb + 1) * 512);
              const char* pb1 = reinterpret_cast<const char*>(b1 + (kb + 1) * 512);
              for (int l = 0; l < 1024; l += 64) {
                _mm_prefetch(pa0 + l, _MM_HINT_T0);
                _mm_prefetch(pb0 + l, _MM_HINT_T0);
              }
              for (int l = 0; l < 1024; l += 64) {
                _mm_prefetch(pa1 + l, _MM_HINT_T0);
                _mm_prefetch(pb1 + l, _MM_HINT_T0);
              }
            }
            _tile_dpbf16ps(0, 4, 6);
            _tile_loadd(7, b1 + kb * 512, 64);
            _tile_dpbf16ps(1, 4, 7);
            _tile_loadd(5, a1 + kb * ts, 64);
            _tile_dpbf16ps(2, 5, 6);
            _tile_dpbf16ps(3, 5, 7);
            if (SPLIT) {
              _tile_loadd(4, a0 + kb * ts + 512, 64);
              _tile_loadd(5, a1 + kb * ts + 512, 64);
              _tile_dpbf16ps(0, 4, 6);
              _tile_dpbf16ps(1, 4, 7);
              _tile_dpbf16ps(2, 5, 6);
              _tile_dpbf16ps(3, 5, 7);
            }
          }
          _tile_stored(0, c00, ld);
          _tile_stored(1, c01, ld);
          _tile_stored(2, c10, ld);
          _tile_stored(3, c11, ld);
          if (!inside) bounce(blk, out, M, N, m, n, false, true);
        }
      }
  });
  _tile_release();
}

// The same GEMM on AVX512_BF16 (vdpbf16ps) for CPUs without AMX (Zen 4, Cooper Lake): the same
// bf16 A tiles and packed B, each packed B row a 512-bit vector of 16 columns x one depth pair.
// Register block: 8 rows x 32 columns (16 fp32 accumulators), A pairs broadcast per row;
// accumulates in place in out like the tile engine. vdpbf16ps adds the pair's two exact products
// in turn (fp32 rounding each), so results match the tile engine to fp32 accumulation order.
template <bool SPLIT>
void dpbf16_thread(const uint16_t* A, float* out, const uint16_t* w, bool wTrans, long M,
                                                                         long N, long Kd, long Kp, long Mp, long nA, long nB, bool acc) {
  const long nKb = Kp / 32, ts = SPLIT ? 1024 : 512;
  for_each_packed_block(w, wTrans, N, Kd, Kp, nA, nB, acc, [&](const uint16_t* bp, long n0, long ncols, long k0, long kbs, bool load) {
      for (long m = 0; m < M; m += 8) {
        const long rows = M - m < 8 ? M - m : 8;
        const long mt = m / 16, r0 = m % 16;  // 8-row half of 16-row A tile mt
        for (long j = 0; j < ncols / 16; j += 2) {
          const long n = n0 + j * 16;
          __mmask16 mk[2];
          for (int c = 0; c < 2; c++) {
            const long left = N - (n + 16 * c);
            mk[c] = left <= 0 ? (__mmask16)0 : tail_mask(left > 16 ? 16 : static_cast<int>(left));
          }
          __m512 a[8][2];
          for (int r = 0; r < 8; r++)
            for (int c = 0; c < 2; c++)
              a[r][c] = (load && r < rows) ? _mm512_maskz_loadu_ps(mk[c], out + (m + r) * N + n + 16 * c) : _mm512_setzero_ps();
          const uint32_t* b0 = reinterpret_cast<const uint32_t*>(bp + (j * kbs) * 512);
          const uint32_t* b1 = reinterpret_cast<const uint32_t*>(bp + ((j + 1) * kbs) * 512);
          for (long kb = 0; kb < kbs; kb++) {
            for (int part = 0; part < (SPLIT ? 2 : 1); part++) {
              // row r of the A tile: 16 depth pairs as 32-bit words
              const uint32_t* at = reinterpret_cast<const uint32_t*>(A + (mt * nKb + k0 / 32 + kb) * ts + part * 512) + r0 * 16;
              for (int p = 0; p < 16; p++) {
                const __m512bh w0 = (__m512bh)_mm512_loadu_si512(b0 + kb * 256 + p * 16);
                const __m512bh w1 = (__m512bh)_mm512_loadu_si512(b1 + kb * 256 + p * 16);
                for (int r = 0; r < 8; r++) {
                  const __m512bh av = (__m512bh)_mm512_set1_epi32(static_cast<int>(at[r * 16 + p]));
                  a[r][0] = _mm512_dpbf16_ps(a[r][0], av, w0);
                  a[r][1] = _mm512_dpbf16_ps(a[r][1], av, w1);
                }
              }
            }
          }
          for (int r = 0; r < rows; r++)
            for (int c = 0; c < 2; c++) _mm512_mask_storeu_ps(out + (m + r) * N + n + 16 * c, mk[c], a[r][c]);
        }
      }
  });
}

#pragma GCC pop_options

bool g_amxReady = false;

}  // namespace

bool amx_init() {
  if (!__builtin_cpu_supports("amx-bf16") || !__builtin_cpu_supports("amx-tile")) return false;
  const long ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18;
  if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) return false;
  g_amxReady = true;
  return true;
}

bool amx_available() { return g_amxReady; }

bool bf16_gemm_ready() { return (g_amxReady && g_features.amx) || g_features.avx512bf16; }

void bf16_gemm(float* out, const float* x, const uint16_t* w, bool wTrans, long M, long N, long Kd, bool acc) {
  const long Kp = round_up(Kd, 32), Mp = round_up(M, 32);
  const bool split = g_features.bf16Split;
  if (t_a.size() < static_cast<size_t>((split ? 2 : 1) * Mp * Kp)) t_a.resize((split ? 2 : 1) * Mp * Kp);
  uint16_t* A = t_a.data();
  const int nt = threads_for(static_cast<double>(M) * N * Kd, 1 << 20);
  parallel_for(Mp, nt, [&](long m0, long m1) {
    if (split) split_rows<true>(A, x, Kd, Kp, m0, m1, M);
    else split_rows<false>(A, x, Kd, Kp, m0, m1, M);
  });
  // Columns in blocks of 32 per thread.
  const long blocks = (N + 31) / 32;
  const bool tiles = g_amxReady && g_features.amx;
  parallel_for(blocks, nt, [&](long b0, long b1) {
    long nA = b0 * 32, nB = b1 * 32 < N ? b1 * 32 : N;
    if (tiles) {
      if (split) amx_thread<true>(A, out, w, wTrans, M, N, Kd, Kp, Mp, nA, nB, acc);
      else amx_thread<false>(A, out, w, wTrans, M, N, Kd, Kp, Mp, nA, nB, acc);
    } else {
      if (split) dpbf16_thread<true>(A, out, w, wTrans, M, N, Kd, Kp, Mp, nA, nB, acc);
      else dpbf16_thread<false>(A, out, w, wTrans, M, N, Kd, Kp, Mp, nA, nB, acc);
    }
  });
}

#else

bool amx_init() { return false; }
bool amx_available() { return false; }
bool bf16_gemm_ready() { return false; }
void bf16_gemm(float*, const float*, const uint16_t*, bool, long, long, long, bool) {}

#endif

}  // namespace la
