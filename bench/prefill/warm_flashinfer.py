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
    """Single prefill at head dim d, or (batch) the ragged batch wrapper."""
    import torch
    import flashinfer
    q = torch.randn(256, 4, d, device="cuda", dtype=torch.bfloat16)
    k, v = torch.randn_like(q), torch.randn_like(q)
    if not batch:
        t0 = time.time()
        for causal in (False, True):
            flashinfer.single_prefill_with_kv_cache(q, k, v, causal=causal,
                                                    backend="fa3")
        print(f"[warm] FA3 single prefill D{d}: {time.time() - t0:.0f} s",
              flush=True)
    else:
        # The ragged batch wrapper of bench/prefill/batch.py.
        ws = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
        t0 = time.time()
        w = flashinfer.BatchPrefillWithRaggedKVCacheWrapper(ws, "NHD",
                                                            backend="fa3")
        ind = torch.tensor([0, 256], dtype=torch.int32, device="cuda")
        for causal in (False, True):
            w.plan(ind, ind, 4, 4, d, causal=causal,
                   q_data_type=torch.bfloat16)
            w.run(q, k, v)
        print(f"[warm] FA3 batch prefill ragged D{d}: {time.time() - t0:.0f} s",
              flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dims", default="128")
    ap.add_argument("--batch", action="store_true",
                    help="also the ragged batch prefill wrapper")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        warm(args.one, args.batch)
        return
    # One process per module, side by side: single prefill per head dim,
    # and the ragged batch wrapper at head_dim 128 (bench/prefill/batch.py).
    jobs = [[d] for d in args.dims.split(",") if d]
    if args.batch:
        jobs.append(["128", "--batch"])
    procs = [subprocess.Popen([sys.executable, __file__, "--one"] + job)
             for job in jobs]
    sys.exit(max(p.wait() for p in procs))


if __name__ == "__main__":
    main()
