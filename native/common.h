// Shared declarations of the native compute core: the OpenBLAS entry points we use, the
// persistent thread pool, CPU feature flags and the small SIMD helpers (dot, axpy, exp, bf16
// widening) every kernel file builds on.
//
// Why hand-written C++ at all: no TypeScript/wasm tensor library gets within 5x of PyTorch on
// CPU (the README's speed section), so
// the numeric core is a small N-API addon over OpenBLAS plus AVX-512 / AMX kernels of our own.
//
// Every kernel is deterministic for a fixed thread count: work is split by output rows or
// columns into fixed chunks, and every reduction runs in a fixed order.

#pragma once

#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>  // _mm_getcsr / _mm_setcsr (NoDenormals)
#endif

// ------------------------------------------------------------------ OpenBLAS (cblas, 32-bit ints)
// Declared here rather than included so that the build does not depend on where the distribution
// puts cblas.h (Debian: /usr/include/x86_64-linux-gnu/openblas-pthread/). Debian's libopenblas.so
// uses 32-bit BLAS integers (the openblas64 variant is a different library name).
extern "C" {
void cblas_sgemm(int order, int transA, int transB, int M, int N, int K, float alpha, const float* A,
                 int lda, const float* B, int ldb, float beta, float* C, int ldc);
void openblas_set_num_threads(int n);
}
enum { kCblasRowMajor = 101, kCblasNoTrans = 111, kCblasTrans = 112 };

namespace la {

// ------------------------------------------------------------------ CPU features and SIMD target (cpu.cc)
// The SIMD kernels are compiled once per Highway target (SSE4, AVX2, AVX-512 on x86-64; NEON on
// ARM64) and dispatched at run time to the best one the CPU runs, or to the one named by
// LLAMA_ADAPTER_SIMD / simd_force() (tests and benchmarks of the lower levels). The bf16 GEMM
// engines (amx.cc) are dispatched separately: they need the CPU feature and a target of
// AVX-512 or better in force.
struct Features {
  bool avx512bf16 = false;     // AVX512_BF16 (vdpbf16ps) in use for bf16 GEMMs without AMX
  bool cpuAvx512bf16 = false;  // ... and whether it can be (CPU flag, AVX-512 target in force)
  bool amx = false;            // AMX-BF16 tiles in use (CPU flag, kernel permission, AVX-512 target)
  // 8-bit integer dot products for quantized weights in use (quant.cc): AVX512_VNNI with an AVX-512
  // target in force, or ARMv8.2 dotprod (sdot) with NEON ...
  bool int8Dot = false;
  bool cpuInt8Dot = false;     // ... and whether they can be (CPU flag, target in force)
  // Not a CPU feature: matmul uses the dot-product kernel for every M (no sgemm, no AMX), so each
  // row's result is independent of the batch around it (slower for many rows).
  bool batchInvariant = false;
  // Not a CPU feature: bf16-weight products on AMX keep ~16 bits of each fp32 activation
  // (hi + lo bf16 split, twice the tile work) instead of rounding activations to bf16.
  bool bf16Split = false;
  // Not a CPU feature: decode products whose weights stream from DRAM are shared out between the
  // threads by work stealing (linear.cc decode_rows) instead of a fixed split. Same bits either way.
  bool decodeStealing = true;
  // Not a CPU feature: a decode row whose KV cache is over 512 KB splits its keys into blocks of
  // positions, each read once for all heads and merged by their softmax sums (attention.cc), rather
  // than head by head over every key. Off: the head-by-head path (and rounding) for every row.
  bool attnPositionBlocks = true;
};
extern Features g_features;
void detect_features();  // once at load: CPU flags, LLAMA_ADAPTER_* environment switches

/** The SIMD target the kernels dispatch to now ("avx512", "avx2", "sse4", "neon", "scalar", ...). */
const char* simd_target();
/** Every target compiled in that this CPU runs, best first (names as simd_target). */
int simd_targets(const char** names, int max);
/** Dispatch to `name` (one of simd_targets), or to the best target for "" or "best"; false when unknown or not runnable. */
bool simd_force(const char* name);
/** Whether the target in force is AVX-512 or better (the bf16 GEMM engines need it). */
bool simd_avx512_in_force();

// ------------------------------------------------------------------ thread pool
// A persistent pool: workers spin briefly after each job (decode issues thousands of small
// kernels per second) and then sleep on a condition variable. pool_run(n, fn, ctx, bytes) calls
// fn(ctx, part) exactly once for each part in [0, n): part 0 on the calling thread, part i on
// worker i if that worker claims it first, else on the caller once its own part is done, so the
// caller never waits for a worker that has not started (a late or preempted worker holds nobody
// up). A job reaches a worker in one 128-byte slot (the part function and, when `bytes` is not 0,
// a copy of the first `bytes` <= kPoolPayload bytes of ctx): a spinning worker starts after one
// cache-line transfer instead of a chain of them through the caller's stack frame, which is what
// made two threads slower than one on the small matmuls of a decode step (bench/README.md).
// Nested calls, or calls while another JS thread holds the pool, run every part in the caller.
typedef void (*PartFn)(const void* ctx, int part);
constexpr size_t kPoolPayload = 96;
constexpr int kMaxPoolThreads = 256;  // pool_set_threads clamps to this
void pool_run(int nparts, PartFn fn, const void* ctx, size_t bytes);
int pool_threads();           // the thread count kernels use now
void pool_rest();             // no kernels for a while: idle workers sleep now rather than spin (the next job wakes them)
void pool_set_threads(int n); // creates workers as needed

/** f(part) once for each part in [0, nparts) over the pool (see pool_run); f is copied into the worker's slot when it fits. */
template <class F>
inline void parallel_parts(int nparts, const F& f) {
  if (nparts <= 1) {
    if (nparts == 1) f(0);
    return;
  }
  constexpr bool copy = std::is_trivially_copyable<F>::value && sizeof(F) <= kPoolPayload && alignof(F) <= 16;
  pool_run(nparts, [](const void* c, int part) { (*static_cast<const F*>(c))(part); }, &f, copy ? sizeof(F) : 0);
}

/**
 * Flush-to-zero and denormals-are-zero (MXCSR bits 15 and 6) while a kernel runs on the calling
 * thread, restored afterwards (that thread runs JavaScript, which needs IEEE denormals): addon.cc
 * wraps every kernel entry point in one; pool workers set the bits once. Softmax over a trained model's peaked scores gives probabilities far
 * below FLT_MIN, and every product with a denormal took a microcode assist: stories260K's
 * attention calls ran 0.6 to 3.0 ms on identical shapes, by layer. Results change only where a
 * value is below 1.2e-38.
 */
class NoDenormals {
#if defined(__x86_64__) || defined(__i386__)
  unsigned saved_;

 public:
  NoDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040u); }
  ~NoDenormals() { _mm_setcsr(saved_); }
#endif
};

/**
 * parallel for over [0, count) in nthreads contiguous chunks, chunk i being pool part i (run by
 * worker i unless it is late: pool_run). Repeated calls of one shape thus usually give each
 * thread the same rows of a weight matrix, which stay in that core's L2 from one decode step to
 * the next. f is copied into the workers' slots when it fits: capture by value on hot paths.
 * Chunk boundaries depend only on count and nthreads, so results stay deterministic.
 */
template <class F>
inline void parallel_for_affine(long count, int nthreads, const F& f) {
  if (count <= 0) return;
  if (nthreads > count) nthreads = static_cast<int>(count);
  if (nthreads <= 1) {
    f(0L, count);
    return;
  }
  const long base = count / nthreads, rem = count % nthreads;
  parallel_parts(nthreads, [f, base, rem](int c) {
    const long b = c * base + (c < rem ? c : rem);
    f(b, b + base + (c < rem ? 1 : 0));
  });
}

/**
 * parallel for over [0, count) that starts as parallel_for_affine (thread i's contiguous range)
 * and ends with work stealing: each thread claims `grain` items at a time from the front of its
 * own range, and a thread whose range is empty takes the back half of the fullest other range.
 * For a decode matmul that streams its weights from DRAM: the two cores' share of the memory
 * bandwidth differs from moment to moment, so a fixed split leaves the first one done waiting for
 * the other (perf, medium at AVX2: 6.5% of the caller's time in pool_run, 8% of the worker's idle).
 * The owner's claims touch only its own cache line; lines bounce only when a range is stolen from.
 * f(begin, end) is called on disjoint ranges covering [0, count) once; a kernel whose rows do not
 * depend on the partition (DotRows1) gives the same bits however the ranges fall. count < 2^31.
 */
template <class F>
inline void parallel_for_stealing(long count, int nthreads, long grain, const F& f) {
  if (count <= 0) return;
  if (grain < 1) grain = 1;
  if (nthreads > count) nthreads = static_cast<int>(count);
  if (nthreads <= 1) {
    f(0L, count);
    return;
  }
  // A range [begin, end) packed begin << 32 | end, one per cache line.
  struct alignas(64) Range {
    std::atomic<uint64_t> v;
  };
  Range ranges[kMaxPoolThreads];
  const long base = count / nthreads, rem = count % nthreads;
  for (int c = 0; c < nthreads; c++) {
    const uint64_t b = static_cast<uint64_t>(c * base + (c < rem ? c : rem)), e = b + static_cast<uint64_t>(base + (c < rem ? 1 : 0));
    ranges[c].v.store(b << 32 | e, std::memory_order_relaxed);
  }
  Range* const rs = ranges;
  parallel_parts(nthreads, [rs, nthreads, grain, &f](int me) {
    std::atomic<uint64_t>& mine = rs[me].v;
    for (;;) {
      // Claim the front of my range.
      uint64_t cur = mine.load(std::memory_order_acquire);
      long b = static_cast<long>(cur >> 32), e = static_cast<long>(cur & 0xffffffffu);
      if (b < e) {
        const long nb = e - b > grain ? b + grain : e;
        if (!mine.compare_exchange_weak(cur, static_cast<uint64_t>(nb) << 32 | static_cast<uint64_t>(e), std::memory_order_acq_rel)) continue;
        f(b, nb);
        continue;
      }
      // Mine is empty: steal the back half of the fullest other range into mine.
      int victim = -1;
      long most = grain;  // a range of one grain or less is left to its owner
      for (int o = 0; o < nthreads; o++) {
        if (o == me) continue;
        const uint64_t ov = rs[o].v.load(std::memory_order_relaxed);
        const long left = static_cast<long>(ov & 0xffffffffu) - static_cast<long>(ov >> 32);
        if (left > most) most = left, victim = o;
      }
      if (victim < 0) return;
      uint64_t ov = rs[victim].v.load(std::memory_order_acquire);
      const long vb = static_cast<long>(ov >> 32), ve = static_cast<long>(ov & 0xffffffffu);
      if (ve - vb <= grain) continue;
      const long mid = ve - (ve - vb) / 2;
      if (!rs[victim].v.compare_exchange_strong(ov, static_cast<uint64_t>(vb) << 32 | static_cast<uint64_t>(mid), std::memory_order_acq_rel)) continue;
      mine.store(static_cast<uint64_t>(mid) << 32 | static_cast<uint64_t>(ve), std::memory_order_release);
    }
  });
}

/** Threads worth using for `work` units (roughly flops or bytes touched) given the pool size. */
inline int threads_for(double work, double minPerThread = 32768.0) {
  int t = pool_threads();
  if (t <= 1) return 1;
  int byWork = static_cast<int>(work / minPerThread);
  if (byWork < 1) byWork = 1;
  return byWork < t ? byWork : t;
}

/**
 * parallel for over [0, count) in contiguous chunks f(begin, end). The chunk boundaries depend
 * only on count, nthreads and chunksPerThread; threads claim chunks dynamically (an atomic
 * counter), so a thread the OS preempts does not hold the others up. Every kernel computes a
 * chunk the same way whichever thread runs it, so results stay deterministic.
 */
template <class F>
inline void parallel_for(long count, int nthreads, F&& f, int chunksPerThread = 4) {
  if (count <= 0) return;
  if (nthreads > count) nthreads = static_cast<int>(count);
  if (nthreads <= 1) {
    f(0L, count);
    return;
  }
  long nChunks = static_cast<long>(nthreads) * chunksPerThread;
  if (nChunks > count) nChunks = count;
  const long base = count / nChunks, rem = count % nChunks;
  std::atomic<long> next{0};
  parallel_parts(nthreads, [&](int) {
    for (;;) {
      const long c = next.fetch_add(1, std::memory_order_relaxed);
      if (c >= nChunks) break;
      const long b = c * base + (c < rem ? c : rem);
      f(b, b + base + (c < rem ? 1 : 0));
    }
  });
}

/** parallel for over single items [0, count) claimed one at a time: f(i). For uneven items. */
template <class F>
inline void parallel_items(long count, int nthreads, F&& f) {
  if (count <= 0) return;
  if (nthreads > count) nthreads = static_cast<int>(count);
  if (nthreads <= 1) {
    for (long i = 0; i < count; i++) f(i);
    return;
  }
  std::atomic<long> next{0};
  parallel_parts(nthreads, [&](int) {
    for (;;) {
      const long i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= count) break;
      f(i);
    }
  });
}

// ------------------------------------------------------------------ bf16 (scalar)
// The vector versions are in simd-inl.h (per SIMD target).

/** fp32 bits rounded to bf16 (ties to even, NaN kept quiet): the bf16 value in the upper 16 bits. */
inline uint32_t bf16_round_bits(uint32_t u) {
  return ((u & 0x7fffffffu) > 0x7f800000u) ? (u | 0x00400000u) : (u + 0x7fffu + ((u >> 16) & 1u));
}

// ------------------------------------------------------------------ kernel arguments
// The structs the N-API layer (addon.cc) reads, by field name, from the TypeScript objects of the
// same names (src/backend/backend.ts): one glossary on both sides.

/**
 * A frozen weight matrix (rows, cols), row-major: TS Matrix {rows, cols, data, dtype}; bf16 or
 * f16 (IEEE half) when data is a Uint16Array; qtype != 0: ggml blocks of that ggml type id
 * (quant.cc), data a Uint8Array.
 */
struct Mat {
  const void* data;
  bool bf16;
  long rows, cols;
  int qtype = 0;
  bool f16 = false;
};
/** B rows, T query positions, S cache positions per row, H query heads, Hkv kv heads, hs head size. */
struct AttnShape {
  long B, T, S, H, Hkv, hs;
};
/** B rows, T query positions, K prompt length, H query heads, Hkv kv heads, hs head size. */
struct PromptShape {
  long B, T, K, H, Hkv, hs;
};
/** One AdamW step's hyper-parameters (step is 1-based). */
struct AdamwStep {
  double lr, beta1, beta2, eps, weightDecay, step;
};

// ------------------------------------------------------------------ kernels (one file each group)
// linear.cc
void matmul(float* out, const float* x, const Mat& w, long M, bool accumulate);
// outs[i] (M, ws[i].rows) = x (M, K) · ws[i]^T for count <= 3 weights sharing x (linear.cc).
void matmul_shared(float* const* outs, const float* x, const Mat* ws, int count, long M);
inline void matmul2(float* a, float* b, const float* x, const Mat& wa, const Mat& wb, long M) {
  float* const outs[] = {a, b};
  const Mat ws[] = {wa, wb};
  matmul_shared(outs, x, ws, 2, M);
}
inline void matmul3(float* a, float* b, float* c, const float* x, const Mat& wa, const Mat& wb, const Mat& wc, long M) {
  float* const outs[] = {a, b, c};
  const Mat ws[] = {wa, wb, wc};
  matmul_shared(outs, x, ws, 3, M);
}
void matmul_back(float* out, const float* dy, const Mat& w, long M, bool accumulate);
void gemm(bool tA, bool tB, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
          float beta, float* C, int ldc);
// amx.cc: C (M, N) (+)= X (M, Kd) · op(W) with bf16 W; wTrans=false: W is (N, Kd) (matmul),
// wTrans=true: W is (Kd, N) (matmulBack). Runs on AMX tiles when the amx feature is on, else on
// AVX512_BF16; call only when bf16_gemm_ready().
bool amx_available();
bool amx_init();
bool bf16_gemm_ready();
void bf16_gemm(float* out, const float* x, const uint16_t* w, bool wTrans, long M, long N, long Kd, bool accumulate);

// quant.cc: ggml block types (ids 8 Q8_0, 2 Q4_0, 3 Q4_1, 6 Q5_0, 12 Q4_K, 13 Q5_K, 14 Q6_K)
bool quant_type_known(int qtype);
long quant_block(int qtype);                  // values per block
long quant_row_bytes(int qtype, long cols);   // bytes of one row
void quant_dequant_row(int qtype, const void* data, float* out, long n);
void quant_matmul(float* out, const float* x, const Mat& w, long M, bool accumulate);

// rows.cc
void rmsnorm(float* out, const float* x, const float* w, long rows, long dim, float eps, float* rstd);
void rmsnorm_back(float* dx, const float* dy, const float* x, const float* w, const float* rstd, long rows, long dim, bool accumulate);
void rope(float* x, long B, long T, long H, long hs, const int32_t* pos, const float* cos, const float* sin, bool inverse);
void silu_gate(float* out, const float* a, const float* b, long n);
void silu_gate_back(float* da, float* db, const float* dy, const float* a, const float* b, long n);
void add(float* x, const float* y, long n);
long argmax(const float* x, long n);  // the first index of the largest of x[0, n), n >= 1 (Backend.argmax)
void to_bf16_array(uint16_t* out, const float* x, long n);   // rounded, ties to even (storage of saved activations)
void from_bf16_array(float* out, const uint16_t* x, long n);
void embed(float* out, const Mat& table, const int32_t* ids, long n);
double cross_entropy(float* logits, const int32_t* targets, long rows, long V, float* dlogits, float scale, float* losses);
void adamw(float* p, const float* g, float* m, float* v, long n, const AdamwStep& o);

// block.cc: one transformer block of inference (Backend.block).
void block(float* x, const float* attnNorm, const Mat& wq, const Mat& wk, const Mat& wv, const Mat& wo, const float* ffnNorm,
           const Mat& w1, const Mat& w3, const Mat& w2, float* h, float* q, float* k, float* v, float* att, float* a, float* b,
           float* g, float* kc, float* vc, const int32_t* cacheRows, const int32_t* pos, const AttnShape& s, const float* cos,
           const float* sin, double eps);

// attention.cc
void attention(float* out, const float* q, const float* kc, const float* vc, const int32_t* pos, const AttnShape& s,
               const int32_t* cacheRows);
void attention_back(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k, const float* v,
                    const AttnShape& s);
void prompt_attention(float* out, const float* q, const float* pk, const float* pv, const float* gate, const PromptShape& s, float* probs);
void prompt_attention_back(float* dq, float* dpk, float* dpv, float* dgate, const float* dout, const float* q, const float* pk,
                           const float* pv, const float* gate, const float* probs, const PromptShape& s);


// encoder.cc (encoders: ViT / CLIP towers, RoBERTa; the vpt prompt baseline)
void layer_norm(float* out, const float* x, const float* w, const float* b, long rows, long dim, float eps, float* mean, float* rstd);
void gelu(float* out, const float* x, long n, long kind);  // kind: 0 erf, 1 tanh approximation, 2 quick_gelu
void bias_add(float* x, const float* bias, long rows, long dim);
void layer_norm_back(float* dx, const float* dy, const float* x, const float* w, const float* mean, const float* rstd, long rows, long dim,
                     bool accumulate);
void gelu_back(float* dx, const float* dy, const float* x, long n, long kind);
void encoder_attention(float* out, const float* q, const float* k, const float* v, const AttnShape& s);  // = prefix_attention, K = 0, no mask
void prefix_attention(float* out, const float* q, const float* k, const float* v, const float* pk, const float* pv, const PromptShape& s,
                      const int32_t* mask, bool causal);
void prefix_attention_back(float* dq, float* dk, float* dv, float* dpk, float* dpv, const float* dout, const float* q, const float* k, const float* v,
                           const float* pk, const float* pv, const PromptShape& s, const int32_t* mask, bool causal);
void patches(float* out, const float* pixels, long B, long C, long size, long p);

}  // namespace la
