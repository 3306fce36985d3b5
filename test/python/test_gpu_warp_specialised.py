"""GPU correctness of the warp-specialised sm_90a prefill (num_warps=12:
TMA loads, a producer warpgroup, two ping-ponging consumer warpgroups)
against a float32 reference. Outputs poisoned with NaN first; lengths that
are not multiples of the 128-row and 128/64-key tiles, and key ranges long
enough to wrap the K/V ring several times."""
import pytest

torch = pytest.importorskip("torch")
import fijit  # noqa: E402
from attention_reference import reference, rel_err  # noqa: E402

pytestmark = pytest.mark.gpu

DTYPES = {"f16": torch.float16, "bf16": torch.bfloat16}
LENGTHS = [(1, 1), (17, 33), (100, 227), (227, 100), (129, 129),
           (333, 1000), (1000, 333), (2049, 2049), (700, 4100)]
WS = dict(num_warps=12)


@pytest.fixture(autouse=True)
def needs_hopper():
    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the warp-specialised prefill runs on sm_90a only")


def inputs(qo_len, kv_len, hq, hk, d, dtype, kv_layout="NHD"):
    q = torch.randn(qo_len, hq, d, device="cuda", dtype=dtype)
    shape = (kv_len, hk, d) if kv_layout == "NHD" else (hk, kv_len, d)
    return (q, torch.randn(shape, device="cuda", dtype=dtype),
            torch.randn(shape, device="cuda", dtype=dtype))


def test_kernel_is_the_warp_specialised_one():
    kernel = fijit.compile_attention(head_dim_qk=128, head_dim_vo=128,
                                     num_qo_heads=8, num_kv_heads=8,
                                     mask="causal", **WS)
    assert "setmaxnreg.inc" in kernel.ptx
    assert "cp.async.bulk.tensor" in kernel.ptx


@pytest.mark.parametrize("head_dim", [64, 128, 256])
@pytest.mark.parametrize("dtype", ["f16", "bf16"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("group", [1, 4])
def test_matches_reference(head_dim, dtype, causal, group):
    tol = 2e-2 if dtype == "bf16" else 5e-3
    for qo_len, kv_len in LENGTHS:
        q, k, v = inputs(qo_len, kv_len, 8, 8 // group, head_dim,
                         DTYPES[dtype])
        out = torch.full_like(q, float("nan"))
        fijit.single_prefill_with_kv_cache(q, k, v, causal=causal, out=out,
                                           **WS)
        torch.cuda.synchronize()
        assert not out.isnan().any(), f"unwritten output at {qo_len}x{kv_len}"
        ref, _ = reference(q, k, v, causal=causal)
        assert rel_err(out, ref) < tol, (qo_len, kv_len)


@pytest.mark.parametrize("variant", [
    dict(kv_layout="HND", causal=True),
    dict(window_left=100, causal=True),
    dict(window_left=300),
    dict(logits_soft_cap=30.0, causal=True),
    dict(sm_scale=0.3),
])
def test_variants_and_lse(variant):
    layout = variant.get("kv_layout", "NHD")
    for qo_len, kv_len in [(100, 227), (333, 1000), (1, 50), (1500, 1500)]:
        q, k, v = inputs(qo_len, kv_len, 8, 2, 128, torch.bfloat16, layout)
        out, lse = fijit.single_prefill_with_kv_cache(
            q, k, v, return_lse=True, **variant, **WS)
        ref, ref_lse = reference(
            q, k, v, causal=variant.get("causal", False),
            sm_scale=variant.get("sm_scale"),
            window_left=variant.get("window_left", -1),
            soft_cap=variant.get("logits_soft_cap", 0.0), kv_layout=layout)
        assert rel_err(out, ref) < 2e-2, (qo_len, kv_len)
        finite = torch.isfinite(ref_lse)
        assert (lse[finite] - ref_lse[finite]).abs().max().item() < 1e-2


def test_strided_views():
    # q and k/v slices of packed qkv: row strides of 3 heads' worth.
    qkv = torch.randn(777, 3, 8, 128, device="cuda", dtype=torch.bfloat16)
    q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]
    out = fijit.single_prefill_with_kv_cache(q, k, v, causal=True, **WS)
    assert rel_err(out, reference(q, k, v, causal=True)[0]) < 2e-2


def test_cuda_graph_capture_and_replay():
    q, k, v = inputs(300, 900, 8, 8, 128, torch.bfloat16)
    kernel = fijit.compile_attention(head_dim_qk=128, head_dim_vo=128,
                                     num_qo_heads=8, num_kv_heads=8,
                                     mask="causal", **WS)
    out = torch.empty_like(q)
    kernel(q, k, v, out=out)
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
