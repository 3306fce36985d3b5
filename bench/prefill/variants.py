"""What each attention variant costs on prefill: fijit's default kernel with
a variant against the same kernel without it, same inputs, one process.

Shapes follow ../../shared/ANCHORS.md (bf16, 16k tokens in total, hidden
2048; equal requests folded into heads); the default is D128 N=4096, causal
and not. Variants: RoPE (ROPE_LLAMA, rope_theta 1e4), ALiBi (FlashInfer's
slopes), sinks (one random logit per head), a logits soft-cap of 30, a
window of 1024 keys, and FlashInfer's custom mask twice: all set (the
visible prefix of tree verification) and a random half. TFLOP/s count the
unmasked work (4*B*H*N^2*D, halved for causal), so a ratio below 1 is the
variant's cost. The custom mask is timed through the compiled kernel with
its packed words (no per-call packing); the others through
single_prefill_with_kv_cache.

Each variant's output is checked against the same variant on the tile
engine (num_warps=8: another kernel, another code path), and the plain
kernel against SDPA flash.
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

SHAPES = [(128, 4096, False), (128, 4096, True)]
VARIANTS = ("rope", "alibi", "sinks", "soft_cap", "window", "mask_all_set",
            "mask_random")


def rel_err(x, y):
    return ((x.float() - y.float()).norm() / y.float().norm()).item()


class Shape:
    def __init__(self, d, n, causal):
        self.d, self.n, self.causal = d, n, causal
        self.b, self.h = 16384 // n, 2048 // d
        heads = self.b * self.h
        self.q = torch.randn(n, heads, d, device="cuda", dtype=torch.bfloat16)
        self.k = torch.randn_like(self.q)
        self.v = torch.randn_like(self.q)
        self.out = torch.empty_like(self.q)
        self.flops = 4 * heads * n * n * d / (2 if causal else 1)

    def tflops(self, fn):
        return self.flops / median_ms(fn, back_to_back=3) / 1e9


def mask_words(shape, kind):
    if kind == "mask_all_set":
        mask = torch.ones(shape.n, shape.n, dtype=torch.bool, device="cuda")
    else:
        g = torch.Generator(device="cuda").manual_seed(shape.n + shape.d)
        mask = torch.rand(shape.n, shape.n, device="cuda", generator=g) < 0.5
    if shape.causal:
        mask = mask.tril()
    return fijit.custom_mask_words(mask)


def variant_inputs(shape, name):
    """What variant `name` adds to a call: keyword arguments, or for a
    custom mask its packed words."""
    s = shape
    if name.startswith("mask_"):
        return mask_words(s, name)
    return {"rope": dict(pos_encoding_mode="ROPE_LLAMA"),
            "alibi": dict(pos_encoding_mode="ALIBI"),
            "sinks": dict(sinks=torch.randn(s.b * s.h, device="cuda")),
            "soft_cap": dict(logits_soft_cap=30.0),
            "window": dict(window_left=1024)}[name]


def variant_call(shape, name, inputs, tuning):
    """A callable writing shape.out with variant `name` on tiles `tuning`."""
    s = shape
    if name.startswith("mask_"):
        kernel = fijit.compile_attention(
            kind="single_prefill", head_dim_qk=s.d, head_dim_vo=s.d,
            num_qo_heads=s.b * s.h, num_kv_heads=s.b * s.h, dtype_q="bf16",
            dtype_kv="bf16", dtype_o="bf16", mask="custom",
            target=fijit.prefill.target_of(s.q.device), **tuning)
        return lambda: kernel(s.q, s.k, s.v, out=s.out, packed_mask=inputs)
    return lambda: fijit.single_prefill_with_kv_cache(
        s.q, s.k, s.v, causal=s.causal, out=s.out, **inputs, **tuning)


def run(d, n, causal, variants):
    s = Shape(d, n, causal)
    plain = lambda: fijit.single_prefill_with_kv_cache(  # noqa: E731
        s.q, s.k, s.v, causal=causal, out=s.out)
    plain()
    fijit.wait_for_background_compiles()
    plain()
    qs, ks, vs = (x.view(n, s.b, s.h, d).permute(1, 2, 0, 3)
                  for x in (s.q, s.k, s.v))
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        ref = F.scaled_dot_product_attention(qs, ks, vs, is_causal=causal)
    err = rel_err(s.out.view(n, s.b, s.h, d).permute(1, 2, 0, 3), ref)
    if err > 2e-2:
        raise SystemExit(f"fijit disagrees with SDPA at D={d} N={n}: {err}")
    rows = [{"D": d, "N": n, "causal": causal, "variant": "none",
             "tflops": s.tflops(plain)}]
    for name in variants:
        inputs = variant_inputs(s, name)
        fn = variant_call(s, name, inputs, {})
        fn()
        fijit.wait_for_background_compiles()
        fn()
        torch.cuda.synchronize()
        ours = s.out.clone()
        variant_call(s, name, inputs, dict(num_warps=8))()
        torch.cuda.synchronize()
        err = rel_err(ours, s.out)
        if err > 2e-2:
            raise SystemExit(f"{name} at D={d} N={n}: the default kernel and "
                             f"the tile engine disagree ({err})")
        rows.append({"D": d, "N": n, "causal": causal, "variant": name,
                     "tflops": s.tflops(fn), "rel_err_vs_tile_engine": err})
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="default",
                    help="default (D128 N=4096, causal or not) or "
                         "D:N:causal,...")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--json", help="write rows here")
    args = ap.parse_args()
    shapes = SHAPES if args.shapes == "default" else [
        (int(x.split(":")[0]), int(x.split(":")[1]), x.split(":")[2] == "1")
        for x in args.shapes.split(",")]
    variants = [v for v in args.variants.split(",") if v]
    for v in variants:
        if v not in VARIANTS:
            raise SystemExit(f"unknown variant {v!r}; known: "
                             + ", ".join(VARIANTS))
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}, "
          f"fijit {fijit.__version__}: prefill variants (TFLOP/s of the "
          "unmasked work, ratio to no variant)")
    print("| D | N | causal | variant | TFLOP/s | ratio |")
    print("| --- | --- | --- | --- | --- | --- |")
    rows = []
    for d, n, causal in shapes:
        shape_rows = run(d, n, causal, variants)
        base = shape_rows[0]["tflops"]
        for r in shape_rows:
            print(f"| {d} | {n} | {'yes' if causal else 'no'} | "
                  f"{r['variant']} | {r['tflops']:.0f} | "
                  f"{r['tflops'] / base:.2f} |", flush=True)
        rows += shape_rows
    if args.json:
        json.dump(rows, open(args.json, "w"), indent=1)


if __name__ == "__main__":
    main()
