"""Runs one single_prefill config a few times, for a profiler to pick a
launch: python3 profile_one.py D N causal [key=value ...] (tuning knobs)."""
import sys

import torch

import fijit

d, n, causal = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
tuning = dict((kv.split("=")[0], int(kv.split("=")[1])) for kv in sys.argv[4:])
h = 2048 // d
q = torch.randn(n, h, d, device="cuda", dtype=torch.bfloat16)
k, v = torch.randn_like(q), torch.randn_like(q)
out = torch.empty_like(q)
for _ in range(4):
    fijit.single_prefill_with_kv_cache(q, k, v, causal=causal, out=out,
                                       **tuning)
torch.cuda.synchronize()
