"""Batch prefill speed: fijit's ragged batch prefill per tuning, against
SDPA's cuDNN backend on the padded batch where requests have equal lengths.

head_dim 128, 32 query and 8 KV heads, bf16, NHD. Shapes: equal-length
causal batches (prompts), a long non-causal batch, short query chunks over
long contexts (chunked prefill), and a causal batch of mixed lengths.
TFLOP/s count 4*H*qo*kv*D per request, halved for causal (qo == kv). Every
fijit result is first checked against SDPA's flash backend, request by
request.

    python3 bench/prefill/batch.py [--tunings ",num_warps=8,..."] [--json F]
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

D, HQ, HK = 128, 32, 8


def mixed_lengths(n, lo, hi, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(lo, hi + 1, (n,), generator=g).tolist()


# (name, qo lengths, kv lengths, causal)
SHAPES = [
    ("8x2048 causal", [2048] * 8, [2048] * 8, True),
    ("32x512 causal", [512] * 32, [512] * 32, True),
    ("4x4096", [4096] * 4, [4096] * 4, False),
    ("64x128 over 1024 keys", [128] * 64, [1024] * 64, False),
    ("16 mixed 64-4096 causal", mixed_lengths(16, 64, 4096),
     mixed_lengths(16, 64, 4096), True),
]


def indptr(lens):
    return torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(),
                        dtype=torch.int32, device="cuda")


def sdpa(q, k, v, causal, backend):
    """[N, H, D] tensors of one request (or [B, N, H, D] of equal ones)."""
    batched = q.dim() == 4
    qs, ks, vs = (x.transpose(-3, -2) if batched else
                  x.transpose(0, 1).unsqueeze(0) for x in (q, k, v))
    with sdpa_kernel(backend):
        o = F.scaled_dot_product_attention(qs, ks, vs, is_causal=causal,
                                           enable_gqa=True)
    return o.transpose(-3, -2) if batched else o[0].transpose(0, 1)


def run(name, qo_lens, kv_lens, causal, tunings, flashinfer=None):
    if causal:
        qo_lens = kv_lens  # causal shapes here are prompts: qo == kv
    qo_ptr, kv_ptr = indptr(qo_lens), indptr(kv_lens)
    q = torch.randn(sum(qo_lens), HQ, D, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(sum(kv_lens), HK, D, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    flops = sum(4 * HQ * a * b * D / (2 if causal else 1)
                for a, b in zip(qo_lens, kv_lens))
    ref = torch.empty_like(q)
    for i, (a, b) in enumerate(zip(qo_lens, kv_lens)):
        qa, ka = qo_ptr[i].item(), kv_ptr[i].item()
        ref[qa:qa + a] = sdpa(q[qa:qa + a], k[ka:ka + b], v[ka:ka + b],
                              causal, SDPBackend.FLASH_ATTENTION)
    row = {"shape": name, "causal": causal}
    out = torch.empty_like(q)
    for tuning in tunings:
        knobs = dict((kv.split("=")[0], int(kv.split("=")[1]))
                     for kv in tuning.split(",") if kv)
        w = fijit.BatchPrefillWithRaggedKVCacheWrapper()
        w.plan(qo_ptr, kv_ptr, HQ, HK, D, causal=causal,
               q_data_type=torch.bfloat16, **knobs)
        fn = lambda: w.run(q, k, v, out=out)  # noqa: E731
        out.fill_(float("nan"))
        fn()
        err = ((out.float() - ref.float()).norm() / ref.float().norm()).item()
        if not err < 2e-2:
            raise SystemExit(f"fijit ({tuning or 'default'}) disagrees with "
                             f"SDPA on {name}: {err}")
        row[tuning or "default"] = flops / median_ms(fn, back_to_back=3) / 1e9
    if flashinfer is not None:
        # FlashInfer's FA3 ragged wrapper on the same tensors; its JIT
        # compile happens at the first run, outside the timed region.
        ws = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
        w = flashinfer.BatchPrefillWithRaggedKVCacheWrapper(ws, "NHD",
                                                            backend="fa3")
        w.plan(qo_ptr, kv_ptr, HQ, HK, D, causal=causal,
               q_data_type=torch.bfloat16)
        fo = w.run(q, k, v)
        err = ((fo.float() - ref.float()).norm() / ref.float().norm()).item()
        if err < 2e-2:
            row["fa3"] = flops / median_ms(lambda: w.run(q, k, v),
                                           back_to_back=3) / 1e9
    if len(set(qo_lens)) == 1 and len(set(kv_lens)) == 1:
        b = len(qo_lens)
        qb, kb, vb = (x.view(b, -1, *x.shape[1:]) for x in (q, k, v))
        row["cudnn"] = flops / median_ms(
            lambda: sdpa(qb, kb, vb, causal, SDPBackend.CUDNN_ATTENTION),
            back_to_back=3) / 1e9
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tunings", default=",num_warps=8,num_warps=8:tile_kv=128",
                    help="comma-separated tunings, knobs joined by ':' "
                         "(empty: the defaults)")
    ap.add_argument("--json", help="write rows here")
    ap.add_argument("--flashinfer", action="store_true",
                    help="also FlashInfer's FA3 ragged wrapper (needs "
                         "flashinfer importable)")
    args = ap.parse_args()
    flashinfer = None
    if args.flashinfer:
        import flashinfer
    tunings = [t.replace(":", ",") for t in args.tunings.split(",")]
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}, "
          f"fijit {fijit.__version__}; D{D}, {HQ}:{HK} heads, bf16, TFLOP/s")
    cols = [t or "default" for t in tunings] + ["cudnn"] + (
        ["fa3"] if flashinfer else [])
    print("| shape | " + " | ".join(cols) + " |")
    print("| --- |" + " --- |" * len(cols))
    rows = []
    for name, qo, kv, causal in SHAPES:
        r = run(name, qo, kv, causal, tunings, flashinfer)
        rows.append(r)
        cells = [f"{r[c]:.0f}" if c in r else "–" for c in cols]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    if args.json:
        json.dump(rows, open(args.json, "w"), indent=1)


if __name__ == "__main__":
    main()
