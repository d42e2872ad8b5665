// Micro-benchmark of the quantized-weight kernels (native/quant.cc), linked directly (no Node):
// timings of matmul (decode and prefill shapes) and matmulBack per ggml type (and f32 / bf16
// weights for comparison), SIMD target and thread count. Not a test. Build and run: scripts/quant-bench.sh [options] (see there).
//
// Timing: one thread is timed with CLOCK_THREAD_CPUTIME_ID (the CPU time of the calling thread,
// so time stolen by other processes on a shared machine does not count); more threads with the
// wall clock. Variants named on the command line run interleaved (A B A B ...), so a change in
// the machine's load hits all of them alike; each prints its median and best.

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "../common.h"

namespace {

double now(bool thread) {
  timespec t;
  clock_gettime(thread ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

struct Type {
  const char* name;
  int id, block, bytes, dOff;  // dOff: byte offset of the f16 scale d in a block
};
// f32, bf16, f16 (id 0, -1, -2): the float weights' kernels, for comparison
const Type kTypes[] = {{"f32", 0, 1, 4, -1}, {"bf16", -1, 1, 2, -1}, {"f16", -2, 1, 2, -1}, {"q8_0", 8, 32, 34, 0},   {"q4_0", 2, 32, 18, 0},   {"q4_1", 3, 32, 20, 0}, {"q5_0", 6, 32, 22, 0},
                       {"q4_k", 12, 256, 144, 0}, {"q5_k", 13, 256, 176, 0}, {"q6_k", 14, 256, 210, 208}};

const Type* find_type(const std::string& s) {
  for (const Type& t : kTypes)
    if (s == t.name) return &t;
  return nullptr;
}

/** Random blocks with sane f16 scales (speed does not depend on the values). */
std::vector<uint8_t> random_blocks(const Type& t, long rows, long cols, std::mt19937& rng) {
  const long nb = rows * cols / t.block;
  std::vector<uint8_t> w(nb * t.bytes);
  for (auto& b : w) b = static_cast<uint8_t>(rng());
  if (t.id <= 0) {  // f32 / bf16: N(0, 1) values; f16: random halves of magnitude 2^-5 .. 2^3
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (long i = 0; i < rows * cols; i++) {
      const float v = nd(rng);
      if (t.id == 0) std::memcpy(w.data() + 4 * i, &v, 4);
      else if (t.id == -2) {
        const uint16_t h = static_cast<uint16_t>((rng() & 0x83ff) | ((10 + rng() % 8) << 10));
        std::memcpy(w.data() + 2 * i, &h, 2);
      } else {
        uint32_t u;
        std::memcpy(&u, &v, 4);
        const uint16_t h = static_cast<uint16_t>(la::bf16_round_bits(u) >> 16);
        std::memcpy(w.data() + 2 * i, &h, 2);
      }
    }
    return w;
  }
  for (long b = 0; b < nb; b++) {
    uint8_t* p = w.data() + b * t.bytes + t.dOff;
    p[0] = 0x00, p[1] = 0x20;  // d = 2^-7
    if (t.id == 3 || t.id == 12 || t.id == 13) p[2] = 0x00, p[3] = 0x20;  // m / dmin
  }
  return w;
}

struct Variant {
  std::string simd;  // SIMD target
  std::string feature;  // "" or "noint8dot"
};

void usage() {
  std::fprintf(stderr,
               "usage: quant_bench [--types q8_0,q4_k,...] [--shapes MxNxK,...] [--threads N] [--variants avx512,avx2,...]\n"
               "                   [--back] [--min-s S]\n"
               "  variants: SIMD targets (avx512, avx2, sse4, ...), optionally with :noint8dot (no AVX512_VNNI / dotprod)\n");
}

std::vector<std::string> split(const std::string& s, char c) {
  std::vector<std::string> out;
  size_t a = 0;
  while (a <= s.size()) {
    size_t b = s.find(c, a);
    if (b == std::string::npos) b = s.size();
    if (b > a) out.push_back(s.substr(a, b - a));
    a = b + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> types = {"q8_0", "q4_k"};  // also f32, bf16, f16
  std::vector<std::string> shapes = {"1x2048x2048", "1x5632x2048", "1x2048x5632", "256x2048x2048"};
  std::vector<std::string> variants = {"best"};
  int threads = 1;
  bool back = false;
  double minS = 1.0;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        usage();
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--types") types = split(next(), ',');
    else if (a == "--shapes") shapes = split(next(), ',');
    else if (a == "--threads") threads = std::atoi(next().c_str());
    else if (a == "--variants") variants = split(next(), ',');
    else if (a == "--back") back = true;
    else if (a == "--min-s") minS = std::atof(next().c_str());
    else {
      usage();
      return 2;
    }
  }
  la::detect_features();
  openblas_set_num_threads(1);
  la::pool_set_threads(threads);
  const bool threadClock = threads == 1;
  std::mt19937 rng(7);
  std::printf("threads %d, timing %s\n", threads, threadClock ? "thread CPU time" : "wall clock");
  for (const std::string& tn : types) {
    const Type* t = find_type(tn);
    if (!t) {
      std::fprintf(stderr, "unknown type %s\n", tn.c_str());
      return 2;
    }
    for (const std::string& sh : shapes) {
      long M, N, K;
      if (std::sscanf(sh.c_str(), "%ldx%ldx%ld", &M, &N, &K) != 3 || K % t->block) {
        std::fprintf(stderr, "bad shape %s for %s\n", sh.c_str(), tn.c_str());
        return 2;
      }
      std::vector<uint8_t> w = random_blocks(*t, N, K, rng);
      std::normal_distribution<float> nd(0.0f, 1.0f);
      std::vector<float> x(M * (back ? N : K)), out(M * (back ? K : N));
      for (auto& v : x) v = nd(rng);
      la::Mat m{w.data(), t->id == -1, N, K};
      m.qtype = t->id > 0 ? t->id : 0;
      m.f16 = t->id == -2;
      std::vector<std::vector<double>> times(variants.size());
      auto run = [&]() {
        la::NoDenormals nd0;
        if (back) la::matmul_back(out.data(), x.data(), m, M, false);
        else la::matmul(out.data(), x.data(), m, M, false);
      };
      auto setVariant = [&](const std::string& v) {
        const std::vector<std::string> parts = split(v, ':');
        if (!la::simd_force(parts.empty() || parts[0] == "best" ? "" : parts[0].c_str())) {
          std::fprintf(stderr, "SIMD target %s not runnable\n", v.c_str());
          std::exit(2);
        }
        la::g_features.int8Dot = la::g_features.cpuInt8Dot && !(parts.size() > 1 && parts[1] == "noint8dot");
      };
      for (const std::string& v : variants) {  // warm-up
        setVariant(v);
        run();
      }
      const double t0 = now(false);
      long reps = 0;
      while (reps < 3 || (now(false) - t0 < minS * variants.size() && reps < 2000)) {
        for (size_t vi = 0; vi < variants.size(); vi++) {
          setVariant(variants[vi]);
          const double a = now(threadClock);
          run();
          times[vi].push_back(now(threadClock) - a);
        }
        reps++;
      }
      const double flops = 2.0 * M * N * K, wbytes = static_cast<double>(w.size());
      for (size_t vi = 0; vi < variants.size(); vi++) {
        std::vector<double>& ts = times[vi];
        std::sort(ts.begin(), ts.end());
        const double med = ts[ts.size() / 2], best = ts[0];
        std::printf("%-5s %s %-14s %-14s median %9.1f us (%6.1f GFLOP/s, %5.1f GB/s of weights)  best %9.1f us  (%zu reps)\n", tn.c_str(),
                    back ? "back" : "fwd ", sh.c_str(), variants[vi].c_str(), med * 1e6, flops / med * 1e-9, wbytes / med * 1e-9, best * 1e6,
                    ts.size());
      }
    }
  }
  return 0;
}
