#!/usr/bin/env bash
# Installs everything kiln needs to build and test on a fresh Debian 12 machine (as root).
# Only Debian packages (apt) and, for the JS test clients, the npm registry.
set -euo pipefail

APT_PACKAGES=(
  build-essential cmake ninja-build pkg-config git ca-certificates curl
  libboost1.74-dev nlohmann-json3-dev libssl-dev zlib1g-dev
  libgtest-dev libgmock-dev
  libmnl-dev libnftables-dev libseccomp-dev libsqlite3-dev
  debootstrap util-linux iproute2 procps python3 bubblewrap
  nodejs
  libzmq3-dev cppzmq-dev
  # Kernels for kiln-interp's tests and its benchmark baseline (jupyter_client drives the same
  # ipykernel), and the in-kernel helper's tests.
  python3-ipykernel python3-jupyter-client python3-numpy python3-pandas python3-matplotlib
  python3-seaborn python3-sklearn
  # The vm runtime: QEMU (TCG or KVM), qcow2 overlays, ext4 images, liblzma for unpacking the
  # guest kernel, a static busybox for its boot test.
  qemu-system-x86 qemu-utils e2fsprogs liblzma-dev busybox-static
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# JS test clients (official E2B SDK, pinned in tests/e2e/package-lock.json).
root=$(cd "$(dirname "$0")/.." && pwd)
if [[ -f "$root/tests/e2e/package.json" ]]; then
  if [[ ! -d "$root/tests/e2e/node_modules" ]] ||
     [[ "$root/tests/e2e/package-lock.json" -nt "$root/tests/e2e/node_modules" ]]; then
    echo "install-deps: npm ci (tests/e2e)"
    (cd "$root/tests/e2e" && npm ci --no-audit --no-fund --loglevel=error)
    touch "$root/tests/e2e/node_modules"
  fi
fi
