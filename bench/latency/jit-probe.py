"""Where the driver's part of a cold compile goes, and what the JIT
optimisation level buys: for several kernels, PTX -> SASS through cuLink*
(what fijit does, keeping the cubin for the disk cache) at each
CU_JIT_OPTIMIZATION_LEVEL, with the cubin's code (.text and .nv.info
sections) compared with level 4's, the driver's default. Medians over
repeats in one process; run with CUDA_CACHE_DISABLE=1.

usage: CUDA_CACHE_DISABLE=1 python3 bench/latency/jit-probe.py [reps]
"""
import ctypes
import statistics
import struct
import sys
import time

import torch

import fijit

CONFIGS = {
    "prefill D128 causal": dict(head_dim_qk=128, head_dim_vo=128,
                                num_qo_heads=32, num_kv_heads=8,
                                mask="causal"),
    "prefill D64": dict(head_dim_qk=64, head_dim_vo=64, num_qo_heads=32,
                        num_kv_heads=8),
    "prefill D256 causal": dict(head_dim_qk=256, head_dim_vo=256,
                                num_qo_heads=32, num_kv_heads=8,
                                mask="causal"),
    "batch prefill paged D128": dict(kind="batch_prefill_paged",
                                     page_size=16, num_qo_heads=32,
                                     num_kv_heads=8, mask="causal"),
    "decode paged D128": dict(kind="batch_decode_paged", page_size=16,
                              num_qo_heads=32, num_kv_heads=8),
    "decode D256": dict(kind="single_decode", head_dim_qk=256,
                        head_dim_vo=256, num_qo_heads=32, num_kv_heads=8),
}
LEVELS = (4, 3, 2, 1)
CU_JIT_OPTIMIZATION_LEVEL = 7
CU_JIT_INPUT_PTX = 1


def code_sections(cubin):
    """The sections of an ELF64 cubin that hold code and its metadata."""
    shoff, = struct.unpack_from("<Q", cubin, 0x28)
    entsize, count, names = struct.unpack_from("<HHH", cubin, 0x3A)
    headers = [struct.unpack_from("<IIQQQQ", cubin, shoff + i * entsize)
               for i in range(count)]
    strtab = headers[names][4]
    out = {}
    for name, _, _, _, offset, size in headers:
        end = cubin.index(b"\0", strtab + name)
        label = cubin[strtab + name:end].decode()
        if label.startswith((".text", ".nv.info")):
            out[label] = cubin[offset:offset + size]
    return out


def main():
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    torch.empty(1, device="cuda")
    cu = ctypes.CDLL("libcuda.so.1")

    def link(image, level):
        keys = (ctypes.c_int * 1)(CU_JIT_OPTIMIZATION_LEVEL)
        vals = (ctypes.c_void_p * 1)(level)
        state = ctypes.c_void_p()
        assert cu.cuLinkCreate_v2(1, keys, vals, ctypes.byref(state)) == 0
        assert cu.cuLinkAddData_v2(state, CU_JIT_INPUT_PTX, image,
                                   ctypes.c_size_t(len(image)), b"k.ptx", 0,
                                   None, None) == 0
        cubin, size = ctypes.c_void_p(), ctypes.c_size_t()
        assert cu.cuLinkComplete(state, ctypes.byref(cubin),
                                 ctypes.byref(size)) == 0
        blob = ctypes.string_at(cubin, size.value)
        cu.cuLinkDestroy(state)
        return blob

    print("| kernel | PTX lines | " +
          " | ".join(f"level {lv} ms" for lv in LEVELS) + " | " +
          " | ".join(f"level {lv} code" for lv in LEVELS[1:]) + " |")
    print("| --- " * (2 + 2 * len(LEVELS) - 1) + "|")
    for label, cfg in CONFIGS.items():
        ptx = fijit.compile_attention(**cfg).ptx.encode() + b"\0"
        times, code = [], []
        for level in LEVELS:
            ms = []
            for _ in range(reps):
                t = time.perf_counter()
                blob = link(ptx, level)
                ms.append((time.perf_counter() - t) * 1e3)
            times.append(statistics.median(ms))
            code.append(code_sections(blob))
        same = ["same" if c == code[0] else "differs" for c in code[1:]]
        print(f"| {label} | {ptx.decode().count(chr(10))}"
              f" | " + " | ".join(f"{t:.1f}" for t in times) + " | " +
              " | ".join(same) + " |", flush=True)


if __name__ == "__main__":
    main()
