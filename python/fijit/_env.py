"""`fijit collect-env`: what a bug report needs, every fact read from where
it lives (the C++ core for fijit's own, the platform for the rest)."""
import os
import platform
import sys
from pathlib import Path

from . import _fijit, cache


def _loaded_libfijit():
    """The libfijit this process mapped (/proc/self/maps), or None."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split(maxsplit=5)[-1].strip()
                if "/libfijit.so" in path:
                    return path
    except OSError:
        pass
    return None


def _torch_lines():
    try:
        import torch
    except ImportError:
        return ["torch:        not installed (optional)"]
    lines = [f"torch:        {torch.__version__} (CUDA {torch.version.cuda})"]
    try:
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception as e:  # a broken driver install raises here
        return lines + [f"torch GPUs:   none ({e})"]
    if not n:
        lines.append("torch GPUs:   none")
    for i in range(n):
        cc = torch.cuda.get_device_capability(i)
        lines.append(f"GPU {i}:        {torch.cuda.get_device_name(i)} "
                     f"(sm_{cc[0]}{cc[1]})")
    return lines


def collect():
    """The report as a list of lines."""
    driver_ok, driver = _fijit.cuda_driver_status()
    libc = " ".join(platform.libc_ver()) or "unknown"
    info = cache.info()
    lines = [
        f"fijit:        {_fijit.__version__} (build {_fijit.build_id}, "
        f"LLVM {_fijit.llvm_version})",
        f"package:      {Path(__file__).resolve().parent}",
        f"extension:    {Path(_fijit.__file__).resolve()}",
        f"libfijit:     {_loaded_libfijit() or 'not found in this process'}",
        f"python:       {sys.version.split()[0]} ({sys.executable})",
        f"platform:     {platform.platform()} ({libc})",
        f"CUDA driver:  {driver if driver_ok else 'unusable: ' + driver}",
        *_torch_lines(),
        f"cache:        {info['version_dir'] or info['root'] or 'none'} "
        f"({info['entries']} entries, {info['bytes']} bytes)",
        *(f"bundle:       {b['version_dir']} ({b['entries']} entries, "
          f"{b['bytes']} bytes)" for b in info["bundles"]),
    ]
    env = sorted((k, v) for k, v in os.environ.items()
                 if k.startswith("FIJIT_"))
    lines.append("environment:  " + (", ".join(f"{k}={v}" for k, v in env)
                                     or "no FIJIT_* variables set"))
    return lines
