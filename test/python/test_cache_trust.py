"""The disk cache under hostile or damaged contents: entries bound to their
keys, no path or symlink tricks, private folders, only fijit's folders
cleaned, stale temporaries, and a disk tier that recovers."""
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

import fijit
from conftest import tool as find_tool
from conftest import (SMALL, cache_files, child_env, forge_cache_file,
                      run_cli, run_fijit)

VERSION_DIR = f"v{fijit.__version__}-{fijit.build_id}-llvm{fijit.llvm_version}"
OTHER = dict(SMALL, head_dim_qk=128, head_dim_vo=128)

COMPILE = """
    k = fijit.compile_attention(**%r)
    report(tier=k.tier, key=k.key, config=k.kernel_config,
           ptx_head=k.ptx[:4000], info=fijit.cache.info())
"""


def compile_child(fields=SMALL, timeout=120, **env):
    return run_fijit(COMPILE % (dict(fields),), timeout=timeout, **env)


def index_files(root):
    return sorted(Path(root).glob("v*/index/*"))


def compile_two(cache_dir):
    """SMALL then OTHER: their results and their index files."""
    a = compile_child(SMALL).result
    (index_a,) = index_files(cache_dir)
    b = compile_child(OTHER).result
    (index_b,) = set(index_files(cache_dir)) - {index_a}
    return a, b, index_a, index_b


def entry(root, key, suffix=".ptx"):
    return Path(root) / VERSION_DIR / "entries" / (key + suffix)


def is_root():
    return os.geteuid() == 0


# --- 1. entries bound to their keys ----------------------------------------

def test_entry_copied_under_another_key_is_a_miss(cache_dir):
    """A valid head_dim 128 entry copied over the head_dim 64 one is never
    loaded for the head_dim 64 config."""
    a, b, _, _ = compile_two(cache_dir)
    shutil.copyfile(entry(cache_dir, b["key"]), entry(cache_dir, a["key"]))
    r = compile_child(SMALL)
    assert r.result["tier"] == "compiled"
    assert r.result["key"] == a["key"]
    assert r.result["ptx_head"] == a["ptx_head"]
    assert r.stderr.count("warning") == 1, r.stderr
    assert (f"{entry(cache_dir, a['key'])} was written for "
            f"'{b['key']}.ptx', not for '{a['key']}.ptx'") in r.stderr
    assert compile_child(SMALL).result["tier"] == "disk"


def test_swapped_index_is_a_miss(cache_dir):
    """The index file of OTHER put in place of SMALL's: SMALL still gets
    its own kernel (found by its key under the lock), with one warning."""
    a, b, index_a, index_b = compile_two(cache_dir)
    shutil.copyfile(index_b, index_a)
    r = compile_child(SMALL)
    assert r.result["key"] == a["key"]
    assert r.result["tier"] == "disk"
    assert r.result["ptx_head"] == a["ptx_head"]
    assert r.stderr.count("warning") == 1, r.stderr
    assert (f"cache entry {index_a} was written for '{b['config']}', not "
            f"for '{a['config']}'") in r.stderr
    again = compile_child(SMALL)
    assert again.result["tier"] == "disk" and "warning" not in again.stderr


def test_bundle_entry_under_another_key_is_ignored(cache_dir, tmp_path):
    tool = find_tool("fi-compile")
    if tool is None:
        pytest.skip("fi-compile not found next to the package")
    bundle = tmp_path / "bundle"
    configs = [",".join(f"{k}={v}" for k, v in f.items())
               for f in (SMALL, OTHER)]
    made = subprocess.run([str(tool), "-o", str(bundle), *configs],
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    a, b = (line.split()[2] for line in made.stdout.splitlines()[:2])
    entries = bundle / VERSION_DIR / "entries"
    (ea,) = entries.glob(a + "*.ptx")
    (eb,) = entries.glob(b + "*.ptx")
    shutil.copyfile(eb, ea)
    r = compile_child(SMALL, FIJIT_BUNDLE_DIR=bundle)
    assert r.result["tier"] == "compiled"
    assert f"cache entry {ea} was written for" in r.stderr
    assert "ignoring it" in r.stderr
    assert ea.read_bytes() == eb.read_bytes()  # a bundle is never changed


# --- 2. keys are lowercase hex ---------------------------------------------

def test_index_key_that_walks_out_of_the_cache(cache_dir, tmp_path):
    """A well-formed index whose key is a `../` path neither reads nor
    deletes the file it points at."""
    a = compile_child(SMALL).result
    (index,) = index_files(cache_dir)
    victim = tmp_path / "victim.ptx"
    victim.write_text("precious")
    # entries/<key>.ptx with this key is tmp_path/victim.ptx.
    walk = "../../../victim"
    key = "./" + "/" * (64 - 2 - len(walk)) + walk
    assert len(key) == 64
    forge_cache_file(index, a["config"], key, like=index)
    r = compile_child(SMALL)
    assert victim.read_text() == "precious"
    assert r.result["key"] == a["key"] and r.result["tier"] == "disk"
    assert (f"cache index {index} is corrupted (its key is not 64 lowercase "
            "hex digits)") in r.stderr


def test_uppercase_key_is_refused(cache_dir):
    a = compile_child(SMALL).result
    (index,) = index_files(cache_dir)
    forge_cache_file(index, a["config"], a["key"].upper(), like=index)
    r = compile_child(SMALL)
    assert r.result["key"] == a["key"]
    assert "is not 64 lowercase hex digits" in r.stderr


# --- 3. entry paths that are not regular files ------------------------------

def test_fifo_at_entry_path_does_not_hang(cache_dir):
    a = compile_child(SMALL).result
    path = entry(cache_dir, a["key"])
    path.unlink()
    os.mkfifo(path)
    r = compile_child(SMALL, timeout=60)
    assert r.result["tier"] == "compiled"
    assert f"cache entry {path} cannot be read (it is a FIFO)" in r.stderr


def test_symlink_to_dev_zero_at_entry_path(cache_dir):
    a = compile_child(SMALL).result
    path = entry(cache_dir, a["key"])
    path.unlink()
    path.symlink_to("/dev/zero")
    r = compile_child(SMALL, timeout=60)
    assert r.result["tier"] == "compiled"
    assert (f"cache entry {path} cannot be read (it is a symbolic link)"
            in r.stderr)
    # the write replaced the link with the entry
    assert not path.is_symlink() and path.is_file()


def test_huge_entry_is_not_read(cache_dir):
    a = compile_child(SMALL).result
    path = entry(cache_dir, a["key"])
    with open(path, "r+b") as f:
        f.truncate(1 << 40)  # sparse: no disk used
    r = compile_child(SMALL, timeout=60)
    assert r.result["tier"] == "compiled"
    assert (f"it holds {1 << 40} bytes, more than an entry may"
            in r.stderr)


def test_fifo_in_bundle(cache_dir, tmp_path):
    tool = find_tool("fi-compile")
    if tool is None:
        pytest.skip("fi-compile not found next to the package")
    bundle = tmp_path / "bundle"
    config = ",".join(f"{k}={v}" for k, v in SMALL.items())
    made = subprocess.run([str(tool), "-o", str(bundle), config],
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    (path,) = (bundle / VERSION_DIR / "entries").glob("*.ptx")
    path.unlink()
    os.mkfifo(path)
    r = compile_child(SMALL, timeout=60, FIJIT_BUNDLE_DIR=bundle)
    assert r.result["tier"] == "compiled"
    assert "it is a FIFO" in r.stderr


# --- 4. clear and prune touch only fijit's folders --------------------------

def _project(tmp_path):
    """A project folder used as the cache root by mistake, with folders
    whose names start with v, and a symlink to a folder outside."""
    project = tmp_path / "project"
    for name in ("venv", "vendor", "v0.0.1-llvm21.1.0"):
        (project / name / "entries").mkdir(parents=True)
        (project / name / "entries" / ("0" * 64 + ".ptx")).write_text("mine")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "data.txt").write_text("keep")
    (project / "vlink").symlink_to(outside)
    return project, outside


def _untouched(project, outside):
    for name in ("venv", "vendor", "v0.0.1-llvm21.1.0"):
        assert ((project / name / "entries" / ("0" * 64 + ".ptx"))
                .read_text() == "mine")
    assert (outside / "data.txt").read_text() == "keep"
    assert (project / "vlink").is_symlink()


@pytest.mark.parametrize("action", ["clear", "prune"])
def test_clear_and_prune_leave_other_folders_alone(tmp_path, action):
    project, outside = _project(tmp_path)
    compile_child(SMALL, FIJIT_CACHE_DIR=project)
    r = run_cli("cache", action, FIJIT_CACHE_DIR=project)
    assert r.returncode == 0, r.stderr
    _untouched(project, outside)
    if action == "clear":
        assert r.stdout.splitlines()[1:] == [f"removed {project / VERSION_DIR}"]
        assert r.stdout.startswith("removed 1 cached files (")
    else:
        assert r.stdout.strip() == \
            "removed 0 cached files (0 bytes) and 0 temp files"


def test_clear_does_not_follow_symlinks_inside_a_version_folder(
        cache_dir, tmp_path):
    compile_child(SMALL)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "data.txt").write_text("keep")
    (cache_dir / VERSION_DIR / "entries" / "link").symlink_to(outside)
    (cache_dir / VERSION_DIR / "index" / "file-link").symlink_to(
        outside / "data.txt")
    r = run_cli("cache", "clear")
    assert r.returncode == 0, r.stderr
    assert not (cache_dir / VERSION_DIR).exists()
    assert (outside / "data.txt").read_text() == "keep"


# --- 5. planted symlinks are not followed -----------------------------------

def test_lock_file_symlink_is_not_followed(cache_dir, tmp_path):
    a = compile_child(SMALL).result
    for f in index_files(cache_dir) + cache_files(cache_dir):
        f.unlink()
    target = tmp_path / "planted-target"
    lock = cache_dir / VERSION_DIR / "locks" / (a["key"] + ".lock")
    lock.unlink(missing_ok=True)
    lock.symlink_to(target)
    r = compile_child(SMALL)
    assert r.result["tier"] == "compiled"
    assert not target.exists()
    assert f"cache lock {lock} cannot be used (it is a symbolic link)" \
        in r.stderr


def test_entries_folder_symlink_is_refused(cache_dir, tmp_path):
    compile_child(SMALL)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("x" * 100000)
    entries = cache_dir / VERSION_DIR / "entries"
    shutil.rmtree(entries)
    entries.symlink_to(elsewhere)
    r = compile_child(OTHER, FIJIT_CACHE_MAX_BYTES=10)
    assert r.result["tier"] == "compiled"
    assert [p.name for p in elsewhere.iterdir()] == ["keep.txt"]
    assert (f"cache directory {entries} is not usable (it is a symbolic "
            "link or not a folder); caching in memory only") in r.stderr
    assert r.result["info"]["enabled"] is False


# --- 6. private folders, the owner checked, no shared fallback --------------

def test_folders_and_files_private_whatever_the_umask(tmp_path):
    root = tmp_path / "new" / "cache"  # made by fijit, parents included
    r = run_fijit("""
        import os
        os.umask(0o002)
        k = fijit.compile_attention(**%r)
        report(tier=k.tier)
    """ % (SMALL,), FIJIT_CACHE_DIR=root)
    assert r.result["tier"] == "compiled"
    folders = [tmp_path / "new", root] + [
        p for p in root.rglob("*") if p.is_dir()]
    files = [p for p in root.rglob("*") if p.is_file()]
    assert len(folders) == 6 and len(files) >= 3
    for p in folders:
        assert stat.S_IMODE(p.stat().st_mode) == 0o700, p
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p


@pytest.mark.parametrize("mode", [0o777, 0o775])
def test_root_writable_by_others_is_refused(cache_dir, mode):
    cache_dir.chmod(mode)
    r = compile_child(SMALL)
    assert r.result["tier"] == "compiled"
    assert r.result["info"]["enabled"] is False
    assert (f"cache directory {cache_dir} is not usable (it is writable by "
            in r.stderr) and "without the sticky bit" in r.stderr
    assert list(cache_dir.iterdir()) == []


def test_sticky_shared_root_is_used(cache_dir):
    cache_dir.chmod(0o1777)
    r = compile_child(SMALL)
    assert "warning" not in r.stderr, r.stderr
    assert r.result["info"]["enabled"] is True
    assert stat.S_IMODE((cache_dir / VERSION_DIR).stat().st_mode) == 0o700


@pytest.mark.skipif(not is_root(), reason="needs root to chown a folder to "
                    "another user")
def test_root_owned_by_another_user_is_refused(cache_dir):
    os.chown(cache_dir, 65534, 65534)
    r = compile_child(SMALL)
    assert r.result["info"]["enabled"] is False
    assert (f"cache directory {cache_dir} is not usable (it is owned by uid "
            f"65534, not by this user (uid {os.geteuid()}))") in r.stderr
    assert list(cache_dir.iterdir()) == []


@pytest.mark.skipif(not is_root(), reason="needs root to chown a file to "
                    "another user")
def test_entry_owned_by_another_user_is_not_served(cache_dir):
    a = compile_child(SMALL).result
    os.chown(entry(cache_dir, a["key"]), 65534, 65534)
    r = compile_child(SMALL)
    assert r.result["tier"] == "compiled"
    assert "it is owned by uid 65534" in r.stderr


def test_no_home_means_the_users_home_not_tmp():
    import pwd
    r = run_fijit("report(info=fijit.cache.info())", FIJIT_CACHE_DIR=None,
                  HOME=None, XDG_CACHE_HOME=None)
    home = pwd.getpwuid(os.geteuid()).pw_dir
    assert r.result["info"]["root"] == os.path.join(home, ".cache", "fijit")


# --- 9. stale temporaries ----------------------------------------------------

def test_stale_temporaries_counted_and_pruned(cache_dir):
    compile_child(SMALL)
    version = cache_dir / VERSION_DIR
    old = time.time() - 3600
    stale = [version / "entries" / ("a" * 64 + ".ptx.tmp-0badf00d"),
             version / "index" / ("b" * 64 + ".tmp-deadbeef")]
    for p in stale:
        p.write_bytes(b"x" * 1000)
        os.utime(p, (old, old))
    fresh = version / "entries" / ("c" * 64 + ".ptx.tmp-12345678")
    fresh.write_bytes(b"y" * 10)
    info = run_cli("cache", "info")
    assert "stale temps: 2 (2000 bytes; prune removes them)" in info.stdout
    r = run_cli("cache", "prune")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == \
        "removed 0 cached files (0 bytes) and 2 temp files"
    assert not any(p.exists() for p in stale)
    assert fresh.exists()
    assert "stale temps: 0 (0 bytes" in run_cli("cache", "info").stdout


# --- 10. the disk tier recovers ----------------------------------------------

def test_disk_tier_recovers_after_clear_by_another_process(cache_dir):
    r = run_fijit("""
        import subprocess, sys
        a = fijit.compile_attention(**%r)
        subprocess.run([sys.executable, "-m", "fijit", "cache", "clear"],
                       check=True, capture_output=True)
        b = fijit.compile_attention(**%r)
        report(tiers=[a.tier, b.tier], key=b.key, info=fijit.cache.info())
    """ % (SMALL, OTHER))
    assert r.result["tiers"] == ["compiled", "compiled"]
    assert "warning" not in r.stderr, r.stderr
    assert r.result["info"]["enabled"] is True
    assert [p.name for p in cache_files(cache_dir)] == [r.result["key"] +
                                                        ".ptx"]
    assert (cache_dir / VERSION_DIR / ".fijit-cache").is_file()


def test_folder_at_one_entry_path_leaves_the_tier_on(cache_dir):
    b = compile_child(OTHER).result
    for f in index_files(cache_dir) + cache_files(cache_dir):
        f.unlink()
    entry(cache_dir, b["key"]).mkdir()
    r = run_fijit("""
        b = fijit.compile_attention(**%r)
        a = fijit.compile_attention(**%r)
        report(tiers=[b.tier, a.tier], key=a.key, info=fijit.cache.info())
    """ % (OTHER, SMALL))
    assert r.result["tiers"] == ["compiled", "compiled"]
    assert r.result["info"]["enabled"] is True
    assert f"cannot store cache entry {entry(cache_dir, b['key'])}" \
        in r.stderr
    assert entry(cache_dir, r.result["key"]).is_file()


def _read_only_mount_works():
    if not is_root() or not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c",
                            "mount --bind -o ro / /mnt 2>/dev/null || "
                            "mount --bind -o ro /tmp /tmp"],
                           capture_output=True)
    return probe.returncode == 0


def test_read_only_cache_keeps_serving_hits(cache_dir, tmp_path):
    """After a miss that cannot be stored, the next hit is still served."""
    import json
    from conftest import _script
    a = compile_child(SMALL).result
    script = tmp_path / "child.py"
    script.write_text(_script(COMPILE % (dict(OTHER),) +
                              COMPILE % (dict(SMALL),)))
    if is_root():
        if not _read_only_mount_works():
            pytest.skip("needs a read-only mount (root with unshare -m and "
                        "mount)")
        cmd = ["unshare", "-m", "sh", "-c",
               f'mount --bind -o ro "{cache_dir}" "{cache_dir}" && exec '
               f'"{sys.executable}" "{script}"']
    else:
        for p in [cache_dir] + list(cache_dir.rglob("*")):
            p.chmod(p.stat().st_mode & ~0o222)
        cmd = [sys.executable, str(script)]
    r = subprocess.run(cmd, env=child_env(), capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    other, again = (json.loads(l) for l in r.stdout.splitlines()
                    if l.startswith("{"))
    assert other["tier"] == "compiled"
    assert again["tier"] == "disk" and again["key"] == a["key"]
    assert again["info"]["read_only"] is True
    assert r.stderr.count("warning") == 1, r.stderr
    assert "serving the kernels it holds" in r.stderr
