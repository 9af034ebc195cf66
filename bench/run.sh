#!/usr/bin/env bash
# Runs every benchmark against the binaries in BUILD_DIR (called by `tools/dev bench`).
#   bench/run.sh BUILD_DIR [extra flags for envd_start_bench, e.g. --iterations 1000]
# Each benchmark prints a table and one JSON line; a missed performance target does not fail
# the run, a broken benchmark does.
set -euo pipefail
if [[ $# -lt 1 ]]; then
  echo "usage: bench/run.sh BUILD_DIR [flags...]" >&2
  exit 2
fi
build=$(cd "$1" && pwd)
shift

if [[ ! -x "$build/bench/envd_start_bench" || ! -x "$build/src/cmd/kiln-envd" ]]; then
  ninja -C "$build" envd_start_bench kiln-envd
fi

echo "== envd_start_bench"
"$build/bench/envd_start_bench" --envd "$build/src/cmd/kiln-envd" "$@"

echo "== kilnd_create_bench"
if [[ ! -x "$build/bench/kilnd_create_bench" ]]; then ninja -C "$build" kilnd_create_bench; fi
"$(dirname "$0")/kilnd_bench.sh" "$build"

echo "== interp_bench"
if [[ ! -x "$build/bench/interp_bench" ]]; then ninja -C "$build" interp_bench; fi
"$(dirname "$0")/interp_bench.sh" "$build"

echo "== vm_bench"
if [[ ! -x /usr/bin/qemu-system-x86_64 ]]; then
  echo "skipped: no /usr/bin/qemu-system-x86_64 (the vm runtime needs qemu-system-x86)"
else
  if [[ ! -x "$build/bench/vm_bench" ]]; then ninja -C "$build" vm_bench; fi
  "$(dirname "$0")/vm_bench.sh" "$build"
fi
