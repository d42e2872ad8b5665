// What this CPU can run and what the kernels use: the Highway SIMD target the per-target kernels
// dispatch to (best by default, or LLAMA_ADAPTER_SIMD=avx512|avx2|sse4|scalar|neon), and the bf16
// GEMM engines (AMX tiles, AVX512_BF16), which are separate from Highway's targets and used only
// while an AVX-512 target is in force. The addon is built for the architecture's baseline (no
// -march=native), so one build runs on every CPU of its architecture.

#include "common.h"

#include <cstdlib>
#include <cstring>
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

#include "hwy/targets.h"

namespace la {

Features g_features;

namespace {

struct TargetName {
  int64_t bit;
  const char* name;  // our name (LLAMA_ADAPTER_SIMD, info().simd)
};

// Every target this build may contain, best first.
constexpr TargetName kTargets[] = {
#if HWY_ARCH_X86
    {HWY_AVX3_DL, "avx512-dl"}, {HWY_AVX3, "avx512"}, {HWY_AVX2, "avx2"}, {HWY_SSE4, "sse4"}, {HWY_SSSE3, "ssse3"},
#elif HWY_ARCH_ARM
    {HWY_SVE2_128, "sve2-128"}, {HWY_SVE_256, "sve-256"}, {HWY_SVE2, "sve2"}, {HWY_SVE, "sve"}, {HWY_NEON, "neon"},
#endif
    {HWY_EMU128, "emu128"}, {HWY_SCALAR, "scalar"},
};

/** Targets compiled into the kernels (HWY_TARGETS, the same in every file) that the CPU runs, unmocked. */
int64_t runnable() {
  hwy::SetSupportedTargetsForTest(0);
  return hwy::SupportedTargets() & (HWY_TARGETS | HWY_STATIC_TARGET);
}

int64_t g_runnable = 0;
int64_t g_forced = 0;  // 0 = best
bool g_cpuAmx = false;
bool g_cpuBf16 = false;
bool g_wantBf16 = false;
#if HWY_ARCH_ARM
bool g_cpuDotprod = false;  // ARMv8.2 dotprod
#else
bool g_cpuVnni = false;  // AVX512_VNNI
#endif
bool g_wantInt8Dot = true;

bool env_on(const char* name) {
  const char* v = std::getenv(name);
  return v && *v && *v != '0';
}

/** Features that depend on the target in force. */
void update_engines() {
  const bool avx512 = simd_avx512_in_force();
  g_features.amx = g_cpuAmx && avx512;
  g_features.cpuAvx512bf16 = g_cpuBf16 && avx512;
  g_features.avx512bf16 = g_wantBf16 && g_features.cpuAvx512bf16;
#if HWY_ARCH_ARM
  const int64_t t = g_forced ? g_forced : (g_runnable & -g_runnable);
  g_features.cpuInt8Dot = g_cpuDotprod && t == HWY_NEON;
#else
  g_features.cpuInt8Dot = g_cpuVnni && avx512;
#endif
  g_features.int8Dot = g_wantInt8Dot && g_features.cpuInt8Dot;
}

}  // namespace

const char* simd_target() {
  const int64_t t = g_forced ? g_forced : (g_runnable & -g_runnable);  // lowest bit = best
  for (const TargetName& n : kTargets)
    if (n.bit == t) return n.name;
  return "unknown";
}

int simd_targets(const char** names, int max) {
  int k = 0;
  for (const TargetName& n : kTargets)
    if ((g_runnable & n.bit) && k < max) names[k++] = n.name;
  return k;
}

bool simd_force(const char* name) {
  int64_t bit = 0;
  if (name && *name && std::strcmp(name, "best") != 0) {
    for (const TargetName& n : kTargets)
      if (std::strcmp(n.name, name) == 0 && (g_runnable & n.bit)) bit = n.bit;
    if (!bit) return false;
  }
  // Highway picks the best supported target: mock "supported" as the runnable ones no better than `bit`.
  hwy::SetSupportedTargetsForTest(bit ? (g_runnable & ~(bit - 1)) : 0);
  g_forced = bit;
  update_engines();
  return true;
}

bool simd_avx512_in_force() {
#if HWY_ARCH_X86
  const int64_t t = g_forced ? g_forced : (g_runnable & -g_runnable);
  return t == HWY_AVX3 || t == HWY_AVX3_DL;
#else
  return false;
#endif
}

void detect_features() {
  g_runnable = runnable();
#if HWY_ARCH_X86 && defined(__GNUC__) && (__GNUC__ >= 11)
  g_cpuBf16 = __builtin_cpu_supports("avx512bf16");
  g_cpuAmx = !env_on("LLAMA_ADAPTER_NO_AMX") && amx_init();
  // The AVX512_BF16 GEMM engine is on where AMX is not (Zen 4: about twice the fp32 GEMM rate;
  // bench/README.md) and off where it is (slower than the tiles); LLAMA_ADAPTER_AVX512BF16=0/1
  // overrides.
  const char* dp = std::getenv("LLAMA_ADAPTER_AVX512BF16");
  g_wantBf16 = dp && *dp ? env_on("LLAMA_ADAPTER_AVX512BF16") : !g_cpuAmx;
  g_cpuVnni = __builtin_cpu_supports("avx512vnni");
#endif
#if defined(__aarch64__) && defined(__linux__)
  g_cpuDotprod = (getauxval(AT_HWCAP) & (1ul << 20)) != 0;  // HWCAP_ASIMDDP
#endif
  const char* id = std::getenv("LLAMA_ADAPTER_INT8DOT");
  g_wantInt8Dot = !(id && *id) || env_on("LLAMA_ADAPTER_INT8DOT");
  g_features.batchInvariant = env_on("LLAMA_ADAPTER_BATCH_INVARIANT");
  const char* want = std::getenv("LLAMA_ADAPTER_SIMD");
  if (!(want && *want && simd_force(want))) simd_force("");
}

}  // namespace la
