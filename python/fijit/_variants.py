"""The per-query-head tables of the variants (ALiBi slopes, attention
sinks): FlashInfer's default slopes and the checks of a table a caller
gives."""
import math
import numbers

from .tensors import as_view, check, torch


def get_alibi_slopes(n_heads):
    """FlashInfer's (and BLOOM's) ALiBi slopes of `n_heads` heads as
    floats: 2^(-8 i / n) for i = 1 .. n, n the largest power of two up to
    n_heads, then 2^(-4 j / n) for odd j = 1, 3, .. for the heads beyond."""
    n = 2 ** math.floor(math.log2(n_heads))
    slopes = [(2.0 ** (-8.0 / n)) ** i for i in range(1, n + 1)]
    slopes += [(2.0 ** (-4.0 / n)) ** j
               for j in range(1, 1 + 2 * (n_heads - n), 2)]
    return slopes


_slopes = {}


def default_alibi_slopes(n_heads, device):
    """get_alibi_slopes as a float32 device tensor, one per (heads,
    device) for the process, so its address stays fixed for CUDA graphs."""
    key = (n_heads, str(device))
    t = _slopes.get(key)
    if t is None:
        t = _slopes[key] = torch.tensor(get_alibi_slopes(n_heads),
                                        dtype=torch.float32, device=device)
    return t


def head_table(name, t, num_qo_heads, device):
    """A per-query-head table (alibi_slopes, sinks) as the kernel reads it:
    float32 [num_qo_heads], contiguous, on `device` (other float dtypes are
    converted, which costs a copy per call)."""
    if not torch.is_tensor(t):
        raise TypeError(f"{name} must be a torch.Tensor of shape "
                        f"[num_qo_heads], not {type(t).__name__}")
    if tuple(t.shape) != (num_qo_heads,):
        raise ValueError(f"{name} has shape {list(t.shape)}; expected "
                         f"[{num_qo_heads}] (one per query head)")
    device = torch.device(device)
    if t.device.type != "cuda" or (device.index is not None and
                                   t.device.index != device.index):
        raise ValueError(f"{name} is on {t.device} but q is on {device}")
    if t.dtype != torch.float32 or not t.is_contiguous():
        t = t.to(torch.float32).contiguous()
    return t


def optional_table(name, t, num_qo_heads, device):
    """head_table of `t`, or None."""
    return None if t is None else head_table(name, t, num_qo_heads, device)


def rope_params(api, rope_scale, rope_theta):
    """FlashInfer's rope_scale and rope_theta as the kernel's floats (None:
    FlashInfer's 1.0 and 1e4), each positive and finite (ValueError naming
    it otherwise). Read by pos_encoding=rope kernels only, as in
    FlashInfer."""
    values = {"rope_scale": 1.0 if rope_scale is None else rope_scale,
              "rope_theta": 1e4 if rope_theta is None else rope_theta}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                or not (math.isfinite(value) and value > 0):
            raise ValueError(f"{api}: {name}={value!r}; expected a positive "
                             f"finite float")
    return float(values["rope_scale"]), float(values["rope_theta"])


def check_slopes(pos_encoding_mode, alibi_slopes):
    """Explicit slopes belong to FlashInfer's pos_encoding_mode="ALIBI"."""
    if alibi_slopes is not None and pos_encoding_mode != "ALIBI":
        raise ValueError("alibi_slopes given without pos_encoding_mode="
                         "'ALIBI'")


def launch_tables(config, alibi_slopes, sinks, like, rope=(1.0, 1e4)):
    """The device pointers of a kernel's tables by argument name, checked
    against its config (sinks=true needs `sinks`; ALiBi's slopes default to
    get_alibi_slopes), and with pos_encoding=rope its rope_scale and
    rope_theta (`rope`, floats); `like` is q's View. Works for any CUDA
    array."""
    hq = config.num_qo_heads
    tables = {}
    if config.pos_encoding == "alibi":
        if alibi_slopes is None:
            if torch is None:
                raise ValueError("pass alibi_slopes (float32 [num_qo_heads])"
                                 " when torch is not installed")
            alibi_slopes = default_alibi_slopes(hq, f"cuda:{like.device}")
        tables["alibi_slopes"] = alibi_slopes
    elif alibi_slopes is not None:
        raise ValueError("alibi_slopes given to a kernel without "
                         "pos_encoding=alibi")
    if config.sinks:
        if sinks is None:
            raise ValueError(f"this kernel has sinks=true: pass sinks, "
                             f"float32 [{hq}]")
        tables["sinks"] = sinks
    elif sinks is not None:
        raise ValueError("sinks given to a kernel without sinks=true")
    pointers = {}
    for name, t in tables.items():
        view = as_view(t, name)
        check(view, name, (hq,), "f32", like=like, contiguous=True)
        pointers[name] = view.ptr
    if config.pos_encoding == "rope":
        pointers.update(rope_scale=float(rope[0]), rope_theta=float(rope[1]))
    return pointers
