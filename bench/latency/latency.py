"""Compile latency: config -> loaded function, by cache tier.

- cold: empty fijit cache, driver cache off (CUDA_CACHE_DISABLE=1), in a
  process where CUDA is already set up (another kernel loaded first): the
  loaded function a caller gets (the provisional stand-in where the config
  has one), when the config's own kernel is ready behind it, and the same
  with FIJIT_TIERED=0 (the caller waits for the config's own kernel);
- disk: a new process, the same cache: index -> PTX -> cached cubin;
- memory: a repeat call in the process;
- triton: the cold compile of a plain Triton attention kernel, same run.
Each cold/disk figure is the median over fresh processes.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CONFIG = dict(head_dim_qk=128, head_dim_vo=128, num_qo_heads=32,
              num_kv_heads=8, mask="causal")

CHILD = r"""
import json, sys, time, torch, fijit
torch.empty(1, device="cuda")
# Set up the driver with an unrelated kernel so only our config is timed.
fijit.compile_attention(head_dim_qk=64, head_dim_vo=64, num_qo_heads=4,
                        num_kv_heads=4).load()
cfg = fijit.AttentionConfig(**json.loads(sys.argv[1]))
t0 = time.perf_counter()
k = fijit.compile_attention(cfg)
t1 = time.perf_counter()
k.load()
t2 = time.perf_counter()
fijit.wait_for_background_compiles()
t_ready = time.perf_counter()
n = 20000
t3 = time.perf_counter()
for _ in range(n):
    fijit.compile_attention(cfg)
t4 = time.perf_counter()
print(json.dumps({"tier": k.tier, "provisional": k.provisional,
                  "kernel_config": k.kernel_config,
                  "get_ms": (t1 - t0) * 1e3,
                  "load_ms": (t2 - t1) * 1e3, "total_ms": (t2 - t0) * 1e3,
                  "ready_ms": (t_ready - t0) * 1e3,
                  "memory_us": (t4 - t3) / n * 1e6}))
"""

TRITON_CHILD = r"""
import sys, time, torch
sys.path.insert(0, sys.argv[1])
from triton_attention import triton_attention
q = torch.randn(1024, 32, 128, device="cuda", dtype=torch.bfloat16)
torch.cuda.synchronize()
t0 = time.perf_counter()
triton_attention(q, q, q, True)
torch.cuda.synchronize()
t1 = time.perf_counter()
triton_attention(q, q, q, True)
torch.cuda.synchronize()
t2 = time.perf_counter()
print((t1 - t0 - (t2 - t1)) * 1e3)
"""


def child(cache_dir, extra_env=None):
    env = dict(os.environ, FIJIT_CACHE_DIR=cache_dir, CUDA_CACHE_DISABLE="1")
    env.update(extra_env or {})
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(CONFIG)],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(reps=5, with_triton=True):
    cold, untiered, disk = [], [], []
    for _ in range(reps):
        with tempfile.TemporaryDirectory() as d:
            cold.append(child(d))
            disk.append(child(d))
        with tempfile.TemporaryDirectory() as d:
            untiered.append(child(d, {"FIJIT_TIERED": "0"}))
    assert all(r["tier"] == "compiled" for r in cold + untiered), cold
    assert not any(r["provisional"] for r in untiered + disk), untiered
    assert all(r["tier"] == "disk" for r in disk), disk
    common = os.path.join(os.path.dirname(__file__), "..", "common")
    triton_ms = []
    for _ in range(3 if with_triton else 0):
        with tempfile.TemporaryDirectory() as d:
            env = dict(os.environ, TRITON_CACHE_DIR=d)
            out = subprocess.run([sys.executable, "-c", TRITON_CHILD, common],
                                 env=env, capture_output=True, text=True,
                                 check=True)
            triton_ms.append(float(out.stdout.strip().splitlines()[-1]))
    med = lambda rows, k: statistics.median(r[k] for r in rows)  # noqa
    result = {
        "config": CONFIG,
        "cold_total_ms": med(cold, "total_ms"),
        "cold_compile_ms": med(cold, "get_ms"),
        "cold_driver_link_load_ms": med(cold, "load_ms"),
        "cold_provisional": cold[0]["provisional"],
        "cold_kernel_config": cold[0]["kernel_config"],
        "cold_own_kernel_ready_ms": med(cold, "ready_ms"),
        "untiered_total_ms": med(untiered, "total_ms"),
        "untiered_compile_ms": med(untiered, "get_ms"),
        "untiered_driver_link_load_ms": med(untiered, "load_ms"),
        "own_kernel_config": disk[0]["kernel_config"],
        "disk_total_ms": med(disk, "total_ms"),
        "disk_get_ms": med(disk, "get_ms"),
        "disk_load_ms": med(disk, "load_ms"),
        "memory_hit_us": med(disk, "memory_us"),
        "triton_cold_ms": (statistics.median(triton_ms) if triton_ms
                           else None),
        "reps": reps,
    }
    print(f"# config {json.dumps(CONFIG)}")
    print(f"# its kernel: {result['own_kernel_config']}")
    if result["cold_provisional"]:
        print(f"# stand-in: {result['cold_kernel_config']}")
    print("| tier | median |\n| --- | --- |")
    stand_in = " (provisional stand-in)" if result["cold_provisional"] else ""
    print(f"| cold: config -> loaded function{stand_in} | "
          f"{result['cold_total_ms']:.1f} ms (compile "
          f"{result['cold_compile_ms']:.1f} + driver link/load "
          f"{result['cold_driver_link_load_ms']:.1f}) |")
    if result["cold_provisional"]:
        print(f"| cold: the config's own kernel loaded, behind it | "
              f"{result['cold_own_kernel_ready_ms']:.1f} ms |")
    print(f"| cold, FIJIT_TIERED=0: config -> its own kernel loaded | "
          f"{result['untiered_total_ms']:.1f} ms (compile "
          f"{result['untiered_compile_ms']:.1f} + driver link/load "
          f"{result['untiered_driver_link_load_ms']:.1f}) |")
    print(f"| disk hit, new process | {result['disk_total_ms']:.2f} ms "
          f"(lookup {result['disk_get_ms']:.2f} + cubin load "
          f"{result['disk_load_ms']:.2f}) |")
    print(f"| memory hit | {result['memory_hit_us']:.2f} us |")
    if triton_ms:
        print(f"| Triton cold compile (same run) | "
              f"{result['triton_cold_ms']:.0f} ms |")
    if args.json:
        json.dump(result, open(args.json, "w"), indent=1)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("json", nargs="?", help="write the medians here")
    ap.add_argument("--tuning", default="",
                    help="knobs added to the timed config, e.g. num_warps=4")
    ap.add_argument("--config", default="",
                    help="other fields of the timed config, e.g. "
                         "kind=batch_decode_paged,page_size=16")
    ap.add_argument("--no-triton", action="store_true")
    args = ap.parse_args()
    CONFIG.update((kv.split("=")[0], int(kv.split("=")[1]))
                  for kv in args.tuning.split(",") if kv)
    CONFIG.update(kv.split("=", 1) for kv in args.config.split(",") if kv)
    if CONFIG.get("kind") in ("single_decode", "batch_decode_paged"):
        CONFIG.pop("mask", None)  # decode kinds take no mask
    main(with_triton=not args.no_triton)
