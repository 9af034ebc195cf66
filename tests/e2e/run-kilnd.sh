#!/usr/bin/env bash
# The kilnd e2e tier: the official E2B JS SDK (tests/e2e/node_modules, pinned e2b) against kilnd,
# with E2B_API_URL and E2B_SANDBOX_URL both pointing at it.
#   tests/e2e/run-kilnd.sh KILND_BINARY [TEST_FILE...]      (default: every kilnd/*.test.mjs)
# Needs root. Each test file starts its own kilnd (own data dir, name, subnet, port). The base
# template is built on first use into KILN_TEMPLATE_DIR (default /var/cache/kiln/templates).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

[[ $# -ge 1 ]] || { echo "usage: $0 KILND_BINARY [TEST_FILE...]" >&2; exit 2; }
kilnd=$(realpath "$1")
shift
[[ -x $kilnd ]] || { echo "run-kilnd.sh: $kilnd is not an executable" >&2; exit 2; }
export KILN_KILND=$kilnd
export KILN_TEMPLATE_DIR=${KILN_TEMPLATE_DIR:-/var/cache/kiln/templates}

if [[ ! -d $here/node_modules/e2b ]]; then
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi

# Build the base template once before the files start their kilnds in parallel (they would
# otherwise wait on each other's build lock, each counting against its own timeout).
"$kilnd" --build-only --template-dir "$KILN_TEMPLATE_DIR"

if (($#)); then
  files=()
  for f in "$@"; do files+=("$(realpath "$f")"); done
else
  files=("$here"/kilnd/*.test.mjs)
fi

cd "$here"
exec node --test \
  --test-concurrency="${KILN_E2E_CONCURRENCY:-2}" \
  --test-timeout="${KILN_E2E_FILE_TIMEOUT:-300000}" \
  --test-reporter="${KILN_E2E_REPORTER:-spec}" \
  "${files[@]}"
