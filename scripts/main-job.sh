#!/usr/bin/env bash
# fijit's main job: compiles one attention config end to end and reports what
# came out of each step. With ptxas (CUDA toolkit) it also assembles the PTX;
# with a GPU (nvidia-smi and torch with CUDA) it runs the kernel and checks it
# against a float32 reference.
#
#   scripts/main-job.sh [CONFIG]     (default: single_prefill, head_dim 128,
#                                     bf16, causal, target sm_90a)
# Artifacts land in $FIJIT_BUILD_DIR/main-job/.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DEFAULT_CONFIG="kind=single_prefill,head_dim_qk=128,head_dim_vo=128,dtype_q=bf16,dtype_kv=bf16,dtype_o=bf16,mask=causal,target=sm_90a"
config=${1:-$DEFAULT_CONFIG}

[ -x "$FI_OPT" ] || die "$FI_OPT not built; run scripts/setup.sh first"
out=$FIJIT_BUILD_DIR/main-job
rm -rf "$out"
mkdir -p "$out"

log "main job: $config"
canonical=$("$FI_OPT" --fi-build="$config" --fi-emit=config)
log "canonical config: $canonical"
target=$(tr ',' '\n' <<<"$canonical" | sed -n 's/^target=//p')

# Config -> PTX in this process; the timing line comes from a second compile
# of the same config (each fi-opt run is a fresh process).
"$FI_OPT" --fi-build="$config" --fi-emit=ptx -o "$out/kernel.ptx"
"$FI_OPT" --fi-build="$config" --fi-emit=launch -o "$out/kernel.json"
log "stage timings (ms): $("$FI_OPT" --fi-build="$config" --fi-emit=timing)"
python3 - "$out/kernel.json" "$out/kernel.ptx" <<'PY'
import json, os, sys
launch = json.load(open(sys.argv[1]))
size = os.path.getsize(sys.argv[2])
lines = sum(1 for _ in open(sys.argv[2]))
print(f"[fijit] kernel {launch['kernel']}: PTX {size} bytes ({lines} lines)")
print(f"[fijit] launch: grid ({', '.join(launch['grid'])}), "
      f"{launch['threads']} threads, {launch['shared_memory_bytes']} bytes of "
      f"dynamic shared memory")
PY
log "wrote $out/kernel.ptx and $out/kernel.json"

assembled=no
ptxas=$(find_ptxas)
if [ -n "$ptxas" ]; then
  cuda=$("$ptxas" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')
  if ! "$ptxas" -arch="$target" -v "$out/kernel.ptx" -o "$out/kernel.cubin" \
      >"$out/ptxas.log" 2>&1; then
    cat "$out/ptxas.log" >&2
    die "ptxas rejected the PTX (log above)"
  fi
  regs=$(sed -n 's/.*Used \([0-9]*\) registers.*/\1/p' "$out/ptxas.log")
  spill_st=$(sed -n 's/.* \([0-9]*\) bytes spill stores.*/\1/p' "$out/ptxas.log")
  spill_ld=$(sed -n 's/.* \([0-9]*\) bytes spill loads.*/\1/p' "$out/ptxas.log")
  log "ptxas (CUDA $cuda) -arch=$target: $regs registers, $spill_st bytes spill stores, $spill_ld bytes spill loads, cubin $(stat -c %s "$out/kernel.cubin") bytes"
  assembled=yes
else
  log "ptxas not found (no CUDA toolkit): PTX not assembled"
fi

if have_gpu; then
  log "GPU: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)"
  check=$(mktemp -d)
  trap 'rm -rf "$check"' EXIT
  cp "$out/kernel.ptx" "$out/kernel.json" "$check/"
  python3 "$FIJIT_ROOT/test/gpu/ptx_harness.py" check "$check"
  log "main job done: compiled, run and checked against the float32 reference"
elif [ "$assembled" = yes ]; then
  log "no GPU found ($GPU_MISSING_REASON): compiled and assembled, not run"
else
  log "no GPU found ($GPU_MISSING_REASON): compiled, not assembled (no ptxas), not run"
fi
