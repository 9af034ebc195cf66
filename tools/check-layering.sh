#!/usr/bin/env bash
# Fails when a source file includes a kiln header from a library it may not depend on.
# The arrows (DESIGN.md §3, STYLE.md §1): base <- sys <- http <- wire <- envd <- cmd.
set -euo pipefail
src=$(cd "$(dirname "$0")/../src" && pwd)
declare -A allowed=(
  [base]="base"
  [sys]="base sys"
  [http]="base http"
  [wire]="base wire"
  [envd]="base sys http wire envd"
  [cmd]="base sys http wire envd"
)
status=0
for lib in "${!allowed[@]}"; do
  [[ -d "$src/$lib" ]] || continue
  while IFS=: read -r file line inc; do
    dep=$(sed -E 's/.*#include "([a-z_]+)\/.*/\1/' <<<"$inc")
    if ! grep -qw "$dep" <<<"${allowed[$lib]}"; then
      echo "layering: ${file#$src/}:$line includes $dep/ (allowed for $lib: ${allowed[$lib]})"
      status=1
    fi
  done < <(grep -rnE '^#include "[a-z_]+/' "$src/$lib" --include='*.h' --include='*.cc' || true)
done
exit $status
