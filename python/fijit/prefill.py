"""FlashInfer-style single-request prefill."""
from .config import AttentionConfig
from .kernel import compile_attention
from ._common import (check_indptr, check_layout, dtype_name, kv_strides,
                      page_table, paged_cache_strides, planned, require_torch,
                      split_cache, target_of)
from .tensors import as_view, check, torch
from . import _ops

_configs = {}


def single_prefill_with_kv_cache(q, k, v, causal=False, sm_scale=None,
                                 window_left=-1, logits_soft_cap=0.0,
                                 return_lse=False, kv_layout="NHD",
                                 out=None, **tuning):
    """Attention of one request's queries over its keys and values, with
    FlashInfer's argument names and shapes.

    q: [qo_len, num_qo_heads, head_dim_qk]; k, v: [kv_len, num_kv_heads,
    head_dim] (NHD) or [num_kv_heads, kv_len, head_dim] (HND). Causal
    masking aligns the last query with the last key. Returns out, or
    (out, lse) with lse base 2 of shape [qo_len, num_qo_heads].
    The kernel is compiled on first use of each configuration and cached.
    Under torch.compile this is one ``torch.ops.fijit.single_prefill``
    node.
    """
    require_torch("single_prefill_with_kv_cache")
    check_layout(kv_layout)
    if not isinstance(q, torch.Tensor):  # __cuda_array_interface__/DLPack
        kernel = _prefill_kernel(q, k, v, causal, window_left,
                                 logits_soft_cap, return_lse, kv_layout,
                                 _ops.tuning_text(tuning))
        return kernel(q, k, v, out=out, sm_scale=sm_scale)
    if q.dim() != 3 or k.dim() != 3 or v.dim() != 3:
        raise ValueError("q, k and v must be 3-D: q [qo_len, num_qo_heads, "
                         "head_dim], k/v [kv_len, num_kv_heads, head_dim] "
                         "(NHD) or [num_kv_heads, kv_len, head_dim] (HND)")
    if out is None:
        out = q.new_empty((q.shape[0], q.shape[1], v.shape[2]))
    lse = (q.new_empty((q.shape[0], q.shape[1]), dtype=torch.float32)
           if return_lse else None)
    _ops.call("single_prefill", q, k, v, out, lse, bool(causal), sm_scale,
              int(window_left), float(logits_soft_cap or 0.0), kv_layout,
              _ops.tuning_text(tuning))
    return (out, lse) if return_lse else out


def _prefill_kernel(q, k, v, causal, window_left, logits_soft_cap,
                    return_lse, kv_layout, tuning):
    """The kernel (compiled or fetched) of these tensors' config."""
    qv, kv = as_view(q, "q"), as_view(k, "k")
    vv = as_view(v, "v")
    if qv.ndim != 3 or kv.ndim != 3 or vv.ndim != 3:
        raise ValueError("q, k and v must be 3-D: q [qo_len, num_qo_heads, "
                         "head_dim], k/v [kv_len, num_kv_heads, head_dim] "
                         "(NHD) or [num_kv_heads, kv_len, head_dim] (HND)")
    num_kv_heads = kv.shape[1] if kv_layout == "NHD" else kv.shape[0]
    key = (qv.shape[1:], qv.dtype, num_kv_heads, kv.shape[2], vv.shape[2],
           kv.dtype, bool(causal), int(window_left),
           float(logits_soft_cap or 0.0), bool(return_lse), kv_layout,
           qv.device, tuning)
    cfg = _configs.get(key)
    if cfg is None:
        cfg = AttentionConfig(
            kind="single_prefill", head_dim_qk=qv.shape[2],
            head_dim_vo=vv.shape[2], num_qo_heads=qv.shape[1],
            num_kv_heads=num_kv_heads, dtype_q=qv.dtype, dtype_kv=kv.dtype,
            dtype_o=qv.dtype, kv_layout=kv_layout,
            mask="causal" if causal else "none", window_left=window_left,
            logits_soft_cap=float(logits_soft_cap or 0.0),
            return_lse=bool(return_lse), target=target_of(qv.device),
            **_ops.tuning_fields(tuning))
        _configs[key] = cfg
    return compile_attention(cfg)


def _single_prefill(q, k, v, out, lse, causal, sm_scale, window_left,
                    logits_soft_cap, kv_layout, tuning):
    """torch.ops.fijit.single_prefill: launches the kernel of these
    tensors' config into `out` (and `lse`)."""
    kernel = _prefill_kernel(q, k, v, causal, window_left, logits_soft_cap,
                             lse is not None, kv_layout, tuning)
    kernel(q, k, v, out=out, lse=lse, sm_scale=sm_scale)


_ops.register("single_prefill", _single_prefill)


class _BatchPrefillWrapper:
    """plan/run shared by the ragged and paged batch prefill wrappers: plan
    validates the index tensors on the host and compiles (or fetches) the
    kernel once per batch shape, its tiles chosen from the requests' mean
    query length unless tuning knobs are given (AttentionConfig.for_batch_of);
    run only launches, so it can be captured in a CUDA graph."""

    _kind = None

    def __init__(self, float_workspace_buffer=None, kv_layout="NHD"):
        check_layout(kv_layout)
        self._kv_layout = kv_layout
        self._plan = None

    def _compile(self, qo_indptr, num_qo_heads, num_kv_heads, head_dim_qk,
                 head_dim_vo, page_size, causal, sm_scale, window_left,
                 logits_soft_cap, q_data_type, kv_data_type, return_lse,
                 tuning):
        qo = check_indptr("qo_indptr", qo_indptr)
        q_dtype = dtype_name(q_data_type)
        cfg = AttentionConfig(
            kind=self._kind, head_dim_qk=head_dim_qk,
            head_dim_vo=head_dim_vo or head_dim_qk,
            num_qo_heads=num_qo_heads, num_kv_heads=num_kv_heads,
            dtype_q=q_dtype, dtype_kv=dtype_name(kv_data_type or q_data_type),
            dtype_o=q_dtype, kv_layout=self._kv_layout, page_size=page_size,
            mask="causal" if causal else "none", window_left=window_left,
            logits_soft_cap=float(logits_soft_cap or 0.0),
            return_lse=bool(return_lse), target=target_of(qo_indptr.device),
            **tuning)
        lens = [b - a for a, b in zip(qo, qo[1:])]
        busy = sum(1 for n in lens if n)
        if not tuning and busy:
            # Over the requests with queries: padding a batch with empty
            # ones (for CUDA graphs) leaves the plan as it was.
            cfg = cfg.for_batch_of(qo[-1] // busy)
        kernel = compile_attention(cfg)
        _ops.remember(kernel)
        # Plain values only: run() is traced by torch.compile.
        return dict(config=str(cfg), return_lse=cfg.return_lse,
                    num_qo_heads=cfg.num_qo_heads,
                    head_dim_vo=cfg.head_dim_vo, qo_indptr=qo_indptr,
                    batch=len(lens), max_qo_len=max(lens, default=0),
                    total_qo=qo[-1], total_kv=0, max_page=-1,
                    kv_indices=None, kv_last_page_len=None,
                    sm_scale=None if sm_scale is None else float(sm_scale))

    def _run(self, p, q, k, v, out, lse, return_lse):
        """Allocates what the caller left out and launches through
        torch.ops.fijit.batch_prefill."""
        if out is None:
            out = q.new_empty((p["total_qo"], p["num_qo_heads"],
                               p["head_dim_vo"]))
        if p["return_lse"] and lse is None:
            lse = q.new_empty((p["total_qo"], p["num_qo_heads"]),
                              dtype=torch.float32)
        _ops.call("batch_prefill", q, k, v, out, lse, p["qo_indptr"],
                  p["kv_indptr"], p["kv_indices"], p["kv_last_page_len"],
                  p["config"], self._kv_layout, p["batch"], p["max_qo_len"],
                  p["total_qo"], p["total_kv"], p["max_page"], p["sm_scale"])
        return (out, lse) if return_lse else out


def _batch_prefill(q, k, v, out, lse, qo_indptr, kv_indptr, kv_indices,
                   kv_last_page_len, config, kv_layout, batch, max_qo_len,
                   total_qo, total_kv, max_page, sm_scale):
    """torch.ops.fijit.batch_prefill: checks the tensors against the planned
    kernel and launches it; paged when kv_indices is given, else ragged."""
    kernel = _ops.kernel_for(config)
    cfg = kernel.config
    qv = as_view(q, "q")
    check(qv, "q", (total_qo, cfg.num_qo_heads, cfg.head_dim_qk), cfg.dtype_q)
    check(as_view(out, "out"), "out",
          (total_qo, cfg.num_qo_heads, cfg.head_dim_vo), cfg.dtype_o, like=qv)
    nhd = kv_layout == "NHD"
    if kv_indices is not None:
        k, v, strides = paged_cache_strides((k, v), cfg, kv_layout, max_page,
                                            q)
        kv = dict(kv_indices=kv_indices.data_ptr(),
                  kv_last_page_len=kv_last_page_len.data_ptr(),
                  kv_rows=k.shape[0], **strides)
    else:
        for name, t, dim in (("k", k, cfg.head_dim_qk),
                             ("v", v, cfg.head_dim_vo)):
            shape = ((total_kv, cfg.num_kv_heads, dim) if nhd else
                     (cfg.num_kv_heads, total_kv, dim))
            check(as_view(t, name), name, shape, cfg.dtype_kv, like=qv)
        n, h = (0, 1) if nhd else (1, 0)
        kv = dict(kv_rows=total_kv, **kv_strides(k, v, n, h))
    kernel.launch(
        q=q.data_ptr(), k=k.data_ptr(), v=v.data_ptr(), o=out.data_ptr(),
        lse=lse.data_ptr() if lse is not None else 0,
        qo_indptr=qo_indptr.data_ptr(), kv_indptr=kv_indptr.data_ptr(),
        batch=batch, max_qo_len=max_qo_len, qo_rows=total_qo,
        q_stride_n=q.stride(0), q_stride_h=q.stride(1),
        o_stride_n=out.stride(0), o_stride_h=out.stride(1),
        sm_scale=float(sm_scale or 0.0),
        stream=torch.cuda.current_stream(q.device).cuda_stream, **kv)


_ops.register("batch_prefill", _batch_prefill)


class BatchPrefillWithRaggedKVCacheWrapper(_BatchPrefillWrapper):
    """Prefill of a batch whose keys and values are packed along the token
    axis: k, v [sum(kv_len), num_kv_heads, head_dim] (NHD) or
    [num_kv_heads, sum(kv_len), head_dim] (HND), request b at tokens
    kv_indptr[b] .. kv_indptr[b+1]; q and out likewise by qo_indptr."""

    _kind = "batch_prefill_ragged"

    def plan(self, qo_indptr, kv_indptr, num_qo_heads, num_kv_heads,
             head_dim_qk, head_dim_vo=None, causal=False, sm_scale=None,
             window_left=-1, logits_soft_cap=None, q_data_type="float16",
             kv_data_type=None, return_lse=False, **tuning):
        """Validates the index tensors on the host and compiles (or
        fetches) the kernel for this batch shape; call once per batch
        shape, then run() as often as needed. Tuning keywords (tile_q,
        num_warps, ...) override the plan's choice."""
        qo = check_indptr("qo_indptr", qo_indptr)
        kv = check_indptr("kv_indptr", kv_indptr, batch=len(qo) - 1)
        self._plan = self._compile(
            qo_indptr, num_qo_heads, num_kv_heads, head_dim_qk, head_dim_vo,
            1, causal, sm_scale, window_left, logits_soft_cap, q_data_type,
            kv_data_type, return_lse, tuning)
        self._plan.update(kv_indptr=kv_indptr, total_kv=kv[-1])

    def run(self, q, k, v, out=None, lse=None, return_lse=False):
        """Attention of the planned batch: q [sum(qo_len), num_qo_heads,
        head_dim_qk], k/v packed by kv_indptr. Returns out (and lse, base
        2, [sum(qo_len), num_qo_heads], with return_lse=True). Only
        launches: CUDA-graph capturable; one torch.ops.fijit.batch_prefill
        node under torch.compile."""
        p = planned(self._plan, return_lse)
        return self._run(p, q, k, v, out, lse, return_lse)


class BatchPrefillWithPagedKVCacheWrapper(_BatchPrefillWrapper):
    """Prefill of a batch over FlashInfer's paged KV cache (same page table
    as BatchDecodeWithPagedKVCacheWrapper); queries packed by qo_indptr.
    Causal masking aligns each request's last query with its last key."""

    _kind = "batch_prefill_paged"

    def plan(self, qo_indptr, paged_kv_indptr, paged_kv_indices,
             paged_kv_last_page_len, num_qo_heads, num_kv_heads,
             head_dim_qk, page_size, head_dim_vo=None, causal=False,
             sm_scale=None, window_left=-1, logits_soft_cap=None,
             q_data_type="float16", kv_data_type=None, return_lse=False,
             **tuning):
        """Validates the page table and query index on the host and
        compiles (or fetches) the kernel for this batch shape; call once
        per batch shape, then run() as often as needed."""
        qo = check_indptr("qo_indptr", qo_indptr)
        batch, _, max_page = page_table(paged_kv_indptr, paged_kv_indices,
                                        paged_kv_last_page_len, page_size)
        if batch != len(qo) - 1:
            raise ValueError(f"qo_indptr describes {len(qo) - 1} requests "
                             f"but paged_kv_indptr {batch}")
        self._plan = self._compile(
            qo_indptr, num_qo_heads, num_kv_heads, head_dim_qk, head_dim_vo,
            page_size, causal, sm_scale, window_left, logits_soft_cap,
            q_data_type, kv_data_type, return_lse, tuning)
        self._plan.update(kv_indptr=paged_kv_indptr,
                          kv_indices=paged_kv_indices,
                          kv_last_page_len=paged_kv_last_page_len,
                          max_page=max_page)

    def run(self, q, paged_kv_cache, out=None, lse=None, return_lse=False):
        """Attention of the planned batch over the paged cache
        ((k_cache, v_cache) or one [num_pages, 2, ...] tensor). Returns
        out (and lse with return_lse=True). Only launches: CUDA-graph
        capturable; one torch.ops.fijit.batch_prefill node under
        torch.compile."""
        p = planned(self._plan, return_lse)
        k_cache, v_cache = split_cache(paged_kv_cache)
        return self._run(p, q, k_cache, v_cache, out, lse, return_lse)
