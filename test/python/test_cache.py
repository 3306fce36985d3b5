"""The disk cache, exercised across processes (the C++ side reads its
environment once per process, so each scenario runs fresh interpreters)."""
import json
import os
import re
import stat
import time

import pytest

import fijit
from conftest import tool as find_tool
from conftest import (SMALL, cache_files, finish, run_fijit, start_fijit)

COMPILE_AND_REPORT = """
    k = fijit.compile_attention(**%r)
    report(**summary(k))
"""


def compile_child(fields=SMALL, **env):
    return run_fijit(COMPILE_AND_REPORT % (dict(fields),), **env)


def compiled_lines(stderr):
    return [l for l in stderr.splitlines() if l.startswith("fijit: compiled")]


def test_eight_processes_compile_once(cache_dir, tmp_path):
    """8 processes ask for one new config at the same moment: one compiles,
    the others wait on the key's lock and load its entry."""
    n = 8
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    code = """
        import os, time
        os.close(os.open(os.path.join(%(b)r, "ready-%%d" %% os.getpid()),
                         os.O_CREAT | os.O_WRONLY))
        go = os.path.join(%(b)r, "go")
        deadline = time.time() + 60
        while not os.path.exists(go) and time.time() < deadline:
            time.sleep(0.001)
        k = fijit.compile_attention(**%(f)r)
        report(**summary(k))
    """ % {"b": str(barrier), "f": dict(SMALL, mask="causal")}
    procs = [start_fijit(code, FIJIT_LOG=1) for _ in range(n)]
    try:
        deadline = time.time() + 60
        while (len(list(barrier.glob("ready-*"))) < n
               and time.time() < deadline):
            time.sleep(0.005)
        assert len(list(barrier.glob("ready-*"))) == n, "children not ready"
    finally:
        (barrier / "go").touch()
    children = [finish(p) for p in procs]
    results = [c.result for c in children]

    all_stderr = "".join(c.stderr for c in children)
    assert len(compiled_lines(all_stderr)) == 1, all_stderr
    tiers = sorted(r["tier"] for r in results)
    assert tiers == ["compiled"] + ["disk"] * (n - 1), tiers
    assert len({r["key"] for r in results}) == 1
    assert len({r["ptx_sha"] for r in results}) == 1
    assert "warning" not in all_stderr, all_stderr
    (entry,) = cache_files(cache_dir)
    assert entry.name == results[0]["key"] + ".ptx"
    assert not cache_files(cache_dir, "*.tmp-*")
    assert len(list(cache_dir.glob("v*/index/*"))) == 1


def test_entry_holds_the_launch_contract(cache_dir):
    """A kernel's entry holds its launch contract (argument table, grid,
    block and shared memory, as JSON) ahead of its PTX, so a process that
    finds it launches from what the kernel was built with."""
    describe = """
        k = fijit.compile_attention(**%r)
        report(tier=k.tier, ptx=k.ptx, builder=k.ir("builder"),
               smem=k.shared_memory_bytes)
    """ % (SMALL,)
    first = run_fijit(describe).result
    (entry,) = cache_files(cache_dir)
    # The header (magic, what the file holds, size and checksum), then the
    # payload: the contract on one line, then the PTX.
    payload = entry.read_text().split("\n", 3)[3]
    contract, ptx = payload.split("\n", 1)
    spec = json.loads(contract)
    assert ptx == first["ptx"]
    signature = re.search(r"fijit\.signature = \[([^\]]*)\]",
                          first["builder"]).group(1)
    assert ", ".join(f'"{a["name"]}:{a["kind"]}"'
                     for a in spec["args"]) == signature
    assert spec["shared_memory_bytes"] == first["smem"]
    again = run_fijit(describe).result
    assert again["tier"] == "disk"
    assert again["smem"] == first["smem"]


def _flip(path):
    data = bytearray(path.read_bytes())
    mid = len(data) // 2  # inside the PTX payload
    for i in range(mid, mid + 8):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _empty(path):
    path.write_bytes(b"")


def _bad_header(path):
    data = path.read_bytes()
    path.write_bytes(b"garbage" + data[7:])


@pytest.mark.parametrize("damage", [_flip, _truncate, _empty, _bad_header],
                         ids=["flip", "truncate", "empty", "header"])
def test_corrupted_entry_is_detected_and_rebuilt(cache_dir, damage):
    first = compile_child().result
    assert first["tier"] == "compiled"
    (entry,) = cache_files(cache_dir)
    good = entry.read_bytes()
    damage(entry)
    assert entry.read_bytes() != good

    second = compile_child()
    assert "is corrupted" in second.stderr
    assert str(entry) in second.stderr
    assert second.stderr.count("is corrupted") == 1
    r = second.result
    assert r["tier"] == "compiled"
    assert r["key"] == first["key"]
    assert r["ptx_sha"] == first["ptx_sha"]
    # rewritten whole and valid
    assert entry.read_bytes() == good

    third = compile_child()
    assert third.result["tier"] == "disk"
    assert third.result["ptx_sha"] == first["ptx_sha"]
    assert "corrupted" not in third.stderr


def test_corrupted_index_is_detected(cache_dir):
    first = compile_child().result
    (index,) = cache_dir.glob("v*/index/*")
    index.write_bytes(index.read_bytes()[:-3])  # key cut short

    second = compile_child()
    assert "is corrupted" in second.stderr and str(index) in second.stderr
    # the PTX entry is intact: found under the key's lock, not recompiled
    assert second.result["tier"] == "disk"
    assert second.result["key"] == first["key"]
    third = compile_child()
    assert third.result["tier"] == "disk"
    assert "corrupted" not in third.stderr


def test_eviction_keeps_most_recent_under_bound(cache_dir):
    # Distinct GQA groups: distinct kernels of near-equal size.
    configs = [dict(SMALL, num_qo_heads=h) for h in (4, 8, 16)]
    probe = compile_child(configs[0])
    (entry,) = cache_files(cache_dir)
    size = entry.stat().st_size
    run_fijit("fijit.cache.clear()")
    assert not cache_files(cache_dir)

    bound = size * 3 // 2
    r = run_fijit("""
        import os
        keys = []
        for fields in %r:
            k = fijit.compile_attention(**fields)
            keys.append(k.key)
        report(keys=keys, info=fijit.cache.info())
    """ % (configs,), FIJIT_CACHE_MAX_BYTES=bound, FIJIT_LOG=1)
    res = r.result
    files = cache_files(cache_dir, "*")
    total = sum(f.stat().st_size for f in files)
    assert total <= bound
    assert res["info"]["max_bytes"] == bound
    assert res["info"]["bytes"] == total
    assert [f.name for f in files] == [res["keys"][-1] + ".ptx"]
    assert "evicted" in r.stderr
    assert probe.result["key"] == res["keys"][0]


def test_eviction_is_least_recently_used(cache_dir):
    """A disk read refreshes an entry: A, B, read A, C -> B goes."""
    a, b, c = (dict(SMALL, num_qo_heads=h) for h in (4, 8, 16))
    ka = compile_child(a).result["key"]
    kb = compile_child(b).result["key"]
    size = max(f.stat().st_size for f in cache_files(cache_dir))
    bound = size * 5 // 2  # room for two entries
    ra = compile_child(a, FIJIT_CACHE_MAX_BYTES=bound).result
    assert ra["tier"] == "disk"
    kc = compile_child(c, FIJIT_CACHE_MAX_BYTES=bound).result["key"]
    names = {f.name for f in cache_files(cache_dir, "*")}
    assert names == {ka + ".ptx", kc + ".ptx"}, (names, kb)
    # B was evicted: asking again compiles it
    assert compile_child(b).result["tier"] == "compiled"


def test_invalid_max_bytes_warns(cache_dir):
    r = run_fijit("report(info=fijit.cache.info())",
                  FIJIT_CACHE_MAX_BYTES="lots")
    assert ("ignoring FIJIT_CACHE_MAX_BYTES=lots: not a number of bytes"
            in r.stderr)
    assert r.result["info"]["max_bytes"] == 4 << 30


UNUSABLE = """
    a = fijit.compile_attention(**%r)
    b = fijit.compile_attention(**%r)
    c = fijit.compile_attention(**%r)
    report(tiers=[a.tier, b.tier, c.tier], info=fijit.cache.info(),
           ptx=a.ptx[:200])
""" % (SMALL, SMALL, dict(SMALL, mask="causal"))


def _check_unusable(r, root):
    res = r.result
    assert r.stderr.count("not usable") == 1, r.stderr
    assert "in memory only" in r.stderr
    assert res["tiers"] == ["compiled", "memory", "compiled"]
    assert res["info"]["enabled"] is False
    assert res["info"]["root"] == str(root)
    assert res["info"]["entries"] == 0
    assert "fijit_single_prefill" in res["ptx"]


def test_cache_dir_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a regular file, not a folder")
    root = blocker / "cache"
    r = run_fijit(UNUSABLE, FIJIT_CACHE_DIR=root)
    _check_unusable(r, root)
    assert blocker.read_text() == "a regular file, not a folder"


def test_read_only_cache_dir(tmp_path):
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o555)
    try:
        if os.access(root, os.W_OK):
            pytest.skip("permissions are not enforced (running as root); "
                        "test_cache_dir_that_cannot_be_created covers this")
        r = run_fijit(UNUSABLE, FIJIT_CACHE_DIR=root)
        _check_unusable(r, root)
        assert list(root.iterdir()) == []
    finally:
        root.chmod(stat.S_IRWXU)


def test_version_folder(cache_dir):
    r = run_fijit("""
        k = fijit.compile_attention(**%r)
        report(tier=k.tier, info=fijit.cache.info())
    """ % (SMALL,))
    assert r.result["tier"] == "compiled"
    info = r.result["info"]
    name = os.path.basename(info["version_dir"])
    assert name == f"v{fijit.__version__}-{fijit.build_id}-llvm{fijit.llvm_version}"
    assert fijit.__version__ in name and "llvm" in name
    assert re.fullmatch(r"\d+\.\d+\.\d+", fijit.__version__)
    assert info["root"] == str(cache_dir)
    assert os.path.dirname(info["version_dir"]) == str(cache_dir)
    assert [p.name for p in cache_dir.iterdir()] == [name]
    assert {p.name for p in (cache_dir / name).iterdir()} == \
        {".fijit-cache", "entries", "index", "locks"}
    assert info["entries"] == 1 and info["bytes"] > 0


def test_bundle_tier_is_read_only(cache_dir, tmp_path):
    """A bundle written by fi-compile serves a fresh process (tier
    'bundle', same key and PTX) and is never written to."""
    import subprocess
    from pathlib import Path
    tool = find_tool("fi-compile")
    if tool is None:
        pytest.skip("fi-compile not found next to the package")
    bundle = tmp_path / "bundle"
    config = ",".join(f"{k}={v}" for k, v in SMALL.items())
    made = subprocess.run([str(tool), "-o", str(bundle), config],
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    key_prefix = made.stdout.split()[2]  # [1/1] name key ...
    before = {p: p.stat().st_mtime_ns for p in bundle.rglob("*")}

    r = run_fijit("""
        k = fijit.compile_attention(**%r)
        report(tier=k.tier, key=k.key, ptx_len=len(k.ptx))
    """ % (SMALL,), FIJIT_BUNDLE_DIR=str(bundle))
    assert r.result["tier"] == "bundle"
    assert r.result["key"].startswith(key_prefix)
    # Nothing was written: not to the bundle, not through to the disk cache.
    assert {p: p.stat().st_mtime_ns for p in bundle.rglob("*")} == before
    assert not cache_files(cache_dir)

    # A corrupted bundle entry is ignored (with a warning), never deleted.
    (entry,) = bundle.glob("v*/entries/*.ptx")
    entry.write_bytes(entry.read_bytes()[:-10])
    r = run_fijit("""
        k = fijit.compile_attention(**%r)
        report(tier=k.tier)
    """ % (SMALL,), FIJIT_BUNDLE_DIR=str(bundle))
    assert r.result["tier"] == "compiled"
    assert "is corrupted; ignoring it" in r.stderr
    assert entry.exists()
