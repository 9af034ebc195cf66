#!/usr/bin/env bash
# Builds (once, cached) the throwaway Debian rootfs the e2e tests run kiln-envd in.
#   tests/e2e/make-rootfs.sh [--print-path]
# The tree lives outside the repo under $KILN_ROOTFS_CACHE (default /var/cache/kiln/test-rootfs)
# and is only rebuilt when the recipe below changes (stamp file inside the tree). Needs root and
# debootstrap. The mirror is the one the host's apt uses.
set -euo pipefail

cache=${KILN_ROOTFS_CACHE:-/var/cache/kiln/test-rootfs}
suite=bookworm
name=$suite-minbase
target=$cache/$name
packages=bash,coreutils,procps,sudo,python3-minimal
# Bump when the recipe changes in a way the variables above do not capture.
recipe_version=1

log() { echo "make-rootfs: $*" >&2; }

# First deb.debian.org-style URI from the host's apt configuration (deb822 or one-line format).
host_mirror() {
  local uri=""
  shopt -s nullglob
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    uri=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' "$f")
    [[ -n $uri ]] && break
  done
  if [[ -z $uri && -f /etc/apt/sources.list ]]; then
    uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { if ($i !~ /security/) { print $i; exit } else break } }' \
      /etc/apt/sources.list)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

mirror=${KILN_DEBIAN_MIRROR:-$(host_mirror)}
# The mirror is not part of the stamp: the same recipe from another mirror gives the same tree.
stamp="kiln-test-rootfs v$recipe_version suite=$suite variant=minbase packages=$packages user=user"

if [[ ${1:-} == --print-path ]]; then echo "$target"; exit 0; fi

if [[ -f $target/.kiln-rootfs-stamp && "$(cat "$target/.kiln-rootfs-stamp")" == "$stamp" ]]; then
  log "cached: $target"
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then log "must run as root (debootstrap, chroot)"; exit 1; fi
command -v debootstrap >/dev/null || { log "debootstrap missing (scripts/install-deps.sh)"; exit 1; }

mkdir -p "$cache"
# Serialise concurrent builders (e.g. two ctest runs).
exec 9>"$cache/.lock"
flock 9
if [[ -f $target/.kiln-rootfs-stamp && "$(cat "$target/.kiln-rootfs-stamp")" == "$stamp" ]]; then
  log "cached: $target"
  exit 0
fi

tmp=$(mktemp -d "$cache/.build-$name.XXXXXX")
cleanup() {
  # debootstrap may leave proc/sys mounted in the target when it fails.
  local m
  for m in $(awk -v t="$tmp" 'index($2, t) == 1 { print $2 }' /proc/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf --one-file-system "$tmp"
}
trap cleanup EXIT

log "debootstrap $suite ($packages) from $mirror into $tmp (takes a minute)"
if ! debootstrap --variant=minbase --include="$packages" "$suite" "$tmp" "$mirror" \
    >"$cache/debootstrap.log" 2>&1; then
  log "debootstrap failed; last lines of $cache/debootstrap.log:"
  tail -n 30 "$cache/debootstrap.log" >&2
  exit 1
fi

# Users: root exists in every Debian base; add `user` with passwordless sudo like E2B templates.
chroot "$tmp" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin /bin/bash -euc '
  getent passwd root >/dev/null
  if ! getent passwd user >/dev/null; then
    useradd --create-home --home-dir /home/user --shell /bin/bash user
  fi
  echo "user ALL=(ALL:ALL) NOPASSWD: ALL" >/etc/sudoers.d/user
  chmod 0440 /etc/sudoers.d/user
  apt-get clean
  rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* /var/log/dpkg.log
'
# Mount points used by run-envd-rootfs.sh.
mkdir -p "$tmp/proc" "$tmp/dev/pts" "$tmp/tmp" "$tmp/usr/local/bin"
echo "$stamp" >"$tmp/.kiln-rootfs-stamp"

# Atomic replace: rename the finished tree into place, then drop the old one.
if [[ -e $target ]]; then
  old=$(mktemp -d "$cache/.old-$name.XXXXXX")
  mv "$target" "$old/tree"
  mv "$tmp" "$target"
  rm -rf --one-file-system "$old"
else
  mv "$tmp" "$target"
fi
trap - EXIT
log "built $target ($(du -sh "$target" | cut -f1))"
