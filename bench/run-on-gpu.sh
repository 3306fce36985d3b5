#!/usr/bin/env bash
# One call on the GPU machine: unpack the carried core, build the Python
# extension against it, run `pytest -m gpu` and the benchmarks. Results go
# under $OUT (the device tool brings that folder back).
#   bench/run-on-gpu.sh [all|test|bench|latency|prefill|batch|decode|merge|rope|none]
# FIJIT_PACK (default .carry/fijit-prefix.tgz) and FIJIT_SIDE (default
# empty) pick another packed core and keep its prefix, extension and cache
# apart (/tmp/fijit-prefix$FIJIT_SIDE, ...), for A/B runs in one call.
set -uo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
OUT=${OUT:-/tmp/fijit-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
step() { echo "[fijit] $*"; }

pack=${FIJIT_PACK:-.carry/fijit-prefix.tgz}
side=${FIJIT_SIDE:-}
prefix=/tmp/fijit-prefix$side py=/tmp/fijit-py$side

step "unpacking the core ($pack)"
rm -rf "$prefix" /tmp/fijit-unpack && mkdir /tmp/fijit-unpack &&
  tar -C /tmp/fijit-unpack -xzf "$pack" &&
  mv /tmp/fijit-unpack/fijit-prefix "$prefix" || exit 1
step "building the Python extension against it"
cmake -S python -B "$py" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix" >"$OUT/build-py$side.log" 2>&1 &&
  ninja -C "$py" >>"$OUT/build-py$side.log" 2>&1 ||
  { tail -30 "$OUT/build-py$side.log"; exit 1; }
export FIJIT_PYTHONPATH=$py PYTHONPATH=$py
export FIJIT_CACHE_DIR=/tmp/fijit-cache$side
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem \
  --format=csv | tee "$OUT/gpu.txt"
rc=0
if [[ $what == all || $what == test ]]; then
  step "pytest -m gpu"
  python3 -m pytest test/python -m gpu -q -p no:cacheprovider 2>&1 |
    tee "$OUT/pytest-gpu$side.log" | tail -25
  [[ ${PIPESTATUS[0]} == 0 ]] || rc=1
fi
if [[ $what == all || $what == bench || $what == latency ]]; then
  step "fi-opt stage timings on this machine's CPU (head_dim 128, causal)"
  for i in 1 2 3 4 5; do
    "$prefix/bin/fi-opt" --fi-emit=timing \
      --fi-build=head_dim_qk=128,head_dim_vo=128,mask=causal
  done 2>&1 | tee "$OUT/fi-opt-timing$side.txt"
  step "compile latency by tier"
  python3 bench/latency/latency.py "$OUT/latency$side.json" 2>&1 |
    tee "$OUT/latency$side.md" || rc=1
  step "compile latency of a paged decode config"
  python3 bench/latency/latency.py --no-triton \
    --config kind=batch_decode_paged,page_size=16 \
    "$OUT/latency-decode$side.json" 2>&1 |
    tee "$OUT/latency-decode$side.md" || rc=1
fi
if [[ $what == all || $what == bench || $what == prefill ]]; then
  step "prefill speed vs SDPA and Triton"
  python3 bench/prefill/prefill.py --json "$OUT/prefill$side.json" 2>&1 |
    tee "$OUT/prefill$side.md" || rc=1
fi
if [[ $what == all || $what == bench || $what == batch ]]; then
  step "batch prefill speed per tuning vs cuDNN"
  python3 bench/prefill/batch.py --json "$OUT/batch$side.json" 2>&1 |
    tee "$OUT/batch$side.md" || rc=1
fi
if [[ $what == all || $what == bench || $what == decode ]]; then
  step "decode bandwidth vs SDPA and the copy ceiling"
  python3 bench/decode/decode.py --json "$OUT/decode$side.json" 2>&1 |
    tee "$OUT/decode$side.md" || rc=1
fi
if [[ $what == all || $what == bench || $what == merge ]]; then
  step "merge kernel bandwidth vs FlashInfer's merges and the copy ceiling"
  python3 bench/merge/merge.py --json "$OUT/merge$side.json" 2>&1 |
    tee "$OUT/merge$side.md" || rc=1
fi
if [[ $what == all || $what == bench || $what == rope ]]; then
  step "RoPE kernel bandwidth vs FlashInfer's RoPE and the copy ceiling"
  python3 bench/rope/rope.py --json "$OUT/rope$side.json" 2>&1 |
    tee "$OUT/rope$side.md" || rc=1
fi
exit $rc
