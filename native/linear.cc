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
//    engine where the CPU has that (Zen 4), else OpenBLAS sgemm on panels of the weights widened
//    to fp32 (exact) with the activations rounded to bf16 (widened_matmul below): with many rows
//    the GEMM is bound by arithmetic, not by the weights' bytes, and our own packed bf16 GEMM ran
//    at 0.80-0.99x OpenBLAS's fp32 kernels at 2 threads (bench/README.md); f16 weights take the
//    same path.
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
// Zen 4); on AVX-512 more than 6 measured slower. kVecRegs: whether two accumulator chains of a
// block fit the registers (DotBlock).
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
constexpr int kMB = 4, kNB = 6, kNB1 = 6, kVecRegs = 32;
#elif HWY_ARCH_ARM
constexpr int kMB = 4, kNB = 6, kNB1 = 8, kVecRegs = 32;
#else
constexpr int kMB = 3, kNB = 4, kNB1 = 8, kVecRegs = 16;
#endif

// ---- matmul: the dot-product kernel for few rows.
// Every output element out[m, n] is C Lanes-wide fp32 accumulators ("chains"): k runs in steps
// of Lanes values (the ragged end is a zero-filled step), chain c takes steps c, c + C, ... in
// order (lane l of it sums its steps' k = l mod Lanes), then the chains are added and the
// target's fixed horizontal reduction follows. C is a property of the weight matrix, never of M:
// 2 for a matrix over kStreamBytes (its decode rows stream from DRAM, where one chain per row
// caps the rate), 1 for a smaller one (several rows per pass hide the latency already, and a
// second chain measured slower on small models' decode: bench/README.md). Register blocks are
// MB x NB (<= kMB x kNB) such accumulators. For few rows the kernel reads x and W in place; for more rows x and W are
// first copied into contiguous (and for bf16, widened) KC-long pieces -- weight rows are usually
// a power-of-two apart and would evict each other from L1 -- and the accumulators are parked in a
// per-thread buffer between pieces. None of this changes any arithmetic, so within this kernel's
// range of M a row's result does not depend on M, on the other rows of its batch or on the thread
// partition (decode steps of 1 or of 8 rows agree bit for bit, on one target). Across the switch
// to sgemm / AMX results differ by rounding only; the batchInvariant feature keeps every M on
// this kernel.

constexpr long kKC = 512, kMCmax = 256;
// Accumulator chains per output of a streamed matrix: one fp32 FMA chain retires a Lanes-wide
// step per FMA latency (4 cycles on Zen 4), which caps a decode row at 2 lanes a cycle at AVX2,
// below what two cores read from DRAM (bf16 at AVX2 in a standalone loop: bench/README.md). kKC
// is a whole number of kMaxChains steps on every target.
constexpr int kMaxChains = 2;
// Weight bytes from which a decode matmul streams its rows one at a time (see MmRangeT) and every
// product with the matrix uses two accumulator chains.
constexpr double kStreamBytes = 1 << 20;

struct MmScratch {
  std::vector<float> park;  // (MC / kMB, kMB * kNB, Lanes) parked accumulators
  std::vector<float> xp;    // (MC / kMB, nK, kMB, KC) packed rows of x
  std::vector<float> wp;    // (kNB, KC) packed weight rows
};
thread_local MmScratch t_mm;

// DotBlock with both chains' accumulators in registers, one pass over the piece (see DotBlock).
template <int WK, int MB, int NB>
void DotBlock1Pass(float* o, long ldo, const float* x, long ldx, const void* w, long ldw, long len, float* park, bool first, bool last, bool acc) {
  const DF d;
  const long N = static_cast<long>(hn::Lanes(d));
  VF a[2][MB][NB];
  for (int c = 0; c < 2; c++)
    for (int i = 0; i < MB; i++)
      for (int j = 0; j < NB; j++) a[c][i][j] = first ? hn::Zero(d) : hn::LoadU(d, park + ((c * kMB + i) * kNB + j) * N);
  long k = 0;
  for (; k + 2 * N <= len; k += 2 * N)
    for (int c = 0; c < 2; c++) {
      VF wv[NB];
      for (int j = 0; j < NB; j++) wv[j] = LoadW<WK>(d, w, j * ldw + k + c * N);
      for (int i = 0; i < MB; i++) {
        const VF xv = hn::LoadU(d, x + i * ldx + k + c * N);
        for (int j = 0; j < NB; j++) a[c][i][j] = hn::MulAdd(xv, wv[j], a[c][i][j]);
      }
    }
  int c = 0;  // the chain of the next step
  if (k + N <= len) {
    VF wv[NB];
    for (int j = 0; j < NB; j++) wv[j] = LoadW<WK>(d, w, j * ldw + k);
    for (int i = 0; i < MB; i++) {
      const VF xv = hn::LoadU(d, x + i * ldx + k);
      for (int j = 0; j < NB; j++) a[0][i][j] = hn::MulAdd(xv, wv[j], a[0][i][j]);
    }
    k += N;
    c = 1;
  }
  if (k < len) {  // only at the end of K
    const size_t t = static_cast<size_t>(len - k);
    VF wv[NB];
    for (int j = 0; j < NB; j++) wv[j] = LoadWPart<WK>(d, w, j * ldw + k, t);
    for (int i = 0; i < MB; i++) {
      const VF xv = LoadPart(d, x + i * ldx + k, t);
      for (int j = 0; j < NB; j++) a[c][i][j] = hn::MulAdd(xv, wv[j], a[c][i][j]);
    }
  }
  if (last) {
    for (int i = 0; i < MB; i++)
      for (int j = 0; j < NB; j++) {
        const float sum = ReduceSum(d, hn::Add(a[0][i][j], a[1][i][j]));
        o[i * ldo + j] = acc ? o[i * ldo + j] + sum : sum;
      }
  } else {
    for (int cc = 0; cc < 2; cc++)
      for (int i = 0; i < MB; i++)
        for (int j = 0; j < NB; j++) hn::StoreU(a[cc][i][j], d, park + ((cc * kMB + i) * kNB + j) * N);
  }
}

// o[i, j] (+)= x[i, 0:len] · w[j, 0:len] for i < MB, j < NB (x rows ldx apart, w rows ldw apart),
// C accumulator chains each. Chain c runs over this piece's steps c, c + C, ... (a piece is a
// whole number of C steps except at the end of K). Two chains that fit the registers run in one
// pass (DotBlock1Pass); else one pass over the piece per chain: the same loads, and the piece is
// in L1 (or L2, for few rows read in place) for the second. `park` holds the chains between
// pieces, chain c at c * kMB * kNB * Lanes. Either way the same arithmetic. DotBlock picks;
// DotBlockPasses is the per-chain form.
template <int WK, int C, int MB, int NB>
void DotBlockPasses(float* o, long ldo, const float* x, long ldx, const void* w, long ldw, long len, float* park, bool first, bool last, bool acc) {
  const DF d;
  const long N = static_cast<long>(hn::Lanes(d));
  static_assert(kKC % (kMaxChains * hn::MaxLanes(DF())) == 0, "a piece of kKC values is a whole number of chain steps");
  HWY_ALIGN float held[(C > 1 ? MB * NB : 1) * hn::MaxLanes(d)];  // the chains before the last, added up, at the end of K
  const long ragged = len % N ? len / N : -1;       // the step index of a zero-filled end step
  for (int c = 0; c < C; c++) {
    float* pk = park ? park + c * kMB * kNB * N : nullptr;
    VF a[MB][NB];
    for (int i = 0; i < MB; i++)
      for (int j = 0; j < NB; j++) a[i][j] = first ? hn::Zero(d) : hn::LoadU(d, pk + (i * kNB + j) * N);
    for (long k = c * N; k + N <= len; k += C * N) {
      VF wv[NB];
      for (int j = 0; j < NB; j++) wv[j] = LoadW<WK>(d, w, j * ldw + k);
      for (int i = 0; i < MB; i++) {
        const VF xv = hn::LoadU(d, x + i * ldx + k);
        for (int j = 0; j < NB; j++) a[i][j] = hn::MulAdd(xv, wv[j], a[i][j]);
      }
    }
    if (ragged >= 0 && ragged % C == c) {  // only at the end of K
      const long k = ragged * N;
      const size_t t = static_cast<size_t>(len - k);
      VF wv[NB];
      for (int j = 0; j < NB; j++) wv[j] = LoadWPart<WK>(d, w, j * ldw + k, t);
      for (int i = 0; i < MB; i++) {
        const VF xv = LoadPart(d, x + i * ldx + k, t);
        for (int j = 0; j < NB; j++) a[i][j] = hn::MulAdd(xv, wv[j], a[i][j]);
      }
    }
    if (!last) {
      for (int i = 0; i < MB; i++)
        for (int j = 0; j < NB; j++) hn::StoreU(a[i][j], d, pk + (i * kNB + j) * N);
    } else if (c + 1 < C) {
      for (int i = 0; i < MB; i++)
        for (int j = 0; j < NB; j++) {
          float* h = held + (i * NB + j) * N;
          hn::Store(c == 0 ? a[i][j] : hn::Add(hn::Load(d, h), a[i][j]), d, h);
        }
    } else {
      for (int i = 0; i < MB; i++)
        for (int j = 0; j < NB; j++) {
          const float sum = ReduceSum(d, C == 1 ? a[i][j] : hn::Add(hn::Load(d, held + (i * NB + j) * N), a[i][j]));
          o[i * ldo + j] = acc ? o[i * ldo + j] + sum : sum;
        }
    }
  }
}

template <int WK, int C, int MB, int NB>
void DotBlock(float* o, long ldo, const float* x, long ldx, const void* w, long ldw, long len, float* park, bool first, bool last, bool acc) {
  static_assert(C >= 1 && C <= kMaxChains, "1 or 2 chains");
  if constexpr (C == 2 && 2 * MB * NB + NB + 1 <= kVecRegs) DotBlock1Pass<WK, MB, NB>(o, ldo, x, ldx, w, ldw, len, park, first, last, acc);
  else DotBlockPasses<WK, C, MB, NB>(o, ldo, x, ldx, w, ldw, len, park, first, last, acc);
}

// o[n] (+)= x[0:K] · w[n, 0:K] for n in [n0, n1), one weight row at a time: DotBlock<WK, 2, 1, 1>'s
// arithmetic with the row loop inside and the chains interleaved in one sequential pass, for the
// decode path that streams a large matrix (see MmRangeT; against a DotBlock call per row: +1% at
// AVX2, +10% at AVX-512, bench/README.md).
template <int WK>
void DotRows1(float* o, const float* x, const void* w, long K, long n0, long n1, bool acc) {
  const DF d;
  const long N = static_cast<long>(hn::Lanes(d));
  for (long n = n0; n < n1; n++) {
    const long base = n * K;
    VF a0 = hn::Zero(d), a1 = hn::Zero(d);
    long k = 0;
    for (; k + 2 * N <= K; k += 2 * N) {
      a0 = hn::MulAdd(hn::LoadU(d, x + k), LoadW<WK>(d, w, base + k), a0);
      a1 = hn::MulAdd(hn::LoadU(d, x + k + N), LoadW<WK>(d, w, base + k + N), a1);
    }
    bool odd = false;  // the next step is chain 1's
    if (k + N <= K) {
      a0 = hn::MulAdd(hn::LoadU(d, x + k), LoadW<WK>(d, w, base + k), a0);
      k += N;
      odd = true;
    }
    if (k < K) {
      const size_t t = static_cast<size_t>(K - k);
      const VF p = hn::MulAdd(LoadPart(d, x + k, t), LoadWPart<WK>(d, w, base + k, t), odd ? a1 : a0);
      if (odd) a1 = p;
      else a0 = p;
    }
    const float sum = ReduceSum(d, hn::Add(a0, a1));
    o[n] = acc ? o[n] + sum : sum;
  }
}

using DotFn = void (*)(float*, long, const float*, long, const void*, long, long, float*, bool, bool, bool);

// kDot<WK, C>[mb - 1][nb - 1] = DotBlock<WK, C, mb, nb>
template <int WK, int C, int MB, int... NBs>
constexpr std::array<DotFn, sizeof...(NBs)> DotRow(std::integer_sequence<int, NBs...>) {
  return {{&DotBlock<WK, C, MB, NBs + 1>...}};
}
template <int WK, int C, int... MBs>
constexpr std::array<std::array<DotFn, kNB>, sizeof...(MBs)> DotTable(std::integer_sequence<int, MBs...>) {
  return {{DotRow<WK, C, MBs + 1>(std::make_integer_sequence<int, kNB>())...}};
}
template <int WK, int C>
constexpr auto kDot = DotTable<WK, C>(std::make_integer_sequence<int, kMB>());
// kDot1<WK, C>[nb - 1] = DotBlock<WK, C, 1, nb> for nb <= kNB1 (one row)
template <int WK, int C>
constexpr auto kDot1 = DotRow<WK, C, 1>(std::make_integer_sequence<int, kNB1>());

// out rows [0, M) x columns [n0, n1) (weight rows n0..n1), C accumulator chains per output.
template <int WK, int C>
void MmRangeC(float* out, const float* x, const void* w, long N, long K, long M, long n0, long n1, bool acc) {
  const long L = static_cast<long>(hn::Lanes(DF()));
  const size_t wsz = WK == kWF32 ? 4 : 2;
  const char* wb = static_cast<const char*>(w);
  if (M == 1) {
    // A matrix over kStreamBytes (C == 2) is read from DRAM on every token (a model's weights
    // outgrow L3 long before one of its matrices does): one row at a time, a single sequential
    // stream per thread that the hardware prefetchers follow; a small one takes kNB1 rows per
    // pass. Not on the scalar target: a row is latency-bound there far below DRAM speed.
    if (C == 2 && L >= 4) {
      DotRows1<WK>(out, x, w, K, n0, n1, acc);
      return;
    }
    for (long n = n0; n < n1; n += kNB1) {
      const int nb = static_cast<int>(n1 - n < kNB1 ? n1 - n : kNB1);
      kDot1<WK, C>[nb - 1](out + n, N, x, K, wb + n * K * wsz, K, K, nullptr, true, true, acc);
    }
    return;
  }
  if (M <= kMB || K <= L) {
    // Few rows: x stays in L1; one pass over W in place.
    for (long n = n0; n < n1; n += kNB) {
      const int nb = static_cast<int>(n1 - n < kNB ? n1 - n : kNB);
      for (long m = 0; m < M; m += kMB) {
        const int mb = static_cast<int>(M - m < kMB ? M - m : kMB);
        kDot<WK, C>[mb - 1][nb - 1](out + m * N + n, N, x + m * K, K, wb + n * K * wsz, K, K, nullptr, true, true, acc);
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
  if (sc.park.size() < static_cast<size_t>(kMCmax / kMB * kMaxChains * kMB * kNB * L)) sc.park.resize(kMCmax / kMB * kMaxChains * kMB * kNB * L);
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
          kDot<kWF32, C>[mb - 1][nb - 1](out + m * N + n, N, xp + (b * nK + c) * kMB * kKC, kKC, wp, kKC, len, park + b * (kMaxChains * kMB * kNB * L), first, last, acc);
        }
      }
    }
  }
}

// MmRangeC with the matrix's chain count (see the kernel's comment above).
template <int WK>
void MmRangeT(float* out, const float* x, const void* w, long N, long K, long M, long n0, long n1, bool acc) {
  if (static_cast<double>(N) * K * (WK == kWF32 ? 4 : 2) > kStreamBytes) MmRangeC<WK, 2>(out, x, w, N, K, M, n0, n1, acc);
  else MmRangeC<WK, 1>(out, x, w, N, K, M, n0, n1, acc);
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

void RoundBf16Range(float* dst, const float* src, long n) { RoundBf16Array(dst, src, n); }

void WidenF16(float* dst, const uint16_t* src, long n) { F16ToF32(dst, src, n); }

void WidenBf16(float* dst, const uint16_t* src, long n) { Bf16ToF32(dst, src, n); }

}  // namespace HWY_NAMESPACE
}  // namespace la
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace la {

HWY_EXPORT(MmRange);
HWY_EXPORT(DotGroup);
HWY_EXPORT(MmbSmallRange);
HWY_EXPORT(RoundBf16Range);
HWY_EXPORT(WidenF16);
HWY_EXPORT(WidenBf16);

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
// Bytes of one weight value of a weight_kind (0: fp32, else 16 bits).
static long weight_bytes(int wk) { return wk == 0 ? 4 : 2; }

// Rows [r0, r0 + n) x columns [c0, c0 + len) of a bf16, f16 or quantized weight as fp32 into dst (n, len)
// (exact; quantized: c0 and len whole blocks).
static void widen_rows(const Mat& w, long r0, long n, long c0, long len, float* dst) {
  if (w.qtype) {
    const long rb = quant_row_bytes(w.qtype, w.cols), off = quant_row_bytes(w.qtype, c0);
    for (long r = 0; r < n; r++) quant_dequant_row(w.qtype, static_cast<const uint8_t*>(w.data) + (r0 + r) * rb + off, dst + r * len, len);
    return;
  }
  const uint16_t* h = static_cast<const uint16_t*>(w.data);
  if (w.bf16) {
    for (long r = 0; r < n; r++) HWY_DYNAMIC_DISPATCH(WidenBf16)(dst + r * len, h + (r0 + r) * w.cols + c0, len);
    return;
  }
  for (long r = 0; r < n; r++) HWY_DYNAMIC_DISPATCH(WidenF16)(dst + r * len, h + (r0 + r) * w.cols + c0, len);
}

// Bytes of one thread's panel of widened weights (widened_matmul, widened_matmul_back).
constexpr long kWidenPanelBytes = 16L << 20;

// All of W (N, K) widened to fp32 in a buffer of the calling thread, rows split over the pool.
static const float* widened_whole(const Mat& w, int nt) {
  static thread_local std::vector<float> whole;
  const long N = w.rows, K = w.cols;
  if (whole.size() < static_cast<size_t>(N * K)) whole.resize(N * K);
  float* dst = whole.data();
  parallel_for(N, nt, [&](long r0, long r1) { widen_rows(w, r0, r1 - r0, 0, K, dst + r0 * K); });
  return dst;
}

// out (M, N) (+)= x (M, K) · W^T for a bf16 or f16 W and many rows, on OpenBLAS sgemm. The
// weights are widened exactly to fp32 a panel at a time (once per call, against M rows of use),
// so the products run at sgemm's rate:
//  * more activation rows than weight rows: all of W widened once (N K <= M K floats: no more
//    than x), the rows split as for fp32 (sgemm_by_rows);
//  * else per thread one panel of its N / nt rows (at most kWidenPanelBytes; each sgemm call
//    re-packs x, so few large panels: 256-row panels cost 5-20% at 2 threads on `large`'s shapes,
//    bench/README.md).
static void widened_matmul(float* out, const float* x, const Mat& w, long M, bool acc, int nt) {
  const long N = w.rows, K = w.cols;
  if (M > N) {
    sgemm_by_rows(true, M, N, K, x, widened_whole(w, nt), acc, out, nt);
    return;
  }
  const long cap = kWidenPanelBytes / (4 * K) / 16 * 16;
  // whole panels per thread (a thread with one panel more than the other idles for it)
  const long perThread = (N + nt - 1) / nt, panels = cap > 0 ? (perThread + cap - 1) / cap : perThread;
  long PN = ((perThread + panels - 1) / panels + 15) / 16 * 16;
  PN = PN < 16 ? 16 : PN;
  parallel_for((N + PN - 1) / PN, nt, [&](long p0, long p1) {
    static thread_local std::vector<float> panel;
    if (panel.size() < static_cast<size_t>(PN * K)) panel.resize(PN * K);
    for (long p = p0; p < p1; p++) {
      const long n0 = p * PN, pn = N - n0 < PN ? N - n0 : PN;
      widen_rows(w, n0, pn, 0, K, panel.data());
      cblas_sgemm(kCblasRowMajor, kCblasNoTrans, kCblasTrans, static_cast<int>(M), static_cast<int>(pn), static_cast<int>(K), 1.0f, x,
                  static_cast<int>(K), panel.data(), static_cast<int>(K), acc ? 1.0f : 0.0f, out + n0, static_cast<int>(N));
    }
  }, 1);
}

// out (M, K) (+)= dy (M, N) · W for a bf16, f16 or quantized W and many rows, on OpenBLAS sgemm:
//  * bf16 / f16 with more rows than W's columns: all of W widened once (N K < M N floats: no
//    more than dy), rows split as for fp32;
//  * else per thread a range of out's columns (whole blocks), W's rows widened into an fp32 panel
//    of up to kWidenPanelBytes (all N rows where they fit: each panel after the first re-reads
//    and re-writes out's columns).
// A quantized W's values are its exact dequantized ones and dy stays fp32 (Backend.matmulBack).
static void widened_matmul_back(float* out, const float* dy, const Mat& w, long M, bool acc, int nt) {
  const long N = w.rows, K = w.cols;
  if (!w.qtype && M > K) {
    sgemm_by_rows(false, M, K, N, dy, widened_whole(w, nt), acc, out, nt);
    return;
  }
  const long blk = w.qtype ? quant_block(w.qtype) : 16;
  const long chunks = (K + blk - 1) / blk;
  parallel_for(chunks, nt, [&](long c0, long c1) {
    const long k0 = c0 * blk, kw = (c1 * blk < K ? c1 * blk : K) - k0;
    long PN = kWidenPanelBytes / (4 * kw);
    PN = PN > N ? N : PN < 16 ? 16 : PN;
    static thread_local std::vector<float> panel;
    if (panel.size() < static_cast<size_t>(PN * kw)) panel.resize(PN * kw);
    for (long p = 0; p < N; p += PN) {
      const long pn = N - p < PN ? N - p : PN;
      widen_rows(w, p, pn, k0, kw, panel.data());
      cblas_sgemm(kCblasRowMajor, kCblasNoTrans, kCblasNoTrans, static_cast<int>(M), static_cast<int>(kw), static_cast<int>(pn), 1.0f, dy + p,
                  static_cast<int>(N), panel.data(), static_cast<int>(kw), (acc || p > 0) ? 1.0f : 0.0f, out + k0, static_cast<int>(K));
    }
  }, 1);
}

// A weight share per thread above which it cannot stay in a core's L2 between decode steps (L2 is
// 1-2 MB on current x86 and ARM cores): the rows come from DRAM (or L3) on every token.
constexpr double kStealShareBytes = 2.0 * (1 << 20);
// Weight bytes each claim of parallel_for_stealing covers (a few us of streaming; the claim is one
// uncontended compare-exchange).
constexpr long kStealGrainBytes = 64 << 10;

// A decode job over `groups` register-block groups of `groupBytes` weight bytes each, `bytes` in
// all: the same rows for each thread on every step while its share fits L2 (parallel_for_affine),
// else shared out by stealing (parallel_for_stealing: memory bandwidth per core is uneven).
template <class F>
static void decode_rows(long groups, int nt, double bytes, long groupBytes, const F& body) {
  if (nt > 1 && bytes / nt > kStealShareBytes && g_features.decodeStealing) {
    parallel_for_stealing(groups, nt, groupBytes > 0 ? kStealGrainBytes / groupBytes : 1, body);
  } else {
    parallel_for_affine(groups, nt, body);
  }
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
    // they stay in that core's L2; rows streamed from DRAM are shared out by stealing instead.
    if (M <= kFewRows) decode_rows(groups, ntDot, static_cast<double>(N) * K * weight_bytes(wk), nb * K * weight_bytes(wk), body);
    else parallel_for(groups, ntDot, body, 2);
    return;
  }
  if (bf16 && bf16_gemm_ready()) {
    bf16_gemm(out, x, static_cast<const uint16_t*>(w), false, M, N, K, acc);
    return;
  }
  if (bf16 || wm.f16) {
    widened_matmul(out, bf16 ? bf16_activations(x, M * K) : x, wm, M, acc, nt);
    return;
  }
  if (M > N) {
    // More activation rows than weight rows: split rows, so each call re-packs only W (N, K)
    // rather than x (M, K) (tinystories-656k training, 128-384-row weights against 1024 rows).
    sgemm_by_rows(true, M, N, K, x, static_cast<const float*>(w), acc, out, nt);
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
  double work = 0, bytes = 0;  // multiply-adds, weight bytes
  long nb = 0, groups[4] = {0, 0, 0, 0};  // groups[i]: first register-block group of weight i
  if (fuse) {
    nb = HWY_DYNAMIC_DISPATCH(DotGroup)(M);
    for (int i = 0; i < count; i++) {
      fuse = fuse && !ws[i].qtype && ws[i].bf16 == ws[0].bf16 && ws[i].cols == ws[0].cols;
      work += static_cast<double>(M) * ws[i].rows * ws[i].cols;
      bytes += static_cast<double>(ws[i].rows) * ws[i].cols * weight_bytes(weight_kind(ws[i]));
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
  decode_rows(groups[count], threads_for(work, kDotMinWork), bytes, nb * K * weight_bytes(parts[0].wk), [&parts, &groups, count, x, K, M, nb](long g0, long g1) {
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
  if (bf16 || wm.f16) {
    widened_matmul_back(out, bf16 ? bf16_activations(dy, M * N) : dy, wm, M, acc, nt);
    return;
  }
  if (M > K) {
    // Split rows when dy's rows outnumber W's columns: each call re-packs W, not dy (see matmul).
    sgemm_by_rows(false, M, K, N, dy, static_cast<const float*>(w), acc, out, nt);
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
