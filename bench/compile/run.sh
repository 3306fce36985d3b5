#!/usr/bin/env bash
# Builds fi-bench-compile and runs it, printing the machine first (for
# bench/RESULTS.md). Arguments go to fi-bench-compile (see --help).
#
#   bench/compile/run.sh [--head-dims=64,128,256] [--reps=5] ...
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

fijit_build fi-bench-compile >/dev/null
log "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
log "cpu: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
log "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
log "command: build/bin/fi-bench-compile $*"
"$FIJIT_BUILD_DIR/bin/fi-bench-compile" "$@"
