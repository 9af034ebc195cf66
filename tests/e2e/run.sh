#!/usr/bin/env bash
# The e2e tier: the official E2B JS SDK (tests/e2e/node_modules, pinned e2b) drives kiln-envd
# running chrooted in a throwaway Debian rootfs.
#   tests/e2e/run.sh AGENT_BINARY [TEST_FILE...]      (default: every envd/*.test.mjs)
# Needs root (debootstrap once, namespaces, chroot). Exits non-zero when any test fails.
# Environment: KILN_E2E_CONCURRENCY (test files run in parallel, default 3), KILN_E2E_LOG_DIR
# (keep the agent logs), KILN_E2E_REPORTER (node test reporter, default spec).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

[[ $# -ge 1 ]] || { echo "usage: $0 AGENT_BINARY [TEST_FILE...]" >&2; exit 2; }
agent=$(realpath "$1")
shift
[[ -x $agent ]] || { echo "run.sh: $agent is not an executable" >&2; exit 2; }

"$here/make-rootfs.sh"

if [[ ! -d $here/node_modules/e2b ]]; then
  echo "run.sh: installing the pinned SDK (npm ci)" >&2
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi

if (($#)); then
  files=()
  for f in "$@"; do files+=("$(realpath "$f")"); done
else
  files=("$here"/envd/*.test.mjs)
fi

cd "$here"
exec "$here/run-envd-rootfs.sh" "$agent" -- \
  node --test \
  --test-concurrency="${KILN_E2E_CONCURRENCY:-3}" \
  --test-timeout=120000 \
  --test-reporter="${KILN_E2E_REPORTER:-spec}" \
  "${files[@]}"
