"""RoPE kernel speed in GB/s (q and k read once, q_rope and k_rope written
once / time): fijit's RoPE kernel behind apply_rope_pos_ids (out of place),
apply_rope_pos_ids_inplace and apply_rope_with_cos_sin_cache_inplace, beside
FlashInfer's functions of the same names where its rope module imports,
and the device copy ceiling, in one run. Each fijit result is first checked
against the float32 reference.

    python3 bench/rope/rope.py [--json out.json] [--dtype bf16|f16]
"""
import argparse
import json
import os
import sys

import torch

HERE = os.path.dirname(__file__)
sys.path.insert(0, os.path.join(HERE, "..", "common"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "test", "python"))
from timing import copy_bandwidth_gbs, median_ms  # noqa: E402
from rope_reference import angles, cache_angles, frequencies, rotate  # noqa

import fijit  # noqa: E402

# (what, nnz, q heads, k heads, head_dim, rotary_dim): prefill chunks and
# decode batches of Llama-3-8B (32/8 heads) and -70B's 8-GPU shard (8/1),
# a partial rotary dim (GLM-style) and head dim 256.
SHAPES = [
    ("pos_ids", 16384, 32, 8, 128, 128),
    ("pos_ids_inplace", 16384, 32, 8, 128, 128),
    ("cos_sin_cache_inplace", 16384, 32, 8, 128, 128),
    ("pos_ids", 4096, 8, 1, 128, 128),
    ("pos_ids", 16384, 32, 8, 128, 64),
    ("pos_ids", 8192, 16, 4, 256, 256),
    ("pos_ids", 64, 32, 8, 128, 128),
]


def flashinfer_rope():
    """FlashInfer itself, or None with the reason printed."""
    try:
        import flashinfer
    except Exception as e:  # noqa: BLE001 (any import failure: no baseline)
        print(f"flashinfer: not importable ({type(e).__name__}: {e})")
        return None
    if getattr(flashinfer, "__fijit__", False):
        print("flashinfer: fijit's own package is installed as flashinfer")
        return None
    if not hasattr(flashinfer, "apply_rope_pos_ids"):
        print("flashinfer: this build has no apply_rope_pos_ids")
        return None
    return flashinfer


def cos_sin_cache(max_pos, rotary_dim):
    inv = 1e4 ** (-torch.arange(0, rotary_dim, 2, dtype=torch.float64)
                  / rotary_dim)
    a = torch.arange(max_pos, dtype=torch.float64)[:, None] * inv[None, :]
    return torch.cat([a.cos(), a.sin()], -1).float().cuda()


def run(what, nnz, hq, hk, d, rot, dtype, fi):
    q = torch.randn(nnz, hq, d, device="cuda", dtype=dtype)
    k = torch.randn(nnz, hk, d, device="cuda", dtype=dtype)
    pos = torch.randint(0, 4096, (nnz,), device="cuda", dtype=torch.int32)
    row = {"what": what, "nnz": nnz, "q_heads": hq, "k_heads": hk,
           "head_dim": d, "rotary_dim": rot}
    nbytes = 2 * (q.numel() + k.numel()) * q.element_size()
    cache = cos_sin_cache(4096, rot)
    if what == "cos_sin_cache_inplace":
        cos, sin = cache_angles(cache, pos)
    else:
        cos, sin = angles(pos, frequencies(rot, 1.0, 1e4))
    ref_q = rotate(q, cos, sin, rot, False)
    qc, kc = q.clone(), k.clone()
    if what == "pos_ids":
        out_q, _ = fijit.apply_rope_pos_ids(q, k, pos, rotary_dim=rot)

        def fijit_call():
            fijit.apply_rope_pos_ids(q, k, pos, rotary_dim=rot)

        def fi_call():
            fi.apply_rope_pos_ids(q, k, pos, rotary_dim=rot)
    elif what == "pos_ids_inplace":
        fijit.apply_rope_pos_ids_inplace(qc, kc, pos, rotary_dim=rot)
        out_q = qc

        def fijit_call():  # rotates again: the speed is the same
            fijit.apply_rope_pos_ids_inplace(qc, kc, pos, rotary_dim=rot)

        def fi_call():
            fi.apply_rope_pos_ids_inplace(qc, kc, pos, rotary_dim=rot)
    else:
        query, key = qc.view(nnz, -1), kc.view(nnz, -1)
        pos64 = pos.long()
        fijit.apply_rope_with_cos_sin_cache_inplace(pos64, query, key, d,
                                                    cache)
        out_q = qc

        def fijit_call():
            fijit.apply_rope_with_cos_sin_cache_inplace(pos64, query, key, d,
                                                        cache)

        def fi_call():
            fi.apply_rope_with_cos_sin_cache_inplace(pos64, query, key, d,
                                                     cache)
    torch.cuda.synchronize()
    err = ((out_q.float().cpu() - ref_q).norm() / ref_q.norm()).item()
    if not err <= 1e-2:
        raise SystemExit(f"fijit {what} {row} disagrees with the reference: "
                         f"{err}")
    ms = median_ms(fijit_call, back_to_back=10)
    row["fijit_us"] = ms * 1e3
    row["fijit_gbs"] = nbytes / ms / 1e6
    if fi is not None:
        ms = median_ms(fi_call, back_to_back=10)
        row["flashinfer_us"] = ms * 1e3
        row["flashinfer_gbs"] = nbytes / ms / 1e6
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json")
    parser.add_argument("--dtype", choices=("bf16", "f16"), default="bf16")
    args = parser.parse_args()
    dtype = {"bf16": torch.bfloat16, "f16": torch.float16}[args.dtype]
    torch.manual_seed(0)
    print(f"GPU: {torch.cuda.get_device_name()}, {args.dtype}")
    ceiling = copy_bandwidth_gbs()
    print(f"copy ceiling (read + write): {ceiling:.0f} GB/s")
    fi = flashinfer_rope()
    rows = []
    print("| what | nnz | q heads | k heads | head_dim | rotary_dim | fijit "
          "us | fijit GB/s | % of copy | FlashInfer us | FlashInfer GB/s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | "
          "--- |")
    for shape in SHAPES:
        row = run(*shape, dtype, fi)
        rows.append(row)
        theirs = (f"{row['flashinfer_us']:.1f} | "
                  f"{row['flashinfer_gbs']:.0f}" if "flashinfer_us" in row
                  else "- | -")
        print(f"| {row['what']} | {row['nnz']} | {row['q_heads']} | "
              f"{row['k_heads']} | {row['head_dim']} | {row['rotary_dim']} | "
              f"{row['fijit_us']:.1f} | {row['fijit_gbs']:.0f} | "
              f"{100 * row['fijit_gbs'] / ceiling:.0f}% | {theirs} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"gpu": torch.cuda.get_device_name(),
                       "dtype": args.dtype, "copy_gbs": ceiling,
                       "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
