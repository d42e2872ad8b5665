#!/usr/bin/env bash
# Builds and runs the quantized-kernel micro-benchmark (native/test/quant_bench.cc, linked with the
# kernel sources as scripts/kernels-test.sh does; not a test). Arguments go to the benchmark:
#   scripts/quant-bench.sh --types q8_0,q4_k --shapes 1x2048x2048,256x2048x2048 --threads 1 --variants avx512,avx512:noint8dot,avx2
# One thread is timed in thread CPU time (robust to other load on a shared machine), more threads
# by the wall clock; the variants (SIMD targets, :noint8dot = without AVX512_VNNI / dotprod) run
# interleaved.
set -euo pipefail
cd "$(dirname "$0")/.."
srcs=(native/cpu.cc native/pool.cc native/linear.cc native/amx.cc native/rows.cc native/attention.cc native/quant.cc)
out=build/kernels-test
mkdir -p "$out"
g++ -O3 -std=c++17 -pthread -Inative -DHWY_DISABLED_TARGETS='(HWY_SSSE3|HWY_SVE|HWY_SVE2|HWY_SVE_256|HWY_SVE2_128)' \
  native/test/quant_bench.cc "${srcs[@]}" -lopenblas -lhwy -o "$out/quant_bench"
OPENBLAS_NUM_THREADS=1 "$out/quant_bench" "$@"
