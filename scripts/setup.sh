#!/usr/bin/env bash
# Set up a fresh clone: the system packages the native backend links against (Debian's OpenBLAS
# and Google Highway), Debian's PyTorch and PyYAML, which the interop tests run as the independent
# writer and reader of PEFT / official / litgpt files (test/python/interop_fixtures.py), the
# browser the UI tests drive (Debian's chromium, with a font; playwright cannot download one
# here), whose SwiftShader Vulkan driver gives the WebGPU backend (Dawn, the optional npm package
# `webgpu`) a CPU-emulated adapter where there is no GPU, and the Vulkan loader Dawn opens
# (libvulkan1); then the npm packages (npm ci also compiles the TypeScript, bundles the web UI
# and builds the native addon; if the addon cannot be built the TypeScript backend is used).
# `--bench` also installs what the side-by-side benchmarks use.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(libopenblas-dev libhwy-dev python3-torch python3-yaml chromium fonts-dejavu-core libvulkan1)
if [[ "${1:-}" == "--bench" ]]; then pkgs+=(python3-sentencepiece libopenblas0-pthread); fi

missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  if command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
    echo "setup: installing ${missing[*]}" >&2
    apt-get update -qq >/dev/null
    # wait for another apt (up to 10 minutes) rather than fail on its lock
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null
  else
    echo "setup: cannot install ${missing[*]} (needs root and apt-get); the native backend may be unavailable, the UI tests need chromium" >&2
  fi
fi
npm ci --no-audit --no-fund
