"""GPU correctness of the merge kernel (kind=merge_states) behind
merge_state, merge_states and merge_state_in_place, against the float32
reference of FlashInfer's merges: fresh random states with LSE -inf states
and rows of nothing but -inf, odd sequence lengths, head dims 64/128/256
(and 96, 512), f16 and bf16, masks, strided tensors; outputs poisoned with
NaN before each launch."""
import math

import pytest

torch = pytest.importorskip("torch")
import fijit  # noqa: E402
import fijit.cascade  # noqa: E402
from merge_reference import (merge_state_reference,  # noqa: E402
                             merge_states_reference)

pytestmark = pytest.mark.gpu

DTYPES = [torch.float16, torch.bfloat16]
HEAD_DIMS = [64, 128, 256]
SEQ_LENS = [1, 7, 129, 1000]
HEADS = [1, 5, 32]
# Output tolerances: the kernel merges in f32 (ex2/lg2.approx), so the
# error is the output dtype's rounding.
TOLERANCE = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def lse_states(shape, neg_inf=0.2):
    """Base-2 LSEs of attention states: spread over a range where the
    weights differ by orders of magnitude, a fraction of them -inf (states
    that saw no key), and the first position's head 0 -inf in every state
    (a row nothing merges into)."""
    s = torch.randn(*shape, device="cuda") * 4 + 3
    s[torch.rand(*shape, device="cuda") < neg_inf] = -math.inf
    if shape[0] > 1:
        s[0, ..., 0] = -math.inf
    return s


def check(out, lse, ref, ref_lse, what):
    """out (the kernel's dtype) and lse (float32) against the reference."""
    assert not out.isnan().any(), what + ": output left NaN (poisoned)"
    assert not lse.isnan().any(), what + ": LSE left NaN (poisoned)"
    tol = TOLERANCE[out.dtype]
    assert torch.allclose(out.float(), ref, rtol=tol, atol=tol), (
        what, (out.float() - ref).abs().max().item())
    assert torch.equal(torch.isneginf(lse), torch.isneginf(ref_lse)), what
    finite = torch.isfinite(ref_lse)
    if finite.any():
        assert (lse[finite] - ref_lse[finite]).abs().max().item() < 1e-3, what


def poisoned(shape, dtype):
    return torch.full(shape, float("nan"), dtype=dtype, device="cuda")


def merge_op(v, s, v_other, s_other, v_out, s_out):
    """The launch of merge_states and merge_state into the caller's
    outputs (the custom op where torch has custom ops)."""
    op = getattr(getattr(torch.ops, "fijit", None), "merge_states", None)
    if op is not None:
        op(v, s, v_other, s_other, v_out, s_out)
    else:
        fijit.cascade._merge_states_op(v, s, v_other, s_other, v_out, s_out)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("head_dim", HEAD_DIMS)
def test_merge_state(head_dim, dtype):
    for seq in SEQ_LENS:
        for heads in HEADS:
            what = f"seq={seq} heads={heads}"
            v_a = torch.randn(seq, heads, head_dim, device="cuda",
                              dtype=dtype)
            v_b = torch.randn_like(v_a)
            s_a, s_b = lse_states((seq, heads)), lse_states((seq, heads))
            ref, ref_lse = merge_state_reference(v_a, s_a, v_b, s_b)
            v_out = poisoned((seq, heads, head_dim), dtype)
            s_out = poisoned((seq, heads), torch.float32)
            merge_op(v_a.unsqueeze(1), s_a.unsqueeze(1), v_b, s_b, v_out,
                     s_out)
            torch.cuda.synchronize()
            check(v_out, s_out, ref, ref_lse, what)
            out, lse = fijit.merge_state(v_a, s_a, v_b, s_b)
            assert out.dtype == dtype and lse.dtype == torch.float32
            check(out, lse, ref, ref_lse, what + " (merge_state)")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("head_dim", HEAD_DIMS + [96, 512])
@pytest.mark.parametrize("num_states", [0, 1, 2, 3, 4, 5, 8, 9, 33])
def test_merge_states(num_states, head_dim, dtype):
    """Groups of four states and the remainder; one state is a copy (v and
    s as they are, s = -inf included); none gives 0 and -inf."""
    for seq, heads in ((7, 5), (129, 8), (1000, 32)):
        what = f"seq={seq} heads={heads}"
        v = torch.randn(seq, num_states, heads, head_dim, device="cuda",
                        dtype=dtype)
        s = lse_states((seq, num_states, heads))
        ref, ref_lse = merge_states_reference(v, s)
        v_out = poisoned((seq, heads, head_dim), dtype)
        s_out = poisoned((seq, heads), torch.float32)
        merge_op(v, s, None, None, v_out, s_out)
        torch.cuda.synchronize()
        check(v_out, s_out, ref, ref_lse, what)
        if num_states == 1:
            assert torch.equal(v_out, v[:, 0]), what + ": a copy"
            assert torch.equal(s_out, s[:, 0]), what + ": a copy"
        out, lse = fijit.merge_states(v, s)
        check(out, lse, ref, ref_lse, what + " (merge_states)")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("head_dim", HEAD_DIMS)
@pytest.mark.parametrize("mask", [None, "random", "none_set", "bool_int"])
def test_merge_state_in_place(mask, head_dim, dtype):
    """Positions the mask leaves out keep v and s bit for bit; the others
    hold the merge."""
    for seq, heads in ((1, 3), (7, 5), (1000, 32)):
        what = f"seq={seq} heads={heads} mask={mask}"
        v = torch.randn(seq, heads, head_dim, device="cuda", dtype=dtype)
        v_other = torch.randn_like(v)
        s, s_other = lse_states((seq, heads)), lse_states((seq, heads))
        keep = {None: torch.ones(seq, dtype=torch.bool, device="cuda"),
                "random": torch.rand(seq, device="cuda") < 0.5,
                "none_set": torch.zeros(seq, dtype=torch.bool, device="cuda"),
                "bool_int": torch.rand(seq, device="cuda") < 0.5}[mask]
        given = (None if mask is None else
                 keep.to(torch.int32) if mask == "bool_int" else keep)
        ref, ref_lse = merge_state_reference(v, s, v_other, s_other)
        v0, s0 = v.clone(), s.clone()
        fijit.merge_state_in_place(v, s, v_other, s_other, mask=given)
        torch.cuda.synchronize()
        assert torch.equal(v[~keep], v0[~keep]), what + ": masked v kept"
        assert torch.equal(s[~keep], s0[~keep]), what + ": masked s kept"
        if keep.any():
            check(v[keep], s[keep], ref[keep], ref_lse[keep], what)


def test_strided_states():
    """Views the kernel reads through their strides (v's states not
    [heads, dim] apart, rows padded), and in-place targets it cannot write
    as they are (a row stride off 16 bytes, a strided s), which get the
    result through a copy."""
    seq, n, heads, d = 77, 3, 6, 128
    dtype = torch.bfloat16
    # [seq, heads, n, d] seen as [seq, n, heads, d]: the state stride is d.
    v = torch.randn(seq, heads, n, d, device="cuda",
                    dtype=dtype).transpose(1, 2)
    s = lse_states((seq, n, heads))
    ref, ref_lse = merge_states_reference(v, s)
    out, lse = fijit.merge_states(v, s)
    check(out, lse, ref, ref_lse, "strided merge_states")

    padded = torch.randn(seq, heads, d + 64, device="cuda", dtype=dtype)
    v_a = padded[..., :d]
    v_b = torch.randn(seq, heads, d, device="cuda", dtype=dtype)
    s_a, s_b = lse_states((seq, heads)), lse_states((seq, heads))
    ref, ref_lse = merge_state_reference(v_a, s_a, v_b, s_b)
    out, lse = fijit.merge_state(v_a, s_a, v_b, s_b)
    check(out, lse, ref, ref_lse, "padded rows")

    odd = torch.randn(seq, heads, d + 1, device="cuda", dtype=dtype)
    pad = odd[..., d].clone()
    v_in = odd[..., :d]  # rows 129 elements apart: copied, then back
    s_wide = torch.randn(seq, 2 * heads, device="cuda")
    s_in = s_wide[:, ::2]
    s_in[0, 0] = -math.inf
    ref, ref_lse = merge_state_reference(v_in, s_in, v_b, s_b)
    fijit.merge_state_in_place(v_in, s_in, v_b, s_b)
    torch.cuda.synchronize()
    check(v_in, s_in, ref, ref_lse, "in place through copies")
    assert torch.equal(odd[..., d], pad), "padding untouched"


def test_cascade_levels_merge_like_one_attention():
    """Attention over disjoint key ranges merged by the kernel equals the
    attention over all keys (LSEs from fijit's own decode kernel)."""
    hq, d = 8, 128
    q = torch.randn(hq, d, device="cuda", dtype=torch.float16)
    k = torch.randn(2500, hq, d, device="cuda", dtype=torch.float16)
    v = torch.randn_like(k)
    parts = [fijit.single_decode_with_kv_cache(q, k[a:b], v[a:b],
                                               return_lse=True)
             for a, b in ((0, 700), (700, 701), (701, 2500))]
    full, full_lse = fijit.single_decode_with_kv_cache(q, k, v,
                                                       return_lse=True)
    vs = torch.stack([p[0] for p in parts], 0).unsqueeze(0)
    ss = torch.stack([p[1] for p in parts], 0).unsqueeze(0)
    out, lse = fijit.merge_states(vs, ss)
    assert (out[0].float() - full.float()).abs().max().item() < 5e-3
    assert (lse[0] - full_lse).abs().max().item() < 1e-3
    o, s = parts[0][0].unsqueeze(0).clone(), parts[0][1].unsqueeze(0).clone()
    for p in parts[1:]:
        fijit.merge_state_in_place(o, s, p[0].unsqueeze(0),
                                   p[1].unsqueeze(0))
    assert (o[0].float() - full.float()).abs().max().item() < 5e-3


def test_unsupported_states_name_the_argument():
    v = torch.randn(4, 2, 8, 128, device="cuda")
    s = torch.randn(4, 2, 8, device="cuda")
    with pytest.raises(NotImplementedError, match=r"v\.dtype=torch\.float32"):
        fijit.merge_states(v, s)
    v = torch.randn(4, 2, 8, 80, device="cuda", dtype=torch.float16)
    with pytest.raises(NotImplementedError,
                       match=r"v\.shape\[-1\]=80: kind=merge_states takes "
                             r"64, 96, 128, 192, 256, 512"):
        fijit.merge_states(v, s)
    a = torch.randn(4, 8, 128, device="cuda", dtype=torch.float16)
    with pytest.raises(ValueError, match="v_b has dtype torch.bfloat16"):
        fijit.merge_state(a, s[:, 0], a.bfloat16(), s[:, 0])
    with pytest.raises(ValueError, match="mask has 3 elements"):
        fijit.merge_state_in_place(a, s[:, 0].clone(), a.clone(),
                                   s[:, 0], mask=torch.ones(3, device="cuda"))


def test_matches_flashinfer():
    """Side by side with FlashInfer's own merges, where it is installed."""
    flashinfer = pytest.importorskip("flashinfer")
    cascade = getattr(flashinfer, "cascade", None)
    if cascade is None or not hasattr(cascade, "merge_state"):
        pytest.skip("this flashinfer has no cascade merges")
    seq, heads, d = 300, 32, 128
    v_a = torch.randn(seq, heads, d, device="cuda", dtype=torch.bfloat16)
    v_b = torch.randn_like(v_a)
    s_a, s_b = lse_states((seq, heads)), lse_states((seq, heads))
    ours, ours_lse = fijit.merge_state(v_a, s_a, v_b, s_b)
    theirs, theirs_lse = cascade.merge_state(v_a, s_a, v_b, s_b)
    check(ours, ours_lse, theirs.float(), theirs_lse, "merge_state")
    v = torch.randn(seq, 5, heads, d, device="cuda", dtype=torch.bfloat16)
    s = lse_states((seq, 5, heads))
    ours, ours_lse = fijit.merge_states(v, s)
    theirs, theirs_lse = cascade.merge_states(v, s)
    check(ours, ours_lse, theirs.float(), theirs_lse, "merge_states")
