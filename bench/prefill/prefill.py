"""Prefill speed: fijit vs SDPA (flash, cuDNN) and Triton, one run.

Shapes follow ../../shared/ANCHORS.md: bf16, 16k tokens in total (batch =
16384 / N), hidden 2048 (H = 2048 / D). Equal-length requests are folded
into heads ([N, B*H, D]), which is exact for attention. TFLOP/s counts
4*B*H*N^2*D, halved for causal. Every fijit result is first checked against
SDPA on the same inputs.

Variants (RoPE, masks, ALiBi, sinks, ...) against the plain kernel:
variants.py beside this file.
"""
import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "common"))
from timing import median_ms  # noqa: E402

import fijit  # noqa: E402

SHAPES = [(64, 1024, False), (64, 16384, False), (64, 16384, True),
          (128, 1024, False), (128, 1024, True), (128, 4096, False),
          (128, 16384, False), (128, 16384, True), (256, 4096, False),
          (256, 16384, True)]


def run(d, n, causal, with_triton, tuning, flashinfer=None, fi_dims=()):
    b, h = 16384 // n, 2048 // d
    q = torch.randn(n, b * h, d, device="cuda", dtype=torch.bfloat16)
    k, v = torch.randn_like(q), torch.randn_like(q)
    flops = 4 * b * h * n * n * d / (2 if causal else 1)
    row = {"D": d, "N": n, "causal": causal}
    out = torch.empty_like(q)
    fn = lambda: fijit.single_prefill_with_kv_cache(  # noqa: E731
        q, k, v, causal=causal, out=out, **tuning)
    fn()
    # Time the config's own kernel, not a provisional stand-in that serves a
    # cold config while that compiles.
    fijit.wait_for_background_compiles()
    fn()
    # [N, B*H, D] -> [B, H, N, D] for SDPA.
    qs, ks, vs = (x.view(n, b, h, d).permute(1, 2, 0, 3) for x in (q, k, v))
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        ref = F.scaled_dot_product_attention(qs, ks, vs, is_causal=causal)
    ours = out.view(n, b, h, d).permute(1, 2, 0, 3)
    err = ((ours.float() - ref.float()).norm() / ref.float().norm()).item()
    row["rel_err_vs_flash"] = err
    if err > 2e-2:
        raise SystemExit(f"fijit disagrees with SDPA at D={d} N={n}: {err}")
    # Calls queued back to back, as for decode: the host's launch overhead
    # overlaps the device's work instead of counting once per call.
    row["fijit"] = flops / median_ms(fn, back_to_back=3) / 1e9
    for name, backend in (("flash", SDPBackend.FLASH_ATTENTION),
                          ("cudnn", SDPBackend.CUDNN_ATTENTION)):
        try:
            with sdpa_kernel(backend):
                row[name] = flops / median_ms(
                    lambda: F.scaled_dot_product_attention(
                        qs, ks, vs, is_causal=causal), back_to_back=3) / 1e9
        except RuntimeError:
            row[name] = None
    if flashinfer is not None and d in fi_dims:
        # FlashInfer's FA3 backend on the same [N, B*H, D] tensors; its JIT
        # compile happens in the first call, outside the timed region.
        fi = lambda: flashinfer.single_prefill_with_kv_cache(  # noqa: E731
            q, k, v, causal=causal, backend="fa3")
        fo = fi().view(n, b, h, d).permute(1, 2, 0, 3)
        fe = ((fo.float() - ref.float()).norm() / ref.float().norm()).item()
        row["fa3"] = (flops / median_ms(fi, back_to_back=3) / 1e9
                      if fe < 2e-2 else None)
    if with_triton and d <= 128:
        from triton_attention import triton_attention
        # Triton's kernel is per-request: time B=1 with all B*H heads folded.
        row["triton"] = flops / median_ms(
            lambda: triton_attention(q, k, v, causal), back_to_back=3) / 1e9
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", help="write rows here")
    ap.add_argument("--no-triton", action="store_true")
    ap.add_argument("--tuning", default="", help="e.g. num_warps=8,stages=3")
    ap.add_argument("--shapes", default="all", help="all or D:N:causal,...")
    ap.add_argument("--flashinfer", default="",
                    help="head dims to time FlashInfer's FA3 backend at "
                         "(e.g. 128; needs flashinfer importable)")
    args = ap.parse_args()
    tuning = dict((kv.split("=")[0], int(kv.split("=")[1]))
                  for kv in args.tuning.split(",") if kv)
    shapes = SHAPES if args.shapes == "all" else [
        (int(s.split(":")[0]), int(s.split(":")[1]), s.split(":")[2] == "1")
        for s in args.shapes.split(",")]
    rows = []
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}, "
          f"fijit {fijit.__version__}, tuning {tuning or 'default'}")
    fi_dims = tuple(int(x) for x in args.flashinfer.split(",") if x)
    flashinfer = None
    if fi_dims:
        import flashinfer
    print("| D | N | causal | fijit | flash | cudnn | triton | FlashInfer FA3 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for d, n, causal in shapes:
        r = run(d, n, causal, not args.no_triton, tuning, flashinfer, fi_dims)
        rows.append(r)
        fmt = lambda x: "–" if x is None else f"{x:.0f}"  # noqa: E731
        print(f"| {d} | {n} | {'yes' if causal else 'no'} | "
              f"{fmt(r['fijit'])} | {fmt(r.get('flash'))} | "
              f"{fmt(r.get('cudnn'))} | {fmt(r.get('triton'))} | "
              f"{fmt(r.get('fa3'))} |", flush=True)
    if args.json:
        json.dump(rows, open(args.json, "w"), indent=1)


if __name__ == "__main__":
    main()
