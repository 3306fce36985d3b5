"""Decode speed in GB/s (K+V bytes read once / time) at the ANCHORS.md
shapes: fijit dense and paged (page sizes 1 and 16) beside SDPA's flash and
cuDNN backends, the device copy ceiling and the read-only ceiling (a
stream of 16-byte loads: what decode, which only reads, is held to), all
in one run. Each fijit
result is first checked against SDPA.

--fp8 adds fijit over an fp8 (e4m3) KV cache, dense and paged 16, with
FlashInfer's per-tensor k_scale and v_scale (GB/s of the fp8 bytes read:
half the bf16 bytes for the same shape). --flashinfer cc,tc adds
FlashInfer's BatchDecodeWithPagedKVCacheWrapper (CUDA-core and/or tensor-
core kernels) over the same page-16 caches, bf16 and, with --fp8, fp8 with
the same scales (FlashInfer multiplies its output by v_scale in a second
kernel; fijit in the kernel). FlashInfer must be importable (source
.carry/flashinfer/env.sh, see ../../shared/flashinfer); its JIT compile
happens in the checked first call, outside the timed region."""
import argparse
import json
import os
import statistics
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "common"))
from timing import (copy_bandwidth_gbs, median_ms,  # noqa: E402
                    read_bandwidth_gbs)

import fijit  # noqa: E402

SHAPES = [(64, 4096, 32, 8), (16, 16384, 32, 8), (128, 2048, 32, 32),
          (256, 1024, 64, 8)]
D = 128
FP8 = torch.float8_e4m3fn
# FlashInfer's per-tensor scales of the fp8 cache: k_fp8 = k / K_SCALE.
K_SCALE, V_SCALE = 0.37, 1.9


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


def check(label, out, ref):
    err = ((out.float() - ref.float()).norm() / ref.float().norm()).item()
    if not err <= 2e-2:
        raise SystemExit(f"{label} disagrees with SDPA: {err}")


def sdpa_flash(q, k, v):
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        return F.scaled_dot_product_attention(
            q.unsqueeze(2), k, v, enable_gqa=True).squeeze(2)


def run(batch, n, hq, hk, tuning, variants=("dense", "paged16", "paged1"),
        baselines=True, split=None, rounds=1, fp8=False, flashinfer=None,
        fi_modes=()):
    """GB/s of each variant; with rounds > 1 every variant and baseline is
    timed once per round, in turn, and the median over rounds is kept (clock
    and neighbour drift then hit all of them alike). fp8: fijit over an
    e4m3 cache too (fp8_dense, fp8_paged16); flashinfer (the module) with
    fi_modes ("cc", "tc"): FlashInfer's decode over the page-16 caches."""
    q = torch.randn(batch, hq, D, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(batch, hk, n, D, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    nbytes = 2 * k.numel() * k.element_size()
    row = {"batch": batch, "kv_len": n, "qo_heads": hq, "kv_heads": hk}
    ref = sdpa_flash(q, k, v)
    ws = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
    timed, caches = {}, {}
    # Each label's bytes read, where not the bf16 cache's.
    label_bytes = {}
    if fp8:
        # An engine's fp8 cache: k / k_scale in e4m3 (elementwise, so the
        # paged copies below quantise the same values); SDPA's reference
        # reads what it holds.
        k8 = (k.float() / K_SCALE).to(FP8)
        v8 = (v.float() / V_SCALE).to(FP8)
        ref8 = sdpa_flash(q, (k8.float() * K_SCALE).to(k.dtype),
                          (v8.float() * V_SCALE).to(v.dtype))
        for label, page_size in (("fp8_dense", n), ("fp8_paged16", 16)):
            if page_size != 16 and "dense" not in variants:
                continue
            cache, indptr, indices, last = paged_cache(k, v, page_size)
            cache = ((cache[0].float() / K_SCALE).to(FP8),
                     (cache[1].float() / V_SCALE).to(FP8))
            caches[label] = (cache, indptr, indices, last)
            w = fijit.BatchDecodeWithPagedKVCacheWrapper(ws, "NHD")
            w.plan(indptr, indices, last, hq, hk, D, page_size,
                   q_data_type=torch.bfloat16, kv_data_type=FP8,
                   kv_chunk=split, **tuning)
            out = torch.full_like(q, float("nan"))
            w.run(q, cache, out=out, k_scale=K_SCALE, v_scale=V_SCALE)
            check(f"fijit {label}", out, ref8)
            timed[label] = lambda w=w, c=cache, o=out: w.run(
                q, c, out=o, k_scale=K_SCALE, v_scale=V_SCALE)
            label_bytes[label] = 2 * k8.numel()
        del k8, v8
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
            caches[label] = (cache, indptr, indices, last)
        w = fijit.BatchDecodeWithPagedKVCacheWrapper(ws, layout)
        w.plan(indptr, indices, last, hq, hk, D, page_size,
               q_data_type=torch.bfloat16, kv_chunk=split, **tuning)
        out = torch.full_like(q, float("nan"))
        w.run(q, cache, out=out)
        check(f"fijit {label}", out, ref)
        timed[label] = lambda w=w, c=cache, o=out: w.run(q, c, out=o)
    if flashinfer is not None:
        if "paged16" not in caches:
            caches["paged16"] = paged_cache(k, v, 16)
        fi_ws = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
        kinds = [("bf16", "paged16", torch.bfloat16, {}, ref)]
        if fp8:
            kinds.append(("fp8", "fp8_paged16", FP8,
                          dict(k_scale=K_SCALE, v_scale=V_SCALE), ref8))
        for mode in fi_modes:
            for dtype_label, cache_label, kv_dtype, scales, expect in kinds:
                label = f"fi_{dtype_label}_{mode}"
                cache, indptr, indices, last = caches[cache_label]
                try:
                    w = flashinfer.BatchDecodeWithPagedKVCacheWrapper(
                        fi_ws, "NHD", use_tensor_cores=mode == "tc",
                        backend="fa2")
                    w.plan(indptr, indices, last, hq, hk, D, 16,
                           q_data_type=torch.bfloat16,
                           kv_data_type=kv_dtype)
                    check(f"FlashInfer {label}", w.run(q, cache, **scales),
                          expect)
                except Exception as e:  # a module FlashInfer cannot build
                    print(f"# FlashInfer {label}: {e}", flush=True)
                    row[label] = None
                    continue
                timed[label] = lambda w=w, c=cache, s=scales: w.run(q, c,
                                                                    **s)
                if kv_dtype == FP8:
                    label_bytes[label] = nbytes // 2
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
            samples[label].append(label_bytes.get(label, nbytes) /
                                  median_ms(fn, back_to_back=10) / 1e6)
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
    ap.add_argument("--fp8", action="store_true",
                    help="also fijit over an fp8 (e4m3) cache with "
                    "k_scale/v_scale, dense and paged 16")
    ap.add_argument("--flashinfer", default="",
                    help="FlashInfer's decode wrapper beside fijit's on the "
                    "page-16 caches: cc (CUDA cores), tc (tensor cores) or "
                    "cc,tc; bf16, and fp8 with --fp8 (needs flashinfer "
                    "importable)")
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
    fi_modes = [m for m in args.flashinfer.split(",") if m]
    if any(m not in ("cc", "tc") for m in fi_modes):
        ap.error("--flashinfer takes cc, tc or cc,tc")
    flashinfer = None
    if fi_modes:
        try:
            import flashinfer
        except ImportError as e:
            print(f"# FlashInfer not importable ({e}): its columns are "
                  "left out")
            fi_modes = []
    columns = [("fijit dense", "dense"), ("paged 16", "paged16"),
               ("paged 1", "paged1")]
    if args.fp8:
        columns += [("fp8 dense", "fp8_dense"), ("fp8 paged 16",
                                                 "fp8_paged16")]
    columns += [("flash", "flash"), ("cudnn", "cudnn")]
    for mode in fi_modes:
        columns.append((f"FlashInfer {mode} bf16", f"fi_bf16_{mode}"))
        if args.fp8:
            columns.append((f"FlashInfer {mode} fp8", f"fi_fp8_{mode}"))
    read = read_bandwidth_gbs()
    print(f"# {torch.cuda.get_device_name()}, copy ceiling {ceiling:.0f} "
          f"GB/s, read ceiling "
          f"{'– (no Triton)' if read is None else f'{read:.0f}'} GB/s, "
          f"tuning {tuning or 'default'}"
          + (f"; fp8 columns: GB/s of the e4m3 bytes read (half of bf16's),"
             f" k_scale={K_SCALE}, v_scale={V_SCALE}" if args.fp8 else ""))
    print("| batch | kv_len | qo:kv heads | " +
          " | ".join(name for name, _ in columns) +
          " | dense / copy | dense / read | paged 1 / dense | paged 16 / dense |")
    print("| --- " * (len(columns) + 7) + "|")
    rows = []
    fmt = lambda x: "–" if x is None else f"{x:.0f}"  # noqa: E731
    for shape in SHAPES:
        r = run(*shape, tuning, rounds=3, fp8=args.fp8,
                flashinfer=flashinfer, fi_modes=fi_modes)
        r["copy"], r["read"] = ceiling, read
        rows.append(r)
        ratio = lambda a, b: "–" if not a or not b else f"{a / b:.0%}"  # noqa: E731
        print(f"| {r['batch']} | {r['kv_len']} | {r['qo_heads']}:"
              f"{r['kv_heads']} | " +
              " | ".join(fmt(r.get(key)) for _, key in columns) +
              f" | {ratio(r['dense'], ceiling)} | {ratio(r['dense'], read)}"
              f" | {ratio(r.get('paged1'), r['dense'])}"
              f" | {ratio(r.get('paged16'), r['dense'])} |", flush=True)
    if args.json:
        json.dump(rows, open(args.json, "w"), indent=1)


if __name__ == "__main__":
    main()
