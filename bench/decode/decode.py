"""Decode speed in GB/s (K+V bytes read once / time) at the ANCHORS.md
shapes: fijit dense and paged (page sizes 1 and 16) beside SDPA's flash and
cuDNN backends and the device copy ceiling, all in one run. Each fijit
result is first checked against SDPA."""
import argparse
import json
import os
import statistics
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "common"))
from timing import copy_bandwidth_gbs, median_ms  # noqa: E402

import fijit  # noqa: E402

SHAPES = [(64, 4096, 32, 8), (16, 16384, 32, 8), (128, 2048, 32, 32),
          (256, 1024, 64, 8)]
D = 128


def paged_cache(k, v, page_size):
    """[B, Hk, N, D] -> NHD pages in shuffled order and the page table."""
    b, hk, n, d = k.shape
    pages = n // page_size
    order = torch.randperm(b * pages, device="cuda")
    kc = torch.empty(b * pages, page_size, hk, d, device="cuda",
                     dtype=k.dtype)
    vc = torch.empty_like(kc)
    kc[order] = k.permute(0, 2, 1, 3).reshape(b * pages, page_size, hk, d)
    vc[order] = v.permute(0, 2, 1, 3).reshape(b * pages, page_size, hk, d)
    indptr = torch.arange(0, b * pages + 1, pages, dtype=torch.int32,
                          device="cuda")
    last = torch.full((b,), page_size, dtype=torch.int32, device="cuda")
    return (kc, vc), indptr, order.to(torch.int32), last


def run(batch, n, hq, hk, tuning, variants=("dense", "paged16", "paged1"),
        baselines=True, split=None, rounds=1):
    """GB/s of each variant; with rounds > 1 every variant and baseline is
    timed once per round, in turn, and the median over rounds is kept (clock
    and neighbour drift then hit all of them alike)."""
    q = torch.randn(batch, hq, D, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(batch, hk, n, D, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    nbytes = 2 * k.numel() * k.element_size()
    row = {"batch": batch, "kv_len": n, "qo_heads": hq, "kv_heads": hk}
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        ref = F.scaled_dot_product_attention(
            q.unsqueeze(2), k, v, enable_gqa=True).squeeze(2)
    ws = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
    timed = {}
    for label, page_size in (("dense", n), ("paged16", 16), ("paged1", 1),
                             ("dense_hnd", n)):
        if label not in variants:
            continue
        layout = "NHD"
        if label == "dense_hnd":
            # One page per request in HND: [B, Hk, N, D], SDPA's own layout.
            layout = "HND"
            cache = (k, v)
            indptr = torch.arange(batch + 1, dtype=torch.int32, device="cuda")
            indices = torch.arange(batch, dtype=torch.int32, device="cuda")
            last = torch.full((batch,), n, dtype=torch.int32, device="cuda")
        else:
            cache, indptr, indices, last = paged_cache(k, v, page_size)
        w = fijit.BatchDecodeWithPagedKVCacheWrapper(ws, layout)
        w.plan(indptr, indices, last, hq, hk, D, page_size,
               q_data_type=torch.bfloat16, kv_chunk=split, **tuning)
        out = torch.full_like(q, float("nan"))
        w.run(q, cache, out=out)
        err = ((out.float() - ref.float()).norm() / ref.float().norm()).item()
        if not err <= 2e-2:
            raise SystemExit(f"fijit {label} disagrees with SDPA: {err}")
        timed[label] = lambda w=w, c=cache, o=out: w.run(q, c, out=o)
    qs = q.unsqueeze(2)
    backends = (("flash", SDPBackend.FLASH_ATTENTION),
                ("cudnn", SDPBackend.CUDNN_ATTENTION)) if baselines else ()
    for label, backend in backends:
        def sdpa(backend=backend):
            with sdpa_kernel(backend):
                F.scaled_dot_product_attention(qs, k, v, enable_gqa=True)
        try:
            sdpa()
            timed[label] = sdpa
        except RuntimeError:
            row[label] = None
    samples = {label: [] for label in timed}
    for _ in range(rounds):
        for label, fn in timed.items():
            # Ten calls per sample: a decode step is short enough (~0.4 ms)
            # that one call's Python and launch overhead would show.
            samples[label].append(
                nbytes / median_ms(fn, back_to_back=10) / 1e6)
    for label, xs in samples.items():
        row[label] = statistics.median(xs)
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--tuning", default="")
    ap.add_argument("--sweep", action="store_true",
                    help="dense fijit only, over tuning knobs")
    ap.add_argument("--tunings", default="",
                    help="dense fijit only (NHD and HND): ';'-separated "
                    "num_warps,stages,tile_kv points, interleaved with "
                    "cuDNN over two rounds")
    ap.add_argument("--splits", default="",
                    help="dense fijit only: comma-separated split counts "
                    "per shape (chunk = ceil(tiles / splits) tiles), "
                    "interleaved with cuDNN over three rounds")
    args = ap.parse_args()
    tuning = dict((kv.split("=")[0], int(kv.split("=")[1]))
                  for kv in args.tuning.split(",") if kv)
    ceiling = copy_bandwidth_gbs()
    if args.tunings:
        points = [tuple(int(x) for x in p.split(","))
                  for p in args.tunings.split(";")]
        for b, n, hq, hk in SHAPES:
            for rnd in range(2):
                cells = []
                for warps, stages, tile_kv in points:
                    t = dict(num_warps=warps, stages=stages, tile_kv=tile_kv)
                    try:
                        r = run(b, n, hq, hk, t, ("dense", "dense_hnd"),
                                False)
                        cells.append(f"{warps},{stages},{tile_kv}="
                                     f"{r['dense']:.0f}/{r['dense_hnd']:.0f}")
                    except Exception as e:  # e.g. over the smem limit
                        cells.append(f"{warps},{stages},{tile_kv}=({e})")
                cudnn = run(b, n, hq, hk, tuning, (), True)["cudnn"]
                print(f"{b}x{n} {hq}:{hk} round {rnd} (NHD/HND): " +
                      " ".join(cells) + f" cudnn={cudnn:.0f} "
                      f"copy={ceiling:.0f}", flush=True)
        return
    if args.splits:
        counts = [int(x) for x in args.splits.split(",")]
        for b, n, hq, hk in SHAPES:
            tiles = n // 64
            for rnd in range(3):
                cells = []
                for s in counts:
                    chunk = -(-tiles // s) * 64
                    r = run(b, n, hq, hk, tuning, ("dense",), False, chunk)
                    cells.append(f"s{s}={r['dense']:.0f}")
                cudnn = run(b, n, hq, hk, tuning, (), True)["cudnn"]
                print(f"{b}x{n} {hq}:{hk} round {rnd}: " + " ".join(cells) +
                      f" cudnn={cudnn:.0f} copy={ceiling:.0f}", flush=True)
        return
    if args.sweep:
        for split in (None, 512, 2048):
            for warps, stages, tile_kv in ((4, 2, 64), (4, 3, 64), (4, 4, 32),
                                           (8, 2, 64)):
                t = dict(num_warps=warps, stages=stages, tile_kv=tile_kv)
                try:
                    res = [run(*s, t, ("dense",), False, split)["dense"]
                           for s in SHAPES]
                except Exception as e:  # e.g. over the shared memory limit
                    print(f"{t} split={split}: {e}")
                    continue
                print(f"{t} split={split}: " +
                      " ".join(f"{r:.0f}" for r in res), flush=True)
        return
    print(f"# {torch.cuda.get_device_name()}, copy ceiling {ceiling:.0f} "
          f"GB/s, tuning {tuning or 'default'}")
    print("| batch | kv_len | qo:kv heads | fijit dense | paged 16 | paged 1 "
          "| flash | cudnn | dense / copy |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    rows = []
    fmt = lambda x: "–" if x is None else f"{x:.0f}"  # noqa: E731
    for shape in SHAPES:
        r = run(*shape, tuning, rounds=3)
        r["copy"] = ceiling
        rows.append(r)
        print(f"| {r['batch']} | {r['kv_len']} | {r['qo_heads']}:"
              f"{r['kv_heads']} | {fmt(r['dense'])} | {fmt(r['paged16'])} | "
              f"{fmt(r['paged1'])} | {fmt(r['flash'])} | {fmt(r['cudnn'])} "
              f"| {r['dense'] / ceiling:.0%} |", flush=True)
    if args.json:
        json.dump(rows, open(args.json, "w"), indent=1)


if __name__ == "__main__":
    main()
