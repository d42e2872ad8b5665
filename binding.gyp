# node-gyp build of the native backend (native/*.cc -> build/Release/llama_adapter_native.node).
# Built on the machine it runs on, hence -march=native; AMX code uses target attributes and
# runtime checks, so nothing here assumes a particular x86-64 generation. Links Debian's
# OpenBLAS (libopenblas-dev); see scripts/build-native.mjs for the install-time wrapper.
{
  "targets": [
    {
      "target_name": "llama_adapter_native",
      "sources": [
        "native/addon.cc",
        "native/pool.cc",
        "native/linear.cc",
        "native/amx.cc",
        "native/rows.cc",
        "native/attention.cc"
      ],
      "cflags": ["-O3", "-march=native", "-falign-functions=64", "-falign-loops=32", "-fopenmp-simd", "-pthread", "-Wno-maybe-uninitialized"],
      "ldflags": ["-pthread"],
      "libraries": ["-lopenblas"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
