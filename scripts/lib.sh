# Shared helpers of fijit's scripts; sourced, not run.
#   FIJIT_BUILD_DIR  build directory (default: <repo>/build)
#   FIJIT_JOBS       parallel build jobs (default: number of cores)

FIJIT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FIJIT_BUILD_DIR=${FIJIT_BUILD_DIR:-$FIJIT_ROOT/build}
FIJIT_JOBS=${FIJIT_JOBS:-$(nproc)}
FI_OPT=$FIJIT_BUILD_DIR/bin/fi-opt
# ccache hits across checkouts at different paths.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$FIJIT_ROOT}

log() { printf '[fijit] %s\n' "$*"; }
die() { printf '[fijit] error: %s\n' "$*" >&2; exit 1; }

# Runs a command as root: directly when root, else through sudo.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    die "need root or sudo to run: $*"
  fi
}

# Configures the build directory if it has no build.ninja yet.
fijit_configure() {
  if [ -f "$FIJIT_BUILD_DIR/build.ninja" ]; then
    return
  fi
  log "configuring $FIJIT_BUILD_DIR (Release, Ninja)"
  local cmake_log
  cmake_log=$(mktemp)
  if ! cmake -G Ninja -S "$FIJIT_ROOT" -B "$FIJIT_BUILD_DIR" \
      -DCMAKE_BUILD_TYPE=Release >"$cmake_log" 2>&1; then
    cat "$cmake_log" >&2
    rm -f "$cmake_log"
    die "cmake configure failed (output above)"
  fi
  grep -E 'Using (MLIR|LLVM)Config' "$cmake_log" | sed 's/^-- /[fijit]   /' || true
  rm -f "$cmake_log"
}

# Configures if needed, then builds everything (or the targets given).
fijit_build() {
  fijit_configure
  log "building with ninja -j$FIJIT_JOBS ${*:-(all)}"
  local start=$SECONDS
  ninja -C "$FIJIT_BUILD_DIR" -j "$FIJIT_JOBS" "$@" || die "build failed (ninja output above)"
  log "build done in $((SECONDS - start)) s"
}

# Where ptxas is, if the CUDA toolkit is installed; empty otherwise. Same
# search as the lit suite: $CUDA_HOME/bin, /usr/local/cuda/bin, then PATH.
find_ptxas() {
  local p
  for p in ${CUDA_HOME:+"$CUDA_HOME/bin/ptxas"} /usr/local/cuda/bin/ptxas; do
    if [ -x "$p" ]; then
      echo "$p"
      return
    fi
  done
  command -v ptxas 2>/dev/null || true
}

# Succeeds when a GPU can run the harness: nvidia-smi sees a GPU and python3
# has torch with CUDA. Otherwise sets GPU_MISSING_REASON.
have_gpu() {
  GPU_MISSING_REASON=""
  if ! command -v nvidia-smi >/dev/null; then
    GPU_MISSING_REASON="nvidia-smi not found"
  elif ! nvidia-smi -L >/dev/null 2>&1; then
    GPU_MISSING_REASON="nvidia-smi finds no GPU"
  elif ! python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' \
      >/dev/null 2>&1; then
    GPU_MISSING_REASON="python3 has no torch with CUDA"
  fi
  [ -z "$GPU_MISSING_REASON" ]
}
