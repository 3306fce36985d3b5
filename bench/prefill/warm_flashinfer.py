"""Compiles FlashInfer's prefill modules (JIT, nvcc) ahead of a benchmark, so
their compile stays out of timed regions and can run beside other work.

    python3 bench/prefill/warm_flashinfer.py --dims 64,128,256 [--batch]

Needs `source .carry/flashinfer/env.sh` first (see ../../shared/flashinfer).
One process per head dim, side by side; each prints its compile time.
"""
import argparse
import os
import subprocess
import sys
import time


def warm(d, batch):
    import torch
    import flashinfer
    q = torch.randn(256, 4, d, device="cuda", dtype=torch.bfloat16)
    k, v = torch.randn_like(q), torch.randn_like(q)
    t0 = time.time()
    for causal in (False, True):
        flashinfer.single_prefill_with_kv_cache(q, k, v, causal=causal,
                                                backend="fa3")
    print(f"[warm] FA3 single prefill D{d}: {time.time() - t0:.0f} s",
          flush=True)
    if batch:
        # The paged batch wrapper of the batch benchmark (32:8 heads, page 16).
        ws = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
        t0 = time.time()
        w = flashinfer.BatchPrefillWithPagedKVCacheWrapper(ws, "NHD",
                                                           backend="fa3")
        pages = torch.arange(16, dtype=torch.int32, device="cuda")
        w.plan(torch.tensor([0, 64], dtype=torch.int32, device="cuda"),
               torch.tensor([0, 16], dtype=torch.int32, device="cuda"), pages,
               torch.tensor([16], dtype=torch.int32, device="cuda"), 32, 8, d,
               16, causal=True, q_data_type=torch.bfloat16)
        cache = torch.randn(16, 2, 16, 8, d, device="cuda",
                            dtype=torch.bfloat16)
        w.run(torch.randn(64, 32, d, device="cuda", dtype=torch.bfloat16),
              cache)
        print(f"[warm] FA3 batch prefill paged D{d}: {time.time() - t0:.0f} s",
              flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dims", default="128")
    ap.add_argument("--batch", action="store_true",
                    help="also the paged batch prefill wrapper")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        warm(args.one, args.batch)
        return
    procs = [subprocess.Popen([sys.executable, __file__, "--one", d] +
                              (["--batch"] if args.batch else []))
             for d in args.dims.split(",") if d]
    sys.exit(max(p.wait() for p in procs))


if __name__ == "__main__":
    main()
