"""GPU correctness of head_dim_qk != head_dim_vo (DeepSeek's 192/128, and
128/64) in every kind and kernel path (the warp-specialised sm_90a prefill,
the tile engine on wgmma and on mma.sync, decode with and without split-KV),
causal and not, GQA, with the LSE, against the float32 reference
(attention_reference.reference: scale 1/sqrt(head_dim_qk)); random inputs,
outputs poisoned with NaN before each run."""
import pytest

torch = pytest.importorskip("torch")
import fijit  # noqa: E402
from attention_reference import reference, rel_err  # noqa: E402
from test_gpu_batch_prefill import as_i32, indptr_of  # noqa: E402

pytestmark = pytest.mark.gpu

BF16 = torch.bfloat16
PAIRS = [(192, 128), (128, 64)]
# (qo_len, kv_len): one token, awkward lengths, queries that are the tail
# of a longer context.
SHAPES = [(1, 1), (37, 300), (129, 129), (200, 1000)]
# Requests of a batch: (qo_len, kv_len), an empty one among them.
REQUESTS = [(1, 1), (17, 33), (0, 40), (100, 100), (64, 700), (5, 5)]


def close(out, lse, ref, ref_lse, what):
    assert not out.isnan().any(), what
    assert rel_err(out, ref) < 2e-2, what
    finite = torch.isfinite(ref_lse)
    diff = (lse[finite] - ref_lse[finite]).abs()
    tol = 1e-2 + 1e-4 * ref_lse[finite].abs()
    assert (diff <= tol).all(), (what, diff.max().item())


@pytest.mark.parametrize("dims", PAIRS)
@pytest.mark.parametrize("causal", [False, True])
# The default kernel (warp-specialised on sm_90a), the tile engine with one
# warpgroup (wgmma on sm_90a), and the mma.sync path (target sm_80).
@pytest.mark.parametrize("path", ["default", "num_warps=4", "sm_80"])
def test_single_prefill(dims, causal, path):
    dqk, dvo = dims
    hq, hk = 8, 2
    for qo_len, kv_len in SHAPES:
        q = torch.randn(qo_len, hq, dqk, device="cuda", dtype=BF16)
        k = torch.randn(kv_len, hk, dqk, device="cuda", dtype=BF16)
        v = torch.randn(kv_len, hk, dvo, device="cuda", dtype=BF16)
        out = torch.full((qo_len, hq, dvo), float("nan"), device="cuda",
                         dtype=BF16)
        if path == "sm_80":
            kernel = fijit.compile_attention(
                kind="single_prefill", head_dim_qk=dqk, head_dim_vo=dvo,
                num_qo_heads=hq, num_kv_heads=hk, dtype_q="bf16",
                dtype_kv="bf16", dtype_o="bf16",
                mask="causal" if causal else "none", return_lse=True,
                target="sm_80")
            _, lse = kernel(q, k, v, out=out)
        else:
            tuning = dict(num_warps=4) if path == "num_warps=4" else {}
            _, lse = fijit.single_prefill_with_kv_cache(
                q, k, v, causal=causal, return_lse=True, out=out, **tuning)
        torch.cuda.synchronize()
        ref, ref_lse = reference(q, k, v, causal=causal)
        close(out, lse, ref, ref_lse, (qo_len, kv_len))


@pytest.mark.parametrize("dims", PAIRS)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("warps", [4, 12])
def test_batch_prefill_ragged(dims, causal, warps):
    dqk, dvo = dims
    hq, hk = 8, 2
    qo = [r[0] for r in REQUESTS]
    kv = [r[1] for r in REQUESTS]
    q = torch.randn(sum(qo), hq, dqk, device="cuda", dtype=BF16)
    k = torch.randn(sum(kv), hk, dqk, device="cuda", dtype=BF16)
    v = torch.randn(sum(kv), hk, dvo, device="cuda", dtype=BF16)
    w = fijit.BatchPrefillWithRaggedKVCacheWrapper(None, "NHD")
    w.plan(as_i32(indptr_of(qo)), as_i32(indptr_of(kv)), hq, hk, dqk, dvo,
           causal=causal, q_data_type=BF16, num_warps=warps)
    out = torch.full((sum(qo), hq, dvo), float("nan"), device="cuda",
                     dtype=BF16)
    _, lse = w.run(q, k, v, out=out, return_lse=True)
    torch.cuda.synchronize()
    qi, ki = indptr_of(qo), indptr_of(kv)
    for b, (n_q, _) in enumerate(REQUESTS):
        if n_q == 0:
            continue
        sq, sk = slice(qi[b], qi[b + 1]), slice(ki[b], ki[b + 1])
        ref, ref_lse = reference(q[sq], k[sk], v[sk], causal=causal)
        close(out[sq], lse[sq], ref, ref_lse, b)


def random_paged(lens, page_size, hk, dqk, dvo):
    """Shuffled pages of K (head_dim_qk) and V (head_dim_vo), NHD, partly
    filled last pages; the cache, page table and dense K/V per request."""
    pages_per = [(n + page_size - 1) // page_size for n in lens]
    total = sum(pages_per) + 3  # unused pages too
    order = torch.randperm(total, device="cuda")
    k_cache = torch.randn(total, page_size, hk, dqk, device="cuda",
                          dtype=BF16)
    v_cache = torch.randn(total, page_size, hk, dvo, device="cuda",
                          dtype=BF16)
    indptr, indices, last, dense = [0], [], [], []
    at = 0
    for n, p in zip(lens, pages_per):
        ids = order[at:at + p]
        at += p
        indices += ids.tolist()
        indptr.append(len(indices))
        last.append(n - (p - 1) * page_size if p else 0)
        dense.append((k_cache[ids].reshape(-1, hk, dqk)[:n],
                      v_cache[ids].reshape(-1, hk, dvo)[:n]))
    return ((k_cache, v_cache), as_i32(indptr), as_i32(indices),
            as_i32(last), dense)


@pytest.mark.parametrize("dims", PAIRS)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("warps", [4, 12])
@pytest.mark.parametrize("page_size", [1, 16])
def test_batch_prefill_paged(dims, causal, warps, page_size):
    dqk, dvo = dims
    hq, hk = 8, 2
    qo = [r[0] for r in REQUESTS]
    kv = [r[1] for r in REQUESTS]
    cache, indptr, indices, last, dense = random_paged(kv, page_size, hk,
                                                       dqk, dvo)
    w = fijit.BatchPrefillWithPagedKVCacheWrapper(None, "NHD")
    w.plan(as_i32(indptr_of(qo)), indptr, indices, last, hq, hk, dqk,
           page_size, head_dim_vo=dvo, causal=causal, q_data_type=BF16,
           num_warps=warps)
    q = torch.randn(sum(qo), hq, dqk, device="cuda", dtype=BF16)
    out = torch.full((sum(qo), hq, dvo), float("nan"), device="cuda",
                     dtype=BF16)
    _, lse = w.run(q, cache, out=out, return_lse=True)
    torch.cuda.synchronize()
    qi = indptr_of(qo)
    for b, (n_q, _) in enumerate(REQUESTS):
        if n_q == 0:
            continue
        sq = slice(qi[b], qi[b + 1])
        ref, ref_lse = reference(q[sq], *dense[b], causal=causal)
        close(out[sq], lse[sq], ref, ref_lse, b)


@pytest.mark.parametrize("dims", PAIRS)
@pytest.mark.parametrize("heads", [(8, 8), (32, 8)])
def test_single_decode(dims, heads):
    """FlashInfer's decode has one head_dim; fijit's single decode reads
    head_dim_vo from v. Lengths of one split and of many (the split-KV
    partials and their merge are head_dim_vo wide)."""
    dqk, dvo = dims
    hq, hk = heads
    for kv_len in [1, 7, 1000, 20000]:
        q = torch.randn(hq, dqk, device="cuda", dtype=BF16)
        k = torch.randn(kv_len, hk, dqk, device="cuda", dtype=BF16)
        v = torch.randn(kv_len, hk, dvo, device="cuda", dtype=BF16)
        out = torch.full((hq, dvo), float("nan"), device="cuda", dtype=BF16)
        _, lse = fijit.single_decode_with_kv_cache(q, k, v, out=out,
                                                   return_lse=True)
        torch.cuda.synchronize()
        ref, ref_lse = reference(q[None], k, v)
        close(out, lse, ref[0], ref_lse[0], kv_len)
