#!/usr/bin/env bash
# One GPU call for prefill work: builds the extension against the carried core
# (bench/run-on-gpu.sh none), compiles FlashInfer's FA3 modules in the
# background (their nvcc time stays out of every timed region), runs
# `pytest -m gpu` meanwhile, then the prefill benchmark beside FA3, cuDNN and
# SDPA flash, the variants' cost (bench/prefill/variants.py), and any extra
# tunings. Results under $OUT.
#   [FIJIT_B_PACK=.carry/other.tgz] bench/gpu-prefill-session.sh [--no-tests] [--no-variants]
#       [--shapes S] [--tunings "T1@SHAPES;T2@SHAPES"] [--batch-tunings ",T1,T2"] [--fa3-dims 64,128,256 | --no-fa3]
#       [--test-files "test/python/test_x.py ..."]
# Carry .carry/ (the packed core and a copy of ../shared/flashinfer, plus
# fi-jit.tgz.* from an earlier call's $OUT to skip FlashInfer's compiles).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/fijit-out}
tests=1 variants=1 shapes=all tunings="" batch_tunings=",num_warps=8:tile_kv=128" dims=64,128,256 test_files=test/python
while [ $# -gt 0 ]; do
  case $1 in
    --no-tests) tests=0 ;;
    --no-variants) variants=0 ;;
    --shapes) shift; shapes=$1 ;;
    --tunings) shift; tunings=$1 ;;
    --batch-tunings) shift; batch_tunings=$1 ;;
    --fa3-dims) shift; dims=$1 ;;
    --no-fa3) dims="" ;;
    --test-files) shift; test_files=$1 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
# Few files come back from a call: setup logs stay on the machine.
OUT=/tmp/fijit-setup bash bench/run-on-gpu.sh none || exit 1
export PYTHONUNBUFFERED=1 FIJIT_PYTHONPATH=/tmp/fijit-py PYTHONPATH=/tmp/fijit-py
export FIJIT_CACHE_DIR=/tmp/fijit-cache
# shellcheck disable=SC1091
source .carry/flashinfer/env.sh
# FlashInfer modules compiled by an earlier call (see the end of this
# script): restored, its warm-up below finds them and compiles nothing.
if ls .carry/fi-jit.tgz.* >/dev/null 2>&1; then
  mkdir -p "$FLASHINFER_WORKSPACE_BASE" &&
    cat .carry/fi-jit.tgz.* | tar -xzf - -C "$FLASHINFER_WORKSPACE_BASE" &&
    echo "[fijit] restored FlashInfer's JIT cache"
fi
warm=""
if [ -n "$dims" ]; then
  python3 bench/prefill/warm_flashinfer.py --dims "$dims" --batch \
    >/tmp/fa3-warm.log 2>&1 &
  warm=$!
fi
rc=0
if [ $tests = 1 ]; then
  # shellcheck disable=SC2086
  # FIJIT_TEST_TIMEOUT (seconds) leaves the benchmarks their share of a
  # call's time limit.
  timeout "${FIJIT_TEST_TIMEOUT:-0}" \
    python3 -m pytest $test_files -m gpu -q -p no:cacheprovider 2>&1 |
    tee "$OUT/pytest-gpu.log" | tail -15
  [ "${PIPESTATUS[0]}" = 0 ] || rc=1
fi
fa3=()
if [ -n "$warm" ]; then
  wait $warm || { echo "FlashInfer warm-up failed:"; tail -20 /tmp/fa3-warm.log; }
  grep '^\[warm\]' /tmp/fa3-warm.log
  # Bring the compiled modules back (15 MB pieces) for the next call's carry.
  tar -czf - -C "$FLASHINFER_WORKSPACE_BASE" . | split -b 15m - "$OUT/fi-jit.tgz."
  ls -la "$OUT"/fi-jit.tgz.* | awk '{print $5, $9}'
  fa3=(--flashinfer)
fi
python3 bench/prefill/prefill.py --no-triton ${dims:+--flashinfer "$dims"} \
  --shapes "$shapes" 2>&1 | tee "$OUT/prefill.md"
python3 bench/prefill/batch.py "${fa3[@]}" --tunings "$batch_tunings" \
  2>&1 | tee "$OUT/batch.md"
[ $variants = 1 ] && python3 bench/prefill/variants.py 2>&1 | tee "$OUT/variants.md"
# A second core (FIJIT_B_PACK, e.g. .carry/fijit-prefix-b.tgz) timed on the
# same shapes in the same call: an A/B of two builds.
if [ -n "${FIJIT_B_PACK:-}" ]; then
  FIJIT_PACK=$FIJIT_B_PACK FIJIT_SIDE=-b OUT=/tmp/fijit-setup \
    bash bench/run-on-gpu.sh none >/dev/null &&
    PYTHONPATH=/tmp/fijit-py-b FIJIT_PYTHONPATH=/tmp/fijit-py-b \
      FIJIT_CACHE_DIR=/tmp/fijit-cache-b python3 bench/prefill/prefill.py \
      --no-triton --shapes "$shapes" 2>&1 | tee "$OUT/prefill-b.md"
fi
IFS=';' read -ra extra <<<"$tunings"
for t in "${extra[@]}"; do
  [ -n "$t" ] || continue
  python3 bench/prefill/prefill.py --no-triton --tuning "${t%%@*}" \
    --shapes "${t#*@}" 2>&1 | tee -a "$OUT/prefill-tunings.md"
done
exit $rc
