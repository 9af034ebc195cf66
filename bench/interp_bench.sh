#!/usr/bin/env bash
# kiln-interp against its baselines, in one run:
#  1. print(1) round trip: kiln-interp's /execute (HTTP + ZeroMQ to ipykernel, which kiln-interp
#     starts through kiln_ipykernel.py) against Debian's jupyter_client driving
#     (a) the stock kernel (`python3 -m ipykernel_launcher`, what a Jupyter user runs) and
#     (b) the same kiln_ipykernel.py launcher kiln-interp uses.
#     Both ratios are printed; also kiln-interp --stock-kernel, for the A/B.
#  2. create -> first print(1) result: kilnd with a warm code-interpreter pool (kernels started
#     ahead) against starting a kernel and running the cell (jupyter_client, cold).
#   bench/interp_bench.sh BUILD_DIR [--count N] [--creates N] [--roundtrip-only]
set -euo pipefail
build=$(cd "$1" && pwd)
shift
count=300 creates=30 roundtrip_only=0
while (($#)); do
  case $1 in
    --count) count=$2; shift 2 ;;
    --creates) creates=$2; shift 2 ;;
    --roundtrip-only) roundtrip_only=1; shift ;;
    *) echo "unknown flag $1" >&2; exit 2 ;;
  esac
done
here=$(cd "$(dirname "$0")" && pwd)
fast_launcher="$here/../src/interp/python/kiln_ipykernel.py"
templates=${KILN_TEMPLATE_DIR:-/var/cache/kiln/templates}
work=$(mktemp -d /tmp/interp-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Waits for a line matching $2 in file $1 and prints the first capture group of sed -E $3.
wait_for() {
  local file=$1 pattern=$2 out=""
  for _ in $(seq 1200); do
    out=$(sed -nE "$pattern" "$file" | head -1)
    [[ -n $out ]] && { echo "$out"; return 0; }
    sleep 0.1
  done
  echo "timed out waiting in $file" >&2; cat "$file" >&2; return 1
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

export PYDEVD_DISABLE_FILE_VALIDATION=1
# 1. Round trips. kiln-interp on the host (kernels as this user), with kiln-envd beside it for /envs.
"$build/src/cmd/kiln-envd" --listen 127.0.0.1 --port 0 --no-sudo >"$work/envd.log" 2>&1 &
pids+=($!)
envd_port=$(wait_for "$work/envd.log" 's/.*kiln-envd listening.* port=([0-9]+).*/\1/p')
start_interp() {  # LOG [flags...]: starts kiln-interp (in this shell, so cleanup sees its pid)
  local log=$1
  shift
  : >"$log"
  "$build/src/cmd/kiln-interp" --listen 127.0.0.1 --port 0 --envd-port "$envd_port" --user "" \
    --cwd "$work" --runtime-dir "$work/rt-$(basename "$log" .log)" --no-default-contexts "$@" \
    >"$log" 2>&1 &
  pids+=($!)
}
echo "load before: $(cat /proc/loadavg)"
start_interp "$work/interp.log"
interp_port=$(wait_for "$work/interp.log" 's/.*kiln-interp listening.* port=([0-9]+).*/\1/p')
read -r _ k50 k99 < <("$build/bench/interp_bench" --interp "http://127.0.0.1:$interp_port" --count "$count")
start_interp "$work/interp-stock.log" --stock-kernel
stock_port=$(wait_for "$work/interp-stock.log" 's/.*kiln-interp listening.* port=([0-9]+).*/\1/p')
read -r _ ks50 ks99 < <("$build/bench/interp_bench" --interp "http://127.0.0.1:$stock_port" --count "$count")
read -r _ b50 b99 < <(/usr/bin/python3 "$here/jupyter_client_baseline.py" roundtrip "$count" stock)
read -r _ f50 f99 < <(/usr/bin/python3 "$here/jupyter_client_baseline.py" roundtrip "$count" "$fast_launcher")
echo "load after:  $(cat /proc/loadavg)"
echo "print(1) round trip, $count cells (p50 / p99 ms):"
echo "  kiln-interp (kiln_ipykernel.py)                 $k50 / $k99"
echo "  kiln-interp --stock-kernel                      $ks50 / $ks99"
echo "  (a) jupyter_client + stock ipykernel_launcher   $b50 / $b99"
echo "  (b) jupyter_client + kiln_ipykernel.py          $f50 / $f99"
echo "  ratio kiln-interp / (a)  $(ratio "$k50" "$b50")x / $(ratio "$k99" "$b99")x   (the issue's target: p50 <= 0.5x)"
echo "  ratio kiln-interp / (b)  $(ratio "$k50" "$f50")x / $(ratio "$k99" "$f99")x   (same kernel launcher on both sides)"
echo "  ratio --stock-kernel / (a)  $(ratio "$ks50" "$b50")x / $(ratio "$ks99" "$b99")x"
[[ $roundtrip_only == 1 ]] && exit 0

# 2. Create -> first result, through kilnd (its own data dir, name and subnet).
"$build/src/cmd/kilnd" --build-only --template-dir "$templates"
"$build/src/cmd/kilnd" --listen 127.0.0.1:0 --data-dir "$work/kilnd" --template-dir "$templates" \
  --name kibench --subnet 10.251.0.0/16 --pool-size 0 --interp-pool-size 2 >"$work/kilnd.log" 2>&1 &
pids+=($!)
url=$(wait_for "$work/kilnd.log" 's/^kilnd: ready on (http:[^ ]*).*/\1/p')
key=$(wait_for "$work/kilnd.log" 's/.*E2B_API_KEY=(e2b_[0-9a-f]*).*/\1/p')
"$build/bench/interp_bench" --kilnd "$url" --api-key "$key" --count "$creates" >"$work/creates.txt"
read -r _ c50 c99 < <(grep create_call "$work/creates.txt")
read -r _ f50 f99 < <(grep create_to_first "$work/creates.txt")
read -r _ cold50 cold99 < <(/usr/bin/python3 "$here/jupyter_client_baseline.py" cold "$((creates < 10 ? creates : 10))")
echo "create -> first print(1) result, $creates sandboxes (p50 / p99 ms):"
echo "  kiln (warm pool)            $f50 / $f99   (of which the create call $c50 / $c99)"
echo "  cold kernel (jupyter_client) $cold50 / $cold99"
echo "  ratio                       $(ratio "$f50" "$cold50")x   (target p50 <= 100 ms)"
