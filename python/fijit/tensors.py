"""Uniform view of the tensors fijit launches on.

torch tensors are used directly; other GPU arrays work through
``__cuda_array_interface__`` or DLPack (torch stays an optional dependency).
"""
try:
    import torch
except ImportError:  # fijit compiles without torch
    torch = None

DTYPES = ("f16", "bf16", "f32")
# The array interface has no typestr for bfloat16 (torch refuses to export
# one); such arrays come through torch or DLPack.
_TYPESTR = {"<f2": ("f16", 2), "<f4": ("f32", 4)}


class View:
    """device None: the current CUDA device, asked for only when a check
    needs it (after the shape and dtype checks, which need no GPU)."""

    def __init__(self, ptr, shape, strides, dtype, device, tensor=None):
        self.ptr, self.shape, self.strides = ptr, tuple(shape), tuple(strides)
        self.dtype, self._device, self.tensor = dtype, device, tensor
        self.ndim = len(self.shape)

    @property
    def device(self):
        if self._device is None:
            self._device = (torch.cuda.current_device() if torch is not None
                            else 0)
        return self._device

    def new_empty(self, shape, dtype):
        if torch is None:
            raise ValueError("pass `out`/`lse` explicitly when torch is not "
                             "installed")
        tdtype = {"f16": torch.float16, "bf16": torch.bfloat16,
                  "f32": torch.float32}[dtype]
        return torch.empty(shape, dtype=tdtype, device=f"cuda:{self.device}")

    def current_stream(self):
        if torch is None:
            return 0
        return torch.cuda.current_stream(self.device).cuda_stream


def _torch_dtype_name(t):
    """fijit's name of a tensor's dtype (fp8 for KV caches: e4m3, e5m2);
    torch's name for one fijit has none for."""
    return {torch.float16: "f16", torch.bfloat16: "bf16",
            torch.float32: "f32",
            getattr(torch, "float8_e4m3fn", None): "e4m3",
            getattr(torch, "float8_e5m2", None): "e5m2"}.get(
                t.dtype, str(t.dtype).replace("torch.", ""))


def as_view(x, name):
    if torch is not None and not isinstance(x, torch.Tensor) and hasattr(
            x, "__dlpack__") and not hasattr(x, "__cuda_array_interface__"):
        x = torch.from_dlpack(x)
    if torch is not None and isinstance(x, torch.Tensor):
        if x.device.type != "cuda":
            raise ValueError(f"{name} must be on a CUDA device, got "
                             f"{x.device}")
        return View(x.data_ptr(), x.shape, x.stride(), _torch_dtype_name(x),
                    x.device.index, x)
    cai = getattr(x, "__cuda_array_interface__", None)
    if cai is None:
        raise ValueError(f"{name} must be a CUDA tensor (torch, "
                         f"__cuda_array_interface__ or DLPack), got "
                         f"{type(x).__name__}")
    typestr = cai.get("typestr")
    if typestr not in _TYPESTR:
        raise ValueError(
            f"{name} has element type {typestr!r} in its "
            "__cuda_array_interface__; fijit reads float16 ('<f2') and "
            "float32 ('<f4') through it, and bfloat16 (which it cannot "
            "describe) as a torch tensor or through DLPack")
    dtype, itemsize = _TYPESTR[typestr]
    shape = cai["shape"]
    if cai.get("strides") is None:
        strides, step = [], 1
        for dim in reversed(shape):
            strides.insert(0, step)
            step *= dim
    else:
        strides = [s // itemsize for s in cai["strides"]]
    return View(cai["data"][0], shape, strides, dtype, None)


def kernel_readable(t):
    """Whether a kernel that moves 16-byte chunks reads (and writes) the
    torch tensor `t` as it is: 16-byte aligned, the last dimension
    contiguous and every row on 16 bytes (elements of 16 bits)."""
    if t.numel() == 0:
        return True
    steps = [st for st, n in zip(t.stride()[:-1], t.shape[:-1]) if n > 1]
    return (t.data_ptr() % 16 == 0 and (t.stride(-1) == 1 or t.shape[-1] == 1)
            and all(st % 8 == 0 for st in steps))


def check(view, name, shape, dtype, like=None, contiguous=False):
    if view.dtype != dtype:
        raise ValueError(f"{name} has dtype {view.dtype}; this kernel takes "
                         f"{dtype}")
    if view.shape != tuple(shape):
        raise ValueError(f"{name} has shape {list(view.shape)}; expected "
                         f"{list(shape)}")
    if view.ndim and view.strides[-1] != 1 and view.shape[-1] > 1:
        raise ValueError(f"{name}'s last dimension must be contiguous "
                         f"(stride 1); got strides {list(view.strides)}")
    if contiguous:
        step = 1
        for dim, stride in zip(reversed(view.shape), reversed(view.strides)):
            if dim > 1 and stride != step:
                raise ValueError(f"{name} must be contiguous; got strides "
                                 f"{list(view.strides)}")
            step *= dim
    if like is not None and view.device != like.device:
        raise ValueError(f"{name} is on cuda:{view.device} but q is on "
                         f"cuda:{like.device}")
