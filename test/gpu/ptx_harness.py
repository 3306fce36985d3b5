"""Runs fijit PTX kernels on a GPU without the fijit runtime.

Used where the GPU machine has no LLVM: PTX and launch metadata are produced
by `fi-opt --fi-emit=ptx|launch` elsewhere, then loaded here through the CUDA
Driver API (ctypes) and checked against a float32 reference on fresh random
inputs, with outputs poisoned before each launch. Arguments are packed by
name, in the order of the kernel's launch contract (the metadata's `spec`),
and the grid comes from the contract's formula.

    python ptx_harness.py check DIR        # every DIR/*.ptx with DIR/*.json
    python ptx_harness.py bench DIR NAME   # time DIR/NAME.ptx vs SDPA
"""
import ctypes
import glob
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "python"))
from attention_reference import reference  # noqa: E402

_cuda = ctypes.CDLL("libcuda.so.1")
_CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8
# Tensor-map arguments (the warp-specialised sm_90a prefill reads Q, K and V
# through TMA) are encoded as the runtime does (lib/Runtime/TensorMap.cpp):
# [head_dim, rows, heads] boxes of 64 columns x box_rows rows, 128-byte
# swizzle, zero fill.
_CU_TENSOR_MAP_DATA_TYPE = {torch.float16: 6, torch.bfloat16: 9}
_CU_TENSOR_MAP_SWIZZLE_128B = 3
_CU_TENSOR_MAP_L2_PROMOTION_L2_256B = 3
_TMA_BOX_COLUMNS = 64


def _check(rc, what):
    if rc != 0:
        name = ctypes.c_char_p()
        _cuda.cuGetErrorString(rc, ctypes.byref(name))
        raise RuntimeError(f"{what} failed: {rc} {name.value}")


def _tensor_map(t, row_stride, head_stride, rows, heads, box_rows):
    """A CUtensorMap (128 bytes, 64-byte aligned) over `t`'s [heads, rows,
    head_dim] view with the given element strides."""
    d = t.shape[-1]
    width = t.element_size()
    if heads <= 1 and head_stride == 0:
        head_stride = row_stride * max(rows, 1)
    buf = ctypes.create_string_buffer(128 + 64)
    addr = (ctypes.addressof(buf) + 63) & ~63
    dims = (ctypes.c_uint64 * 3)(d, max(rows, 1), max(heads, 1))
    strides = (ctypes.c_uint64 * 2)(row_stride * width, head_stride * width)
    box = (ctypes.c_uint32 * 3)(_TMA_BOX_COLUMNS, box_rows, 1)
    element_strides = (ctypes.c_uint32 * 3)(1, 1, 1)
    _check(_cuda.cuTensorMapEncodeTiled(
        ctypes.c_void_p(addr), _CU_TENSOR_MAP_DATA_TYPE[t.dtype], 3,
        ctypes.c_void_p(t.data_ptr()), dims, strides, box, element_strides,
        0, _CU_TENSOR_MAP_SWIZZLE_128B, _CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
        0), "cuTensorMapEncodeTiled")
    return buf, ctypes.c_void_p(addr)


class PtxKernel:
    def __init__(self, ptx_path, launch):
        torch.cuda.init()
        torch.empty(1, device="cuda")  # makes the primary context current
        self.launch = launch
        self.config = dict(kv.split("=") for kv in launch["config"].split(","))
        module = ctypes.c_void_p()
        data = open(ptx_path, "rb").read() + b"\0"
        log = ctypes.create_string_buffer(1 << 16)
        opts = (ctypes.c_int * 2)(5, 6)  # ERROR_LOG_BUFFER, its size
        vals = (ctypes.c_void_p * 2)(ctypes.cast(log, ctypes.c_void_p),
                                     ctypes.c_void_p(1 << 16))
        rc = _cuda.cuModuleLoadDataEx(ctypes.byref(module), data, 2, opts, vals)
        if rc:
            raise RuntimeError(f"cuModuleLoadDataEx: {rc}: {log.value.decode()}")
        self.func = ctypes.c_void_p()
        _check(_cuda.cuModuleGetFunction(ctypes.byref(self.func), module,
                                         launch["kernel"].encode()),
               "cuModuleGetFunction")
        _check(_cuda.cuFuncSetAttribute(
            self.func, _CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            launch["spec"]["shared_memory_bytes"]), "cuFuncSetAttribute")

    def __call__(self, **values):
        """Launches with every kernel argument given by name, as the
        kernel's launch contract (`spec` of `fi-opt --fi-emit=launch`)
        names it; each is packed where the contract's table puts it."""
        spec = self.launch["spec"]

        def value(name):
            if name not in values:
                raise KeyError(f"launch argument '{name}' not given")
            return values[name]

        keep, slots = [], []

        def scalar(val):
            keep.append(val)
            slots.append(ctypes.cast(ctypes.pointer(val), ctypes.c_void_p))

        for arg in spec["args"]:
            kind, name = arg["kind"], arg["name"]
            if kind == "tensor_map":
                m = arg["map"]
                if m["pages"]:
                    raise NotImplementedError(f"{name}: paged tensor maps")
                buf, addr = _tensor_map(
                    value(m["base"]), value(m["row_stride"]),
                    value(m["head_stride"]), value(m["rows"]), m["heads"],
                    m["box_rows"])
                keep.append(buf)
                slots.append(addr)
            elif kind == "buffer":
                # A flat memref descriptor: (allocated, aligned, offset,
                # size, stride).
                t = value(name)
                ptr = t.data_ptr() if t is not None else 0
                size = t.numel() if t is not None else 0
                for val in (ctypes.c_void_p(ptr), ctypes.c_void_p(ptr),
                            ctypes.c_int64(0), ctypes.c_int64(size),
                            ctypes.c_int64(1)):
                    scalar(val)
            elif kind == "i32":
                scalar(ctypes.c_int32(value(name)))
            elif kind == "f32":
                scalar(ctypes.c_float(value(name)))
            else:
                raise NotImplementedError(f"{name}: {kind} arguments")
        def extent(dim):
            if not dim["size"]:
                return dim["constant"]
            n = (-(-value(dim["size"]) * dim["scale"] // dim["divisor"])
                 * dim["multiplier"])
            if dim["cap"] == "multiprocessors":  # a persistent grid
                n = min(n, torch.cuda.get_device_properties(
                    0).multi_processor_count)
            elif dim["cap"]:
                n = min(n, value(dim["cap"]))
            return n
        grid = [extent(dim) for dim in spec["grid"]]
        params = (ctypes.c_void_p * len(slots))(*slots)
        stream = torch.cuda.current_stream().cuda_stream
        _check(_cuda.cuLaunchKernel(
            self.func, *grid, spec["threads"], 1, 1,
            spec["shared_memory_bytes"], ctypes.c_void_p(stream), params,
            None), "cuLaunchKernel")


def prefill_args(q, k, v, o, lse, sm_scale, kv_layout):
    """The named arguments of a single prefill launch: the tensors, their
    lengths and their element strides (k and v [kv_len, heads, dim] for
    NHD, [heads, kv_len, dim] for HND)."""
    nhd = kv_layout == "NHD"
    n, h = (0, 1) if nhd else (1, 0)
    return {"q": q, "k": k, "v": v, "o": o, "lse": lse,
            "qo_len": q.shape[0], "kv_len": k.shape[n],
            "q_stride_n": q.stride(0), "q_stride_h": q.stride(1),
            "k_stride_n": k.stride(n), "k_stride_h": k.stride(h),
            "v_stride_n": v.stride(n), "v_stride_h": v.stride(h),
            "o_stride_n": o.stride(0), "o_stride_h": o.stride(1),
            "sm_scale": sm_scale}


def make_inputs(cfg, qo_len, kv_len, dtype):
    hq, hk = int(cfg["num_qo_heads"]), int(cfg["num_kv_heads"])
    d = int(cfg["head_dim_qk"])
    q = torch.randn(qo_len, hq, d, device="cuda", dtype=dtype)
    shape = (kv_len, hk, d) if cfg["kv_layout"] == "NHD" else (hk, kv_len, d)
    k = torch.randn(*shape, device="cuda", dtype=dtype)
    v = torch.randn(*shape, device="cuda", dtype=dtype)
    return q, k, v


def check_one(ptx, launch, lengths):
    kern = PtxKernel(ptx, launch)
    cfg = kern.config
    dtype = {"f16": torch.float16, "bf16": torch.bfloat16}[cfg["dtype_q"]]
    d = int(cfg["head_dim_qk"])
    sm_scale = 1.0 / math.sqrt(d)
    causal = cfg["mask"] == "causal"
    window = int(cfg["window_left"])
    cap = float(cfg["logits_soft_cap"])
    worst = 0.0
    for qo_len, kv_len in lengths:
        q, k, v = make_inputs(cfg, qo_len, kv_len, dtype)
        o = torch.full_like(q, float("nan"))
        lse = torch.full((qo_len, q.shape[1]), float("nan"), device="cuda")
        kern(**prefill_args(q, k, v, o, lse, sm_scale, cfg["kv_layout"]))
        torch.cuda.synchronize()
        ref, ref_lse = reference(q, k, v, causal, sm_scale, window, cap,
                                 cfg["kv_layout"])
        if torch.isnan(o).any():
            return False, f"unwritten/NaN output at qo={qo_len} kv={kv_len}"
        err = ((o.float() - ref).norm() / ref.norm().clamp_min(1e-6)).item()
        worst = max(worst, err)
        if err > 2e-2:
            return False, f"rel err {err:.3e} at qo={qo_len} kv={kv_len}"
        if cfg["return_lse"] == "true":
            finite = torch.isfinite(ref_lse)
            lerr = (lse[finite] - ref_lse[finite]).abs().max().item()
            if lerr > 1e-2 or torch.isnan(lse).any():
                return False, f"lse err {lerr:.3e} at qo={qo_len} kv={kv_len}"
    return True, f"max rel err {worst:.2e}"


LENGTHS = [(1, 1), (7, 33), (64, 64), (100, 227), (227, 100), (128, 1000),
           (333, 333), (1000, 1537)]


def cmd_check(directory):
    failures = 0
    rows = []
    for ptx in sorted(glob.glob(os.path.join(directory, "*.ptx"))):
        launch = json.load(open(ptx[:-4] + ".json"))
        try:
            ok, msg = check_one(ptx, launch, LENGTHS)
        except Exception as e:  # a load or launch error is a failure too
            ok, msg = False, repr(e)
        failures += not ok
        rows.append(f"{'PASS' if ok else 'FAIL'} {os.path.basename(ptx)}: {msg}")
        print(rows[-1], flush=True)
    print(f"{len(rows) - failures}/{len(rows)} kernels match the float32 "
          f"reference on {torch.cuda.get_device_name()}")
    return 1 if failures else 0


def _time(fn, iters=20):
    for _ in range(3):
        fn()
    start, end = torch.cuda.Event(True), torch.cuda.Event(True)
    times = []
    for _ in range(iters):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def cmd_bench(directory, name, seq_len, heads):
    launch = json.load(open(os.path.join(directory, name + ".json")))
    kern = PtxKernel(os.path.join(directory, name + ".ptx"), launch)
    cfg = kern.config
    d = int(cfg["head_dim_qk"])
    causal = cfg["mask"] == "causal"
    q = torch.randn(seq_len, heads, d, device="cuda", dtype=torch.bfloat16)
    k = torch.randn_like(q)
    v = torch.randn_like(q)
    o = torch.empty_like(q)
    lse = torch.empty(seq_len, heads, device="cuda")
    scale = 1 / math.sqrt(d)
    flops = 4 * heads * seq_len * seq_len * d / (2 if causal else 1)
    args = prefill_args(q, k, v, o, lse, scale, "NHD")
    res = {"fijit": _time(lambda: kern(**args))}
    qt, kt, vt = (x.transpose(0, 1).unsqueeze(0) for x in (q, k, v))
    from torch.nn.attention import SDPBackend, sdpa_kernel
    for label, backend in (("flash", SDPBackend.FLASH_ATTENTION),
                           ("cudnn", SDPBackend.CUDNN_ATTENTION)):
        try:
            with sdpa_kernel(backend):
                res[label] = _time(lambda: F.scaled_dot_product_attention(
                    qt, kt, vt, is_causal=causal))
        except Exception as e:
            print(f"{label}: unavailable ({e})")
    line = " ".join(f"{k}={flops / t / 1e9:.0f}" for k, t in res.items())
    print(f"bench {name} N={seq_len} H={heads} D={d} causal={causal}: "
          f"TFLOP/s {line}")


if __name__ == "__main__":
    if sys.argv[1] == "check":
        sys.exit(cmd_check(sys.argv[2]))
    if sys.argv[1] == "bench":
        cmd_bench(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
