// Row-wise and elementwise kernels: RMSNorm (+ backward), RoPE, SiLU gate (+ backward), residual
// add, embedding lookup, softmax cross-entropy and AdamW. Parallel over rows (or contiguous
// element ranges) when the work is large enough to pay for waking the pool; reductions whose
// result leaves the kernel (norms, losses) accumulate in double, in a fixed order.

#include "common.h"

#include <vector>

namespace la {

namespace {

// sum_i a[i] * b[i] in double (16 fp32 lanes widened to two 8-lane double accumulators).
inline double dot_d(const float* a, const float* b, long n) {
#if LA_AVX512
  __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
  long i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512d a0 = _mm512_cvtps_pd(_mm256_loadu_ps(a + i)), a1 = _mm512_cvtps_pd(_mm256_loadu_ps(a + i + 8));
    __m512d b0 = _mm512_cvtps_pd(_mm256_loadu_ps(b + i)), b1 = _mm512_cvtps_pd(_mm256_loadu_ps(b + i + 8));
    s0 = _mm512_fmadd_pd(a0, b0, s0);
    s1 = _mm512_fmadd_pd(a1, b1, s1);
  }
  double s = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
  for (; i < n; i++) s += static_cast<double>(a[i]) * b[i];
  return s;
#else
  double s = 0;
  for (long i = 0; i < n; i++) s += static_cast<double>(a[i]) * b[i];
  return s;
#endif
}

// sum_i a[i] * b[i] * c[i] in double.
inline double dot3_d(const float* a, const float* b, const float* c, long n) {
#if LA_AVX512
  __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
  long i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512d a0 = _mm512_cvtps_pd(_mm256_loadu_ps(a + i)), a1 = _mm512_cvtps_pd(_mm256_loadu_ps(a + i + 8));
    __m512d b0 = _mm512_cvtps_pd(_mm256_loadu_ps(b + i)), b1 = _mm512_cvtps_pd(_mm256_loadu_ps(b + i + 8));
    __m512d c0 = _mm512_cvtps_pd(_mm256_loadu_ps(c + i)), c1 = _mm512_cvtps_pd(_mm256_loadu_ps(c + i + 8));
    s0 = _mm512_fmadd_pd(_mm512_mul_pd(a0, b0), c0, s0);
    s1 = _mm512_fmadd_pd(_mm512_mul_pd(a1, b1), c1, s1);
  }
  double s = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
  for (; i < n; i++) s += static_cast<double>(a[i]) * b[i] * c[i];
  return s;
#else
  double s = 0;
  for (long i = 0; i < n; i++) s += static_cast<double>(a[i]) * b[i] * c[i];
  return s;
#endif
}

// Elements per thread below which a streaming kernel stays single-threaded.
constexpr double kStreamGrain = 1 << 16;

}  // namespace

void rmsnorm(float* out, const float* x, const float* w, long rows, long dim, float eps, float* rstd) {
  const int nt = threads_for(static_cast<double>(rows) * dim, kStreamGrain);
  parallel_for(rows, nt, [&](long r0, long r1) {
    for (long r = r0; r < r1; r++) {
      const float* xr = x + r * dim;
      float* o = out + r * dim;
      const double ss = dot_d(xr, xr, dim);
      const float s = static_cast<float>(1.0 / std::sqrt(ss / dim + eps));
      if (rstd) rstd[r] = s;
#pragma omp simd
      for (long i = 0; i < dim; i++) o[i] = xr[i] * s * w[i];
    }
  });
}

// dx = s * (w*dy) - x * s^3 / dim * sum(w*dy*x)
void rmsnorm_back(float* dx, const float* dy, const float* x, const float* w, const float* rstd, long rows, long dim, bool acc) {
  const int nt = threads_for(static_cast<double>(rows) * dim, kStreamGrain);
  parallel_for(rows, nt, [&](long r0, long r1) {
    for (long r = r0; r < r1; r++) {
      const float* xr = x + r * dim;
      const float* g = dy + r * dim;
      float* d = dx + r * dim;
      const double s = rstd[r];
      const double dotv = dot3_d(w, g, xr, dim);
      const float c = static_cast<float>(dotv * s * s * s / dim);
      const float sf = static_cast<float>(s);
      if (acc) {
#pragma omp simd
        for (long i = 0; i < dim; i++) d[i] += sf * w[i] * g[i] - c * xr[i];
      } else {
#pragma omp simd
        for (long i = 0; i < dim; i++) d[i] = sf * w[i] * g[i] - c * xr[i];
      }
    }
  });
}

// x (B, T, H, hs) rotated in interleaved pairs at positions pos[b] + t; cos/sin (maxPos, hs/2).
void rope(float* x, long B, long T, long H, long hs, const int32_t* pos, const float* cos, const float* sin, bool inverse) {
  const long half = hs / 2;
  const float sign = inverse ? -1.0f : 1.0f;
  const int nt = threads_for(static_cast<double>(B) * T * H * hs, kStreamGrain);
  parallel_for(B * T, nt, [&](long r0, long r1) {
    for (long r = r0; r < r1; r++) {
      const long b = r / T, t = r % T;
      const long p = (static_cast<long>(pos[b]) + t) * half;
      const float* c = cos + p;
      const float* sn = sin + p;
      for (long h = 0; h < H; h++) {
        float* o = x + (r * H + h) * hs;
#pragma omp simd
        for (long i = 0; i < half; i++) {
          const float cc = c[i], ss = sign * sn[i];
          const float x0 = o[2 * i], x1 = o[2 * i + 1];
          o[2 * i] = x0 * cc - x1 * ss;
          o[2 * i + 1] = x0 * ss + x1 * cc;
        }
      }
    }
  });
}

void silu_gate(float* out, const float* a, const float* b, long n) {
  const int nt = threads_for(static_cast<double>(n) * 8, kStreamGrain);
  parallel_for((n + 15) / 16, nt, [&](long v0, long v1) {
    long i0 = v0 * 16, i1 = v1 * 16 < n ? v1 * 16 : n;
#if LA_AVX512
    const __m512 one = _mm512_set1_ps(1.0f);
    for (long i = i0; i < i1; i += 16) {
      __mmask16 m = tail_mask(static_cast<int>(i1 - i > 16 ? 16 : i1 - i));
      __m512 av = _mm512_maskz_loadu_ps(m, a + i), bv = _mm512_maskz_loadu_ps(m, b + i);
      __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), av));
      __m512 r = _mm512_mul_ps(_mm512_div_ps(av, _mm512_add_ps(one, e)), bv);
      _mm512_mask_storeu_ps(out + i, m, r);
    }
#else
    for (long i = i0; i < i1; i++) out[i] = a[i] / (1.0f + std::exp(-a[i])) * b[i];
#endif
  });
}

void silu_gate_back(float* da, float* db, const float* dy, const float* a, const float* b, long n) {
  const int nt = threads_for(static_cast<double>(n) * 8, kStreamGrain);
  parallel_for((n + 15) / 16, nt, [&](long v0, long v1) {
    long i0 = v0 * 16, i1 = v1 * 16 < n ? v1 * 16 : n;
#if LA_AVX512
    const __m512 one = _mm512_set1_ps(1.0f);
    for (long i = i0; i < i1; i += 16) {
      __mmask16 m = tail_mask(static_cast<int>(i1 - i > 16 ? 16 : i1 - i));
      __m512 av = _mm512_maskz_loadu_ps(m, a + i), bv = _mm512_maskz_loadu_ps(m, b + i), g = _mm512_maskz_loadu_ps(m, dy + i);
      __m512 sig = _mm512_div_ps(one, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), av))));
      __m512 dbv = _mm512_mul_ps(_mm512_mul_ps(g, av), sig);
      __m512 dav = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(g, bv), sig), _mm512_fmadd_ps(av, _mm512_sub_ps(one, sig), one));
      _mm512_mask_storeu_ps(db + i, m, dbv);
      _mm512_mask_storeu_ps(da + i, m, dav);
    }
#else
    for (long i = i0; i < i1; i++) {
      const float v = a[i], sig = 1.0f / (1.0f + std::exp(-v)), g = dy[i];
      db[i] = g * v * sig;
      da[i] = g * b[i] * sig * (1.0f + v * (1.0f - sig));
    }
#endif
  });
}

void to_bf16_array(uint16_t* out, const float* x, long n) {
  const int nt = threads_for(static_cast<double>(n), kStreamGrain * 4);
  parallel_for((n + 15) / 16, nt, [&](long v0, long v1) {
    const long i0 = v0 * 16, i1 = v1 * 16 < n ? v1 * 16 : n;
    const uint32_t* u = reinterpret_cast<const uint32_t*>(x);
    long i = i0;
#if LA_AVX512
    for (; i + 16 <= i1; i += 16)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm512_cvtepi32_epi16(_mm512_srli_epi32(bf16_round_bits(_mm512_loadu_ps(x + i)), 16)));
#endif
    for (; i < i1; i++) out[i] = static_cast<uint16_t>(bf16_round_bits(u[i]) >> 16);
  });
}

void from_bf16_array(float* out, const uint16_t* x, long n) {
  const int nt = threads_for(static_cast<double>(n), kStreamGrain * 4);
  parallel_for((n + 15) / 16, nt, [&](long v0, long v1) {
    const long i0 = v0 * 16, i1 = v1 * 16 < n ? v1 * 16 : n;
    bf16_to_f32(out + i0, x + i0, i1 - i0);
  });
}

void add(float* x, const float* y, long n) {
  const int nt = threads_for(static_cast<double>(n), kStreamGrain * 4);
  parallel_for((n + 15) / 16, nt, [&](long v0, long v1) {
    long i0 = v0 * 16, i1 = v1 * 16 < n ? v1 * 16 : n;
#pragma omp simd
    for (long i = i0; i < i1; i++) x[i] += y[i];
  });
}

// out (n, dim) = rows ids[i] of table (vocab, dim); ids are validated by the caller.
void embed(float* out, const Mat& table, const int32_t* ids, long n) {
  const long dim = table.cols;
  for (long i = 0; i < n; i++) {
    const long id = ids[i];
    if (table.bf16) bf16_to_f32(out + i * dim, static_cast<const uint16_t*>(table.data) + id * dim, dim);
    else std::memcpy(out + i * dim, static_cast<const float*>(table.data) + id * dim, dim * sizeof(float));
  }
}

// Softmax cross-entropy over rows of logits (rows, V). dlogits may alias logits.
double cross_entropy(float* logits, const int32_t* targets, long rows, long V, float* dlogits, float scale) {
  std::vector<double> loss(rows > 0 ? rows : 1, 0.0);
  const int nt = threads_for(static_cast<double>(rows) * V * 4, kStreamGrain);
  parallel_for(rows, nt, [&](long r0, long r1) {
    for (long r = r0; r < r1; r++) {
      const float* l = logits + r * V;
      const int32_t tgt = targets[r];
      if (tgt < 0) {
        if (dlogits) std::memset(dlogits + r * V, 0, V * sizeof(float));
        continue;
      }
      const float mx = vmax(l, static_cast<int>(V));
      double sum = 0;
#if LA_AVX512
      {
        __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
        const __m512 mv = _mm512_set1_ps(mx);
        long i = 0;
        for (; i < V; i += 16) {
          __mmask16 m = tail_mask(static_cast<int>(V - i > 16 ? 16 : V - i));
          __m512 e = _mm512_maskz_mov_ps(m, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, l + i), mv)));
          s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
          s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
        }
        sum = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
      }
#else
      for (long i = 0; i < V; i++) sum += std::exp(static_cast<double>(l[i]) - mx);
#endif
      const double lse = mx + std::log(sum);
      loss[r] = lse - l[tgt];
      if (dlogits) {
        float* d = dlogits + r * V;
        const float lsef = static_cast<float>(lse);
#if LA_AVX512
        const __m512 lv = _mm512_set1_ps(lsef), sv = _mm512_set1_ps(scale);
        for (long i = 0; i < V; i += 16) {
          __mmask16 m = tail_mask(static_cast<int>(V - i > 16 ? 16 : V - i));
          _mm512_mask_storeu_ps(d + i, m, _mm512_mul_ps(exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, l + i), lv)), sv));
        }
#else
        for (long i = 0; i < V; i++) d[i] = std::exp(l[i] - lsef) * scale;
#endif
        d[tgt] -= scale;
      }
    }
  });
  double total = 0;
  for (long r = 0; r < rows; r++) total += loss[r];
  return total;
}

void adamw(float* p, const float* g, float* m, float* v, long n, const AdamwStep& o) {
  const double lr = o.lr, b1 = o.beta1, b2 = o.beta2, eps = o.eps, wd = o.weightDecay, step = o.step;
  const float bc1 = static_cast<float>(1.0 - std::pow(b1, step));
  const float bc2 = static_cast<float>(1.0 - std::pow(b2, step));
  const float fb1 = static_cast<float>(b1), fb2 = static_cast<float>(b2);
  const float ob1 = static_cast<float>(1.0 - b1), ob2 = static_cast<float>(1.0 - b2);
  const float flr = static_cast<float>(lr), feps = static_cast<float>(eps), fwd = static_cast<float>(wd);
  const float inv1 = 1.0f / bc1, inv2 = 1.0f / bc2;
  const int nt = threads_for(static_cast<double>(n) * 4, kStreamGrain);
  parallel_for((n + 15) / 16, nt, [&](long v0, long v1) {
    long i0 = v0 * 16, i1 = v1 * 16 < n ? v1 * 16 : n;
#pragma omp simd
    for (long i = i0; i < i1; i++) {
      const float gi = g[i];
      const float mi = fb1 * m[i] + ob1 * gi;
      const float vi = fb2 * v[i] + ob2 * gi * gi;
      m[i] = mi;
      v[i] = vi;
      const float upd = (mi * inv1) / (std::sqrt(vi * inv2) + feps);
      p[i] -= flr * (upd + fwd * p[i]);
    }
  });
}

}  // namespace la
