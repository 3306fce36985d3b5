"""Prefill with FlashInfer 0.7's contract: one request, and batches over
ragged or paged KV with plan/run wrappers (docs/python.md). Each launch is
a torch.library custom op (torch.ops.fijit.single_prefill, batch_prefill:
fijit/_ops.py), one graph node under torch.compile."""
import functools

from .config import AttentionConfig
from .kernel import compile_attention
from ._common import (check_indptr, check_layout, kv_strides, page_table,
                      paged_cache_strides, require_torch, split_cache,
                      target_of)
from ._contract import (BACKENDS, FP8, Buffers, check_q_dtype, check_tuning,
                        dtype_name, fold_q_scale, head_dims, kv_scales,
                        launch_scales, lse_to_base, plan_dtypes, pos_encoding,
                        require, require_none, require_unit_scale,
                        scale_output, stage, unsupported)
from ._masks import (check_mask_buffers, copy_to_words, fixed_buffer_room,
                     mask_layout, mask_words, packed_mask_bytes,
                     single_mask_words)
from ._variants import (check_slopes, launch_tables, optional_table,
                        rope_params)
from .tensors import _torch_dtype_name, as_view, check, torch
from . import _ops

_configs = {}


def single_prefill_with_kv_cache(q, k, v, scale_q=None, scale_k=None,
                                 scale_v=None, o_dtype=None, custom_mask=None,
                                 packed_custom_mask=None, causal=False,
                                 kv_layout="NHD", pos_encoding_mode="NONE",
                                 use_fp16_qk_reduction=False, sm_scale=None,
                                 window_left=-1, logits_soft_cap=None,
                                 rope_scale=None, rope_theta=None,
                                 backend="auto", return_lse=False,
                                 kv_cache_sf=None, k_scale=None,
                                 v_scale=None, *, out=None, sinks=None,
                                 alibi_slopes=None, **tuning):
    """Attention of one request's queries over its keys and values.

    q: [qo_len, num_qo_heads, head_dim_qk]; k, v: [kv_len, num_kv_heads,
    head_dim] (NHD) or [num_kv_heads, kv_len, head_dim] (HND). Causal
    masking aligns the last query with the last key. Returns out, or
    (out, lse) with lse base 2 of shape [qo_len, num_qo_heads].
    pos_encoding_mode="ALIBI" adds FlashInfer's ALiBi bias (slopes from
    get_alibi_slopes unless ``alibi_slopes``, float32 [num_qo_heads], is
    given); ``sinks`` (float32 [num_qo_heads]) adds one attention-sink
    logit per head to each row's softmax denominator.
    ``custom_mask`` (bool [qo_len, kv_len], True where the query sees the
    key) or ``packed_custom_mask`` (its flashinfer.packbits(...,
    bitorder="little"), uint8; it wins when both are given) replaces the
    causal mask, as in FlashInfer; a row that sees no key gives zeros and
    LSE -inf.
    The kernel is compiled on first use of each configuration and cached.
    Under torch.compile this is one ``torch.ops.fijit.single_prefill``
    node.
    """
    api = "single_prefill_with_kv_cache"
    require_none(api, scale_q=scale_q, scale_k=scale_k, scale_v=scale_v,
                 kv_cache_sf=kv_cache_sf)
    pos = pos_encoding(api, pos_encoding_mode)
    check_slopes(pos_encoding_mode, alibi_slopes)
    rope = rope_params(api, rope_scale, rope_theta)
    require(api, "use_fp16_qk_reduction", use_fp16_qk_reduction, (False,))
    require(api, "backend", backend, BACKENDS)
    k_scale, v_scale, out_scale = kv_scales(api, k_scale, v_scale)
    check_tuning(api, tuning)
    require_torch(api)
    # torch tensors go through the op (and so through a trace); other
    # arrays (__cuda_array_interface__, DLPack) straight to the kernel.
    is_torch = all(isinstance(t, torch.Tensor) for t in (q, k, v))
    if is_torch:
        ndims, q_dtype = (q.dim(), k.dim(), v.dim()), _torch_dtype_name(q)
    else:
        qv, kv, vv = as_view(q, "q"), as_view(k, "k"), as_view(v, "v")
        ndims, q_dtype = (qv.ndim, kv.ndim, vv.ndim), qv.dtype
    check_q_dtype(api, q_dtype)
    if o_dtype is not None and dtype_name(o_dtype, api, "o_dtype") != \
            q_dtype:
        raise unsupported(api, "o_dtype", str(o_dtype),
                          "the output has q's dtype")
    if ndims != (3, 3, 3):
        raise ValueError("q, k and v must be 3-D: q [qo_len, num_qo_heads, "
                         "head_dim], k/v [kv_len, num_kv_heads, head_dim] "
                         "(NHD) or [num_kv_heads, kv_len, head_dim] (HND)")
    check_layout(kv_layout)
    window_left = int(window_left)
    logits_soft_cap = float(logits_soft_cap or 0.0)
    sm_scale = None if sm_scale is None else float(sm_scale)
    # FlashInfer: a custom mask replaces the causal one.
    words = None
    if custom_mask is not None or packed_custom_mask is not None:
        qv, kv = as_view(q, "q"), as_view(k, "k")
        kv_len = kv.shape[0 if kv_layout == "NHD" else 1]
        words = single_mask_words(api, custom_mask, packed_custom_mask,
                                  qv.shape[0], kv_len,
                                  torch.device("cuda", qv.device))
    if not is_torch:
        kernel = _prefill_kernel(q, k, v, _mask(causal, words), window_left,
                                 logits_soft_cap, return_lse, kv_layout,
                                 _ops.tuning_text(tuning), pos,
                                 sinks is not None)
        sm_scale, scales, factor = launch_scales(kernel.config, sm_scale,
                                                 k_scale, v_scale)
        if pos == "rope":
            scales.update(rope_scale=rope[0], rope_theta=rope[1])
        result = kernel(q, k, v, out=out, sm_scale=sm_scale,
                        alibi_slopes=alibi_slopes, sinks=sinks,
                        packed_mask=words, **scales)
        o = result[0] if return_lse else result
        scale_output(o, factor)
        scale_output(o, out_scale)
        return result
    if out is None:
        out = q.new_empty((q.shape[0], q.shape[1], v.shape[2]))
    lse = (torch.empty((q.shape[0], q.shape[1]), dtype=torch.float32,
                       device=q.device) if return_lse else None)
    _ops.call("single_prefill", q, k, v, out, lse, bool(causal), sm_scale,
              window_left, logits_soft_cap, kv_layout,
              _ops.tuning_text(tuning), words, pos, alibi_slopes, sinks,
              k_scale, v_scale, *rope)
    scale_output(out, out_scale)
    return (out, lse) if return_lse else out


def _mask(causal, packed_mask):
    """fijit's mask: custom with a packed mask (FlashInfer ignores causal
    then), else causal or none."""
    if packed_mask is not None:
        return "custom"
    return "causal" if causal else "none"


def _prefill_kernel(q, k, v, mask, window_left, logits_soft_cap,
                    return_lse, kv_layout, tuning, pos_encoding="none",
                    sinks=False):
    """The kernel (compiled or fetched) of these tensors' config."""
    qv, kv = as_view(q, "q"), as_view(k, "k")
    vv = as_view(v, "v")
    num_kv_heads = kv.shape[1] if kv_layout == "NHD" else kv.shape[0]
    key = (qv.shape[1:], qv.dtype, num_kv_heads, kv.shape[2], vv.shape[2],
           kv.dtype, mask, window_left, logits_soft_cap,
           bool(return_lse), kv_layout, qv.device, tuning, pos_encoding,
           sinks)
    cfg = _configs.get(key)
    if cfg is None:
        # FlashInfer reads head_dim_qk from q and k, head_dim_vo from v.
        head_dims("single_prefill_with_kv_cache", qv.shape[2], vv.shape[2])
        cfg = AttentionConfig(
            kind="single_prefill", head_dim_qk=qv.shape[2],
            head_dim_vo=vv.shape[2], num_qo_heads=qv.shape[1],
            num_kv_heads=num_kv_heads, dtype_q=qv.dtype, dtype_kv=kv.dtype,
            dtype_o=qv.dtype, kv_layout=kv_layout,
            mask=mask, window_left=window_left,
            logits_soft_cap=logits_soft_cap, return_lse=bool(return_lse),
            pos_encoding=pos_encoding, sinks=bool(sinks),
            target=target_of(qv.device), **_ops.tuning_fields(tuning))
        _configs[key] = cfg
    return compile_attention(cfg)


def _single_prefill(q, k, v, out, lse, causal, sm_scale, window_left,
                    logits_soft_cap, kv_layout, tuning, packed_mask,
                    pos_encoding, alibi_slopes, sinks, k_scale, v_scale,
                    rope_scale, rope_theta):
    """torch.ops.fijit.single_prefill: launches the kernel of these
    tensors' config into `out` (and `lse`); `packed_mask`, int32 words of
    the packed custom mask, makes it mask=custom."""
    kernel = _prefill_kernel(q, k, v, _mask(causal, packed_mask),
                             window_left, logits_soft_cap, lse is not None,
                             kv_layout, tuning, pos_encoding,
                             sinks is not None)
    hq, dev = q.shape[1], q.device
    sm_scale, scales, factor = launch_scales(kernel.config, sm_scale,
                                             k_scale, v_scale)
    if pos_encoding == "rope":
        scales.update(rope_scale=rope_scale, rope_theta=rope_theta)
    kernel(q, k, v, out=out, lse=lse, sm_scale=sm_scale,
           alibi_slopes=optional_table("alibi_slopes", alibi_slopes, hq, dev),
           sinks=optional_table("sinks", sinks, hq, dev),
           packed_mask=packed_mask, **scales)
    scale_output(out, factor)



_ops.register("single_prefill", _single_prefill)


single_prefill_with_kv_cache_return_lse = functools.partial(
    single_prefill_with_kv_cache, return_lse=True)


class _BatchPrefillWrapper:
    """plan/run shared by the ragged and paged batch prefill wrappers: plan
    copies the index tensors into buffers the wrapper owns (or the caller's
    fixed buffers with use_cuda_graph=True) and compiles or fetches the
    kernel, its tiles chosen from the requests' mean query length unless
    tuning knobs are given (AttentionConfig.for_batch_of); run only
    launches. With use_cuda_graph=True the first plan fixes the kernel and
    the launch grid (batch, the longest query run); a later plan that does
    not fit them raises. A custom mask (plan's custom_mask or
    packed_custom_mask) is packed into a word buffer the wrapper owns, or
    in graph mode into the caller's custom_mask_buf and mask_indptr_buf.
    The plan holds plain values (the config as text, integers, index
    buffers), so run traces under torch.compile as one
    ``torch.ops.fijit.batch_prefill`` node."""

    _kind = None
    _api = None

    def _init(self, float_workspace_buffer, kv_layout, use_cuda_graph,
              bufs, custom_mask_buf, mask_indptr_buf, backend, jit_args,
              jit_kwargs, variant_owns_mask):
        check_layout(kv_layout)
        require(self._api, "backend", backend, BACKENDS)
        require_none(self._api, jit_args=jit_args, jit_kwargs=jit_kwargs)
        # FlashInfer reads them in graph mode only (and replaces them
        # otherwise): the fixed buffers a captured launch reads the mask from.
        check_mask_buffers(self._api, custom_mask_buf, mask_indptr_buf)
        self._mask_bufs = (custom_mask_buf, mask_indptr_buf)
        require(self._api, "variant_owns_mask", variant_owns_mask, (False,))
        self._float_workspace_buffer = float_workspace_buffer
        self._kv_layout = kv_layout
        self._backend = backend
        self._use_cuda_graph = bool(use_cuda_graph)
        if use_cuda_graph:
            for name, buf in bufs.items():
                if torch is None or not torch.is_tensor(buf):
                    raise ValueError(f"{name} should be a torch.Tensor in "
                                     "cudagraph mode")
            self._fixed_batch_size = len(bufs["qo_indptr_buf"]) - 1
        else:
            self._fixed_batch_size = 0
        self._bufs = list(bufs.values())
        self._owned = None
        self._plan = None
        self._frozen = None

    @property
    def is_cuda_graph_enabled(self):
        return self._use_cuda_graph

    def reset_workspace_buffer(self, float_workspace_buffer,
                               int_workspace_buffer):
        self._float_workspace_buffer = float_workspace_buffer

    def end_forward(self):
        pass

    def _check_plan_args(self, pos_encoding_mode, use_fp16_qk_reduction,
                         prefix_len_ptr, token_pos_in_items_ptr,
                         token_pos_in_items_len, max_item_len_ptr, tuning,
                         **must_be_none):
        """Refuses what fijit cannot do; returns fijit's pos_encoding."""
        api = self._api + ".plan"
        require_none(api, prefix_len_ptr=prefix_len_ptr,
                     token_pos_in_items_ptr=token_pos_in_items_ptr,
                     max_item_len_ptr=max_item_len_ptr, **must_be_none)
        pos = pos_encoding(api, pos_encoding_mode)
        require(api, "use_fp16_qk_reduction", use_fp16_qk_reduction,
                (False,))
        require(api, "token_pos_in_items_len", token_pos_in_items_len, (0,))
        check_tuning(api, tuning)
        return pos

    def _compile(self, qo, device, num_qo_heads, num_kv_heads, head_dim_qk,
                 head_dim_vo, page_size, mask, window_left,
                 logits_soft_cap, dtypes, tuning, pos="none"):
        """The plan's kernel variants; in graph mode the first plan's."""
        if self._frozen is not None:
            return self._frozen["variants"]
        cfg = AttentionConfig(
            kind=self._kind, head_dim_qk=head_dim_qk,
            head_dim_vo=head_dim_vo,
            num_qo_heads=num_qo_heads, num_kv_heads=num_kv_heads,
            dtype_q=dtypes[0], dtype_kv=dtypes[1], dtype_o=dtypes[0],
            kv_layout=self._kv_layout, page_size=page_size,
            mask=mask, window_left=window_left,
            logits_soft_cap=float(logits_soft_cap or 0.0),
            pos_encoding=pos, target=target_of(device), **tuning)
        lens = [b - a for a, b in zip(qo, qo[1:])]
        busy = sum(1 for n in lens if n)
        if not tuning and busy:
            # Over the requests with queries: padding a batch with empty
            # ones (for CUDA graphs) leaves the plan as it was.
            cfg = cfg.for_batch_of(qo[-1] // busy)
        return _ops.variants(cfg)

    def _plan_mask(self, custom_mask, packed_custom_mask, qo, kv_lens):
        """(packed bytes, byte offsets) of the plan's custom mask, or None
        without one: FlashInfer's segment_packbits layout (each request's
        qo_len * kv_len bits padded to whole bytes)."""
        if custom_mask is None and packed_custom_mask is None:
            return None
        qo_lens = [b - a for a, b in zip(qo, qo[1:])]
        bits, offsets = mask_layout(qo_lens, kv_lens)
        if offsets[-1] > 2 ** 31 - 1:
            raise ValueError(f"{self._api}.plan: the packed mask has "
                             f"{offsets[-1]} bytes; its offsets must fit "
                             "int32")
        packed = packed_mask_bytes(self._api + ".plan", custom_mask,
                                   packed_custom_mask, bits, offsets)
        return packed, offsets

    def _stage_mask(self, mask, batch):
        """The plan's (word buffer, byte offsets buffer), filled from
        `mask` (_plan_mask), or None."""
        if mask is None:
            return None
        packed, offsets = mask
        if self._use_cuda_graph:
            words, indptr = self._mask_bufs  # checked by _finish_plan
        else:
            words = self._owned.get("mask", mask_words(offsets[-1]))
            indptr = self._owned.get("mask_indptr", batch + 1)
        copy_to_words(words, packed)
        stage(indptr, torch.tensor(offsets, dtype=torch.int32))
        return words, indptr

    def _finish_plan(self, qo, device, variants, tensors, causal,
                     window_left, logits_soft_cap, sm_scale, alibi_slopes,
                     mask=None, **extra):
        """Copies the index tensors (and the packed custom mask, `mask`
        from _plan_mask) into the plan's buffers and records the plan;
        `tensors` are the caller's, in the order of the buffers."""
        batch = len(qo) - 1
        max_qo_len = max((b - a for a, b in zip(qo, qo[1:])), default=0)
        if self._use_cuda_graph:
            if batch != self._fixed_batch_size:
                raise ValueError(
                    f"The batch size should be fixed in cudagraph mode, the "
                    f"runtime batch size {batch} mismatches the batch size "
                    f"set during initialization {self._fixed_batch_size}")
            if mask is not None:
                fixed_buffer_room(self._api + ".plan", *self._mask_bufs,
                                  mask[1][-1], batch)
            if self._frozen is None:
                self._frozen = dict(variants=variants, max_qo_len=max_qo_len,
                                    masked=mask is not None)
            elif (mask is not None) != self._frozen["masked"]:
                raise ValueError(
                    "a plan " + ("with" if mask is not None else "without") +
                    " a custom mask does not fit the launch a CUDA graph may "
                    "have captured (the first plan's was " +
                    ("with" if self._frozen["masked"] else "without") +
                    " one): use another wrapper")
            elif max_qo_len > self._frozen["max_qo_len"]:
                raise ValueError(
                    f"a request of {max_qo_len} query tokens does not fit "
                    "the launch a CUDA graph may have captured (at most "
                    f"{self._frozen['max_qo_len']} per request, fixed by "
                    "the first plan): use another wrapper")
            max_qo_len = self._frozen["max_qo_len"]
            bufs = self._bufs
            for buf, t in zip(bufs, tensors):
                if t.numel() > buf.numel():
                    raise ValueError(f"{t.numel()} index entries do not fit "
                                     f"a buffer of {buf.numel()}")
        else:
            if self._owned is None:
                self._owned = Buffers(device)
            bufs = [self._owned.get(str(i), t.numel())
                    for i, t in enumerate(tensors)]
        for buf, t in zip(bufs, tensors):
            stage(buf, t)
        mask_bufs = self._stage_mask(mask, batch)
        # Plain values only: run() is traced by torch.compile.
        cfg = variants.config
        self._plan = dict(config=str(cfg), num_qo_heads=cfg.num_qo_heads,
                          head_dim_vo=cfg.head_dim_vo, batch=batch,
                          max_qo_len=max_qo_len, total_qo=qo[-1], bufs=bufs,
                          mask_bufs=mask_bufs or (None, None),
                          dtype_kv=cfg.dtype_kv, **extra)
        self._cached_module = variants.get()
        self._batch_size = batch
        self._qo_indptr_last = qo[-1]
        self._max_q_len = max_qo_len
        self._causal = bool(causal)
        self._window_left = int(window_left)
        self._logits_soft_cap = float(logits_soft_cap or 0.0)
        self._sm_scale = None if sm_scale is None else float(sm_scale)
        self._pos_encoding = cfg.pos_encoding
        # Checked (and made float32) once: run() passes it as it is.
        self._alibi_slopes = optional_table("alibi_slopes", alibi_slopes,
                                            cfg.num_qo_heads, device)

    def _check_run_args(self, args, enable_pdl, lse_layout, k_scale,
                        v_scale, **unit_scales):
        """Refuses what fijit cannot do; returns kv_scales' (k_scale,
        v_scale, out_scale)."""
        api = self._api + ".run"
        if args:
            raise unsupported(api, "*args", args, "custom kernel arguments "
                              "(jit_args) are not supported")
        require(api, "enable_pdl", enable_pdl, (None, False))
        require(api, "lse_layout", lse_layout, ("NH",))
        require_unit_scale(api, **unit_scales)
        return kv_scales(api, k_scale, v_scale)

    def _launch(self, q, k, v, out, lse, return_lse, lse_base, kv_indptr,
                kv_indices=None, kv_last_page_len=None, sinks=None,
                scales=(1.0, 1.0, None)):
        """Allocates what the caller left out and launches through
        torch.ops.fijit.batch_prefill: the variant for this run (causal,
        window, soft-cap and LSE as the wrapper holds them now) with q, out,
        lse, k/v, the plan's index buffers and `scales` (kv_scales')."""
        p = self._plan
        if p is None:
            raise RuntimeError("call plan() before run()")
        if q.dim() != 3 or q.shape[0] < p["total_qo"]:
            raise ValueError(f"q has shape {list(q.shape)}; the plan has "
                             f"{p['total_qo']} query rows")
        rows = q.shape[0]
        if out is None:
            out = q.new_empty((rows, p["num_qo_heads"], p["head_dim_vo"]))
        if return_lse and lse is None:
            lse = torch.empty(rows, p["num_qo_heads"], dtype=torch.float32,
                              device=q.device)
        _ops.call("batch_prefill", q, k, v, out, lse if return_lse else None,
                  p["bufs"][0], kv_indptr, kv_indices, kv_last_page_len,
                  p["config"], self._kv_layout, p["batch"], p["max_qo_len"],
                  p["total_qo"], p.get("total_kv", 0), p.get("max_page"),
                  self._sm_scale, self._causal, self._window_left,
                  self._logits_soft_cap, *p["mask_bufs"],
                  self._pos_encoding, self._alibi_slopes, sinks, scales[0],
                  scales[1], *self._rope)
        scale_output(out, scales[2])
        if return_lse:
            return out, lse_to_base(lse, lse_base, self._api + ".run")
        return out

    def _forward_values(self, causal, pos_encoding_mode,
                        use_fp16_qk_reduction, window_left, logits_soft_cap,
                        sm_scale, rope_scale=None, rope_theta=None):
        """FlashInfer's forward() takes these as the plan's, then runs."""
        api = self._api + ".forward"
        self._pos_encoding = pos_encoding(api, pos_encoding_mode)
        self._rope = rope_params(api, rope_scale, rope_theta)
        require(api, "use_fp16_qk_reduction", use_fp16_qk_reduction,
                (False,))
        self._causal = bool(causal)
        self._window_left = int(window_left)
        self._logits_soft_cap = float(logits_soft_cap or 0.0)
        self._sm_scale = None if sm_scale is None else float(sm_scale)


class BatchPrefillWithRaggedKVCacheWrapper(_BatchPrefillWrapper):
    """Prefill of a batch whose keys and values are packed along the token
    axis: k, v [sum(kv_len), num_kv_heads, head_dim] (NHD) or
    [num_kv_heads, sum(kv_len), head_dim] (HND), request b at tokens
    kv_indptr[b] .. kv_indptr[b+1]; q and out likewise by qo_indptr."""

    _kind = "batch_prefill_ragged"
    _api = "BatchPrefillWithRaggedKVCacheWrapper"

    def __init__(self, float_workspace_buffer=None, kv_layout="NHD",
                 use_cuda_graph=False, qo_indptr_buf=None,
                 kv_indptr_buf=None, custom_mask_buf=None,
                 mask_indptr_buf=None, backend="auto", jit_args=None,
                 jit_kwargs=None, variant_owns_mask=False):
        self._init(float_workspace_buffer, kv_layout, use_cuda_graph,
                   dict(qo_indptr_buf=qo_indptr_buf,
                        kv_indptr_buf=kv_indptr_buf),
                   custom_mask_buf, mask_indptr_buf, backend, jit_args,
                   jit_kwargs, variant_owns_mask)

    def plan(self, qo_indptr, kv_indptr, num_qo_heads, num_kv_heads,
             head_dim_qk, head_dim_vo=None, custom_mask=None,
             packed_custom_mask=None, causal=False, pos_encoding_mode="NONE",
             use_fp16_qk_reduction=False, window_left=-1,
             logits_soft_cap=None, sm_scale=None, rope_scale=None,
             rope_theta=None, q_data_type="float16", kv_data_type=None,
             o_data_type=None, non_blocking=True, prefix_len_ptr=None,
             token_pos_in_items_ptr=None, token_pos_in_items_len=0,
             max_item_len_ptr=None, fixed_split_size=None,
             disable_split_kv=False, seq_lens=None, seq_lens_q=None,
             max_token_per_sequence=None, max_sequence_kv=None,
             v_indptr=None, o_indptr=None, uniform_q_len=None, *,
             alibi_slopes=None, **tuning):
        """FlashInfer's plan (fixed_split_size and disable_split_kv are
        accepted as no-ops: fijit's prefill never splits KV); `tuning` takes
        tile_q, tile_kv, num_warps, stages; `alibi_slopes` (fijit's) replaces
        get_alibi_slopes' with pos_encoding_mode="ALIBI"."""
        check_slopes(pos_encoding_mode, alibi_slopes)
        rope = rope_params(self._api + ".plan", rope_scale, rope_theta)
        head_dim_qk, head_dim_vo = head_dims(self._api + ".plan", head_dim_qk,
                                             head_dim_vo)
        pos = self._check_plan_args(
            pos_encoding_mode, use_fp16_qk_reduction, prefix_len_ptr,
            token_pos_in_items_ptr, token_pos_in_items_len, max_item_len_ptr,
            tuning, seq_lens=seq_lens, seq_lens_q=seq_lens_q,
            max_token_per_sequence=max_token_per_sequence,
            max_sequence_kv=max_sequence_kv, v_indptr=v_indptr,
            o_indptr=o_indptr, uniform_q_len=uniform_q_len)
        qo = check_indptr("qo_indptr", qo_indptr)
        kv = check_indptr("kv_indptr", kv_indptr, batch=len(qo) - 1)
        mask = self._plan_mask(custom_mask, packed_custom_mask, qo,
                               [b - a for a, b in zip(kv, kv[1:])])
        device = _device_of(self, qo_indptr)
        variants = self._compile(
            qo, device, num_qo_heads, num_kv_heads, head_dim_qk,
            head_dim_vo, 1, _plan_mask_mode(causal, mask), window_left,
            logits_soft_cap,
            plan_dtypes(self._api + ".plan", q_data_type, kv_data_type,
                        o_data_type), tuning, pos)
        self._finish_plan(qo, device, variants, (qo_indptr, kv_indptr),
                          causal, window_left, logits_soft_cap, sm_scale,
                          alibi_slopes, mask=mask, total_kv=kv[-1])
        self._rope = rope

    begin_forward = plan

    def run(self, q, k, v, *args, q_scale=None, k_scale=None, v_scale=None,
            o_scale=None, out=None, lse=None, return_lse=False,
            lse_base="log2", lse_layout="NH", enable_pdl=None,
            kv_cache_sf=None, sinks=None):
        """FlashInfer's run; `sinks` (float32 [num_qo_heads]) as in the
        paged wrapper's."""
        scales = self._check_run_args(args, enable_pdl, lse_layout, k_scale,
                                      v_scale, q_scale=q_scale,
                                      o_scale=o_scale)
        require_none(self._api + ".run", kv_cache_sf=kv_cache_sf)
        p = self._plan
        if p is None:
            raise RuntimeError("call plan() before run()")
        if p["dtype_kv"] not in FP8:
            # FlashInfer's ragged run applies k_scale and v_scale to fp8
            # keys and values only, and ignores them otherwise.
            k_unit, v_unit, out_scale = scales
            for name, value, unit in (("k_scale", k_scale, k_unit == 1.0),
                                      ("v_scale", v_scale, v_unit == 1.0 and
                                       out_scale is None)):
                if not unit:
                    raise unsupported(
                        self._api + ".run", name, value if isinstance(
                            value, (int, float)) else type(value).__name__,
                        f"the plan's kv_data_type is {p['dtype_kv']}, and "
                        "FlashInfer's ragged wrapper applies k_scale and "
                        "v_scale only to fp8 keys and values")
        return self._launch(q, k, v, out, lse, return_lse, lse_base,
                            p["bufs"][1], sinks=sinks, scales=scales)

    run_return_lse = functools.partialmethod(run, return_lse=True)

    def forward(self, q, k, v, causal=False, pos_encoding_mode="NONE",
                use_fp16_qk_reduction=False, window_left=-1,
                logits_soft_cap=None, sm_scale=None, rope_scale=None,
                rope_theta=None):
        self._forward_values(causal, pos_encoding_mode,
                             use_fp16_qk_reduction, window_left,
                             logits_soft_cap, sm_scale, rope_scale,
                             rope_theta)
        return self.run(q, k, v)

    def forward_return_lse(self, q, k, v, causal=False,
                           pos_encoding_mode="NONE",
                           use_fp16_qk_reduction=False, window_left=-1,
                           logits_soft_cap=None, sm_scale=None,
                           rope_scale=None, rope_theta=None):
        self._forward_values(causal, pos_encoding_mode,
                             use_fp16_qk_reduction, window_left,
                             logits_soft_cap, sm_scale, rope_scale,
                             rope_theta)
        return self.run(q, k, v, return_lse=True)


class BatchPrefillWithPagedKVCacheWrapper(_BatchPrefillWrapper):
    """Prefill of a batch over FlashInfer's paged KV cache (same page table
    as BatchDecodeWithPagedKVCacheWrapper); queries packed by qo_indptr.
    Causal masking aligns each request's last query with its last key."""

    _kind = "batch_prefill_paged"
    _api = "BatchPrefillWithPagedKVCacheWrapper"

    def __init__(self, float_workspace_buffer=None, kv_layout="NHD",
                 use_cuda_graph=False, qo_indptr_buf=None,
                 paged_kv_indptr_buf=None, paged_kv_indices_buf=None,
                 paged_kv_last_page_len_buf=None, custom_mask_buf=None,
                 mask_indptr_buf=None, backend="auto", jit_args=None,
                 jit_kwargs=None, variant_owns_mask=False):
        self._init(float_workspace_buffer, kv_layout, use_cuda_graph,
                   dict(qo_indptr_buf=qo_indptr_buf,
                        paged_kv_indptr_buf=paged_kv_indptr_buf,
                        paged_kv_indices_buf=paged_kv_indices_buf,
                        paged_kv_last_page_len_buf=(
                            paged_kv_last_page_len_buf)),
                   custom_mask_buf, mask_indptr_buf, backend, jit_args,
                   jit_kwargs, variant_owns_mask)

    def plan(self, qo_indptr, paged_kv_indptr, paged_kv_indices,
             paged_kv_last_page_len, num_qo_heads, num_kv_heads,
             head_dim_qk, page_size, head_dim_vo=None, custom_mask=None,
             packed_custom_mask=None, causal=False, pos_encoding_mode="NONE",
             use_fp16_qk_reduction=False, sm_scale=None, window_left=-1,
             logits_soft_cap=None, rope_scale=None, rope_theta=None,
             q_data_type="float16", kv_data_type=None, o_data_type=None,
             non_blocking=True, prefix_len_ptr=None,
             token_pos_in_items_ptr=None, token_pos_in_items_len=0,
             max_item_len_ptr=None, seq_lens=None, seq_lens_q=None,
             block_tables=None, max_token_per_sequence=None,
             max_sequence_kv=None, fixed_split_size=None,
             disable_split_kv=False, uniform_q_len=None, *,
             alibi_slopes=None, **tuning):
        """FlashInfer's plan (fixed_split_size and disable_split_kv are
        accepted as no-ops: fijit's prefill never splits KV); `tuning` takes
        tile_q, tile_kv, num_warps, stages; `alibi_slopes` (fijit's) replaces
        get_alibi_slopes' with pos_encoding_mode="ALIBI"."""
        check_slopes(pos_encoding_mode, alibi_slopes)
        rope = rope_params(self._api + ".plan", rope_scale, rope_theta)
        head_dim_qk, head_dim_vo = head_dims(self._api + ".plan", head_dim_qk,
                                             head_dim_vo)
        pos = self._check_plan_args(
            pos_encoding_mode, use_fp16_qk_reduction, prefix_len_ptr,
            token_pos_in_items_ptr, token_pos_in_items_len, max_item_len_ptr,
            tuning, seq_lens=seq_lens, seq_lens_q=seq_lens_q,
            block_tables=block_tables,
            max_token_per_sequence=max_token_per_sequence,
            max_sequence_kv=max_sequence_kv, uniform_q_len=uniform_q_len)
        qo = check_indptr("qo_indptr", qo_indptr)
        batch, kv_lens, max_page = page_table(
            paged_kv_indptr, paged_kv_indices, paged_kv_last_page_len,
            page_size)
        if batch != len(qo) - 1:
            raise ValueError(f"qo_indptr describes {len(qo) - 1} requests "
                             f"but paged_kv_indptr {batch}")
        mask = self._plan_mask(custom_mask, packed_custom_mask, qo, kv_lens)
        device = _device_of(self, qo_indptr)
        variants = self._compile(
            qo, device, num_qo_heads, num_kv_heads, head_dim_qk,
            head_dim_vo, page_size, _plan_mask_mode(causal, mask),
            window_left, logits_soft_cap,
            plan_dtypes(self._api + ".plan", q_data_type, kv_data_type,
                        o_data_type), tuning, pos)
        self._finish_plan(qo, device, variants,
                          (qo_indptr, paged_kv_indptr, paged_kv_indices,
                           paged_kv_last_page_len), causal, window_left,
                          logits_soft_cap, sm_scale, alibi_slopes, mask=mask,
                          max_page=max_page)
        self._rope = rope

    begin_forward = plan

    def run(self, q, paged_kv_cache, *args, q_scale=None, k_scale=None,
            v_scale=None, out=None, lse=None, return_lse=False,
            lse_base="log2", lse_layout="NH", enable_pdl=None,
            window_left=None, sinks=None, kv_cache_sf=None,
            skip_softmax_threshold_scale_factor=None, use_fp16_softmax=None,
            uses_spcompress=None):
        # FlashInfer's paged run folds q_scale into sm_scale with k_scale.
        k_scale = fold_q_scale(self._api + ".run", q_scale, k_scale)
        scales = self._check_run_args(args, enable_pdl, lse_layout, k_scale,
                                      v_scale)
        require_none(self._api + ".run", kv_cache_sf=kv_cache_sf,
                     skip_softmax_threshold_scale_factor=(
                         skip_softmax_threshold_scale_factor))
        require(self._api + ".run", "use_fp16_softmax", use_fp16_softmax,
                (None, False))
        require(self._api + ".run", "uses_spcompress", uses_spcompress,
                (None, False))
        p = self._plan
        if p is None:
            raise RuntimeError("call plan() before run()")
        if window_left is not None and window_left != self._window_left:
            raise ValueError(f"window_left={window_left} differs from the "
                             f"plan's {self._window_left}")
        k_cache, v_cache = split_cache(paged_kv_cache, self._kv_layout)
        _, indptr, indices, last = p["bufs"]
        return self._launch(q, k_cache, v_cache, out, lse, return_lse,
                            lse_base, indptr, indices, last, sinks=sinks,
                            scales=scales)

    run_return_lse = functools.partialmethod(run, return_lse=True)

    def forward(self, q, paged_kv_cache, causal=False,
                pos_encoding_mode="NONE", use_fp16_qk_reduction=False,
                k_scale=None, v_scale=None, window_left=-1,
                logits_soft_cap=None, sm_scale=None, rope_scale=None,
                rope_theta=None):
        self._forward_values(causal, pos_encoding_mode,
                             use_fp16_qk_reduction, window_left,
                             logits_soft_cap, sm_scale, rope_scale,
                             rope_theta)
        return self.run(q, paged_kv_cache, k_scale=k_scale, v_scale=v_scale)

    def forward_return_lse(self, q, paged_kv_cache, causal=False,
                           pos_encoding_mode="NONE",
                           use_fp16_qk_reduction=False, k_scale=None,
                           v_scale=None, window_left=-1,
                           logits_soft_cap=None, sm_scale=None,
                           rope_scale=None, rope_theta=None):
        self._forward_values(causal, pos_encoding_mode,
                             use_fp16_qk_reduction, window_left,
                             logits_soft_cap, sm_scale, rope_scale,
                             rope_theta)
        return self.run(q, paged_kv_cache, k_scale=k_scale, v_scale=v_scale,
                        return_lse=True)


def _batch_prefill(q, k, v, out, lse, qo_indptr, kv_indptr, kv_indices,
                   kv_last_page_len, config, kv_layout, batch, max_qo_len,
                   total_qo, total_kv, max_page, sm_scale, causal,
                   window_left, logits_soft_cap, packed_mask, mask_indptr,
                   pos_encoding, alibi_slopes, sinks, k_scale, v_scale,
                   rope_scale, rope_theta):
    """torch.ops.fijit.batch_prefill: the planned config's variant for this
    run (causal, window, soft-cap, position encoding, sinks, LSE; the
    plan's custom mask, packed_mask and mask_indptr, replaces causal),
    checked against the tensors and launched; paged when kv_indices is
    given, else ragged. q and out may hold more rows than the plan's
    total_qo (padding), k/v more than its total_kv."""
    kernel = _ops.kernel_for(config, return_lse=lse is not None,
                             mask=_mask(causal, packed_mask),
                             window_left=window_left,
                             logits_soft_cap=logits_soft_cap,
                             pos_encoding=pos_encoding,
                             sinks=sinks is not None)
    cfg = kernel.config
    qv = as_view(q, "q")
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
            view = as_view(t, name)
            rows = view.shape[0 if nhd else 1] if view.ndim == 3 else -1
            shape = ((rows, cfg.num_kv_heads, dim) if nhd else
                     (cfg.num_kv_heads, rows, dim))
            check(view, name, shape, cfg.dtype_kv, like=qv)
            if rows < total_kv:
                raise ValueError(f"{name} has {rows} rows; the plan has "
                                 f"{total_kv}")
        n, h = (0, 1) if nhd else (1, 0)
        kv = dict(kv_rows=k.shape[n], **kv_strides(k, v, n, h))
    if qv.ndim != 3 or qv.shape[0] < total_qo:
        raise ValueError(f"q has shape {list(qv.shape)}; the plan has "
                         f"{total_qo} query rows")
    check(qv, "q", (qv.shape[0], cfg.num_qo_heads, cfg.head_dim_qk),
          cfg.dtype_q)
    rows = qv.shape[0]
    check(as_view(out, "out"), "out",
          (rows, cfg.num_qo_heads, cfg.head_dim_vo), cfg.dtype_o, like=qv)
    hq = cfg.num_qo_heads
    tables = launch_tables(
        cfg, optional_table("alibi_slopes", alibi_slopes, hq, q.device),
        optional_table("sinks", sinks, hq, q.device), qv,
        (rope_scale, rope_theta))
    if packed_mask is not None:
        # The plan sized both buffers; their pointers are all the launch
        # needs.
        tables.update(packed_mask=packed_mask.data_ptr(),
                      mask_indptr=mask_indptr.data_ptr())
    sm_scale, scales, factor = launch_scales(cfg, sm_scale, k_scale, v_scale)
    kernel.launch(
        q=q.data_ptr(), k=k.data_ptr(), v=v.data_ptr(), o=out.data_ptr(),
        lse=lse.data_ptr() if lse is not None else 0,
        qo_indptr=qo_indptr.data_ptr(), kv_indptr=kv_indptr.data_ptr(),
        batch=batch, max_qo_len=max_qo_len, qo_rows=rows,
        q_stride_n=q.stride(0), q_stride_h=q.stride(1),
        o_stride_n=out.stride(0), o_stride_h=out.stride(1),
        sm_scale=float(sm_scale or 0.0),
        stream=torch.cuda.current_stream(q.device).cuda_stream, **kv,
        **tables, **scales)
    scale_output(out, factor)


_ops.register("batch_prefill", _batch_prefill)


def _plan_mask_mode(causal, mask):
    """The plan's mask: custom when it has one (replacing causal, as in
    FlashInfer)."""
    if mask is not None:
        return "custom"
    return "causal" if causal else "none"


def _device_of(wrapper, indptr):
    ws = wrapper._float_workspace_buffer
    device = getattr(ws, "device", None) or indptr.device
    if device.type != "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    return device
