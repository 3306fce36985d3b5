#!/usr/bin/env bash
# Where decode's L2 traffic goes: Nsight Compute memory counters for fijit's
# decode kernel (plan's split and no split) and cuDNN's at one shape.
# Run on the GPU machine after `bench/run-on-gpu.sh none`:
#   bench/decode/l2-probe.sh [batch kv_len qo_heads kv_heads]
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/fijit-out}
export PYTHONPATH=${PYTHONPATH:-/tmp/fijit-py} FIJIT_CACHE_DIR=${FIJIT_CACHE_DIR:-/tmp/fijit-cache}
shape=${*:-64 4096 32 8}
ncu --query-metrics >"$OUT/ncu-metrics.txt" 2>&1
want="gpu__time_duration.sum dram__bytes_read.sum dram__bytes_write.sum
lts__t_sectors_op_read.sum lts__t_sectors_op_read_lookup_hit.sum
lts__t_sectors_op_read_lookup_miss.sum lts__t_sectors_op_write.sum
lts__t_sectors_srcunit_tex_op_read.sum
lts__t_sectors_srcunit_tex_op_read_lookup_hit.sum
lts__t_sectors_srcunit_ltcfabric.sum lts__t_sectors_srcunit_ltcfabric_op_read.sum
lts__t_sectors_srcnode_gpc_op_read.sum lts__t_sector_hit_rate.pct
lts__t_sector_op_read_hit_rate.pct lts__throughput.avg.pct_of_peak_sustained_elapsed
dram__throughput.avg.pct_of_peak_sustained_elapsed
l1tex__m_xbar2l1tex_read_bytes.sum l1tex__t_sectors_pipe_lsu_mem_global_op_ldgsts.sum
smsp__inst_executed_op_ldgsts.sum"
have=()
for m in $want; do
  base=${m%.*}
  grep -q "^$base " "$OUT/ncu-metrics.txt" && have+=("$m")
done
metrics=$(IFS=,; echo "${have[*]}")
echo "[fijit] metrics: $metrics"
for run in "fijit:" "fijit:fixed_split_size=1000000" "cudnn:"; do
  range=${run%%:*} tuning=${run#*:}
  echo "[fijit] ncu $range $tuning"
  ncu --clock-control none --nvtx --nvtx-include "$range/" \
    --metrics "$metrics" python3 bench/decode/profile.py $shape "$tuning" 2>&1 |
    grep -vE "^==PROF==|^\s*$" | tee -a "$OUT/l2-probe.txt" | tail -40
done
