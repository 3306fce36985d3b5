"""Rotary position embedding with FlashInfer 0.7's contract: apply_rope,
apply_llama31_rope, their _pos_ids and _inplace forms, and
apply_rope_with_cos_sin_cache(_inplace), the RoPE that serving engines run
outside attention.

Every function runs fijit's RoPE kernel (kind=rope): one kernel per head
dim, q and k head counts, dtype, rotary_dim, layout (interleave) and
frequency source serves the out-of-place and in-place forms, positions by
pos_ids or by indptr and offsets, and every rope_scale, rope_theta and
Llama 3.1 factor (kernel arguments). Each launch is a torch.library custom
op (torch.ops.fijit.rope, rope_inplace: fijit/_ops.py), one graph node
under torch.compile.

What FlashInfer takes and fijit does not is a NotImplementedError naming
the argument: a rotary_dim (or cos_sin_cache width) that is not a multiple
of 16, a head dim that is not a multiple of 16 in [16, 512], dtypes other
than float16 and bfloat16.
"""
from typing import Optional, Tuple

from .config import AttentionConfig
from .kernel import compile_attention
from ._common import require_torch, target_of
from ._contract import unsupported
from .tensors import as_view, kernel_readable, torch
from . import _ops

_TORCH_DTYPES = {"float16": "f16", "bfloat16": "bf16"}
_configs = {}


def rope_config(head_dim, num_q_heads, num_k_heads, dtype, rotary_dim,
                interleave, rope_freq, target):
    """The RoPE kernel's config: q and k heads of `head_dim` elements,
    `dtype` ("f16", "bf16"), the first `rotary_dim` dims rotated, pairs
    interleaved or halves, angles from `rope_freq` ("computed", "llama31",
    "cos_sin_cache") on `target`. A ValueError names the config field."""
    key = (head_dim, num_q_heads, num_k_heads, dtype, rotary_dim,
           bool(interleave), rope_freq, target)
    cfg = _configs.get(key)
    if cfg is None:
        cfg = _configs[key] = AttentionConfig(
            kind="rope", head_dim_qk=head_dim, head_dim_vo=head_dim,
            num_qo_heads=num_q_heads, num_kv_heads=num_k_heads,
            dtype_q=dtype, dtype_kv=dtype, dtype_o=dtype,
            rotary_dim=rotary_dim, interleave=bool(interleave),
            rope_freq=rope_freq, target=target)
    return cfg


def launch_rope(kernel, q, k, q_rope, k_rope, pos_ids, indptr, offsets,
                cos_sin_cache, scalars, stream):
    """Launches the RoPE kernel on views (fijit.tensors.View): q [nnz,
    q_heads, head_dim] and k [nnz, k_heads, head_dim] (the last dimension
    contiguous) into q_rope and k_rope of their shapes (which may be q and
    k: in place); positions from pos_ids [nnz] int32, or from indptr
    [batch + 1] and offsets [batch] int32; cos_sin_cache [max_pos,
    rotary_dim] float32 contiguous for rope_freq=cos_sin_cache; `scalars`
    the kernel's f32 arguments by name (rope_scale, rope_theta and
    llama31's factors). Arguments by the kernel's names."""
    def stride(view, dim):
        # A dimension of one element is never stepped along.
        return view.strides[dim] if view.shape[dim] > 1 else 0

    named = dict(q=q.ptr, k=k.ptr, q_rope=q_rope.ptr, k_rope=k_rope.ptr,
                 nnz=q.shape[0], stream=stream, **scalars)
    for name, view in (("q", q), ("k", k), ("q_rope", q_rope),
                       ("k_rope", k_rope)):
        named[f"{name}_stride_n"] = stride(view, 0)
        named[f"{name}_stride_h"] = stride(view, 1)
    if pos_ids is not None:
        named["pos_ids"] = pos_ids.ptr
    else:
        named.update(indptr=indptr.ptr, offsets=offsets.ptr,
                     batch_size=indptr.shape[0] - 1)
    if cos_sin_cache is not None:
        named["cos_sin_cache"] = cos_sin_cache.ptr
    kernel.launch(**named)


def _scalars(rope_freq, rope_scale, rope_theta, low_freq_factor,
             high_freq_factor, old_context_len):
    if rope_freq == "cos_sin_cache":
        return {}
    out = dict(rope_scale=float(rope_scale), rope_theta=float(rope_theta))
    if rope_freq == "llama31":
        out.update(low_freq_factor=float(low_freq_factor),
                   high_freq_factor=float(high_freq_factor),
                   old_context_len=float(old_context_len))
    return out


def _positions(t, device):
    """An index tensor as the kernel reads it: int32, contiguous, on the
    device (FlashInfer takes int32 or int64)."""
    return None if t is None else t.to(device=device,
                                       dtype=torch.int32).contiguous()


def _launch(q, k, q_rope, k_rope, pos_ids, indptr, offsets, cos_sin_cache,
            rotary_dim, interleave, rope_freq, rope_scale, rope_theta,
            low_freq_factor, high_freq_factor, old_context_len):
    """Launches on torch tensors that the kernel reads and writes as they
    are (see _readable)."""
    if q.shape[0] == 0:
        return
    dtype = _TORCH_DTYPES[str(q.dtype).replace("torch.", "")]
    kernel = compile_attention(rope_config(
        q.shape[-1], q.shape[1], k.shape[1], dtype, rotary_dim, interleave,
        rope_freq, target_of(q.device)))
    view = lambda t, name: None if t is None else as_view(t, name)  # noqa
    launch_rope(kernel, view(q, "q"), view(k, "k"), view(q_rope, "q_rope"),
                view(k_rope, "k_rope"),
                view(_positions(pos_ids, q.device), "pos_ids"),
                view(_positions(indptr, q.device), "indptr"),
                view(_positions(offsets, q.device), "offsets"),
                view(None if cos_sin_cache is None
                     else cos_sin_cache.to(q.device).contiguous(),
                     "cos_sin_cache"),
                _scalars(rope_freq, rope_scale, rope_theta, low_freq_factor,
                         high_freq_factor, old_context_len),
                torch.cuda.current_stream(q.device).cuda_stream)


def _readable(t):
    return t if kernel_readable(t) else t.contiguous()


def _rope_op(q, k, q_rope, k_rope, pos_ids, indptr, offsets, cos_sin_cache,
             rotary_dim, interleave, rope_freq, rope_scale, rope_theta,
             low_freq_factor, high_freq_factor, old_context_len):
    """torch.ops.fijit.rope: q and k rotated into the caller's q_rope and
    k_rope. Inputs the kernel cannot read as they are (unaligned, strided
    last dimension) are copied first; outputs it cannot write get the
    result through a copy."""
    outs = [o if kernel_readable(o) else torch.empty_like(o).contiguous()
            for o in (q_rope, k_rope)]
    _launch(_readable(q), _readable(k), outs[0], outs[1], pos_ids, indptr,
            offsets, cos_sin_cache, rotary_dim, interleave, rope_freq,
            rope_scale, rope_theta, low_freq_factor, high_freq_factor,
            old_context_len)
    for out, given in zip(outs, (q_rope, k_rope)):
        if out is not given:
            given.copy_(out)


def _rope_inplace_op(q, k, pos_ids, indptr, offsets, cos_sin_cache,
                     rotary_dim, interleave, rope_freq, rope_scale,
                     rope_theta, low_freq_factor, high_freq_factor,
                     old_context_len):
    """torch.ops.fijit.rope_inplace: q and k rotated in place. A q or k
    the kernel cannot write as it is gets the result through a copy."""
    q_k, k_k = _readable(q), _readable(k)
    _launch(q_k, k_k, q_k, k_k, pos_ids, indptr, offsets, cos_sin_cache,
            rotary_dim, interleave, rope_freq, rope_scale, rope_theta,
            low_freq_factor, high_freq_factor, old_context_len)
    if q_k is not q:
        q.copy_(q_k)
    if k_k is not k:
        k.copy_(k_k)


_ops.register("rope", _rope_op)
_ops.register("rope_inplace", _rope_inplace_op)

# Config fields -> the arguments that set them, per function family.
_ARGS = {"head_dim_qk": "q.shape[-1]", "num_qo_heads": "q.shape[1]",
         "num_kv_heads": "k.shape[1]", "rotary_dim": "rotary_dim"}
_CACHE_ARGS = {"head_dim_qk": "head_size",
               "num_qo_heads": "query.shape[-1] // head_size",
               "num_kv_heads": "key.shape[-1] // head_size",
               "rotary_dim": "cos_sin_cache.shape[-1]"}


def _check(api, q, k, rotary_dim, interleave, rope_freq, names):
    """q [nnz, q_heads, head_dim] and k [nnz, k_heads, head_dim] of one
    float16/bfloat16 dtype; what no RoPE kernel takes is a
    NotImplementedError naming the argument (`names`: config field ->
    argument) with the config's reason."""
    if q.dim() != 3 or k.dim() != 3 or q.shape[0] != k.shape[0] or (
            q.shape[2] != k.shape[2]):
        raise ValueError(f"{api}: q and k must be [nnz, heads, head_dim] "
                         f"of one nnz and head_dim; got {list(q.shape)} and "
                         f"{list(k.shape)}")
    dtype = _TORCH_DTYPES.get(str(q.dtype).replace("torch.", ""))
    if dtype is None:
        raise unsupported(api, "q.dtype", q.dtype, "FlashInfer's RoPE "
                          "kernels take float16 and bfloat16")
    if k.dtype != q.dtype:
        raise ValueError(f"{api}: k has dtype {k.dtype}; expected q's "
                         f"{q.dtype}")
    if k.device != q.device:
        raise ValueError(f"{api}: k is on {k.device} but q is on "
                         f"{q.device}")
    # The config's checks call into the C++ core, which a torch.compile
    # trace cannot follow: there the op's implementation makes them.
    if _ops.tracing():
        return
    try:
        AttentionConfig(kind="rope", head_dim_qk=q.shape[2],
                        head_dim_vo=q.shape[2], num_qo_heads=q.shape[1],
                        num_kv_heads=k.shape[1], dtype_q=dtype,
                        dtype_kv=dtype, dtype_o=dtype, rotary_dim=rotary_dim,
                        interleave=bool(interleave), rope_freq=rope_freq)
    except ValueError as e:
        field, _, rest = str(e).partition("=")
        field = field.replace("invalid ", "")
        value = rest.partition(":")[0]
        raise unsupported(api, names.get(field, field),
                          int(value) if value.lstrip("-").isdigit()
                          else value, str(e).partition(": ")[2]) from None


def _check_index(api, name, t, length=None):
    if t.dim() != 1 or t.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"{api}: {name} must be a 1-D int32 or int64 "
                         f"tensor; got {t.dtype} of shape {list(t.shape)}")
    if length is not None and t.shape[0] != length:
        raise ValueError(f"{api}: {name} has {t.shape[0]} elements; "
                         f"expected {length}")


def _rotary_dim(q, rotary_dim):
    return q.size(-1) if rotary_dim is None else int(rotary_dim)


def _call(api, inplace, q, k, pos_ids, indptr, offsets, rotary_dim,
          interleave, rope_freq, scalars):
    """Checks and launches one of the computed-frequency functions;
    returns (q_rope, k_rope) or None in place."""
    require_torch(api)
    rotary_dim = _rotary_dim(q, rotary_dim)
    _check(api, q, k, rotary_dim, interleave, rope_freq, _ARGS)
    if pos_ids is not None:
        _check_index(api, "pos_ids", pos_ids, q.shape[0])
    else:
        _check_index(api, "indptr", indptr)
        _check_index(api, "offsets", offsets, indptr.shape[0] - 1)
    args = (pos_ids, indptr, offsets, None, rotary_dim, bool(interleave),
            rope_freq) + tuple(float(s) for s in scalars)
    if inplace:
        _ops.call("rope_inplace", q, k, *args)
        return None
    q_rope, k_rope = torch.empty_like(q), torch.empty_like(k)
    _ops.call("rope", q, k, q_rope, k_rope, *args)
    return q_rope, k_rope


# FlashInfer's defaults of the computed frequencies and of Llama 3.1's.
_PLAIN = (1.0, 1e4)
_LLAMA31 = (8.0, 5e5, 1.0, 4.0, 8192)


def apply_rope(q: "torch.Tensor", k: "torch.Tensor", indptr: "torch.Tensor",
               offsets: "torch.Tensor", rotary_dim: Optional[int] = None,
               interleave: bool = False, rope_scale: float = 1,
               rope_theta: float = 1e4) -> Tuple["torch.Tensor",
                                                 "torch.Tensor"]:
    """Rotates q [nnz, q_heads, head_dim] and k [nnz, k_heads, head_dim]
    (a ragged batch: request i's rows are indptr[i]:indptr[i+1], at
    positions offsets[i], offsets[i] + 1, ...) by the angles pos / (rope_scale
    * rope_theta^(2i / rotary_dim)) of their first rotary_dim dims (None:
    all); returns new (q_rope, k_rope). Rows of no request are not
    written. Under torch.compile this is one ``torch.ops.fijit.rope``
    node."""
    return _call("apply_rope", False, q, k, None, indptr, offsets,
                 rotary_dim, interleave, "computed",
                 (rope_scale, rope_theta) + _LLAMA31[2:])


def apply_rope_inplace(q: "torch.Tensor", k: "torch.Tensor",
                       indptr: "torch.Tensor", offsets: "torch.Tensor",
                       rotary_dim: Optional[int] = None,
                       interleave: bool = False, rope_scale: float = 1,
                       rope_theta: float = 1e4) -> None:
    """apply_rope, writing q and k in place."""
    _call("apply_rope_inplace", True, q, k, None, indptr, offsets,
          rotary_dim, interleave, "computed",
          (rope_scale, rope_theta) + _LLAMA31[2:])


def apply_rope_pos_ids(q: "torch.Tensor", k: "torch.Tensor",
                       pos_ids: "torch.Tensor",
                       rotary_dim: Optional[int] = None,
                       interleave: bool = False, rope_scale: float = 1,
                       rope_theta: float = 1e4) -> Tuple["torch.Tensor",
                                                         "torch.Tensor"]:
    """apply_rope with each row's position given: pos_ids [nnz]."""
    return _call("apply_rope_pos_ids", False, q, k, pos_ids, None, None,
                 rotary_dim, interleave, "computed",
                 (rope_scale, rope_theta) + _LLAMA31[2:])


def apply_rope_pos_ids_inplace(q: "torch.Tensor", k: "torch.Tensor",
                               pos_ids: "torch.Tensor",
                               rotary_dim: Optional[int] = None,
                               interleave: bool = False,
                               rope_scale: float = 1,
                               rope_theta: float = 1e4) -> None:
    """apply_rope_pos_ids, writing q and k in place."""
    _call("apply_rope_pos_ids_inplace", True, q, k, pos_ids, None, None,
          rotary_dim, interleave, "computed",
          (rope_scale, rope_theta) + _LLAMA31[2:])


def apply_llama31_rope(q: "torch.Tensor", k: "torch.Tensor",
                       indptr: "torch.Tensor", offsets: "torch.Tensor",
                       rotary_dim: Optional[int] = None,
                       interleave: bool = False, rope_scale: float = 8,
                       rope_theta: float = 5e5, low_freq_factor: float = 1,
                       high_freq_factor: float = 4,
                       old_context_len: int = 8192) -> Tuple["torch.Tensor",
                                                             "torch.Tensor"]:
    """apply_rope with Llama 3.1's frequencies: each frequency f is
    blended from f / rope_scale to f as its wavelength falls from
    old_context_len / low_freq_factor to old_context_len /
    high_freq_factor."""
    return _call("apply_llama31_rope", False, q, k, None, indptr, offsets,
                 rotary_dim, interleave, "llama31",
                 (rope_scale, rope_theta, low_freq_factor, high_freq_factor,
                  old_context_len))


def apply_llama31_rope_inplace(q: "torch.Tensor", k: "torch.Tensor",
                               indptr: "torch.Tensor",
                               offsets: "torch.Tensor",
                               rotary_dim: Optional[int] = None,
                               interleave: bool = False,
                               rope_scale: float = 8, rope_theta: float = 5e5,
                               low_freq_factor: float = 1,
                               high_freq_factor: float = 4,
                               old_context_len: int = 8192) -> None:
    """apply_llama31_rope, writing q and k in place."""
    _call("apply_llama31_rope_inplace", True, q, k, None, indptr, offsets,
          rotary_dim, interleave, "llama31",
          (rope_scale, rope_theta, low_freq_factor, high_freq_factor,
           old_context_len))


def apply_llama31_rope_pos_ids(q: "torch.Tensor", k: "torch.Tensor",
                               pos_ids: "torch.Tensor",
                               rotary_dim: Optional[int] = None,
                               interleave: bool = False,
                               rope_scale: float = 8, rope_theta: float = 5e5,
                               low_freq_factor: float = 1,
                               high_freq_factor: float = 4,
                               old_context_len: int = 8192
                               ) -> Tuple["torch.Tensor", "torch.Tensor"]:
    """apply_llama31_rope with each row's position given: pos_ids [nnz]."""
    return _call("apply_llama31_rope_pos_ids", False, q, k, pos_ids, None,
                 None, rotary_dim, interleave, "llama31",
                 (rope_scale, rope_theta, low_freq_factor, high_freq_factor,
                  old_context_len))


def apply_llama31_rope_pos_ids_inplace(q: "torch.Tensor", k: "torch.Tensor",
                                       pos_ids: "torch.Tensor",
                                       rotary_dim: Optional[int] = None,
                                       interleave: bool = False,
                                       rope_scale: float = 8,
                                       rope_theta: float = 5e5,
                                       low_freq_factor: float = 1,
                                       high_freq_factor: float = 4,
                                       old_context_len: int = 8192) -> None:
    """apply_llama31_rope_pos_ids, writing q and k in place."""
    _call("apply_llama31_rope_pos_ids_inplace", True, q, k, pos_ids, None,
          None, rotary_dim, interleave, "llama31",
          (rope_scale, rope_theta, low_freq_factor, high_freq_factor,
           old_context_len))


def _cache_call(api, inplace, positions, query, key, head_size,
                cos_sin_cache, is_neox):
    require_torch(api)
    if cos_sin_cache.dtype != torch.float32:
        raise ValueError("cos_sin_cache should be float32")
    if cos_sin_cache.dim() != 2:
        raise ValueError(f"{api}: cos_sin_cache must be [max_seq_len, "
                         f"rotary_dim]; got {list(cos_sin_cache.shape)}")
    for name, t in (("query", query), ("key", key)):
        if t.dim() < 2 or t.shape[-1] % head_size:
            raise ValueError(f"{api}: {name} must be [nnz, heads * "
                             f"head_size] with head_size={head_size}; got "
                             f"{list(t.shape)}")
    q = query.view(query.shape[0], -1, head_size)
    k = key.view(key.shape[0], -1, head_size)
    rotary_dim = cos_sin_cache.shape[-1]
    interleave = not is_neox
    _check(api, q, k, rotary_dim, interleave, "cos_sin_cache", _CACHE_ARGS)
    _check_index(api, "positions", positions, q.shape[0])
    args = (positions, None, None, cos_sin_cache, rotary_dim, interleave,
            "cos_sin_cache") + (1.0, 1e4) + _LLAMA31[2:]
    if inplace:
        _ops.call("rope_inplace", q, k, *args)
        return None
    query_out, key_out = torch.empty_like(query), torch.empty_like(key)
    _ops.call("rope", q, k, query_out.view(q.shape), key_out.view(k.shape),
              *args)
    return query_out, key_out


def apply_rope_with_cos_sin_cache(positions: "torch.Tensor",
                                  query: "torch.Tensor", key: "torch.Tensor",
                                  head_size: int,
                                  cos_sin_cache: "torch.Tensor",
                                  is_neox: bool = True
                                  ) -> Tuple["torch.Tensor", "torch.Tensor"]:
    """vLLM's and SGLang's RoPE: query [nnz, q_heads * head_size] and key
    [nnz, k_heads * head_size] rotated by cos and sin read from
    cos_sin_cache [max_seq_len, rotary_dim] float32 (cos in the first half
    of a row, sin in the second) at positions [nnz]; is_neox pairs the two
    halves of the rotary dims, else adjacent dims. Returns new (query_out,
    key_out)."""
    return _cache_call("apply_rope_with_cos_sin_cache", False, positions,
                       query, key, head_size, cos_sin_cache, is_neox)


def apply_rope_with_cos_sin_cache_inplace(positions: "torch.Tensor",
                                          query: "torch.Tensor",
                                          key: "torch.Tensor",
                                          head_size: int,
                                          cos_sin_cache: "torch.Tensor",
                                          is_neox: bool = True) -> None:
    """apply_rope_with_cos_sin_cache, writing query and key in place."""
    _cache_call("apply_rope_with_cos_sin_cache_inplace", True, positions,
                query, key, head_size, cos_sin_cache, is_neox)


__all__ = [
    "apply_llama31_rope",
    "apply_llama31_rope_inplace",
    "apply_llama31_rope_pos_ids",
    "apply_llama31_rope_pos_ids_inplace",
    "apply_rope",
    "apply_rope_inplace",
    "apply_rope_pos_ids",
    "apply_rope_pos_ids_inplace",
    "apply_rope_with_cos_sin_cache",
    "apply_rope_with_cos_sin_cache_inplace",
]
