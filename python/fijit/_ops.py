"""fijit's launches as torch.library custom ops (``torch.ops.fijit.*``).

Each public entry point (single prefill and decode, the batch wrappers'
``run``, the cascade merges, the RoPE functions) allocates its outputs in
Python and hands the launch to one op that writes them (``out``, ``lse`` and scratch buffers
are declared mutated). The ops have fake implementations, so
``torch.compile(..., fullgraph=True)`` and ``torch.export`` trace a model
that calls fijit as one graph node per launch, with no graph break.

Outside a trace the entry points call the implementation directly: the
dispatcher would add its cost to every eager launch and change nothing
there. Without torch (or with a torch older than ``torch.library.
custom_op``) the ops are plain functions.
"""
from .config import AttentionConfig
from ._contract import Variants
from .tensors import torch

# Every op ends with FlashInfer's per-tensor KV scales, k_scale and v_scale
# (floats, 1.0 when not given): an fp8 KV kernel reads them by name, a
# 16-bit one gets k_scale folded into sm_scale and the output multiplied by
# v_scale (_contract.launch_scales).
# Then RoPE's rope_scale and rope_theta (floats, FlashInfer's defaults
# when not given), read by pos_encoding=rope kernels only.
_LAUNCH_SCALARS = (", float k_scale, float v_scale, float rope_scale, "
           "float rope_theta) -> ()")

_SCHEMAS = {
    # name: (schema, mutated arguments)
    "single_prefill": (
        "(Tensor q, Tensor k, Tensor v, Tensor(a!) out, Tensor(b!)? lse, "
        "bool causal, float? sm_scale, int window_left, "
        "float logits_soft_cap, str kv_layout, str tuning, "
        "Tensor? packed_mask, str pos_encoding, Tensor? alibi_slopes, "
        "Tensor? sinks" + _LAUNCH_SCALARS,
        ("out", "lse")),
    "single_decode": (
        "(Tensor q, Tensor k, Tensor v, Tensor(a!) out, Tensor(b!)? lse, "
        "float? sm_scale, int window_left, float logits_soft_cap, "
        "str kv_layout, str tuning, str pos_encoding, Tensor? alibi_slopes, "
        "Tensor? sinks" + _LAUNCH_SCALARS,
        ("out", "lse")),
    # split_plan: the [kv_chunk, num_splits] schedule a cuda_graph=true
    # kernel reads (plan() writes it, the launch only reads it); kv_len and
    # kv_chunk are the schedule of the other kernels. window_left and
    # logits_soft_cap pick the planned config's variant, as the LSE does;
    # so do pos_encoding and whether sinks are given (alibi_slopes: the
    # plan's, None for FlashInfer's default slopes).
    "batch_decode_paged": (
        "(Tensor q, Tensor k_cache, Tensor v_cache, Tensor(a!) out, "
        "Tensor(b!)? lse, Tensor(c!) workspace, Tensor(d!)? split_counters, "
        "Tensor kv_indptr, Tensor kv_indices, Tensor kv_last_page_len, "
        "Tensor? split_plan, str config, str kv_layout, int batch, "
        "int max_kv_len, int kv_chunk, int max_splits, int? max_page, "
        "float? sm_scale, int window_left, float logits_soft_cap, "
        "str pos_encoding, Tensor? alibi_slopes, Tensor? sinks" + _LAUNCH_SCALARS,
        ("out", "lse", "workspace", "split_counters")),
    # causal, window_left, logits_soft_cap and pos_encoding pick the
    # planned config's variant (forward() may change them), as the LSE and
    # the presence of sinks do; the plan's packed custom mask (int32 words
    # and byte offsets) makes it mask=custom.
    "batch_prefill": (
        "(Tensor q, Tensor k, Tensor v, Tensor(a!) out, Tensor(b!)? lse, "
        "Tensor qo_indptr, Tensor kv_indptr, Tensor? kv_indices, "
        "Tensor? kv_last_page_len, str config, str kv_layout, int batch, "
        "int max_qo_len, int total_qo, int total_kv, int? max_page, "
        "float? sm_scale, bool causal, int window_left, "
        "float logits_soft_cap, Tensor? packed_mask, Tensor? mask_indptr, "
        "str pos_encoding, Tensor? alibi_slopes, Tensor? sinks" + _LAUNCH_SCALARS,
        ("out", "lse")),
    # fijit.cascade: merge_states and merge_state write new outputs (v has
    # its num_states dimension; merge_state passes one state of each side);
    # merge_state_in_place writes v and s where mask is nonzero.
    "merge_states": (
        "(Tensor v, Tensor s, Tensor? v_other, Tensor? s_other, "
        "Tensor(a!) v_out, Tensor(b!) s_out) -> ()",
        ("v_out", "s_out")),
    "merge_state_in_place": (
        "(Tensor(a!) v, Tensor(b!) s, Tensor v_other, Tensor s_other, "
        "Tensor? mask) -> ()",
        ("v", "s")),
    # fijit.rope: rope writes new q_rope and k_rope, rope_inplace q and k;
    # positions by pos_ids or by indptr and offsets, the angles from the
    # scalars or from cos_sin_cache (rope_freq names which).
    "rope": (
        "(Tensor q, Tensor k, Tensor(a!) q_rope, Tensor(b!) k_rope, "
        "Tensor? pos_ids, Tensor? indptr, Tensor? offsets, "
        "Tensor? cos_sin_cache, int rotary_dim, bool interleave, "
        "str rope_freq, float rope_scale, float rope_theta, "
        "float low_freq_factor, float high_freq_factor, "
        "float old_context_len) -> ()",
        ("q_rope", "k_rope")),
    "rope_inplace": (
        "(Tensor(a!) q, Tensor(b!) k, Tensor? pos_ids, Tensor? indptr, "
        "Tensor? offsets, Tensor? cos_sin_cache, int rotary_dim, "
        "bool interleave, str rope_freq, float rope_scale, "
        "float rope_theta, float low_freq_factor, float high_freq_factor, "
        "float old_context_len) -> ()",
        ("q", "k")),
}

_ops = {}
_variants = {}


def _custom_op_api():
    library = getattr(torch, "library", None) if torch is not None else None
    if library is None or not hasattr(library, "custom_op"):
        return None
    return library


def register(name, impl):
    """Makes `impl` the op torch.ops.fijit.<name> (schema above) with a
    fake implementation that only declares the writes; returns the caller
    the entry points use (see ``call``)."""
    library = _custom_op_api()
    if library is None:
        _ops[name] = (impl, impl)
        return
    schema, mutated = _SCHEMAS[name]
    op = library.custom_op(f"fijit::{name}", impl, mutates_args=mutated,
                           schema=schema)
    # The outputs are preallocated by the caller; tracing needs nothing
    # more than the (declared) writes.
    op.register_fake(lambda *args, **kwargs: None)
    # The overload itself: what tracers know how to put in a graph.
    _ops[name] = (getattr(torch.ops.fijit, name).default, impl)


def tracing():
    """Whether torch.compile or torch.export is tracing the caller: code
    that calls into fijit's C++ core (config checks) must then wait for the
    op's implementation, which runs on real tensors."""
    return _custom_op_api() is not None and torch.compiler.is_compiling()


def call(name, *args):
    """Runs op `name`: through torch's dispatcher while torch.compile or
    torch.export traces (so the graph holds the op), directly otherwise."""
    op, impl = _ops[name]
    if op is not impl and torch.compiler.is_compiling():
        return op(*args)
    return impl(*args)


def variants(config):
    """The kernels of a planned config (an AttentionConfig, or its canonical
    text as a traced run() passes it): one Variants per config text in this
    process, so the op launches the very kernels plan() compiled. The first
    AttentionConfig given for a text is kept (its variants re-resolve the
    defaults it left to the target); a text never planned here (a graph
    loaded elsewhere) is parsed."""
    text = str(config)
    found = _variants.get(text)
    if found is None:
        if isinstance(config, str):
            config = AttentionConfig.from_string(text)
        found = _variants[text] = Variants(config)
    return found


def kernel_for(config, **fields):
    """The kernel of the planned `config` with `fields` changed (the LSE,
    causal, window, soft-cap a run asks for); compiled on first use."""
    return variants(config).get(**fields)


def tuning_text(tuning):
    """Tuning keywords as one op argument: key=value,... in key order."""
    return ",".join(f"{k}={v}" for k, v in sorted(tuning.items()))


def tuning_fields(text):
    return dict(item.split("=", 1) for item in text.split(",") if item)
