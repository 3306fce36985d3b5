"""GPU correctness of decode kernels: dense, paged (random page tables) and
the merge of split states, against a float32 reference; outputs poisoned."""
import math

import pytest

torch = pytest.importorskip("torch")
import fijit  # noqa: E402
from attention_reference import rel_err  # noqa: E402

pytestmark = pytest.mark.gpu


def reference(q, k, v, sm_scale=None):
    """q [Hq, D], k/v [kv_len, Hk, D] -> out [Hq, D], lse base 2 [Hq]."""
    group = q.shape[0] // k.shape[1]
    kf = k.float().repeat_interleave(group, dim=1)
    vf = v.float().repeat_interleave(group, dim=1)
    scale = sm_scale or 1.0 / math.sqrt(q.shape[-1])
    s = torch.einsum("hd,khd->hk", q.float(), kf) * scale
    out = torch.einsum("hk,khd->hd", torch.softmax(s, -1), vf)
    return out, torch.logsumexp(s, -1) / math.log(2)


@pytest.mark.parametrize("head_dim", [64, 128, 256])
@pytest.mark.parametrize("heads", [(32, 32), (32, 8), (64, 8), (32, 2)])
@pytest.mark.parametrize("kv_layout", ["NHD", "HND"])
def test_single_decode(head_dim, heads, kv_layout):
    hq, hk = heads
    for kv_len in [1, 7, 100, 1000, 20000]:
        q = torch.randn(hq, head_dim, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(kv_len, hk, head_dim, device="cuda",
                        dtype=torch.bfloat16)
        v = torch.randn_like(k)
        kk, vv = ((k, v) if kv_layout == "NHD" else
                  (k.transpose(0, 1).contiguous(),
                   v.transpose(0, 1).contiguous()))
        out = torch.full_like(q, float("nan"))
        out2, lse = fijit.single_decode_with_kv_cache(
            q, kk, vv, kv_layout=kv_layout, out=out, return_lse=True)
        torch.cuda.synchronize()
        ref, ref_lse = reference(q, k, v)
        assert not out.isnan().any(), kv_len
        assert rel_err(out, ref) < 2e-2, kv_len
        assert (lse - ref_lse).abs().max().item() < 1e-2, kv_len


# Tunings whose warps do not divide the KV tile's 16-key steps (e.g. 3
# steps over 2 key warps): the last key warp's share is shorter, and every
# key must still count (lengths below, at and past one tile, and not
# multiples of it).
@pytest.mark.parametrize("tuning", [
    dict(tile_kv=48, num_warps=2),
    dict(tile_kv=80, num_warps=4),
    dict(tile_kv=112, num_warps=8),
    dict(tile_kv=144, num_warps=8),
])
@pytest.mark.parametrize("heads", [(8, 8), (32, 1)])
def test_single_decode_uneven_key_split(tuning, heads):
    hq, hk, d = heads[0], heads[1], 64
    for kv_len in [5, tuning["tile_kv"], 1000, 4099]:
        q = torch.randn(hq, d, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(kv_len, hk, d, device="cuda", dtype=torch.bfloat16)
        v = torch.randn_like(k)
        out = torch.full_like(q, float("nan"))
        _, lse = fijit.single_decode_with_kv_cache(q, k, v, out=out,
                                                   return_lse=True, **tuning)
        ref, ref_lse = reference(q, k, v)
        assert rel_err(out, ref) < 2e-2, kv_len
        assert (lse - ref_lse).abs().max().item() < 1e-2, kv_len


def random_paged(batch_lens, page_size, hk, d, kv_layout, dtype):
    """Shuffled pages, partly filled last pages; returns the cache, page
    table and dense per-request K/V for the reference."""
    pages_per = [(n + page_size - 1) // page_size for n in batch_lens]
    total = sum(pages_per) + 3  # unused pages too
    order = torch.randperm(total, device="cuda")
    shape = ((total, page_size, hk, d) if kv_layout == "NHD"
             else (total, hk, page_size, d))
    k_cache = torch.randn(shape, device="cuda", dtype=dtype)
    v_cache = torch.randn(shape, device="cuda", dtype=dtype)
    indptr, indices, last, dense = [0], [], [], []
    at = 0
    for n, p in zip(batch_lens, pages_per):
        ids = order[at:at + p]
        at += p
        indices += ids.tolist()
        indptr.append(len(indices))
        last.append(n - (p - 1) * page_size if p else 0)
        if kv_layout == "NHD":
            kd, vd = k_cache[ids], v_cache[ids]
        else:
            kd, vd = k_cache[ids].transpose(1, 2), v_cache[ids].transpose(1, 2)
        dense.append((kd.reshape(-1, hk, d)[:n], vd.reshape(-1, hk, d)[:n]))
    as_i32 = lambda x: torch.tensor(x, dtype=torch.int32,  # noqa: E731
                                    device="cuda")
    return (k_cache, v_cache), as_i32(indptr), as_i32(indices), as_i32(
        last), dense


@pytest.mark.parametrize("page_size", [1, 16])
@pytest.mark.parametrize("kv_layout", ["NHD", "HND"])
@pytest.mark.parametrize("heads", [(32, 8), (32, 32)])
# Keys per split-KV chunk: the plan's, one tile (every request cut into
# one-tile splits, so the merge sees up to 141 of them), and a size that is
# not a whole number of tiles.
@pytest.mark.parametrize("chunk", [None, 64, 1000])
def test_batch_decode_paged_matches_dense(page_size, kv_layout, heads,
                                          chunk):
    hq, hk = heads
    d = 128
    lens = [1, 17, 300, 4099, 0, 64, 9000, 5]
    cache, indptr, indices, last, dense = random_paged(
        lens, page_size, hk, d, kv_layout, torch.bfloat16)
    ws = torch.empty(64 << 20, dtype=torch.uint8, device="cuda")
    wrapper = fijit.BatchDecodeWithPagedKVCacheWrapper(ws, kv_layout)
    wrapper.plan(indptr, indices, last, hq, hk, d, page_size,
                 q_data_type=torch.bfloat16, kv_chunk=chunk)
    for _ in range(2):  # one plan, several runs
        q = torch.randn(len(lens), hq, d, device="cuda",
                        dtype=torch.bfloat16)
        out = torch.full_like(q, float("nan"))
        _, lse = wrapper.run(q, cache, out=out, return_lse=True)
        torch.cuda.synchronize()
        for b, n in enumerate(lens):
            if n == 0:
                assert (out[b] == 0).all() and torch.isinf(lse[b]).all()
                continue
            ref, ref_lse = reference(q[b], *dense[b])
            assert rel_err(out[b], ref) < 2e-2, (b, n)
            assert (lse[b] - ref_lse).abs().max().item() < 1e-2, (b, n)
        # The last CTA of each split (request, kv head) resets its counter.
        counters = wrapper._counters
        assert counters is None or (counters == 0).all()


def test_combined_cache_tensor_and_graph_capture():
    hq, hk, d, page_size = 32, 8, 128, 16
    lens = [500, 33, 2000]
    (k_cache, v_cache), indptr, indices, last, dense = random_paged(
        lens, page_size, hk, d, "NHD", torch.bfloat16)
    combined = torch.stack([k_cache, v_cache], dim=1)
    ws = torch.empty(16 << 20, dtype=torch.uint8, device="cuda")
    wrapper = fijit.BatchDecodeWithPagedKVCacheWrapper(ws, "NHD")
    # Split-KV (256-key chunks), so every replay also counts and merges.
    wrapper.plan(indptr, indices, last, hq, hk, d, page_size,
                 q_data_type="bfloat16", kv_chunk=256)
    q = torch.randn(len(lens), hq, d, device="cuda", dtype=torch.bfloat16)
    out = torch.empty_like(q)
    wrapper.run(q, combined, out=out)
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream), torch.cuda.graph(graph, stream=stream):
        wrapper.run(q, combined, out=out)
    for _ in range(3):
        q.copy_(torch.randn_like(q))
        out.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        for b in range(len(lens)):
            assert rel_err(out[b], reference(q[b], *dense[b])[0]) < 2e-2


def test_plan_rejects_bad_page_tables():
    ws = torch.empty(1 << 20, dtype=torch.uint8, device="cuda")
    w = fijit.BatchDecodeWithPagedKVCacheWrapper(ws)
    i32 = lambda x: torch.tensor(x, dtype=torch.int32,  # noqa: E731
                                 device="cuda")
    with pytest.raises(ValueError, match="indptr must be an int32 tensor"):
        w.plan(i32([0, 1]).long(), i32([0]), i32([1]), 32, 8, 128, 16)
    with pytest.raises(ValueError, match="last_page_len has 2 entries"):
        w.plan(i32([0, 1]), i32([0]), i32([1, 1]), 32, 8, 128, 16)
    with pytest.raises(ValueError, match=r"last_page_len\[0\] = 17"):
        w.plan(i32([0, 1]), i32([0]), i32([17]), 32, 8, 128, 16)
    # Page ids are checked where the caller gives them on the host (a
    # device tensor would have to be read back).
    w.plan(i32([0, 1]), i32([9]).cpu(), i32([3]), 32, 8, 128, 16,
           q_data_type="bfloat16")
    q = torch.randn(1, 32, 128, device="cuda", dtype=torch.bfloat16)
    cache = torch.randn(4, 16, 8, 128, device="cuda", dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="refers to page 9"):
        w.run(q, (cache, cache))


def test_merge_states_matches_full_attention():
    hq, d = 8, 128
    q = torch.randn(hq, d, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(3000, hq, d, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    parts = [fijit.single_decode_with_kv_cache(q, k[a:b], v[a:b],
                                               return_lse=True)
             for a, b in ((0, 1000), (1000, 1001), (1001, 3000))]
    vs = torch.stack([p[0] for p in parts], 0).unsqueeze(0)
    ss = torch.stack([p[1] for p in parts], 0).unsqueeze(0)
    merged, lse = fijit.merge_states(vs, ss)
    ref, ref_lse = reference(q, k, v)
    assert rel_err(merged[0], ref) < 2e-2
    assert (lse[0] - ref_lse).abs().max().item() < 1e-2
    m2, _ = fijit.merge_state(parts[0][0].unsqueeze(0),
                              parts[0][1].unsqueeze(0),
                              parts[2][0].unsqueeze(0),
                              parts[2][1].unsqueeze(0))
    assert m2.shape == (1, hq, d)


@pytest.mark.parametrize("window_left", [0, 37, 100, 5000])
def test_single_decode_sliding_window(window_left):
    hq, hk, d, kv_len = 32, 8, 128, 3000
    q = torch.randn(hq, d, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(kv_len, hk, d, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    out, lse = fijit.single_decode_with_kv_cache(
        q, k, v, window_left=window_left, return_lse=True)
    # The window ends at the last key and reaches window_left keys back.
    first = max(0, kv_len - 1 - window_left)
    ref, ref_lse = reference(q, k[first:], v[first:])
    assert rel_err(out, ref) < 2e-2
    assert (lse - ref_lse).abs().max().item() < 1e-2
