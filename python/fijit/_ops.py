"""fijit's launches as torch.library custom ops (``torch.ops.fijit.*``).

Each public entry point (single prefill and decode, the batch wrappers'
``run``) allocates its outputs in Python and hands the launch to one op
that writes them (``out``, ``lse`` and scratch buffers are declared
mutated). The ops have fake implementations, so ``torch.compile(...,
fullgraph=True)`` and ``torch.export`` trace a model that calls fijit as
one graph node per launch, with no graph break.

Outside a trace the entry points call the implementation directly: the
dispatcher would add its cost to every eager launch and change nothing
there. Without torch (or with a torch older than ``torch.library.
custom_op``) the ops are plain functions.
"""
from .tensors import torch

_SCHEMAS = {
    # name: (schema, mutated arguments)
    "single_prefill": (
        "(Tensor q, Tensor k, Tensor v, Tensor(a!) out, Tensor(b!)? lse, "
        "bool causal, float? sm_scale, int window_left, "
        "float logits_soft_cap, str kv_layout, str tuning) -> ()",
        ("out", "lse")),
    "single_decode": (
        "(Tensor q, Tensor k, Tensor v, Tensor(a!) out, Tensor(b!)? lse, "
        "float? sm_scale, int window_left, float logits_soft_cap, "
        "str kv_layout, str tuning) -> ()",
        ("out", "lse")),
    "batch_decode_paged": (
        "(Tensor q, Tensor k_cache, Tensor v_cache, Tensor(a!) out, "
        "Tensor(b!)? lse, Tensor(c!) workspace, Tensor(d!)? split_counters, "
        "Tensor kv_indptr, Tensor kv_indices, Tensor kv_last_page_len, "
        "str config, str kv_layout, int batch, int max_kv_len, int kv_chunk, "
        "int max_page, float? sm_scale) -> ()",
        ("out", "lse", "workspace", "split_counters")),
    "batch_prefill": (
        "(Tensor q, Tensor k, Tensor v, Tensor(a!) out, Tensor(b!)? lse, "
        "Tensor qo_indptr, Tensor kv_indptr, Tensor? kv_indices, "
        "Tensor? kv_last_page_len, str config, str kv_layout, int batch, "
        "int max_qo_len, int total_qo, int total_kv, int max_page, "
        "float? sm_scale) -> ()",
        ("out", "lse")),
}

_ops = {}
_kernels = {}


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


def call(name, *args):
    """Runs op `name`: through torch's dispatcher while torch.compile or
    torch.export traces (so the graph holds the op), directly otherwise."""
    op, impl = _ops[name]
    if op is not impl and torch.compiler.is_compiling():
        return op(*args)
    return impl(*args)


def remember(kernel):
    """Keeps a planned kernel by its canonical config so a traced run()
    (whose op gets only text) launches that very kernel object."""
    _kernels[str(kernel.config)] = kernel


def kernel_for(config):
    """The kernel a plan stored under `config` (compiled if this process
    never planned it, e.g. a graph loaded elsewhere)."""
    kernel = _kernels.get(config)
    if kernel is None:
        from .kernel import compile_attention
        kernel = _kernels[config] = compile_attention(config)
    return kernel


def tuning_text(tuning):
    """Tuning keywords as one op argument: key=value,... in key order."""
    return ",".join(f"{k}={v}" for k, v in sorted(tuning.items()))


def tuning_fields(text):
    return dict(item.split("=", 1) for item in text.split(",") if item)
