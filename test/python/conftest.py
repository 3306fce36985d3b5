"""Shared setup for fijit's Python tests.

* Puts the built package on sys.path: $FIJIT_PYTHONPATH if set, else
  <repo>/build/python.
* Registers the ``gpu`` marker (tests that need torch and a CUDA device) and
  skips those tests, with the reason, where either is missing.
* Gives every test its own empty cache folder through $FIJIT_CACHE_DIR and
  clears FIJIT_LOG / FIJIT_CACHE_MAX_BYTES so the caller's environment does
  not leak in.
* Sets FIJIT_TIERED=0: a test that asks for a config runs that config's
  kernel, never its provisional stand-in (tests of stand-ins set it back).
* Sets FIJIT_PACKAGE_BUNDLE=0 and clears FIJIT_BUNDLE_DIR and
  FIJIT_DISABLE_JIT: a test that asks for a config compiles it even against
  a wheel whose bundle holds it (test_bundle.py turns the bundle back on).

The C++ side reads $FIJIT_CACHE_DIR (and FIJIT_LOG, FIJIT_CACHE_MAX_BYTES)
once per process, so inside the pytest process the cache root is whatever
the first test that touched the cache had. Tests that need a fresh cache, a
specific environment or a cold memory tier run a child process with
``run_fijit`` / ``start_fijit``.
"""
import ctypes
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE_DIR = Path(os.environ.get("FIJIT_PYTHONPATH")
                   or REPO / "build" / "python").resolve()

if not (PACKAGE_DIR / "fijit").is_dir():
    raise pytest.UsageError(
        f"fijit package not found in {PACKAGE_DIR}: build it (ninja -C "
        f"{REPO / 'build'}) or set FIJIT_PYTHONPATH")
if str(PACKAGE_DIR) not in sys.path:
    sys.path.insert(0, str(PACKAGE_DIR))

# Variables the C++ runtime reads; cleared for every test (and so for every
# child process, which inherits os.environ) unless a test sets them.
_RUNTIME_ENV = ("FIJIT_LOG", "FIJIT_CACHE_MAX_BYTES", "FIJIT_BUNDLE_DIR",
                "FIJIT_DISABLE_JIT")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "gpu: needs torch and a CUDA GPU (skipped without them)")


def _gpu_skip_reason():
    try:
        import torch
    except ImportError:
        return "needs torch (not installed)"
    try:
        available = torch.cuda.is_available()
    except Exception as e:  # broken driver installs raise here
        return f"needs a CUDA device (torch.cuda failed: {e})"
    if not available:
        return ("needs a CUDA device (torch.cuda.is_available() is False: "
                "no GPU, no driver, or a CPU-only torch build)")
    return None


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return  # don't import torch when nothing needs it
    reason = _gpu_skip_reason()
    if reason:
        for item in gpu_items:
            item.add_marker(pytest.mark.skip(reason=f"gpu test: {reason}"))


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    """An empty, per-test cache root in $FIJIT_CACHE_DIR."""
    d = tmp_path / "fijit-cache"
    d.mkdir()
    monkeypatch.setenv("FIJIT_CACHE_DIR", str(d))
    for name in _RUNTIME_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FIJIT_TIERED", "0")
    monkeypatch.setenv("FIJIT_PACKAGE_BUNDLE", "0")
    return d


def child_env(**overrides):
    """os.environ (with the test's FIJIT_CACHE_DIR) plus the package on
    PYTHONPATH plus `overrides` (a value of None removes the variable)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PACKAGE_DIR), env.get("PYTHONPATH")) if p)
    for k, v in overrides.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = str(v)
    return env


# Child processes print one JSON object as their last stdout line via
# `report(...)`.
_PRELUDE = textwrap.dedent("""\
    import hashlib, json, sys
    import fijit
    def report(**kw):
        sys.stdout.write(json.dumps(kw) + "\\n")
        sys.stdout.flush()
    def summary(k):
        return {"key": k.key, "tier": k.tier, "compile_ms": k.compile_ms,
                "ptx_sha": hashlib.sha256(k.ptx.encode()).hexdigest()}
""")


def _script(code):
    code = textwrap.dedent(code).strip("\n")
    if code[:1].isspace():
        raise ValueError("child code must share one indentation:\n" + code)
    return _PRELUDE + "\n" + code + "\n"


class Child:
    def __init__(self, proc_or_result, stdout, stderr):
        self.returncode = proc_or_result.returncode
        self.stdout, self.stderr = stdout, stderr

    @property
    def result(self):
        lines = [l for l in self.stdout.splitlines() if l.startswith("{")]
        assert lines, (f"child printed no report (rc {self.returncode})\n"
                       f"stdout:\n{self.stdout}\nstderr:\n{self.stderr}")
        return json.loads(lines[-1])


def run_fijit(code, timeout=120, check=True, **env):
    """Runs `code` (after the prelude: fijit, report, summary) in a fresh
    interpreter; returns a Child with returncode, stdout, stderr, result."""
    r = subprocess.run([sys.executable, "-c", _script(code)],
                       env=child_env(**env), capture_output=True, text=True,
                       timeout=timeout)
    child = Child(r, r.stdout, r.stderr)
    if check:
        assert r.returncode == 0, (f"child failed (rc {r.returncode})\n"
                                   f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
    return child


def start_fijit(code, **env):
    """Starts `code` like run_fijit without waiting; returns the Popen."""
    return subprocess.Popen([sys.executable, "-c", _script(code)],
                            env=child_env(**env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=120):
    stdout, stderr = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, (f"child failed (rc {proc.returncode})\n"
                                  f"stdout:\n{stdout}\nstderr:\n{stderr}")
    return Child(proc, stdout, stderr)


def run_cli(*args, timeout=60, **env):
    """`python -m fijit ARGS`; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "fijit", *args],
                          env=child_env(**env), capture_output=True,
                          text=True, timeout=timeout)


def tool(name):
    """Path of the fi-opt / fi-compile binary next to the package under
    test (the wheel's fijit/bin, or the build tree's bin), or None."""
    from fijit import _tools
    try:
        return _tools.tool_path(name)
    except FileNotFoundError:
        return None


def cache_files(root, pattern="*.ptx"):
    """Entry files under any version folder of `root`."""
    return sorted(Path(root).glob(f"v*/entries/{pattern}"))


# A small config that compiles in ~0.15 s; tests vary num_qo_heads (the GQA
# group) to get distinct kernels of similar size.
SMALL = dict(head_dim_qk=64, head_dim_vo=64, num_qo_heads=4, num_kv_heads=4)


def driver_present():
    """Whether the CUDA driver loads here: tests that launch on fake pointers
    or rely on the plan's no-GPU model skip where it does."""
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


def _llvm_xxh3():
    """llvm::xxh3_64bits from LLVM's shared library (the checksum of cache
    files), or None where that library is missing."""
    import glob
    for lib in sorted(glob.glob("/usr/lib/llvm-*/lib/libLLVM.so.*")):
        try:
            fn = getattr(ctypes.CDLL(lib),
                         "_ZN4llvm11xxh3_64bitsENS_8ArrayRefIhEE")
        except (OSError, AttributeError):
            continue
        # ArrayRef<uint8_t> {data, size} travels in two registers.
        fn.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        fn.restype = ctypes.c_uint64
        return fn
    return None


def forge_cache_file(path, binding, payload, like):
    """Writes `payload` to `path` as a well-formed cache file that claims to
    hold `binding` (an entry's name, an index file's config), in the format
    of the existing cache file `like`: what someone who can write the cache
    could plant. Skips the test where LLVM's xxh3 is not at hand."""
    xxh3 = _llvm_xxh3()
    if xxh3 is None:
        pytest.skip("needs LLVM's shared library for the cache checksum")
    magic = Path(like).read_bytes().split(b"\n", 1)[0]
    payload = payload.encode() if isinstance(payload, str) else payload
    if magic == b"FIJIT-ENTRY 1":  # payload-only checksum, no binding
        data = b"%d\n%016x\n" % (len(payload), xxh3(payload, len(payload)))
    else:
        summed = binding.encode() + b"\n" + payload
        data = b"%s\n%d %016x\n" % (binding.encode(), len(payload),
                                     xxh3(summed, len(summed)))
    Path(path).write_bytes(magic + b"\n" + data + payload)
