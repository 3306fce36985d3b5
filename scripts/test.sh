#!/usr/bin/env bash
# fijit's second command: the whole test suite. Builds first if needed, then
# runs every step below and exits non-zero if any failed. Steps that need
# hardware which is missing are skipped with the reason, never passed.
#
#   scripts/test.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

failed=()
step() { # name command...
  local name=$1 start=$SECONDS
  shift
  log "---- $name"
  if "$@"; then
    log "$name: passed ($((SECONDS - start)) s)"
  else
    log "$name: FAILED ($((SECONDS - start)) s)"
    failed+=("$name")
  fi
}

# 1. Build (configures a fresh checkout; incremental otherwise).
fijit_build

# 2. lit/FileCheck tests of every stage (test/*, `ninja check-fijit`).
lit_tests() {
  if ! ninja -C "$FIJIT_BUILD_DIR" -t query check-fijit >/dev/null 2>&1; then
    log "the build defines no check-fijit target (test/CMakeLists.txt)"
    return 1
  fi
  ninja -C "$FIJIT_BUILD_DIR" check-fijit
}
step "lit (check-fijit)" lit_tests

# 3. An installed, relocated fijit embedded through find_package(fijit).
step "embed (find_package consumer)" "$FIJIT_ROOT/test/embed/run.sh"

# 3b. `pip install .` from a clean copy of the checkout into a fresh virtual
# environment; the installed package compiles the main job's config outside
# the source tree, and its commands and the CPU pytest suite run against it.
step "wheel (pip install from a clean copy)" "$FIJIT_ROOT/test/wheel/run.sh"

# 4. pytest: Python API, cache (several processes at once) and error
# messages; `gpu` tests run in step 5 or are skipped with their reason.
python_tests() {
  FIJIT_PYTHONPATH="$FIJIT_BUILD_DIR/python" python3 -m pytest -q \
    -p no:cacheprovider -m "not gpu" "$FIJIT_ROOT/test/python"
}
step "pytest (CPU)" python_tests

# 5. GPU: every kernel of the test/gpu matrix against a float32 reference.
gpu_tests() {
  local dir
  dir=$(mktemp -d)
  "$FIJIT_ROOT/test/gpu/gen-ptx-set.sh" "$FI_OPT" "$dir" &&
    python3 "$FIJIT_ROOT/test/gpu/ptx_harness.py" check "$dir"
  local rc=$?
  rm -rf "$dir"
  return $rc
}
if have_gpu; then
  step "GPU (PTX harness vs float32 reference)" gpu_tests
  gpu_pytest() {
    FIJIT_PYTHONPATH="$FIJIT_BUILD_DIR/python" python3 -m pytest -q \
      -p no:cacheprovider -m gpu "$FIJIT_ROOT/test/python"
  }
  step "pytest -m gpu" gpu_pytest
else
  log "---- GPU tests skipped: $GPU_MISSING_REASON"
fi

if [ ${#failed[@]} -gt 0 ]; then
  log "FAILED: ${failed[*]}"
  exit 1
fi
log "all tests passed"
