"""GPU correctness of fp8 KV caches (float8_e4m3fn, float8_e5m2) with
FlashInfer's per-tensor k_scale and v_scale, in every kind: single prefill
and decode, batch prefill over ragged and paged KV, batch paged decode;
NHD and HND, page sizes 1 and 16, head dims 64 and 128, GQA, causal.

K and V are quantised the way engines fill an fp8 cache,
``k_fp8 = (k / k_scale).to(fp8)``, and the float32 reference
(attention_reference.reference) runs on what the cache holds,
``k_fp8.float() * k_scale``: the kernel's only error is then its own
arithmetic (fp8 widens to bf16 exactly). Random inputs, outputs poisoned
with NaN before each run, the base-2 LSE checked too. Tolerances as in
test_gpu_variants (relative L2 < 2e-2) plus an elementwise bound like
FlashInfer's fp8 tests (rtol = atol = 2e-2)."""
import pytest

torch = pytest.importorskip("torch")
import fijit  # noqa: E402
from attention_reference import reference, rel_err  # noqa: E402
from test_gpu_batch_prefill import as_i32, indptr_of  # noqa: E402
from test_gpu_decode import random_paged  # noqa: E402

pytestmark = pytest.mark.gpu

BF16 = torch.bfloat16
FP8 = {"e4m3": torch.float8_e4m3fn, "e5m2": torch.float8_e5m2}
# Q's dtype picks how fp8 is widened: bf16 by a bit move on every target,
# f16 by cvt.rn.f16x2 on sm_89/sm_90a and a bit move on sm_80/sm_86.
QDTYPES = {"bf16": torch.bfloat16, "f16": torch.float16}
# (k_scale, v_scale): neither a power of two, so a scale applied twice,
# to the wrong operand or not at all shows.
SCALES = [(0.37, 1.9), (2.6, 0.3)]


def quantise(x, scale, dtype):
    """What an engine writes into an fp8 cache for values x."""
    return (x.float() / scale).to(dtype)


def dequantise(x8, scale):
    return x8.float() * scale


def close(out, lse, ref, ref_lse, what):
    assert not out.isnan().any(), what
    assert rel_err(out, ref) < 2e-2, (what, rel_err(out, ref))
    diff = (out.float() - ref).abs()
    bound = 2e-2 + 2e-2 * ref.abs()
    assert (diff <= bound).all(), (what, (diff - bound).max().item())
    if lse is not None:
        finite = torch.isfinite(ref_lse)
        d = (lse[finite] - ref_lse[finite]).abs()
        assert (d <= 1e-2 + 1e-4 * ref_lse[finite].abs()).all(), (
            what, d.max().item())


def dense_kv(kv_len, hk, d, layout, dtype, k_scale, v_scale):
    """Quantised K and V of one request ([kv_len, hk, d] NHD or [hk,
    kv_len, d] HND) and what they hold, in float32."""
    shape = (kv_len, hk, d) if layout == "NHD" else (hk, kv_len, d)
    k8 = quantise(torch.randn(shape, device="cuda"), k_scale, dtype)
    v8 = quantise(torch.randn(shape, device="cuda"), v_scale, dtype)
    return k8, v8, dequantise(k8, k_scale), dequantise(v8, v_scale)


def paged_kv(lens, page_size, hk, d, layout, dtype, k_scale, v_scale):
    """A shuffled fp8 page table and each request's dequantised K/V (NHD)
    for the reference: quantisation is elementwise, so dequantising the
    gathered float32 rows gives what the cache's pages hold."""
    (kc, vc), indptr, indices, last, dense = random_paged(
        lens, page_size, hk, d, layout, torch.float32)
    cache = (quantise(kc, k_scale, dtype), quantise(vc, v_scale, dtype))
    ref = [(dequantise(quantise(k, k_scale, dtype), k_scale),
            dequantise(quantise(v, v_scale, dtype), v_scale))
           for k, v in dense]
    return cache, indptr, indices, last, ref


@pytest.mark.parametrize("qdtype", list(QDTYPES))
@pytest.mark.parametrize("layout", ["NHD", "HND"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("d", [64, 128])
@pytest.mark.parametrize("dtype", list(FP8))
# The entry point (the default kernel for the GPU's target), the
# warp-specialised sm_90a kernel (num_warps=12, head_dim 128: its producer
# converts the fp8 tiles in shared memory) and the sm_80 kernel through
# compile_attention and the kernel's own call.
@pytest.mark.parametrize("path", ["default", "num_warps=12", "sm_80"])
def test_single_prefill(path, dtype, d, causal, layout, qdtype):
    if path == "num_warps=12" and d != 128:
        pytest.skip("the warp-specialised kernel takes fp8 at head_dim 128")
    hq, hk = 8, 2
    shapes = [(1, 1), (37, 300), (129, 129), (200, 1000)]
    for i, (qo_len, kv_len) in enumerate(shapes):
        k_scale, v_scale = SCALES[i % len(SCALES)]
        q = torch.randn(qo_len, hq, d, device="cuda", dtype=QDTYPES[qdtype])
        k8, v8, k, v = dense_kv(kv_len, hk, d, layout, FP8[dtype], k_scale,
                                v_scale)
        out = torch.full_like(q, float("nan"))
        if path == "sm_80":
            kernel = fijit.compile_attention(
                kind="single_prefill", head_dim_qk=d, head_dim_vo=d,
                num_qo_heads=hq, num_kv_heads=hk, dtype_q=qdtype,
                dtype_kv=dtype, dtype_o=qdtype, kv_layout=layout,
                mask="causal" if causal else "none", return_lse=True,
                target="sm_80")
            _, lse = kernel(q, k8, v8, out=out, k_scale=k_scale,
                            v_scale=v_scale)
        else:
            tuning = dict(num_warps=12) if path == "num_warps=12" else {}
            _, lse = fijit.single_prefill_with_kv_cache(
                q, k8, v8, causal=causal, kv_layout=layout, return_lse=True,
                out=out, k_scale=k_scale, v_scale=v_scale, **tuning)
        torch.cuda.synchronize()
        ref, ref_lse = reference(q, k, v, causal=causal, kv_layout=layout)
        close(out, lse, ref, ref_lse, (qo_len, kv_len))


def decode_reference(q, k, v, **kw):
    out, lse = reference(q[None], k, v, **kw)
    return out[0], lse[0]


@pytest.mark.parametrize("qdtype", list(QDTYPES))
@pytest.mark.parametrize("layout", ["NHD", "HND"])
@pytest.mark.parametrize("heads", [(8, 8), (32, 8)])
@pytest.mark.parametrize("d", [64, 128])
@pytest.mark.parametrize("dtype", list(FP8))
def test_single_decode(dtype, d, heads, layout, qdtype):
    """Lengths of one split and of many (the split-KV merge)."""
    hq, hk = heads
    for i, kv_len in enumerate([1, 7, 1000, 20000]):
        k_scale, v_scale = SCALES[i % len(SCALES)]
        q = torch.randn(hq, d, device="cuda", dtype=QDTYPES[qdtype])
        k8, v8, k, v = dense_kv(kv_len, hk, d, layout, FP8[dtype], k_scale,
                                v_scale)
        out = torch.full_like(q, float("nan"))
        _, lse = fijit.single_decode_with_kv_cache(
            q, k8, v8, kv_layout=layout, out=out, return_lse=True,
            k_scale=k_scale, v_scale=v_scale)
        torch.cuda.synchronize()
        ref, ref_lse = decode_reference(q, k, v, kv_layout=layout)
        close(out, lse, ref, ref_lse, kv_len)


REQUESTS = [(1, 1), (17, 33), (0, 40), (100, 100), (64, 700), (5, 5)]


@pytest.mark.parametrize("layout", ["NHD", "HND"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("d", [64, 128])
@pytest.mark.parametrize("dtype", list(FP8))
@pytest.mark.parametrize("warps", [None, 12])
def test_batch_prefill_ragged(dtype, d, causal, layout, warps):
    if warps == 12 and d != 128:
        pytest.skip("the warp-specialised kernel takes fp8 at head_dim 128")
    tuning = dict(num_warps=warps) if warps else {}
    hq, hk = 8, 2
    k_scale, v_scale = SCALES[0]
    qo = [r[0] for r in REQUESTS]
    kv = [r[1] for r in REQUESTS]
    k8, v8, k, v = dense_kv(sum(kv), hk, d, layout, FP8[dtype], k_scale,
                            v_scale)
    if layout == "HND":  # the reference slices requests along tokens
        k, v = k.transpose(0, 1), v.transpose(0, 1)
    q = torch.randn(sum(qo), hq, d, device="cuda", dtype=BF16)
    w = fijit.BatchPrefillWithRaggedKVCacheWrapper(None, layout)
    w.plan(as_i32(indptr_of(qo)), as_i32(indptr_of(kv)), hq, hk, d,
           causal=causal, q_data_type=BF16, kv_data_type=FP8[dtype],
           **tuning)
    out = torch.full_like(q, float("nan"))
    _, lse = w.run(q, k8, v8, out=out, return_lse=True, k_scale=k_scale,
                   v_scale=v_scale)
    torch.cuda.synchronize()
    qi, ki = indptr_of(qo), indptr_of(kv)
    for b, (n_q, _) in enumerate(REQUESTS):
        if n_q == 0:
            continue
        sq, sk = slice(qi[b], qi[b + 1]), slice(ki[b], ki[b + 1])
        ref, ref_lse = reference(q[sq], k[sk], v[sk], causal=causal)
        close(out[sq], lse[sq], ref, ref_lse, b)


@pytest.mark.parametrize("layout", ["NHD", "HND"])
@pytest.mark.parametrize("page_size", [1, 16])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("d", [64, 128])
@pytest.mark.parametrize("dtype", list(FP8))
@pytest.mark.parametrize("warps", [None, 12])
def test_batch_prefill_paged(dtype, d, causal, page_size, layout, warps):
    if warps == 12 and (d != 128 or page_size == 1):
        pytest.skip("the warp-specialised kernel takes fp8 at head_dim 128, "
                    "pages of at least 8 keys")
    tuning = dict(num_warps=warps) if warps else {}
    hq, hk = 8, 2
    k_scale, v_scale = SCALES[1]
    qo = [r[0] for r in REQUESTS]
    kv = [r[1] for r in REQUESTS]
    cache, indptr, indices, last, dense = paged_kv(
        kv, page_size, hk, d, layout, FP8[dtype], k_scale, v_scale)
    w = fijit.BatchPrefillWithPagedKVCacheWrapper(None, layout)
    w.plan(as_i32(indptr_of(qo)), indptr, indices, last, hq, hk, d,
           page_size, causal=causal, q_data_type=BF16,
           kv_data_type=FP8[dtype], **tuning)
    q = torch.randn(sum(qo), hq, d, device="cuda", dtype=BF16)
    out = torch.full_like(q, float("nan"))
    _, lse = w.run(q, cache, out=out, return_lse=True, k_scale=k_scale,
                   v_scale=v_scale)
    torch.cuda.synchronize()
    qi = indptr_of(qo)
    for b, (n_q, _) in enumerate(REQUESTS):
        if n_q == 0:
            continue
        sq = slice(qi[b], qi[b + 1])
        ref, ref_lse = reference(q[sq], *dense[b], causal=causal)
        close(out[sq], lse[sq], ref, ref_lse, b)


@pytest.mark.parametrize("qdtype", list(QDTYPES))
@pytest.mark.parametrize("graph", [False, True])
@pytest.mark.parametrize("layout", ["NHD", "HND"])
@pytest.mark.parametrize("page_size", [1, 16])
@pytest.mark.parametrize("d", [64, 128])
@pytest.mark.parametrize("dtype", list(FP8))
def test_batch_decode_paged(dtype, d, page_size, layout, graph, qdtype):
    """Requests of one split and of many (up to 9000 keys), an empty one;
    with use_cuda_graph the schedule is read from device memory."""
    hq, hk = 32, 8
    qt = QDTYPES[qdtype]
    k_scale, v_scale = SCALES[0]
    lens = [1, 17, 300, 4099, 0, 64, 9000, 5]
    cache, indptr, indices, last, dense = paged_kv(
        lens, page_size, hk, d, layout, FP8[dtype], k_scale, v_scale)
    ws = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
    bufs = {}
    if graph:
        bufs = dict(paged_kv_indptr_buffer=indptr.clone(),
                    paged_kv_indices_buffer=indices.clone(),
                    paged_kv_last_page_len_buffer=last.clone())
    w = fijit.BatchDecodeWithPagedKVCacheWrapper(
        ws, layout, use_cuda_graph=graph, **bufs)
    w.plan(indptr, indices, last, hq, hk, d, page_size, q_data_type=qt,
           kv_data_type=FP8[dtype])
    q = torch.randn(len(lens), hq, d, device="cuda", dtype=qt)
    out = torch.full_like(q, float("nan"))
    _, lse = w.run(q, cache, out=out, return_lse=True, k_scale=k_scale,
                   v_scale=v_scale)
    torch.cuda.synchronize()
    for b, n in enumerate(lens):
        if n == 0:
            continue
        ref, ref_lse = decode_reference(q[b], *dense[b])
        close(out[b], lse[b], ref, ref_lse, (b, n))


def test_a_v_scale_tensor_equals_the_float():
    """FlashInfer multiplies the output by a 1-element v_scale tensor after
    its kernel; fijit's result matches the in-kernel float v_scale."""
    hq, hk, d = 32, 8, 128
    k8, v8, _, _ = dense_kv(3000, hk, d, "NHD", FP8["e4m3"], 0.37, 1.9)
    q = torch.randn(hq, d, device="cuda", dtype=BF16)
    by_float = fijit.single_decode_with_kv_cache(q, k8, v8, k_scale=0.37,
                                                 v_scale=1.9)
    by_tensor = fijit.single_decode_with_kv_cache(
        q, k8, v8, k_scale=0.37,
        v_scale=torch.tensor([1.9], device="cuda"))
    torch.cuda.synchronize()
    assert rel_err(by_tensor, by_float.float()) < 1e-2


@pytest.mark.parametrize("kind", ["single_prefill", "single_decode",
                                  "batch_prefill_paged",
                                  "batch_decode_paged"])
def test_scales_on_a_bf16_cache(kind):
    """FlashInfer applies k_scale and v_scale to a 16-bit KV cache too
    (sm_scale times k_scale, the output times v_scale); fijit does the
    same."""
    hq, hk, d = 8, 2, 128
    k_scale, v_scale = SCALES[0]
    lens = [300, 1, 1000]
    kw = dict(k_scale=k_scale, v_scale=v_scale)
    if kind.startswith("single"):
        k = torch.randn(lens[0], hk, d, device="cuda", dtype=BF16)
        v = torch.randn_like(k)
        qo_len = 50 if kind == "single_prefill" else None
        q = torch.randn(*((qo_len,) if qo_len else ()), hq, d, device="cuda",
                        dtype=BF16)
        run = (fijit.single_prefill_with_kv_cache if qo_len else
               fijit.single_decode_with_kv_cache)
        out, lse = run(q, k, v, return_lse=True, **kw)
        torch.cuda.synchronize()
        qs = q if qo_len else q[None]
        ref, ref_lse = reference(qs, k.float() * k_scale,
                                 v.float() * v_scale)
        if not qo_len:
            ref, ref_lse = ref[0], ref_lse[0]
        close(out, lse, ref, ref_lse, kind)
        return
    cache, indptr, indices, last, dense = random_paged(lens, 16, hk, d,
                                                       "NHD", BF16)
    if kind == "batch_decode_paged":
        w = fijit.BatchDecodeWithPagedKVCacheWrapper(
            torch.empty(64 << 20, dtype=torch.uint8, device="cuda"))
        w.plan(indptr, indices, last, hq, hk, d, 16, q_data_type=BF16)
        q = torch.randn(len(lens), hq, d, device="cuda", dtype=BF16)
        qo = list(range(len(lens) + 1))
    else:
        w = fijit.BatchPrefillWithPagedKVCacheWrapper(None)
        qo = indptr_of([7, 1, 40])
        w.plan(as_i32(qo), indptr, indices, last, hq, hk, d, 16,
               causal=True, q_data_type=BF16)
        q = torch.randn(qo[-1], hq, d, device="cuda", dtype=BF16)
    out = torch.full_like(q, float("nan"))
    _, lse = w.run(q, cache, out=out, return_lse=True, **kw)
    torch.cuda.synchronize()
    for b, (k, v) in enumerate(dense):
        sq = slice(qo[b], qo[b + 1])
        ref, ref_lse = reference(q[sq], k.float() * k_scale,
                                 v.float() * v_scale,
                                 causal=kind == "batch_prefill_paged")
        close(out[sq], lse[sq], ref, ref_lse, (kind, b))
