"""python -m fijit --version, cache info|clear|prune, warm, collect-env;
the fi-opt / fi-compile entry points."""
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest

import fijit
from conftest import SMALL, cache_files, child_env, run_cli, run_fijit

VERSION_DIR = f"v{fijit.__version__}-{fijit.build_id}-llvm{fijit.llvm_version}"


def info_fields(stdout):
    fields = dict(re.findall(r"^([a-z ]+):\s+(.*)$", stdout, re.M))
    assert set(fields) == {"root", "version dir", "enabled", "entries",
                           "size", "stale temps", "bundle"}, stdout
    return fields


def fill(n=2):
    run_fijit("""
        for h in %r:
            fijit.compile_attention(**dict(%r, num_qo_heads=h))
    """ % ([4 * 2 ** i for i in range(n)], SMALL))


def test_info_empty(cache_dir):
    r = run_cli("cache", "info")
    assert r.returncode == 0, r.stderr
    f = info_fields(r.stdout)
    assert f["root"] == str(cache_dir)
    assert f["version dir"] == str(cache_dir / VERSION_DIR)
    assert f["enabled"] == "yes"
    assert f["entries"] == "0"
    assert f["size"] == f"0 bytes (limit {4 << 30})"
    assert f["bundle"] == "none"


def test_info_counts_entries(cache_dir):
    fill(2)
    r = run_cli("cache", "info", FIJIT_CACHE_MAX_BYTES=10 ** 9)
    assert r.returncode == 0, r.stderr
    f = info_fields(r.stdout)
    assert f["root"] == str(cache_dir)
    assert f["entries"] == "2"
    size = sum(p.stat().st_size for p in cache_files(cache_dir))
    assert f["size"] == f"{size} bytes (limit {10 ** 9})"


def test_info_reports_unusable_cache(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    fill_root = blocker / "cache"
    # info alone never writes; a compile in the same process disables it
    r = run_fijit("""
        import fijit.__main__ as cli
        fijit.compile_attention(**%r)
        cli.main(["cache", "info"])
    """ % (SMALL,), FIJIT_CACHE_DIR=fill_root)
    assert "enabled:     no (memory only)" in r.stdout
    assert "not usable" in r.stderr


def old_version(cache_dir, n, marked=True):
    """A version folder of an older fijit holding n entries of 3 bytes
    (with fijit's marker unless `marked` is False)."""
    folder = cache_dir / "v0.0.1-llvm21.1.0"
    (folder / "entries").mkdir(parents=True)
    if marked:
        (folder / ".fijit-cache").write_text("a fijit cache version folder")
    for i in range(n):
        (folder / "entries" / (str(i) * 64 + ".ptx")).write_text("old")
    return folder


def test_clear(cache_dir):
    fill(2)
    size = sum(p.stat().st_size for p in cache_files(cache_dir))
    assert len(cache_files(cache_dir)) == 2
    r = run_cli("cache", "clear")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        f"removed 2 cached files ({size} bytes) and 0 temp files",
        f"removed {cache_dir / VERSION_DIR}"]
    assert not cache_files(cache_dir, "*")
    assert not list(cache_dir.glob("v*"))
    assert info_fields(run_cli("cache", "info").stdout)["entries"] == "0"
    # and the next process compiles again
    r = run_fijit("report(tier=fijit.compile_attention(**%r).tier)" % (SMALL,))
    assert r.result["tier"] == "compiled"


def test_clear_removes_other_versions(cache_dir):
    old = old_version(cache_dir, 1)
    unrelated = cache_dir / "notes.txt"
    unrelated.write_text("keep me")
    r = run_cli("cache", "clear")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "removed 1 cached files (3 bytes) and 0 temp files",
        f"removed {old}"]
    assert not old.exists()
    assert unrelated.read_text() == "keep me"


def test_clear_in_process_forgets_memory_tier(cache_dir):
    r = run_fijit("""
        a = fijit.compile_attention(**%r)
        removed = fijit.cache.clear()
        b = fijit.compile_attention(**%r)
        report(tiers=[a.tier, b.tier], removed=removed)
    """ % (SMALL, SMALL))
    assert r.result["tiers"] == ["compiled", "compiled"]
    removed = r.result["removed"]
    assert removed["files"] == 1 and removed["bytes"] > 0
    assert removed["folders"] == [str(cache_dir / VERSION_DIR)]
    assert len(cache_files(cache_dir)) == 1


def test_prune(cache_dir):
    fill(1)
    (current,) = cache_files(cache_dir)
    old = old_version(cache_dir, 2)
    r = run_cli("cache", "prune")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "removed 2 cached files (6 bytes) and 0 temp files",
        f"removed {old}"]
    assert not old.exists()
    assert cache_files(cache_dir) == [current]
    # nothing left to prune
    r = run_cli("cache", "prune")
    assert r.returncode == 0
    assert r.stdout.strip() == "removed 0 cached files (0 bytes) and 0 temp files"


def test_prune_evicts_beyond_bound(cache_dir):
    fill(3)
    files = cache_files(cache_dir)
    assert len(files) == 3
    bound = files[0].stat().st_size * 3 // 2
    r = run_cli("cache", "prune", FIJIT_CACHE_MAX_BYTES=bound)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("removed 2 cached files (")
    left = cache_files(cache_dir)
    assert len(left) == 1
    assert sum(p.stat().st_size for p in left) <= bound


def test_bad_action():
    r = run_cli("cache", "explode")
    assert r.returncode != 0
    assert "usage:" in r.stderr
    assert "invalid choice: 'explode'" in r.stderr
    assert r.stdout == ""


def test_missing_command():
    r = run_cli()
    assert r.returncode != 0
    assert "usage:" in r.stderr


def test_help_names_versions():
    r = run_cli("--help")
    assert r.returncode == 0
    assert f"fijit {fijit.__version__} (LLVM {fijit.llvm_version})" in r.stdout


def test_build_tree_launcher(cache_dir):
    """build/bin/fijit runs the same command line without `python -m`."""
    import os
    import subprocess
    from pathlib import Path
    launcher = Path(fijit.__file__).parents[2] / "bin" / "fijit"
    if not launcher.exists():
        pytest.skip(f"no launcher at {launcher} (package not from a build "
                    "tree)")
    r = subprocess.run([str(launcher), "cache", "info"], capture_output=True,
                       text=True, env=dict(os.environ,
                                           FIJIT_CACHE_DIR=str(cache_dir)))
    assert r.returncode == 0, r.stderr
    assert f"root:        {cache_dir}" in r.stdout


def test_warm_compiles_configs_and_batch_plans(cache_dir, tmp_path):
    """`warm` fills this machine's cache with one line per kernel; a batch
    prefill config also brings the kernel its plans take for long
    requests. A second run finds them all on disk."""
    listed = tmp_path / "configs.txt"
    listed.write_text("# decode\nkind=single_decode,head_dim_qk=64,"
                      "head_dim_vo=64\n\n")
    args = ("warm", "-j", "2", "--configs", str(listed),
            "head_dim_qk=64,head_dim_vo=64,num_qo_heads=4,num_kv_heads=4",
            "kind=batch_prefill_ragged,num_qo_heads=8,num_kv_heads=8")
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    # One line per kernel as it finishes (two compile at a time).
    assert [l.split()[:2] for l in lines[:4]] == [
        ["[1/4]", "compiled"], ["[2/4]", "compiled"], ["[3/4]", "compiled"],
        ["[4/4]", "compiled"]]
    kernels = sorted(l.split("  ")[-1] for l in lines[:4])
    assert [k.split(",")[0] for k in kernels] == [
        "kind=batch_prefill_ragged", "kind=batch_prefill_ragged",
        "kind=single_decode", "kind=single_prefill"]
    assert {k.split("target=sm_90a,")[1] for k in kernels[:2]} == {
        "tile_q=64,tile_kv=64,num_warps=4,stages=2",
        "tile_q=128,tile_kv=128,num_warps=8,stages=2"}
    assert lines[4] == f"4 kernels in {cache_dir / VERSION_DIR}"
    assert len(cache_files(cache_dir)) == 4
    again = run_cli(*args)
    assert [l.split()[1] for l in again.stdout.splitlines()[:4]] == \
        ["disk"] * 4


def test_warm_expands_patterns(cache_dir):
    """A config pattern, as bundle lists write them: one kernel per
    combination of the alternatives, '+'-joined keys set together."""
    r = run_cli("warm", "-j", "1", "head_dim_qk+head_dim_vo=64,"
                "num_qo_heads=4|8,num_kv_heads=4")
    assert r.returncode == 0, r.stderr
    kernels = [l.split("  ")[-1] for l in r.stdout.splitlines()[:2]]
    assert [k.split(",")[1:4] for k in kernels] == [
        ["head_dim_qk=64", "head_dim_vo=64", "num_qo_heads=4"],
        ["head_dim_qk=64", "head_dim_vo=64", "num_qo_heads=8"]]
    assert r.stdout.splitlines()[2].startswith("2 kernels in ")


def test_warm_reports_a_bad_config(cache_dir):
    r = run_cli("warm", "head_dim_qk=100")
    assert r.returncode == 1
    assert r.stderr.strip() == ("fijit warm: error: invalid head_dim_qk=100: "
                                "allowed values are 64, 96, 128, 192, 256")
    r = run_cli("warm")
    assert r.returncode == 2
    assert "warm: give configs or --configs FILE" in r.stderr


def test_version():
    r = run_cli("--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == (f"fijit {fijit.__version__} (build "
                                f"{fijit.build_id}, LLVM {fijit.llvm_version})")


def test_collect_env(cache_dir):
    fill(1)
    r = run_cli("collect-env", FIJIT_CACHE_MAX_BYTES=12345)
    assert r.returncode == 0, r.stderr
    fields = dict(re.findall(r"^([A-Za-z0-9 ]+):\s+(.*)$", r.stdout, re.M))
    assert fields["fijit"] == (f"{fijit.__version__} (build {fijit.build_id}"
                               f", LLVM {fijit.llvm_version})")
    assert fields["package"] == str(Path(fijit.__file__).parent.resolve())
    # The libfijit this process loaded: beside the package in a wheel, the
    # build tree's lib/ otherwise.
    assert "/libfijit.so" in fields["libfijit"]
    assert Path(fields["libfijit"]).is_file()
    assert fields["cache"].startswith(str(cache_dir / VERSION_DIR) +
                                      " (1 entries, ")
    assert "FIJIT_CACHE_MAX_BYTES=12345" in fields["environment"]
    ok, driver = fijit._fijit.cuda_driver_status()
    assert fields["CUDA driver"] == (driver if ok else "unusable: " + driver)
    assert fields["python"].startswith(platform.python_version())


def test_tool_launchers_run_the_binaries():
    from fijit import _tools
    r = subprocess.run([sys.executable, "-c",
                        "import sys; from fijit._tools import fi_opt; "
                        "sys.argv[1:] = ['--fi-build=head_dim_qk=100']; "
                        "fi_opt()"], env=child_env(), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.strip() == ("fi-opt: error: invalid head_dim_qk=100: "
                                "allowed values are 64, 96, 128, 192, 256")
    assert os.access(_tools.tool_path("fi-compile"), os.X_OK)
