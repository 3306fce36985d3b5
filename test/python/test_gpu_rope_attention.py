"""GPU correctness of RoPE inside the attention kernels (FlashInfer's
pos_encoding_mode="ROPE_LLAMA") in every kind and kernel path (the tile engine's, and the warp-specialised
sm_90a kernel whose producer rotates), against
the float32 reference applied to q and k rotated in float32 at FlashInfer's
positions: key j at j, prefill query i at kv_len - qo_len + i, decode's
query at kv_len - 1; non-interleaved ("rotate half") pairs, frequency
rope_theta^(-2i/d) / rope_scale. Random inputs, outputs poisoned with NaN
before each run."""
import pytest

torch = pytest.importorskip("torch")
import fijit  # noqa: E402
from attention_reference import reference, rel_err  # noqa: E402
from test_gpu_batch_prefill import as_i32, indptr_of  # noqa: E402
from test_gpu_decode import random_paged  # noqa: E402

pytestmark = pytest.mark.gpu

BF16 = torch.bfloat16
# (rope_scale, rope_theta): FlashInfer's defaults and Llama-3-like values.
PARAMS = [(None, None), (8.0, 5e5)]
SHAPES = [(1, 1), (37, 300), (129, 129), (200, 1000)]


def rotate(x, positions, rope_scale=None, rope_theta=None):
    """x [n, H, d] rotated in float32, row r at positions[r]."""
    scale = 1.0 if rope_scale is None else rope_scale
    theta = 1e4 if rope_theta is None else rope_theta
    d = x.shape[-1]
    half = d // 2
    i = torch.arange(half, device=x.device, dtype=torch.float64)
    freq = theta ** (-2.0 * i / d) / scale
    angle = positions.to(torch.float64)[:, None] * freq[None, :]
    cos = angle.cos().float()[:, None, :]
    sin = angle.sin().float()[:, None, :]
    xf = x.float()
    x1, x2 = xf[..., :half], xf[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def rope_reference(q, k, v, params, causal=False, kv_layout="NHD"):
    """The float32 reference on q and k rotated at FlashInfer's positions
    (k in NHD or HND, as the kernel reads it)."""
    qo_len = q.shape[0]
    kv_len = k.shape[0] if kv_layout == "NHD" else k.shape[1]
    dev = q.device
    q_pos = torch.arange(qo_len, device=dev) + (kv_len - qo_len)
    k_pos = torch.arange(kv_len, device=dev)
    kn = k if kv_layout == "NHD" else k.transpose(0, 1)
    vn = v if kv_layout == "NHD" else v.transpose(0, 1)
    return reference(rotate(q, q_pos, *params), rotate(kn, k_pos, *params),
                     vn.float(), causal=causal)


def close(out, lse, ref, ref_lse, what):
    assert not out.isnan().any(), what
    # sin.approx/cos.approx at positions of ~1000 and bf16 tiles: FlashInfer
    # accepts the same error.
    assert rel_err(out, ref) < 2e-2, what
    if lse is not None:
        finite = torch.isfinite(ref_lse)
        diff = (lse[finite] - ref_lse[finite]).abs()
        assert (diff <= 2e-2 + 1e-3 * ref_lse[finite].abs()).all(), (
            what, diff.max().item())


def rope_kw(params):
    scale, theta = params
    kw = dict(pos_encoding_mode="ROPE_LLAMA")
    if scale is not None:
        kw.update(rope_scale=scale, rope_theta=theta)
    return kw


@pytest.mark.parametrize("params", PARAMS)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("d", [64, 128, 256])
# The sm_90a default (the warp-specialised kernel, whose producer
# rotates), the tile engine's two warpgroups and one on wgmma, and the
# mma.sync path (target sm_80).
@pytest.mark.parametrize("path", ["default", "num_warps=8", "num_warps=4",
                                  "sm_80"])
def test_single_prefill(params, causal, d, path):
    hq, hk = 8, 2
    for qo_len, kv_len in SHAPES:
        q = torch.randn(qo_len, hq, d, device="cuda", dtype=BF16)
        k = torch.randn(kv_len, hk, d, device="cuda", dtype=BF16)
        v = torch.randn_like(k)
        out = torch.full_like(q, float("nan"))
        if path == "sm_80":
            kernel = fijit.compile_attention(
                kind="single_prefill", head_dim_qk=d, head_dim_vo=d,
                num_qo_heads=hq, num_kv_heads=hk, dtype_q="bf16",
                dtype_kv="bf16", dtype_o="bf16",
                mask="causal" if causal else "none", return_lse=True,
                pos_encoding="rope", target="sm_80")
            _, lse = kernel(q, k, v, out=out, rope_scale=params[0],
                            rope_theta=params[1])
        else:
            tuning = ({} if path == "default" else
                      dict(num_warps=int(path.split("=")[1])))
            _, lse = fijit.single_prefill_with_kv_cache(
                q, k, v, causal=causal, return_lse=True, out=out,
                **rope_kw(params), **tuning)
        torch.cuda.synchronize()
        ref, ref_lse = rope_reference(q, k, v, params, causal=causal)
        close(out, lse, ref, ref_lse, (qo_len, kv_len))


def test_single_prefill_hnd_and_unequal_head_dims():
    hq, hk = 8, 2
    q = torch.randn(77, hq, 192, device="cuda", dtype=BF16)
    k = torch.randn(hk, 500, 192, device="cuda", dtype=BF16)
    v = torch.randn(hk, 500, 128, device="cuda", dtype=BF16)
    out = torch.full((77, hq, 128), float("nan"), device="cuda", dtype=BF16)
    fijit.single_prefill_with_kv_cache(q, k, v, causal=True, kv_layout="HND",
                                       out=out, **rope_kw(PARAMS[1]))
    torch.cuda.synchronize()
    ref, _ = rope_reference(q, k, v, PARAMS[1], causal=True,
                            kv_layout="HND")
    close(out, None, ref, None, "hnd 192/128")


REQUESTS = [(1, 1), (17, 33), (0, 40), (100, 100), (64, 700), (5, 5)]


@pytest.mark.parametrize("params", PARAMS)
@pytest.mark.parametrize("causal", [False, True])
# The plan's tiles, and the warp-specialised kernel (num_warps=12).
@pytest.mark.parametrize("warps", [None, 12])
def test_batch_prefill_ragged(params, causal, warps):
    hq, hk, d = 8, 2, 128
    qo = [r[0] for r in REQUESTS]
    kv = [r[1] for r in REQUESTS]
    q = torch.randn(sum(qo), hq, d, device="cuda", dtype=BF16)
    k = torch.randn(sum(kv), hk, d, device="cuda", dtype=BF16)
    v = torch.randn_like(k)
    w = fijit.BatchPrefillWithRaggedKVCacheWrapper(None, "NHD")
    tuning = dict(num_warps=warps) if warps else {}
    w.plan(as_i32(indptr_of(qo)), as_i32(indptr_of(kv)), hq, hk, d,
           causal=causal, q_data_type=BF16, **rope_kw(params), **tuning)
    out = torch.full_like(q, float("nan"))
    _, lse = w.run(q, k, v, out=out, return_lse=True)
    torch.cuda.synchronize()
    qi, ki = indptr_of(qo), indptr_of(kv)
    for b, (n_q, _) in enumerate(REQUESTS):
        if n_q == 0:
            continue
        sq, sk = slice(qi[b], qi[b + 1]), slice(ki[b], ki[b + 1])
        ref, ref_lse = rope_reference(q[sq], k[sk], v[sk], params,
                                      causal=causal)
        close(out[sq], lse[sq], ref, ref_lse, b)


@pytest.mark.parametrize("page_size", [1, 16])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("warps", [None, 12])
def test_batch_prefill_paged(page_size, causal, warps):
    if warps == 12 and page_size == 1:
        pytest.skip("num_warps=12 loads whole pages of at least 8 keys")
    hq, hk, d = 8, 2, 128
    params = PARAMS[1]
    qo = [r[0] for r in REQUESTS]
    kv = [r[1] for r in REQUESTS]
    cache, indptr, indices, last, dense = random_paged(
        kv, page_size, hk, d, "NHD", BF16)
    w = fijit.BatchPrefillWithPagedKVCacheWrapper(None, "NHD")
    tuning = dict(num_warps=warps) if warps else {}
    w.plan(as_i32(indptr_of(qo)), indptr, indices, last, hq, hk, d,
           page_size, causal=causal, q_data_type=BF16, **rope_kw(params),
           **tuning)
    q = torch.randn(sum(qo), hq, d, device="cuda", dtype=BF16)
    out = torch.full_like(q, float("nan"))
    _, lse = w.run(q, cache, out=out, return_lse=True)
    torch.cuda.synchronize()
    qi = indptr_of(qo)
    for b, (n_q, _) in enumerate(REQUESTS):
        if n_q == 0:
            continue
        sq = slice(qi[b], qi[b + 1])
        ref, ref_lse = rope_reference(q[sq], *dense[b], params,
                                      causal=causal)
        close(out[sq], lse[sq], ref, ref_lse, b)


@pytest.mark.parametrize("params", PARAMS)
@pytest.mark.parametrize("heads", [(8, 8), (32, 8)])
@pytest.mark.parametrize("d", [64, 128])
def test_single_decode(params, heads, d):
    """One split and many: every split rotates its own keys."""
    hq, hk = heads
    for kv_len in [1, 7, 1000, 20000]:
        q = torch.randn(hq, d, device="cuda", dtype=BF16)
        k = torch.randn(kv_len, hk, d, device="cuda", dtype=BF16)
        v = torch.randn_like(k)
        out = torch.full_like(q, float("nan"))
        _, lse = fijit.single_decode_with_kv_cache(
            q, k, v, out=out, return_lse=True, **rope_kw(params))
        torch.cuda.synchronize()
        ref, ref_lse = rope_reference(q[None], k, v, params)
        close(out, lse, ref[0], ref_lse[0], kv_len)


@pytest.mark.parametrize("page_size", [1, 16])
@pytest.mark.parametrize("graph", [False, True])
def test_batch_decode_paged(page_size, graph):
    hq, hk, d = 32, 8, 128
    params = PARAMS[1]
    kv = [1, 33, 700, 5000]
    cache, indptr, indices, last, dense = random_paged(
        kv, page_size, hk, d, "NHD", BF16)
    ws = torch.empty(64 << 20, dtype=torch.uint8, device="cuda")
    if graph:
        w = fijit.BatchDecodeWithPagedKVCacheWrapper(
            ws, "NHD", use_cuda_graph=True,
            paged_kv_indptr_buffer=torch.empty_like(indptr),
            paged_kv_indices_buffer=torch.empty_like(indices),
            paged_kv_last_page_len_buffer=torch.empty_like(last))
    else:
        w = fijit.BatchDecodeWithPagedKVCacheWrapper(ws, "NHD")
    w.plan(indptr, indices, last, hq, hk, d, page_size, q_data_type=BF16,
           **rope_kw(params))
    q = torch.randn(len(kv), hq, d, device="cuda", dtype=BF16)
    out = torch.full_like(q, float("nan"))
    w.run(q, cache, out=out)
    torch.cuda.synchronize()
    for b in range(len(kv)):
        ref, _ = rope_reference(q[b][None], *dense[b], params)
        close(out[b], None, ref[0], None, b)


def test_rope_differs_from_no_rope():
    # The rotation is not a no-op: the same inputs without RoPE give a
    # different output (so the tests above would notice a kernel that
    # ignored it).
    q = torch.randn(64, 8, 128, device="cuda", dtype=BF16)
    k = torch.randn(256, 8, 128, device="cuda", dtype=BF16)
    v = torch.randn_like(k)
    with_rope = fijit.single_prefill_with_kv_cache(
        q, k, v, pos_encoding_mode="ROPE_LLAMA")
    without = fijit.single_prefill_with_kv_cache(q, k, v)
    assert rel_err(with_rope, without.float()) > 0.1
