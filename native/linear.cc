// Linear algebra kernels: matmul / matmulBack against frozen f32 or bf16 weights, and gemm.
//
//  * matmul with few rows (decode, small batches: M <= DotMaxM() of the target in force, or
//    kDotMaxMAmx for bf16 on AMX CPUs): a dot-product kernel written once over Highway
//    (compiled per SIMD target, dispatched at run time: cpu.cc), memory-bound on the weights at
//    decode; bf16 weights are widened to fp32 in registers, activations rounded to bf16 (see
//    bf16_activations), accumulation is fp32.
//  * many rows, f32 weights: OpenBLAS sgemm (which dispatches on the CPU itself), split over the
//    pool by rows when the activations outnumber the weight rows, else by output columns (each
//    call re-packs the unsplit operand).
//  * many rows, bf16 weights: AMX tiles when the CPU has them (amx.cc; or its opt-in AVX512_BF16
//    engine), else weight panels are widened to fp32 in a per-thread buffer and fed to sgemm.
//  * matmulBack with few rows: a column-blocked kernel (Highway); otherwise the same as above.

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "linear.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "hwy/highway.h"
#include "common.h"
#include "simd-inl.h"

#include <array>
#include <utility>
#include <vector>

HWY_BEFORE_NAMESPACE();
namespace la {
namespace HWY_NAMESPACE {

// Register block of the dot kernel: kMB rows of x by kNB rows of W, one accumulator each. Targets
// with 32 vector registers take 4 x 6 (24 accumulators + 6 weight vectors); those with 16 take 3 x 4.
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL || HWY_ARCH_ARM
constexpr int kMB = 4, kNB = 6;
#else
constexpr int kMB = 3, kNB = 4;
#endif

// ---- matmul: the dot-product kernel for few rows.
// Every output element out[m, n] is one Lanes-wide fp32 accumulator that runs over k in steps of
// Lanes (lane l sums k = l, l + Lanes, ... in order; the ragged end is a zero-filled step),
// followed by the target's fixed horizontal reduction. Register blocks are MB x NB (<= kMB x kNB)
// such accumulators. For few rows the kernel reads x and W in place; for more rows x and W are
// first copied into contiguous (and for bf16, widened) KC-long pieces -- weight rows are usually
// a power-of-two apart and would evict each other from L1 -- and the accumulators are parked in a
// per-thread buffer between pieces. None of this changes any arithmetic, so within this kernel's
// range of M a row's result does not depend on M, on the other rows of its batch or on the thread
// partition (decode steps of 1 or of 8 rows agree bit for bit, on one target). Across the switch
// to sgemm / AMX results differ by rounding only; the batchInvariant feature keeps every M on
// this kernel.

constexpr long kKC = 512, kMCmax = 256;

struct MmScratch {
  std::vector<float> park;  // (MC / kMB, kMB * kNB, Lanes) parked accumulators
  std::vector<float> xp;    // (MC / kMB, nK, kMB, KC) packed rows of x
  std::vector<float> wp;    // (kNB, KC) packed weight rows
};
thread_local MmScratch t_mm;

// o[i, j] (+)= x[i, 0:len] · w[j, 0:len] for i < MB, j < NB (x rows ldx apart, w rows ldw apart).
template <bool BF16, int MB, int NB>
void DotBlock(float* o, long ldo, const float* x, long ldx, const void* w, long ldw, long len, float* park, bool first, bool last, bool acc) {
  const DF d;
  const long N = static_cast<long>(hn::Lanes(d));
  VF a[MB][NB];
  for (int i = 0; i < MB; i++)
    for (int j = 0; j < NB; j++) a[i][j] = first ? hn::Zero(d) : hn::LoadU(d, park + (i * kNB + j) * N);
  long k = 0;
  for (; k + N <= len; k += N) {
    VF wv[NB];
    for (int j = 0; j < NB; j++) wv[j] = LoadW<BF16>(d, w, j * ldw + k);
    for (int i = 0; i < MB; i++) {
      const VF xv = hn::LoadU(d, x + i * ldx + k);
      for (int j = 0; j < NB; j++) a[i][j] = hn::MulAdd(xv, wv[j], a[i][j]);
    }
  }
  if (k < len) {  // only at the end of K
    const size_t t = static_cast<size_t>(len - k);
    VF wv[NB];
    for (int j = 0; j < NB; j++) wv[j] = LoadWPart<BF16>(d, w, j * ldw + k, t);
    for (int i = 0; i < MB; i++) {
      const VF xv = LoadPart(d, x + i * ldx + k, t);
      for (int j = 0; j < NB; j++) a[i][j] = hn::MulAdd(xv, wv[j], a[i][j]);
    }
  }
  if (last) {
    for (int i = 0; i < MB; i++)
      for (int j = 0; j < NB; j++) {
        const float sum = ReduceSum(d, a[i][j]);
        o[i * ldo + j] = acc ? o[i * ldo + j] + sum : sum;
      }
  } else {
    for (int i = 0; i < MB; i++)
      for (int j = 0; j < NB; j++) hn::StoreU(a[i][j], d, park + (i * kNB + j) * N);
  }
}

using DotFn = void (*)(float*, long, const float*, long, const void*, long, long, float*, bool, bool, bool);

// kDot<BF16>[mb - 1][nb - 1] = DotBlock<BF16, mb, nb>
template <bool BF16, int MB, int... NBs>
constexpr std::array<DotFn, sizeof...(NBs)> DotRow(std::integer_sequence<int, NBs...>) {
  return {{&DotBlock<BF16, MB, NBs + 1>...}};
}
template <bool BF16, int... MBs>
constexpr std::array<std::array<DotFn, kNB>, sizeof...(MBs)> DotTable(std::integer_sequence<int, MBs...>) {
  return {{DotRow<BF16, MBs + 1>(std::make_integer_sequence<int, kNB>())...}};
}
template <bool BF16>
constexpr auto kDot = DotTable<BF16>(std::make_integer_sequence<int, kMB>());

// out rows [0, M) x columns [n0, n1) (weight rows n0..n1).
template <bool BF16>
void MmRangeT(float* out, const float* x, const void* w, long N, long K, long M, long n0, long n1, bool acc) {
  const long L = static_cast<long>(hn::Lanes(DF()));
  const size_t wsz = BF16 ? 2 : 4;
  const char* wb = static_cast<const char*>(w);
  if (M <= kMB || K <= L) {
    // Few rows: x stays in L1; one pass over W in place.
    for (long n = n0; n < n1; n += kNB) {
      const int nb = static_cast<int>(n1 - n < kNB ? n1 - n : kNB);
      for (long m = 0; m < M; m += kMB) {
        const int mb = static_cast<int>(M - m < kMB ? M - m : kMB);
        kDot<BF16>[mb - 1][nb - 1](out + m * N + n, N, x + m * K, K, wb + n * K * wsz, K, K, nullptr, true, true, acc);
      }
    }
    return;
  }
  // Many rows: MC rows of x (all of K, packed) are reused by every weight block; keep them within
  // ~768 KB of L2. W pieces (kNB x KC, fp32) stay in L1 across the MC rows.
  const long nK = (K + kKC - 1) / kKC;
  long MC = (196608 / K) / kMB * kMB;
  MC = MC < 2 * kMB ? 2 * kMB : MC > kMCmax ? kMCmax : MC;
  MmScratch& sc = t_mm;
  if (sc.park.size() < static_cast<size_t>(kMCmax / kMB * kMB * kNB * L)) sc.park.resize(kMCmax / kMB * kMB * kNB * L);
  if (sc.xp.size() < static_cast<size_t>(MC * nK * kKC)) sc.xp.resize(MC * nK * kKC);
  if (sc.wp.size() < static_cast<size_t>(kNB * kKC)) sc.wp.resize(kNB * kKC);
  float* park = sc.park.data();
  float* xp = sc.xp.data();
  float* wp = sc.wp.data();
  for (long mc = 0; mc < M; mc += MC) {
    const long me = mc + MC < M ? mc + MC : M;
    // Pack x rows [mc, me): block b (kMB rows), piece c -> xp + (b * nK + c) * kMB * kKC, row i at + i * kKC.
    for (long m = mc; m < me; m++) {
      const long b = (m - mc) / kMB, i = (m - mc) % kMB;
      for (long c = 0; c < nK; c++) {
        const long k0 = c * kKC, len = K - k0 < kKC ? K - k0 : kKC;
        std::memcpy(xp + ((b * nK + c) * kMB + i) * kKC, x + m * K + k0, len * sizeof(float));
      }
    }
    for (long n = n0; n < n1; n += kNB) {
      const int nb = static_cast<int>(n1 - n < kNB ? n1 - n : kNB);
      for (long c = 0; c < nK; c++) {
        const long k0 = c * kKC, len = K - k0 < kKC ? K - k0 : kKC;
        for (int j = 0; j < nb; j++) {
          if (BF16) Bf16ToF32(wp + j * kKC, reinterpret_cast<const uint16_t*>(wb) + (n + j) * K + k0, len);
          else std::memcpy(wp + j * kKC, reinterpret_cast<const float*>(wb) + (n + j) * K + k0, len * sizeof(float));
        }
        const bool first = c == 0, last = c == nK - 1;
        for (long m = mc; m < me; m += kMB) {
          const int mb = static_cast<int>(me - m < kMB ? me - m : kMB);
          const long b = (m - mc) / kMB;
          kDot<false>[mb - 1][nb - 1](out + m * N + n, N, xp + (b * nK + c) * kMB * kKC, kKC, wp, kKC, len, park + b * (kMB * kNB * L), first, last, acc);
        }
      }
    }
  }
}

void MmRange(float* out, const float* x, const void* w, bool bf16, long N, long K, long M, long n0, long n1, bool acc) {
  if (bf16) MmRangeT<true>(out, x, w, N, K, M, n0, n1, acc);
  else MmRangeT<false>(out, x, w, N, K, M, n0, n1, acc);
}

/** The dot kernel's register-block width (matmul splits N into groups of it). */
long DotGroup() { return kNB; }

constexpr long kMaxSmall = 8;  // matmulBack rows handled by the small kernel (at most)

// out[m, k0:k1] (+)= sum_n dy[m, n] W[n, k0:k1] for m < M (small). Column blocks of the output
// stay in L1 while the weight rows stream through 4 at a time; each element sums n in order.
template <bool BF16>
void MmbSmallRangeT(float* out, const float* dy, const void* w, long N, long K, long M, long k0, long k1, bool acc) {
  const DF d;
  const long L = static_cast<long>(hn::Lanes(d));
  long kbW = (2048 / M) / L * L;
  if (kbW < 256) kbW = 256;
  for (long kb = k0; kb < k1; kb += kbW) {
    const long ke = kb + kbW < k1 ? kb + kbW : k1;
    if (!acc)
      for (long m = 0; m < M; m++) std::memset(out + m * K + kb, 0, (ke - kb) * sizeof(float));
    long n = 0;
    for (; n + 4 <= N; n += 4) {
      for (long k = kb; k < ke; k += L) {
        const size_t t = static_cast<size_t>(ke - k < L ? ke - k : L);
        const bool full = static_cast<long>(t) == L;
        const VF w0 = full ? LoadW<BF16>(d, w, n * K + k) : LoadWPart<BF16>(d, w, n * K + k, t);
        const VF w1 = full ? LoadW<BF16>(d, w, (n + 1) * K + k) : LoadWPart<BF16>(d, w, (n + 1) * K + k, t);
        const VF w2 = full ? LoadW<BF16>(d, w, (n + 2) * K + k) : LoadWPart<BF16>(d, w, (n + 2) * K + k, t);
        const VF w3 = full ? LoadW<BF16>(d, w, (n + 3) * K + k) : LoadWPart<BF16>(d, w, (n + 3) * K + k, t);
        for (long m = 0; m < M; m++) {
          float* o = out + m * K + k;
          const float* dr = dy + m * N + n;
          VF v = full ? hn::LoadU(d, o) : LoadPart(d, o, t);
          v = hn::MulAdd(hn::Set(d, dr[0]), w0, v);
          v = hn::MulAdd(hn::Set(d, dr[1]), w1, v);
          v = hn::MulAdd(hn::Set(d, dr[2]), w2, v);
          v = hn::MulAdd(hn::Set(d, dr[3]), w3, v);
          if (full) hn::StoreU(v, d, o);
          else StorePart(d, v, o, t);
        }
      }
    }
    for (; n < N; n++) {
      for (long m = 0; m < M; m++) {
        const VF d0 = hn::Set(d, dy[m * N + n]);
        float* o = out + m * K;
        for (long k = kb; k < ke; k += L) {
          const size_t t = static_cast<size_t>(ke - k < L ? ke - k : L);
          if (static_cast<long>(t) == L) hn::StoreU(hn::MulAdd(d0, LoadW<BF16>(d, w, n * K + k), hn::LoadU(d, o + k)), d, o + k);
          else StorePart(d, hn::MulAdd(d0, LoadWPart<BF16>(d, w, n * K + k, t), LoadPart(d, o + k, t)), o + k, t);
        }
      }
    }
  }
}

void MmbSmallRange(float* out, const float* dy, const void* w, bool bf16, long N, long K, long M, long k0, long k1, bool acc) {
  if (bf16) MmbSmallRangeT<true>(out, dy, w, N, K, M, k0, k1, acc);
  else MmbSmallRangeT<false>(out, dy, w, N, K, M, k0, k1, acc);
}

void Bf16ToF32Range(float* dst, const uint16_t* src, long n) { Bf16ToF32(dst, src, n); }
void RoundBf16Range(float* dst, const float* src, long n) { RoundBf16Array(dst, src, n); }

}  // namespace HWY_NAMESPACE
}  // namespace la
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace la {

HWY_EXPORT(MmRange);
HWY_EXPORT(DotGroup);
HWY_EXPORT(MmbSmallRange);
HWY_EXPORT(Bf16ToF32Range);
HWY_EXPORT(RoundBf16Range);

namespace {

// matmul: up to these many rows the dot-product kernel beats OpenBLAS sgemm, and AMX for bf16
// weights (2 x 16-row tiles, zero-padded) beats it from M=16 (the crossover measurements are in
// bench/README.md, "Kernel decisions").
constexpr long kDotMaxM = 31;
constexpr long kDotMaxMAmx = 15;
// matmulBack: rows handled by the small column-blocked kernel.
constexpr long kSmallM = 4;
constexpr long kSmallMBf16 = 8;
// matmul rows counted as decode rows (thread count and affine scheduling below).
constexpr long kFewRows = 4;

// Per-thread scratch (the pool's workers persist, so these persist with them).
thread_local std::vector<float> t_panel;
thread_local std::vector<float> t_round;  // the caller's activations rounded to bf16

// bf16 weights: products are bf16 x bf16 (activations rounded to bf16, as on AMX), accumulated in
// fp32, whichever kernel runs; with the bf16Split feature activations stay fp32 (AMX splits them).
const float* bf16_activations(const float* x, long n) {
  if (g_features.bf16Split) return x;
  if (t_round.size() < static_cast<size_t>(n)) t_round.resize(n);
  HWY_DYNAMIC_DISPATCH(RoundBf16Range)(t_round.data(), x, n);
  return t_round.data();
}

float* scratch_panel(size_t n) {
  if (t_panel.size() < n) t_panel.resize(n);
  return t_panel.data();
}

}  // namespace

// C (M, N) (+)= A (M, K) · op(B), op(B) = B^T with B (N, K) when bT, else B (K, N); split
// over the pool by blocks of 16 rows of A and C (every call packs all of B).
static void sgemm_by_rows(bool bT, long M, long N, long K, const float* A, const float* B, bool acc, float* C, int nt) {
  parallel_for((M + 15) / 16, nt, [&](long b0, long b1) {
    const long m0 = b0 * 16, m1 = b1 * 16 < M ? b1 * 16 : M;
    cblas_sgemm(kCblasRowMajor, kCblasNoTrans, bT ? kCblasTrans : kCblasNoTrans, static_cast<int>(m1 - m0), static_cast<int>(N),
                static_cast<int>(K), 1.0f, A + m0 * K, static_cast<int>(K), B, static_cast<int>(bT ? K : N), acc ? 1.0f : 0.0f,
                C + m0 * N, static_cast<int>(N));
  }, 1);
}

// out (M, N) (+)= x (M, K) · W^T, W (N, K).
void matmul(float* out, const float* x, const Mat& wm, long M, bool acc) {
  if (wm.qtype) {
    quant_matmul(out, x, wm, M, acc);
    return;
  }
  const void* w = wm.data;
  const bool bf16 = wm.bf16;
  const long N = wm.rows, K = wm.cols;
  if (M <= 0 || N <= 0) return;
  const int nt = threads_for(static_cast<double>(M) * N * K, 1 << 17);
  if (M <= ((bf16 && bf16_gemm_ready()) ? kDotMaxMAmx : kDotMaxM) || K == 0 || g_features.batchInvariant) {
    if (bf16) x = bf16_activations(x, M * K);
    // Decode rows: two threads from 16K multiply-adds (~1.5 us of work against ~0.6 us to hand
    // a job to a spinning worker), so on small models the worker stays awake between tokens.
    const int ntDot = M <= kFewRows ? threads_for(static_cast<double>(M) * N * K, 1 << 14) : nt;
    // Split N into groups of the kernel's register-block width.
    // Many rows: fewer chunks, since each chunk packs its own copy of x.
    const long nb = HWY_DYNAMIC_DISPATCH(DotGroup)();
    const long groups = (N + nb - 1) / nb;
    auto body = [&](long g0, long g1) {
      HWY_DYNAMIC_DISPATCH(MmRange)(out, x, w, bf16, N, K, M, g0 * nb, g1 * nb < N ? g1 * nb : N, acc);
    };
    // Decode rows: each thread keeps to its own weight rows from step to step (common.h), so
    // they stay in that core's L2.
    if (M <= kFewRows) parallel_for_affine(groups, ntDot, body);
    else parallel_for(groups, ntDot, body, 2);
    return;
  }
  if (bf16 && bf16_gemm_ready()) {
    bf16_gemm(out, x, static_cast<const uint16_t*>(w), false, M, N, K, acc);
    return;
  }
  if (!bf16 && M > N) {
    // More activation rows than weight rows: split rows, so each call re-packs only W (N, K)
    // rather than x (M, K) (tinystories-656k training, 128-384-row weights against 1024 rows).
    sgemm_by_rows(true, M, N, K, x, static_cast<const float*>(w), acc, out, nt);
    return;
  }
  if (bf16) x = bf16_activations(x, M * K);
  // Column blocks (multiples of 16), two per thread: each sgemm call re-packs x.
  long blocks = (N + 15) / 16;
  parallel_for(blocks, nt, [&](long b0, long b1) {
    long n0 = b0 * 16, n1 = b1 * 16 < N ? b1 * 16 : N;
    if (!bf16) {
      cblas_sgemm(kCblasRowMajor, kCblasNoTrans, kCblasTrans, static_cast<int>(M), static_cast<int>(n1 - n0), static_cast<int>(K), 1.0f, x,
                  static_cast<int>(K), static_cast<const float*>(w) + n0 * K, static_cast<int>(K), acc ? 1.0f : 0.0f, out + n0,
                  static_cast<int>(N));
      return;
    }
    // bf16 without AMX: widen panels of PN weight rows, sgemm each panel.
    const long PN = 256;
    float* panel = scratch_panel(static_cast<size_t>(PN * K));
    for (long p = n0; p < n1; p += PN) {
      long pn = n1 - p < PN ? n1 - p : PN;
      HWY_DYNAMIC_DISPATCH(Bf16ToF32Range)(panel, static_cast<const uint16_t*>(w) + p * K, pn * K);
      cblas_sgemm(kCblasRowMajor, kCblasNoTrans, kCblasTrans, static_cast<int>(M), static_cast<int>(pn), static_cast<int>(K), 1.0f, x,
                  static_cast<int>(K), panel, static_cast<int>(K), acc ? 1.0f : 0.0f, out + p, static_cast<int>(N));
    }
  }, 2);
}

// out (M, K) (+)= dy (M, N) · W, W (N, K).
void matmul_back(float* out, const float* dy, const Mat& wm, long M, bool acc) {
  if (wm.qtype) {
    quant_matmul_back(out, dy, wm, M, acc);
    return;
  }
  const void* w = wm.data;
  const bool bf16 = wm.bf16;
  const long N = wm.rows, K = wm.cols;
  if (M <= 0 || K <= 0) return;
  const int nt = threads_for(static_cast<double>(M) * N * K, 1 << 17);
  if (M <= (bf16 ? kSmallMBf16 : kSmallM) || N == 0) {
    if (bf16) dy = bf16_activations(dy, M * N);
    long blocks = (K + 15) / 16;
    parallel_for(blocks, nt, [&](long b0, long b1) {
      long k0 = b0 * 16, k1 = b1 * 16 < K ? b1 * 16 : K;
      HWY_DYNAMIC_DISPATCH(MmbSmallRange)(out, dy, w, bf16, N, K, M, k0, k1, acc);
    });
    return;
  }
  if (bf16 && bf16_gemm_ready()) {
    bf16_gemm(out, dy, static_cast<const uint16_t*>(w), true, M, K, N, acc);
    return;
  }
  if (!bf16 && M > K) {
    // Split rows when dy's rows outnumber W's columns: each call re-packs W, not dy (see matmul).
    sgemm_by_rows(false, M, K, N, dy, static_cast<const float*>(w), acc, out, nt);
    return;
  }
  if (bf16) dy = bf16_activations(dy, M * N);
  long blocks = (K + 15) / 16;
  parallel_for(blocks, nt, [&](long b0, long b1) {
    long k0 = b0 * 16, k1 = b1 * 16 < K ? b1 * 16 : K, kw = k1 - k0;
    if (!bf16) {
      cblas_sgemm(kCblasRowMajor, kCblasNoTrans, kCblasNoTrans, static_cast<int>(M), static_cast<int>(kw), static_cast<int>(N), 1.0f, dy,
                  static_cast<int>(N), static_cast<const float*>(w) + k0, static_cast<int>(K), acc ? 1.0f : 0.0f, out + k0,
                  static_cast<int>(K));
      return;
    }
    // bf16 without AMX: panels of PN weight rows (the reduction dim), summed in order.
    const long PN = 512;
    float* panel = scratch_panel(static_cast<size_t>(PN * kw));
    const uint16_t* wb = static_cast<const uint16_t*>(w);
    for (long p = 0; p < N; p += PN) {
      long pn = N - p < PN ? N - p : PN;
      for (long r = 0; r < pn; r++) HWY_DYNAMIC_DISPATCH(Bf16ToF32Range)(panel + r * kw, wb + (p + r) * K + k0, kw);
      cblas_sgemm(kCblasRowMajor, kCblasNoTrans, kCblasNoTrans, static_cast<int>(M), static_cast<int>(kw), static_cast<int>(pn), 1.0f,
                  dy + p, static_cast<int>(N), panel, static_cast<int>(kw), (acc || p > 0) ? 1.0f : 0.0f, out + k0,
                  static_cast<int>(K));
    }
  }, 2);
}

// C (M, N) = alpha op(A) op(B) + beta C, row-major: OpenBLAS, split over the pool by C columns.
void gemm(bool tA, bool tB, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb, float beta,
          float* C, int ldc) {
  if (M <= 0 || N <= 0) return;
  const int nt = threads_for(static_cast<double>(M) * N * (K > 0 ? K : 1), 1 << 17);
  long blocks = (N + 15) / 16;
  parallel_for(blocks, nt, [&](long b0, long b1) {
    long n0 = b0 * 16, n1 = b1 * 16 < N ? b1 * 16 : N;
    // Column block n0..n1 of op(B): B[:, n0] when not transposed, B[n0, :] when transposed.
    const float* Bp = tB ? B + n0 * static_cast<long>(ldb) : B + n0;
    cblas_sgemm(kCblasRowMajor, tA ? kCblasTrans : kCblasNoTrans, tB ? kCblasTrans : kCblasNoTrans, M, static_cast<int>(n1 - n0), K,
                alpha, A, lda, Bp, ldb, beta, C + n0, ldc);
  }, 2);
}

}  // namespace la
#endif  // HWY_ONCE
