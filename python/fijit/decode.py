"""Decode with FlashInfer 0.7's contract: one request over dense KV, and
batches over a paged KV cache with plan/run wrappers that CUDA graphs can
capture and replay after any number of re-plans (docs/python.md). Each
launch is a torch.library custom op (torch.ops.fijit.single_decode,
batch_decode_paged: fijit/_ops.py), one graph node under torch.compile."""
import functools

from .config import AttentionConfig
from .kernel import compile_attention
from ._common import (check_layout, kv_strides, page_table,
                      paged_cache_strides, require_torch, split_cache,
                      target_of)
from ._contract import (BACKENDS, Buffers, check_q_dtype, check_tuning,
                        fold_q_scale, head_dims, kv_scales, launch_scales,
                        plan_dtypes, pos_encoding, require, require_none,
                        scale_output, stage, unsupported)
from ._variants import (check_slopes, launch_tables, optional_table,
                        rope_params)
from .tensors import _torch_dtype_name, as_view, check, torch
from . import _ops

_decode_configs = {}
# Longest context a plan may describe: positions are 32-bit in the kernel.
_MAX_KV_LEN = 2**31 - 1


def _workspace(nbytes, device):
    return torch.empty(max(nbytes, 16), dtype=torch.uint8, device=device)


def _launch_decode(kernel, q, k, v, o, lse, workspace, sm_scale,
                   alibi_slopes, sinks, k_scale, v_scale, rope, **named):
    """Launches with q, k, v, o, lse, the workspace, the variant's tables
    and RoPE's (rope_scale, rope_theta), FlashInfer's KV scales
    (launch_scales) and `named`: lengths, strides and index tensors (None:
    not given) by launch argument name."""
    hq, dev = kernel.config.num_qo_heads, q.device
    named.update(launch_tables(
        kernel.config, optional_table("alibi_slopes", alibi_slopes, hq, dev),
        optional_table("sinks", sinks, hq, dev), as_view(q, "q"), rope))
    sm_scale, scales, factor = launch_scales(kernel.config, sm_scale,
                                             k_scale, v_scale)
    named.update(scales)
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
    scale_output(o, factor)


def single_decode_with_kv_cache(q, k, v, kv_layout="NHD",
                                pos_encoding_mode="NONE",
                                use_tensor_cores=False, q_scale=None,
                                k_scale=None, v_scale=None, window_left=-1,
                                logits_soft_cap=None, sm_scale=None,
                                rope_scale=None, rope_theta=None,
                                return_lse=False, *, out=None, sinks=None,
                                alibi_slopes=None, **tuning):
    """One query token per head over one request's keys and values.

    q: [num_qo_heads, head_dim]; k, v: [kv_len, num_kv_heads, head_dim]
    (NHD) or [num_kv_heads, kv_len, head_dim] (HND). The query heads of each
    GQA group share one pass over their kv head; long contexts are split
    across CTAs and merged. Returns out [num_qo_heads, head_dim] (and lse,
    base 2, [num_qo_heads] with return_lse=True). pos_encoding_mode="ALIBI"
    biases key j by slope * j as FlashInfer does (slopes from get_alibi_slopes
    unless ``alibi_slopes`` is given); ``sinks`` (float32 [num_qo_heads])
    adds one attention-sink logit per head to the softmax denominator.
    Under torch.compile this is one ``torch.ops.fijit.single_decode`` node.
    """
    api = "single_decode_with_kv_cache"
    pos = pos_encoding(api, pos_encoding_mode)
    rope = rope_params(api, rope_scale, rope_theta)
    check_slopes(pos_encoding_mode, alibi_slopes)
    k_scale, v_scale, out_scale = kv_scales(
        api, fold_q_scale(api, q_scale, k_scale), v_scale)
    check_tuning(api, tuning)
    require_torch(api)
    if all(isinstance(t, torch.Tensor) for t in (q, k, v)):
        ndims = (q.dim(), k.dim(), v.dim())
        check_q_dtype(api, _torch_dtype_name(q))
    else:  # __cuda_array_interface__ or DLPack arrays: shapes checked alike
        ndims = tuple(as_view(t, name).ndim
                      for t, name in ((q, "q"), (k, "k"), (v, "v")))
        check_q_dtype(api, as_view(q, "q").dtype)
    if ndims != (2, 3, 3):
        raise ValueError("q must be [num_qo_heads, head_dim] and k/v "
                         "[kv_len, num_kv_heads, head_dim] (NHD) or "
                         "[num_kv_heads, kv_len, head_dim] (HND)")
    check_layout(kv_layout)
    if out is None:
        out = q.new_empty((q.shape[0], v.shape[2]))
    lse = (torch.empty(q.shape[0], dtype=torch.float32, device=q.device)
           if return_lse else None)
    _ops.call("single_decode", q, k, v, out, lse,
              None if sm_scale is None else float(sm_scale),
              int(window_left), float(logits_soft_cap or 0.0), kv_layout,
              _ops.tuning_text(tuning), pos, alibi_slopes, sinks, k_scale,
              v_scale, *rope)
    scale_output(out, out_scale)
    return (out, lse) if return_lse else out


def _single_decode(q, k, v, out, lse, sm_scale, window_left, logits_soft_cap,
                   kv_layout, tuning, pos_encoding, alibi_slopes, sinks,
                   k_scale, v_scale, rope_scale, rope_theta):
    """torch.ops.fijit.single_decode: compiles (or fetches) the kernel of
    these tensors' config, plans its split-KV chunks and launches it."""
    qv, kv, vv = as_view(q, "q"), as_view(k, "k"), as_view(v, "v")
    nhd = kv_layout == "NHD"
    kv_len, hk = (kv.shape[0], kv.shape[1]) if nhd else (kv.shape[1],
                                                         kv.shape[0])
    return_lse = lse is not None
    key = (qv.shape, qv.dtype, hk, kv.shape[2], vv.shape[2], kv.dtype,
           window_left, logits_soft_cap, return_lse, kv_layout, qv.device,
           tuning, pos_encoding, sinks is not None)
    cfg = _decode_configs.get(key)
    if cfg is None:
        head_dims("single_decode_with_kv_cache", qv.shape[1], vv.shape[2])
        cfg = AttentionConfig(
            kind="single_decode", head_dim_qk=qv.shape[1],
            head_dim_vo=vv.shape[2], num_qo_heads=qv.shape[0],
            num_kv_heads=hk, dtype_q=qv.dtype, dtype_kv=kv.dtype,
            dtype_o=qv.dtype, kv_layout=kv_layout, window_left=window_left,
            logits_soft_cap=logits_soft_cap, return_lse=return_lse,
            pos_encoding=pos_encoding, sinks=sinks is not None,
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
    counters = (torch.zeros(hk, dtype=torch.int32, device=q.device)
                if splits > 1 else None)
    _launch_decode(kernel, q, k, v, out, lse, _workspace(nbytes, q.device),
                   sm_scale, alibi_slopes, sinks, k_scale, v_scale,
                   (rope_scale, rope_theta), batch=1,
                   kv_len=kv_len, kv_chunk=kv_chunk,
                   split_counters=counters, q_stride_h=q.stride(0),
                   o_stride_h=out.stride(0), **kv_strides(k, v, n, h))


_ops.register("single_decode", _single_decode)


class BatchDecodeWithPagedKVCacheWrapper:
    """Decode for a batch of requests over FlashInfer's paged KV cache.

    ``plan`` validates the page table, copies it into buffers the wrapper
    owns (or, with ``use_cuda_graph=True``, the caller's fixed buffers),
    compiles or fetches the kernel and writes the split-KV schedule; ``run``
    only launches. With ``use_cuda_graph=True`` the kernel reads the
    schedule from device memory and its grid is sized once, at the first
    plan, so a captured ``run`` replays correctly after later plans of
    shorter or longer contexts (docs/python.md, "CUDA graphs"). The plan
    holds plain values (the config as text, integers, index buffers), so
    ``run`` traces under torch.compile as one
    ``torch.ops.fijit.batch_decode_paged`` node.
    """

    _api = "BatchDecodeWithPagedKVCacheWrapper"

    def __init__(self, float_workspace_buffer, kv_layout="NHD",
                 use_cuda_graph=False, use_tensor_cores=False,
                 paged_kv_indptr_buffer=None, paged_kv_indices_buffer=None,
                 paged_kv_last_page_len_buffer=None, backend="auto",
                 jit_args=None):
        check_layout(kv_layout)
        require(self._api, "backend", backend, BACKENDS)
        require_none(self._api, jit_args=jit_args)
        self._float_workspace_buffer = float_workspace_buffer
        self._kv_layout = kv_layout
        # fijit's decode always multiplies on tensor cores.
        self._use_tensor_cores = bool(use_tensor_cores)
        self._backend = backend
        self._use_cuda_graph = bool(use_cuda_graph)
        self.device = getattr(float_workspace_buffer, "device", None)
        if use_cuda_graph:
            for name, buf in (("paged_kv_indptr_buffer",
                               paged_kv_indptr_buffer),
                              ("paged_kv_indices_buffer",
                               paged_kv_indices_buffer),
                              ("paged_kv_last_page_len_buffer",
                               paged_kv_last_page_len_buffer)):
                if torch is None or not torch.is_tensor(buf):
                    raise ValueError(f"{name} should be a torch.Tensor in "
                                     "cudagraph mode")
            self._fixed_batch_size = len(paged_kv_last_page_len_buffer)
            if len(paged_kv_indptr_buffer) != self._fixed_batch_size + 1:
                raise ValueError("The size of paged_kv_indptr_buffer should "
                                 "be batch_size + 1")
        else:
            self._fixed_batch_size = 0
        self._paged_kv_indptr_buf = paged_kv_indptr_buffer
        self._paged_kv_indices_buf = paged_kv_indices_buffer
        self._paged_kv_last_page_len_buf = paged_kv_last_page_len_buffer
        self._owned = None
        self._plan = None
        self._cached_module = None  # set by plan, as FlashInfer's is
        # Fixed by the first plan in graph mode: the config, the splits the
        # grid holds, the schedule buffer and the merge counters.
        self._frozen = None
        self._split_plan = None
        self._counters = None

    @property
    def use_tensor_cores(self):
        return self._use_tensor_cores

    @property
    def is_cuda_graph_enabled(self):
        return self._use_cuda_graph

    def reset_workspace_buffer(self, float_workspace_buffer,
                               int_workspace_buffer):
        self._float_workspace_buffer = float_workspace_buffer

    def plan(self, indptr, indices, last_page_len, num_qo_heads,
             num_kv_heads, head_dim, page_size, pos_encoding_mode="NONE",
             window_left=-1, logits_soft_cap=None, q_data_type="float16",
             kv_data_type=None, o_data_type=None, data_type=None,
             sm_scale=None, rope_scale=None, rope_theta=None,
             non_blocking=True, block_tables=None, seq_lens=None,
             fixed_split_size=None, disable_split_kv=False, q_len_per_req=1,
             *, window_right=0, is_causal=None, kv_chunk=None,
             alibi_slopes=None, **tuning):
        """FlashInfer's plan; `kv_chunk` (fijit's) fixes the keys per
        split-KV chunk, `alibi_slopes` (fijit's) replaces get_alibi_slopes'
        with pos_encoding_mode="ALIBI", `tuning` takes tile_q, tile_kv,
        num_warps, stages.
        `fixed_split_size` is in pages, as FlashInfer's; -1 or None lets the
        plan choose, `disable_split_kv=True` reads each request in one
        CTA."""
        api = self._api + ".plan"
        pos = pos_encoding(api, pos_encoding_mode)
        rope_params(api, rope_scale, rope_theta)
        check_slopes(pos_encoding_mode, alibi_slopes)
        require(api, "window_right", window_right, (0,))
        require(api, "q_len_per_req", q_len_per_req, (1,))
        require(api, "is_causal", is_causal, (None, False))
        require_none(api, block_tables=block_tables, seq_lens=seq_lens)
        check_tuning(api, tuning)
        self._plan_impl(indptr, indices, last_page_len, num_qo_heads,
                        num_kv_heads, head_dim, page_size, window_left,
                        logits_soft_cap, plan_dtypes(
                            api, q_data_type, kv_data_type, o_data_type,
                            data_type), sm_scale, fixed_split_size,
                        disable_split_kv, kv_chunk, tuning, None, pos,
                        alibi_slopes)
        self._tuning = tuning
        self._rope_scale, self._rope_theta = rope_scale, rope_theta
        self._pos_encoding_mode = pos_encoding_mode

    begin_forward = plan

    def end_forward(self):
        pass

    def _chunk(self, page_size, max_len, fixed_split_size, disable_split_kv,
               kv_chunk):
        """Keys per split the caller fixed, or 0 (the plan chooses)."""
        if disable_split_kv:
            return max(max_len, 1)
        if kv_chunk:
            return int(kv_chunk)
        if fixed_split_size is not None and fixed_split_size > 0:
            return int(fixed_split_size) * page_size
        return 0

    def _plan_impl(self, indptr, indices, last_page_len, num_qo_heads,
                   num_kv_heads, head_dim, page_size, window_left,
                   logits_soft_cap, dtypes, sm_scale, fixed_split_size,
                   disable_split_kv, kv_chunk, tuning, host_indptr,
                   pos="none", alibi_slopes=None):
        # FlashInfer's decode plan has one head_dim for q/k and v/o.
        head_dims(self._api + ".plan", head_dim, qk_name="head_dim",
                  vo_name="head_dim")
        require_torch(self._api + ".plan")
        batch, lens, max_page = page_table(indptr, indices, last_page_len,
                                           page_size, host_indptr)
        device = self.device or indptr.device
        if device.type != "cuda":
            device = torch.device("cuda", torch.cuda.current_device())
        self.device = device
        graph = self._use_cuda_graph
        cfg = AttentionConfig(
            kind="batch_decode_paged", head_dim_qk=head_dim,
            head_dim_vo=head_dim, num_qo_heads=num_qo_heads,
            num_kv_heads=num_kv_heads, dtype_q=dtypes[0], dtype_kv=dtypes[1],
            dtype_o=dtypes[0], kv_layout=self._kv_layout,
            page_size=page_size, window_left=window_left,
            logits_soft_cap=float(logits_soft_cap or 0.0), cuda_graph=graph,
            pos_encoding=pos, target=target_of(device), **tuning)
        kernel = _ops.variants(cfg).get()
        max_len = max(lens, default=0)
        chunk = self._chunk(page_size, max_len, fixed_split_size,
                            disable_split_kv, kv_chunk)
        if graph:
            self._check_frozen(cfg, batch, indices, page_size,
                               disable_split_kv, kernel)
            bufs = (self._paged_kv_indptr_buf, self._paged_kv_indices_buf,
                    self._paged_kv_last_page_len_buf)
            max_splits = self._frozen["max_splits"]
        else:
            if self._owned is None:
                self._owned = Buffers(device)
            bufs = (self._owned.get("indptr", batch + 1),
                    self._owned.get("indices", indices.numel()),
                    self._owned.get("last_page_len", batch))
            max_splits = 0
        kv_chunk_, splits, nbytes = kernel.plan_decode(
            batch, max_len, chunk, max_splits)
        have = (self._float_workspace_buffer.numel() *
                self._float_workspace_buffer.element_size()
                if self._float_workspace_buffer is not None else 0)
        if nbytes > have:
            raise ValueError(f"float_workspace_buffer holds {have} bytes; "
                             f"this batch needs {nbytes}")
        for dst, src in zip(bufs, (indptr, indices, last_page_len)):
            stage(dst, src)
        if graph:
            stage(self._split_plan, torch.tensor([kv_chunk_, splits],
                                                 dtype=torch.int32))
        elif splits > 1 and (self._counters is None or
                             self._counters.numel() < batch * num_kv_heads):
            self._counters = torch.zeros(batch * num_kv_heads,
                                         dtype=torch.int32, device=device)
        # Plain values only: run() is traced by torch.compile.
        self._plan = dict(config=str(cfg), batch=batch, max_len=max_len,
                          kv_chunk=kv_chunk_, splits=splits, bufs=bufs,
                          max_page=max_page, max_splits=max_splits)
        # What FlashInfer's plan leaves on the wrapper, which engines read.
        self._cached_module = kernel
        self._batch_size = batch
        self._num_qo_heads, self._num_kv_heads = num_qo_heads, num_kv_heads
        self._cached_q_data_type = self._cached_o_data_type = dtypes[0]
        self._cached_kv_data_type = dtypes[1]
        self._window_left = int(window_left)
        self._logits_soft_cap = float(logits_soft_cap or 0.0)
        self._sm_scale = None if sm_scale is None else float(sm_scale)
        self._pos_encoding = pos
        # Checked (and made float32) once: run() passes it as it is.
        self._alibi_slopes = optional_table("alibi_slopes", alibi_slopes,
                                            num_qo_heads, device)

    def _check_frozen(self, cfg, batch, indices, page_size, disable_split_kv,
                      kernel):
        """Graph mode: what a captured launch holds is fixed by the first
        plan (config, batch, the splits its grid holds); a later plan that
        does not fit raises rather than corrupting a replay."""
        if batch != self._fixed_batch_size:
            raise ValueError(
                f"The batch size should be fixed in cudagraph mode, the "
                f"runtime batch size {batch} mismatches the batch size set "
                f"during initialization {self._fixed_batch_size}")
        if indices.numel() > self._paged_kv_indices_buf.numel():
            raise ValueError(
                f"The size of indices ({indices.numel()}) should be less "
                "than or equal to the allocated buffer "
                f"({self._paged_kv_indices_buf.numel()})")
        # Window and soft-cap may change per run (forward()): they shape
        # neither the schedule nor the buffers.
        shape = str(cfg.replace(window_left=-1, logits_soft_cap=0.0))
        if self._frozen is not None:
            if self._frozen["shape"] != shape:
                raise ValueError(
                    "a CUDA graph may have captured this wrapper's kernel "
                    f"for {self._frozen['shape']}; this plan needs {shape}: "
                    "use another wrapper for other heads, dtypes or tuning")
            return
        # The grid holds the splits the plan would choose for the longest
        # context the indices buffer can describe (one split with
        # disable_split_kv), so any later plan fits it.
        longest = min(self._paged_kv_indices_buf.numel() * page_size,
                      _MAX_KV_LEN)
        max_splits = 1 if disable_split_kv else kernel.plan_decode(
            batch, longest)[1]
        self._frozen = dict(shape=shape, max_splits=max_splits)
        self._split_plan = torch.zeros(2, dtype=torch.int32,
                                       device=self.device)
        self._counters = torch.zeros(max(batch * cfg.num_kv_heads, 1),
                                     dtype=torch.int32, device=self.device)

    def run(self, q, paged_kv_cache, *args, q_scale=None, k_scale=None,
            v_scale=None, out=None, lse=None, return_lse=False,
            enable_pdl=None, window_left=None, sinks=None,
            q_len_per_req=None, skip_softmax_threshold_scale_factor=None,
            kv_cache_sf=None):
        api = self._api + ".run"
        if args:
            raise unsupported(api, "*args", args, "custom kernel arguments "
                              "(jit_args) are not supported")
        k_scale, v_scale, out_scale = kv_scales(
            api, fold_q_scale(api, q_scale, k_scale), v_scale)
        require(api, "enable_pdl", enable_pdl, (None, False))
        require(api, "q_len_per_req", q_len_per_req, (None, 1))
        require_none(api, kv_cache_sf=kv_cache_sf,
                     skip_softmax_threshold_scale_factor=(
                         skip_softmax_threshold_scale_factor))
        p = self._plan
        if p is None:
            raise RuntimeError("call plan() before run()")
        if window_left is not None and window_left != self._window_left:
            raise ValueError(f"window_left={window_left} differs from the "
                             f"plan's {self._window_left}")
        k_cache, v_cache = split_cache(paged_kv_cache, self._kv_layout)
        if out is None:
            out = torch.empty_like(q)
        if return_lse and lse is None:
            lse = torch.empty(q.shape[:2], dtype=torch.float32,
                              device=q.device)
        indptr, indices, last = p["bufs"]
        # The graph-safe kernel reads its schedule from split_plan.
        split_plan = self._split_plan if p["max_splits"] else None
        _ops.call("batch_decode_paged", q, k_cache, v_cache, out,
                  lse if return_lse else None, self._float_workspace_buffer,
                  self._counters, indptr, indices, last, split_plan,
                  p["config"], self._kv_layout, p["batch"], p["max_len"],
                  p["kv_chunk"], p["max_splits"], p["max_page"],
                  self._sm_scale, self._window_left, self._logits_soft_cap,
                  self._pos_encoding, self._alibi_slopes, sinks, k_scale,
                  v_scale, *rope_params(api, self._rope_scale,
                                        self._rope_theta))
        scale_output(out, out_scale)
        return (out, lse) if return_lse else out

    run_return_lse = functools.partialmethod(run, return_lse=True)

    def forward(self, q, paged_kv_cache, pos_encoding_mode="NONE",
                q_scale=None, k_scale=None, v_scale=None, window_left=-1,
                logits_soft_cap=None, sm_scale=None, rope_scale=None,
                rope_theta=None):
        """Deprecated in FlashInfer: run() after taking these values as the
        plan's (as FlashInfer's forward does)."""
        self._forward_values(pos_encoding_mode, window_left, logits_soft_cap,
                             sm_scale, rope_scale, rope_theta)
        return self.run(q, paged_kv_cache, q_scale=q_scale, k_scale=k_scale,
                        v_scale=v_scale)

    def forward_return_lse(self, q, paged_kv_cache, pos_encoding_mode="NONE",
                           q_scale=None, k_scale=None, v_scale=None,
                           window_left=-1, logits_soft_cap=None,
                           sm_scale=None, rope_scale=None, rope_theta=None):
        self._forward_values(pos_encoding_mode, window_left, logits_soft_cap,
                             sm_scale, rope_scale, rope_theta)
        return self.run(q, paged_kv_cache, q_scale=q_scale, k_scale=k_scale,
                        v_scale=v_scale, return_lse=True)

    def _forward_values(self, pos_encoding_mode, window_left,
                        logits_soft_cap, sm_scale, rope_scale=None,
                        rope_theta=None):
        api = self._api + ".forward"
        self._pos_encoding = pos_encoding(api, pos_encoding_mode)
        rope_params(api, rope_scale, rope_theta)
        self._rope_scale, self._rope_theta = rope_scale, rope_theta
        self._pos_encoding_mode = pos_encoding_mode
        self._window_left = int(window_left)
        self._logits_soft_cap = float(logits_soft_cap or 0.0)
        self._sm_scale = None if sm_scale is None else float(sm_scale)


def _batch_decode_paged(q, k_cache, v_cache, out, lse, workspace,
                        split_counters, kv_indptr, kv_indices,
                        kv_last_page_len, split_plan, config, kv_layout,
                        batch, max_kv_len, kv_chunk, max_splits, max_page,
                        sm_scale, window_left, logits_soft_cap, pos_encoding,
                        alibi_slopes, sinks, k_scale, v_scale, rope_scale,
                        rope_theta):
    """torch.ops.fijit.batch_decode_paged: the planned config's variant for
    this run (LSE, window, soft-cap, position encoding, sinks), checked
    against the tensors and launched; with max_splits the kernel reads its
    schedule from split_plan (cuda_graph=true), else from kv_len and
    kv_chunk."""
    kernel = _ops.kernel_for(config, return_lse=lse is not None,
                             window_left=window_left,
                             logits_soft_cap=logits_soft_cap,
                             pos_encoding=pos_encoding,
                             sinks=sinks is not None)
    cfg = kernel.config
    qv = as_view(q, "q")
    check(qv, "q", (batch, cfg.num_qo_heads, cfg.head_dim_qk), cfg.dtype_q)
    k_cache, v_cache, strides = paged_cache_strides(
        (k_cache, v_cache), cfg, kv_layout, max_page, q)
    check(as_view(out, "out"), "out", tuple(q.shape), cfg.dtype_o, like=qv)
    if max_splits:
        schedule = dict(split_plan=split_plan, max_splits=max_splits)
    else:
        schedule = dict(kv_len=max_kv_len, kv_chunk=kv_chunk)
    _launch_decode(kernel, q, k_cache, v_cache, out, lse, workspace,
                   sm_scale, alibi_slopes, sinks, k_scale, v_scale,
                   (rope_scale, rope_theta), batch=batch,
                   split_counters=split_counters,
                   kv_indptr=kv_indptr, kv_indices=kv_indices,
                   kv_last_page_len=kv_last_page_len, q_stride_b=q.stride(0),
                   q_stride_h=q.stride(1), o_stride_b=out.stride(0),
                   o_stride_h=out.stride(1), **schedule, **strides)


_ops.register("batch_decode_paged", _batch_decode_paged)


class CUDAGraphBatchDecodeWithPagedKVCacheWrapper(
        BatchDecodeWithPagedKVCacheWrapper):
    """FlashInfer's older spelling of a decode wrapper with use_cuda_graph
    on and the caller's fixed buffers."""

    def __init__(self, workspace_buffer, indptr_buffer, indices_buffer,
                 last_page_len_buffer, kv_layout="NHD",
                 use_tensor_cores=False):
        super().__init__(workspace_buffer, kv_layout, use_cuda_graph=True,
                         use_tensor_cores=use_tensor_cores,
                         paged_kv_indptr_buffer=indptr_buffer,
                         paged_kv_indices_buffer=indices_buffer,
                         paged_kv_last_page_len_buffer=last_page_len_buffer)


def fast_decode_plan(self, indptr, indices, last_page_len, num_qo_heads,
                     num_kv_heads, head_dim, page_size,
                     pos_encoding_mode="NONE", window_left=-1,
                     logits_soft_cap=None, q_data_type=None,
                     kv_data_type=None, data_type=None, sm_scale=None,
                     rope_scale=None, rope_theta=None, non_blocking=True,
                     fixed_split_size=None, disable_split_kv=False,
                     q_len_per_req=1, global_override_indptr_cpu=None):
    """FlashInfer's plan for repeated CUDA-graph steps: the same as
    ``plan`` on a fijit wrapper, with the host copy of indptr taken from
    ``global_override_indptr_cpu`` when given (no read back), and tensors
    that already are the wrapper's buffers not copied."""
    api = "fast_decode_plan"
    pos = pos_encoding(api, pos_encoding_mode)
    rope_params(api, rope_scale, rope_theta)
    require(api, "q_len_per_req", q_len_per_req, (1,))
    self._plan_impl(indptr, indices, last_page_len, num_qo_heads,
                    num_kv_heads, head_dim, page_size, window_left,
                    logits_soft_cap, plan_dtypes(
                        api, q_data_type, kv_data_type, None, data_type),
                    sm_scale, fixed_split_size, disable_split_kv, None,
                    getattr(self, "_tuning", {}), global_override_indptr_cpu,
                    pos, getattr(self, "_alibi_slopes", None))
    self._rope_scale, self._rope_theta = rope_scale, rope_theta
    self._pos_encoding_mode = pos_encoding_mode
