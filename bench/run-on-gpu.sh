#!/usr/bin/env bash
# One call on the GPU machine: unpack the carried core, build the Python
# extension against it, run `pytest -m gpu` and the benchmarks. Results go
# under $OUT (the device tool brings that folder back).
#   bench/run-on-gpu.sh [all|test|bench|latency|prefill|decode]
set -uo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
OUT=${OUT:-/tmp/fijit-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
step() { echo "[fijit] $*"; }

step "unpacking the core"
rm -rf /tmp/fijit-prefix && tar -C /tmp -xzf .carry/fijit-prefix.tgz || exit 1
step "building the Python extension against it"
cmake -S python -B /tmp/fijit-py -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH=/tmp/fijit-prefix >"$OUT/build-py.log" 2>&1 &&
  ninja -C /tmp/fijit-py >>"$OUT/build-py.log" 2>&1 ||
  { tail -30 "$OUT/build-py.log"; exit 1; }
export FIJIT_PYTHONPATH=/tmp/fijit-py PYTHONPATH=/tmp/fijit-py
export FIJIT_CACHE_DIR=/tmp/fijit-cache
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem \
  --format=csv | tee "$OUT/gpu.txt"
rc=0
if [[ $what == all || $what == test ]]; then
  step "pytest -m gpu"
  python3 -m pytest test/python -m gpu -q -p no:cacheprovider 2>&1 |
    tee "$OUT/pytest-gpu.log" | tail -25
  [[ ${PIPESTATUS[0]} == 0 ]] || rc=1
fi
if [[ $what == all || $what == bench || $what == latency ]]; then
  step "fi-opt stage timings on this machine's CPU (head_dim 128, causal)"
  for i in 1 2 3 4 5; do
    /tmp/fijit-prefix/bin/fi-opt --fi-emit=timing \
      --fi-build=head_dim_qk=128,head_dim_vo=128,mask=causal
  done 2>&1 | tee "$OUT/fi-opt-timing.txt"
  step "compile latency by tier"
  python3 bench/latency/latency.py "$OUT/latency.json" 2>&1 |
    tee "$OUT/latency.md" || rc=1
fi
if [[ $what == all || $what == bench || $what == prefill ]]; then
  step "prefill speed vs SDPA and Triton"
  python3 bench/prefill/prefill.py --json "$OUT/prefill.json" 2>&1 |
    tee "$OUT/prefill.md" || rc=1
fi
if [[ $what == all || $what == bench || $what == decode ]]; then
  step "decode bandwidth vs SDPA and the copy ceiling"
  python3 bench/decode/decode.py --json "$OUT/decode.json" 2>&1 |
    tee "$OUT/decode.md" || rc=1
fi
exit $rc
