#!/usr/bin/env bash
# Runs kiln-envd chrooted in a throwaway Debian rootfs, the way a sandbox would.
#
#   tests/e2e/run-envd-rootfs.sh AGENT_BINARY -- COMMAND...   (tests)
#   tests/e2e/run-envd-rootfs.sh AGENT_BINARY --foreground    (tools/dev up)
#   (--foreground may also come first.)
#
# Test mode: private mount + pid + network namespaces (only lo, so the fixed port 49983 never
# clashes with anything on the host). Two agents run in the same rootfs: the main one on 49983
# (what E2B_DEBUG=true SDK clients use) and a spare one on 49984 for tests that change global
# agent state such as the access token. Both get POST /init like the control plane would send,
# then COMMAND runs on the host filesystem inside the same network namespace with
#   E2B_DEBUG=true  KILN_E2E_ENVD_URL=http://localhost:49983  KILN_E2E_SPARE_ENVD_URL=http://localhost:49984
# The exit status is COMMAND's. Foreground mode: host network, one agent on 127.0.0.1:49983,
# runs until interrupted.
#
# The root filesystem is an overlay: the cached tree from make-rootfs.sh is the read-only lower
# layer, the upper layer is a tmpfs, so every run starts from the same state and nothing is
# written back. All mounts live in the private mount namespace and every process in the private
# pid namespace: both vanish when this script ends, on any path.
#
# Environment: KILN_ROOTFS (rootfs tree; default: the cached one, built by make-rootfs.sh if needed),
# KILN_E2E_LOG_DIR (keep agent logs there; otherwise they are shown on failure and dropped),
# KILN_ENVD_INIT_ENVS (JSON object for /init envVars).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
main_port=49983
spare_port=49984
default_init_envs='{"KILN_E2E_GLOBAL":"from-init","KILN_E2E_OVERRIDE":"global"}'

die() { echo "run-envd-rootfs: $*" >&2; exit 1; }
log() { echo "run-envd-rootfs: $*" >&2; }

# ---------------------------------------------------------------------------------------------
# Inner part: PID 1 of the new pid namespace, inside the private mount (and maybe net) namespace.
inner() {
  local agent=$1 rootfs=$2 work=$3 mode=$4
  shift 4
  local merged=$work/root
  local -a agent_pids=()
  local -a ports=("$main_port")
  [[ $mode == test ]] && ports+=("$spare_port")

  inner_cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    local pid
    for pid in "${agent_pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    # Everything else in this pid namespace dies with us (we are PID 1); mounts go with the
    # mount namespace.
    exit "$rc"
  }
  trap inner_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM HUP

  mount --make-rprivate /
  if [[ $mode == test ]]; then
    ip link set lo up
  fi

  # Throwaway overlay root.
  mount -t tmpfs -o mode=0755 kiln-e2e-upper "$work/layer"
  mkdir -p "$work/layer/upper" "$work/layer/work" "$merged"
  mount -t overlay overlay \
    -o "lowerdir=$rootfs,upperdir=$work/layer/upper,workdir=$work/layer/work" "$merged"
  mount -t proc -o nosuid,nodev,noexec proc "$merged/proc"
  mkdir -p "$merged/dev/pts" "$merged/dev/shm"
  mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts "$merged/dev/pts"
  rm -f "$merged/dev/ptmx"
  ln -s pts/ptmx "$merged/dev/ptmx"
  mount -t tmpfs -o mode=1777,nosuid,nodev shm "$merged/dev/shm"
  mount -t tmpfs -o mode=1777,nosuid,nodev tmp "$merged/tmp"
  install -m 0755 "$agent" "$merged/usr/local/bin/kiln-envd"

  local listen=0.0.0.0
  [[ $mode == foreground ]] && listen=127.0.0.1
  local port logf
  for port in "${ports[@]}"; do
    # Test mode: logs to a file (shown on failure); foreground: straight to the terminal.
    if [[ $mode == foreground ]]; then
      exec 3>&2
    else
      exec 3>>"$work/logs/envd-$port.log"
    fi
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
      chroot "$merged" /usr/local/bin/kiln-envd --listen "$listen" --port "$port" \
      >&3 2>&3 </dev/null &
    agent_pids+=($!)
    exec 3>&-
  done

  # Wait for /health (bounded), then configure like the control plane does.
  local init_envs=${KILN_ENVD_INIT_ENVS:-$default_init_envs}
  local i
  for i in "${!ports[@]}"; do
    port=${ports[$i]}
    local ok=0 try
    for ((try = 0; try < 100; try++)); do
      if ! kill -0 "${agent_pids[$i]}" 2>/dev/null; then
        log "kiln-envd on port $port exited during startup"
        return 1
      fi
      if curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$port/health" 2>/dev/null; then
        ok=1
        break
      fi
      sleep 0.1
    done
    ((ok)) || { log "kiln-envd on port $port did not answer /health within 10 s"; return 1; }
    curl -fsS -o /dev/null --max-time 5 -X POST -H 'Content-Type: application/json' \
      --data "{\"defaultUser\":\"user\",\"envVars\":$init_envs}" \
      "http://127.0.0.1:$port/init" || { log "POST /init on port $port failed"; return 1; }
  done

  if [[ $mode == foreground ]]; then
    cat >&2 <<EOF

kiln-envd is running in a throwaway Debian rootfs on http://localhost:$main_port (default user
'user', global env from /init: $init_envs).
Use it with the official SDK in debug mode, e.g.:
  cd $here && E2B_DEBUG=true node -e "
    import('e2b').then(async ({ Sandbox }) => {
      const sbx = await Sandbox.create();
      console.log(await sbx.commands.run('uname -a; whoami'));
    })"
Run the e2e tests against it: cd $here && E2B_DEBUG=true node --test envd/
Press Ctrl-C to stop; the rootfs changes are discarded.

EOF
    local arc=0
    wait "${agent_pids[0]}" || arc=$?
    return "$arc"
  fi

  # In the background so that a TERM from the outer part is handled at once (bash defers traps
  # while a foreground child runs).
  local rc=0
  E2B_DEBUG=true \
  KILN_E2E_ENVD_URL=http://localhost:$main_port \
  KILN_E2E_SPARE_ENVD_URL=http://localhost:$spare_port \
    "$@" &
  wait $! || rc=$?
  for i in "${!ports[@]}"; do
    if ! kill -0 "${agent_pids[$i]}" 2>/dev/null; then
      log "kiln-envd on port ${ports[$i]} died during the run"
      ((rc != 0)) || rc=1
    fi
  done
  return "$rc"
}

if [[ ${1:-} == --inner ]]; then
  shift
  inner "$@"
  exit $?
fi

# ---------------------------------------------------------------------------------------------
# Outer part: argument parsing, the scratch directory and its cleanup.
agent="" mode="" cmd=()
while (($#)); do
  case $1 in
    --foreground) mode=foreground; shift ;;
    --) shift; cmd=("$@"); mode=${mode:-test}; break ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    -*) die "unknown option $1" ;;
    *) [[ -z $agent ]] || die "unexpected argument $1"; agent=$1; shift ;;
  esac
done
[[ -n $agent ]] || die "usage: $0 AGENT_BINARY [--foreground | -- COMMAND...]"
[[ -n $mode ]] || die "give --foreground or -- COMMAND..."
[[ $mode == foreground && ${#cmd[@]} -gt 0 ]] && die "--foreground takes no COMMAND"
[[ $mode == test && ${#cmd[@]} -eq 0 ]] && die "missing COMMAND after --"
[[ $(id -u) -eq 0 ]] || die "must run as root (namespaces, mounts, chroot)"
[[ -x $agent ]] || die "agent binary $agent is not executable"
agent=$(realpath "$agent")
if file_out=$(file -b "$agent" 2>/dev/null) && [[ $file_out == *dynamically* ]]; then
  log "warning: $agent is dynamically linked; it may not run inside the rootfs"
fi

if [[ -n ${KILN_ROOTFS:-} ]]; then
  rootfs=$KILN_ROOTFS
else
  # Builds the cached rootfs on first use (debootstrap, about a minute), else returns at once.
  "$here/make-rootfs.sh"
  rootfs=$("$here/make-rootfs.sh" --print-path)
fi
[[ -f $rootfs/.kiln-rootfs-stamp ]] || die "no rootfs at $rootfs (run tests/e2e/make-rootfs.sh)"

work=$(mktemp -d /tmp/kiln-e2e.XXXXXX)
mkdir -p "$work/layer" "$work/root" "$work/logs"
inner_pid=""
outer_cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  if [[ -n $inner_pid ]] && kill -0 "$inner_pid" 2>/dev/null; then
    # unshare --fork does not pass signals on; stop the namespace's PID 1 (our inner part,
    # which kills the agents), and SIGKILL it if it lingers: the kernel then kills every
    # process left in the pid namespace.
    local ns_init
    ns_init=$(cat "/proc/$inner_pid/task/$inner_pid/children" 2>/dev/null || true)
    ns_init=${ns_init%% *}
    if [[ -n $ns_init ]]; then
      kill -TERM "$ns_init" 2>/dev/null || true
      local t
      for ((t = 0; t < 30; t++)); do
        kill -0 "$inner_pid" 2>/dev/null || break
        sleep 0.1
      done
      kill -KILL "$ns_init" 2>/dev/null || true
    fi
    kill -KILL "$inner_pid" 2>/dev/null || true
    wait "$inner_pid" 2>/dev/null || true
  fi
  if [[ $mode == test ]]; then
    if [[ -n ${KILN_E2E_LOG_DIR:-} ]]; then
      mkdir -p "$KILN_E2E_LOG_DIR" && cp "$work"/logs/*.log "$KILN_E2E_LOG_DIR"/ 2>/dev/null || true
      log "agent logs in $KILN_E2E_LOG_DIR"
    elif ((rc != 0)); then
      local f
      for f in "$work"/logs/*.log; do
        [[ -s $f ]] || continue
        log "last lines of $(basename "$f"):"
        tail -n 40 "$f" >&2
      done
    fi
  fi
  # The mounts were only ever visible in the private namespace; these are empty directories
  # and log files on the host.
  rm -rf --one-file-system "$work"
  exit "$rc"
}
trap outer_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

ns_args=(--mount --pid --fork --propagation private --kill-child=KILL)
[[ $mode == test ]] && ns_args+=(--net)
# Run unshare as a child (not exec) so the trap above always runs; --kill-child makes the
# namespace's PID 1 (and with it everything in the namespace) die if unshare itself is killed.
unshare "${ns_args[@]}" -- bash "$here/run-envd-rootfs.sh" --inner "$agent" "$rootfs" "$work" \
  "$mode" "${cmd[@]}" &
inner_pid=$!
rc=0
wait "$inner_pid" || rc=$?
inner_pid=""
exit "$rc"
