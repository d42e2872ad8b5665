#!/usr/bin/env bash
# Builds and runs the native kernel test runner (native/test/kernels_test.cc: every kernel against
# a scalar reference, once per SIMD target the CPU runs) without Node.
#   scripts/kernels-test.sh           host build (x86-64 baseline + dispatch), run here, and on x86-64
#                                     also under qemu-x86_64 as a CPU without AVX (Westmere: SSE4.2)
#                                     and one without AVX-512 (Haswell: AVX2), so an instruction newer
#                                     than the target in use would crash it (needs qemu-user-static)
#   scripts/kernels-test.sh --arm64   cross-compiled with Debian's g++-aarch64-linux-gnu (kernels and
#                                     the N-API addon), the runner run under qemu-aarch64-static;
#                                     installs the cross toolchain, qemu and the arm64 libraries
#                                     (OpenBLAS, Highway) with apt-get when missing (needs root).
# qemu says nothing about speed: nothing is timed there.
set -euo pipefail
cd "$(dirname "$0")/.."

srcs=(native/cpu.cc native/pool.cc native/linear.cc native/amx.cc native/rows.cc native/attention.cc native/quant.cc native/encoder.cc native/block.cc)
defs=(-DHWY_DISABLED_TARGETS='(HWY_SSSE3|HWY_SVE|HWY_SVE2|HWY_SVE_256|HWY_SVE2_128)')
flags=(-O3 -std=c++17 -pthread -Inative)
out=build/kernels-test
mkdir -p "$out"

if [[ "${1:-}" == "--arm64" ]]; then
  need=(g++-aarch64-linux-gnu qemu-user-static libhwy-dev:arm64 libopenblas-dev:arm64)
  missing=()
  for p in "${need[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if ((${#missing[@]})); then
    echo "kernels-test: installing ${missing[*]}" >&2
    dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null
  fi
  cxx=aarch64-linux-gnu-g++
  libdir=/usr/lib/aarch64-linux-gnu
  # The addon itself: N-API symbols resolve in node at load time, so it links without node.
  node_inc="$(dirname "$(dirname "$(command -v node)")")/include/node"
  $cxx "${flags[@]}" "${defs[@]}" -fPIC -shared -DNAPI_VERSION=8 -I"$node_inc" native/addon.cc "${srcs[@]}" \
    -L"$libdir" -lopenblas -lhwy -o "$out/llama_adapter_native-arm64.node"
  file "$out/llama_adapter_native-arm64.node" 2>/dev/null | sed 's/^/kernels-test: /' || true
  # The runner's scalar references are built without auto-vectorization: Debian's aarch64 g++ 12
  # stops with an internal compiler error (vect_transform_reduction) in check_rows otherwise.
  $cxx "${flags[@]}" "${defs[@]}" -fno-tree-vectorize -c native/test/kernels_test.cc -o "$out/kernels_test-arm64.o"
  $cxx "${flags[@]}" "${defs[@]}" "$out/kernels_test-arm64.o" "${srcs[@]}" -L"$libdir" -lopenblas -lhwy -o "$out/kernels_test-arm64"
  # One thread: spinning pool workers and clock reads are very slow under emulation (the x86 run
  # covers the threaded paths); OpenBLAS's own threads off, as in the addon.
  OPENBLAS_NUM_THREADS=1 qemu-aarch64-static -L /usr/aarch64-linux-gnu "$out/kernels_test-arm64" 1
else
  g++ "${flags[@]}" "${defs[@]}" native/test/kernels_test.cc "${srcs[@]}" -lopenblas -lhwy -o "$out/kernels_test"
  OPENBLAS_NUM_THREADS=1 "$out/kernels_test" 2
  if [[ "$(uname -m)" == x86_64 ]]; then
    if ! command -v qemu-x86_64-static >/dev/null && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
      echo "kernels-test: installing qemu-user-static" >&2
      apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 qemu-user-static >/dev/null
    fi
    for cpu in Westmere Haswell-v4; do
      echo "kernels-test: as a $cpu CPU (qemu-x86_64)"
      OPENBLAS_NUM_THREADS=1 qemu-x86_64-static -cpu "$cpu" "$out/kernels_test" 1 2> >(grep -v "TCG doesn't support" >&2)
    done
    # The addon itself, through Node, on a CPU without AVX: the TypeScript conformance suite in
    # one process (node --test would start its files natively, outside qemu).
    if [[ -f dist/test/backend-conformance.test.js && -f build/Release/llama_adapter_native.node ]]; then
      echo "kernels-test: the Node conformance suite as a Westmere CPU (qemu-x86_64)"
      qemu-x86_64-static -cpu Westmere "$(command -v node)" dist/test/backend-conformance.test.js 2> >(grep -v "TCG doesn't support" >&2) |
        grep -E '^# (tests|pass|fail)|^not ok|^ok'  # pipefail: a failing suite fails the script
    fi
  fi
fi
