#!/usr/bin/env bash
# Checks that an installed fijit is a self-contained, relocatable package:
# installs the build into a prefix, moves that prefix elsewhere, then builds
# and runs test/embed (find_package(fijit), fijit/fijit.h only) against it
# with no LLVM on the include path, and checks libfijit's run-time
# dependencies.
#
#   test/embed/run.sh            (uses $FIJIT_BUILD_DIR, default build/)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

[ -f "$FIJIT_BUILD_DIR/build.ninja" ] || die "no build in $FIJIT_BUILD_DIR; run scripts/setup.sh first"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

log "embed: installing $FIJIT_BUILD_DIR into a prefix"
cmake --install "$FIJIT_BUILD_DIR" --prefix "$tmp/prefix" >"$tmp/install.log" 2>&1 ||
  { cat "$tmp/install.log" >&2; die "cmake --install failed"; }
# Relocatability: the consumer only ever sees the copy; the original is gone.
mkdir -p "$tmp/elsewhere"
cp -a "$tmp/prefix" "$tmp/elsewhere/fijit"
rm -rf "$tmp/prefix"
prefix=$tmp/elsewhere/fijit

lib=$(ls "$prefix"/lib/libfijit.so.* | head -1)
log "embed: ldd $(basename "$lib")"
ldd "$lib" | sed 's/^/[fijit]   /'
if ldd "$lib" | grep -Eiq 'not found|llvm|mlir|cuda|nvrtc|nvidia'; then
  die "libfijit must not need LLVM, MLIR or CUDA libraries at run time"
fi

log "embed: configuring test/embed against $prefix"
cmake -G Ninja -S "$FIJIT_ROOT/test/embed" -B "$tmp/consumer" \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF \
  -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF \
  -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >"$tmp/configure.log" 2>&1 ||
  { cat "$tmp/configure.log" >&2; die "configuring the consumer failed"; }
found=$(sed -n 's/^fijit_DIR:PATH=//p' "$tmp/consumer/CMakeCache.txt")
[ "$found" = "$prefix/lib/cmake/fijit" ] ||
  die "find_package(fijit) found $found, not the relocated prefix"
if grep -Eiq -- '-I[^ ]*(llvm|mlir)' "$tmp/consumer/compile_commands.json"; then
  grep -Ei 'llvm|mlir' "$tmp/consumer/compile_commands.json" >&2
  die "LLVM/MLIR leaked onto the consumer's include path"
fi
cmake --build "$tmp/consumer" >"$tmp/build.log" 2>&1 ||
  { cat "$tmp/build.log" >&2; die "building the consumer failed"; }

ldd "$tmp/consumer/fijit-embed" | grep -q "$prefix/lib/libfijit" ||
  die "fijit-embed does not load libfijit from the relocated prefix"
log "embed: running fijit-embed"
if ! FIJIT_CACHE_DIR="$tmp/cache" "$tmp/consumer/fijit-embed" >"$tmp/run.log" 2>&1; then
  sed 's/^/[fijit]   /' "$tmp/run.log"
  die "fijit-embed failed"
fi
sed 's/^/[fijit]   /' "$tmp/run.log"

log "embed: relocated fi-opt"
"$prefix/bin/fi-opt" --fi-build="mask=causal" --fi-emit=launch >/dev/null ||
  die "the relocated fi-opt does not run"
log "embed: OK (relocatable prefix, find_package(fijit), no LLVM/MLIR/CUDA at run time)"
