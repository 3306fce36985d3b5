#!/usr/bin/env bash
# Writes PTX + launch metadata for the GPU correctness matrix:
#   gen-ptx-set.sh FI_OPT OUTDIR
# The default sm_90a configs (head dims 64/128/256) are the warp-specialised
# kernel (num_warps=12), whose Q/K/V tensor maps ptx_harness.py encodes.
set -euo pipefail
fiopt=$1 out=$2
mkdir -p "$out"
emit() { # name config
  "$fiopt" --fi-build="$2" --fi-emit=ptx -o "$out/$1.ptx"
  "$fiopt" --fi-build="$2" --fi-emit=launch -o "$out/$1.json"
}
for d in 64 128 256; do
  for dt in f16 bf16; do
    for mask in none causal; do
      for g in 1 8; do
        emit "d${d}_${dt}_${mask}_g${g}" \
          "head_dim_qk=$d,head_dim_vo=$d,dtype_q=$dt,dtype_kv=$dt,dtype_o=$dt,mask=$mask,num_qo_heads=8,num_kv_heads=$((8 / g)),return_lse=true"
      done
    done
  done
done
base="head_dim_qk=128,head_dim_vo=128,num_qo_heads=8,num_kv_heads=2"
emit sm80_d128_causal "$base,mask=causal,target=sm_80"
emit sm86_d256 "head_dim_qk=256,head_dim_vo=256,target=sm_86"
emit hnd_d128_causal "$base,mask=causal,kv_layout=HND"
emit window_d128 "$base,mask=causal,window_left=100,return_lse=true"
emit window_nocausal_d64 "head_dim_qk=64,head_dim_vo=64,window_left=37"
emit softcap_d128 "$base,logits_soft_cap=30,return_lse=true"
emit d96_bf16 "head_dim_qk=96,head_dim_vo=96,mask=causal"
emit w8_d64_tile128 "head_dim_qk=64,head_dim_vo=64,num_warps=8,mask=causal"
emit stages3_d128 "$base,stages=3,tile_kv=32"
