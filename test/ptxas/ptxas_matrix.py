#!/usr/bin/env python3
"""Assemble the PTX of a matrix of kernel configs with ptxas.

The points, all with num_qo_heads=32 and GQA group {1, 4, 8}, target
{sm_80, sm_90a} and head_dim {64, 128, 256}:
  single_prefill       dtype {f16, bf16} x causal {no, yes}
  batch_prefill_ragged bf16 x causal {no, yes}
  batch_prefill_paged  bf16 x causal {no, yes}, page_size 16
  single_decode        bf16, mask=none (decode takes no mask)
  batch_decode_paged   bf16, mask=none, page_size 16
(single_prefill on sm_90a: the warp-specialised default, num_warps=12)
plus, at head_dim 128 on sm_90a (group {1, 4, 8}), the kernels the runtime
picks beyond the defaults:
  single_prefill       num_warps=4 (the stand-in of a cold config)
                       dtype {f16, bf16} x causal {no, yes}
  batch_prefill_*      num_warps=8,tile_kv=128 (the plan for long
                       requests) bf16 x causal {no, yes}
and single_prefill's cp.async big tiles on sm_90a (the defaults before
num_warps=12, still chosen by tuning), bf16 x causal {no, yes}:
  head_dim 64          num_warps=4,tile_kv=128 (one warpgroup)
  head_dim 128, 256    num_warps=8 (two warpgroups)
and the decode tuning sweep: single_decode bf16, group 1, on both targets,
every head_dim above x tile_kv {16, 32, 64, 128, 256} x num_warps
{1, 2, 4, 8} that fi-opt accepts (the others are listed as invalid), where
a register cap below the kernel's live values once spilled or failed;
shown as kind:tuning. Then the variants with per-head tables (VARIANTS:
ALiBi, and ALiBi with sinks, soft-cap and LSE), every kind at head_dim
{64, 128} on both targets, bf16, group 4, prefill causal. Then unequal
head dims (HEAD_DIM_PAIRS: head_dim_qk/head_dim_vo 192/128 and 128/64),
every kind on both targets, bf16, group 4, prefill causal {no, yes}, plus
on sm_90a the batch kinds' warp-specialised kernel (num_warps=12) and
single_prefill's one-warpgroup wgmma tiles (num_warps=4); shown as
qk/vo. Then FlashInfer's custom mask (mask=custom, CUSTOM_MASK): every
prefill kind at head_dim {64, 128} on both targets, bf16, group 4, by
default and with a window, soft-cap, ALiBi and the LSE, plus on sm_90a the
tiles the runtime picks beyond the defaults (single_prefill's stand-in
num_warps=4 and the tile engine's num_warps=8, the batch plan
num_warps=8,tile_kv=128, the batch kinds' warp-specialised kernel
num_warps=12); shown as custom in the causal column. Then RoPE (pos_encoding=rope, ROPE): every kind at
head_dim {64, 128} on both targets, bf16, group 4, prefill causal, alone
and with a soft-cap, sinks and the LSE, plus on sm_90a the single_prefill
stand-in and the tile engine's num_warps=8, the batch plan's tiles and the
batch kinds' warp-specialised kernel; shown as kind:fields. Then the seeded
random sample (SAMPLE_SIZE valid
configs, see SAMPLE_SEED), shown as kind:knobs and variant fields; the
last line sums it up (draws refused, configs per kind, spills).
For each, this builds the PTX with `fi-opt --fi-emit=ptx`, assembles it with
`ptxas -arch=<target> -v` and prints the kernel's registers and spill
stores/loads (every module holds exactly one kernel; decode merges its
split-KV partials in it) and the kernel's dynamic shared memory (from `fi-opt --fi-emit=launch`; ptxas only sees the
`.extern .shared` declaration and reports 0 for it).

It fails (exit status 1) if fi-opt or ptxas reports an error, if the module
holds anything but the kind's kernel, if ptxas serializes the wgmma instructions of an
sm_90a prefill kernel, or if any kernel with head_dim <= 128 spills to local
memory (unless KNOWN_SPILLS lists it), nor any with head_dim_qk <= 192
and head_dim_vo <= 128 (no_spill_expected). head_dim 256 sits at the
255-register limit with 4 warps, so its spills are reported but allowed.

Without ptxas (it ships with the CUDA toolkit only) it prints
"skipped: ptxas not found" and exits 0; lit runs it through
ptxas-matrix.test, which REQUIRES ptxas and so reports UNSUPPORTED instead.

usage: ptxas_matrix.py [--fi-opt PATH] [--ptxas PATH] [--jobs N]
                       [--workdir DIR] [--only matrix|sample]
"""

import argparse
import concurrent.futures
import itertools
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

HEAD_DIMS = (64, 128, 256)
DTYPES = ("f16", "bf16")
CAUSAL = (False, True)
GROUPS = (1, 4, 8)
TARGETS = ("sm_80", "sm_90a")
NUM_QO_HEADS = 32
PAGE_SIZE = 16
# Kind -> (dtypes, causal values). The newer kinds run bf16 only, which keeps
# the matrix's run time down; decode kinds take mask=none only.
KINDS = (
    ("single_prefill", DTYPES, CAUSAL),
    ("batch_prefill_ragged", ("bf16",), CAUSAL),
    ("batch_prefill_paged", ("bf16",), CAUSAL),
    ("single_decode", ("bf16",), (False,)),
    ("batch_decode_paged", ("bf16",), (False,)),
)
PAGED_KINDS = ("batch_prefill_paged", "batch_decode_paged")
# (kind, tuning, dtypes, head dims), on sm_90a: other tiles the runtime
# picks (at head_dim 128), then single_prefill's cp.async big tiles, the
# defaults before the warp-specialised kernel (num_warps=12) and still a
# tuning of their own.
RUNTIME_TUNINGS = (
    ("single_prefill", "num_warps=4", DTYPES, (128,)),
    ("batch_prefill_ragged", "num_warps=8,tile_kv=128", ("bf16",), (128,)),
    ("batch_prefill_paged", "num_warps=8,tile_kv=128", ("bf16",), (128,)),
    ("single_prefill", "num_warps=4,tile_kv=128", ("bf16",), (64,)),
    ("single_prefill", "num_warps=8", ("bf16",), (128, 256)),
)
# The variants that add per-head tables and per-score math (ALiBi, sinks;
# with a soft-cap and the LSE), every kind at head_dim {64, 128} on both
# targets, bf16, GQA group 4, prefill kinds causal: their kernels must not
# spill either.
VARIANTS = ("pos_encoding=alibi",
            "pos_encoding=alibi,sinks=true,logits_soft_cap=30,return_lse=true")
VARIANT_HEAD_DIMS = (64, 128)
# Unequal head dims (head_dim_qk, head_dim_vo), and the tunings beyond each
# kind's default that run them on sm_90a.
HEAD_DIM_PAIRS = ((192, 128), (128, 64))
PAIR_TUNINGS = (
    ("batch_prefill_ragged", "num_warps=12"),
    ("batch_prefill_paged", "num_warps=12"),
    ("single_prefill", "num_warps=4"),
)
# mask=custom: (kind, knobs, targets) at CUSTOM_MASK_HEAD_DIMS, bf16, group 4.
PREFILL_KINDS = ("single_prefill", "batch_prefill_ragged",
                 "batch_prefill_paged")
CUSTOM_MASK_VARIANT = ("window_left=256,logits_soft_cap=30,"
                       "pos_encoding=alibi,return_lse=true")
CUSTOM_MASK = tuple(
    (kind, knobs, TARGETS) for kind in PREFILL_KINDS
    for knobs in ("", CUSTOM_MASK_VARIANT)) + (
    ("single_prefill", "num_warps=4", ("sm_90a",)),
    ("single_prefill", "num_warps=8", ("sm_90a",)),
    ("batch_prefill_ragged", "num_warps=8,tile_kv=128", ("sm_90a",)),
    ("batch_prefill_paged", "num_warps=8,tile_kv=128", ("sm_90a",)),
    ("batch_prefill_ragged", "num_warps=12", ("sm_90a",)),
    ("batch_prefill_paged", "num_warps=12", ("sm_90a",)),
)
CUSTOM_MASK_HEAD_DIMS = (64, 128)
# pos_encoding=rope (ROPE: (kind, fields, targets)) at ROPE_HEAD_DIMS, bf16,
# group 4, prefill causal: Q and K tiles rotated in shared memory; every
# kind, alone and with the other variants, and on sm_90a the tiles the
# runtime picks beyond the defaults.
ALL_KINDS = PREFILL_KINDS + ("single_decode", "batch_decode_paged")
ROPE_VARIANT = "logits_soft_cap=30,sinks=true,return_lse=true"
ROPE = tuple(
    (kind, fields, TARGETS) for kind in ALL_KINDS
    for fields in ("pos_encoding=rope", "pos_encoding=rope," + ROPE_VARIANT)
) + (
    ("single_prefill", "pos_encoding=rope,num_warps=4", ("sm_90a",)),
    ("single_prefill", "pos_encoding=rope,num_warps=8", ("sm_90a",)),
    ("batch_prefill_ragged", "pos_encoding=rope,num_warps=8,tile_kv=128",
     ("sm_90a",)),
    ("batch_prefill_paged", "pos_encoding=rope,num_warps=8,tile_kv=128",
     ("sm_90a",)),
    ("batch_prefill_ragged", "pos_encoding=rope,num_warps=12", ("sm_90a",)),
    ("batch_prefill_paged", "pos_encoding=rope,num_warps=12", ("sm_90a",)),
)
ROPE_HEAD_DIMS = (64, 128)
# The decode sweep: tile_kv x num_warps at every head dim (group 1).
SWEEP_TILE_KV = (16, 32, 64, 128, 256)
SWEEP_NUM_WARPS = (1, 2, 4, 8)
# The seeded random sample: SAMPLE_SIZE valid configs, the first ones that
# validate among draws from random.Random(SAMPLE_SEED) over every kind,
# head_dim {64, 128, 256}, dtype, GQA group {1 .. 64}, mask, sliding window,
# soft-cap, LSE, KV layout, page size, target {sm_80, sm_90a} and the tuning
# knobs (each left at its default or drawn from its whole range). Draws
# that fi-opt refuses (shared memory, tile_q against num_warps, ...) are
# counted and skipped, so the sample is the same on every run of one build.
SAMPLE_SEED = 15
SAMPLE_SIZE = 240
SAMPLE_KINDS = ("single_prefill", "batch_prefill_ragged",
                "batch_prefill_paged", "single_decode", "batch_decode_paged")
SAMPLE_GROUPS = (1, 2, 4, 8, 16, 32, 64)
# Kernels up to this head dim must not spill.
NO_SPILL_MAX_HEAD_DIM = 128
# Nor those with unequal head dims up to these: Q and K add to the shared
# memory and to mma.sync's Q fragments, V to the output accumulators.
NO_SPILL_MAX_HEAD_DIMS_QK_VO = (192, 128)
# Points known to break the no-spill rule: (kind:tuning, head_dim, mask,
# group, target) -> why. They are reported as XFAIL; one that no longer
# spills is reported as XPASS and fails the run, so that its entry goes
# away with the fix.
KNOWN_SPILLS = {}


def find_ptxas(explicit):
    """Returns (path or None, the places searched)."""
    if explicit:
        return (explicit if os.access(explicit, os.X_OK) else None), [explicit]
    candidates = []
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            candidates.append(os.path.join(os.environ[var], "bin", "ptxas"))
    candidates.append("/usr/local/cuda/bin/ptxas")
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path, candidates + ["PATH"]
    return shutil.which("ptxas"), candidates + ["PATH"]


def find_fi_opt(explicit):
    if explicit:
        return explicit
    here = os.path.dirname(os.path.abspath(__file__))
    built = os.path.join(here, "..", "..", "build", "bin", "fi-opt")
    if os.access(built, os.X_OK):
        return os.path.normpath(built)
    return shutil.which("fi-opt")


def matrix():
    for kind, dtypes, causals in KINDS:
        for head_dim, dtype, causal, group, target in itertools.product(
                HEAD_DIMS, dtypes, causals, GROUPS, TARGETS):
            yield {
                "kind": kind,
                "tuning": "",
                "head_dim": head_dim,
                "dtype": dtype,
                "causal": causal,
                "group": group,
                "target": target,
            }
    for kind, tuning, dtypes, head_dims in RUNTIME_TUNINGS:
        for head_dim, dtype, causal, group in itertools.product(
                head_dims, dtypes, CAUSAL, GROUPS):
            yield {
                "kind": kind,
                "tuning": tuning,
                "head_dim": head_dim,
                "dtype": dtype,
                "causal": causal,
                "group": group,
                "target": "sm_90a",
            }
    for head_dim, tile_kv, warps, target in itertools.product(
            HEAD_DIMS, SWEEP_TILE_KV, SWEEP_NUM_WARPS, TARGETS):
        yield {
            "kind": "single_decode",
            "tuning": f"tile_kv={tile_kv},num_warps={warps}",
            "head_dim": head_dim,
            "dtype": "bf16",
            "causal": False,
            "group": 1,
            "target": target,
            "sweep": True,
        }
    for kind, _, _ in KINDS:
        for variant, head_dim, target in itertools.product(
                VARIANTS, VARIANT_HEAD_DIMS, TARGETS):
            yield {
                "kind": kind,
                "tuning": variant,
                "head_dim": head_dim,
                "dtype": "bf16",
                "causal": "prefill" in kind,
                "group": 4,
                "target": target,
            }
    for kind, dtypes, causals in KINDS:
        for (qk, vo), causal, target in itertools.product(
                HEAD_DIM_PAIRS, causals, TARGETS):
            yield {
                "kind": kind,
                "tuning": "",
                "head_dim": qk,
                "head_dim_vo": vo,
                "dtype": "bf16",
                "causal": causal,
                "group": 4,
                "target": target,
            }
    for (kind, tuning), (qk, vo), causal in itertools.product(
            PAIR_TUNINGS, HEAD_DIM_PAIRS, CAUSAL):
        yield {
            "kind": kind,
            "tuning": tuning,
            "head_dim": qk,
            "head_dim_vo": vo,
            "dtype": "bf16",
            "causal": causal,
            "group": 4,
            "target": "sm_90a",
        }
    for (kind, tuning, targets), head_dim in itertools.product(
            CUSTOM_MASK, CUSTOM_MASK_HEAD_DIMS):
        for target in targets:
            yield {
                "kind": kind,
                "tuning": tuning,
                "head_dim": head_dim,
                "dtype": "bf16",
                "causal": False,
                "mask": "custom",
                "group": 4,
                "target": target,
            }
    for (kind, fields, targets), head_dim in itertools.product(
            ROPE, ROPE_HEAD_DIMS):
        for target in targets:
            yield {
                "kind": kind,
                "tuning": fields,
                "head_dim": head_dim,
                "dtype": "bf16",
                "causal": "prefill" in kind,
                "group": 4,
                "target": target,
            }


def head_dims(point):
    """(head_dim_qk, head_dim_vo) of a point."""
    return point["head_dim"], point.get("head_dim_vo", point["head_dim"])


def shown_head_dim(point):
    qk, vo = head_dims(point)
    return str(qk) if qk == vo else "%d/%d" % (qk, vo)


def no_spill_expected(point):
    qk, vo = head_dims(point)
    if qk == vo:
        return qk <= NO_SPILL_MAX_HEAD_DIM
    max_qk, max_vo = NO_SPILL_MAX_HEAD_DIMS_QK_VO
    return qk <= max_qk and vo <= max_vo


def draw_sample_point(rng):
    """One random config (valid or not) of the sample."""
    kind = rng.choice(SAMPLE_KINDS)
    prefill = "prefill" in kind
    target = rng.choice(TARGETS)
    head_dim = rng.choice(HEAD_DIMS)
    group = rng.choice(SAMPLE_GROUPS)
    knobs = []
    if rng.random() < 0.5:
        warps = [1, 2, 4, 8]
        if kind == "single_prefill" and target == "sm_90a":
            warps.append(12)
        knobs.append("num_warps=%d" % rng.choice(warps))
    if rng.random() < 0.5:
        knobs.append("tile_kv=%d" % (16 * rng.randint(1, 16)))
    if not prefill and rng.random() < 0.25:
        # Prefill derives tile_q from num_warps; decode may pad the group
        # further.
        knobs.append("tile_q=%d" % (16 * rng.randint(1, 8)))
    if rng.random() < 0.3:
        knobs.append("stages=%d" % rng.randint(2, 4))
    extra = []
    if rng.random() < 0.25:
        extra.append("window_left=%d" % rng.choice((0, 37, 256, 4000)))
    if rng.random() < 0.25:
        extra.append("logits_soft_cap=%g" % rng.choice((15.0, 30.0, 50.0)))
    if rng.random() < 0.5:
        extra.append("return_lse=true")
    if rng.random() < 0.3:
        extra.append("kv_layout=HND")
    return {
        "kind": kind,
        "tuning": ",".join(knobs + extra),
        "head_dim": head_dim,
        "dtype": rng.choice(DTYPES),
        "causal": prefill and rng.random() < 0.5,
        "group": group,
        "target": target,
        "page_size": rng.choice((1, 16, 64)) if kind in PAGED_KINDS else None,
        "sample": True,
    }


def sample_points(fi_opt, pool):
    """(the first SAMPLE_SIZE valid draws in draw order, how many draws
    were refused). Draws are validated SAMPLE_SIZE at a time by fi-opt."""
    rng = random.Random(SAMPLE_SEED)
    valid, refused, seen = [], 0, set()
    while len(valid) < SAMPLE_SIZE:
        batch = [draw_sample_point(rng) for _ in range(SAMPLE_SIZE)]
        ok = pool.map(lambda p: subprocess.run(
            [fi_opt, "--fi-build=" + config_text(p), "--fi-emit=config"],
            capture_output=True).returncode == 0, batch)
        for point, accepted in zip(batch, ok):
            if len(valid) == SAMPLE_SIZE:
                break
            if not accepted:
                refused += 1
            elif config_text(point) not in seen:
                seen.add(config_text(point))
                point["sample"] = len(valid) + 1
                valid.append(point)
    return valid, refused


def mask_of(point):
    return point.get("mask") or ("causal" if point["causal"] else "none")


def config_text(point):
    (qk, vo), t = head_dims(point), point["dtype"]
    num_qo_heads = max(NUM_QO_HEADS, point["group"])
    fields = [
        "kind=" + point["kind"],
        f"head_dim_qk={qk}", f"head_dim_vo={vo}",
        f"num_qo_heads={num_qo_heads}",
        f"num_kv_heads={num_qo_heads // point['group']}",
        f"dtype_q={t}", f"dtype_kv={t}", f"dtype_o={t}",
        "mask=" + mask_of(point),
        "target=" + point["target"],
    ]
    if point["kind"] in PAGED_KINDS:
        fields.append(f"page_size={point.get('page_size') or PAGE_SIZE}")
    if point["tuning"]:
        fields.append(point["tuning"])
    return ",".join(fields)


def shown_kind(point):
    """The kind, and its tuning where it is not the default (a sampled
    point's page size too)."""
    shown = point["kind"] + (":" + point["tuning"] if point["tuning"] else "")
    if point.get("page_size"):
        shown += ("," if point["tuning"] else ":") + (
            "page_size=%d" % point["page_size"])
    return shown


def point_name(point):
    return "{kind}_d{shown}_{dtype}_{mask}_g{group}_{target}{tuning}".format(
        shown=shown_head_dim(point).replace("/", "_"),
        **dict(point, mask=mask_of(point), kind=point["kind"] + ("_s%d" % point["sample"]
                                            if point.get("sample") else ""),
               tuning=re.sub(r"[=,.]", "_", "_" + shown_kind(point)
                             .partition(":")[2]) if ":" in shown_kind(point)
               else ""))


def parse_ptxas_log(log):
    """{entry name: (registers, spill stores, spill loads)} from `ptxas -v`,
    or None if an entry's numbers are missing."""
    entries = {}
    sections = re.split(r"Compiling entry function '([^']+)'", log)
    # sections = [preamble, name0, body0, name1, body1, ...]
    for name, body in zip(sections[1::2], sections[2::2]):
        regs = re.search(r"Used (\d+) registers", body)
        spills = re.search(
            r"(\d+) bytes spill stores, (\d+) bytes spill loads", body)
        if not regs or not spills:
            return None
        entries[name] = (int(regs.group(1)), int(spills.group(1)),
                         int(spills.group(2)))
    return entries


def last_lines(text, n=5):
    return " | ".join(text.strip().splitlines()[-n:])


def run_point(point, fi_opt, ptxas, workdir):
    """Builds and assembles one config; returns a result dict."""
    result = dict(point, regs=None, spill_stores=None,
                  spill_loads=None, smem=None, error=None, invalid=None)
    name = point_name(point)
    config = "--fi-build=" + config_text(point)
    ptx = os.path.join(workdir, name + ".ptx")
    cubin = os.path.join(workdir, name + ".cubin")

    launch = subprocess.run([fi_opt, config, "--fi-emit=launch"],
                            capture_output=True, text=True)
    if launch.returncode != 0:
        # A sweep covers every knob value; validate() refuses some of them.
        if point.get("sweep") and "invalid " in launch.stderr:
            result["invalid"] = last_lines(launch.stderr, 1)
        else:
            result["error"] = "fi-opt launch: " + last_lines(launch.stderr)
        return result
    launch_info = json.loads(launch.stdout)
    result["smem"] = launch_info["shared_memory_bytes"]
    kernel = launch_info["kernel"]

    built = subprocess.run([fi_opt, config, "--fi-emit=ptx", "-o", ptx],
                           capture_output=True, text=True)
    if built.returncode != 0:
        result["error"] = "fi-opt ptx: " + last_lines(built.stderr)
        return result

    asm = subprocess.run(
        [ptxas, "-arch=" + point["target"], "-v", ptx, "-o", cubin],
        capture_output=True, text=True)
    log = asm.stdout + asm.stderr
    if asm.returncode != 0 or re.search(r"\berror\b", log, re.IGNORECASE):
        result["error"] = "ptxas: " + last_lines(log)
        return result

    # ptxas keeps wgmma asynchronous only while it can leave the accumulators
    # in place; otherwise it serializes them and says so in a warning.
    serialized = re.search(r"[^\n]*wgmma[^\n]*serialized[^\n]*", log)
    if serialized:
        result["error"] = "ptxas: " + serialized.group(0).strip()
        return result
    entries = parse_ptxas_log(log)
    if not entries:
        result["error"] = "cannot parse ptxas -v output: " + last_lines(log)
        return result
    # One kernel per module: decode merges its splits in the kernel itself.
    expected = {kernel}
    if set(entries) != expected:
        result["error"] = "ptxas compiled %s, expected %s" % (
            ", ".join(sorted(entries)), ", ".join(sorted(expected)))
        return result
    result["regs"], result["spill_stores"], result["spill_loads"] = (
        entries[kernel])
    return result


def verdict(result):
    """(ok, status text) of one result."""
    if result["error"]:
        return False, "FAIL " + result["error"]
    if result["invalid"]:
        return True, "invalid config, not built: " + result["invalid"]
    spilled = result["spill_stores"] or result["spill_loads"]
    known = KNOWN_SPILLS.get((shown_kind(result), result["head_dim"],
                              mask_of(result), result["group"],
                              result["target"]))
    if spilled and no_spill_expected(result):
        if known:
            return True, "XFAIL spills at head_dim <= %d (known: %s)" % (
                NO_SPILL_MAX_HEAD_DIM, known)
        return False, "FAIL spills at head_dim <= %d" % NO_SPILL_MAX_HEAD_DIM
    if known:
        return False, "XPASS no spills any more: remove it from KNOWN_SPILLS"
    if spilled:
        return True, "ok (spills allowed at head_dim > %d)" % (
            NO_SPILL_MAX_HEAD_DIM)
    return True, "ok"


def print_table(results):
    header = ("kind", "head_dim", "dtype", "causal", "group", "target",
              "regs", "spill_st", "spill_ld", "smem_bytes",
              "status")
    rows = []
    failures = xfails = 0
    for r in results:
        ok, status = verdict(r)
        failures += not ok
        xfails += status.startswith("XFAIL")

        def show(v):
            return "-" if v is None else str(v)

        rows.append((shown_kind(r), shown_head_dim(r), r["dtype"],
                     {"causal": "yes", "none": "no"}.get(mask_of(r),
                                                       mask_of(r)),
                     str(r["group"]),
                     r["target"], show(r["regs"]),
                     show(r["spill_stores"]), show(r["spill_loads"]),
                     show(r["smem"]), status))
    widths = [max(len(h), *(len(row[i]) for row in rows))
              for i, h in enumerate(header)]
    # The kind column is left-aligned, the status column is last and not
    # padded.
    fmt = "  ".join(["{:<%d}" % widths[0]] +
                    ["{:>%d}" % w for w in widths[1:-1]]) + "  {}"
    print(fmt.format(*header))
    for row in rows:
        print(fmt.format(*row))
    return failures, xfails


def sample_summary(results, refused):
    """One line on the seeded sample: its size, the draws fi-opt refused,
    the configs per kind and which spilled."""
    per_kind = {k: sum(r["kind"] == k for r in results) for k in SAMPLE_KINDS}
    spills = {}
    for r in results:
        if r["spill_stores"] or r["spill_loads"]:
            small = r["head_dim"] <= NO_SPILL_MAX_HEAD_DIM
            spills.setdefault(small, []).append(r)
    return ("sample (seed %d): %d valid configs (%d draws refused by fi-opt; "
            "%s), %d failed, %d spill at head_dim <= %d, %d at head_dim > %d"
            % (SAMPLE_SEED, len(results), refused,
               ", ".join("%s %d" % kv for kv in per_kind.items()),
               sum(not verdict(r)[0] for r in results),
               len(spills.get(True, [])), NO_SPILL_MAX_HEAD_DIM,
               len(spills.get(False, [])), NO_SPILL_MAX_HEAD_DIM))


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fi-opt", help="fi-opt binary (default: "
                        "build/bin/fi-opt next to this checkout, then PATH)")
    parser.add_argument("--ptxas", help="ptxas binary (default: "
                        "$CUDA_HOME/bin, /usr/local/cuda/bin, then PATH)")
    parser.add_argument("--jobs", type=int, default=len(
                            os.sched_getaffinity(0)),
                        help="configs compiled in parallel (default: one "
                        "per CPU this process may run on)")
    parser.add_argument("--only", choices=("matrix", "sample"),
                        help="run the fixed matrix or the seeded sample "
                        "alone (default: both)")
    parser.add_argument("--workdir", help="where PTX and cubins are kept "
                        "(default: a temporary folder, removed at exit)")
    args = parser.parse_args()

    ptxas, searched = find_ptxas(args.ptxas)
    if not ptxas:
        print("skipped: ptxas not found (searched %s); install the CUDA "
              "toolkit or pass --ptxas" % ", ".join(searched))
        return 0
    fi_opt = find_fi_opt(args.fi_opt)
    if not fi_opt:
        print("error: fi-opt not found; build it or pass --fi-opt",
              file=sys.stderr)
        return 1

    version = subprocess.run([ptxas, "--version"], capture_output=True,
                             text=True).stdout.strip().splitlines()
    print("ptxas: %s (%s)" % (ptxas, version[-1] if version else "?"))
    print("fi-opt: %s" % fi_opt)

    # Each task runs fi-opt and ptxas as child processes, so threads keep
    # `jobs` of them busy.
    with tempfile.TemporaryDirectory() as tmp, \
            concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        points = list(matrix()) if args.only != "sample" else []
        sample, refused = [], 0
        if args.only != "matrix":
            sample, refused = sample_points(fi_opt, pool)
        workdir = args.workdir or tmp
        os.makedirs(workdir, exist_ok=True)
        results = list(pool.map(
            lambda p: run_point(p, fi_opt, ptxas, workdir), points + sample))

    failures, xfails = print_table(results)
    fixed = [r for r in results if not r.get("sample")]
    invalid = sum(1 for r in fixed if r["invalid"])
    if fixed:
        print("%d configs, %d failed, %d known to spill (XFAIL), %d invalid "
              "sweep points skipped" % (
                  len(fixed) - invalid,
                  sum(not verdict(r)[0] for r in fixed), xfails, invalid))
    if sample:
        print(sample_summary([r for r in results if r.get("sample")],
                             refused))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
