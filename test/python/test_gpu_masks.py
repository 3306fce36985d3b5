"""GPU correctness of FlashInfer's custom masks (custom_mask= and
packed_custom_mask=, FlashInfer's packbits / segment_packbits with
bitorder="little") in single prefill and in ragged and paged batch prefill,
on every kernel path that takes them (sm_90a: the warp-specialised kernel,
the tile engine's wgmma tiles, one and two warpgroups; mma.sync with
num_warps=2 and on target sm_80),
against the float32 reference (attention_reference.reference with the mask):
random masks with rows that see no key (zeros, LSE -inf, as FlashInfer),
rows that see every key, odd lengths, GQA, head dims 64 and 128, the mask
replacing causal, with the other variants, re-plans and CUDA-graph replay;
random inputs, outputs poisoned with NaN before each run."""
import pytest

torch = pytest.importorskip("torch")
import fijit  # noqa: E402
from attention_reference import reference, rel_err  # noqa: E402
from test_gpu_batch_prefill import as_i32, indptr_of  # noqa: E402
from test_gpu_decode import random_paged  # noqa: E402
from test_masks import ref_packbits, ref_segment_packbits  # noqa: E402

pytestmark = pytest.mark.gpu

BF16 = torch.bfloat16
# (qo_len, kv_len): one token, awkward lengths (no multiple of a tile or of
# 32 bits), keys shorter than the queries, long keys.
SHAPES = [(1, 1), (37, 300), (129, 129), (64, 77), (200, 1000), (90, 31)]
# Batches: an empty request, one without keys, odd lengths.
REQUESTS = [(1, 1), (17, 33), (0, 40), (100, 100), (64, 700), (5, 5),
            (9, 0), (33, 65)]


def random_mask(qo_len, kv_len, seed):
    """Random bits (density varying by row), every 5th row fully masked,
    every 7th fully visible."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    density = torch.rand(qo_len, 1, device="cuda", generator=g)
    mask = torch.rand(qo_len, kv_len, device="cuda", generator=g) < density
    mask[::5] = False
    mask[3::7] = True
    return mask


def fi_packed(masks):
    """FlashInfer's packed form of the requests' masks (packbits for one,
    segment_packbits for a batch), computed on the host by the pure-Python
    reference, as a uint8 device tensor."""
    flat, indptr = [], [0]
    for m in masks:
        flat += m.reshape(-1).tolist()
        indptr.append(len(flat))
    packed = (ref_packbits(flat) if len(masks) == 1 else
              ref_segment_packbits(flat, indptr)[0])
    return torch.tensor(packed, dtype=torch.uint8, device="cuda")


def close(out, lse, ref, ref_lse, mask, what):
    """Rows that see no key: exactly zero and LSE -inf (FlashInfer's);
    others within bf16 tolerance of the reference."""
    assert not out.isnan().any(), what
    empty = ~mask.any(dim=1)  # no key at all (kv_len 0) too
    assert (out[empty] == 0).all(), what
    if lse is not None:
        assert torch.isneginf(lse[empty]).all(), what
        seen = ~empty
        diff = (lse[seen] - ref_lse[seen]).abs()
        tol = 1e-2 + 1e-4 * ref_lse[seen].abs()
        assert (diff <= tol).all(), (what, diff.max().item())
    if ref.norm() > 0:
        assert rel_err(out, ref) < 2e-2, what


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("heads", [(8, 8), (8, 2)])
@pytest.mark.parametrize("d", [64, 128])
# The default kernel (sm_90a: the warp-specialised kernel), the tile
# engine's two warpgroups of wgmma tiles and one (the stand-in's), two
# mma.sync warps, and target sm_80.
@pytest.mark.parametrize("path", ["default", "num_warps=8", "num_warps=4",
                                  "num_warps=2", "sm_80"])
def test_single_prefill(packed, heads, d, path):
    hq, hk = heads
    for i, (qo_len, kv_len) in enumerate(SHAPES):
        q = torch.randn(qo_len, hq, d, device="cuda", dtype=BF16)
        k = torch.randn(kv_len, hk, d, device="cuda", dtype=BF16)
        v = torch.randn_like(k)
        mask = random_mask(qo_len, kv_len, seed=i)
        out = torch.full((qo_len, hq, d), float("nan"), device="cuda",
                         dtype=BF16)
        if path == "sm_80":
            kernel = fijit.compile_attention(
                kind="single_prefill", head_dim_qk=d, head_dim_vo=d,
                num_qo_heads=hq, num_kv_heads=hk, dtype_q="bf16",
                dtype_kv="bf16", dtype_o="bf16", mask="custom",
                return_lse=True, target="sm_80")
            _, lse = kernel(q, k, v, out=out,
                            packed_mask=fijit.custom_mask_words(mask))
        else:
            tuning = ({} if path == "default" else
                      dict(num_warps=int(path.split("=")[1])))
            kw = (dict(packed_custom_mask=fi_packed([mask])) if packed else
                  dict(custom_mask=mask))
            # FlashInfer: the custom mask replaces causal.
            _, lse = fijit.single_prefill_with_kv_cache(
                q, k, v, causal=i % 2 == 1, return_lse=True, out=out, **kw,
                **tuning)
        torch.cuda.synchronize()
        ref, ref_lse = reference(q, k, v, custom_mask=mask)
        close(out, lse, ref, ref_lse, mask, (path, qo_len, kv_len))


def test_single_prefill_all_visible_matches_no_mask():
    """An all-ones mask is attention without a mask."""
    q = torch.randn(77, 8, 128, device="cuda", dtype=BF16)
    k = torch.randn(301, 8, 128, device="cuda", dtype=BF16)
    v = torch.randn_like(k)
    mask = torch.ones(77, 301, dtype=torch.bool, device="cuda")
    out = fijit.single_prefill_with_kv_cache(q, k, v, custom_mask=mask)
    plain = fijit.single_prefill_with_kv_cache(q, k, v)
    torch.cuda.synchronize()
    assert rel_err(out, plain.float()) < 1e-2


@pytest.mark.parametrize("variant", [
    dict(window_left=40), dict(logits_soft_cap=30.0),
    dict(pos_encoding_mode="ALIBI", window_left=100, logits_soft_cap=20.0)])
@pytest.mark.parametrize("path", ["default", "sm_80"])
def test_single_prefill_with_other_variants(variant, path):
    """The mask after window and soft-cap, as FlashInfer applies it."""
    hq, hk, d = 8, 2, 128
    qo_len, kv_len = 100, 333
    q = torch.randn(qo_len, hq, d, device="cuda", dtype=BF16)
    k = torch.randn(kv_len, hk, d, device="cuda", dtype=BF16)
    v = torch.randn_like(k)
    mask = random_mask(qo_len, kv_len, seed=17)
    out = torch.full_like(q, float("nan"))
    ref_kw = dict(window_left=variant.get("window_left", -1),
                  soft_cap=variant.get("logits_soft_cap", 0.0))
    alibi = variant.get("pos_encoding_mode") == "ALIBI"
    if alibi:
        ref_kw["alibi_slopes"] = torch.tensor(
            fijit._variants.get_alibi_slopes(hq), device="cuda")
    if path == "sm_80":
        kernel = fijit.compile_attention(
            kind="single_prefill", num_qo_heads=hq, num_kv_heads=hk,
            mask="custom", return_lse=True, target="sm_80",
            window_left=variant.get("window_left", -1),
            logits_soft_cap=variant.get("logits_soft_cap", 0.0),
            pos_encoding="alibi" if alibi else "none")
        _, lse = kernel(q, k, v, out=out,
                        packed_mask=fijit.custom_mask_words(mask))
    else:
        _, lse = fijit.single_prefill_with_kv_cache(
            q, k, v, custom_mask=mask, return_lse=True, out=out, **variant)
    torch.cuda.synchronize()
    ref, ref_lse = reference(q, k, v, custom_mask=mask, **ref_kw)
    visible = mask.clone()
    if ref_kw["window_left"] >= 0:
        qi = torch.arange(qo_len, device="cuda")[:, None]
        ki = torch.arange(kv_len, device="cuda")[None, :]
        visible &= ki >= qi + (kv_len - qo_len) - ref_kw["window_left"]
    close(out, lse, ref, ref_lse, visible, variant)


def batch_masks(requests, seed):
    return [random_mask(n_q, n_k, seed + b)
            for b, (n_q, n_k) in enumerate(requests)]


def flat_mask(masks):
    return torch.cat([m.reshape(-1) for m in masks])


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("heads", [(8, 8), (8, 2)])
@pytest.mark.parametrize("d", [64, 128])
# num_warps=12: the warp-specialised kernel.
@pytest.mark.parametrize("warps", [2, 4, 8, 12])
def test_batch_prefill_ragged(packed, heads, d, warps):
    hq, hk = heads
    qo = [r[0] for r in REQUESTS]
    kv = [r[1] for r in REQUESTS]
    q = torch.randn(sum(qo), hq, d, device="cuda", dtype=BF16)
    k = torch.randn(sum(kv), hk, d, device="cuda", dtype=BF16)
    v = torch.randn_like(k)
    masks = batch_masks(REQUESTS, seed=100)
    kw = (dict(packed_custom_mask=fi_packed(masks)) if packed else
          dict(custom_mask=flat_mask(masks)))
    tiles = dict(tile_kv=128) if warps == 8 else {}
    w = fijit.BatchPrefillWithRaggedKVCacheWrapper(None, "NHD")
    w.plan(as_i32(indptr_of(qo)), as_i32(indptr_of(kv)), hq, hk, d,
           causal=True, q_data_type=BF16, num_warps=warps, **tiles, **kw)
    assert "mask=custom" in str(w._cached_module.kernel_config)
    out = torch.full_like(q, float("nan"))
    _, lse = w.run(q, k, v, out=out, return_lse=True)
    torch.cuda.synchronize()
    qi, ki = indptr_of(qo), indptr_of(kv)
    for b, (n_q, _) in enumerate(REQUESTS):
        if n_q == 0:
            continue
        sq, sk = slice(qi[b], qi[b + 1]), slice(ki[b], ki[b + 1])
        ref, ref_lse = reference(q[sq], k[sk], v[sk], custom_mask=masks[b])
        close(out[sq], lse[sq], ref, ref_lse, masks[b], b)


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("page_size", [1, 16])
@pytest.mark.parametrize("d", [64, 128])
@pytest.mark.parametrize("warps", [2, 4, 12])
def test_batch_prefill_paged(packed, page_size, d, warps):
    if warps == 12 and page_size == 1:
        pytest.skip("num_warps=12 loads whole pages of at least 8 keys")
    hq, hk = 8, 2
    qo = [r[0] for r in REQUESTS]
    kv = [r[1] for r in REQUESTS]
    cache, indptr, indices, last, dense = random_paged(
        kv, page_size, hk, d, "NHD", BF16)
    masks = batch_masks(REQUESTS, seed=200)
    kw = (dict(packed_custom_mask=fi_packed(masks)) if packed else
          dict(custom_mask=flat_mask(masks)))
    w = fijit.BatchPrefillWithPagedKVCacheWrapper(None, "NHD")
    w.plan(as_i32(indptr_of(qo)), indptr, indices, last, hq, hk, d,
           page_size, q_data_type=BF16, num_warps=warps, **kw)
    q = torch.randn(sum(qo), hq, d, device="cuda", dtype=BF16)
    out = torch.full_like(q, float("nan"))
    _, lse = w.run(q, cache, out=out, return_lse=True)
    torch.cuda.synchronize()
    qi = indptr_of(qo)
    for b, (n_q, _) in enumerate(REQUESTS):
        if n_q == 0:
            continue
        sq = slice(qi[b], qi[b + 1])
        ref, ref_lse = reference(q[sq], *dense[b], custom_mask=masks[b])
        close(out[sq], lse[sq], ref, ref_lse, masks[b], b)


def test_replans_with_and_without_a_mask():
    """One wrapper: a mask, none, then a longer batch with a mask (its
    buffers grow); each run follows its own plan."""
    hq, hk, d = 8, 2, 128
    w = fijit.BatchPrefillWithRaggedKVCacheWrapper(None, "NHD")
    for requests, masked in ((REQUESTS[:4], True), (REQUESTS[:4], False),
                             (REQUESTS + [(300, 2000)], True)):
        qo = [r[0] for r in requests]
        kv = [r[1] for r in requests]
        q = torch.randn(sum(qo), hq, d, device="cuda", dtype=BF16)
        k = torch.randn(sum(kv), hk, d, device="cuda", dtype=BF16)
        v = torch.randn_like(k)
        masks = batch_masks(requests, seed=300) if masked else None
        w.plan(as_i32(indptr_of(qo)), as_i32(indptr_of(kv)), hq, hk, d,
               q_data_type=BF16,
               custom_mask=flat_mask(masks) if masked else None)
        out = torch.full_like(q, float("nan"))
        w.run(q, k, v, out=out)
        torch.cuda.synchronize()
        qi, ki = indptr_of(qo), indptr_of(kv)
        for b, (n_q, _) in enumerate(requests):
            if n_q == 0:
                continue
            sq, sk = slice(qi[b], qi[b + 1]), slice(ki[b], ki[b + 1])
            m = masks[b] if masked else None
            ref, _ = reference(q[sq], k[sk], v[sk], custom_mask=m)
            if ref.norm() > 0:
                assert rel_err(out[sq], ref) < 2e-2, (masked, b)


def test_graph_replay_reads_the_latest_plans_mask():
    """use_cuda_graph=True: the mask lives in the caller's buffers, so a
    replay after a re-plan (same batch, new mask) computes the new mask."""
    hq, hk, d = 8, 2, 64
    qo, kv = [3, 50, 17], [3, 90, 200]
    bits = sum(a * b for a, b in zip(qo, kv))
    q = torch.randn(sum(qo), hq, d, device="cuda", dtype=torch.float16)
    k = torch.randn(sum(kv), hk, d, device="cuda", dtype=torch.float16)
    v = torch.randn_like(k)
    qo_buf, kv_buf = as_i32(indptr_of(qo)), as_i32(indptr_of(kv))
    mask_buf = torch.empty(bits // 8 + 64, dtype=torch.uint8, device="cuda")
    indptr_buf = torch.empty(len(qo) + 1, dtype=torch.int32, device="cuda")
    w = fijit.BatchPrefillWithRaggedKVCacheWrapper(
        None, use_cuda_graph=True, qo_indptr_buf=qo_buf, kv_indptr_buf=kv_buf,
        custom_mask_buf=mask_buf, mask_indptr_buf=indptr_buf)
    requests = list(zip(qo, kv))
    w.plan(qo_buf, kv_buf, hq, hk, d, q_data_type=torch.float16,
           custom_mask=flat_mask(batch_masks(requests, seed=400)))
    out = torch.empty_like(q)
    w.run(q, k, v, out=out)
    graph, stream = torch.cuda.CUDAGraph(), torch.cuda.Stream()
    with torch.cuda.stream(stream), torch.cuda.graph(graph, stream=stream):
        w.run(q, k, v, out=out)
    masks = batch_masks(requests, seed=500)
    w.plan(qo_buf, kv_buf, hq, hk, d, q_data_type=torch.float16,
           custom_mask=flat_mask(masks))
    out.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    qi, ki = indptr_of(qo), indptr_of(kv)
    for b in range(len(qo)):
        sq, sk = slice(qi[b], qi[b + 1]), slice(ki[b], ki[b + 1])
        ref, ref_lse = reference(q[sq], k[sk], v[sk], custom_mask=masks[b])
        close(out[sq], None, ref, ref_lse, masks[b], b)
    with pytest.raises(ValueError, match="without a custom mask"):
        w.plan(qo_buf, kv_buf, hq, hk, d, q_data_type=torch.float16)


def test_mask_errors_name_the_argument():
    hq, hk, d = 8, 2, 64
    qo, kv = [3, 5], [4, 6]
    w = fijit.BatchPrefillWithRaggedKVCacheWrapper(None)
    with pytest.raises(ValueError, match="custom_mask has shape"):
        w.plan(as_i32(indptr_of(qo)), as_i32(indptr_of(kv)), hq, hk, d,
               custom_mask=torch.ones(41, dtype=torch.bool, device="cuda"))
    with pytest.raises(ValueError, match="packed_custom_mask has shape"):
        w.plan(as_i32(indptr_of(qo)), as_i32(indptr_of(kv)), hq, hk, d,
               packed_custom_mask=torch.zeros(2, dtype=torch.uint8,
                                              device="cuda"))
    q = torch.randn(3, hq, d, device="cuda", dtype=torch.float16)
    k = torch.randn(4, hk, d, device="cuda", dtype=torch.float16)
    with pytest.raises(ValueError, match="custom_mask has dtype"):
        fijit.single_prefill_with_kv_cache(
            q, k, k, custom_mask=torch.ones(3, 4, device="cuda"))
    graph = fijit.BatchPrefillWithRaggedKVCacheWrapper(
        None, use_cuda_graph=True, qo_indptr_buf=as_i32(indptr_of(qo)),
        kv_indptr_buf=as_i32(indptr_of(kv)))
    with pytest.raises(ValueError, match="custom_mask_buf"):
        graph.plan(as_i32(indptr_of(qo)), as_i32(indptr_of(kv)), hq, hk, d,
                   custom_mask=torch.ones(42, dtype=torch.bool,
                                          device="cuda"))
