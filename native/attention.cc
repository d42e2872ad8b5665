// Attention kernels: causal attention over a KV cache (per-row start positions, GQA), its
// backward for full causal passes, and the LLaMA-Adapter gated prompt branch with its backward.
// Written once over Highway (compiled per SIMD target, dispatched at run time: cpu.cc).
//
// Parallel work is split by query rows (b, h, t), claimed one at a time so that causal rows of
// different lengths balance across threads; a decode row over many keys is split by blocks of key
// positions instead, merged through the blocks' softmax sums. Gradients that sum over many query rows (dk, dv, dpk, dpv,
// dgate) are formed in a second pass partitioned by their own rows, summing contributions in a
// fixed order, so results never depend on thread timing.

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "attention.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "hwy/highway.h"
#include "common.h"
#include "simd-inl.h"

#include <algorithm>
#include <array>
#include <utility>
#include <vector>

HWY_BEFORE_NAMESPACE();
namespace la {
namespace HWY_NAMESPACE {

thread_local std::vector<float> t_row;  // per-thread score rows

HWY_INLINE float* RowScratch(size_t n) {
  if (t_row.size() < n) t_row.resize(n);
  return t_row.data();
}

HWY_INLINE void Zero(float* p, long n) {
  if (n > 0) std::memset(p, 0, n * sizeof(float));
}

// o (hs) = sum_j p_j v_j with p_j = p[j] * inv written back to p; NV = ceil(hs / Lanes)
// accumulators stay in registers across j (an axpy per j would round-trip o through memory every
// step). The FMA sequence per element is the same as zero + axpy per j, so results are identical.
template <int NV>
void AttendValuesNV(float* o, float* p, float inv, const float* v, long stride, long n, long hs) {
  const DF d;
  const long N = static_cast<long>(hn::Lanes(d));
  const size_t last = static_cast<size_t>(hs - (NV - 1) * N);
  const bool full = static_cast<long>(last) == N;
  VF acc[NV];
  for (int r = 0; r < NV; r++) acc[r] = hn::Zero(d);
  for (long j = 0; j < n; j++) {
    const float pj = p[j] * inv;
    p[j] = pj;
    const VF pv = hn::Set(d, pj);
    const float* vr = v + j * stride;
    for (int r = 0; r < NV - 1; r++) acc[r] = hn::MulAdd(pv, hn::LoadU(d, vr + N * r), acc[r]);
    acc[NV - 1] = hn::MulAdd(pv, full ? hn::LoadU(d, vr + N * (NV - 1)) : LoadPart(d, vr + N * (NV - 1), last), acc[NV - 1]);
  }
  for (int r = 0; r < NV - 1; r++) hn::StoreU(acc[r], d, o + N * r);
  if (full) hn::StoreU(acc[NV - 1], d, o + N * (NV - 1));
  else StorePart(d, acc[NV - 1], o + N * (NV - 1), last);
}

using AttendFn = void (*)(float*, float*, float, const float*, long, long, long);
constexpr int kMaxNV = 16;
template <int... I>
constexpr std::array<AttendFn, sizeof...(I)> AttendTable(std::integer_sequence<int, I...>) {
  return {{&AttendValuesNV<I + 1>...}};
}

void AttendValues(float* o, float* p, float inv, const float* v, long stride, long n, long hs) {
  static constexpr auto kFns = AttendTable(std::make_integer_sequence<int, kMaxNV>());
  const long N = static_cast<long>(hn::Lanes(DF()));
  const long nv = (hs + N - 1) / N;
  if (nv >= 1 && nv <= kMaxNV) return kFns[nv - 1](o, p, inv, v, stride, n, hs);
  Zero(o, hs);
  for (long j = 0; j < n; j++) {
    const float pj = p[j] * inv;
    p[j] = pj;
    Axpy(o, pj, v + j * stride, hs);
  }
}

// sc[j] = (q . k_j) * scale for j < n. Heads of at most one vector keep q in a register.
void AttendScores(float* sc, const float* q, const float* k, long stride, long n, long hs, float scale) {
  const DF d;
  const long N = static_cast<long>(hn::Lanes(d));
  if (hs <= N) {
    const size_t m = static_cast<size_t>(hs);
    const bool full = hs == N;
    const VF qv = full ? hn::LoadU(d, q) : LoadPart(d, q, m);
    for (long j = 0; j < n; j++) sc[j] = ReduceSum(d, hn::Mul(qv, full ? hn::LoadU(d, k + j * stride) : LoadPart(d, k + j * stride, m))) * scale;
    return;
  }
  for (long j = 0; j < n; j++) sc[j] = Dot(q, k + j * stride, hs) * scale;
}

// P (nq, nkeys), rows ld apart = causal softmax(Q K^T * scale) for nq query rows (q rows qStride
// apart, k rows kvStride apart); row i sees keys 0 .. n0 + i and is zero beyond. One sgemm, so the
// forward and attention_back's recomputation produce the same bits for the same block.
void CausalSoftmaxBlock(float* P, long ld, const float* q, long qStride, const float* k, long kvStride, long nq, long nkeys, long hs, float scale,
                        long n0) {
  cblas_sgemm(kCblasRowMajor, kCblasNoTrans, kCblasTrans, static_cast<int>(nq), static_cast<int>(nkeys), static_cast<int>(hs), scale, q,
              static_cast<int>(qStride), k, static_cast<int>(kvStride), 0.0f, P, static_cast<int>(ld));
  for (long i = 0; i < nq; i++) {
    float* row = P + i * ld;
    const long n = n0 + i + 1;
    Scale(row, 1.0f / ExpSubSum(row, Max(row, n), n), n);
    Zero(row + n, ld - n);
  }
}

constexpr long kQB = 64;  // query rows per block on the GEMM path

// Forward, GEMM path: query rows [t0, t0 + nq) of head h of row b (scores and outputs by
// single-threaded sgemm calls; OpenBLAS runs one thread per caller).
void AttnGemmBlock(float* out, const float* q, const float* kb, const float* vb, long qStride, long kvStride, long nq, long nmax, long hs, float scale,
                   long n0) {
  float* sc = RowScratch(static_cast<size_t>(nq * nmax));  // scores (nq, nmax)
  CausalSoftmaxBlock(sc, nmax, q, qStride, kb, kvStride, nq, nmax, hs, scale, n0);
  cblas_sgemm(kCblasRowMajor, kCblasNoTrans, kCblasNoTrans, static_cast<int>(nq), static_cast<int>(hs), static_cast<int>(nmax), 1.0f, sc,
              static_cast<int>(nmax), vb, static_cast<int>(kvStride), 0.0f, out, static_cast<int>(qStride));
}

// Decode (T == 1), positions [j0, j0 + n) of one query row, all H heads: the block's softmax
// with its own per-head max, normalised within the block, and its share of the output,
//   m[h] = max_j s_hj,  z[h] = sum_j e_hj with e_hj = exp(s_hj - m[h]),  o[h] = sum_j (e_hj / z[h]) v_j,
// reading the block's cache rows once, in position order (a sequential stream; head by head reads
// each row as H strided pieces). Each score is AttnRows' (AttendScores), and the softmax and the
// FMAs are AttnRows' over these n keys, in the same order.
// q (H*hs); kc, vc: the row's cache at position j0, rows kvStride apart; m, z (H), o (H*hs).
void AttnDecodeBlock(float* m, float* z, float* o, const float* q, const float* kc, const float* vc, long n, long H, long rep, long hs, long kvStride,
                     float scale) {
  float* sc = RowScratch(static_cast<size_t>(H * (n + 1)));  // (H, n) scores, then H 1 / z
  float* inv = sc + H * n;
  for (long j = 0; j < n; j++) {
    const float* kr = kc + j * kvStride;
    for (long h = 0; h < H; h++) AttendScores(sc + h * n + j, q + h * hs, kr + (h / rep) * hs, kvStride, 1, hs, scale);
  }
  for (long h = 0; h < H; h++) {
    float* p = sc + h * n;
    m[h] = Max(p, n);
    z[h] = ExpSubSum(p, m[h], n);
    inv[h] = 1.0f / z[h];
    Zero(o + h * hs, hs);
  }
  for (long j = 0; j < n; j++) {
    const float* vr = vc + j * kvStride;
    for (long h = 0; h < H; h++) Axpy(o + h * hs, sc[h * n + j] * inv[h], vr + (h / rep) * hs, hs);
  }
}

// out (H*hs) of one decode row from its nb blocks' parts (AttnDecodeBlock's m (H), z (H), o (H*hs),
// one after another), merged in block order: with M = max_b m_b, w_b = z_b exp(m_b - M),
// out = sum_b o_b w_b / sum_b w_b.
void AttnDecodeMerge(float* out, const float* parts, long nb, long H, long hs) {
  const long ps = H * (2 + hs);
  float* w = RowScratch(static_cast<size_t>(nb));  // w_b of one head
  for (long h = 0; h < H; h++) {
    float M = -INFINITY, Z = 0.0f;
    for (long b = 0; b < nb; b++) M = parts[b * ps + h] > M ? parts[b * ps + h] : M;
    for (long b = 0; b < nb; b++) Z += w[b] = parts[b * ps + H + h] * std::exp(parts[b * ps + h] - M);
    Zero(out + h * hs, hs);
    for (long b = 0; b < nb; b++) Axpy(out + h * hs, w[b] / Z, parts + b * ps + 2 * H + h * hs, hs);
  }
}

// Forward, query rows [i0, i1) of (B, H, T), each over its visible keys (decode: few rows).
void AttnRows(float* out, const float* q, const float* kc, const float* vc, const int32_t* pos, const AttnShape& s, const int32_t* cacheRows, long i0,
              long i1) {
  const long T = s.T, S = s.S, H = s.H, Hkv = s.Hkv, hs = s.hs;
  const long rep = H / Hkv, qStride = H * hs, kvStride = Hkv * hs;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hs)));
  for (long item = i0; item < i1; item++) {
    const long t = item % T, bh = item / T, h = bh % H, b = bh / H, kvh = h / rep;
    const long row = (cacheRows ? static_cast<long>(cacheRows[b]) : b) * S * kvStride + kvh * hs;
    const long n = static_cast<long>(pos[b]) + t + 1;
    float* sc = RowScratch(static_cast<size_t>(n));
    AttendScores(sc, q + (b * T + t) * qStride + h * hs, kc + row, kvStride, n, hs, scale);
    const float inv = 1.0f / ExpSubSum(sc, Max(sc, n), n);
    AttendValues(out + (b * T + t) * qStride + h * hs, sc, inv, vc + row, kvStride, n, hs);
  }
}

// Backward of one (b, h): see attention_back.
void AttnBackHead(float* dq, float* dKh, float* dVh, long ld, const float* dO, const float* Q, const float* Kg, const float* Vg, long T, long qStride,
                  long kvStride, long hs, float scale) {
  const DF d;
  const long N = static_cast<long>(hn::Lanes(d));
  const int ihs = static_cast<int>(hs), iq = static_cast<int>(qStride), ikv = static_cast<int>(kvStride), ild = static_cast<int>(ld);
  // Last block first: it writes every dK/dV row (beta 0), the earlier ones add to the rows they see.
  const long nQb = (T + kQB - 1) / kQB;
  float* pb = RowScratch(static_cast<size_t>(2 * kQB * T));  // (nq, t1) probabilities
  float* dp = pb + kQB * T;                                  // (nq, t1) dP, then dS
  for (long qb = nQb - 1; qb >= 0; qb--) {
    const long t0 = qb * kQB, t1 = t0 + kQB < T ? t0 + kQB : T, nq = t1 - t0;
    const int inq = static_cast<int>(nq), it1 = static_cast<int>(t1);
    const float beta = qb == nQb - 1 ? 0.0f : 1.0f;
    CausalSoftmaxBlock(pb, t1, Q + t0 * qStride, qStride, Kg, kvStride, nq, t1, hs, scale, t0);
    cblas_sgemm(kCblasRowMajor, kCblasNoTrans, kCblasTrans, inq, it1, ihs, 1.0f, dO + t0 * qStride, iq, Vg, ikv, 0.0f, dp, it1);
    for (long i = 0; i < nq; i++) {
      const long n = t0 + i + 1;  // causal: keys 0 .. t
      float* dr = dp + i * t1;
      SoftmaxBackRow(pb + i * t1, dr, n, scale);
      Zero(dr + n, t1 - n);
    }
    cblas_sgemm(kCblasRowMajor, kCblasNoTrans, kCblasNoTrans, inq, ihs, it1, 1.0f, dp, it1, Kg, ikv, 0.0f, dq + t0 * qStride, iq);
    cblas_sgemm(kCblasRowMajor, kCblasTrans, kCblasNoTrans, it1, ihs, inq, 1.0f, dp, it1, Q + t0 * qStride, iq, beta, dKh, ild);
    cblas_sgemm(kCblasRowMajor, kCblasTrans, kCblasNoTrans, it1, ihs, inq, 1.0f, pb, it1, dO + t0 * qStride, iq, beta, dVh, ild);
  }
}

// dK/dV rows [r0, r1): (row, kvh) = sum over the group's heads of part, in head order.
void SumHeadGroups(float* dk, float* dv, const float* part, long r0, long r1, long BT, long Hkv, long rep, long hs) {
  const long kvStride = Hkv * hs, qStride = Hkv * rep * hs;
  for (long r = r0; r < r1; r++)
    for (long kvh = 0; kvh < Hkv; kvh++) {
      float* dkr = dk + r * kvStride + kvh * hs;
      float* dvr = dv + r * kvStride + kvh * hs;
      const float* pk = part + r * qStride + kvh * rep * hs;
      const float* pv = part + (BT + r) * qStride + kvh * rep * hs;
      std::memcpy(dkr, pk, hs * sizeof(float));
      std::memcpy(dvr, pv, hs * sizeof(float));
      for (long hh = 1; hh < rep; hh++) {
        Axpy(dkr, 1.0f, pk + hh * hs, hs);
        Axpy(dvr, 1.0f, pv + hh * hs, hs);
      }
    }
}

// Prompt branch, query rows [i0, i1) of (B, H, T): probs row and out += gate * probs · pv.
void PromptRows(float* out, const float* q, const float* pk, const float* pv, const float* gate, const PromptShape& s, float* probs, long i0, long i1) {
  const long T = s.T, K = s.K, H = s.H, Hkv = s.Hkv, hs = s.hs;
  const long rep = H / Hkv, qStride = H * hs, kvStride = Hkv * hs;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hs)));
  float* sc = RowScratch(static_cast<size_t>(K));
  for (long item = i0; item < i1; item++) {
    const long t = item % T, bh = item / T, h = bh % H, b = bh / H;
    const long kvh = h / rep;
    const float g = gate[h];
    const float* qv = q + (b * T + t) * qStride + h * hs;
    AttendScores(sc, qv, pk + kvh * hs, kvStride, K, hs, scale);
    Scale(sc, 1.0f / ExpSubSum(sc, Max(sc, K), K), K);
    if (probs) std::memcpy(probs + item * K, sc, K * sizeof(float));
    if (g == 0.0f) continue;  // zero gate: the branch contributes exactly nothing
    float* o = out + (b * T + t) * qStride + h * hs;
    for (long j = 0; j < K; j++) Axpy(o, g * sc[j], pv + j * kvStride + kvh * hs, hs);
  }
}

// Prompt backward pass 1, query rows [i0, i1): d_j = dout · pv_j, the dgate part, the ds row, the dq row.
void PromptBackRows(float* dq, float* ds, double* dg, const float* dout, const float* pk, const float* pv, const float* gate, const float* probs,
                    const PromptShape& s, long i0, long i1) {
  const long T = s.T, K = s.K, H = s.H, Hkv = s.Hkv, hs = s.hs;
  const long rep = H / Hkv, qStride = H * hs, kvStride = Hkv * hs;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hs)));
  for (long item = i0; item < i1; item++) {
    const long t = item % T, bh = item / T, h = bh % H, b = bh / H;
    const long kvh = h / rep;
    const float g = gate[h];
    const float* go = dout + (b * T + t) * qStride + h * hs;
    const float* pr = probs + item * K;
    float* dsr = ds + item * K;
    double dgs = 0, dotv = 0;
    for (long j = 0; j < K; j++) {
      const float dj = Dot(go, pv + j * kvStride + kvh * hs, hs);
      dgs += static_cast<double>(pr[j]) * dj;
      dsr[j] = g * dj;
      dotv += static_cast<double>(pr[j]) * dsr[j];
    }
    dg[item] = dgs;
    const float dotf = static_cast<float>(dotv);
    for (long j = 0; j < K; j++) dsr[j] = pr[j] * (dsr[j] - dotf) * scale;
    if (dq) {
      float* dqr = dq + (b * T + t) * qStride + h * hs;
      for (long j = 0; j < K; j++) Axpy(dqr, dsr[j], pk + j * kvStride + kvh * hs, hs);
    }
  }
}

// Prompt backward pass 2, prompt rows [i0, i1) of (Hkv, K): sum over (b, hh, t) in order.
void PromptBackPromptRows(float* dpk, float* dpv, const float* ds, const float* dout, const float* q, const float* gate, const float* probs,
                          const PromptShape& s, long i0, long i1) {
  const long B = s.B, T = s.T, K = s.K, H = s.H, Hkv = s.Hkv, hs = s.hs;
  const long rep = H / Hkv, qStride = H * hs, kvStride = Hkv * hs;
  for (long item = i0; item < i1; item++) {
    const long j = item % K, kvh = item / K;
    float* dkr = dpk + j * kvStride + kvh * hs;
    float* dvr = dpv + j * kvStride + kvh * hs;
    for (long b = 0; b < B; b++)
      for (long hh = 0; hh < rep; hh++) {
        const long h = kvh * rep + hh;
        const float g = gate[h];
        for (long t = 0; t < T; t++) {
          const long row = (b * H + h) * T + t;
          Axpy(dkr, ds[row * K + j], q + (b * T + t) * qStride + h * hs, hs);
          Axpy(dvr, g * probs[row * K + j], dout + (b * T + t) * qStride + h * hs, hs);
        }
      }
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace la
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace la {

HWY_EXPORT(AttnGemmBlock);
HWY_EXPORT(AttnRows);
HWY_EXPORT(AttnDecodeBlock);
HWY_EXPORT(AttnDecodeMerge);
HWY_EXPORT(AttnBackHead);
HWY_EXPORT(SumHeadGroups);
HWY_EXPORT(PromptRows);
HWY_EXPORT(PromptBackRows);
HWY_EXPORT(PromptBackPromptRows);

namespace {
constexpr long kQB = 64;        // query rows per block on the GEMM path (as in the per-target code)
constexpr long kGemmMinT = 16;  // query rows per call from which the forward uses the GEMM path
// Decode attention splits a row's keys into blocks of this many positions (or more, up to 32 KB
// of keys) once it has more and its cache is over kDecodeBlockRowBytes (keys and values): the
// blocks are the work items, each read as one sequential stream. A property of the row, never of
// its batch or the thread count, so the bits are the same on any machine.
constexpr long kDecodeBlockMin = 32;
constexpr long kDecodeBlockBytes = 32 << 10;
constexpr double kDecodeBlockRowBytes = 512 << 10;
// The caller's decode bookkeeping, kept between calls (a decode step makes one call per layer):
// per row its block count (0: head by head) and first work item, and the blocks' parts.
thread_local std::vector<long> t_blocks, t_first;
thread_local std::vector<float> t_parts;
}  // namespace

// out (B, T, H*hs), q (B, T, H*hs), kc/vc (nCacheRows, S, Hkv*hs), pos (B); query row b reads cache
// row cacheRows[b] (b when cacheRows is null).
// Few query rows: one row per work item, dot products and axpys over the visible keys; a decode
// row (T = 1) whose cache is over 512 KB: (row, block of positions) items, then a merge.
// Many rows (prefill, training): blocks of kQB query rows per (b, h), scores and outputs by
// single-threaded sgemm calls inside each work item.
void attention(float* out, const float* q, const float* kc, const float* vc, const int32_t* pos, const AttnShape& s, const int32_t* cacheRows) {
  const long B = s.B, T = s.T, S = s.S, H = s.H, Hkv = s.Hkv, hs = s.hs;
  const long rep = H / Hkv, qStride = H * hs, kvStride = Hkv * hs;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hs)));
  auto cacheRow = [&](long b) { return (cacheRows ? static_cast<long>(cacheRows[b]) : b) * S * kvStride; };
  double work = 0;
  for (long b = 0; b < B; b++) work += static_cast<double>(H) * T * (pos[b] + (T + 1) / 2.0) * hs * 4;
  const int nt = threads_for(work, 1 << 15);
  if (T >= kGemmMinT) {
    const long nQb = (T + kQB - 1) / kQB;
    parallel_items(B * H * nQb, nt, [&](long item) {
      const long qb = item % nQb, bh = item / nQb, h = bh % H, b = bh / H, kvh = h / rep;
      const long t0 = qb * kQB, t1 = t0 + kQB < T ? t0 + kQB : T;
      HWY_DYNAMIC_DISPATCH(AttnGemmBlock)(out + (b * T + t0) * qStride + h * hs, q + (b * T + t0) * qStride + h * hs, kc + cacheRow(b) + kvh * hs,
                                          vc + cacheRow(b) + kvh * hs, qStride, kvStride, t1 - t0, static_cast<long>(pos[b]) + t1, hs, scale,
                                          pos[b] + t0);
    });
    return;
  }
  // Decode rows whose cache is too large to stay in L2 between tokens go by blocks of positions.
  // Head by head, such a row's cache, which the weights streamed since the last token have
  // evicted, comes from DRAM as H strided pieces per position, far below the weights' stream rate
  // (bench/README.md). A small cache is read from L1/L2 either way, and there the head-by-head
  // loops are quicker. The choice is per row, from its own length: a row's bits never depend on
  // its batch or on the thread count.
  const long P = kDecodeBlockBytes / (kvStride * 4) > kDecodeBlockMin ? kDecodeBlockBytes / (kvStride * 4) : kDecodeBlockMin;
  auto blocksOf = [&](long b) {
    const long n = pos[b] + 1;
    return n > P && static_cast<double>(n) * kvStride * 8 > kDecodeBlockRowBytes ? (n + P - 1) / P : 0;
  };
  std::vector<long>&blocks = t_blocks, &first = t_first;
  bool anyBlocked = false;
  if (T == 1 && g_features.attnPositionBlocks) {
    blocks.resize(B);
    for (long b = 0; b < B; b++) anyBlocked |= (blocks[b] = blocksOf(b)) > 0;
  }
  if (anyBlocked) {
    // Work items, row by row: a blocked row's blocks, or another row's H heads (AttnRows' items);
    // first[b] is row b's first item, first[B] the count.
    first.resize(B + 1);
    first[0] = 0;
    for (long b = 0; b < B; b++) first[b + 1] = first[b] + (blocks[b] ? blocks[b] : H);
    const long ps = H * (2 + hs);  // one block's part: m (H), z (H), o (H*hs); part i for item i
    if (t_parts.size() < static_cast<size_t>(first[B] * ps)) t_parts.resize(first[B] * ps);
    float* parts = t_parts.data();
    const long* fb = first.data();
    const long* nb = blocks.data();
    parallel_items(first[B], nt, [&](long item) {
      const long b = std::upper_bound(fb, fb + B + 1, item) - fb - 1;
      if (!nb[b]) {
        const long h = item - fb[b];
        HWY_DYNAMIC_DISPATCH(AttnRows)(out, q, kc, vc, pos, s, cacheRows, b * H + h, b * H + h + 1);
        return;
      }
      const long j0 = (item - fb[b]) * P, n = pos[b] + 1 - j0 < P ? pos[b] + 1 - j0 : P;
      float* part = parts + item * ps;
      HWY_DYNAMIC_DISPATCH(AttnDecodeBlock)(part, part + H, part + 2 * H, q + b * qStride, kc + cacheRow(b) + j0 * kvStride, vc + cacheRow(b) + j0 * kvStride, n,
                                            H, rep, hs, kvStride, scale);
    });
    for (long b = 0; b < B; b++)
      if (nb[b]) HWY_DYNAMIC_DISPATCH(AttnDecodeMerge)(out + b * qStride, parts + fb[b] * ps, nb[b], H, hs);
    return;
  }
  parallel_for(B * H * T, nt, [&](long i0, long i1) { HWY_DYNAMIC_DISPATCH(AttnRows)(out, q, kc, vc, pos, s, cacheRows, i0, i1); });
}

// Full causal pass (pos = 0, S = T). dq (B, T, H*hs), dk/dv (B, T, Hkv*hs) overwritten.
// Per (b, h) and causal block of query rows [t0, t1) (keys [0, t1) only: about half the full TxT
// work), with single-threaded sgemm calls: the block's probabilities P are recomputed exactly as
// the forward's GEMM path computes them (same sgemm shape, same softmax), then
//   dP = dO V^T;  dS = P o (dP - rowsum(P o dP)) / sqrt(hs);  dQ = dS K;  dK_h += dS^T Q;  dV_h += P^T dO.
// Nothing (B, H, T, T)-sized is kept between forward and backward: P lives in a per-thread
// (64, T) block. With GQA the per-head dK_h / dV_h go to a scratch buffer and a second pass sums
// each group's heads in order (no racing accumulation).
void attention_back(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k, const float* v, const AttnShape& s) {
  const long B = s.B, T = s.T, H = s.H, Hkv = s.Hkv, hs = s.hs;
  const long rep = H / Hkv, qStride = H * hs, kvStride = Hkv * hs;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hs)));
  const int nt = threads_for(static_cast<double>(B) * H * T * T * hs * 8, 1 << 15);
  // Per-head key/value gradients (2, B, T, H, hs) when heads share a KV head (grow-only: a fresh
  // allocation per call paged in 16 MB per layer on large).
  thread_local std::vector<float> t_part;
  if (rep > 1 && t_part.size() < static_cast<size_t>(2 * B * T * H * hs)) t_part.resize(static_cast<size_t>(2 * B * T * H * hs));
  float* part = t_part.data();
  parallel_items(B * H, nt, [&](long item) {
    const long h = item % H, b = item / H, kvh = h / rep;
    float* dKh = rep > 1 ? part + b * T * qStride + h * hs : dk + b * T * kvStride + kvh * hs;
    float* dVh = rep > 1 ? part + (B + b) * T * qStride + h * hs : dv + b * T * kvStride + kvh * hs;
    HWY_DYNAMIC_DISPATCH(AttnBackHead)(dq + b * T * qStride + h * hs, dKh, dVh, rep > 1 ? qStride : kvStride, dout + b * T * qStride + h * hs,
                                       q + b * T * qStride + h * hs, k + b * T * kvStride + kvh * hs, v + b * T * kvStride + kvh * hs, T, qStride,
                                       kvStride, hs, scale);
  });
  if (rep == 1) return;
  parallel_for(B * T, threads_for(static_cast<double>(B) * T * H * hs * 2, 1 << 15),
               [&](long r0, long r1) { HWY_DYNAMIC_DISPATCH(SumHeadGroups)(dk, dv, part, r0, r1, B * T, Hkv, rep, hs); });
}

// out (B, T, H*hs) += gate[h] softmax(q pk^T / sqrt(hs)) pv; pk/pv (K, Hkv*hs); probs (B, H, T, K).
// A head with gate exactly 0 leaves out untouched (bit for bit).
void prompt_attention(float* out, const float* q, const float* pk, const float* pv, const float* gate, const PromptShape& s, float* probs) {
  const int nt = threads_for(static_cast<double>(s.B) * s.H * s.T * s.K * s.hs * 4, 1 << 15);
  parallel_for(s.B * s.H * s.T, nt, [&](long i0, long i1) { HWY_DYNAMIC_DISPATCH(PromptRows)(out, q, pk, pv, gate, s, probs, i0, i1); });
}

// dq (accumulate, may be null), dpk/dpv (K, Hkv*hs) (accumulate), dgate (H) (accumulate).
void prompt_attention_back(float* dq, float* dpk, float* dpv, float* dgate, const float* dout, const float* q, const float* pk, const float* pv,
                           const float* gate, const float* probs, const PromptShape& s) {
  const long B = s.B, T = s.T, K = s.K, H = s.H;
  const long rows = B * H * T;  // query rows (b, h, t), probs order
  // Grow-only scratch of the calling thread (no allocation per call).
  thread_local std::vector<float> t_ds;   // (B, H, T, K)
  thread_local std::vector<double> t_dg;  // (B, H, T)
  if (t_ds.size() < static_cast<size_t>(rows * K)) t_ds.resize(static_cast<size_t>(rows * K));
  if (t_dg.size() < static_cast<size_t>(rows)) t_dg.resize(static_cast<size_t>(rows));
  float* ds = t_ds.data();
  double* dg = t_dg.data();
  const int nt = threads_for(static_cast<double>(rows) * K * s.hs * 6, 1 << 15);
  parallel_for(rows, nt, [&](long i0, long i1) { HWY_DYNAMIC_DISPATCH(PromptBackRows)(dq, ds, dg, dout, pk, pv, gate, probs, s, i0, i1); });
  parallel_for(s.Hkv * K, nt, [&](long i0, long i1) { HWY_DYNAMIC_DISPATCH(PromptBackPromptRows)(dpk, dpv, ds, dout, q, gate, probs, s, i0, i1); });
  // dgate[h] += sum_t per (b, h), b in order (as the oracle does).
  for (long h = 0; h < H; h++)
    for (long b = 0; b < B; b++) {
      double acc = 0;
      for (long t = 0; t < T; t++) acc += dg[(b * H + h) * T + t];
      dgate[h] += static_cast<float>(acc);
    }
}

}  // namespace la
#endif  // HWY_ONCE
