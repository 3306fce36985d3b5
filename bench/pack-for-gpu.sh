#!/usr/bin/env bash
# Packs the built core (stripped install prefix) for the GPU machine, which
# has Python, torch, cmake and a compiler but no LLVM: .carry/ travels with
# the device call, and bench/run-on-gpu.sh builds the extension against it.
set -euo pipefail
cd "$(dirname "$0")/.."
ninja -C build fijit fi-opt >/dev/null
rm -rf .carry/fijit-prefix .carry/fijit-prefix.tgz
cmake --install build --prefix .carry/fijit-prefix --strip >/dev/null
tar -C .carry -czf .carry/fijit-prefix.tgz fijit-prefix
rm -rf .carry/fijit-prefix
echo "[fijit] packed $(du -h .carry/fijit-prefix.tgz | cut -f1) into .carry/fijit-prefix.tgz"
