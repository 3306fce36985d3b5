"""Decode: single request over dense KV, and batches over a paged KV cache
with FlashInfer-style plan/run wrappers; merge_state(s) for split or
cascade attention."""
import math

from .config import AttentionConfig
from .kernel import compile_attention
from ._common import (check_layout, dtype_name, kv_strides, page_table,
                      paged_cache_strides, planned, require_torch,
                      split_cache, target_of)
from .tensors import as_view, check, torch
from . import _ops

_decode_configs = {}


def _workspace(nbytes, device):
    return torch.empty(max(nbytes, 16), dtype=torch.uint8, device=device)


def _split_counters(splits, pairs, device):
    """Zeroed int32 counters, one per (request, kv head), by which the last
    CTA of a split-KV decode finds out that it merges; each launch leaves
    them zero, so they are allocated once per plan."""
    if splits <= 1:
        return None
    return torch.zeros(pairs, dtype=torch.int32, device=device)


def _launch_decode(kernel, q, k, v, o, lse, workspace, sm_scale, **named):
    """Launches with q, k, v, o, lse, the workspace and `named`: lengths,
    strides and index tensors (None: not given) by launch argument name."""
    tensors = {name: t.data_ptr() for name, t in named.items()
               if hasattr(t, "data_ptr")}
    kernel.launch(
        q=q.data_ptr(), k=k.data_ptr(), v=v.data_ptr(), o=o.data_ptr(),
        lse=lse.data_ptr() if lse is not None else 0,
        workspace=workspace.data_ptr(),
        workspace_bytes=workspace.numel() * workspace.element_size(),
        sm_scale=float(sm_scale or 0.0),
        stream=torch.cuda.current_stream(q.device).cuda_stream,
        **{**named, **tensors})


def single_decode_with_kv_cache(q, k, v, kv_layout="NHD", sm_scale=None,
                                window_left=-1, logits_soft_cap=0.0,
                                return_lse=False, out=None, **tuning):
    """One query token per head over one request's keys and values.

    q: [num_qo_heads, head_dim]; k, v: [kv_len, num_kv_heads, head_dim]
    (NHD) or [num_kv_heads, kv_len, head_dim] (HND). The query heads of each
    GQA group share one pass over their kv head; long contexts are split
    across CTAs and merged. Returns out [num_qo_heads, head_dim] (and lse,
    base 2, [num_qo_heads] with return_lse=True). Under torch.compile this
    is one ``torch.ops.fijit.single_decode`` node.
    """
    require_torch("single_decode_with_kv_cache")
    check_layout(kv_layout)
    if q.dim() != 2 or k.dim() != 3 or v.dim() != 3:
        raise ValueError("q must be [num_qo_heads, head_dim] and k/v "
                         "[kv_len, num_kv_heads, head_dim] (NHD) or "
                         "[num_kv_heads, kv_len, head_dim] (HND)")
    if out is None:
        out = q.new_empty((q.shape[0], v.shape[2]))
    lse = (q.new_empty((q.shape[0],), dtype=torch.float32) if return_lse
           else None)
    _ops.call("single_decode", q, k, v, out, lse, sm_scale,
              int(window_left), float(logits_soft_cap or 0.0), kv_layout,
              _ops.tuning_text(tuning))
    return (out, lse) if return_lse else out


def _single_decode(q, k, v, out, lse, sm_scale, window_left, logits_soft_cap,
                   kv_layout, tuning):
    """torch.ops.fijit.single_decode: compiles (or fetches) the kernel of
    these tensors' config, plans its split-KV chunks and launches it."""
    qv, kv, vv = as_view(q, "q"), as_view(k, "k"), as_view(v, "v")
    nhd = kv_layout == "NHD"
    kv_len, hk = (kv.shape[0], kv.shape[1]) if nhd else (kv.shape[1],
                                                         kv.shape[0])
    return_lse = lse is not None
    key = (qv.shape, qv.dtype, hk, kv.shape[2], vv.shape[2], kv.dtype,
           window_left, logits_soft_cap, return_lse, kv_layout, qv.device,
           tuning)
    cfg = _decode_configs.get(key)
    if cfg is None:
        cfg = AttentionConfig(
            kind="single_decode", head_dim_qk=qv.shape[1],
            head_dim_vo=vv.shape[2], num_qo_heads=qv.shape[0],
            num_kv_heads=hk, dtype_q=qv.dtype, dtype_kv=kv.dtype,
            dtype_o=qv.dtype, kv_layout=kv_layout, window_left=window_left,
            logits_soft_cap=logits_soft_cap, return_lse=return_lse,
            target=target_of(qv.device), **_ops.tuning_fields(tuning))
        _decode_configs[key] = cfg
    kernel = compile_attention(cfg)
    check(qv, "q", (cfg.num_qo_heads, cfg.head_dim_qk), cfg.dtype_q)
    shape = ((kv_len, hk, cfg.head_dim_qk) if nhd
             else (hk, kv_len, cfg.head_dim_qk))
    check(kv, "k", shape, cfg.dtype_kv, like=qv)
    check(vv, "v", shape[:2] + (cfg.head_dim_vo,), cfg.dtype_kv, like=qv)
    check(as_view(out, "out"), "out", (cfg.num_qo_heads, cfg.head_dim_vo),
          cfg.dtype_o, like=qv)
    kv_chunk, splits, nbytes = kernel.plan_decode(1, kv_len)
    n, h = (0, 1) if nhd else (1, 0)
    _launch_decode(kernel, q, k, v, out, lse, _workspace(nbytes, q.device),
                   sm_scale, batch=1, kv_len=kv_len, kv_chunk=kv_chunk,
                   split_counters=_split_counters(splits, hk, q.device),
                   q_stride_h=q.stride(0), o_stride_h=out.stride(0),
                   **kv_strides(k, v, n, h))


_ops.register("single_decode", _single_decode)


class BatchDecodeWithPagedKVCacheWrapper:
    """Decode for a batch of requests over FlashInfer's paged KV cache.

    ``plan`` does the host-side work once per batch shape (validates the page
    table, compiles or fetches the kernel, picks the split-KV chunk);
    ``run`` only launches, so it can be captured in a CUDA graph, and is
    one ``torch.ops.fijit.batch_decode_paged`` node under torch.compile.
    """

    def __init__(self, float_workspace_buffer, kv_layout="NHD"):
        check_layout(kv_layout)
        self._workspace = float_workspace_buffer
        self._kv_layout = kv_layout
        self._plan = None

    def plan(self, indptr, indices, last_page_len, num_qo_heads,
             num_kv_heads, head_dim, page_size, window_left=-1,
             logits_soft_cap=None, q_data_type="float16", kv_data_type=None,
             sm_scale=None, return_lse=False, fixed_split_size=None,
             **tuning):
        """Validates the page table (indptr, indices, last_page_len: int32,
        FlashInfer's layout) on the host, compiles (or fetches) the kernel
        and picks the split-KV chunk (``fixed_split_size`` keys, rounded up
        to whole tiles, or the planner's); raises ValueError when the
        workspace buffer is too small for the batch."""
        batch, lens, max_page = page_table(indptr, indices, last_page_len,
                                           page_size)
        q_dtype = dtype_name(q_data_type)
        kv_dtype = dtype_name(kv_data_type or q_data_type)
        device = indptr.device
        cfg = AttentionConfig(
            kind="batch_decode_paged", head_dim_qk=head_dim,
            head_dim_vo=head_dim, num_qo_heads=num_qo_heads,
            num_kv_heads=num_kv_heads, dtype_q=q_dtype, dtype_kv=kv_dtype,
            dtype_o=q_dtype, kv_layout=self._kv_layout, page_size=page_size,
            window_left=window_left,
            logits_soft_cap=float(logits_soft_cap or 0.0),
            return_lse=bool(return_lse), target=target_of(device), **tuning)
        kernel = compile_attention(cfg)
        _ops.remember(kernel)
        max_len = max(lens, default=0)
        # Keys per split-KV chunk: the caller's, rounded up to whole tiles,
        # or the planner's.
        kv_chunk, splits, nbytes = kernel.plan_decode(
            batch, max_len, int(fixed_split_size or 0))
        have = self._workspace.numel() * self._workspace.element_size()
        if nbytes > have:
            raise ValueError(f"float_workspace_buffer holds {have} bytes; "
                             f"this batch needs {nbytes}")
        # Plain values only: run() is traced by torch.compile.
        self._plan = dict(config=str(cfg), return_lse=cfg.return_lse,
                          batch=batch, max_len=max_len, kv_chunk=kv_chunk,
                          counters=_split_counters(
                              splits, batch * num_kv_heads, device),
                          indptr=indptr, indices=indices,
                          last_page_len=last_page_len, max_page=max_page,
                          sm_scale=(None if sm_scale is None
                                    else float(sm_scale)))

    def run(self, q, paged_kv_cache, out=None, lse=None, return_lse=False):
        """Decode of the planned batch: q [batch, num_qo_heads, head_dim]
        over the paged cache ((k_cache, v_cache) or one [num_pages, 2, ...]
        tensor). Returns out [batch, num_qo_heads, head_dim] (and lse,
        base 2, [batch, num_qo_heads], with return_lse=True). Only
        launches: CUDA-graph capturable."""
        p = planned(self._plan, return_lse)
        k_cache, v_cache = split_cache(paged_kv_cache)
        if out is None:
            out = torch.empty_like(q)
        if p["return_lse"] and lse is None:
            lse = q.new_empty(q.shape[:2], dtype=torch.float32)
        _ops.call("batch_decode_paged", q, k_cache, v_cache, out, lse,
                  self._workspace, p["counters"], p["indptr"], p["indices"],
                  p["last_page_len"], p["config"], self._kv_layout,
                  p["batch"], p["max_len"], p["kv_chunk"], p["max_page"],
                  p["sm_scale"])
        return (out, lse) if return_lse else out


def _batch_decode_paged(q, k_cache, v_cache, out, lse, workspace,
                        split_counters, kv_indptr, kv_indices,
                        kv_last_page_len, config, kv_layout, batch,
                        max_kv_len, kv_chunk, max_page, sm_scale):
    """torch.ops.fijit.batch_decode_paged: checks the tensors against the
    planned kernel and launches it."""
    kernel = _ops.kernel_for(config)
    cfg = kernel.config
    qv = as_view(q, "q")
    check(qv, "q", (batch, cfg.num_qo_heads, cfg.head_dim_qk), cfg.dtype_q)
    k_cache, v_cache, strides = paged_cache_strides(
        (k_cache, v_cache), cfg, kv_layout, max_page, q)
    check(as_view(out, "out"), "out", tuple(q.shape), cfg.dtype_o, like=qv)
    _launch_decode(kernel, q, k_cache, v_cache, out, lse, workspace,
                   sm_scale, batch=batch, kv_len=max_kv_len,
                   kv_chunk=kv_chunk, split_counters=split_counters,
                   kv_indptr=kv_indptr, kv_indices=kv_indices,
                   kv_last_page_len=kv_last_page_len,
                   q_stride_b=q.stride(0), q_stride_h=q.stride(1),
                   o_stride_b=out.stride(0), o_stride_h=out.stride(1),
                   **strides)


_ops.register("batch_decode_paged", _batch_decode_paged)


def merge_state(v_a, s_a, v_b, s_b):
    """Merges two attention states over disjoint key sets: v [seq, heads,
    dim], s (base-2 LSE, float32) [seq, heads]. Returns (v, s)."""
    return merge_states(torch.stack([v_a, v_b], 1), torch.stack([s_a, s_b],
                                                                1))


def merge_states(v, s):
    """Merges states v [seq, num_states, heads, dim] with base-2 LSEs s
    [seq, num_states, heads] into (v [seq, heads, dim], s [seq, heads])."""
    if v.dim() != 4 or s.dim() != 3 or v.shape[:3] != s.shape:
        raise ValueError("merge_states takes v [seq, num_states, heads, dim] "
                         f"and s [seq, num_states, heads]; got "
                         f"{list(v.shape)} and {list(s.shape)}")
    s = s.float()
    m = s.max(dim=1, keepdim=True).values
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    w = torch.exp2(s - m)
    total = w.sum(dim=1)
    merged = (w.unsqueeze(-1) * v.float()).sum(dim=1) / total.clamp_min(
        1e-30).unsqueeze(-1)
    lse = torch.where(total > 0, m.squeeze(1) + torch.log2(total),
                      torch.full_like(total, -math.inf))
    return merged.to(v.dtype), lse
