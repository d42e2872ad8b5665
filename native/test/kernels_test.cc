// The native kernels against plain scalar references, once per SIMD target this CPU (or qemu)
// runs, without Node: the check that runs on ARM64 (cross-compiled, under qemu-aarch64) where the
// TypeScript conformance suite cannot. Every kernel of common.h, f32 and bf16 weights, decode and
// prefill shapes, ragged lengths (tails of every target's vectors), accumulate on and off; the
// matmul of a few rows is also checked to give the same bits whatever the batch around a row.
// Exit status 0 when everything matches. Build and run: scripts/kernels-test.sh [--arm64].

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <random>
#include <string>
#include <vector>

#include "../common.h"

// The references need no vectorizing, and Debian's aarch64 cross g++ 12.2 crashes vectorizing a
// reduction in check_rows (internal compiler error in vect_transform_reduction).
#pragma GCC optimize("no-tree-vectorize")

using Vec = std::vector<float>;

namespace {

std::mt19937 g_rng(12345);
int g_failures = 0;
int g_checks = 0;
std::string g_target;

Vec randn(size_t n, float scale = 1.0f) {
  std::normal_distribution<float> nd(0.0f, scale);
  Vec v(n);
  for (auto& x : v) x = nd(g_rng);
  return v;
}

uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return static_cast<uint16_t>(la::bf16_round_bits(u) >> 16);
}
float from_bf16(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

/** Normwise closeness: max |a - b| <= rtol * max |b| + atol, NaN exactly where want is NaN. */
void close(const float* got, const float* want, size_t n, double rtol, const std::string& what, double atol = 1e-6) {
  g_checks++;
  double err = 0, mag = 0;
  for (size_t i = 0; i < n; i++) {
    if (std::isnan(want[i]) || std::isnan(got[i])) {
      if (!(std::isnan(want[i]) && std::isnan(got[i]))) {
        std::printf("FAIL [%s] %s: NaN mismatch at %zu (%g vs %g)\n", g_target.c_str(), what.c_str(), i, got[i], want[i]);
        g_failures++;
        return;
      }
      continue;
    }
    err = std::fmax(err, std::fabs(static_cast<double>(got[i]) - want[i]));
    mag = std::fmax(mag, std::fabs(static_cast<double>(want[i])));
  }
  if (!(err <= rtol * mag + atol)) {
    std::printf("FAIL [%s] %s: max error %.3e > %.1e x %.3e\n", g_target.c_str(), what.c_str(), err, rtol, mag);
    g_failures++;
  }
}

void same_bits(const float* a, const float* b, size_t n, const std::string& what) {
  g_checks++;
  if (std::memcmp(a, b, n * sizeof(float)) != 0) {
    std::printf("FAIL [%s] %s: bits differ\n", g_target.c_str(), what.c_str());
    g_failures++;
  }
}

constexpr double kRtol = 1e-5, kRtolBf16 = 2e-5;

// ------------------------------------------------------------------ scalar references

// out (M, N) (+)= x (M, K) · W^T; bf16 weights multiply activations rounded to bf16.
void ref_matmul(float* out, const float* x, const float* w, bool bf16, long M, long N, long K, bool acc) {
  for (long m = 0; m < M; m++)
    for (long n = 0; n < N; n++) {
      double s = 0;
      for (long k = 0; k < K; k++) s += static_cast<double>(bf16 ? from_bf16(to_bf16(x[m * K + k])) : x[m * K + k]) * w[n * K + k];
      out[m * N + n] = static_cast<float>(acc ? out[m * N + n] + s : s);
    }
}
// out (M, K) (+)= dy (M, N) · W.
void ref_matmul_back(float* out, const float* dy, const float* w, bool bf16, long M, long N, long K, bool acc) {
  for (long m = 0; m < M; m++)
    for (long k = 0; k < K; k++) {
      double s = 0;
      for (long n = 0; n < N; n++) s += static_cast<double>(bf16 ? from_bf16(to_bf16(dy[m * N + n])) : dy[m * N + n]) * w[n * K + k];
      out[m * K + k] = static_cast<float>(acc ? out[m * K + k] + s : s);
    }
}

double sigmoid(double a) { return 1.0 / (1.0 + std::exp(-a)); }

// Causal attention with per-row positions: row b's query t at pos[b] + t sees keys 0 .. pos[b] + t.
void ref_attention(float* out, const float* q, const float* kc, const float* vc, const int32_t* pos, const la::AttnShape& s) {
  const long rep = s.H / s.Hkv, qs = s.H * s.hs, ks = s.Hkv * s.hs;
  for (long b = 0; b < s.B; b++)
    for (long t = 0; t < s.T; t++)
      for (long h = 0; h < s.H; h++) {
        const long n = pos[b] + t + 1, kvh = h / rep;
        const float* qv = q + (b * s.T + t) * qs + h * s.hs;
        std::vector<double> sc(n);
        double mx = -INFINITY;
        for (long j = 0; j < n; j++) {
          double d = 0;
          for (long i = 0; i < s.hs; i++) d += static_cast<double>(qv[i]) * kc[(b * s.S + j) * ks + kvh * s.hs + i];
          sc[j] = d / std::sqrt(static_cast<double>(s.hs));
          mx = std::fmax(mx, sc[j]);
        }
        double z = 0;
        for (auto& v : sc) z += (v = std::exp(v - mx));
        for (long i = 0; i < s.hs; i++) {
          double o = 0;
          for (long j = 0; j < n; j++) o += sc[j] / z * vc[(b * s.S + j) * ks + kvh * s.hs + i];
          out[(b * s.T + t) * qs + h * s.hs + i] = static_cast<float>(o);
        }
      }
}

// Probabilities of the prompt branch (B, H, T, K) and out += gate softmax(q pk^T / sqrt(hs)) pv.
void ref_prompt(float* out, float* probs, const float* q, const float* pk, const float* pv, const float* gate, const la::PromptShape& s) {
  const long rep = s.H / s.Hkv, qs = s.H * s.hs, ks = s.Hkv * s.hs;
  for (long b = 0; b < s.B; b++)
    for (long h = 0; h < s.H; h++)
      for (long t = 0; t < s.T; t++) {
        const long kvh = h / rep;
        const float* qv = q + (b * s.T + t) * qs + h * s.hs;
        std::vector<double> sc(s.K);
        double mx = -INFINITY, z = 0;
        for (long j = 0; j < s.K; j++) {
          double d = 0;
          for (long i = 0; i < s.hs; i++) d += static_cast<double>(qv[i]) * pk[j * ks + kvh * s.hs + i];
          mx = std::fmax(mx, sc[j] = d / std::sqrt(static_cast<double>(s.hs)));
        }
        for (auto& v : sc) z += (v = std::exp(v - mx));
        for (long j = 0; j < s.K; j++) probs[((b * s.H + h) * s.T + t) * s.K + j] = static_cast<float>(sc[j] / z);
        for (long i = 0; i < s.hs; i++) {
          double o = 0;
          for (long j = 0; j < s.K; j++) o += sc[j] / z * pv[j * ks + kvh * s.hs + i];
          out[(b * s.T + t) * qs + h * s.hs + i] += static_cast<float>(gate[h] * o);
        }
      }
}

// ------------------------------------------------------------------ checks per kernel

void check_matmul_shapes();

// Every bf16 GEMM engine in force on this target (AMX, AVX512_BF16), then the widening GEMM.
void check_matmul() {
  check_matmul_shapes();
  const la::Features had = la::g_features;
  if (had.amx || had.avx512bf16) {
    la::g_features.amx = la::g_features.avx512bf16 = false;
    check_matmul_shapes();
    la::g_features = had;
  }
}

float half_value(const uint8_t* p);

/** A random IEEE half of magnitude 2^-5 .. 2^3 (bits). */
uint16_t random_half() { return static_cast<uint16_t>((g_rng() & 0x83ff) | ((10 + g_rng() % 8) << 10)); }

// Weights of kind 0 f32, 1 bf16, 2 f16 (IEEE half: exact fp32 products, unrounded activations).
struct KindWeights {
  Vec wf;                       // the values as fp32
  std::vector<uint16_t> h;      // bf16 / f16 bits
  la::Mat mat(int kind, long N, long K) const {
    la::Mat w{kind ? static_cast<const void*>(h.data()) : static_cast<const void*>(wf.data()), kind == 1, N, K};
    w.f16 = kind == 2;
    return w;
  }
};
KindWeights kind_weights(int kind, long N, long K) {
  KindWeights k{randn(N * K, 0.5f), std::vector<uint16_t>(N * K)};
  for (long i = 0; i < N * K; i++) {
    if (kind == 1) k.wf[i] = from_bf16(k.h[i] = to_bf16(k.wf[i]));
    if (kind == 2) k.wf[i] = half_value(reinterpret_cast<const uint8_t*>(&(k.h[i] = random_half())));
  }
  return k;
}
const char* const kKindName[] = {"f32", "bf16", "f16"};

void check_matmul_shapes() {
  const long shapes[][3] = {{1, 37, 70}, {1, 64, 64}, {2, 33, 17}, {3, 100, 96}, {5, 48, 33}, {9, 70, 100}, {16, 130, 257},
                            {20, 30, 1100}, {31, 13, 40}, {40, 50, 48}, {70, 20, 130}, {64, 40, 24}, {1, 300, 520},
                            {1, 1100, 520}};  // the last: over 1 MB of f32 and bf16 weights, so decode streams rows one at a time
  for (int kind : {0, 1, 2})
    for (auto& sh : shapes)
      for (bool acc : {false, true}) {
        const long M = sh[0], N = sh[1], K = sh[2];
        const KindWeights kw = kind_weights(kind, N, K);
        Vec x = randn(M * K), dy = randn(M * N);
        const la::Mat w = kw.mat(kind, N, K);
        const bool bf16 = kind == 1;
        const std::string tag = std::string(kKindName[kind]) + " " + std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K) +
                                (acc ? " acc" : "");
        Vec got = randn(M * N), want = got;
        la::matmul(got.data(), x.data(), w, M, acc);
        ref_matmul(want.data(), x.data(), kw.wf.data(), bf16, M, N, K, acc);
        close(got.data(), want.data(), got.size(), bf16 ? kRtolBf16 : kRtol, "matmul " + tag);
        Vec gotB = randn(M * K), wantB = gotB;
        la::matmul_back(gotB.data(), dy.data(), w, M, acc);
        ref_matmul_back(wantB.data(), dy.data(), kw.wf.data(), bf16, M, N, K, acc);
        close(gotB.data(), wantB.data(), gotB.size(), bf16 ? kRtolBf16 : kRtol, "matmulBack " + tag);
      }
  // A row of a few-row batch (the dot kernel's range) has the same bits alone or in any batch;
  // 1100 x 520 is over 1 MB, where one row alone streams the weights one row at a time.
  // 524 and 1048 end on a ragged step of the second accumulator chain at AVX2 and AVX-512.
  const long invShapes[][2] = {{70, 600}, {1100, 520}, {1100, 524}, {1100, 1048}};
  for (int kind : {0, 1, 2})
    for (const auto& sh : invShapes) {
      const long N = sh[0], K = sh[1], M = 15;
      const KindWeights kw = kind_weights(kind, N, K);
      Vec x = randn(M * K);
      const la::Mat w = kw.mat(kind, N, K);
      Vec all(M * N);
      la::matmul(all.data(), x.data(), w, M, false);
      for (long m : {1L, 2L, 3L, 5L, 8L}) {
        Vec part(m * N);
        la::matmul(part.data(), x.data(), w, m, false);
        same_bits(part.data(), all.data(), m * N, std::string(kKindName[kind]) + " matmul " + std::to_string(N) + "x" + std::to_string(K) + ": " + std::to_string(m) + " rows vs 15");
      }
    }

  // A decode row over weights too large for the cores' L2 (8.6 MB f32, 4.3 MB bf16 / f16): the
  // rows are shared out by work stealing, which must give the bits of the fixed split.
  for (int kind : {0, 1, 2})
    for (long M : {1L, 3L}) {
      const long N = 2100, K = 1030;
      const KindWeights kw = kind_weights(kind, N, K);
      const la::Mat w = kw.mat(kind, N, K);
      Vec x = randn(M * K), stolen(M * N), fixed(M * N), want(M * N);
      const std::string tag = std::string(kKindName[kind]) + " " + std::to_string(M) + "x2100x1030";
      la::matmul(stolen.data(), x.data(), w, M, false);
      ref_matmul(want.data(), x.data(), kw.wf.data(), kind == 1, M, N, K, false);
      close(stolen.data(), want.data(), M * N, kind == 1 ? kRtolBf16 : kRtol, "matmul (stealing) " + tag);
      la::g_features.decodeStealing = false;
      la::matmul(fixed.data(), x.data(), w, M, false);
      la::g_features.decodeStealing = true;
      same_bits(stolen.data(), fixed.data(), M * N, "matmul stealing vs fixed split " + tag);
    }

  // matmul2 / matmul3 (decode rows of two or three weights as one pool job): the bits of one matmul per weight.
  for (int kind : {0, 1, 2})
    for (long M : {1L, 2L, 4L, 9L}) {
      const long K = 130, Ns[] = {128, 1100, 37};
      KindWeights kw[3] = {kind_weights(kind, Ns[0], K), kind_weights(kind, Ns[1], K), kind_weights(kind, Ns[2], K)};
      const la::Mat ws[3] = {kw[0].mat(kind, Ns[0], K), kw[1].mat(kind, Ns[1], K), kw[2].mat(kind, Ns[2], K)};
      Vec x = randn(M * K);
      Vec want[3], got[3];
      for (int i = 0; i < 3; i++) {
        want[i] = Vec(M * Ns[i]);
        got[i] = randn(M * Ns[i]);
        la::matmul(want[i].data(), x.data(), ws[i], M, false);
      }
      la::matmul3(got[0].data(), got[1].data(), got[2].data(), x.data(), ws[0], ws[1], ws[2], M);
      const std::string tag = std::string(kKindName[kind]) + " M=" + std::to_string(M);
      for (int i = 0; i < 3; i++) same_bits(got[i].data(), want[i].data(), M * Ns[i], "matmul3 " + tag + " output " + std::to_string(i));
      Vec a = randn(M * Ns[1]), b = randn(M * Ns[2]);
      la::matmul2(a.data(), b.data(), x.data(), ws[1], ws[2], M);
      same_bits(a.data(), want[1].data(), M * Ns[1], "matmul2 " + tag + " output 0");
      same_bits(b.data(), want[2].data(), M * Ns[2], "matmul2 " + tag + " output 1");
    }
}

// parallel_for_stealing covers [0, count) exactly once for any count, thread count and grain;
// when the first range is slow (items of 20 us), another thread takes part of it.
void check_stealing() {
  for (long count : {1L, 2L, 7L, 64L, 1000L, 100003L})
    for (int nt : {1, 2, 3, 5})
      for (long grain : {0L, 1L, 3L, 64L, 1000000L}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(count));
        for (auto& h : hits) h.store(0);
        la::parallel_for_stealing(count, nt, grain, [&hits](long b, long e) {
          for (long i = b; i < e; i++) hits[static_cast<size_t>(i)].fetch_add(1, std::memory_order_relaxed);
        });
        g_checks++;
        for (long i = 0; i < count; i++)
          if (hits[static_cast<size_t>(i)].load() != 1) {
            std::printf("FAIL [%s] parallel_for_stealing count=%ld threads=%d grain=%ld: item %ld ran %d times\n", g_target.c_str(), count, nt, grain,
                        i, hits[static_cast<size_t>(i)].load());
            g_failures++;
            break;
          }
      }
  if (la::pool_threads() < 2) return;
  // 400 items, the first half 20 us each (8 ms): a second thread must take some of them. Three
  // tries, in case the machine kept the worker off its core for the whole first one.
  g_checks++;
  bool stolen = false;
  for (int attempt = 0; attempt < 3 && !stolen; attempt++) {
    const long count = 400;
    std::vector<std::thread::id> by(static_cast<size_t>(count));
    la::parallel_for_stealing(count, 2, 1, [&by](long b, long e) {
      for (long i = b; i < e; i++) {
        if (i < 200) {
          const auto t0 = std::chrono::steady_clock::now();
          while (std::chrono::steady_clock::now() - t0 < std::chrono::microseconds(20)) {
          }
        }
        by[static_cast<size_t>(i)] = std::this_thread::get_id();
      }
    });
    for (long i = 1; i < 200; i++) stolen = stolen || by[static_cast<size_t>(i)] != by[0];
  }
  if (!stolen) {
    std::printf("FAIL [%s] parallel_for_stealing: no other thread took part of a slow range in three tries\n", g_target.c_str());
    g_failures++;
  }
}

// The first index of the largest of x[0, n): a scan from x[0] with `>` (Backend.argmax's definition).
long ref_argmax(const float* x, long n) {
  long best = 0;
  for (long i = 1; i < n; i++)
    if (x[i] > x[best]) best = i;
  return best;
}

void check_argmax() {
  for (long n : {1L, 3L, 8L, 15L, 16L, 17L, 33L, 100L, 2048L}) {
    Vec x = randn(n);
    std::vector<Vec> rows = {x};
    Vec tie = x, nan = x, nan0 = x, zero(n, -1.0f);
    tie[n / 2] = tie[n - 1] = 9.0f;  // the first of equal maxima
    nan[n - 1] = std::nanf("");        // never wins
    nan0[0] = std::nanf("");           // the scan's start: index 0
    zero[n - 1] = 0.0f;
    if (n > 2) zero[n / 2] = -0.0f;    // -0 before +0: -0 stays
    rows.insert(rows.end(), {tie, nan, nan0, zero});
    for (const Vec& r : rows) {
      g_checks++;
      const long got = la::argmax(r.data(), n), want = ref_argmax(r.data(), n);
      if (got != want) {
        std::printf("FAIL [%s] argmax n=%ld: %ld, want %ld\n", g_target.c_str(), n, got, want);
        g_failures++;
      }
    }
  }
}

void check_rows() {
  check_argmax();
  for (long dim : {1L, 7L, 64L, 100L, 129L}) {
    const long rows = 5;
    Vec x = randn(rows * dim), w = randn(dim), dy = randn(rows * dim);
    Vec got(rows * dim), want(rows * dim), rstd(rows), rw(rows);
    la::rmsnorm(got.data(), x.data(), w.data(), rows, dim, 1e-5f, rstd.data());
    for (long r = 0; r < rows; r++) {
      double ss = 0;
      for (long i = 0; i < dim; i++) ss += static_cast<double>(x[r * dim + i]) * x[r * dim + i];
      const double s = 1.0 / std::sqrt(ss / dim + 1e-5);
      rw[r] = static_cast<float>(s);
      for (long i = 0; i < dim; i++) want[r * dim + i] = static_cast<float>(x[r * dim + i] * s * w[i]);
    }
    close(got.data(), want.data(), got.size(), kRtol, "rmsnorm dim " + std::to_string(dim));
    close(rstd.data(), rw.data(), rows, kRtol, "rmsnorm rstd dim " + std::to_string(dim));
    for (bool acc : {false, true}) {
      Vec gdx = randn(rows * dim), wdx = gdx;
      la::rmsnorm_back(gdx.data(), dy.data(), x.data(), w.data(), rstd.data(), rows, dim, acc);
      for (long r = 0; r < rows; r++) {
        const double s = rstd[r];
        double dot = 0;
        for (long i = 0; i < dim; i++) dot += static_cast<double>(w[i]) * dy[r * dim + i] * x[r * dim + i];
        for (long i = 0; i < dim; i++) {
          const double v = s * w[i] * dy[r * dim + i] - x[r * dim + i] * s * s * s / dim * dot;
          wdx[r * dim + i] = static_cast<float>(acc ? wdx[r * dim + i] + v : v);
        }
      }
      // the two terms cancel to ~1e-3 at dim 1: absolute slack for fp32 against the double reference
      close(gdx.data(), wdx.data(), gdx.size(), kRtol, "rmsnormBack dim " + std::to_string(dim) + (acc ? " acc" : ""), 1e-5);
    }
  }
  // RoPE: interleaved pairs at positions pos[b] + t, forward and inverse.
  for (long hs : {2L, 8L, 16L, 64L, 128L}) {
    const long B = 2, T = 3, H = 3, half = hs / 2, maxPos = 20;
    Vec cos(maxPos * half), sin(maxPos * half);
    for (long p = 0; p < maxPos; p++)
      for (long i = 0; i < half; i++) {
        const double a = p * std::pow(10000.0, -2.0 * i / hs);
        cos[p * half + i] = static_cast<float>(std::cos(a));
        sin[p * half + i] = static_cast<float>(std::sin(a));
      }
    const int32_t pos[2] = {0, 7};
    for (bool inv : {false, true}) {
      Vec x = randn(B * T * H * hs), want = x;
      la::rope(x.data(), B, T, H, hs, pos, cos.data(), sin.data(), inv);
      for (long b = 0; b < B; b++)
        for (long t = 0; t < T; t++)
          for (long h = 0; h < H; h++)
            for (long i = 0; i < half; i++) {
              float* o = want.data() + ((b * T + t) * H + h) * hs + 2 * i;
              const double c = cos[(pos[b] + t) * half + i], sn = (inv ? -1 : 1) * sin[(pos[b] + t) * half + i];
              const double x0 = o[0], x1 = o[1];
              o[0] = static_cast<float>(x0 * c - x1 * sn);
              o[1] = static_cast<float>(x0 * sn + x1 * c);
            }
      close(x.data(), want.data(), x.size(), kRtol, "rope hs " + std::to_string(hs) + (inv ? " inverse" : ""));
    }
  }
  // Elementwise: SiLU gate (+ backward), add, bf16 conversions; a NaN input stays NaN.
  for (long n : {1L, 5L, 16L, 67L, 1000L, 20001L}) {
    Vec a = randn(n, 3.0f), b = randn(n), dy = randn(n);
    if (n > 3) a[2] = NAN;
    Vec got(n), want(n), da(n), db(n), wda(n), wdb(n);
    la::silu_gate(got.data(), a.data(), b.data(), n);
    la::silu_gate_back(da.data(), db.data(), dy.data(), a.data(), b.data(), n);
    for (long i = 0; i < n; i++) {
      const double s = sigmoid(a[i]);
      want[i] = static_cast<float>(a[i] * s * b[i]);
      wdb[i] = static_cast<float>(dy[i] * a[i] * s);
      wda[i] = static_cast<float>(dy[i] * b[i] * s * (1 + a[i] * (1 - s)));
    }
    const std::string tag = " n " + std::to_string(n);
    close(got.data(), want.data(), n, kRtol, "siluGate" + tag);
    close(da.data(), wda.data(), n, kRtol, "siluGateBack da" + tag);
    close(db.data(), wdb.data(), n, kRtol, "siluGateBack db" + tag);
    Vec x = randn(n), y = randn(n), sum(n);
    for (long i = 0; i < n; i++) sum[i] = x[i] + y[i];
    la::add(x.data(), y.data(), n);
    close(x.data(), sum.data(), n, 0.0, "add" + tag, 0.0);
    std::vector<uint16_t> h(n);
    la::to_bf16_array(h.data(), a.data(), n);
    Vec back(n), exact(n);
    la::from_bf16_array(back.data(), h.data(), n);
    for (long i = 0; i < n; i++) exact[i] = from_bf16(to_bf16(a[i]));
    close(back.data(), exact.data(), n, 0.0, "toBf16 / fromBf16" + tag, 0.0);
  }
  // Embedding rows, f32 and bf16 tables.
  {
    const long V = 50, D = 37, n = 6;
    Vec tf = randn(V * D);
    std::vector<uint16_t> tb(V * D);
    for (long i = 0; i < V * D; i++) tb[i] = to_bf16(tf[i]);
    const int32_t ids[n] = {0, 49, 3, 3, 17, 1};
    for (bool bf16 : {false, true}) {
      la::Mat t{bf16 ? static_cast<const void*>(tb.data()) : static_cast<const void*>(tf.data()), bf16, V, D};
      Vec got(n * D), want(n * D);
      la::embed(got.data(), t, ids, n);
      for (long i = 0; i < n; i++)
        for (long d = 0; d < D; d++) want[i * D + d] = bf16 ? from_bf16(tb[ids[i] * D + d]) : tf[ids[i] * D + d];
      close(got.data(), want.data(), got.size(), 0.0, bf16 ? "embed bf16" : "embed f32", 0.0);
    }
    const KindWeights kh = kind_weights(2, V, D);
    Vec got(n * D), want(n * D);
    la::embed(got.data(), kh.mat(2, V, D), ids, n);
    for (long i = 0; i < n; i++)
      for (long d = 0; d < D; d++) want[i * D + d] = kh.wf[ids[i] * D + d];
    close(got.data(), want.data(), got.size(), 0.0, "embed f16", 0.0);
  }
  // Cross-entropy: loss and (softmax - onehot) * scale; ignored rows (target < 0) give zero rows.
  for (long V : {3L, 17L, 512L, 1001L}) {
    const long rows = 4;
    Vec l = randn(rows * V, 4.0f), d(rows * V), wd(rows * V);
    const int32_t tg[rows] = {0, static_cast<int32_t>(V - 1), -100, 1};
    const double loss = la::cross_entropy(l.data(), tg, rows, V, d.data(), 0.25f, nullptr);
    double wloss = 0;
    for (long r = 0; r < rows; r++) {
      if (tg[r] < 0) continue;
      double mx = -INFINITY, z = 0;
      for (long i = 0; i < V; i++) mx = std::fmax(mx, l[r * V + i]);
      for (long i = 0; i < V; i++) z += std::exp(l[r * V + i] - mx);
      wloss += mx + std::log(z) - l[r * V + tg[r]];
      for (long i = 0; i < V; i++) wd[r * V + i] = static_cast<float>(std::exp(l[r * V + i] - mx) / z * 0.25 - (i == tg[r] ? 0.25 : 0));
    }
    const float lg = static_cast<float>(loss), lw = static_cast<float>(wloss);
    close(&lg, &lw, 1, kRtol, "crossEntropy loss V " + std::to_string(V));
    close(d.data(), wd.data(), d.size(), kRtol, "crossEntropy grad V " + std::to_string(V));
  }
  // AdamW step.
  for (long n : {1L, 13L, 300L}) {
    Vec p = randn(n), g = randn(n), m = randn(n, 0.1f), v = randn(n, 0.1f);
    for (auto& x : v) x = std::fabs(x);
    Vec wp = p, wm = m, wv = v;
    const la::AdamwStep o{1e-3, 0.9, 0.95, 1e-8, 0.02, 3};
    la::adamw(p.data(), g.data(), m.data(), v.data(), n, o);
    for (long i = 0; i < n; i++) {
      wm[i] = static_cast<float>(0.9 * wm[i] + 0.1 * g[i]);
      wv[i] = static_cast<float>(0.95 * wv[i] + 0.05 * g[i] * g[i]);
      const double upd = (wm[i] / (1 - std::pow(0.9, 3))) / (std::sqrt(wv[i] / (1 - std::pow(0.95, 3))) + 1e-8);
      wp[i] = static_cast<float>(wp[i] - 1e-3 * (upd + 0.02 * wp[i]));
    }
    close(p.data(), wp.data(), n, kRtol, "adamw p n " + std::to_string(n));
    close(m.data(), wm.data(), n, kRtol, "adamw m n " + std::to_string(n));
    close(v.data(), wv.data(), n, kRtol, "adamw v n " + std::to_string(n));
  }
}

/** The analytic gradient of f with respect to x against central differences (step 1e-2, f in double). */
template <class F>
void fd_check(Vec& x, const Vec& analytic, F&& f, const char* what) {
  Vec num(x.size());
  for (size_t i = 0; i < x.size(); i++) {
    const float x0 = x[i];
    x[i] = x0 + 1e-2f;
    const double fp = f();
    x[i] = x0 - 1e-2f;
    const double fm = f();
    x[i] = x0;
    num[i] = static_cast<float>((fp - fm) / 2e-2);
  }
  close(analytic.data(), num.data(), x.size(), 2e-3, what, 1e-4);
}

// block(): the bits of its kernels called one by one (decode rows in sparse cache slots, and a chunk).
void check_block() {
  for (const long T : {1L, 4L}) {
    const long B = 2, S = 12, H = 4, Hkv = 2, hs = 8, dim = 32, hidden = 48, slots = 4, M = B * T;
    const long qDim = H * hs, kvDim = Hkv * hs, half = hs / 2;
    const la::AttnShape s{B, T, S, H, Hkv, hs};
    const int32_t rows[] = {3, 1}, pos[] = {2, 5};
    Vec cos(S * half), sin(S * half);
    for (long p = 0; p < S; p++)
      for (long i = 0; i < half; i++) {
        cos[p * half + i] = static_cast<float>(std::cos(p * std::pow(10000.0, -2.0 * i / hs)));
        sin[p * half + i] = static_cast<float>(std::sin(p * std::pow(10000.0, -2.0 * i / hs)));
      }
    Vec wq = randn(qDim * dim, 0.3f), wk = randn(kvDim * dim, 0.3f), wv = randn(kvDim * dim, 0.3f), wo = randn(dim * qDim, 0.3f);
    Vec w1 = randn(hidden * dim, 0.3f), w3 = randn(hidden * dim, 0.3f), w2 = randn(dim * hidden, 0.3f), an = randn(dim), fn = randn(dim);
    const la::Mat Q{wq.data(), false, qDim, dim}, K{wk.data(), false, kvDim, dim}, V{wv.data(), false, kvDim, dim}, O{wo.data(), false, dim, qDim};
    const la::Mat W1{w1.data(), false, hidden, dim}, W3{w3.data(), false, hidden, dim}, W2{w2.data(), false, dim, hidden};
    const Vec x0 = randn(M * dim), kc0 = randn(slots * S * kvDim), vc0 = randn(slots * S * kvDim);
    Vec x = x0, kc = kc0, vc = vc0, h(M * dim), q(M * qDim), k(M * kvDim), v(M * kvDim), att(M * qDim), a(M * hidden), b(M * hidden), g(M * hidden);
    la::block(x.data(), an.data(), Q, K, V, O, fn.data(), W1, W3, W2, h.data(), q.data(), k.data(), v.data(), att.data(), a.data(), b.data(),
              g.data(), kc.data(), vc.data(), rows, pos, s, cos.data(), sin.data(), 1e-5);
    Vec x2 = x0, kc2 = kc0, vc2 = vc0;
    la::rmsnorm(h.data(), x2.data(), an.data(), M, dim, 1e-5f, nullptr);
    la::matmul3(q.data(), k.data(), v.data(), h.data(), Q, K, V, M);
    la::rope(q.data(), B, T, H, hs, pos, cos.data(), sin.data(), false);
    la::rope(k.data(), B, T, Hkv, hs, pos, cos.data(), sin.data(), false);
    for (long r = 0; r < B; r++) {
      std::memcpy(kc2.data() + (rows[r] * S + pos[r]) * kvDim, k.data() + r * T * kvDim, sizeof(float) * T * kvDim);
      std::memcpy(vc2.data() + (rows[r] * S + pos[r]) * kvDim, v.data() + r * T * kvDim, sizeof(float) * T * kvDim);
    }
    la::attention(att.data(), q.data(), kc2.data(), vc2.data(), pos, s, rows);
    la::matmul(x2.data(), att.data(), O, M, true);
    la::rmsnorm(h.data(), x2.data(), fn.data(), M, dim, 1e-5f, nullptr);
    la::matmul2(a.data(), b.data(), h.data(), W1, W3, M);
    la::silu_gate(g.data(), a.data(), b.data(), M * hidden);
    la::matmul(x2.data(), g.data(), W2, M, true);
    same_bits(x.data(), x2.data(), x.size(), "block T=" + std::to_string(T) + ": x");
    same_bits(kc.data(), kc2.data(), kc.size(), "block T=" + std::to_string(T) + ": key cache");
    same_bits(vc.data(), vc2.data(), vc.size(), "block T=" + std::to_string(T) + ": value cache");
  }
}

void check_attention() {
  check_block();
  // decode (T = 1, per-row positions, slot cache rows) and prefill/training shapes (GEMM path), GQA;
  // the last two decode shapes' rows have caches over 512 KB: blocks of 32 and 37 positions, merged
  const la::AttnShape shapes[] = {{3, 1, 40, 4, 2, 8},   {2, 1, 70, 8, 8, 16}, {1, 1, 9, 2, 1, 100}, {2, 5, 30, 4, 2, 16},
                                  {2, 20, 40, 4, 4, 8},  {1, 70, 70, 2, 1, 32}, {2, 1, 300, 12, 4, 64}, {1, 1, 400, 6, 6, 36}};
  for (const auto& s : shapes) {
    const long qs = s.H * s.hs, ks = s.Hkv * s.hs;
    Vec q = randn(s.B * s.T * qs), kc = randn(s.B * s.S * ks), vc = randn(s.B * s.S * ks);
    std::vector<int32_t> pos(s.B);
    for (long b = 0; b < s.B; b++) pos[b] = static_cast<int32_t>((s.S - s.T) - b * 3 > 0 ? (s.S - s.T) - b * 3 : 0);
    Vec got(s.B * s.T * qs), want(s.B * s.T * qs);
    la::attention(got.data(), q.data(), kc.data(), vc.data(), pos.data(), s, nullptr);
    ref_attention(want.data(), q.data(), kc.data(), vc.data(), pos.data(), s);
    const std::string tag = "B" + std::to_string(s.B) + " T" + std::to_string(s.T) + " S" + std::to_string(s.S) + " H" + std::to_string(s.H) +
                            "/" + std::to_string(s.Hkv) + " hs" + std::to_string(s.hs);
    close(got.data(), want.data(), got.size(), kRtol, "attention " + tag);
    // cache rows in another order: row b reads slot B - 1 - b
    std::vector<int32_t> rows(s.B);
    Vec kc2(kc.size()), vc2(vc.size());
    for (long b = 0; b < s.B; b++) {
      rows[b] = static_cast<int32_t>(s.B - 1 - b);
      std::memcpy(kc2.data() + rows[b] * s.S * ks, kc.data() + b * s.S * ks, s.S * ks * sizeof(float));
      std::memcpy(vc2.data() + rows[b] * s.S * ks, vc.data() + b * s.S * ks, s.S * ks * sizeof(float));
    }
    Vec got2(got.size());
    la::attention(got2.data(), q.data(), kc2.data(), vc2.data(), pos.data(), s, rows.data());
    close(got2.data(), want.data(), got.size(), kRtol, "attention cacheRows " + tag);
  }
  // Backward of a full causal pass against central differences of sum(out * r) (double-checked).
  {
    const la::AttnShape s{2, 9, 9, 4, 2, 8};
    const long qs = s.H * s.hs, ks = s.Hkv * s.hs, nq = s.B * s.T * qs, nk = s.B * s.T * ks;
    Vec q = randn(nq), k = randn(nk), v = randn(nk), r = randn(nq);
    std::vector<int32_t> pos(s.B, 0);
    Vec dq(nq), dk(nk), dv(nk);
    la::attention_back(dq.data(), dk.data(), dv.data(), r.data(), q.data(), k.data(), v.data(), s);
    auto f = [&]() {
      Vec o(nq);
      ref_attention(o.data(), q.data(), k.data(), v.data(), pos.data(), s);
      double t = 0;
      for (long i = 0; i < nq; i++) t += static_cast<double>(o[i]) * r[i];
      return t;
    };
    fd_check(q, dq, f, "attentionBack dq (finite differences)");
    fd_check(k, dk, f, "attentionBack dk (finite differences)");
    fd_check(v, dv, f, "attentionBack dv (finite differences)");
  }
  // Prompt branch (+ backward against finite differences of sum(out * r)); a zero gate leaves out untouched.
  {
    const la::PromptShape s{2, 3, 5, 4, 2, 12};
    const long qs = s.H * s.hs, ks = s.Hkv * s.hs, nq = s.B * s.T * qs;
    Vec q = randn(nq), pk = randn(s.K * ks), pv = randn(s.K * ks), gate = randn(s.H), r = randn(nq), base = randn(nq);
    gate[1] = 0.0f;
    Vec got = base, want = base, probs(s.B * s.H * s.T * s.K), wprobs(probs.size());
    la::prompt_attention(got.data(), q.data(), pk.data(), pv.data(), gate.data(), s, probs.data());
    ref_prompt(want.data(), wprobs.data(), q.data(), pk.data(), pv.data(), gate.data(), s);
    close(got.data(), want.data(), nq, kRtol, "promptAttention");
    close(probs.data(), wprobs.data(), probs.size(), kRtol, "promptAttention probs");
    for (long b = 0; b < s.B; b++)
      for (long t = 0; t < s.T; t++) same_bits(got.data() + (b * s.T + t) * qs + s.hs, base.data() + (b * s.T + t) * qs + s.hs, s.hs, "zero gate head");
    Vec dq(nq), dpk(s.K * ks), dpv(s.K * ks), dg(s.H);
    la::prompt_attention_back(dq.data(), dpk.data(), dpv.data(), dg.data(), r.data(), q.data(), pk.data(), pv.data(), gate.data(), probs.data(), s);
    auto f = [&]() {
      Vec o(nq, 0.0f), p(probs.size());
      ref_prompt(o.data(), p.data(), q.data(), pk.data(), pv.data(), gate.data(), s);
      double t = 0;
      for (long i = 0; i < nq; i++) t += static_cast<double>(o[i]) * r[i];
      return t;
    };
    fd_check(q, dq, f, "promptAttentionBack dq (finite differences)");
    fd_check(pk, dpk, f, "promptAttentionBack dpk (finite differences)");
    fd_check(pv, dpv, f, "promptAttentionBack dpv (finite differences)");
    fd_check(gate, dg, f, "promptAttentionBack dgate (finite differences)");
  }
}

// Encoder kernels: LayerNorm (+ statistics), the GELU family (std::erf / std::tanh in double), bias
// add, bidirectional attention (each query over all T keys of its row, GQA), the patch layout.
void check_encoder() {
  for (long dim : {1L, 7L, 48L, 130L, 1024L}) {
    const long rows = 9;
    Vec x = randn(rows * dim, 2.0f), w = randn(dim), b = randn(dim);
    x[0] += 50.0f;
    Vec got(rows * dim), want(rows * dim), mean(rows), rstd(rows), wm(rows), wr(rows);
    la::layer_norm(got.data(), x.data(), w.data(), b.data(), rows, dim, 1e-5f, mean.data(), rstd.data());
    for (long r = 0; r < rows; r++) {
      double mu = 0, var = 0;
      for (long i = 0; i < dim; i++) mu += x[r * dim + i];
      mu /= dim;
      for (long i = 0; i < dim; i++) var += (x[r * dim + i] - mu) * (x[r * dim + i] - mu);
      const double rs = 1.0 / std::sqrt(var / dim + 1e-5);
      wm[r] = static_cast<float>(mu);
      wr[r] = static_cast<float>(rs);
      for (long i = 0; i < dim; i++) want[r * dim + i] = static_cast<float>((x[r * dim + i] - mu) * rs * w[i] + b[i]);
    }
    const std::string tag = " dim " + std::to_string(dim);
    close(got.data(), want.data(), got.size(), kRtol, "layerNorm" + tag);
    close(mean.data(), wm.data(), rows, kRtol, "layerNorm mean" + tag);
    close(rstd.data(), wr.data(), rows, kRtol, "layerNorm rstd" + tag);
    Vec xb = x, wb = x;
    la::bias_add(xb.data(), b.data(), rows, dim);
    for (long r = 0; r < rows; r++)
      for (long i = 0; i < dim; i++) wb[r * dim + i] += b[i];
    close(xb.data(), wb.data(), xb.size(), 0.0, "biasAdd" + tag, 0.0);
  }
  for (long n : {1L, 5L, 16L, 67L, 20001L})
    for (long kind : {0L, 1L, 2L}) {
      Vec x = randn(n, 3.0f), got(n), want(n);
      if (n > 3) x[1] = 30.0f, x[2] = -30.0f;
      la::gelu(got.data(), x.data(), n, kind);
      for (long i = 0; i < n; i++) {
        const double v = x[i];
        want[i] = static_cast<float>(kind == 2   ? v / (1 + std::exp(-1.702 * v))
                                     : kind == 1 ? 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)))
                                                 : 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))));
      }
      close(got.data(), want.data(), n, kRtol, "gelu kind " + std::to_string(kind) + " n " + std::to_string(n), 3e-7);
    }
  const la::AttnShape shapes[] = {{1, 1, 1, 1, 1, 4}, {2, 17, 17, 4, 4, 12}, {2, 70, 70, 4, 2, 16}, {1, 130, 130, 2, 2, 64}};
  for (const auto& s : shapes) {
    const long qs = s.H * s.hs, ks = s.Hkv * s.hs;
    Vec q = randn(s.B * s.T * qs), k = randn(s.B * s.T * ks), v = randn(s.B * s.T * ks), got(q.size()), want(q.size());
    la::encoder_attention(got.data(), q.data(), k.data(), v.data(), s);
    // = causal attention's view from the last position, for every query
    std::vector<int32_t> pos(s.B, 0);
    for (long t = 0; t < s.T; t++) {
      Vec q1(s.B * qs), o1(s.B * qs);
      for (long b = 0; b < s.B; b++) std::memcpy(q1.data() + b * qs, q.data() + (b * s.T + t) * qs, qs * sizeof(float));
      for (long b = 0; b < s.B; b++) pos[b] = static_cast<int32_t>(s.T - 1);
      ref_attention(o1.data(), q1.data(), k.data(), v.data(), pos.data(), {s.B, 1, s.T, s.H, s.Hkv, s.hs});
      for (long b = 0; b < s.B; b++) std::memcpy(want.data() + (b * s.T + t) * qs, o1.data() + b * qs, qs * sizeof(float));
    }
    close(got.data(), want.data(), got.size(), kRtol, "encoderAttention T" + std::to_string(s.T) + " H" + std::to_string(s.H) + "/" + std::to_string(s.Hkv));
  }
  {
    const long B = 2, C = 3, size = 12, p = 4, g = size / p;
    Vec px = randn(B * C * size * size), got(px.size()), want(px.size());
    la::patches(got.data(), px.data(), B, C, size, p);
    long o = 0;
    for (long b = 0; b < B; b++)
      for (long gy = 0; gy < g; gy++)
        for (long gx = 0; gx < g; gx++)
          for (long c = 0; c < C; c++)
            for (long dy = 0; dy < p; dy++)
              for (long dx = 0; dx < p; dx++) want[o++] = px[((b * C + c) * size + gy * p + dy) * size + gx * p + dx];
    close(got.data(), want.data(), got.size(), 0.0, "patches", 0.0);
  }
}

// ------------------------------------------------------------------ quantized weights (ggml blocks)

struct QType {
  const char* name;
  int id, block, bytes;
};
const QType kQTypes[] = {{"q8_0", 8, 32, 34}, {"q4_0", 2, 32, 18}, {"q4_1", 3, 32, 20}, {"q5_0", 6, 32, 22},
                         {"q4_k", 12, 256, 144}, {"q5_k", 13, 256, 176}, {"q6_k", 14, 256, 210}};

float half_value(const uint8_t* p) {
  const int h = p[0] | (p[1] << 8), e = (h >> 10) & 31, m = h & 1023;
  const double v = e == 0 ? m * std::ldexp(1.0, -24) : (1 + m / 1024.0) * std::ldexp(1.0, e - 15);
  return static_cast<float>(h & 0x8000 ? -v : v);
}

/** Random blocks (every bit pattern of the values) with sane half scales: d, dmin, m = 2^-7 .. 2^-6. */
std::vector<uint8_t> random_blocks(const QType& t, long rows, long cols) {
  std::vector<uint8_t> w(rows * cols / t.block * t.bytes);
  for (auto& b : w) b = static_cast<uint8_t>(g_rng());
  for (size_t o = 0; o < w.size(); o += t.bytes) {
    uint8_t* d = w.data() + o + (t.id == 14 ? 208 : 0);
    d[0] = static_cast<uint8_t>(g_rng()), d[1] = static_cast<uint8_t>(0x20 | (g_rng() & 0x83));  // +-2^-7 .. 2^-6
    if (t.id == 3 || t.id == 12 || t.id == 13) w[o + 2] = static_cast<uint8_t>(g_rng()), w[o + 3] = static_cast<uint8_t>(0x20 | (g_rng() & 0x83));
  }
  return w;
}

/** Block at p as ggml defines it: value i = scale[i / group] * v[i] + off[i / group]. */
struct RefBlock {
  int v[256];
  double scale[16], off[16];
  int group;
};
void ref_decode(int t, const uint8_t* p, RefBlock* r) {
  for (int g = 0; g < 16; g++) r->off[g] = 0;
  r->group = t == 14 ? 16 : 32;
  const double d = half_value(t == 14 ? p + 208 : p);
  if (t == 8 || t == 2 || t == 3 || t == 6) {
    const uint8_t* qs = p + (t == 8 ? 2 : t == 2 ? 2 : t == 3 ? 4 : 6);
    const uint32_t qh = t == 6 ? (p[2] | (p[3] << 8) | (p[4] << 16) | (static_cast<uint32_t>(p[5]) << 24)) : 0;
    for (int j = 0; j < 16; j++) {
      if (t == 8) {
        r->v[j] = static_cast<int8_t>(qs[j]), r->v[j + 16] = static_cast<int8_t>(qs[j + 16]);
        continue;
      }
      int lo = qs[j] & 15, hi = qs[j] >> 4;
      if (t == 6) lo |= ((qh >> j) & 1) << 4, hi |= ((qh >> (j + 16)) & 1) << 4;
      const int off = t == 2 ? 8 : t == 6 ? 16 : 0;
      r->v[j] = lo - off, r->v[j + 16] = hi - off;
    }
    r->scale[0] = d;
    if (t == 3) r->off[0] = half_value(p + 2);
    return;
  }
  if (t == 12 || t == 13) {
    const double dmin = half_value(p + 2);
    const uint8_t* sc = p + 4;
    const uint8_t* qs = p + (t == 13 ? 48 : 16);
    for (int j = 0; j < 8; j++) {
      const int s = j < 4 ? sc[j] & 63 : (sc[j + 4] & 15) | ((sc[j - 4] >> 6) << 4);
      const int m = j < 4 ? sc[j + 4] & 63 : (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4);
      r->scale[j] = d * s, r->off[j] = -dmin * m;
      for (int l = 0; l < 32; l++) {
        const int q = j % 2 ? qs[32 * (j / 2) + l] >> 4 : qs[32 * (j / 2) + l] & 15;
        r->v[32 * j + l] = q + (t == 13 && (p[16 + l] >> j) & 1 ? 16 : 0);
      }
    }
    return;
  }
  for (int i = 0; i < 256; i++) {  // Q6_K
    const int h = i / 128, l = i % 32, k = (i % 128) / 32;
    const uint8_t ql = p[64 * h + l + (k % 2) * 32], qh = p[128 + 32 * h + l];
    r->v[i] = ((k < 2 ? ql & 15 : ql >> 4) | (((qh >> (2 * k)) & 3) << 4)) - 32;
  }
  for (int g = 0; g < 16; g++) r->scale[g] = d * static_cast<int8_t>(p[192 + g]);
}

float to_half_and_back(float f) {  // round to the nearest half (ties to even), as a float
  if (f == 0 || !std::isfinite(f)) return f;
  int e;
  std::frexp(f, &e);
  const double ulp = std::ldexp(1.0, std::max(e - 11, -24));
  return static_cast<float>(std::nearbyint(f / ulp) * ulp);
}

/** x (K) quantized as llama.cpp's x86 backend does for type t: q, per-block d, and Q8_1's s. */
void ref_quantize_acts(int t, const float* x, long K, std::vector<int>& q, std::vector<double>& d, std::vector<double>& s) {
  const bool k = t == 12 || t == 13 || t == 14;
  const long bl = k ? 256 : 32;
  q.assign(K, 0), d.assign(K / bl, 0), s.assign(K / bl, 0);
  for (long b = 0; b < K / bl; b++) {
    const float* xb = x + b * bl;
    float amax = 0, max = 0;
    for (long j = 0; j < bl; j++)
      if (std::fabs(xb[j]) > amax) amax = std::fabs(xb[j]), max = xb[j];
    if (k) {
      if (amax == 0) continue;
      const float iscale = -127.f / max;
      for (long j = 0; j < bl; j++) q[b * bl + j] = std::min(127, static_cast<int>(std::nearbyint(iscale * xb[j])));
      d[b] = 1 / iscale;
      continue;
    }
    const float id = amax != 0 ? 127.f / amax : 0.f;
    int sum = 0;
    for (long j = 0; j < bl; j++) sum += (q[b * bl + j] = static_cast<int>(std::nearbyint(xb[j] * id)));
    d[b] = to_half_and_back(amax / 127.f);
    s[b] = to_half_and_back((amax / 127.f) * static_cast<float>(sum));
  }
}

// out (M, N) (+)= x (M, K) . W^T with W quantized: x quantized per row, exact integer block sums, double.
void ref_quant_matmul(float* out, const float* x, const uint8_t* w, const QType& t, long M, long N, long K, bool acc) {
  std::vector<int> q;
  std::vector<double> d, s;
  RefBlock r;
  for (long m = 0; m < M; m++) {
    ref_quantize_acts(t.id, x + m * K, K, q, d, s);
    for (long n = 0; n < N; n++) {
      double total = 0;
      for (long b = 0; b < K / t.block; b++) {
        ref_decode(t.id, w + (n * (K / t.block) + b) * t.bytes, &r);
        for (int g = 0; g < t.block / r.group; g++) {
          long dot = 0, xs = 0;
          for (int i = g * r.group; i < (g + 1) * r.group; i++) dot += static_cast<long>(r.v[i]) * q[b * t.block + i], xs += q[b * t.block + i];
          const long xb = (b * t.block + g * r.group) / (t.block == 256 ? 256 : 32);
          total += r.scale[g] * d[xb] * dot + r.off[g] * (t.id == 3 ? s[xb] : d[xb] * xs);
        }
      }
      out[m * N + n] = static_cast<float>(acc ? out[m * N + n] + total : total);
    }
  }
}

// Prefix attention in double: [prompt keys; the row's keys] in one softmax, token key j hidden where
// mask[b*T + j] == 0 or (causal) j > t; a query that sees no key gets zeros.
void ref_prefix(double* out, const float* q, const float* k, const float* v, const float* pk, const float* pv, const la::PromptShape& s,
                const int32_t* mask, bool causal) {
  const long rep = s.H / s.Hkv, qs = s.H * s.hs, ks = s.Hkv * s.hs, n = s.K + s.T;
  std::vector<double> sc(n);
  for (long b = 0; b < s.B; b++)
    for (long t = 0; t < s.T; t++)
      for (long h = 0; h < s.H; h++) {
        const long kvh = h / rep;
        const float* qv = q + (b * s.T + t) * qs + h * s.hs;
        double mx = -INFINITY;
        for (long j = 0; j < n; j++) {
          const long tok = j - s.K;
          if (tok >= 0 && ((mask && !mask[b * s.T + tok]) || (causal && tok > t))) {
            sc[j] = -INFINITY;
            continue;
          }
          const float* kv = tok < 0 ? pk + j * ks + kvh * s.hs : k + (b * s.T + tok) * ks + kvh * s.hs;
          double d = 0;
          for (long i = 0; i < s.hs; i++) d += static_cast<double>(qv[i]) * kv[i];
          sc[j] = d / std::sqrt(static_cast<double>(s.hs));
          mx = std::fmax(mx, sc[j]);
        }
        double* o = out + (b * s.T + t) * qs + h * s.hs;
        for (long i = 0; i < s.hs; i++) o[i] = 0;
        if (mx == -INFINITY) continue;
        double z = 0;
        for (auto& x : sc) z += (x = std::exp(x - mx));
        for (long j = 0; j < n; j++) {
          const long tok = j - s.K;
          const float* vv = tok < 0 ? pv + j * ks + kvh * s.hs : v + (b * s.T + tok) * ks + kvh * s.hs;
          for (long i = 0; i < s.hs; i++) o[i] += sc[j] / z * vv[i];
        }
      }
}

// The encoders' backward kernels and prefix attention: LayerNorm and GELU backward against central
// differences of their scalar forwards; prefix attention (prompts, padding masks, causal order, GQA,
// K = 0) against ref_prefix, its backward against central differences of ref_prefix.
void check_encoder_back() {
  for (long dim : {1L, 7L, 130L}) {
    const long rows = 3;
    Vec x = randn(rows * dim, 2.0f), w = randn(dim), b = randn(dim), r = randn(rows * dim), mean(rows), rstd(rows), tmp(rows * dim), dx(rows * dim);
    la::layer_norm(tmp.data(), x.data(), w.data(), b.data(), rows, dim, 1e-5f, mean.data(), rstd.data());
    la::layer_norm_back(dx.data(), r.data(), x.data(), w.data(), mean.data(), rstd.data(), rows, dim, false);
    auto f = [&]() {
      double t = 0;
      for (long rr = 0; rr < rows; rr++) {
        double mu = 0, var = 0;
        for (long i = 0; i < dim; i++) mu += x[rr * dim + i];
        mu /= dim;
        for (long i = 0; i < dim; i++) var += (x[rr * dim + i] - mu) * (x[rr * dim + i] - mu);
        for (long i = 0; i < dim; i++) t += ((x[rr * dim + i] - mu) / std::sqrt(var / dim + 1e-5) * w[i] + b[i]) * r[rr * dim + i];
      }
      return t;
    };
    if (dim < 100) fd_check(x, dx, f, "layerNormBack (finite differences)");
    Vec acc = dx;
    la::layer_norm_back(acc.data(), r.data(), x.data(), w.data(), mean.data(), rstd.data(), rows, dim, true);
    for (auto& a : dx) a *= 2;
    close(acc.data(), dx.data(), dx.size(), kRtol, "layerNormBack accumulate");
  }
  for (long kind : {0L, 1L, 2L}) {
    const long n = 37;
    Vec x = randn(n, 2.0f), r = randn(n), dx(n);
    la::gelu_back(dx.data(), r.data(), x.data(), n, kind);
    auto f = [&]() {
      double t = 0;
      for (long i = 0; i < n; i++) {
        const double v = x[i];
        t += r[i] * (kind == 2   ? v / (1 + std::exp(-1.702 * v))
                     : kind == 1 ? 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)))
                                 : 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))));
      }
      return t;
    };
    fd_check(x, dx, f, ("geluBack kind " + std::to_string(kind) + " (finite differences)").c_str());
  }
  struct Case {
    la::PromptShape s;
    bool masked, causal;
  };
  const Case cases[] = {{{2, 17, 4, 4, 4, 12}, true, false}, {{2, 70, 0, 4, 2, 16}, true, false}, {{3, 9, 10, 8, 2, 8}, true, true}, {{1, 5, 2, 2, 1, 6}, false, true}};
  for (const auto& c : cases) {
    const auto& s = c.s;
    const long qs = s.H * s.hs, ks = s.Hkv * s.hs, nq = s.B * s.T * qs;
    Vec q = randn(nq), k = randn(s.B * s.T * ks), v = randn(k.size()), pk = randn(s.K * ks), pv = randn(pk.size()), r = randn(nq), got(nq);
    std::vector<int32_t> mask(s.B * s.T, 1);
    for (long b = 1; b < s.B; b++)
      for (long t = s.T - 2 * b > 0 ? s.T - 2 * b : 1; t < s.T; t++) mask[b * s.T + t] = 0;
    const int32_t* m = c.masked ? mask.data() : nullptr;
    la::prefix_attention(got.data(), q.data(), k.data(), v.data(), pk.data(), pv.data(), s, m, c.causal);
    std::vector<double> wd(nq);
    ref_prefix(wd.data(), q.data(), k.data(), v.data(), pk.data(), pv.data(), s, m, c.causal);
    Vec want(wd.begin(), wd.end());
    const std::string tag = " B" + std::to_string(s.B) + " T" + std::to_string(s.T) + " K" + std::to_string(s.K) + (c.masked ? " masked" : "") +
                            (c.causal ? " causal" : "");
    close(got.data(), want.data(), nq, kRtol, "prefixAttention" + tag);
    if (nq > 4000) continue;  // finite differences on the small cases
    Vec dq(nq), dk(k.size()), dv(v.size()), dpk(pk.size(), 0.0f), dpv(pv.size(), 0.0f);
    la::prefix_attention_back(dq.data(), dk.data(), dv.data(), dpk.data(), dpv.data(), r.data(), q.data(), k.data(), v.data(), pk.data(), pv.data(),
                              s, m, c.causal);
    auto f = [&]() {
      ref_prefix(wd.data(), q.data(), k.data(), v.data(), pk.data(), pv.data(), s, m, c.causal);
      double t = 0;
      for (long i = 0; i < nq; i++) t += wd[i] * r[i];
      return t;
    };
    fd_check(q, dq, f, ("prefixAttentionBack dq" + tag).c_str());
    fd_check(k, dk, f, ("prefixAttentionBack dk" + tag).c_str());
    fd_check(v, dv, f, ("prefixAttentionBack dv" + tag).c_str());
    if (s.K > 0) {
      fd_check(pk, dpk, f, ("prefixAttentionBack dpk" + tag).c_str());
      fd_check(pv, dpv, f, ("prefixAttentionBack dpv" + tag).c_str());
    }
  }
}

// Every quantized type: matmul (decode and prefill shapes) against the reference, a row's result
// the same bits alone or in a batch, matmulBack and embed on the dequantized rows.
void check_quant_types();

void check_quant() {
  check_quant_types();
  const la::Features had = la::g_features;
  if (had.int8Dot) {  // and again without AVX512_VNNI / dotprod
    la::g_features.int8Dot = false;
    check_quant_types();
    la::g_features = had;
  }
}

void check_quant_types() {
  for (const QType& t : kQTypes) {
    const long shapes[][3] = {{1, 37, 3}, {1, 8, 1}, {2, 9, 1}, {3, 33, 2}, {5, 17, 4}, {17, 13, 2}, {70, 9, 2}};
    for (auto& sh : shapes)
      for (bool acc : {false, true}) {
        const long M = sh[0], N = sh[1], K = sh[2] * t.block;
        std::vector<uint8_t> wq = random_blocks(t, N, K);
        la::Mat w{wq.data(), false, N, K};
        w.qtype = t.id;
        Vec x = randn(M * K), dy = randn(M * N);
        const std::string tag = std::string(t.name) + " " + std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K) + (acc ? " acc" : "");
        Vec got = randn(M * N), want = got;
        la::matmul(got.data(), x.data(), w, M, acc);
        ref_quant_matmul(want.data(), x.data(), wq.data(), t, M, N, K, acc);
        close(got.data(), want.data(), got.size(), kRtol, "matmul " + tag);
        if (M > 1) {
          Vec one(N);
          la::matmul(one.data(), x.data() + (M - 1) * K, w, 1, false);
          Vec all(M * N);
          la::matmul(all.data(), x.data(), w, M, false);
          same_bits(one.data(), all.data() + (M - 1) * N, N, "matmul " + tag + ": last row alone vs in the batch");
        }
        Vec wf(N * K);
        for (long n = 0; n < N; n++) la::quant_dequant_row(t.id, wq.data() + n * la::quant_row_bytes(t.id, K), wf.data() + n * K, K);
        Vec wref(N * K);
        RefBlock r;
        for (long b = 0; b < N * K / t.block; b++) {
          ref_decode(t.id, wq.data() + b * t.bytes, &r);
          for (int i = 0; i < t.block; i++) wref[b * t.block + i] = static_cast<float>(r.scale[i / r.group] * r.v[i] + r.off[i / r.group]);
        }
        close(wf.data(), wref.data(), wf.size(), 1e-6, "dequantize " + tag);
        Vec gotB = randn(M * K), wantB = gotB;
        la::matmul_back(gotB.data(), dy.data(), w, M, acc);
        ref_matmul_back(wantB.data(), dy.data(), wref.data(), false, M, N, K, acc);
        close(gotB.data(), wantB.data(), gotB.size(), kRtol, "matmulBack " + tag);
        const int32_t ids[3] = {static_cast<int32_t>(N - 1), 0, static_cast<int32_t>(N / 2)};
        Vec emb(3 * K);
        la::embed(emb.data(), w, ids, 3);
        for (int i = 0; i < 3; i++) same_bits(emb.data() + i * K, wf.data() + ids[i] * K, K, "embed " + tag);
      }
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  la::detect_features();
  la::pool_set_threads(argc > 1 ? std::atoi(argv[1]) : 2);
  const char* names[16];
  const int n = la::simd_targets(names, 16);
  for (int i = 0; i < n; i++) {
    if (!la::simd_force(names[i])) {
      std::printf("FAIL: cannot force SIMD target %s\n", names[i]);
      return 1;
    }
    g_target = names[i];
    const int before = g_failures, checks = g_checks;
    la::NoDenormals nd;
    check_matmul();
    check_quant();
    check_rows();
    check_attention();
    check_encoder();
    check_encoder_back();
    std::printf("%s: %d checks, %d failed\n", names[i], g_checks - checks, g_failures - before);
  }
  la::simd_force("");
  g_target = "any";  // the pool's work stealing does not depend on the SIMD target
  const int before = g_failures, checks = g_checks;
  check_stealing();
  std::printf("parallel_for_stealing: %d checks, %d failed\n", g_checks - checks, g_failures - before);
  std::printf("%s\n", g_failures ? "FAILED" : "all kernels match their references on every target");
  return g_failures ? 1 : 0;
}
