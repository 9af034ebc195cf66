#!/usr/bin/env bash
# The vm runtime against a cold boot of the same guest, in one run (bench/vm_bench.cc):
#  1. create -> first output of `echo ready` with a warm pool (a throwaway kilnd --runtime vm,
#     --pool-size 4; the pool is full again before each create),
#  2. the same without a pool (a second throwaway kilnd, --pool-size 0: the snapshot restore is
#     on the create path), then cold boots of the guest, then memory per idle VM and how many
#     idle VMs run at once (against that second kilnd).
#   bench/vm_bench.sh BUILD_DIR [--count 50] [--idle 20] [--max 60] [--boots 8] [--pool 4]
# Both kilnds use their own data dir, name and subnet; their sandboxes die with them.
set -euo pipefail
if [[ $# -lt 1 ]]; then
  echo "usage: bench/vm_bench.sh BUILD_DIR [--count N] [--idle N] [--max N] [--boots N] [--pool N]" >&2
  exit 2
fi
build=$(cd "$1" && pwd)
shift
count=50 idle=20 max=60 boots=8 pool=4
while (($#)); do
  case $1 in
    --count) count=$2; shift 2 ;;
    --idle) idle=$2; shift 2 ;;
    --max) max=$2; shift 2 ;;
    --boots) boots=$2; shift 2 ;;
    --pool) pool=$2; shift 2 ;;
    *) echo "unknown flag $1" >&2; exit 2 ;;
  esac
done
templates=${KILN_TEMPLATE_DIR:-/var/cache/kiln/templates}
name=kvmb
work=$(mktemp -d /tmp/vm-bench.XXXXXX)
kpid="" url="" key=""

stop_kilnd() {
  if [[ -n $kpid ]]; then
    kill -TERM "$kpid" 2>/dev/null || true
    wait "$kpid" 2>/dev/null || true
    kpid=""
  fi
}
cleanup() {
  stop_kilnd
  rm -rf "$work"
}
trap cleanup EXIT

# start_kilnd DIR POOL: a kilnd whose base template runs in the vm runtime (code-interpreter-v1
# stays ns, so no snapshot of it is built at start); sets url and key. A kilnd makes its vm
# template snapshots before it says it is ready: the first start after a rebuild of the agent
# boots the template (a minute or more under TCG).
start_kilnd() {
  local data=$1 size=$2
  mkdir -p "$data"
  "$build/src/cmd/kilnd" --listen 127.0.0.1:0 --data-dir "$data" --template-dir "$templates" \
    --name "$name" --subnet 10.249.0.0/16 --runtime vm --pool-size "$size" \
    --interp-pool-size 0 --template-runtime code-interpreter-v1=ns >"$data/kilnd.log" 2>&1 &
  kpid=$!
  url="" key=""
  for _ in $(seq 6000); do
    url=$(sed -n 's/^kilnd: ready on \(http:[^ ]*\).*/\1/p' "$data/kilnd.log")
    [[ -n $url ]] && break
    kill -0 "$kpid" 2>/dev/null || { cat "$data/kilnd.log" >&2; exit 1; }
    sleep 0.1
  done
  [[ -n $url ]] || { echo "kilnd did not start" >&2; cat "$data/kilnd.log" >&2; exit 1; }
  key=$(sed -n 's/.*E2B_API_KEY=\(e2b_[0-9a-f]*\).*/\1/p' "$data/kilnd.log")
}

"$build/src/cmd/kilnd" --build-only --template-dir "$templates"
echo "loadavg before: $(cat /proc/loadavg)"

# 1. Warm pool (vm_bench waits for it to fill).
start_kilnd "$work/pool" "$pool"
"$build/bench/vm_bench" --phase pool --url "$url" --api-key "$key" --count "$count" \
  --out "$work/pool.json"
stop_kilnd

# 2. No pool, the baseline, idle memory and density; prints the report of both phases.
start_kilnd "$work/nopool" 0
"$build/bench/vm_bench" --phase main --url "$url" --api-key "$key" --name "$name" \
  --envd "$build/src/cmd/kiln-envd" --pool-results "$work/pool.json" --count "$count" \
  --boots "$boots" --idle "$idle" --max "$max"
stop_kilnd
