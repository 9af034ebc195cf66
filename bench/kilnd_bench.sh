#!/usr/bin/env bash
# Starts a throwaway kilnd (own data dir, name and subnet; a warm pool big enough for the
# sequential burst) and runs kilnd_create_bench against it, with bwrap as the baseline.
#   bench/kilnd_bench.sh BUILD_DIR [--count N] [--parallel N] [--idle N]
set -euo pipefail
build=$(cd "$1" && pwd)
shift
templates=${KILN_TEMPLATE_DIR:-/var/cache/kiln/templates}
# A warm pool sized for the sequential burst, as an operator would size it for a known load.
pool=${KILN_BENCH_POOL:-220}
data=$(mktemp -d /tmp/kilnd-bench.XXXXXX)
log=$data/kilnd.log
"$build/src/cmd/kilnd" --build-only --template-dir "$templates"
"$build/src/cmd/kilnd" --listen 127.0.0.1:0 --data-dir "$data" --template-dir "$templates" \
  --name kbench --subnet 10.250.0.0/16 --pool-size "$pool" >"$log" 2>&1 &
kpid=$!
cleanup() {
  kill -TERM "$kpid" 2>/dev/null || true
  wait "$kpid" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT
url="" key=""
for _ in $(seq 600); do
  url=$(sed -n 's/^kilnd: ready on \(http:[^ ]*\).*/\1/p' "$log")
  [[ -n $url ]] && break
  kill -0 "$kpid" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.1
done
[[ -n $url ]] || { echo "kilnd did not start" >&2; cat "$log" >&2; exit 1; }
key=$(sed -n 's/.*E2B_API_KEY=\(e2b_[0-9a-f]*\).*/\1/p' "$log")
# Let the pool fill before measuring (it refills behind every claim during the run).
for _ in $(seq 1200); do
  ready=$(curl -s -H "X-API-Key: $key" "$url/kiln/status" | sed -n 's/.*"ready":\([0-9]*\).*/\1/p')
  [[ ${ready:-0} -ge $pool ]] && break
  sleep 0.1
done
echo "kilnd $url, warm pool $ready/$pool"
"$build/bench/kilnd_create_bench" --url "$url" --api-key "$key" --rootfs "$templates/base/rootfs" "$@"
