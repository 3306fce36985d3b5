"""compile_attention and the kernel object it returns."""
from typing import Optional, Tuple, Union

from . import _fijit
from .config import AttentionConfig
from ._masks import mask_pointers
from ._variants import launch_tables, rope_params
from .tensors import as_view, check


class AttentionKernel:
    """A compiled attention kernel.

    Attributes: ``ptx``, ``key`` (cache key), ``tier`` ("memory", "disk",
    "bundle" or "compiled": where this call found it), ``compile_ms`` (wall
    time of the call that produced it), ``config`` (the AttentionConfig
    asked for), ``kernel_config`` (the canonical config of the kernel that
    runs), ``provisional``; ``ir(stage)`` returns the text of any stage:
    builder, nvvm, llvm, ptx.

    ``provisional`` is True for a stand-in: a config stored nowhere whose
    default kernel is slow to compile (sm_90a single_prefill at head_dim
    128) is first served, where CUDA is set up, by a kernel that compiles
    faster (``kernel_config`` shows it) while its own kernel compiles,
    links and loads on a background thread; ``compile_attention`` returns
    that one once it is ready (``wait_for_background_compiles()`` waits for
    it), and a provisional kernel object switches to it at its first call
    after that. Both compute the same attention and round differently. Set
    ``FIJIT_TIERED=0`` to always wait for the config's own kernel.
    """

    def __init__(self, native, config):
        self._native = native
        self.config = config
        # Read once: only a stand-in ever needs the lookup in _upgrade.
        self._stand_in = native.provisional

    ptx = property(lambda self: self._native.ptx)
    key = property(lambda self: self._native.key)
    tier = property(lambda self: self._native.tier)
    compile_ms = property(lambda self: self._native.compile_ms)
    provisional = property(lambda self: self._native.provisional)
    kernel_config = property(lambda self: self._native.config)
    name = property(lambda self: self._native.name)
    shared_memory_bytes = property(
        lambda self: self._native.shared_memory_bytes)

    def _upgrade(self):
        """A provisional stand-in gives way to the config's own kernel once
        that is ready: a memory-tier lookup, microseconds."""
        if self._stand_in:
            native = _fijit.compile_attention(str(self.config))
            if not native.provisional:
                self._native, self._stand_in = native, False

    def ir(self, stage: str) -> str:
        return self._native.ir(stage)

    def launch(self, **named):
        """Launches the kernel with named arguments: device pointers,
        lengths and element strides as ints, ``sm_scale`` as a float (0: the
        config's), ``stream`` as a CUstream handle. The names are the
        kernel's argument table's (``docs/architecture.md``, "Kernel
        arguments"); names a kernel does not read are ignored, so one set
        serves every kernel of a kind, the stand-in included. The GIL is
        released while launching."""
        self._upgrade()
        self._native.launch(**named)

    def plan_decode(self, batch: int, max_kv_len: int, kv_chunk: int = 0,
                    max_splits: int = 0) -> Tuple[int, int, int]:
        """Decode kinds: ``(kv_chunk, num_splits, workspace_bytes)`` of a
        launch over ``batch`` requests of at most ``max_kv_len`` keys;
        ``kv_chunk`` 0 lets the plan choose, else it is rounded up to whole
        KV tiles. ``max_splits`` > 0: the splits a cuda_graph=true launch
        grid holds; a chosen chunk grows so the plan fits them (a fixed one
        that cannot is a ValueError), and the workspace is sized for
        them."""
        return tuple(self._native.plan_decode(batch, max_kv_len, kv_chunk,
                                              max_splits))

    def load(self) -> None:
        """Loads the kernel into the current CUDA context now (a launch
        does it on first use): a cubin from the disk cache when one matches
        this GPU and driver, else the driver links the PTX."""
        self._native.load()

    def __repr__(self):
        return (f"<fijit.AttentionKernel {self.name} key={self.key[:12]} "
                f"tier={self.tier}"
                f"{' provisional' if self.provisional else ''}>")

    def __call__(self, q, k, v, out=None, lse=None, stream=None,
                 sm_scale=None, alibi_slopes=None, sinks=None,
                 packed_mask=None, k_scale=None, v_scale=None,
                 rope_scale=None, rope_theta=None):
        """Runs attention on CUDA tensors; returns ``out`` (and ``lse`` when
        the config has return_lse=true).

        q: [qo_len, num_qo_heads, head_dim_qk]; k, v: [kv_len, num_kv_heads,
        head_dim] for kv_layout=NHD or [num_kv_heads, kv_len, head_dim] for
        HND; out: [qo_len, num_qo_heads, head_dim_vo]; lse: float32
        [qo_len, num_qo_heads], base 2. With pos_encoding=alibi,
        ``alibi_slopes`` (float32 [num_qo_heads]) defaults to FlashInfer's
        get_alibi_slopes; with sinks=true, ``sinks`` (float32
        [num_qo_heads], natural-log logits) is required; with mask=custom,
        ``packed_mask``: the [qo_len, kv_len] mask packed as FlashInfer's
        packbits(..., bitorder="little") in a 16-byte aligned int32 tensor
        of whole words (``fijit.custom_mask_words(mask)``). With an fp8 KV
        cache (dtype_kv e4m3 or e5m2), ``k_scale`` and ``v_scale`` (floats,
        None meaning 1.0) are FlashInfer's per-tensor dequantisation
        scales: the logits are multiplied by sm_scale * k_scale, the output
        by v_scale; other kernels have no such arguments (ValueError).
        With pos_encoding=rope, ``rope_scale`` and ``rope_theta`` (floats,
        None meaning FlashInfer's 1.0 and 1e4) set the rotation's
        frequencies; other kernels refuse them (ValueError).
        """
        self._upgrade()
        cfg = self.config
        if cfg.kind != "single_prefill":
            raise ValueError(
                f"kernel(q, k, v) runs single_prefill kernels; for "
                f"kind={cfg.kind} use "
                + ("single_decode_with_kv_cache or "
                   "BatchDecodeWithPagedKVCacheWrapper"
                   if "decode" in cfg.kind else
                   "merge_state, merge_states or merge_state_in_place"
                   if cfg.kind == "merge_states" else
                   "BatchPrefillWithPagedKVCacheWrapper or "
                   "BatchPrefillWithRaggedKVCacheWrapper"))
        # Scalars first: a refusal names them before any tensor is read.
        rope = _rope_args(cfg, rope_scale, rope_theta)
        qv, kv, vv = as_view(q, "q"), as_view(k, "k"), as_view(v, "v")
        qo_len = qv.shape[0] if qv.ndim == 3 else -1
        nhd = cfg.kv_layout == "NHD"
        kv_len = (kv.shape[0] if nhd else kv.shape[1]) if kv.ndim == 3 else -1
        hq, hk = cfg.num_qo_heads, cfg.num_kv_heads
        check(qv, "q", (qo_len, hq, cfg.head_dim_qk), cfg.dtype_q)
        kv_shape = ((kv_len, hk, cfg.head_dim_qk) if nhd
                    else (hk, kv_len, cfg.head_dim_qk))
        check(kv, "k", kv_shape, cfg.dtype_kv, like=qv)
        check(vv, "v", kv_shape[:2] + (cfg.head_dim_vo,), cfg.dtype_kv,
              like=qv)
        if out is None:
            out = qv.new_empty((qo_len, hq, cfg.head_dim_vo), cfg.dtype_o)
        ov = as_view(out, "out")
        check(ov, "out", (qo_len, hq, cfg.head_dim_vo), cfg.dtype_o, like=qv)
        lse_ptr = 0
        if cfg.return_lse:
            if lse is None:
                lse = qv.new_empty((qo_len, hq), "f32")
            lv = as_view(lse, "lse")
            check(lv, "lse", (qo_len, hq), "f32", like=qv, contiguous=True)
            lse_ptr = lv.ptr
        tables = launch_tables(cfg, alibi_slopes, sinks, qv, rope)
        tables.update(mask_pointers(cfg, packed_mask,
                                    (qo_len * kv_len + 7) // 8, qv))
        tables.update(_kv_scale_args(cfg, k_scale, v_scale))
        if stream is None:
            stream = qv.current_stream()
        elif hasattr(stream, "cuda_stream"):
            stream = stream.cuda_stream
        n, h = (0, 1) if nhd else (1, 0)
        self._native.launch(
            q=qv.ptr, k=kv.ptr, v=vv.ptr, o=ov.ptr, lse=lse_ptr,
            qo_len=qo_len, kv_len=kv_len,
            q_stride_n=qv.strides[0], q_stride_h=qv.strides[1],
            k_stride_n=kv.strides[n], k_stride_h=kv.strides[h],
            v_stride_n=vv.strides[n], v_stride_h=vv.strides[h],
            o_stride_n=ov.strides[0], o_stride_h=ov.strides[1],
            sm_scale=float(sm_scale or 0.0), stream=int(stream or 0),
            **tables)
        return (out, lse) if cfg.return_lse else out


def _rope_args(cfg, rope_scale, rope_theta):
    """(rope_scale, rope_theta) of a pos_encoding=rope kernel (None:
    FlashInfer's defaults); other kernels refuse them rather than ignore
    them."""
    if cfg.pos_encoding == "rope":
        return rope_params("AttentionKernel", rope_scale, rope_theta)
    if rope_scale is not None or rope_theta is not None:
        raise ValueError(f"rope_scale/rope_theta: this kernel's pos_encoding "
                         f"is {cfg.pos_encoding}; they are launch arguments "
                         f"of pos_encoding=rope kernels")
    return (1.0, 1e4)


def _kv_scale_args(cfg, k_scale, v_scale):
    """The fp8 KV kernel's k_scale and v_scale launch arguments (None is
    1.0); a kernel without them refuses scales rather than ignore them."""
    given = {name: float(value) for name, value in
             (("k_scale", k_scale), ("v_scale", v_scale))
             if value is not None}
    if cfg.dtype_kv in ("e4m3", "e5m2"):
        return {"k_scale": 1.0, "v_scale": 1.0, **given}
    if given:
        name = next(iter(given))
        raise ValueError(f"{name}: this kernel's dtype_kv is {cfg.dtype_kv}; "
                         "k_scale and v_scale are launch arguments of fp8 KV "
                         "kernels (dtype_kv e4m3 or e5m2)")
    return {}


def compile_attention(config: Optional[Union[AttentionConfig, str]] = None,
                      **fields) -> AttentionKernel:
    """Compiles (or fetches from the memory or disk cache, or a bundle) the
    kernel of a config given as an AttentionConfig, a ``key=value,...``
    string or keywords. The GIL is released while compiling. Raises
    ValueError for an invalid config, and JitDisabledError when
    FIJIT_DISABLE_JIT is set and no cache or bundle holds the kernel."""
    if config is None:
        config = AttentionConfig(**fields)
    else:
        if isinstance(config, str):
            config = AttentionConfig.from_string(config)
        if not isinstance(config, AttentionConfig):
            raise TypeError("config must be an AttentionConfig, a key=value "
                            "string or keywords, not "
                            f"{type(config).__name__}")
        if fields:
            config = config.replace(**fields)
    return AttentionKernel(_fijit.compile_attention(str(config)), config)


def wait_for_background_compiles() -> None:
    """Blocks until every kernel compiling behind a provisional stand-in is
    ready (also done at interpreter exit, so the disk cache gets it)."""
    _fijit.wait_for_background_compiles()
