# node-gyp build of the native backend (native/*.cc -> build/Release/llama_adapter_native.node).
# Built for the architecture's baseline (no -march=native), so the addon runs on any CPU of its
# architecture: the SIMD kernels are compiled once per Google Highway target (SSE4, AVX2, AVX-512
# on x86-64; NEON on ARM64) and dispatched at run time (native/cpu.cc); the AMX / AVX512_BF16
# GEMM engines use target attributes and run only where the CPU has them. SVE targets are left
# out: the register-blocked kernels keep vectors in arrays, which SVE's sizeless types forbid.
# Links Debian's OpenBLAS (libopenblas-dev) and Highway (libhwy-dev); see scripts/build-native.mjs.
{
  "targets": [
    {
      "target_name": "llama_adapter_native",
      "sources": [
        "native/addon.cc",
        "native/cpu.cc",
        "native/pool.cc",
        "native/linear.cc",
        "native/amx.cc",
        "native/rows.cc",
        "native/attention.cc",
        "native/quant.cc",
        "native/encoder.cc",
        "native/block.cc"
      ],
      "include_dirs": ["native"],
      "cflags": ["-O3", "-falign-functions=64", "-falign-loops=32", "-pthread", "-Wno-maybe-uninitialized"],
      "cflags_cc": ["-std=c++17"],
      "ldflags": ["-pthread"],
      "libraries": ["-lopenblas", "-lhwy"],
      "defines": ["NAPI_VERSION=8", "HWY_DISABLED_TARGETS=(HWY_SSSE3|HWY_SVE|HWY_SVE2|HWY_SVE_256|HWY_SVE2_128)"]
    }
  ]
}
