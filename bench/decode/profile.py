"""One decode shape for Nsight Compute: fijit (dense NHD, one page per
request) and SDPA's cuDNN backend, each warmed up and then run once inside
an NVTX range named `fijit` resp. `cudnn`, e.g.

  ncu --clock-control none --nvtx --nvtx-include "fijit/" \\
      --section SpeedOfLight python3 bench/decode/profile.py 64 4096 32 8
"""
import os
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, os.path.dirname(__file__))
from decode import D, paged_cache  # noqa: E402

import fijit  # noqa: E402


def main():
    batch, n, hq, hk = (int(x) for x in sys.argv[1:5])
    tuning = dict((kv.split("=")[0], int(kv.split("=")[1]))
                  for kv in (sys.argv[5] if len(sys.argv) > 5 else "").split(",")
                  if kv)
    q = torch.randn(batch, hq, D, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(batch, hk, n, D, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    cache, indptr, indices, last = paged_cache(k, v, n)
    ws = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
    w = fijit.BatchDecodeWithPagedKVCacheWrapper(ws, "NHD")
    w.plan(indptr, indices, last, hq, hk, D, n, q_data_type=torch.bfloat16,
           **tuning)
    out = torch.empty_like(q)
    for _ in range(3):
        w.run(q, cache, out=out)
    torch.cuda.synchronize()
    torch.cuda.nvtx.range_push("fijit")
    w.run(q, cache, out=out)
    torch.cuda.nvtx.range_pop()
    qs = q.unsqueeze(2)
    with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
        for _ in range(3):
            F.scaled_dot_product_attention(qs, k, v, enable_gqa=True)
        torch.cuda.synchronize()
        torch.cuda.nvtx.range_push("cudnn")
        F.scaled_dot_product_attention(qs, k, v, enable_gqa=True)
        torch.cuda.nvtx.range_pop()
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()
