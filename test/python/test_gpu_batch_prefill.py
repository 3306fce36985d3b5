"""GPU correctness of batch prefill over ragged and paged KV: each request
against a float32 reference of its own q, k, v; outputs poisoned first."""
import pytest

torch = pytest.importorskip("torch")
import fijit  # noqa: E402
from attention_reference import reference, rel_err  # noqa: E402
from test_gpu_decode import random_paged  # noqa: E402

pytestmark = pytest.mark.gpu

# (qo_len, kv_len): single tokens, awkward lengths, an empty request, and
# queries that are the tail of a longer context.
REQUESTS = [(1, 1), (17, 33), (0, 40), (100, 100), (64, 700), (333, 1000),
            (5, 5)]
# Requests averaging 1346 query rows (the empty one not counted): the plan
# takes 128-row tiles of 128 keys (AttentionConfig.for_batch_of; causal from
# 1024 rows), with ragged tails again.
LONG_REQUESTS = [(1500, 1500), (1300, 2000), (0, 50), (2600, 2600),
                 (1030, 1100), (300, 700)]
# What the plan picks per batch and kind (the warp-specialised kernel is
# tested below with num_warps=12 given).
BATCHES = {"short": (REQUESTS, {"ragged": "num_warps=4", "paged": "num_warps=4",
                                "paged 1": "num_warps=4"}),
           "long": (LONG_REQUESTS,
                    {"ragged": "num_warps=8", "paged": "num_warps=8",
                     "paged 1": "num_warps=8"})}


def as_i32(values):
    return torch.tensor(values, dtype=torch.int32, device="cuda")


def indptr_of(lengths):
    out = [0]
    for n in lengths:
        out.append(out[-1] + n)
    return out


@pytest.mark.parametrize("batch", ["short", "long"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("heads", [(8, 8), (8, 2)])
@pytest.mark.parametrize("kv_layout", ["NHD", "HND"])
def test_ragged(batch, causal, heads, kv_layout):
    hq, hk, d = *heads, 128
    requests, warps = BATCHES[batch]
    qo = [r[0] for r in requests]
    kv = [r[1] for r in requests]
    q = torch.randn(sum(qo), hq, d, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(sum(kv), hk, d, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    kk, vv = ((k, v) if kv_layout == "NHD" else
              (k.transpose(0, 1).contiguous(), v.transpose(0, 1).contiguous()))
    w = fijit.BatchPrefillWithRaggedKVCacheWrapper(None, kv_layout)
    w.plan(as_i32(indptr_of(qo)), as_i32(indptr_of(kv)), hq, hk, d,
           causal=causal, q_data_type=torch.bfloat16)
    assert warps["ragged"] in str(w._cached_module.kernel_config)
    out = torch.full_like(q, float("nan"))
    _, lse = w.run(q, kk, vv, out=out, return_lse=True)
    torch.cuda.synchronize()
    assert not out.isnan().any()
    qi, ki = indptr_of(qo), indptr_of(kv)
    for b, (n_q, n_kv) in enumerate(requests):
        if n_q == 0:
            continue
        sl_q, sl_k = slice(qi[b], qi[b + 1]), slice(ki[b], ki[b + 1])
        ref, ref_lse = reference(q[sl_q], k[sl_k], v[sl_k], causal=causal)
        assert rel_err(out[sl_q], ref) < 2e-2, b
        finite = torch.isfinite(ref_lse)
        assert (lse[sl_q][finite] - ref_lse[finite]).abs().max() < 1e-2, b


@pytest.mark.parametrize("batch", ["short", "long"])
@pytest.mark.parametrize("page_size", [1, 16])
@pytest.mark.parametrize("causal", [False, True])
def test_paged_matches_dense_and_plan_is_reused(batch, page_size, causal):
    hq, hk, d = 8, 2, 128
    requests, warps = BATCHES[batch]
    qo = [r[0] for r in requests]
    kv = [r[1] for r in requests]
    cache, indptr, indices, last, dense = random_paged(
        kv, page_size, hk, d, "NHD", torch.bfloat16)
    w = fijit.BatchPrefillWithPagedKVCacheWrapper(None, "NHD")
    w.plan(as_i32(indptr_of(qo)), indptr, indices, last, hq, hk, d,
           page_size, causal=causal, q_data_type="bfloat16")
    expected = warps["paged 1" if page_size == 1 else "paged"]
    assert expected in str(w._cached_module.kernel_config)
    qi = indptr_of(qo)
    for _ in range(2):
        q = torch.randn(sum(qo), hq, d, device="cuda", dtype=torch.bfloat16)
        out = torch.full_like(q, float("nan"))
        w.run(q, cache, out=out)
        torch.cuda.synchronize()
        for b, (n_q, _) in enumerate(requests):
            if n_q == 0:
                continue
            sl = slice(qi[b], qi[b + 1])
            ref, _ = reference(q[sl], *dense[b], causal=causal)
            assert rel_err(out[sl], ref) < 2e-2, b


@pytest.mark.parametrize("d", [64, 128, 256])
@pytest.mark.parametrize("variant", [dict(causal=False), dict(causal=True),
                                     dict(causal=True, window_left=300),
                                     dict(logits_soft_cap=20.0)])
def test_ragged_warp_specialised(d, variant):
    """The TMA kernel over packed rows, forced on short and awkward requests:
    boxes that run into the next request's rows (masked keys, unstored
    queries), an empty request, GQA, f16."""
    hq, hk = 8, 2
    qo = [r[0] for r in REQUESTS]
    kv = [r[1] for r in REQUESTS]
    dt = torch.float16
    q = torch.randn(sum(qo), hq, d, device="cuda", dtype=dt)
    k = torch.randn(sum(kv), hk, d, device="cuda", dtype=dt)
    v = torch.randn_like(k)
    w = fijit.BatchPrefillWithRaggedKVCacheWrapper(None, "NHD")
    w.plan(as_i32(indptr_of(qo)), as_i32(indptr_of(kv)), hq, hk, d,
           q_data_type=dt, num_warps=12, **variant)
    out = torch.full_like(q, float("nan"))
    _, lse = w.run(q, k, v, out=out, return_lse=True)
    torch.cuda.synchronize()
    ref_args = {("soft_cap" if key == "logits_soft_cap" else key): value
                for key, value in variant.items()}
    qi, ki = indptr_of(qo), indptr_of(kv)
    for b, (n_q, n_kv) in enumerate(REQUESTS):
        if n_q == 0:
            continue
        sl_q, sl_k = slice(qi[b], qi[b + 1]), slice(ki[b], ki[b + 1])
        ref, ref_lse = reference(q[sl_q], k[sl_k], v[sl_k], **ref_args)
        assert rel_err(out[sl_q], ref) < 2e-2, b
        finite = torch.isfinite(ref_lse)
        assert (lse[sl_q][finite] - ref_lse[finite]).abs().max() < 1e-2, b


@pytest.mark.parametrize("page_size", [8, 16, 256])
@pytest.mark.parametrize("kv_layout", ["NHD", "HND"])
@pytest.mark.parametrize("causal", [False, True])
def test_paged_warp_specialised(page_size, kv_layout, causal):
    """The TMA kernel on a paged cache, forced on short requests: one box
    per page (8 and 16 rows), a page bigger than the tile (256), boxes past
    a request's last page, both layouts."""
    hq, hk, d = 8, 2, 128
    qo = [r[0] for r in REQUESTS]
    kv = [r[1] for r in REQUESTS]
    cache, indptr, indices, last, dense = random_paged(
        kv, page_size, hk, d, kv_layout, torch.bfloat16)
    w = fijit.BatchPrefillWithPagedKVCacheWrapper(None, kv_layout)
    w.plan(as_i32(indptr_of(qo)), indptr, indices, last, hq, hk, d,
           page_size, causal=causal, q_data_type="bfloat16", num_warps=12)
    q = torch.randn(sum(qo), hq, d, device="cuda", dtype=torch.bfloat16)
    out = torch.full_like(q, float("nan"))
    _, lse = w.run(q, cache, out=out, return_lse=True)
    torch.cuda.synchronize()
    qi = indptr_of(qo)
    for b, (n_q, _) in enumerate(REQUESTS):
        if n_q == 0:
            continue
        sl = slice(qi[b], qi[b + 1])
        ref, ref_lse = reference(q[sl], *dense[b], causal=causal)
        assert rel_err(out[sl], ref) < 2e-2, b
        finite = torch.isfinite(ref_lse)
        assert (lse[sl][finite] - ref_lse[finite]).abs().max() < 1e-2, b


def test_plan_checks_index_tensors():
    w = fijit.BatchPrefillWithRaggedKVCacheWrapper(None)
    with pytest.raises(ValueError, match="kv_indptr describes 2 requests; "
                                         "expected 1"):
        w.plan(as_i32([0, 4]), as_i32([0, 3, 5]), 8, 8, 128)
    with pytest.raises(ValueError, match="qo_indptr must start at 0"):
        w.plan(as_i32([1, 4]), as_i32([0, 3]), 8, 8, 128)
    with pytest.raises(RuntimeError, match="call plan"):
        fijit.BatchPrefillWithPagedKVCacheWrapper(None).run(None, None)


def test_ragged_run_under_graph_capture():
    hq, hk, d = 8, 2, 64
    qo, kv = [3, 50, 17], [3, 90, 200]
    q = torch.randn(sum(qo), hq, d, device="cuda", dtype=torch.float16)
    k = torch.randn(sum(kv), hk, d, device="cuda", dtype=torch.float16)
    v = torch.randn_like(k)
    w = fijit.BatchPrefillWithRaggedKVCacheWrapper(None)
    w.plan(as_i32(indptr_of(qo)), as_i32(indptr_of(kv)), hq, hk, d,
           causal=True, q_data_type=torch.float16)
    out = torch.empty_like(q)
    w.run(q, k, v, out=out)
    graph, stream = torch.cuda.CUDAGraph(), torch.cuda.Stream()
    with torch.cuda.stream(stream), torch.cuda.graph(graph, stream=stream):
        w.run(q, k, v, out=out)
    q.copy_(torch.randn_like(q))
    out.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    qi, ki = indptr_of(qo), indptr_of(kv)
    for b in range(len(qo)):
        ref, _ = reference(q[qi[b]:qi[b + 1]], k[ki[b]:ki[b + 1]],
                           v[ki[b]:ki[b + 1]], causal=True)
        assert rel_err(out[qi[b]:qi[b + 1]], ref) < 5e-3, b


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("paged", [False, True])
def test_warp_specialised_walk_over_many_requests(causal, paged):
    """The persistent kernel's walk: 75 requests (three 32-request steps of
    its scan), empty ones among them, and more work tiles than SMs, so each
    CTA finds several tiles' requests."""
    gen = torch.Generator().manual_seed(16)
    qo = torch.randint(0, 400, (75,), generator=gen).tolist()
    qo[0] = qo[31] = qo[32] = qo[74] = 0
    qo[40] = 1500
    kv = [n + int(extra) for n, extra in
          zip(qo, torch.randint(0, 300, (75,), generator=gen))]
    hq, hk, d = 16, 4, 128
    q = torch.randn(sum(qo), hq, d, device="cuda", dtype=torch.bfloat16)
    qi, ki = indptr_of(qo), indptr_of(kv)
    if paged:
        cache, indptr, indices, last, dense = random_paged(
            kv, 16, hk, d, "NHD", torch.bfloat16)
        w = fijit.BatchPrefillWithPagedKVCacheWrapper(None, "NHD")
        w.plan(as_i32(qi), indptr, indices, last, hq, hk, d, 16,
               causal=causal, q_data_type="bfloat16", num_warps=12)
        args = (q, cache)
    else:
        k = torch.randn(sum(kv), hk, d, device="cuda", dtype=torch.bfloat16)
        v = torch.randn_like(k)
        dense = [(k[ki[b]:ki[b + 1]], v[ki[b]:ki[b + 1]])
                 for b in range(len(kv))]
        w = fijit.BatchPrefillWithRaggedKVCacheWrapper(None, "NHD")
        w.plan(as_i32(qi), as_i32(ki), hq, hk, d, causal=causal,
               q_data_type="bfloat16", num_warps=12)
        args = (q, k, v)
    assert "work_tile=min(" in w._cached_module.ir("builder")
    out = torch.full_like(q, float("nan"))
    _, lse = w.run(*args, out=out, return_lse=True)
    torch.cuda.synchronize()
    for b, n_q in enumerate(qo):
        if n_q == 0:
            continue
        sl = slice(qi[b], qi[b + 1])
        ref, ref_lse = reference(q[sl], *dense[b], causal=causal)
        assert rel_err(out[sl], ref) < 2e-2, b
        finite = torch.isfinite(ref_lse)
        assert (lse[sl][finite] - ref_lse[finite]).abs().max() < 1e-2, b
