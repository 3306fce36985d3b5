"""Cascade attention with FlashInfer 0.7's contract: merges of attention
states over disjoint key sets, and the multi-level cascade wrapper (shared
prefixes attended once per level, then merged).

The merges run fijit's merge kernel (kind=merge_states): one kernel per head
dim, head count and dtype serves merge_states, merge_state and
merge_state_in_place, in f32 with base-2 LSEs as FlashInfer's kernels. Each
launch is a torch.library custom op (torch.ops.fijit.merge_states,
merge_state_in_place: fijit/_ops.py), one graph node under torch.compile."""
import math

from .config import AttentionConfig
from .kernel import compile_attention
from ._common import require_torch, target_of
from ._contract import require, require_none, unsupported
from .prefill import BatchPrefillWithPagedKVCacheWrapper
from .tensors import as_view, kernel_readable, torch
from . import _ops

_merge_configs = {}


def merge_config(head_dim, heads, dtype, target):
    """The merge kernel's config for states of `head_dim` elements, `heads`
    heads and `dtype` ("f16", "bf16") on `target`: the merged LSE is always
    written (return_lse)."""
    key = (head_dim, heads, dtype, target)
    cfg = _merge_configs.get(key)
    if cfg is None:
        cfg = _merge_configs[key] = AttentionConfig(
            kind="merge_states", head_dim_qk=head_dim, head_dim_vo=head_dim,
            num_qo_heads=heads, num_kv_heads=heads, dtype_q=dtype,
            dtype_kv=dtype, dtype_o=dtype, return_lse=True, target=target)
    return cfg


_TORCH_DTYPES = {"float16": "f16", "bfloat16": "bf16"}
# (head_dim, heads, dtype) of states a merge kernel takes, once checked.
_checked = set()


def _check_states(api, v, s, name_v, name_s, states):
    """v [seq, (num_states,) heads, dim] of f16/bf16 and s its shape
    without dim; `states`: whether the num_states dimension is there."""
    ndim = 4 if states else 3
    layout = ("[seq, num_states, heads, dim]" if states
              else "[seq, heads, dim]")
    if v.dim() != ndim or tuple(s.shape) != tuple(v.shape[:-1]):
        raise ValueError(f"{api}: {name_v} must be {layout} and {name_s} "
                         f"(base-2 LSE) {name_v}'s shape without dim; got "
                         f"{list(v.shape)} and {list(s.shape)}")
    dtype = _TORCH_DTYPES.get(str(v.dtype).replace("torch.", ""))
    if dtype is None:
        raise unsupported(api, f"{name_v}.dtype", v.dtype,
                          "FlashInfer's merge kernels take float16 and "
                          "bfloat16 states")
    # The config's checks call into the C++ core, which a torch.compile
    # trace cannot follow: there the op's implementation makes them.
    if not _ops.tracing():
        _check_shape(api, name_v, v.shape[-1], v.shape[-2], dtype)


def _check_shape(api, name_v, head_dim, heads, dtype):
    """A head dim or head count no merge kernel takes is a
    NotImplementedError naming the argument, with the config's reason."""
    if (head_dim, heads, dtype) in _checked:
        return
    try:
        AttentionConfig(kind="merge_states", head_dim_qk=head_dim,
                        head_dim_vo=head_dim, num_qo_heads=heads,
                        num_kv_heads=heads, dtype_q=dtype, dtype_kv=dtype,
                        dtype_o=dtype)
    except ValueError as e:
        message = str(e)
        arg, value = ((f"{name_v}.shape[-2]", heads)
                      if message.startswith("invalid num_qo_heads")
                      else (f"{name_v}.shape[-1]", head_dim))
        raise unsupported(api, arg, value,
                          message.partition(": ")[2]) from None
    _checked.add((head_dim, heads, dtype))


def _same_as(api, name, t, v, v_name, shape=None, dtype=None):
    if t.device != v.device:
        raise ValueError(f"{api}: {name} is on {t.device} but {v_name} is "
                         f"on {v.device}")
    if shape is not None and tuple(t.shape) != tuple(shape):
        raise ValueError(f"{api}: {name} has shape {list(t.shape)}; "
                         f"expected {list(shape)}")
    if dtype is not None and t.dtype != dtype:
        raise ValueError(f"{api}: {name} has dtype {t.dtype}; expected "
                         f"{v_name}'s {dtype}")


def launch_merge(kernel, v, s, v_other, s_other, mask, v_out, s_out,
                 stream):
    """Launches the merge kernel on views (fijit.tensors.View): v [seq,
    num_states, heads, dim] (the last dimension contiguous), s [seq,
    num_states, heads] float32 contiguous, optionally v_other [seq, heads,
    dim] with s_other [seq, heads], a byte per position in `mask` (0: leave
    the position alone), into v_out [seq, heads, dim] and s_out [seq,
    heads] float32 contiguous (v_out/s_out may be v/s themselves with one
    state: in place). Arguments by the kernel's names."""
    seq, states = v.shape[0], v.shape[1]

    def stride(view, dim):
        # A dimension of one element is never stepped along.
        return view.strides[dim] if view.shape[dim] > 1 else 0

    named = dict(v=v.ptr, s=s.ptr, v_out=v_out.ptr, s_out=s_out.ptr,
                 seq_len=seq, num_states=states,
                 v_stride_n=stride(v, 0), v_stride_state=stride(v, 1),
                 v_stride_h=stride(v, 2),
                 v_out_stride_n=stride(v_out, 0),
                 v_out_stride_h=stride(v_out, 1), stream=stream)
    if v_other is not None:
        named.update(v_other=v_other.ptr, s_other=s_other.ptr,
                     v_other_stride_n=stride(v_other, 0),
                     v_other_stride_h=stride(v_other, 1))
    if mask is not None:
        named["mask"] = mask.ptr
    kernel.launch(**named)


def _readable(t):
    return t if kernel_readable(t) else t.contiguous()


def _float_lse(s):
    return s if s.dtype == torch.float32 and s.is_contiguous() else (
        s.to(torch.float32).contiguous())


def _merge_kernel(v, api):
    """The merge kernel of states like v (..., heads, dim)."""
    dtype = as_view(v, "v").dtype
    _check_shape(api, "v", v.shape[-1], v.shape[-2], dtype)
    return compile_attention(merge_config(
        v.shape[-1], v.shape[-2], dtype, target_of(v.device)))


def _launch(api, v, s, v_other, s_other, mask, v_out, s_out):
    """Launches on torch tensors (v with its num_states dimension); states
    the kernel cannot read as they are (unaligned, strided last dimension)
    are copied first."""
    seq, states = v.shape[0], v.shape[1]
    if seq == 0:
        return
    if states == 0:  # nothing to merge: FlashInfer's zeros and -inf
        v_out.zero_()
        s_out.fill_(-math.inf)
        return
    kernel = _merge_kernel(v, api)
    view = lambda t, name: None if t is None else as_view(t, name)  # noqa
    launch_merge(kernel, view(_readable(v), "v"),
                 view(_float_lse(s), "s"),
                 view(None if v_other is None else _readable(v_other),
                      "v_other"),
                 view(None if s_other is None else _float_lse(s_other),
                      "s_other"),
                 view(mask, "mask"), view(v_out, "v_out"),
                 view(s_out, "s_out"),
                 torch.cuda.current_stream(v.device).cuda_stream)


def _merge_states_op(v, s, v_other, s_other, v_out, s_out):
    """torch.ops.fijit.merge_states: merges v's states (and v_other's) into
    the caller's v_out and s_out."""
    _launch("merge_states", v, s, v_other, s_other, None, v_out, s_out)


def _merge_state_in_place_op(v, s, v_other, s_other, mask):
    """torch.ops.fijit.merge_state_in_place: merges (v_other, s_other) into
    (v, s) where mask is nonzero (everywhere without one). A v or s the
    kernel cannot write as it is gets the result through a copy."""
    v_k = v if kernel_readable(v) else v.contiguous()
    s_k = _float_lse(s)
    if mask is not None:
        mask = mask.reshape(-1)
        if mask.dtype not in (torch.bool, torch.uint8):
            mask = mask != 0
        mask = mask.to(device=v.device).contiguous()
    _launch("merge_state_in_place", v_k.unsqueeze(1), s_k.unsqueeze(1),
            v_other, s_other, mask, v_k, s_k)
    if v_k is not v:
        v.copy_(v_k)
    if s_k is not s:
        s.copy_(s_k)


_ops.register("merge_states", _merge_states_op)
_ops.register("merge_state_in_place", _merge_state_in_place_op)


def merge_states(v, s):
    """Merges states v [seq, num_states, heads, dim] with base-2 LSEs s
    [seq, num_states, heads] into (v [seq, heads, dim] of v's dtype, s
    [seq, heads] float32). States of LSE -inf weigh nothing; a row whose
    states all have -inf (or no states) merges to v = 0, s = -inf; one state
    is copied as it is. Under torch.compile this is one
    ``torch.ops.fijit.merge_states`` node."""
    api = "merge_states"
    require_torch(api)
    _check_states(api, v, s, "v", "s", states=True)
    _same_as(api, "s", s, v, "v")
    seq, _, heads, dim = v.shape
    v_out = torch.empty(seq, heads, dim, dtype=v.dtype, device=v.device)
    s_out = torch.empty(seq, heads, dtype=torch.float32, device=v.device)
    _ops.call("merge_states", v, s.to(torch.float32), None, None, v_out,
              s_out)
    return v_out, s_out


def merge_state(v_a, s_a, v_b, s_b):
    """Merges two attention states over disjoint key sets: v [seq, heads,
    dim] (float16 or bfloat16), s (base-2 LSE) [seq, heads]. Returns (v of
    v_a's dtype, s float32). Under torch.compile this is one
    ``torch.ops.fijit.merge_states`` node."""
    api = "merge_state"
    require_torch(api)
    _check_states(api, v_a, s_a, "v_a", "s_a", states=False)
    _same_as(api, "s_a", s_a, v_a, "v_a")
    _same_as(api, "v_b", v_b, v_a, "v_a", v_a.shape, v_a.dtype)
    _same_as(api, "s_b", s_b, v_a, "v_a", s_a.shape)
    v_out = torch.empty(v_a.shape, dtype=v_a.dtype, device=v_a.device)
    s_out = torch.empty(s_a.shape, dtype=torch.float32, device=v_a.device)
    _ops.call("merge_states", v_a.unsqueeze(1),
              s_a.to(torch.float32).unsqueeze(1), v_b, s_b.to(torch.float32),
              v_out, s_out)
    return v_out, s_out


def merge_state_in_place(v, s, v_other, s_other, mask=None):
    """Merges (v_other, s_other) into (v, s) in place: v [seq, heads, dim]
    (float16 or bfloat16), s (base-2 LSE) [seq, heads]. With `mask` (bool
    [seq]) only the positions where it is true; the others keep v and s as
    they are. Under torch.compile this is one
    ``torch.ops.fijit.merge_state_in_place`` node."""
    api = "merge_state_in_place"
    require_torch(api)
    _check_states(api, v, s, "v", "s", states=False)
    _same_as(api, "s", s, v, "v")
    _same_as(api, "v_other", v_other, v, "v", v.shape, v.dtype)
    _same_as(api, "s_other", s_other, v, "v", s.shape)
    if mask is not None and mask.numel() != v.shape[0]:
        raise ValueError(f"{api}: mask has {mask.numel()} elements; expected "
                         f"one per position of v ({v.shape[0]})")
    _ops.call("merge_state_in_place", v, s, v_other,
              s_other.to(torch.float32), mask)


class MultiLevelCascadeAttentionWrapper:
    """Attention over levels of paged KV: level i's queries (qo_indptr_arr
    [i], e.g. all of them for one shared prefix) attend its pages, and the
    levels' states are merged. Causal masking applies to the last level
    (each request's own keys), as in FlashInfer."""

    def __init__(self, num_levels, float_workspace_buffer, kv_layout="NHD",
                 use_cuda_graph=False, qo_indptr_buf_arr=None,
                 paged_kv_indptr_buf_arr=None, paged_kv_indices_buf_arr=None,
                 paged_kv_last_page_len_buf_arr=None):
        self._num_levels = num_levels
        self._use_cuda_graph = bool(use_cuda_graph)
        if use_cuda_graph:
            arrays = (qo_indptr_buf_arr, paged_kv_indptr_buf_arr,
                      paged_kv_indices_buf_arr,
                      paged_kv_last_page_len_buf_arr)
            self._wrappers = [
                BatchPrefillWithPagedKVCacheWrapper(
                    float_workspace_buffer, kv_layout, use_cuda_graph=True,
                    qo_indptr_buf=qo, paged_kv_indptr_buf=indptr,
                    paged_kv_indices_buf=indices,
                    paged_kv_last_page_len_buf=last)
                for qo, indptr, indices, last in zip(*arrays)]
        else:
            require_none("MultiLevelCascadeAttentionWrapper",
                         qo_indptr_buf_arr=qo_indptr_buf_arr,
                         paged_kv_indptr_buf_arr=paged_kv_indptr_buf_arr,
                         paged_kv_indices_buf_arr=paged_kv_indices_buf_arr,
                         paged_kv_last_page_len_buf_arr=(
                             paged_kv_last_page_len_buf_arr))
            self._wrappers = [
                BatchPrefillWithPagedKVCacheWrapper(float_workspace_buffer,
                                                    kv_layout)
                for _ in range(num_levels)]
        self._batch_prefill_wrappers = self._wrappers

    @property
    def is_cuda_graph_enabled(self):
        return self._use_cuda_graph

    def reset_workspace_buffer(self, float_workspace_buffer,
                               int_workspace_buffers):
        for w in self._wrappers:
            w.reset_workspace_buffer(float_workspace_buffer, None)

    def plan(self, qo_indptr_arr, paged_kv_indptr_arr, paged_kv_indices_arr,
             paged_kv_last_page_len, num_qo_heads, num_kv_heads, head_dim,
             page_size, causal=False, pos_encoding_mode="NONE",
             use_fp16_qk_reduction=False, sm_scale=None, window_left=-1,
             logits_soft_cap=None, rope_scale=None, rope_theta=None,
             q_data_type="float16", kv_data_type=None):
        # Each level would count its keys' positions from its own first
        # key, so the levels' LSEs would not merge.
        require("MultiLevelCascadeAttentionWrapper.plan", "pos_encoding_mode",
                pos_encoding_mode, ("NONE",),
                "ALiBi distances and RoPE positions do not carry across "
                "cascade levels; supported: 'NONE'")
        for i, (w, qo, indptr, indices, last) in enumerate(zip(
                self._wrappers, qo_indptr_arr, paged_kv_indptr_arr,
                paged_kv_indices_arr, paged_kv_last_page_len)):
            w.plan(qo, indptr, indices, last, num_qo_heads, num_kv_heads,
                   head_dim, page_size,
                   causal=causal if i == self._num_levels - 1 else False,
                   pos_encoding_mode=pos_encoding_mode,
                   use_fp16_qk_reduction=use_fp16_qk_reduction,
                   sm_scale=sm_scale, window_left=window_left,
                   logits_soft_cap=logits_soft_cap, rope_scale=rope_scale,
                   rope_theta=rope_theta, q_data_type=q_data_type,
                   kv_data_type=kv_data_type)

    begin_forward = plan

    def run(self, q, paged_kv_cache):
        out, lse = self._wrappers[-1].run(q, paged_kv_cache, return_lse=True)
        for w in self._wrappers[:-1]:
            out_i, lse_i = w.run(q, paged_kv_cache, return_lse=True)
            merge_state_in_place(out, lse, out_i, lse_i)
        return out

    forward = run

    def end_forward(self):
        pass
