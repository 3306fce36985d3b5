"""What the FlashInfer-compatible entry points share: checks that refuse
what fijit cannot do (NotImplementedError naming FlashInfer's argument and
value), dtype names, and copies of index tensors into buffers a wrapper
owns."""
import math

from .kernel import compile_attention
from .tensors import torch

# FlashInfer's backends; fijit has one implementation for all of them.
BACKENDS = ("auto", "fa2", "fa3")
# Tuning knobs an AttentionConfig takes beyond FlashInfer's arguments.
TUNING = ("tile_q", "tile_kv", "num_warps", "stages")

_DTYPES = {"float16": "f16", "half": "f16", "f16": "f16",
           "bfloat16": "bf16", "bf16": "bf16",
           "float8_e4m3fn": "e4m3", "e4m3": "e4m3",
           "float8_e5m2": "e5m2", "e5m2": "e5m2"}


def unsupported(api, name, value, what):
    """The NotImplementedError for FlashInfer's argument `name`=`value`."""
    return NotImplementedError(
        f"fijit's {api} does not support {name}={value!r}: {what}")


def require(api, name, value, allowed, what=None):
    """Refuses `value` unless it is one of `allowed` (compared with ==)."""
    if not any(value is a or (a is not None and value == a)
               for a in allowed):
        raise unsupported(api, name, value, what or "supported: " + ", ".join(
            repr(a) for a in allowed))


# FlashInfer's pos_encoding_mode -> fijit's pos_encoding; ROPE_LLAMA is
# refused (no kernel yet).
POS_ENCODINGS = {"NONE": "none", "ALIBI": "alibi"}


def pos_encoding(api, mode):
    """fijit's pos_encoding of FlashInfer's pos_encoding_mode."""
    require(api, "pos_encoding_mode", mode, tuple(POS_ENCODINGS))
    return POS_ENCODINGS[mode]


def head_dims(api, head_dim_qk, head_dim_vo=None, qk_name="head_dim_qk",
              vo_name="head_dim_vo"):
    """(head_dim_qk, head_dim_vo), head_dim_vo None meaning head_dim_qk as in
    FlashInfer; a head dim fijit has no kernel for is a NotImplementedError
    naming FlashInfer's argument (`qk_name`, `vo_name`) with the config's
    reason."""
    from .config import AttentionConfig
    dims = {"head_dim_qk": (qk_name, head_dim_qk),
            "head_dim_vo": (vo_name, head_dim_qk if head_dim_vo is None
                            else head_dim_vo)}
    for field, (name, value) in dims.items():
        try:
            AttentionConfig(**{field: value})
        except (TypeError, ValueError) as e:
            reason = str(e).partition(": ")[2] or str(e)
            raise unsupported(api, name, value, reason) from None
    return dims["head_dim_qk"][1], dims["head_dim_vo"][1]


def require_none(api, **values):
    for name, value in values.items():
        if value is not None:
            raise unsupported(api, name, type(value).__name__,
                              "only None is supported")


def require_unit_scale(api, **scales):
    """k_scale/v_scale/q_scale: None or 1.0 (a float; tensors are refused,
    reading them would sync the device)."""
    for name, value in scales.items():
        if value is None:
            continue
        if isinstance(value, (int, float)) and float(value) == 1.0:
            continue
        raise unsupported(api, name, value if isinstance(
            value, (int, float)) else type(value).__name__,
            "only 1.0 (or None) is supported")


def check_tuning(api, tuning):
    extra = sorted(set(tuning) - set(TUNING))
    if extra:
        raise TypeError(f"{api}() got an unexpected keyword argument "
                        f"{extra[0]!r}")


def dtype_name(dtype, api="", name="data type"):
    """fijit's name of a torch dtype or FlashInfer dtype string."""
    key = str(dtype).replace("torch.", "")
    if key not in _DTYPES:
        raise unsupported(api, name, key, "supported: float16, bfloat16 "
                          "(and float8_e4m3fn, float8_e5m2 for kv)")
    return _DTYPES[key]


def plan_dtypes(api, q_data_type, kv_data_type, o_data_type=None,
                data_type=None):
    """(q, kv) fijit dtype names from FlashInfer's plan arguments (data_type
    fills whichever of q and kv is None); o must be q's."""
    if data_type is not None:
        q_data_type = data_type if q_data_type is None else q_data_type
        kv_data_type = data_type if kv_data_type is None else kv_data_type
    q = dtype_name(q_data_type or "float16", api, "q_data_type")
    if q not in ("f16", "bf16"):
        raise unsupported(api, "q_data_type", str(q_data_type),
                          "supported: float16, bfloat16")
    kv = dtype_name(kv_data_type, api, "kv_data_type") if (
        kv_data_type is not None) else q
    if o_data_type is not None and dtype_name(o_data_type, api,
                                              "o_data_type") != q:
        raise unsupported(api, "o_data_type", str(o_data_type),
                          "the output has q's dtype")
    return q, kv


def lse_to_base(lse, lse_base, api):
    """FlashInfer's LSE is base 2 ('log2'); 'e' scales fijit's by ln 2."""
    require(api, "lse_base", lse_base, ("log2", "e"))
    if lse is not None and lse_base == "e":
        lse.mul_(math.log(2.0))
    return lse


def stage(dst, src):
    """Copies an index tensor into `dst` (a buffer the wrapper owns, or one
    the caller gave for CUDA graphs) without syncing the device: a host
    tensor goes through pageable memory, so the caller may reuse it at once;
    a device tensor is copied on the current stream. Skipped when `src` is
    `dst` itself."""
    n = src.numel()
    if n == 0:
        return
    if src.device == dst.device and src.data_ptr() == dst.data_ptr():
        return
    if src.device.type == "cpu" and src.is_pinned():
        src = src.clone()  # the async copy then reads private memory
    dst[:n].copy_(src.reshape(-1), non_blocking=True)


class Buffers:
    """Device int32 buffers a wrapper owns, grown on demand (never while a
    CUDA graph may read them: graph mode uses the caller's)."""

    def __init__(self, device):
        self.device = device
        self._bufs = {}

    def get(self, name, n):
        buf = self._bufs.get(name)
        if buf is None or buf.numel() < n:
            buf = torch.empty(max(n, 16, 2 * (buf.numel() if buf is not None
                                               else 0)),
                              dtype=torch.int32, device=self.device)
            self._bufs[name] = buf
        return buf


class Variants:
    """The kernels of one plan: its config with what FlashInfer lets run()
    choose (the LSE; forward()'s causal, window and soft-cap), each
    compiled once and then a dictionary lookup."""

    def __init__(self, config):
        self.config = config
        self._kernels = {}

    def get(self, **fields):
        key = tuple(sorted(fields.items()))
        kernel = self._kernels.get(key)
        if kernel is None:
            kernel = compile_attention(self.config.replace(**fields))
            self._kernels[key] = kernel
        return kernel
