#!/usr/bin/env bash
# `pip install .` as a new user would: copies the checkout (tracked and
# untracked files, nothing ignored: what a fresh clone holds), builds the
# wheel from the copy into a fresh virtual environment, and then, outside
# any source tree, compiles the main job's config to PTX through the
# installed package, runs the installed commands (fijit, fi-opt,
# fi-compile) and the CPU pytest suite against the installed package. The
# wheel must be manylinux_2_28 by `auditwheel show`; no userland with an
# older glibc is at hand to load it in, so that is not tried. The wheel's
# bundle is CI's short list (tools/fi-compile/bundles/ci.txt; release wheels
# take default.txt): found inside the installed package without any
# variable, it serves its configs with FIJIT_DISABLE_JIT=1, which refuses
# the others.
# The build reuses ccache (paths relative to the copy, so the main build's
# objects hit) and the copy's build folder across the two pip runs.
#
#   test/wheel/run.sh            FIJIT_JOBS: parallel compiles (default: cores)
#                                FIJIT_WHEEL_BUNDLE: the list to bundle (ci)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
src=$tmp/src
mkdir -p "$src" "$tmp/elsewhere"
git -C "$FIJIT_ROOT" ls-files -z --cached --others --exclude-standard |
  (cd "$FIJIT_ROOT" && xargs -0 cp --parents -t "$src" 2>/dev/null) ||
  die "copying the checkout failed"
log "wheel: copied $(find "$src" -type f | wc -l) files of the checkout to $src"

python3 -m venv "$tmp/venv" ||
  die "python3 -m venv failed (Debian: apt-get install python3-venv)"
py=$tmp/venv/bin/python
pip=("$py" -m pip --disable-pip-version-check -q)
export CCACHE_BASEDIR=$src CMAKE_BUILD_PARALLEL_LEVEL=$FIJIT_JOBS
# Added to pyproject.toml's CMake definitions (the environment wins).
bundle_list=${FIJIT_WHEEL_BUNDLE:-ci}
export SKBUILD_CMAKE_DEFINE="FIJIT_BUNDLE=$bundle_list"

start=$SECONDS
log "wheel: pip wheel (scikit-build-core; build folder in the copy)"
"${pip[@]}" wheel --no-deps -w "$tmp/dist" "$src" >"$tmp/wheel.log" 2>&1 ||
  { tail -40 "$tmp/wheel.log" >&2; die "pip wheel failed"; }
wheel=$(ls "$tmp"/dist/fijit-*.whl)
log "wheel: $(basename "$wheel"), $(($(stat -c %s "$wheel") / 1024 / 1024)) MiB, built in $((SECONDS - start)) s"
"$py" - "$wheel" <<'PY' || die "the wheel's contents are wrong (above)"
import os, sys, zipfile
wheel = zipfile.ZipFile(sys.argv[1])
names = wheel.namelist()
# The bundle: every kernel's PTX, with ptxas's SASS where the build had
# ptxas; what it adds to the wheel.
bundle = [i for i in wheel.infolist()
          if i.filename.startswith("fijit/share/fijit/bundle/v")
          and "/entries/" in i.filename]
ptx = sum(i.filename.endswith(".ptx") for i in bundle)
if not ptx or "fijit/share/fijit/bundle/configs.txt" not in names:
    sys.exit("the wheel has no bundle in fijit/share/fijit/bundle")
print(f"[fijit] wheel: bundle: {ptx} kernels, "
      f"{sum(i.filename.endswith('.cubin') for i in bundle)} ptxas cubins, "
      f"{sum(i.file_size for i in bundle)} bytes "
      f"({sum(i.compress_size for i in bundle)} compressed)")
if os.path.getsize(sys.argv[1]) > 50 << 20:
    sys.exit("the wheel is over 50 MiB")
need = ["fijit/__init__.py", "fijit/py.typed", "fijit/lib/libfijit.so",
        "fijit/flashinfer/__init__.py",
        "fijit/flashinfer/shim/flashinfer/__init__.py",
        "fijit/bin/fi-opt", "fijit/bin/fi-compile", "fijit/include/fijit/fijit.h",
        "fijit/lib/cmake/fijit/fijitConfig.cmake"]
missing = [n for n in need if n not in names]
ext = [n for n in names if n.startswith("fijit/_fijit.") and n.endswith(".so")]
libs = [n for n in names if "libfijit.so" in n]
if missing or len(ext) != 1 or libs != ["fijit/lib/libfijit.so"]:
    sys.exit(f"missing {missing}; extension {ext}; libfijit {libs}")
PY

# Portable: every ELF file loads on glibc 2.28 (cmake/FijitPortable.cmake).
python3 -m venv "$tmp/tools" && "$tmp/tools/bin/python" -m pip \
  --disable-pip-version-check -q install auditwheel >"$tmp/tools.log" 2>&1 ||
  { cat "$tmp/tools.log" >&2; die "installing auditwheel failed"; }
"$tmp/tools/bin/auditwheel" show "$wheel" >"$tmp/auditwheel.txt" 2>&1 ||
  { cat "$tmp/auditwheel.txt" >&2; die "auditwheel show failed"; }
"$py" - "$tmp/auditwheel.txt" <<'PY' || die "the wheel is not manylinux_2_28 (auditwheel above)"
import re, sys
text = " ".join(open(sys.argv[1]).read().split())
tag = re.search(r'consistent with the following platform tag: "([^"]+)"', text)
glibc = re.fullmatch(r"manylinux_2_(\d+)_x86_64", tag.group(1)) if tag else None
if not glibc or int(glibc.group(1)) > 28:
    sys.exit(open(sys.argv[1]).read())
print(f"[fijit] wheel: auditwheel: {tag.group(1)}")
PY

start=$SECONDS
log "wheel: pip install $src (reuses the build folder)"
"${pip[@]}" install "$src" >"$tmp/install.log" 2>&1 ||
  { tail -40 "$tmp/install.log" >&2; die "pip install failed"; }
log "wheel: installed in $((SECONDS - start)) s"

# From here on nothing of the checkout is on any path.
host_python=$(command -v python3) # has pytest; the venv has only fijit
cd "$tmp/elsewhere"
export FIJIT_CACHE_DIR=$tmp/cache PATH=$tmp/venv/bin:$PATH
unset PYTHONPATH
site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')
config=$(sed -n 's/^DEFAULT_CONFIG="\(.*\)"$/\1/p' "$FIJIT_ROOT/scripts/main-job.sh")
[ -n "$config" ] || die "no DEFAULT_CONFIG in scripts/main-job.sh"
# Compiled, even where the bundle holds it (release lists do).
FIJIT_PACKAGE_BUNDLE=0 "$py" - "$site" "$config" <<'PY' || die "compiling through the installed package failed"
import importlib.metadata, sys
from pathlib import Path
import fijit
site, config = sys.argv[1:]
assert Path(fijit.__file__).is_relative_to(site), fijit.__file__
# One version: the wheel's metadata, the C++ core and the package agree.
assert importlib.metadata.version("fijit") == fijit.__version__
kernel = fijit.compile_attention(config)
assert kernel.tier == "compiled" and ".entry " + kernel.name in kernel.ptx
print(f"[fijit] wheel: {kernel.name}: {len(kernel.ptx)} bytes of PTX in "
      f"{kernel.compile_ms:.0f} ms ({fijit.__file__})")
PY
fijit --version | sed 's/^/[fijit] wheel: /'
fijit cache info >"$tmp/info.txt" || die "fijit cache info failed"
grep -qx "entries:     1" "$tmp/info.txt" ||
  { cat "$tmp/info.txt" >&2; die "fijit cache info does not show the compiled kernel"; }
grep -q "^bundle:      [1-9][0-9]* entries, [0-9]* bytes (package): .*/fijit/share/fijit/bundle/v" \
  "$tmp/info.txt" ||
  { cat "$tmp/info.txt" >&2; die "fijit cache info does not show the package's bundle"; }
grep '^bundle:' "$tmp/info.txt" | sed 's/^/[fijit] wheel: /'

# The bundle without any variable: with an empty cache and compiling
# disabled, each listed config is served by it; any other is refused, the
# message naming the config and the variable.
rm -rf "$tmp/cache"
FIJIT_DISABLE_JIT=1 "$py" - "$site/fijit/share/fijit/bundle/configs.txt" <<'PY' ||
import sys, time
import fijit
from fijit import _fijit
lines = (l.split("#", 1)[0].strip() for l in open(sys.argv[1]))
configs = [c for l in lines if l for c in _fijit.expand_config_pattern(l)]
start = time.perf_counter()
for c in configs:
    k = fijit.compile_attention(c)
    assert k.tier == "bundle" and k.ptx, (c, k.tier)
ms = (time.perf_counter() - start) * 1000 / len(configs)
other = "kind=single_decode,num_qo_heads=8,num_kv_heads=8"
try:
    fijit.compile_attention(other)
    sys.exit(f"FIJIT_DISABLE_JIT=1 compiled {other}")
except fijit.JitDisabledError as e:
    refusal = str(e)
canonical = str(fijit.AttentionConfig.from_string(other))
assert f"[{canonical}]" in refusal and "FIJIT_DISABLE_JIT" in refusal, refusal
print(f"[fijit] wheel: FIJIT_DISABLE_JIT=1: {len(configs)} bundled configs "
      f"served ({ms:.2f} ms each), another refused: {refusal}")
PY
  die "the package's bundle or FIJIT_DISABLE_JIT does not work (above)"
[ -z "$(find "$tmp/cache" -name '*.ptx' 2>/dev/null)" ] ||
  die "serving the bundle wrote to the cache"

fi-opt --fi-build="$config" --fi-emit=launch >/dev/null || die "fi-opt failed"
fi-compile -o "$tmp/bundle" "kind=single_decode,num_qo_heads=32,num_kv_heads=8" \
  >/dev/null || die "fi-compile failed"
fijit collect-env >/dev/null || die "fijit collect-env failed"
log "wheel: fijit --version, cache info, collect-env, fi-opt and fi-compile work"

log "wheel: pytest (CPU) against the installed package"
# The FlashInfer contract test reads FlashInfer's source beside the checkout
# (the copy has none beside it).
pack=${FIJIT_FLASHINFER_PACK:-$FIJIT_ROOT/../shared/flashinfer}
if [ -d "$pack" ]; then export FIJIT_FLASHINFER_PACK=$pack; fi
FIJIT_PYTHONPATH=$site "$host_python" -m pytest -q -rs -p no:cacheprovider -m "not gpu" \
  "$src/test/python"
