"""What the FlashInfer-compatible entry points share: checks that refuse
what fijit cannot do (NotImplementedError naming FlashInfer's argument and
value), dtype names, and copies of index tensors into buffers a wrapper
owns."""
import math
import numbers

from .kernel import compile_attention
from .tensors import torch

# FlashInfer's backends; fijit has one implementation for all of them.
BACKENDS = ("auto", "fa2", "fa3")
# Tuning knobs an AttentionConfig takes beyond FlashInfer's arguments.
TUNING = ("tile_q", "tile_kv", "num_warps", "stages")

# fijit's names of the fp8 KV dtypes.
FP8 = ("e4m3", "e5m2")
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


# FlashInfer's pos_encoding_mode -> fijit's pos_encoding.
POS_ENCODINGS = {"NONE": "none", "ALIBI": "alibi", "ROPE_LLAMA": "rope"}



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
    """Scales fijit has no use for (q_scale, o_scale): None or 1.0 (a
    float; tensors are refused, reading them would sync the device)."""
    for name, value in scales.items():
        if value is None:
            continue
        if isinstance(value, numbers.Real) and float(value) == 1.0:
            continue
        raise unsupported(api, name, value if isinstance(
            value, numbers.Real) else type(value).__name__,
            "only 1.0 (or None) is supported")


def fold_q_scale(api, q_scale, k_scale):
    """FlashInfer multiplies sm_scale by q_scale as it does by k_scale
    (decode, and the paged prefill wrapper): the launch's k_scale is then
    k_scale * q_scale. q_scale must be a positive finite float (a tensor
    would be read on the host: refused, as FlashInfer cannot fold one
    either)."""
    if q_scale is None:
        return k_scale
    if isinstance(q_scale, bool) or not isinstance(q_scale, numbers.Real):
        is_tensor = torch is not None and torch.is_tensor(q_scale)
        raise unsupported(api, "q_scale", "a tensor" if is_tensor else
                          type(q_scale).__name__, "a Python float (FlashInfer "
                          "folds q_scale into its float sm_scale)")
    if not (math.isfinite(q_scale) and q_scale > 0):
        raise unsupported(api, "q_scale", q_scale, "a positive finite float")
    if k_scale is None:
        return float(q_scale)
    if isinstance(k_scale, numbers.Real) and not isinstance(k_scale, bool):
        return float(k_scale) * float(q_scale)
    return k_scale  # kv_scales refuses it, naming k_scale


def kv_scales(api, k_scale, v_scale):
    """FlashInfer's per-tensor KV scales of a run: (k_scale, v_scale,
    out_scale). The first two are floats for the launch (None is 1.0);
    out_scale is a 1-element tensor v_scale, which FlashInfer multiplies
    the output by after its kernel (fijit too: the launch then gets
    v_scale 1.0), else None. A tensor k_scale is refused: FlashInfer folds
    k_scale into its float sm_scale, which a tensor cannot be (and reading
    one would sync the device)."""
    out_scale = None
    if torch is not None and torch.is_tensor(v_scale):
        if v_scale.numel() != 1:
            raise unsupported(api, "v_scale", f"a tensor of shape "
                              f"{list(v_scale.shape)}", "a float or a "
                              "1-element tensor")
        out_scale, v_scale = v_scale, None
    values = {}
    for name, value in (("k_scale", k_scale), ("v_scale", v_scale)):
        if value is None:
            values[name] = 1.0
            continue
        if not isinstance(value, numbers.Real):
            is_tensor = torch is not None and torch.is_tensor(value)
            raise unsupported(api, name, "a tensor" if is_tensor else
                              type(value).__name__,
                              "a Python float (FlashInfer folds k_scale "
                              "into its float sm_scale)" if name ==
                              "k_scale" else "a float or a 1-element tensor")
        values[name] = float(value)
    if not (math.isfinite(values["k_scale"]) and values["k_scale"] > 0):
        raise unsupported(api, "k_scale", k_scale, "a positive finite float")
    if not math.isfinite(values["v_scale"]):
        raise unsupported(api, "v_scale", v_scale, "a finite float")
    return values["k_scale"], values["v_scale"], out_scale


def launch_scales(cfg, sm_scale, k_scale, v_scale):
    """FlashInfer's k_scale and v_scale (floats) as one launch of `cfg`'s
    kernel reads them: (sm_scale, named launch arguments, the factor left
    for the output). An fp8 KV kernel takes them by name (its logits are
    multiplied by sm_scale * k_scale, its output by v_scale); a 16-bit KV
    kernel has no such arguments, so k_scale multiplies the launch's
    sm_scale (None: the config's) and v_scale is returned for the caller
    to multiply the output by, as FlashInfer does for every KV dtype."""
    if cfg.dtype_kv in FP8:
        return sm_scale, dict(k_scale=k_scale, v_scale=v_scale), 1.0
    if k_scale != 1.0:
        sm_scale = (sm_scale or cfg.sm_scale or
                    1.0 / math.sqrt(cfg.head_dim_qk)) * k_scale
    return sm_scale, {}, v_scale


def scale_output(out, factor):
    """out *= factor (a float or a 1-element tensor), as FlashInfer scales
    its output by v_scale; nothing for 1.0 or None. `out` is a torch
    tensor or a CUDA array torch can view (DLPack,
    __cuda_array_interface__)."""
    if factor is None or (isinstance(factor, float) and factor == 1.0):
        return
    if not torch.is_tensor(out):
        out = (torch.from_dlpack(out) if hasattr(out, "__dlpack__") else
               torch.as_tensor(out, device="cuda"))
    out.mul_(factor)


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


def check_q_dtype(api, dtype):
    """q (and so the output) is float16 or bfloat16: `dtype` is fijit's
    name of q's dtype."""
    if dtype not in ("f16", "bf16"):
        raise unsupported(api, "q.dtype", dtype, "float16 or bfloat16 (fp8 "
                          "queries have no kernel; k and v may be "
                          "float8_e4m3fn or float8_e5m2)")


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
