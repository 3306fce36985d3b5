"""Merge kernel speed in GB/s (every state's bytes read once, the merged
state written once, LSEs included / time): fijit's merge_states kernel
behind merge_state, merge_states and merge_state_in_place, beside
FlashInfer's merges where its cascade module imports, and the device copy
ceiling, in one run. Each fijit result is first checked against the float32
reference of FlashInfer's merges.

    python3 bench/merge/merge.py [--json out.json] [--dtype bf16|f16]
"""
import argparse
import json
import math
import os
import sys

import torch

HERE = os.path.dirname(__file__)
sys.path.insert(0, os.path.join(HERE, "..", "common"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "test", "python"))
from timing import copy_bandwidth_gbs, median_ms  # noqa: E402
from merge_reference import merge_states_reference  # noqa: E402

import fijit  # noqa: E402
import fijit.cascade  # noqa: E402

# (what, seq_len, heads, head_dim, states): cascade merges of a prefix and a
# suffix level (pairs, in place), split-KV style stacks of states, and the
# head dims FlashInfer dispatches.
SHAPES = [
    ("merge_state", 32768, 32, 128, 2),
    ("merge_state_in_place", 32768, 32, 128, 2),
    ("merge_states", 32768, 32, 128, 2),
    ("merge_states", 8192, 32, 128, 4),
    ("merge_states", 4096, 32, 128, 8),
    ("merge_states", 1024, 32, 128, 32),
    ("merge_state", 65536, 32, 64, 2),
    ("merge_state", 16384, 32, 256, 2),
    ("merge_state", 8192, 8, 512, 2),
    ("merge_state", 64, 32, 128, 2),
]


def flashinfer_cascade():
    """FlashInfer's cascade module, or None with the reason printed."""
    try:
        import flashinfer
    except Exception as e:  # noqa: BLE001 (any import failure: no baseline)
        print(f"flashinfer: not importable ({type(e).__name__}: {e})")
        return None
    cascade = getattr(flashinfer, "cascade", None)
    if cascade is None or not hasattr(cascade, "merge_state"):
        print("flashinfer: this build has no cascade merges")
        return None
    return cascade


def state_bytes(seq, heads, d, states, elem):
    """Bytes moved: each state read once (values and LSE), the merged state
    written once."""
    per_state = seq * heads * (d * elem + 4)
    return per_state * (states + 1)


def run(what, seq, heads, d, states, dtype, cascade):
    v = torch.randn(seq, states, heads, d, device="cuda", dtype=dtype)
    s = torch.randn(seq, states, heads, device="cuda") * 4
    s[torch.rand_like(s) < 0.05] = -math.inf
    ref, ref_lse = merge_states_reference(v, s)
    row = {"what": what, "seq_len": seq, "heads": heads, "head_dim": d,
           "states": states}
    nbytes = state_bytes(seq, heads, d, states, v.element_size())
    out = torch.full((seq, heads, d), float("nan"), device="cuda",
                     dtype=dtype)
    lse = torch.full((seq, heads), float("nan"), device="cuda")
    if what == "merge_states":
        fijit.cascade._merge_states_op(v, s, None, None, out, lse)

        def fijit_call():
            fijit.cascade._merge_states_op(v, s, None, None, out, lse)
    else:
        v_a, v_b = v[:, 0].contiguous(), v[:, 1].contiguous()
        s_a, s_b = s[:, 0].contiguous(), s[:, 1].contiguous()
        if what == "merge_state":
            fijit.cascade._merge_states_op(v_a.unsqueeze(1),
                                           s_a.unsqueeze(1), v_b, s_b, out,
                                           lse)

            def fijit_call():
                fijit.cascade._merge_states_op(
                    v_a.unsqueeze(1), s_a.unsqueeze(1), v_b, s_b, out, lse)
        else:  # in place: the timed calls merge into the result again
            out.copy_(v_a)
            lse.copy_(s_a)
            fijit.merge_state_in_place(out, lse, v_b, s_b)

            def fijit_call():
                fijit.cascade._merge_state_in_place_op(out, lse, v_b, s_b,
                                                       None)
    torch.cuda.synchronize()
    err = ((out.float() - ref).norm() / ref.norm()).item()
    finite = torch.isfinite(ref_lse)
    lse_err = (lse[finite] - ref_lse[finite]).abs().max().item()
    if not (err <= 1e-2 and lse_err <= 1e-3 and
            torch.equal(torch.isneginf(lse), torch.isneginf(ref_lse))):
        raise SystemExit(f"fijit {what} {row} disagrees with the reference: "
                         f"{err} {lse_err}")
    ms = median_ms(fijit_call, back_to_back=10)
    row["fijit_us"] = ms * 1e3
    row["fijit_gbs"] = nbytes / ms / 1e6
    if cascade is not None:
        if what == "merge_states":
            def fi_call():
                cascade.merge_states(v, s)
        elif what == "merge_state":
            def fi_call():
                cascade.merge_state(v_a, s_a, v_b, s_b)
        else:
            def fi_call():
                cascade.merge_state_in_place(out, lse, v_b, s_b)
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
    cascade = flashinfer_cascade()
    rows = []
    print("| what | seq_len | heads | head_dim | states | fijit us | fijit "
          "GB/s | % of copy | FlashInfer us | FlashInfer GB/s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for shape in SHAPES:
        row = run(*shape, dtype, cascade)
        rows.append(row)
        fi = (f"{row['flashinfer_us']:.1f} | {row['flashinfer_gbs']:.0f}"
              if "flashinfer_us" in row else "- | -")
        print(f"| {row['what']} | {row['seq_len']} | {row['heads']} | "
              f"{row['head_dim']} | {row['states']} | {row['fijit_us']:.1f} "
              f"| {row['fijit_gbs']:.0f} | "
              f"{100 * row['fijit_gbs'] / ceiling:.0f}% | {fi} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"gpu": torch.cuda.get_device_name(),
                       "dtype": args.dtype, "copy_gbs": ceiling,
                       "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
