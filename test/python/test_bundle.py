"""Bundles and FIJIT_DISABLE_JIT: a bundled config is served without
compiling, from $FIJIT_BUNDLE_DIR's folders and from the bundle installed
with the package (found without any variable); with FIJIT_DISABLE_JIT=1 a
config no cache or bundle holds is refused with JitDisabledError naming the
config and the variable, and cached or bundled ones are still served."""
import subprocess
from pathlib import Path

import pytest

from conftest import PACKAGE_DIR, SMALL, run_cli, run_fijit
from conftest import tool as find_tool

# A config the package's bundles never hold (32 query heads are theirs).
UNBUNDLED = dict(SMALL, num_qo_heads=8)


def _text(fields):
    return ",".join(f"{k}={v}" for k, v in fields.items())


def _refusal(fields, **env):
    """What FIJIT_DISABLE_JIT=1 does with `fields` in a fresh process."""
    return run_fijit("""
        import fijit
        try:
            k = fijit.compile_attention(%r)
            report(tier=k.tier)
        except fijit.JitDisabledError as e:
            report(error=str(e), runtime=isinstance(e, RuntimeError),
                   config=str(fijit.AttentionConfig.from_string(%r)))
    """ % (_text(fields), _text(fields)), FIJIT_DISABLE_JIT="1", **env).result


def test_disable_jit_refuses_a_config_nothing_holds(cache_dir):
    r = _refusal(UNBUNDLED)
    assert "error" in r, r
    assert r["runtime"]
    # One message: the canonical config and the variable that refused it.
    assert f"[{r['config']}]" in r["error"]
    assert "FIJIT_DISABLE_JIT" in r["error"]
    assert not list(cache_dir.rglob("*.ptx"))  # nothing compiled


def test_disable_jit_zero_or_empty_compiles(cache_dir):
    for value in ("0", ""):
        r = run_fijit("""
            k = fijit.compile_attention(%r)
            report(tier=k.tier)
        """ % _text(UNBUNDLED), FIJIT_DISABLE_JIT=value).result
        assert r["tier"] in ("compiled", "disk")


def test_disable_jit_serves_the_disk_cache(cache_dir):
    run_fijit("fijit.compile_attention(%r)" % _text(UNBUNDLED))
    assert _refusal(UNBUNDLED) == {"tier": "disk"}


def test_disable_jit_serves_a_bundle_dir(cache_dir, tmp_path):
    fi_compile = find_tool("fi-compile")
    if fi_compile is None:
        pytest.skip("fi-compile not found next to the package")
    bundle = tmp_path / "bundle"
    made = subprocess.run([str(fi_compile), "-o", str(bundle),
                           _text(UNBUNDLED)], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    assert _refusal(UNBUNDLED, FIJIT_BUNDLE_DIR=bundle) == {"tier": "bundle"}
    assert not list(cache_dir.rglob("*.ptx"))  # served, never copied

    info = run_cli("cache", "info", FIJIT_BUNDLE_DIR=bundle)
    assert info.returncode == 0, info.stderr
    (line,) = [l for l in info.stdout.splitlines() if l.startswith("bundle:")]
    assert "1 entries" in line and "(FIJIT_BUNDLE_DIR)" in line
    assert str(bundle) in line


def _package_bundle():
    root = PACKAGE_DIR / "fijit" / "share" / "fijit" / "bundle"
    if not (root / "configs.txt").is_file():
        pytest.skip(f"the package under test has no bundle ({root}): "
                    "in-tree builds make none; test/wheel/run.sh builds a "
                    "wheel with one")
    return root


def test_package_bundle_serves_every_listed_config(cache_dir):
    """Found beside libfijit without any variable, and every config of the
    list it was built from is served by it, never compiled, in a fresh
    process with an empty cache."""
    root = _package_bundle()
    r = run_fijit("""
        import fijit
        from fijit import _fijit
        lines = [l.split("#", 1)[0].strip()
                 for l in open(%r).read().splitlines()]
        configs = [c for l in lines if l
                   for c in _fijit.expand_config_pattern(l)]
        tiers = {}
        for c in configs:
            k = fijit.compile_attention(c)
            tiers.setdefault(k.tier, []).append(c)
        report(tiers={t: len(c) for t, c in tiers.items()},
               other=[c for t, cs in tiers.items() if t != "bundle"
                      for c in cs][:3],
               bundles=fijit.cache.info()["bundles"])
    """ % str(root / "configs.txt"), FIJIT_PACKAGE_BUNDLE=None,
        FIJIT_DISABLE_JIT="1").result
    assert list(r["tiers"]) == ["bundle"], r
    (b,) = r["bundles"]
    assert b["packaged"] and Path(b["root"]).resolve() == root.resolve()
    assert b["entries"] >= r["tiers"]["bundle"] and b["bytes"] > 0
    assert not list(cache_dir.rglob("*.ptx"))

    # FIJIT_PACKAGE_BUNDLE=0 turns it off: the same refusal as elsewhere.
    info = run_cli("cache", "info", FIJIT_PACKAGE_BUNDLE=None)
    assert f"(package): {b['version_dir']}" in info.stdout, info.stdout
    off = run_cli("cache", "info")
    assert "bundle:      none" in off.stdout, off.stdout
