"""GPU correctness of the RoPE kernel (kind=rope) behind fijit.rope's ten
FlashInfer functions, against the float32 reference (rope_reference.py):
fresh random q and k, GQA head counts, head dims 64/128/256 (and 80, 512),
whole and partial rotary dims, interleaved or not, computed, llama31 and
cos_sin_cache frequencies, positions from pos_ids (odd, unordered, int32
and int64) or from indptr with offsets (uneven requests, an empty one, rows
past the last request), out of place and in place, strided q and k (slices
of a packed qkv), f16 and bf16. Every output the kernel writes is poisoned
with NaN before the launch."""
import pytest

torch = pytest.importorskip("torch")
import fijit  # noqa: E402
import fijit.flashinfer as fi  # noqa: E402
from fijit import _ops  # noqa: E402
from rope_reference import (angles, cache_angles, frequencies,  # noqa: E402
                            ragged_positions, rotate)

pytestmark = pytest.mark.gpu

DTYPES = [torch.float16, torch.bfloat16]
# (q heads, k heads): MHA, GQA 4:1, MQA with a head count no group of four
# divides.
HEADS = [(8, 8), (32, 8), (5, 1)]
# The kernel rotates in f32 with sin/cos/ex2.approx at positions below
# 4096: the error is the output dtype's rounding plus ~1e-3 of the angle.
TOLERANCE = {torch.float16: 4e-3, torch.bfloat16: 1.6e-2}
SCALARS = dict(rope_scale=1.0, rope_theta=1e4)
LLAMA31 = dict(rope_scale=8.0, rope_theta=5e5, low_freq_factor=1.0,
               high_freq_factor=4.0, old_context_len=8192)


def rand(*shape, dtype):
    return torch.randn(*shape, device="cuda").to(dtype)


def poisoned_like(t):
    return torch.full_like(t, float("nan"))


def check_dtype(out, ref, dtype, what, untouched=None):
    tol = TOLERANCE[dtype]
    out = out.float().cpu()
    rows = torch.ones(out.shape[0], dtype=torch.bool)
    if untouched is not None:
        assert out[untouched].isnan().all(), (
            what + ": wrote a row of no request")
        rows = ~untouched
    assert not out[rows].isnan().any(), what + ": output left NaN (poisoned)"
    assert torch.allclose(out[rows], ref[rows], rtol=tol, atol=tol), (
        what, (out[rows] - ref[rows]).abs().max().item())


def rope_op(q, k, q_rope, k_rope, pos_ids=None, indptr=None, offsets=None,
            cache=None, rotary_dim=None, interleave=False, freq="computed",
            scalars=None):
    """The out-of-place launch into the caller's (poisoned) outputs."""
    s = dict(SCALARS, low_freq_factor=1.0, high_freq_factor=4.0,
             old_context_len=8192.0)
    s.update(scalars or {})
    _ops.call("rope", q, k, q_rope, k_rope, pos_ids, indptr, offsets, cache,
              q.shape[-1] if rotary_dim is None else rotary_dim, interleave,
              freq, s["rope_scale"], s["rope_theta"], s["low_freq_factor"],
              s["high_freq_factor"], float(s["old_context_len"]))


def random_positions(nnz, dtype=torch.int32):
    """Odd, unordered positions below 4096."""
    return torch.randint(0, 4096, (nnz,), device="cuda", dtype=dtype)


def ragged(nnz, past=0):
    """indptr over nnz - past rows in uneven requests (one empty), offsets
    of each; the last `past` rows belong to no request."""
    cuts = sorted(torch.randint(0, nnz - past + 1, (3,)).tolist())
    indptr = torch.tensor([0, cuts[0], cuts[0], cuts[1], cuts[2],
                           nnz - past], dtype=torch.int32, device="cuda")
    offsets = torch.randint(0, 2048, (5,), dtype=torch.int32, device="cuda")
    return indptr, offsets


# --- out of place, poisoned outputs --------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("head_dim, rotary_dim", [
    (64, 64), (128, 128), (128, 64), (256, 256), (256, 128), (80, 32),
    (512, 64)])
@pytest.mark.parametrize("heads", HEADS)
@pytest.mark.parametrize("interleave", [False, True])
def test_pos_ids_out_of_place(dtype, head_dim, rotary_dim, heads,
                              interleave):
    nnz = 77
    q = rand(nnz, heads[0], head_dim, dtype=dtype)
    k = rand(nnz, heads[1], head_dim, dtype=dtype)
    pos = random_positions(nnz)
    q_rope, k_rope = poisoned_like(q), poisoned_like(k)
    rope_op(q, k, q_rope, k_rope, pos_ids=pos, rotary_dim=rotary_dim,
            interleave=interleave)
    cos, sin = angles(pos, frequencies(rotary_dim, 1.0, 1e4))
    what = f"{dtype} d={head_dim} rot={rotary_dim} {heads} il={interleave}"
    check_dtype(q_rope, rotate(q, cos, sin, rotary_dim, interleave), dtype,
                "q " + what)
    check_dtype(k_rope, rotate(k, cos, sin, rotary_dim, interleave), dtype,
                "k " + what)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("interleave", [False, True])
@pytest.mark.parametrize("rotary_dim", [128, 64])
def test_indptr_out_of_place_leaves_rows_of_no_request(dtype, interleave,
                                                       rotary_dim):
    nnz = 300
    q = rand(nnz, 32, 128, dtype=dtype)
    k = rand(nnz, 8, 128, dtype=dtype)
    indptr, offsets = ragged(nnz, past=9)
    q_rope, k_rope = poisoned_like(q), poisoned_like(k)
    rope_op(q, k, q_rope, k_rope, indptr=indptr, offsets=offsets,
            rotary_dim=rotary_dim, interleave=interleave,
            scalars=dict(rope_scale=2.0, rope_theta=1e6))
    pos = ragged_positions(indptr, offsets, nnz)
    cos, sin = angles(pos, frequencies(rotary_dim, 2.0, 1e6))
    none = pos.isnan()
    assert none.sum() == 9
    check_dtype(q_rope, rotate(q, cos, sin, rotary_dim, interleave), dtype,
                "q", untouched=none)
    check_dtype(k_rope, rotate(k, cos, sin, rotary_dim, interleave), dtype,
                "k", untouched=none)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("interleave", [False, True])
@pytest.mark.parametrize("heads", HEADS)
def test_llama31_out_of_place(dtype, interleave, heads):
    nnz = 131
    q = rand(nnz, heads[0], 128, dtype=dtype)
    k = rand(nnz, heads[1], 128, dtype=dtype)
    pos = random_positions(nnz)
    q_rope, k_rope = poisoned_like(q), poisoned_like(k)
    rope_op(q, k, q_rope, k_rope, pos_ids=pos, interleave=interleave,
            freq="llama31", scalars=LLAMA31)
    freq = frequencies(128, 8.0, 5e5, llama31=(1.0, 4.0, 8192))
    cos, sin = angles(pos, freq)
    check_dtype(q_rope, rotate(q, cos, sin, 128, interleave), dtype, "q")
    check_dtype(k_rope, rotate(k, cos, sin, 128, interleave), dtype, "k")


def vllm_cache(max_pos, rotary_dim, base=1e4):
    """vLLM's cos_sin_cache: [max_pos, rotary_dim] float32, cos of the
    frequencies base^(-2i/rotary_dim) in the first half, sin in the
    second."""
    inv = base ** (-torch.arange(0, rotary_dim, 2, dtype=torch.float64)
                   / rotary_dim)
    a = torch.arange(max_pos, dtype=torch.float64)[:, None] * inv[None, :]
    return torch.cat([a.cos(), a.sin()], -1).float().cuda()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("head_size, rotary_dim", [
    (64, 64), (128, 128), (128, 64), (256, 128)])
@pytest.mark.parametrize("is_neox", [True, False])
@pytest.mark.parametrize("heads", HEADS)
def test_cos_sin_cache_out_of_place(dtype, head_size, rotary_dim, is_neox,
                                    heads):
    nnz = 57
    cache = vllm_cache(4096, rotary_dim)
    query = rand(nnz, heads[0] * head_size, dtype=dtype)
    key = rand(nnz, heads[1] * head_size, dtype=dtype)
    positions = random_positions(nnz, torch.int64)
    q = query.view(nnz, -1, head_size)
    k = key.view(nnz, -1, head_size)
    q_rope, k_rope = poisoned_like(q), poisoned_like(k)
    rope_op(q, k, q_rope, k_rope, pos_ids=positions, cache=cache,
            rotary_dim=rotary_dim, interleave=not is_neox,
            freq="cos_sin_cache")
    cos, sin = cache_angles(cache, positions)
    check_dtype(q_rope, rotate(q, cos, sin, rotary_dim, not is_neox), dtype,
                "q")
    check_dtype(k_rope, rotate(k, cos, sin, rotary_dim, not is_neox), dtype,
                "k")
    # The public function returns the same, in query's and key's shapes.
    query_out, key_out = fi.apply_rope_with_cos_sin_cache(
        positions, query, key, head_size, cache, is_neox=is_neox)
    assert query_out.shape == query.shape and key_out.shape == key.shape
    assert torch.equal(query_out.view(q.shape), q_rope)
    assert torch.equal(key_out.view(k.shape), k_rope)


# --- the ten functions, in place and not -----------------------------------

def reference_of(name, q, k, pos_ids, indptr, offsets, rotary_dim,
                 interleave):
    llama = "llama31" in name
    freq = (frequencies(rotary_dim, 8.0, 5e5, llama31=(1.0, 4.0, 8192))
            if llama else frequencies(rotary_dim, 1.0, 1e4))
    pos = (pos_ids.to(torch.float64).cpu() if pos_ids is not None
           else ragged_positions(indptr, offsets, q.shape[0]))
    cos, sin = angles(pos, freq)
    return (rotate(q, cos, sin, rotary_dim, interleave),
            rotate(k, cos, sin, rotary_dim, interleave))


@pytest.mark.parametrize("name", [
    "apply_rope", "apply_rope_pos_ids", "apply_llama31_rope",
    "apply_llama31_rope_pos_ids"])
@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rotary_dim", [None, 64])
def test_functions(name, inplace, dtype, rotary_dim):
    """FlashInfer's functions on q and k that are slices of one packed qkv
    tensor (strided rows): in place, the rest of qkv (v) is untouched."""
    nnz, hq, hk, d = 200, 32, 8, 128
    qkv = rand(nnz, (hq + 2 * hk) * d, dtype=dtype)
    q = qkv[:, :hq * d].view(nnz, hq, d)
    k = qkv[:, hq * d:(hq + hk) * d].view(nnz, hk, d)
    v_before = qkv[:, (hq + hk) * d:].clone()
    q0, k0 = q.clone(), k.clone()
    pos_ids = indptr = offsets = None
    if "pos_ids" in name:
        pos_ids = random_positions(nnz, torch.int64)
        args = (pos_ids,)
    else:
        indptr, offsets = ragged(nnz)
        args = (indptr, offsets)
    ref_q, ref_k = reference_of(name, q0, k0, pos_ids, indptr, offsets,
                                rotary_dim or d, False)
    fn = getattr(fijit, name + ("_inplace" if inplace else ""))
    assert fn is getattr(fi, fn.__name__)
    result = fn(q, k, *args, rotary_dim=rotary_dim)
    if inplace:
        assert result is None
        out_q, out_k = q, k
        assert torch.equal(qkv[:, (hq + hk) * d:], v_before), "v changed"
    else:
        out_q, out_k = result
        assert torch.equal(q, q0) and torch.equal(k, k0), "inputs changed"
        assert out_q.shape == q.shape and out_k.shape == k.shape
    check_dtype(out_q, ref_q, dtype, f"{name} q")
    check_dtype(out_k, ref_k, dtype, f"{name} k")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("is_neox", [True, False])
def test_cos_sin_cache_in_place(dtype, is_neox):
    nnz, head_size, rotary_dim = 99, 128, 64
    cache = vllm_cache(8192, rotary_dim, base=5e5)
    query = rand(nnz, 16 * head_size, dtype=dtype)
    key = rand(nnz, 2 * head_size, dtype=dtype)
    positions = random_positions(nnz, torch.int64)
    cos, sin = cache_angles(cache, positions)
    ref_q = rotate(query.view(nnz, -1, head_size), cos, sin, rotary_dim,
                   not is_neox)
    ref_k = rotate(key.view(nnz, -1, head_size), cos, sin, rotary_dim,
                   not is_neox)
    assert fi.apply_rope_with_cos_sin_cache_inplace(
        positions, query, key, head_size, cache, is_neox=is_neox) is None
    check_dtype(query.view(nnz, -1, head_size), ref_q, dtype, "query")
    check_dtype(key.view(nnz, -1, head_size), ref_k, dtype, "key")


def test_in_place_past_rotary_dim_is_untouched():
    """In place with rotary_dim < head_dim the dims past it keep their bits
    exactly (NaN and -0.0 included: they are not rewritten)."""
    nnz = 40
    q = rand(nnz, 4, 128, dtype=torch.bfloat16)
    k = rand(nnz, 4, 128, dtype=torch.bfloat16)
    q[:, :, 100] = float("nan")
    k[:, :, 127] = -0.0
    q0, k0 = q.clone(), k.clone()
    fijit.apply_rope_pos_ids_inplace(q, k, random_positions(nnz),
                                     rotary_dim=64)
    assert torch.equal(q[..., 64:].view(torch.int16),
                       q0[..., 64:].view(torch.int16))
    assert torch.equal(k[..., 64:].view(torch.int16),
                       k0[..., 64:].view(torch.int16))


def test_empty_batch_launches_nothing():
    q = rand(0, 8, 64, dtype=torch.float16)
    k = rand(0, 8, 64, dtype=torch.float16)
    q_rope, k_rope = fijit.apply_rope_pos_ids(
        q, k, torch.zeros(0, dtype=torch.int32, device="cuda"))
    assert q_rope.shape == q.shape and k_rope.shape == k.shape


def test_matches_flashinfer_when_installed():
    """Where FlashInfer itself is installed, fijit's outputs match it to
    the output dtype's rounding."""
    flashinfer = pytest.importorskip("flashinfer")
    if getattr(flashinfer, "__fijit__", False):
        pytest.skip("flashinfer is fijit's own package here")
    nnz = 512
    q = rand(nnz, 32, 128, dtype=torch.bfloat16)
    k = rand(nnz, 8, 128, dtype=torch.bfloat16)
    pos = random_positions(nnz)
    for name, kwargs in (("apply_rope_pos_ids", {}),
                         ("apply_llama31_rope_pos_ids", {}),
                         ("apply_rope_pos_ids", dict(interleave=True,
                                                     rotary_dim=64))):
        ours = getattr(fijit, name)(q, k, pos, **kwargs)
        theirs = getattr(flashinfer, name)(q, k, pos, **kwargs)
        for a, b in zip(ours, theirs):
            assert torch.allclose(a.float(), b.float(), rtol=1.6e-2,
                                  atol=1.6e-2), name
