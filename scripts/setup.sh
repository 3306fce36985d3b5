#!/usr/bin/env bash
# fijit's first command on a fresh Debian 12 machine: installs the
# dependencies, configures and builds, then runs the main job
# (scripts/main-job.sh). Safe to run again: installed packages and an
# existing build are reused.
#
#   scripts/setup.sh [--install-only | --no-main-job]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

mode=all
case "${1:-}" in
  "") ;;
  --install-only) mode=install ;;
  --no-main-job) mode=build ;;
  -h | --help) sed -n '2,8p' "$0"; exit 0 ;;
  *) die "unknown argument '$1' (expected --install-only or --no-main-job)" ;;
esac

LLVM_VERSION=22
APT_PACKAGES=(
  "llvm-$LLVM_VERSION-dev" "libmlir-$LLVM_VERSION-dev"
  "mlir-$LLVM_VERSION-tools" "llvm-$LLVM_VERSION-tools"
  libzstd-dev zlib1g-dev libedit-dev ccache "lld-$LLVM_VERSION"
  ninja-build cmake g++ python3-pip python3-dev python3-venv
)

apt_quiet() {
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -q -y \
    -o Dpkg::Use-Pty=0 "$@" >/dev/null
}

# Debian 12's configured sources normally provide LLVM 22; where they do not,
# apt.llvm.org's bookworm repository does.
add_llvm_apt_repo() {
  log "llvm-$LLVM_VERSION-dev not in the APT sources: adding apt.llvm.org (llvm-toolchain-bookworm-$LLVM_VERSION)"
  apt_quiet install --no-install-recommends ca-certificates curl
  as_root mkdir -p /etc/apt/keyrings
  curl -fsSL https://apt.llvm.org/llvm-snapshot.gpg.key |
    as_root tee /etc/apt/keyrings/apt.llvm.org.asc >/dev/null
  echo "deb [signed-by=/etc/apt/keyrings/apt.llvm.org.asc] http://apt.llvm.org/bookworm/ llvm-toolchain-bookworm-$LLVM_VERSION main" |
    as_root tee "/etc/apt/sources.list.d/llvm-toolchain-bookworm-$LLVM_VERSION.list" >/dev/null
  apt_quiet update
}

install_packages() {
  local missing=() pkg
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null | grep -qx installed ||
      missing+=("$pkg")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    log "APT packages already installed (${#APT_PACKAGES[@]} checked): skipping apt-get"
  else
    log "installing ${missing[*]}"
    apt_quiet update
    local candidate
    candidate=$(apt-cache policy "llvm-$LLVM_VERSION-dev" 2>/dev/null |
      awk '/Candidate:/ {print $2}')
    if [ -z "$candidate" ] || [ "$candidate" = "(none)" ]; then
      add_llvm_apt_repo
    fi
    apt_quiet install --no-install-recommends "${missing[@]}"
    log "APT packages installed"
  fi

  # Python packages: lit runs the FileCheck tests (check-fijit); pybind11
  # builds the Python extension (python/); pytest runs test/python.
  local py_missing=() mod
  for mod in lit pybind11 pytest; do
    python3 -c "import $mod" 2>/dev/null || py_missing+=("$mod")
  done
  if [ ${#py_missing[@]} -eq 0 ]; then
    log "Python packages already installed (lit, pybind11, pytest)"
  else
    log "installing ${py_missing[*]} with pip"
    local pip=(python3 -m pip install -q --disable-pip-version-check)
    [ "$(id -u)" -eq 0 ] || pip+=(--user)
    # Debian's Python is externally managed (PEP 668); these are leaf packages.
    "${pip[@]}" "${py_missing[@]}" 2>/dev/null ||
      "${pip[@]}" --break-system-packages "${py_missing[@]}"
  fi
}

log "setup in $FIJIT_ROOT"
install_packages
[ "$mode" = install ] && exit 0

fijit_build
[ "$mode" = build ] && exit 0

exec "$FIJIT_ROOT/scripts/main-job.sh"
