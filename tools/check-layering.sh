#!/usr/bin/env bash
# Fails when a source file includes a kiln header from a library it may not depend on.
# Libraries are folders under src/ (DESIGN.md §3, STYLE.md §1); a file belongs to the longest
# listed folder that contains it, and an include "a/b/x.h" names the longest listed folder
# that is a prefix of its path.
set -euo pipefail
src=$(cd "$(dirname "$0")/../src" && pwd)
declare -A allowed=(
  [base]="base"
  [sys]="base sys"
  [http]="base http"
  [wire]="base wire"
  [envd]="base sys http wire envd"
  [kilnd/cgroup]="base sys kilnd/cgroup"
  [kilnd/net]="base sys kilnd/net"
  [kilnd/runtime]="base kilnd/runtime"
  [kilnd/runtime/ns]="base sys kilnd/cgroup kilnd/net kilnd/runtime kilnd/runtime/ns"
  [kilnd/runtime/vm]="base sys http wire kilnd/cgroup kilnd/net kilnd/runtime kilnd/runtime/vm"
  [kilnd/template]="base sys kilnd/template"
  [kilnd/orchestrator]="base sys http wire kilnd/runtime kilnd/template kilnd/orchestrator"
  [kilnd/proxy]="base http kilnd/runtime kilnd/orchestrator kilnd/proxy"
  [kilnd/api]="base http wire kilnd/runtime kilnd/orchestrator kilnd/api"
  [cli]="base http wire cli"
  [interp]="base sys http interp"
  [cmd]="base sys http wire envd kilnd/cgroup kilnd/net kilnd/runtime kilnd/runtime/ns kilnd/runtime/vm kilnd/template kilnd/orchestrator kilnd/proxy kilnd/api cli interp"
)
# Longest listed library folder that is a prefix of path $1 (a/b/c...).
lib_of() {
  local path=$1 best=""
  for lib in "${!allowed[@]}"; do
    if [[ $path == "$lib"/* && ${#lib} -gt ${#best} ]]; then best=$lib; fi
  done
  echo "$best"
}
status=0
while IFS= read -r file; do
  rel=${file#$src/}
  lib=$(lib_of "$rel")
  if [[ -z $lib ]]; then
    echo "layering: $rel is not in a listed library folder"
    status=1
    continue
  fi
  while IFS=: read -r line inc; do
    path=$(sed -E 's/.*#include "([^"]+)".*/\1/' <<<"$inc")
    dep=$(lib_of "$path")
    if [[ -z $dep ]] || ! grep -qxF -- "$dep" <<<"$(tr ' ' '\n' <<<"${allowed[$lib]}")"; then
      echo "layering: $rel:$line includes $path (allowed for $lib: ${allowed[$lib]})"
      status=1
    fi
  done < <(grep -nE '^#include "[a-z_]+/' "$file" || true)
done < <(find "$src" -name '*.h' -o -name '*.cc' | sort)
exit $status
