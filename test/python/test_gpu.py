"""GPU correctness of fijit kernels against a float32 reference.

Fresh random inputs for every case (never zeros), outputs poisoned with NaN
before each launch, lengths that are not multiples of the tiles. Marked
`gpu`: skipped with a reason where there is no CUDA device or no torch.
"""
import json
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
import fijit  # noqa: E402
from attention_reference import reference, rel_err  # noqa: E402

pytestmark = pytest.mark.gpu

DTYPES = {"f16": torch.float16, "bf16": torch.bfloat16}
LENGTHS = [(1, 1), (17, 33), (100, 227), (227, 100), (333, 1000), (64, 128)]


def inputs(qo_len, kv_len, hq, hk, d, dtype, kv_layout="NHD"):
    q = torch.randn(qo_len, hq, d, device="cuda", dtype=dtype)
    shape = (kv_len, hk, d) if kv_layout == "NHD" else (hk, kv_len, d)
    return (q, torch.randn(shape, device="cuda", dtype=dtype),
            torch.randn(shape, device="cuda", dtype=dtype))


@pytest.mark.parametrize("head_dim", [64, 128, 256])
@pytest.mark.parametrize("dtype", ["f16", "bf16"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("group", [1, 8])
def test_single_prefill_matches_reference(head_dim, dtype, causal, group):
    tol = 2e-2 if dtype == "bf16" else 5e-3
    for qo_len, kv_len in LENGTHS:
        q, k, v = inputs(qo_len, kv_len, 8, 8 // group, head_dim,
                         DTYPES[dtype])
        out = torch.full_like(q, float("nan"))
        fijit.single_prefill_with_kv_cache(q, k, v, causal=causal, out=out)
        torch.cuda.synchronize()
        assert not out.isnan().any(), f"unwritten output at {qo_len}x{kv_len}"
        ref, _ = reference(q, k, v, causal=causal)
        assert rel_err(out, ref) < tol, (qo_len, kv_len)


@pytest.mark.parametrize("variant", [
    dict(kv_layout="HND", causal=True),
    dict(window_left=100, causal=True),
    dict(window_left=37),
    dict(logits_soft_cap=30.0),
    dict(sm_scale=0.3),
])
def test_variants_and_lse(variant):
    layout = variant.get("kv_layout", "NHD")
    for qo_len, kv_len in [(100, 227), (333, 1000), (1, 50)]:
        q, k, v = inputs(qo_len, kv_len, 8, 2, 128, torch.bfloat16, layout)
        out, lse = fijit.single_prefill_with_kv_cache(
            q, k, v, return_lse=True, **variant)
        ref, ref_lse = reference(
            q, k, v, causal=variant.get("causal", False),
            sm_scale=variant.get("sm_scale"),
            window_left=variant.get("window_left", -1),
            soft_cap=variant.get("logits_soft_cap", 0.0), kv_layout=layout)
        assert rel_err(out, ref) < 2e-2
        finite = torch.isfinite(ref_lse)
        assert (lse[finite] - ref_lse[finite]).abs().max().item() < 1e-2


def test_sm80_kernel_runs_on_this_gpu():
    q, k, v = inputs(200, 300, 8, 8, 128, torch.bfloat16)
    kernel = fijit.compile_attention(head_dim_qk=128, head_dim_vo=128,
                                     num_qo_heads=8, num_kv_heads=8,
                                     mask="causal", target="sm_80")
    out = kernel(q, k, v)
    assert rel_err(out, reference(q, k, v, causal=True)[0]) < 2e-2


def test_cuda_graph_capture_and_replay():
    q, k, v = inputs(300, 500, 8, 8, 128, torch.bfloat16)
    kernel = fijit.compile_attention(head_dim_qk=128, head_dim_vo=128,
                                     num_qo_heads=8, num_kv_heads=8,
                                     mask="causal")
    out = torch.empty_like(q)
    kernel(q, k, v, out=out)  # loads the module outside the capture
    stream = torch.cuda.Stream()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.stream(stream), torch.cuda.graph(graph, stream=stream):
        kernel(q, k, v, out=out)
    for _ in range(2):
        q.copy_(torch.randn_like(q))
        out.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        assert rel_err(out, reference(q, k, v, causal=True)[0]) < 2e-2


def test_same_config_from_two_processes(tmp_path):
    script = (
        "import torch, fijit, sys\n"
        "torch.manual_seed(7)\n"
        "q = torch.randn(129, 8, 128, device='cuda', dtype=torch.bfloat16)\n"
        "k = torch.randn(257, 8, 128, device='cuda', dtype=torch.bfloat16)\n"
        "v = torch.randn_like(k)\n"
        "o = fijit.single_prefill_with_kv_cache(q, k, v, causal=True)\n"
        "torch.save(o.cpu(), sys.argv[1])\n")
    env = dict(os.environ, FIJIT_CACHE_DIR=str(tmp_path / "cache"))
    procs = [subprocess.Popen([sys.executable, "-c", script,
                               str(tmp_path / f"o{i}.pt")], env=env)
             for i in range(2)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    a, b = (torch.load(tmp_path / f"o{i}.pt") for i in range(2))
    assert torch.equal(a, b)
    assert not a.isnan().any()


STAND_IN_CHILD = """
import json, sys, torch, fijit
torch.manual_seed(int(sys.argv[2]))
q = torch.randn(200, 8, 128, device="cuda", dtype=torch.bfloat16)
k = torch.randn(300, 8, 128, device="cuda", dtype=torch.bfloat16)
v = torch.randn_like(k)
fields = dict(head_dim_qk=128, head_dim_vo=128, num_qo_heads=8,
              num_kv_heads=8, mask="causal")
kernels, outs, objects = [], [], []
for _ in range(2):
    kernel = fijit.compile_attention(**fields)
    objects.append(kernel)
    out = torch.full_like(q, float("nan"))
    kernel(q, k, v, out=out)
    kernels.append(dict(provisional=kernel.provisional, tier=kernel.tier,
                        config=kernel.kernel_config))
    outs.append(out)
    fijit.wait_for_background_compiles()
# The first object, provisional or not, now runs the config's own kernel.
first = objects[0]
out = torch.full_like(q, float("nan"))
first(q, k, v, out=out)
outs.append(out)
kernels.append(dict(provisional=first.provisional,
                    config=first.kernel_config))
torch.save(dict(q=q, k=k, v=v, outs=outs), sys.argv[1])
print(json.dumps(kernels))
"""


def run_stand_in_child(tmp_path, cache, seed, tiered="1"):
    env = dict(os.environ, FIJIT_CACHE_DIR=str(tmp_path / cache),
               FIJIT_TIERED=tiered)
    path = tmp_path / f"{cache}-{seed}.pt"
    r = subprocess.run([sys.executable, "-c", STAND_IN_CHILD, str(path),
                        str(seed)], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    saved = torch.load(path)
    ref = reference(saved["q"], saved["k"], saved["v"], causal=True)[0]
    for out in saved["outs"]:
        assert rel_err(out, ref) < 2e-2
    return [json.loads(r.stdout.splitlines()[-1]), saved["outs"]]


# The default head_dim 128 kernel on sm_90a (warp-specialised) and its
# stand-in (one warpgroup of 64-key tiles).
BIG = "tile_q=128,tile_kv=128,num_warps=12,stages=2"
QUICK = "tile_q=64,tile_kv=64,num_warps=4,stages=2"


def test_cold_config_is_served_by_a_stand_in_then_by_its_own_kernel(
        tmp_path):
    # Cold: the stand-in at once; after the background compile, the
    # config's own kernel from the memory tier.
    (first, second, upgraded), outs = run_stand_in_child(tmp_path, "cache", 1)
    assert first["provisional"] and first["tier"] == "compiled"
    assert first["config"].endswith(QUICK)
    assert not second["provisional"] and second["tier"] == "memory"
    assert second["config"].endswith(BIG)
    # The stand-in's object switched to the config's own kernel.
    assert not upgraded["provisional"] and upgraded["config"].endswith(BIG)
    assert torch.equal(outs[2], outs[1])
    # The background compile stored it: a new process finds it on disk.
    # wgmma kernels keep no cubin of fijit's (the driver compiles their PTX
    # as a whole program and caches the SASS itself).
    entries = sorted(p.suffix for p in
                     (tmp_path / "cache").glob("v*/entries/*")
                     if p.suffix in (".ptx", ".cubin"))
    assert entries == [".ptx", ".ptx"]
    (first, second, _), _ = run_stand_in_child(tmp_path, "cache", 2)
    assert (first["provisional"], first["tier"]) == (False, "disk")
    assert first["config"].endswith(BIG)
    # FIJIT_TIERED=0 waits for the config's own kernel.
    (first, _, _), _ = run_stand_in_child(tmp_path, "untiered", 1, "0")
    assert (first["provisional"], first["tier"]) == (False, "compiled")
    assert first["config"].endswith(BIG)


def test_bad_tensors_are_rejected_with_clear_errors():
    q, k, v = inputs(10, 20, 8, 8, 128, torch.bfloat16)
    kernel = fijit.compile_attention(head_dim_qk=128, head_dim_vo=128,
                                     num_qo_heads=8, num_kv_heads=8)
    with pytest.raises(ValueError, match="q has dtype f16"):
        kernel(q.half(), k, v)
    with pytest.raises(ValueError, match=r"k has shape \[20, 4, 128\]"):
        kernel(q, k[:, :4], v)
    with pytest.raises(ValueError, match="must be on a CUDA device"):
        kernel(q.cpu(), k, v)
    with pytest.raises(ValueError, match="last dimension must be contiguous"):
        kernel(q, k.transpose(1, 2).contiguous().transpose(1, 2), v)
