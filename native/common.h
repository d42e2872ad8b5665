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
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>  // _mm_getcsr / _mm_setcsr (NoDenormals)
#endif

#if defined(__AVX512F__)
#include <immintrin.h>
#define LA_AVX512 1
#else
#define LA_AVX512 0
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

// ------------------------------------------------------------------ CPU features (set at load)
struct Features {
  bool avx512 = false;      // compiled with and running on AVX-512F
  bool avx512bf16 = false;  // AVX512_BF16 (vdpbf16ps) in use for bf16 GEMMs without AMX (opt-in)
  bool cpuAvx512bf16 = false;  // ... and what the CPU supports (avx512bf16 can be switched off)
  bool amx = false;         // AMX-BF16 tiles usable (CPU flag + kernel permission granted)
  // Not a CPU feature: matmul uses the dot-product kernel for every M (no sgemm, no AMX), so each
  // row's result is independent of the batch around it (slower for many rows).
  bool batchInvariant = false;
  // Not a CPU feature: bf16-weight products on AMX keep ~16 bits of each fp32 activation
  // (hi + lo bf16 split, twice the tile work) instead of rounding activations to bf16.
  bool bf16Split = false;
};
extern Features g_features;
void detect_features();

// ------------------------------------------------------------------ thread pool
// A persistent pool: workers spin briefly after each job (decode issues thousands of small
// kernels per second) and then sleep on a condition variable. pool_run(n, fn, ctx) runs fn(ctx)
// on the calling thread and on up to n - 1 workers that join while the job is open; fn must claim
// its work dynamically (parallel_for / parallel_items below), so the job completes even when a
// worker is late or preempted, and the caller never waits for a worker that has not started.
// Nested calls, or calls while another JS thread holds the pool, run fn in the caller alone.
typedef void (*TaskFn)(void* ctx);
void pool_run(int nthreads, TaskFn fn, void* ctx);
int pool_threads();           // the thread count kernels use now
void pool_set_threads(int n); // creates workers as needed

template <class F>
inline void parallel(int nthreads, F&& f) {
  if (nthreads <= 1) {
    f();
    return;
  }
  struct Ctx { F* f; } c{&f};
  pool_run(nthreads, [](void* p) { (*static_cast<Ctx*>(p)->f)(); }, &c);
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

/** This thread's pool slot: 0 for a thread that calls pool_run, i for worker i. */
int pool_slot();

/**
 * parallel for over [0, count) in nthreads contiguous chunks, chunk i meant for pool slot i: each
 * thread first claims its own chunk, then any chunk still unclaimed, so a late or preempted
 * thread holds nobody up. Repeated calls of one shape thus usually give each thread the same
 * rows of a weight matrix, which stay in that core's L2 from one decode step to the next.
 * Chunk boundaries depend only on count and nthreads, so results stay deterministic.
 */
template <class F>
inline void parallel_for_affine(long count, int nthreads, F&& f) {
  if (count <= 0) return;
  if (nthreads > count) nthreads = static_cast<int>(count);
  if (nthreads > 64) nthreads = 64;
  if (nthreads <= 1) {
    f(0L, count);
    return;
  }
  std::atomic<bool> taken[64];
  for (int i = 0; i < nthreads; i++) taken[i].store(false, std::memory_order_relaxed);
  const long base = count / nthreads, rem = count % nthreads;
  auto run = [&](int c) {
    const long b = c * base + (c < rem ? c : rem);
    f(b, b + base + (c < rem ? 1 : 0));
  };
  parallel(nthreads, [&]() {
    const int me = pool_slot();
    if (me < nthreads && !taken[me].exchange(true, std::memory_order_acq_rel)) run(me);
    for (int c = 0; c < nthreads; c++)
      if (!taken[c].load(std::memory_order_relaxed) && !taken[c].exchange(true, std::memory_order_acq_rel)) run(c);
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
  parallel(nthreads, [&]() {
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
  parallel(nthreads, [&]() {
    for (;;) {
      const long i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= count) break;
      f(i);
    }
  });
}

// ------------------------------------------------------------------ SIMD helpers
#if LA_AVX512
inline __mmask16 tail_mask(int n) { return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1u); }

/** 16 bf16 values (upper halves of fp32) widened exactly to fp32. */
inline __m512 load_bf16(const uint16_t* p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)p)), 16));
}
inline __m512 maskz_load_bf16(__mmask16 m, const uint16_t* p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}

/** exp(x) for 16 lanes: Cephes-style range reduction and degree-6 polynomial (~1 ulp). */
inline __m512 exp512(__m512 x) {
  x = _mm512_min_ps(_mm512_set1_ps(89.0f), _mm512_max_ps(_mm512_set1_ps(-104.0f), x));  // NaN propagates
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500E-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
  __m512 r2 = _mm512_mul_ps(r, r);
  p = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}
#endif

inline float expf_(float x) {
#if LA_AVX512
  return _mm512_cvtss_f32(exp512(_mm512_set1_ps(x)));
#else
  return std::exp(x);
#endif
}

/** sum_i a[i] * b[i] (fp32, fixed order). */
inline float dot(const float* a, const float* b, int n) {
#if LA_AVX512
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  int i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
  }
  for (; i < n; i += 16) {
    __mmask16 m = tail_mask(n - i);
    s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
#else
  float s = 0;
  for (int i = 0; i < n; i++) s += a[i] * b[i];
  return s;
#endif
}

/** y[i] += a * x[i]. */
inline void axpy(float* y, float a, const float* x, int n) {
#if LA_AVX512
  __m512 av = _mm512_set1_ps(a);
  int i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_fmadd_ps(av, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
  if (i < n) {
    __mmask16 m = tail_mask(n - i);
    _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
  }
#else
  for (int i = 0; i < n; i++) y[i] += a * x[i];
#endif
}

/** max_i x[i] (-inf for n == 0). */
inline float vmax(const float* x, int n) {
#if LA_AVX512
  __m512 m = _mm512_set1_ps(-INFINITY);
  int i = 0;
  for (; i + 16 <= n; i += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(x + i));
  if (i < n) m = _mm512_mask_max_ps(m, tail_mask(n - i), m, _mm512_maskz_loadu_ps(tail_mask(n - i), x + i));
  return _mm512_reduce_max_ps(m);
#else
  float m = -INFINITY;
  for (int i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
  return m;
#endif
}

/** x[i] = exp(x[i] - sub); returns sum of the results (fp32, fixed order). */
inline float exp_sub_sum(float* x, float sub, int n) {
#if LA_AVX512
  __m512 s = _mm512_setzero_ps(), mv = _mm512_set1_ps(sub);
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i), mv));
    _mm512_storeu_ps(x + i, e);
    s = _mm512_add_ps(s, e);
  }
  if (i < n) {
    __mmask16 m = tail_mask(n - i);
    __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), mv));
    _mm512_mask_storeu_ps(x + i, m, e);
    s = _mm512_add_ps(s, _mm512_maskz_mov_ps(m, e));
  }
  return _mm512_reduce_add_ps(s);
#else
  float s = 0;
  for (int i = 0; i < n; i++) {
    x[i] = std::exp(x[i] - sub);
    s += x[i];
  }
  return s;
#endif
}

/** x[i] *= a. */
inline void scale(float* x, float a, int n) {
  for (int i = 0; i < n; i++) x[i] *= a;
}

/** Widen n bf16 values to fp32. */
inline void bf16_to_f32(float* dst, const uint16_t* src, long n) {
  long i = 0;
#if LA_AVX512
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, load_bf16(src + i));
#endif
  uint32_t* d = reinterpret_cast<uint32_t*>(dst);
  for (; i < n; i++) d[i] = static_cast<uint32_t>(src[i]) << 16;
}

#if LA_AVX512
/** 16 fp32 lanes rounded to bf16 (ties to even, NaN kept quiet): the bf16 value in each lane's upper 16 bits. */
inline __m512i bf16_round_bits(__m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1))));
  return _mm512_mask_or_epi32(r, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), u, _mm512_set1_epi32(0x00400000));
}
#endif
/** The same for one value. */
inline uint32_t bf16_round_bits(uint32_t u) {
  return ((u & 0x7fffffffu) > 0x7f800000u) ? (u | 0x00400000u) : (u + 0x7fffu + ((u >> 16) & 1u));
}

/** dst = src rounded to the nearest bf16 (ties to even, NaN stays a quiet NaN), kept as fp32. */
inline void round_bf16(float* dst, const float* src, long n) {
  const uint32_t* s = reinterpret_cast<const uint32_t*>(src);
  uint32_t* d = reinterpret_cast<uint32_t*>(dst);
  long i = 0;
#if LA_AVX512
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_si512(d + i, _mm512_and_si512(bf16_round_bits(_mm512_loadu_ps(src + i)), _mm512_set1_epi32(static_cast<int>(0xffff0000u))));
#endif
  for (; i < n; i++) d[i] = bf16_round_bits(s[i]) & 0xffff0000u;
}

// ------------------------------------------------------------------ kernel arguments
// The structs the N-API layer (addon.cc) reads, by field name, from the TypeScript objects of the
// same names (src/backend/backend.ts): one glossary on both sides.

/** A frozen weight matrix (rows, cols), row-major: TS Matrix {rows, cols, data}; bf16 when data is a Uint16Array. */
struct Mat {
  const void* data;
  bool bf16;
  long rows, cols;
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

// rows.cc
void rmsnorm(float* out, const float* x, const float* w, long rows, long dim, float eps, float* rstd);
void rmsnorm_back(float* dx, const float* dy, const float* x, const float* w, const float* rstd, long rows, long dim, bool accumulate);
void rope(float* x, long B, long T, long H, long hs, const int32_t* pos, const float* cos, const float* sin, bool inverse);
void silu_gate(float* out, const float* a, const float* b, long n);
void silu_gate_back(float* da, float* db, const float* dy, const float* a, const float* b, long n);
void add(float* x, const float* y, long n);
void to_bf16_array(uint16_t* out, const float* x, long n);   // rounded, ties to even (storage of saved activations)
void from_bf16_array(float* out, const uint16_t* x, long n);
void embed(float* out, const Mat& table, const int32_t* ids, long n);
double cross_entropy(float* logits, const int32_t* targets, long rows, long V, float* dlogits, float scale);
void adamw(float* p, const float* g, float* m, float* v, long n, const AdamwStep& o);

// attention.cc
void attention(float* out, const float* q, const float* kc, const float* vc, const int32_t* pos, const AttnShape& s,
               const int32_t* cacheRows);
void attention_back(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k, const float* v,
                    const AttnShape& s);
void prompt_attention(float* out, const float* q, const float* pk, const float* pv, const float* gate, const PromptShape& s, float* probs);
void prompt_attention_back(float* dq, float* dpk, float* dpv, float* dgate, const float* dout, const float* q, const float* pk,
                           const float* pv, const float* gate, const float* probs, const PromptShape& s);

}  // namespace la
