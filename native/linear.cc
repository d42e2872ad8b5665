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
//  * many rows, bf16 weights: AMX tiles when the CPU has them (amx.cc), else its AVX512_BF16
//    engine where the CPU has that (Zen 4), else a GEMM of our own that widens the weights to fp32
//    on the way into its L2-sized panels (GemmPacked below).
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
// A single row (decode) takes kNB1 weight rows at a time instead: on 16-register targets 8
// independent accumulators cover the FMA latency better than 4 (3-8% on decode shapes, AVX2 on
// Zen 4); on AVX-512 more than 6 measured slower.
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
constexpr int kMB = 4, kNB = 6, kNB1 = 6;
#elif HWY_ARCH_ARM
constexpr int kMB = 4, kNB = 6, kNB1 = 8;
#else
constexpr int kMB = 3, kNB = 4, kNB1 = 8;
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
template <int WK, int MB, int NB>
void DotBlock(float* o, long ldo, const float* x, long ldx, const void* w, long ldw, long len, float* park, bool first, bool last, bool acc) {
  const DF d;
  const long N = static_cast<long>(hn::Lanes(d));
  VF a[MB][NB];
  for (int i = 0; i < MB; i++)
    for (int j = 0; j < NB; j++) a[i][j] = first ? hn::Zero(d) : hn::LoadU(d, park + (i * kNB + j) * N);
  long k = 0;
  for (; k + N <= len; k += N) {
    VF wv[NB];
    for (int j = 0; j < NB; j++) wv[j] = LoadW<WK>(d, w, j * ldw + k);
    for (int i = 0; i < MB; i++) {
      const VF xv = hn::LoadU(d, x + i * ldx + k);
      for (int j = 0; j < NB; j++) a[i][j] = hn::MulAdd(xv, wv[j], a[i][j]);
    }
  }
  if (k < len) {  // only at the end of K
    const size_t t = static_cast<size_t>(len - k);
    VF wv[NB];
    for (int j = 0; j < NB; j++) wv[j] = LoadWPart<WK>(d, w, j * ldw + k, t);
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

// o[n] (+)= x[0:K] · w[n, 0:K] for n in [n0, n1), one weight row at a time: DotBlock<WK, 1, 1>'s
// arithmetic with the row loop inside, for the decode path that streams a large matrix (see
// MmRangeT; against a DotBlock call per row: +1% at AVX2, +10% at AVX-512, bench/README.md).
template <int WK>
void DotRows1(float* o, const float* x, const void* w, long K, long n0, long n1, bool acc) {
  const DF d;
  const long N = static_cast<long>(hn::Lanes(d));
  for (long n = n0; n < n1; n++) {
    const long base = n * K;
    VF a = hn::Zero(d);
    long k = 0;
    for (; k + N <= K; k += N) a = hn::MulAdd(hn::LoadU(d, x + k), LoadW<WK>(d, w, base + k), a);
    if (k < K) {
      const size_t t = static_cast<size_t>(K - k);
      a = hn::MulAdd(LoadPart(d, x + k, t), LoadWPart<WK>(d, w, base + k, t), a);
    }
    const float sum = ReduceSum(d, a);
    o[n] = acc ? o[n] + sum : sum;
  }
}

using DotFn = void (*)(float*, long, const float*, long, const void*, long, long, float*, bool, bool, bool);

// kDot<WK>[mb - 1][nb - 1] = DotBlock<WK, mb, nb>
template <int WK, int MB, int... NBs>
constexpr std::array<DotFn, sizeof...(NBs)> DotRow(std::integer_sequence<int, NBs...>) {
  return {{&DotBlock<WK, MB, NBs + 1>...}};
}
template <int WK, int... MBs>
constexpr std::array<std::array<DotFn, kNB>, sizeof...(MBs)> DotTable(std::integer_sequence<int, MBs...>) {
  return {{DotRow<WK, MBs + 1>(std::make_integer_sequence<int, kNB>())...}};
}
template <int WK>
constexpr auto kDot = DotTable<WK>(std::make_integer_sequence<int, kMB>());
// kDot1<WK>[nb - 1] = DotBlock<WK, 1, nb> for nb <= kNB1 (one row)
template <int WK>
constexpr auto kDot1 = DotRow<WK, 1>(std::make_integer_sequence<int, kNB1>());

// Weight bytes from which a decode matmul streams its rows one at a time (see MmRangeT).
constexpr double kStreamBytes = 1 << 20;

// out rows [0, M) x columns [n0, n1) (weight rows n0..n1).
template <int WK>
void MmRangeT(float* out, const float* x, const void* w, long N, long K, long M, long n0, long n1, bool acc) {
  const long L = static_cast<long>(hn::Lanes(DF()));
  const size_t wsz = WK == kWF32 ? 4 : 2;
  const char* wb = static_cast<const char*>(w);
  if (M == 1) {
    // A matrix over kStreamBytes is read from DRAM on every token (a model's weights outgrow L3
    // long before one of its matrices does): one row at a time, a single sequential stream per
    // thread that the hardware prefetchers follow; a small one takes kNB1 rows per pass. Not on
    // the scalar target: one row is one FMA chain there, latency-bound far below DRAM speed.
    if (L >= 4 && static_cast<double>(N) * K * wsz > kStreamBytes) {
      DotRows1<WK>(out, x, w, K, n0, n1, acc);
      return;
    }
    for (long n = n0; n < n1; n += kNB1) {
      const int nb = static_cast<int>(n1 - n < kNB1 ? n1 - n : kNB1);
      kDot1<WK>[nb - 1](out + n, N, x, K, wb + n * K * wsz, K, K, nullptr, true, true, acc);
    }
    return;
  }
  if (M <= kMB || K <= L) {
    // Few rows: x stays in L1; one pass over W in place.
    for (long n = n0; n < n1; n += kNB) {
      const int nb = static_cast<int>(n1 - n < kNB ? n1 - n : kNB);
      for (long m = 0; m < M; m += kMB) {
        const int mb = static_cast<int>(M - m < kMB ? M - m : kMB);
        kDot<WK>[mb - 1][nb - 1](out + m * N + n, N, x + m * K, K, wb + n * K * wsz, K, K, nullptr, true, true, acc);
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
          if (WK == kWBF16) Bf16ToF32(wp + j * kKC, reinterpret_cast<const uint16_t*>(wb) + (n + j) * K + k0, len);
          else if (WK == kWF16) F16ToF32(wp + j * kKC, reinterpret_cast<const uint16_t*>(wb) + (n + j) * K + k0, len);
          else std::memcpy(wp + j * kKC, reinterpret_cast<const float*>(wb) + (n + j) * K + k0, len * sizeof(float));
        }
        const bool first = c == 0, last = c == nK - 1;
        for (long m = mc; m < me; m += kMB) {
          const int mb = static_cast<int>(me - m < kMB ? me - m : kMB);
          const long b = (m - mc) / kMB;
          kDot<kWF32>[mb - 1][nb - 1](out + m * N + n, N, xp + (b * nK + c) * kMB * kKC, kKC, wp, kKC, len, park + b * (kMB * kNB * L), first, last, acc);
        }
      }
    }
  }
}

void MmRange(float* out, const float* x, const void* w, int wk, long N, long K, long M, long n0, long n1, bool acc) {
  if (wk == kWBF16) MmRangeT<kWBF16>(out, x, w, N, K, M, n0, n1, acc);
  else if (wk == kWF16) MmRangeT<kWF16>(out, x, w, N, K, M, n0, n1, acc);
  else MmRangeT<kWF32>(out, x, w, N, K, M, n0, n1, acc);
}

/** The dot kernel's register-block width for M rows (matmul splits N into groups of it). */
long DotGroup(long M) { return M == 1 ? kNB1 : kNB; }

constexpr long kMaxSmall = 8;  // matmulBack rows handled by the small kernel (at most)

// out[m, k0:k1] (+)= sum_n dy[m, n] W[n, k0:k1] for m < M (small). Column blocks of the output
// stay in L1 while the weight rows stream through 4 at a time; each element sums n in order.
template <int WK>
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
        const VF w0 = full ? LoadW<WK>(d, w, n * K + k) : LoadWPart<WK>(d, w, n * K + k, t);
        const VF w1 = full ? LoadW<WK>(d, w, (n + 1) * K + k) : LoadWPart<WK>(d, w, (n + 1) * K + k, t);
        const VF w2 = full ? LoadW<WK>(d, w, (n + 2) * K + k) : LoadWPart<WK>(d, w, (n + 2) * K + k, t);
        const VF w3 = full ? LoadW<WK>(d, w, (n + 3) * K + k) : LoadWPart<WK>(d, w, (n + 3) * K + k, t);
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
          if (static_cast<long>(t) == L) hn::StoreU(hn::MulAdd(d0, LoadW<WK>(d, w, n * K + k), hn::LoadU(d, o + k)), d, o + k);
          else StorePart(d, hn::MulAdd(d0, LoadWPart<WK>(d, w, n * K + k, t), LoadPart(d, o + k, t)), o + k, t);
        }
      }
    }
  }
}

void MmbSmallRange(float* out, const float* dy, const void* w, int wk, long N, long K, long M, long k0, long k1, bool acc) {
  if (wk == kWBF16) MmbSmallRangeT<kWBF16>(out, dy, w, N, K, M, k0, k1, acc);
  else if (wk == kWF16) MmbSmallRangeT<kWF16>(out, dy, w, N, K, M, k0, k1, acc);
  else MmbSmallRangeT<kWF32>(out, dy, w, N, K, M, k0, k1, acc);
}

// ---- A packed GEMM for bf16 weights on CPUs without a bf16 GEMM engine (AVX2, SSE4, NEON,
// AVX-512 without AVX512_BF16): C (M, N) (+)= X (M, Kd) · B with B[kd, n] = W[n, kd] (matmul, W
// (N, Kd)) or W[kd, n] (matmulBack, W (Kd, N)). BLIS-style: per (kKCg depth x kNCg columns) block
// the weights are widened once into fp32 micro-panels (kKCg x kNR), the activations packed (and
// rounded to bf16, as every bf16 kernel does, unless bf16Split) into micro-panels (kKCg x kMR), and
// a kMR x kNR register block accumulates broadcast(x) * w over the depth. The widening happens on
// the way into the L2-sized panel (never a whole-matrix fp32 copy), so the weights cross memory as
// bf16; the microkernel then runs at fp32 FMA speed. (For fp32 weights and few rows, packing the
// weights cost more than the dot kernel's reductions: 0.52-0.98x on decode-batch shapes, AVX2.)

#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL || HWY_ARCH_ARM
constexpr long kMR = 12;  // 24 accumulators of 32 vector registers
#else
constexpr long kMR = 6;   // 12 accumulators of 16
#endif
constexpr long kKCg = 256;  // depth per packed block
constexpr long kMCg = 20 * kMR > 120 ? 20 * kMR : 120;  // activation rows per packed block (L2)
constexpr long kNCg = 1024; // weight columns per packed block

struct GemmScratch {
  std::vector<float> a;  // (kMCg / kMR, kKCg, kMR) packed activations
  std::vector<float> b;  // (kNCg / kNR, kKCg, kNR) widened weights
};
thread_local GemmScratch t_gemm;

// acc (kMR, kNR) += A panel (kc, kMR) x B panel (kc, kNR); then C rows [0, mr) x cols [0, nr) (+)= acc.
template <bool LOAD>
HWY_INLINE void GemmMicro(float* c, long ldc, const float* HWY_RESTRICT ap, const float* HWY_RESTRICT bp, long kc, long mr, long nr) {
  const DF d;
  const long L = static_cast<long>(hn::Lanes(d));
  VF acc0[kMR], acc1[kMR];
  for (long i = 0; i < kMR; i++) acc0[i] = acc1[i] = hn::Zero(d);
  for (long k = 0; k < kc; k++) {
    const VF b0 = hn::Load(d, bp + k * 2 * L), b1 = hn::Load(d, bp + k * 2 * L + L);
    const float* a = ap + k * kMR;
    // fully unrolled, so the accumulators live in registers at any optimisation level
#pragma GCC unroll 16
    for (long i = 0; i < kMR; i++) {
      const VF av = hn::Set(d, a[i]);
      acc0[i] = hn::MulAdd(av, b0, acc0[i]);
      acc1[i] = hn::MulAdd(av, b1, acc1[i]);
    }
  }
  for (long i = 0; i < mr; i++) {
    float* ci = c + i * ldc;
    if (nr == 2 * L) {
      hn::StoreU(LOAD ? hn::Add(hn::LoadU(d, ci), acc0[i]) : acc0[i], d, ci);
      hn::StoreU(LOAD ? hn::Add(hn::LoadU(d, ci + L), acc1[i]) : acc1[i], d, ci + L);
    } else {
      const size_t n0 = static_cast<size_t>(nr < L ? nr : L), n1 = static_cast<size_t>(nr - static_cast<long>(n0));
      StorePart(d, LOAD ? hn::Add(LoadPart(d, ci, n0), acc0[i]) : acc0[i], ci, n0);
      if (n1) StorePart(d, LOAD ? hn::Add(LoadPart(d, ci + L, n1), acc1[i]) : acc1[i], ci + L, n1);
    }
  }
}

// Panel p of B[k0 .. k0 + kc, nb .. nb + cols) (cols <= NR), zero beyond, widened to fp32 (kc, NR)
// at bp. B[kd, n] = W[n, kd] (!wTrans) or W[kd, n] (wTrans), W bf16.
HWY_INLINE void PackB(float* HWY_RESTRICT bp, const uint16_t* w, bool wTrans, long N, long Kd, long k0, long kc, long nb, long cols) {
  const DF d;
  const DU32 du32;
  const DI32 di;
  const long L = static_cast<long>(hn::Lanes(d)), NR = 2 * L;
  uint32_t* bu = reinterpret_cast<uint32_t*>(bp);
  if (!wTrans) {
    // column j of the panel is row nb + j of W, gathered across rows a depth pair at a time: one
    // 32-bit word per row holds (W[n, kd], W[n, kd + 1]), whose halves widen to panel rows kd and
    // kd + 1 (byte offsets: rows of odd length are fine)
    if (cols == NR) {
      // byte offsets of the L rows, written by scalar code: qemu-x86_64's AVX2 (the Haswell-v4
      // run of kernels-test.sh) turned hn::Mul(Iota, Set(2 Kd)) into all zeros
      HWY_ALIGN int32_t offs[hn::MaxLanes(DI32())];
      for (long j = 0; j < L; j++) offs[j] = static_cast<int32_t>(j * Kd * 2);
      const auto off = hn::Load(di, offs);
      const auto hiMask = hn::Set(du32, 0xffff0000u);
      for (long h = 0; h < 2; h++) {
        const uint16_t* base = w + (nb + h * L) * Kd + k0;
        long k = 0;
        for (; k + 2 <= kc; k += 2) {
          const auto v = hn::GatherOffset(du32, reinterpret_cast<const uint32_t*>(base + k), off);
          hn::Store(hn::BitCast(d, hn::ShiftLeft<16>(v)), d, bp + k * NR + h * L);
          hn::Store(hn::BitCast(d, hn::And(v, hiMask)), d, bp + (k + 1) * NR + h * L);
        }
        for (; k < kc; k++)
          for (long j = 0; j < L; j++) bu[k * NR + h * L + j] = static_cast<uint32_t>(w[(nb + h * L + j) * Kd + k0 + k]) << 16;
      }
    } else {
      for (long k = 0; k < kc; k++) {
        for (long j = 0; j < cols; j++) bu[k * NR + j] = static_cast<uint32_t>(w[(nb + j) * Kd + k0 + k]) << 16;
        for (long j = cols; j < NR; j++) bu[k * NR + j] = 0;
      }
    }
    return;
  }
  // row k of the panel is W row k0 + k, columns nb ..
  for (long k = 0; k < kc; k++) {
    float* br = bp + k * NR;
    const uint16_t* wr = w + (k0 + k) * N + nb;
    if (cols == NR) {
      hn::Store(LoadBf16(d, wr), d, br);
      hn::Store(LoadBf16(d, wr + L), d, br + L);
    } else {
      for (long j = 0; j < NR; j++) br[j] = 0.0f;
      Bf16ToF32(br, wr, cols);
    }
  }
}

// Columns [nA, nB) of C (M, N) (+)= X (M, Kd) · B, B[kd, n] = W[n, kd] (!wTrans) or W[kd, n]
// (wTrans), W bf16 (see PackB). round: activations to bf16 on the way into their panels.
void GemmPacked(float* out, const float* x, const uint16_t* w, bool wTrans, bool round, long M, long N, long Kd, long nA, long nB, bool acc) {
  const DF d;
  const long L = static_cast<long>(hn::Lanes(d)), NR = 2 * L;
  GemmScratch& sc = t_gemm;
  const long ncMax = (kNCg + NR - 1) / NR * NR;
  if (sc.a.size() < static_cast<size_t>(kMCg * kKCg)) sc.a.resize(kMCg * kKCg);
  if (sc.b.size() < static_cast<size_t>(ncMax * kKCg) + 64) sc.b.resize(ncMax * kKCg + 64);
  float* A = sc.a.data();
  // micro-panels of B must be vector-aligned (hn::Load)
  float* Bp = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(sc.b.data()) + 63) & ~uintptr_t{63});
  for (long n0 = nA; n0 < nB; n0 += kNCg) {
    const long nc = nB - n0 < kNCg ? nB - n0 : kNCg;
    const long nPanels = (nc + NR - 1) / NR;
    for (long k0 = 0; k0 < Kd; k0 += kKCg) {
      const long kc = Kd - k0 < kKCg ? Kd - k0 : kKCg;
      for (long p = 0; p < nPanels; p++) {
        const long nb = n0 + p * NR, cols = nb + NR <= n0 + nc ? NR : n0 + nc - nb;
        PackB(Bp + p * kc * NR, w, wTrans, N, Kd, k0, kc, nb, cols);
      }
      for (long m0 = 0; m0 < M; m0 += kMCg) {
        const long mc = M - m0 < kMCg ? M - m0 : kMCg;
        // Pack X rows [m0, m0 + mc), depth [k0, k0 + kc) into panels (kc, kMR), zero beyond M.
        for (long q = 0; q * kMR < mc; q++) {
          float* ap = A + q * kc * kMR;
          for (long i = 0; i < kMR; i++) {
            const long m = m0 + q * kMR + i;
            if (m >= m0 + mc) {
              for (long k = 0; k < kc; k++) ap[k * kMR + i] = 0.0f;
              continue;
            }
            // rounded (or copied) a vector at a time into a buffer, then strided into the panel
            const float* xr = x + m * Kd + k0;
            for (long k = 0; k < kc; k += L) {
              HWY_ALIGN float buf[hn::MaxLanes(d)];
              const long n = kc - k < L ? kc - k : L;
              const VF v = n == L ? hn::LoadU(d, xr + k) : LoadPart(d, xr + k, static_cast<size_t>(n));
              hn::Store(round ? RoundBf16(d, v) : v, d, buf);
              for (long t = 0; t < n; t++) ap[(k + t) * kMR + i] = buf[t];
            }
          }
        }
        const bool load = acc || k0 > 0;
        for (long p = 0; p < nPanels; p++) {
          const long nb = n0 + p * NR, nr = nb + NR <= n0 + nc ? NR : n0 + nc - nb;
          for (long q = 0; q * kMR < mc; q++) {
            const long mr = mc - q * kMR < kMR ? mc - q * kMR : kMR;
            float* c = out + (m0 + q * kMR) * N + nb;
            if (load) GemmMicro<true>(c, N, A + q * kc * kMR, Bp + p * kc * NR, kc, mr, nr);
            else GemmMicro<false>(c, N, A + q * kc * kMR, Bp + p * kc * NR, kc, mr, nr);
          }
        }
      }
    }
  }
}

/** Columns of C per thread chunk of GemmPacked (a multiple of its register block). */
long GemmPackedCols() { return 2 * static_cast<long>(hn::Lanes(DF())); }

void RoundBf16Range(float* dst, const float* src, long n) { RoundBf16Array(dst, src, n); }

void WidenF16(float* dst, const uint16_t* src, long n) { F16ToF32(dst, src, n); }

}  // namespace HWY_NAMESPACE
}  // namespace la
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace la {

HWY_EXPORT(MmRange);
HWY_EXPORT(DotGroup);
HWY_EXPORT(MmbSmallRange);
HWY_EXPORT(RoundBf16Range);
HWY_EXPORT(GemmPacked);
HWY_EXPORT(GemmPackedCols);
HWY_EXPORT(WidenF16);

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
// Decode rows: multiply-adds from which a product is split over two threads.
constexpr double kDotMinWork = 1 << 14;

// Per-thread scratch (the pool's workers persist, so these persist with them).
thread_local std::vector<float> t_round;  // the caller's activations rounded to bf16

// bf16 weights: products are bf16 x bf16 (activations rounded to bf16, as on AMX), accumulated in
// fp32, whichever kernel runs; with the bf16Split feature activations stay fp32 (AMX splits them).
const float* bf16_activations(const float* x, long n) {
  if (g_features.bf16Split) return x;
  if (t_round.size() < static_cast<size_t>(n)) t_round.resize(n);
  HWY_DYNAMIC_DISPATCH(RoundBf16Range)(t_round.data(), x, n);
  return t_round.data();
}

// C (M, N) (+)= X (M, Kd) · B with bf16 weights (see GemmPacked): columns split over the pool in
// chunks of whole register blocks, each thread widening only its own columns' weights.
void packed_gemm(float* out, const float* x, const uint16_t* w, bool wTrans, long M, long N, long Kd, bool acc, int nt) {
  const long nr = HWY_DYNAMIC_DISPATCH(GemmPackedCols)();
  const bool round = !g_features.bf16Split;
  parallel_for((N + nr - 1) / nr, nt, [&](long b0, long b1) {
    HWY_DYNAMIC_DISPATCH(GemmPacked)(out, x, w, wTrans, round, M, N, Kd, b0 * nr, b1 * nr < N ? b1 * nr : N, acc);
  }, 1);
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

// The kernels' weight kind of a float matrix (simd-inl.h: kWF32, kWBF16, kWF16).
static int weight_kind(const Mat& w) { return w.bf16 ? 1 : w.f16 ? 2 : 0; }

// Rows [r0, r0 + n) x columns [c0, c0 + len) of an f16 or quantized weight as fp32 into dst (n, len)
// (exact; quantized: c0 and len whole blocks).
static void widen_rows(const Mat& w, long r0, long n, long c0, long len, float* dst) {
  if (w.qtype) {
    const long rb = quant_row_bytes(w.qtype, w.cols), off = quant_row_bytes(w.qtype, c0);
    for (long r = 0; r < n; r++) quant_dequant_row(w.qtype, static_cast<const uint8_t*>(w.data) + (r0 + r) * rb + off, dst + r * len, len);
    return;
  }
  const uint16_t* h = static_cast<const uint16_t*>(w.data);
  for (long r = 0; r < n; r++) HWY_DYNAMIC_DISPATCH(WidenF16)(dst + r * len, h + (r0 + r) * w.cols + c0, len);
}

// out (M, N) (+)= x (M, K) · W^T for an f16 W and many rows: per thread, W's rows widened PN at a
// time into an fp32 panel and multiplied by OpenBLAS sgemm (which re-packs x per panel: 1/PN of
// the work). PN: up to 256 rows (64 lost ~5% to 256), at least two panels per thread.
static void widened_matmul(float* out, const float* x, const Mat& w, long M, bool acc, int nt) {
  const long N = w.rows, K = w.cols;
  long PN = (N / (2 * nt) + 15) / 16 * 16;
  PN = PN < 64 ? 64 : PN > 256 ? 256 : PN;
  parallel_for((N + PN - 1) / PN, nt, [&](long p0, long p1) {
    static thread_local std::vector<float> panel;
    if (panel.size() < static_cast<size_t>(PN * K)) panel.resize(PN * K);
    for (long p = p0; p < p1; p++) {
      const long n0 = p * PN, pn = N - n0 < PN ? N - n0 : PN;
      widen_rows(w, n0, pn, 0, K, panel.data());
      cblas_sgemm(kCblasRowMajor, kCblasNoTrans, kCblasTrans, static_cast<int>(M), static_cast<int>(pn), static_cast<int>(K), 1.0f, x,
                  static_cast<int>(K), panel.data(), static_cast<int>(K), acc ? 1.0f : 0.0f, out + n0, static_cast<int>(N));
    }
  }, 2);
}

// out (M, K) (+)= dy (M, N) · W for an f16 or quantized W: per thread a range of out's columns
// (whole blocks), W's rows widened 256 at a time into an fp32 panel for OpenBLAS sgemm. A
// quantized W's values are its exact dequantized ones and dy stays fp32 (Backend.matmulBack).
static void widened_matmul_back(float* out, const float* dy, const Mat& w, long M, bool acc, int nt) {
  const long N = w.rows, K = w.cols;
  const long blk = w.qtype ? quant_block(w.qtype) : 16;
  const long chunks = (K + blk - 1) / blk;
  parallel_for(chunks, nt, [&](long c0, long c1) {
    const long k0 = c0 * blk, kw = (c1 * blk < K ? c1 * blk : K) - k0;
    const long PN = 256;
    static thread_local std::vector<float> panel;
    if (panel.size() < static_cast<size_t>(PN * kw)) panel.resize(PN * kw);
    for (long p = 0; p < N; p += PN) {
      const long pn = N - p < PN ? N - p : PN;
      widen_rows(w, p, pn, k0, kw, panel.data());
      cblas_sgemm(kCblasRowMajor, kCblasNoTrans, kCblasNoTrans, static_cast<int>(M), static_cast<int>(kw), static_cast<int>(pn), 1.0f, dy + p,
                  static_cast<int>(N), panel.data(), static_cast<int>(kw), (acc || p > 0) ? 1.0f : 0.0f, out + k0, static_cast<int>(K));
    }
  }, 2);
}

// out (M, N) (+)= x (M, K) · W^T, W (N, K).
void matmul(float* out, const float* x, const Mat& wm, long M, bool acc) {
  if (wm.qtype) {
    quant_matmul(out, x, wm, M, acc);
    return;
  }
  const void* w = wm.data;
  const bool bf16 = wm.bf16;
  const int wk = weight_kind(wm);
  const long N = wm.rows, K = wm.cols;
  if (M <= 0 || N <= 0) return;
  const int nt = threads_for(static_cast<double>(M) * N * K, 1 << 17);
  if (M <= ((bf16 && bf16_gemm_ready()) ? kDotMaxMAmx : kDotMaxM) || K == 0 || g_features.batchInvariant) {
    if (bf16) x = bf16_activations(x, M * K);
    // Decode rows: two threads from 16K multiply-adds (~1.5 us of work against ~0.6 us to hand
    // a job to a spinning worker), so on small models the worker stays awake between tokens.
    const int ntDot = M <= kFewRows ? threads_for(static_cast<double>(M) * N * K, kDotMinWork) : nt;
    // Split N into groups of the kernel's register-block width.
    // Many rows: fewer chunks, since each chunk packs its own copy of x.
    const long nb = HWY_DYNAMIC_DISPATCH(DotGroup)(M);
    const long groups = (N + nb - 1) / nb;
    // By value, so a decode step's job travels in the worker's pool slot (common.h).
    auto body = [out, x, w, wk, N, K, M, nb, acc](long g0, long g1) {
      HWY_DYNAMIC_DISPATCH(MmRange)(out, x, w, wk, N, K, M, g0 * nb, g1 * nb < N ? g1 * nb : N, acc);
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
  if (wm.f16) {
    widened_matmul(out, x, wm, M, acc, nt);
    return;
  }
  if (!bf16 && M > N) {
    // More activation rows than weight rows: split rows, so each call re-packs only W (N, K)
    // rather than x (M, K) (tinystories-656k training, 128-384-row weights against 1024 rows).
    sgemm_by_rows(true, M, N, K, x, static_cast<const float*>(w), acc, out, nt);
    return;
  }
  if (bf16) {
    packed_gemm(out, x, static_cast<const uint16_t*>(w), false, M, N, K, acc, nt);
    return;
  }
  // Column blocks (multiples of 16), two per thread: each sgemm call re-packs x.
  long blocks = (N + 15) / 16;
  parallel_for(blocks, nt, [&](long b0, long b1) {
    long n0 = b0 * 16, n1 = b1 * 16 < N ? b1 * 16 : N;
    cblas_sgemm(kCblasRowMajor, kCblasNoTrans, kCblasTrans, static_cast<int>(M), static_cast<int>(n1 - n0), static_cast<int>(K), 1.0f, x,
                static_cast<int>(K), static_cast<const float*>(w) + n0 * K, static_cast<int>(K), acc ? 1.0f : 0.0f, out + n0, static_cast<int>(N));
  }, 2);
}

// outs[i] (M, ws[i].rows) = x (M, K) · ws[i]^T for `count` weights of one width K (fused: up to 3).
// Decode rows (M <= kFewRows): one pool job over the rows of all of them, each row computed as
// matmul computes it (the dot kernel's result does not depend on the partition), so a decode
// step's q/k/v or gate/up products cost one dispatch and are split over the threads together
// (three 16K-multiply-add products alone would each stay on one thread). Otherwise one matmul
// each.
void matmul_shared(float* const* outs, const float* x, const Mat* ws, int count, long M) {
  bool fuse = M > 0 && M <= kFewRows && count > 1 && count <= 3 && ws[0].cols > 0;
  double work = 0;
  long nb = 0, groups[4] = {0, 0, 0, 0};  // groups[i]: first register-block group of weight i
  if (fuse) {
    nb = HWY_DYNAMIC_DISPATCH(DotGroup)(M);
    for (int i = 0; i < count; i++) {
      fuse = fuse && !ws[i].qtype && ws[i].bf16 == ws[0].bf16 && ws[i].cols == ws[0].cols;
      work += static_cast<double>(M) * ws[i].rows * ws[i].cols;
      groups[i + 1] = groups[i] + (ws[i].rows + nb - 1) / nb;
    }
  }
  if (!fuse) {
    for (int i = 0; i < count; i++) matmul(outs[i], x, ws[i], M, false);
    return;
  }
  const long K = ws[0].cols;
  if (ws[0].bf16) x = bf16_activations(x, M * K);
  struct Part {
    float* out;
    const void* w;
    int wk;
    long N;
  } parts[3];
  for (int i = 0; i < count; i++) parts[i] = {outs[i], ws[i].data, weight_kind(ws[i]), ws[i].rows};
  // parts and groups by reference, the rest by value: the job fits the workers' pool slots.
  parallel_for_affine(groups[count], threads_for(work, kDotMinWork), [&parts, &groups, count, x, K, M, nb](long g0, long g1) {
    for (int i = 0; i < count; i++) {
      const long a = g0 > groups[i] ? g0 : groups[i], b = g1 < groups[i + 1] ? g1 : groups[i + 1];
      if (a >= b) continue;
      const Part& p = parts[i];
      const long n0 = (a - groups[i]) * nb, n1 = (b - groups[i]) * nb < p.N ? (b - groups[i]) * nb : p.N;
      HWY_DYNAMIC_DISPATCH(MmRange)(p.out, x, p.w, p.wk, p.N, K, M, n0, n1, false);
    }
  });
}

// out (M, K) (+)= dy (M, N) · W, W (N, K).
void matmul_back(float* out, const float* dy, const Mat& wm, long M, bool acc) {
  const void* w = wm.data;
  const bool bf16 = wm.bf16;
  const int wk = weight_kind(wm);
  const long N = wm.rows, K = wm.cols;
  if (M <= 0 || K <= 0) return;
  const int nt = threads_for(static_cast<double>(M) * N * K, 1 << 17);
  if (wm.qtype) {
    widened_matmul_back(out, dy, wm, M, acc, threads_for(static_cast<double>(M) * N * K, 1 << 17));
    return;
  }
  if (M <= (bf16 ? kSmallMBf16 : kSmallM) || N == 0) {
    if (bf16) dy = bf16_activations(dy, M * N);
    long blocks = (K + 15) / 16;
    parallel_for(blocks, nt, [&](long b0, long b1) {
      long k0 = b0 * 16, k1 = b1 * 16 < K ? b1 * 16 : K;
      HWY_DYNAMIC_DISPATCH(MmbSmallRange)(out, dy, w, wk, N, K, M, k0, k1, acc);
    });
    return;
  }
  if (bf16 && bf16_gemm_ready()) {
    bf16_gemm(out, dy, static_cast<const uint16_t*>(w), true, M, K, N, acc);
    return;
  }
  if (wm.f16) {
    widened_matmul_back(out, dy, wm, M, acc, nt);
    return;
  }
  if (!bf16 && M > K) {
    // Split rows when dy's rows outnumber W's columns: each call re-packs W, not dy (see matmul).
    sgemm_by_rows(false, M, K, N, dy, static_cast<const float*>(w), acc, out, nt);
    return;
  }
  if (bf16) {
    packed_gemm(out, dy, static_cast<const uint16_t*>(w), true, M, K, N, acc, nt);
    return;
  }
  long blocks = (K + 15) / 16;
  parallel_for(blocks, nt, [&](long b0, long b1) {
    long k0 = b0 * 16, k1 = b1 * 16 < K ? b1 * 16 : K, kw = k1 - k0;
    cblas_sgemm(kCblasRowMajor, kCblasNoTrans, kCblasNoTrans, static_cast<int>(M), static_cast<int>(kw), static_cast<int>(N), 1.0f, dy,
                static_cast<int>(N), static_cast<const float*>(w) + k0, static_cast<int>(K), acc ? 1.0f : 0.0f, out + k0, static_cast<int>(K));
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
