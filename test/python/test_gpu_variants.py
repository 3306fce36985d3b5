"""GPU correctness of FlashInfer's ALiBi (pos_encoding_mode="ALIBI") and
attention sinks (``sinks=``) in every kind and every kernel path (the
warp-specialised sm_90a prefill, the tile engine on wgmma and on mma.sync,
decode with and without split-KV), causal and not, GQA, against the float32
reference (attention_reference.reference, with FlashInfer's ALiBi
positions); random inputs and sinks, outputs poisoned with NaN before each
run."""
import math

import pytest

torch = pytest.importorskip("torch")
import fijit  # noqa: E402
from attention_reference import reference, rel_err  # noqa: E402
from test_gpu_batch_prefill import as_i32, indptr_of  # noqa: E402
from test_gpu_decode import random_paged  # noqa: E402

pytestmark = pytest.mark.gpu

BF16 = torch.bfloat16
# (alibi, sinks, extra config): each variant alone, both together, and
# with the other variants they combine with.
VARIANTS = {
    "alibi": (True, False, {}),
    "sinks": (False, True, {}),
    "alibi+sinks": (True, True, {}),
    "alibi+soft_cap": (True, False, dict(logits_soft_cap=30.0)),
    "sinks+window": (False, True, dict(window_left=40)),
}
# (qo_len, kv_len): one token, awkward lengths, queries that are the tail
# of a longer context.
SHAPES = [(1, 1), (37, 300), (129, 129), (200, 1000)]


def flashinfer_slopes(n_heads):
    """FlashInfer 0.7's utils.get_alibi_slopes, as written there."""
    n = 2 ** math.floor(math.log2(n_heads))
    m = torch.pow(2.0 ** (-8.0 / n), torch.arange(1, 1 + n))
    if n < n_heads:
        m_hat = torch.pow(2.0 ** (-4.0 / n),
                          torch.arange(1, 1 + 2 * (n_heads - n), 2))
        m = torch.cat([m, m_hat])
    return m.float().cuda()


def random_sinks(hq):
    # Some larger than the typical logit, some far below it.
    return (torch.randn(hq, device="cuda") * 3.0).float()


def kwargs_of(variant, hq, explicit_slopes=False):
    """(fijit keywords, reference keywords) of a variant."""
    alibi, sinks, extra = VARIANTS[variant]
    kw, ref = dict(extra), {}
    if "logits_soft_cap" in extra:
        ref["soft_cap"] = extra["logits_soft_cap"]
    if "window_left" in extra:
        ref["window_left"] = extra["window_left"]
    if alibi:
        kw["pos_encoding_mode"] = "ALIBI"
        slopes = (torch.rand(hq, device="cuda") * 0.5 if explicit_slopes
                  else flashinfer_slopes(hq))
        if explicit_slopes:
            kw["alibi_slopes"] = slopes
        ref["alibi_slopes"] = slopes
    if sinks:
        kw["sinks"] = ref["sinks"] = random_sinks(hq)
    return kw, ref


def close(out, lse, ref, ref_lse, what):
    assert not out.isnan().any(), what
    assert rel_err(out, ref) < 2e-2, what
    if lse is not None:
        finite = torch.isfinite(ref_lse)
        diff = (lse[finite] - ref_lse[finite]).abs()
        tol = 1e-2 + 1e-4 * ref_lse[finite].abs()
        assert (diff <= tol).all(), (what, diff.max().item())


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("d", [64, 128])
# The default kernel (warp-specialised on sm_90a), the tile engine with one
# warpgroup (wgmma on sm_90a), and the mma.sync path (target sm_80).
@pytest.mark.parametrize("path", ["default", "num_warps=4", "sm_80"])
def test_single_prefill(variant, causal, d, path):
    hq, hk = 8, 2
    for qo_len, kv_len in SHAPES:
        q = torch.randn(qo_len, hq, d, device="cuda", dtype=BF16)
        k = torch.randn(kv_len, hk, d, device="cuda", dtype=BF16)
        v = torch.randn_like(k)
        kw, ref_kw = kwargs_of(variant, hq, explicit_slopes=qo_len == 37)
        out = torch.full_like(q, float("nan"))
        if path == "sm_80":
            alibi, sinks, extra = VARIANTS[variant]
            kernel = fijit.compile_attention(
                kind="single_prefill", head_dim_qk=d, head_dim_vo=d,
                num_qo_heads=hq, num_kv_heads=hk, dtype_q="bf16",
                dtype_kv="bf16", dtype_o="bf16",
                mask="causal" if causal else "none", return_lse=True,
                pos_encoding="alibi" if alibi else "none", sinks=sinks,
                target="sm_80", **extra)
            _, lse = kernel(q, k, v, out=out,
                            alibi_slopes=kw.get("alibi_slopes"),
                            sinks=kw.get("sinks"))
        else:
            tuning = dict(num_warps=4) if path == "num_warps=4" else {}
            _, lse = fijit.single_prefill_with_kv_cache(
                q, k, v, causal=causal, return_lse=True, out=out, **kw,
                **tuning)
        torch.cuda.synchronize()
        ref, ref_lse = reference(q, k, v, causal=causal, **ref_kw)
        close(out, lse, ref, ref_lse, (qo_len, kv_len))


REQUESTS = [(1, 1), (17, 33), (0, 40), (100, 100), (64, 700), (5, 5)]


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("warps", [4, 12])
def test_batch_prefill_ragged(variant, causal, warps):
    hq, hk, d = 8, 2, 128
    qo = [r[0] for r in REQUESTS]
    kv = [r[1] for r in REQUESTS]
    q = torch.randn(sum(qo), hq, d, device="cuda", dtype=BF16)
    k = torch.randn(sum(kv), hk, d, device="cuda", dtype=BF16)
    v = torch.randn_like(k)
    kw, ref_kw = kwargs_of(variant, hq)
    sinks = kw.pop("sinks", None)
    w = fijit.BatchPrefillWithRaggedKVCacheWrapper(None, "NHD")
    w.plan(as_i32(indptr_of(qo)), as_i32(indptr_of(kv)), hq, hk, d,
           causal=causal, q_data_type=BF16, num_warps=warps, **kw)
    out = torch.full_like(q, float("nan"))
    _, lse = w.run(q, k, v, out=out, return_lse=True, sinks=sinks)
    torch.cuda.synchronize()
    qi, ki = indptr_of(qo), indptr_of(kv)
    for b, (n_q, _) in enumerate(REQUESTS):
        if n_q == 0:
            continue
        sq, sk = slice(qi[b], qi[b + 1]), slice(ki[b], ki[b + 1])
        ref, ref_lse = reference(q[sq], k[sk], v[sk], causal=causal,
                                 **ref_kw)
        close(out[sq], lse[sq], ref, ref_lse, b)


@pytest.mark.parametrize("variant",
                         ["alibi", "sinks", "alibi+sinks", "alibi+soft_cap"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("warps", [4, 12])
@pytest.mark.parametrize("page_size", [1, 16])
def test_batch_prefill_paged(variant, causal, warps, page_size):
    hq, hk, d = 8, 2, 128
    qo = [r[0] for r in REQUESTS]
    kv = [r[1] for r in REQUESTS]
    cache, indptr, indices, last, dense = random_paged(
        kv, page_size, hk, d, "NHD", BF16)
    kw, ref_kw = kwargs_of(variant, hq)
    sinks = kw.pop("sinks", None)
    w = fijit.BatchPrefillWithPagedKVCacheWrapper(None, "NHD")
    w.plan(as_i32(indptr_of(qo)), indptr, indices, last, hq, hk, d,
           page_size, causal=causal, q_data_type=BF16, num_warps=warps, **kw)
    q = torch.randn(sum(qo), hq, d, device="cuda", dtype=BF16)
    out = torch.full_like(q, float("nan"))
    _, lse = w.run(q, cache, out=out, return_lse=True, sinks=sinks)
    torch.cuda.synchronize()
    qi = indptr_of(qo)
    for b, (n_q, _) in enumerate(REQUESTS):
        if n_q == 0:
            continue
        sq = slice(qi[b], qi[b + 1])
        ref, ref_lse = reference(q[sq], *dense[b], causal=causal, **ref_kw)
        close(out[sq], lse[sq], ref, ref_lse, b)


def decode_reference(q, k, v, **kw):
    """Decode is prefill of one query: the masks put it at the keys' end,
    ALiBi at index 0 (FlashInfer's decode passes qo_idx = 0)."""
    out, lse = reference(q[None], k, v, **kw)
    return out[0], lse[0]


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("heads", [(8, 8), (32, 8)])
@pytest.mark.parametrize("d", [64, 128])
def test_single_decode(variant, heads, d):
    """Lengths of one split and of many (the last split's merge adds the
    sink once)."""
    hq, hk = heads
    for kv_len in [1, 7, 1000, 20000]:
        q = torch.randn(hq, d, device="cuda", dtype=BF16)
        k = torch.randn(kv_len, hk, d, device="cuda", dtype=BF16)
        v = torch.randn_like(k)
        kw, ref_kw = kwargs_of(variant, hq, explicit_slopes=kv_len == 7)
        out = torch.full_like(q, float("nan"))
        _, lse = fijit.single_decode_with_kv_cache(
            q, k, v, out=out, return_lse=True, **kw)
        torch.cuda.synchronize()
        ref, ref_lse = decode_reference(q, k, v, **ref_kw)
        close(out, lse, ref, ref_lse, kv_len)


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("chunk", [None, 64])
@pytest.mark.parametrize("graph", [False, True])
def test_batch_decode_paged(variant, chunk, graph):
    """The plan's splits and one-tile splits (up to 141 per request), with
    the schedule as arguments and, cuda_graph=true, read from device
    memory."""
    hq, hk, d, page_size = 32, 8, 128, 16
    lens = [1, 17, 300, 4099, 0, 64, 9000, 5]
    cache, indptr, indices, last, dense = random_paged(
        lens, page_size, hk, d, "NHD", BF16)
    kw, ref_kw = kwargs_of(variant, hq)
    sinks = kw.pop("sinks", None)
    ws = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
    bufs = {}
    if graph:
        bufs = dict(paged_kv_indptr_buffer=indptr.clone(),
                    paged_kv_indices_buffer=indices.clone(),
                    paged_kv_last_page_len_buffer=last.clone())
    w = fijit.BatchDecodeWithPagedKVCacheWrapper(
        ws, "NHD", use_cuda_graph=graph, **bufs)
    w.plan(indptr, indices, last, hq, hk, d, page_size, q_data_type=BF16,
           kv_chunk=chunk, **kw)
    q = torch.randn(len(lens), hq, d, device="cuda", dtype=BF16)
    out = torch.full_like(q, float("nan"))
    _, lse = w.run(q, cache, out=out, return_lse=True, sinks=sinks)
    torch.cuda.synchronize()
    for b, n in enumerate(lens):
        if n == 0:
            continue
        ref, ref_lse = decode_reference(q[b], *dense[b], **ref_kw)
        close(out[b], lse[b], ref, ref_lse, (b, n))


def test_a_request_without_keys_gets_the_sink_alone():
    """No key but a sink: the row is zeros and its LSE the sink's (log2),
    as FlashInfer's sink variant gives."""
    hq, hk, d, page_size = 8, 2, 128, 16
    lens = [0, 40]
    cache, indptr, indices, last, _ = random_paged(
        lens, page_size, hk, d, "NHD", BF16)
    sinks = random_sinks(hq)
    w = fijit.BatchDecodeWithPagedKVCacheWrapper(
        torch.empty(16 << 20, dtype=torch.uint8, device="cuda"), "NHD")
    w.plan(indptr, indices, last, hq, hk, d, page_size, q_data_type=BF16)
    q = torch.randn(2, hq, d, device="cuda", dtype=BF16)
    out = torch.full_like(q, float("nan"))
    _, lse = w.run(q, cache, out=out, return_lse=True, sinks=sinks)
    torch.cuda.synchronize()
    assert (out[0] == 0).all()
    assert torch.allclose(lse[0], sinks / math.log(2), atol=1e-5)
