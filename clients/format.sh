#!/usr/bin/env bash
# Checks (make lint) or rewrites (make fmt) the formatting of the Go, Node and
# Java clients with each language's own pinned formatter. Generated code is
# left alone: clients/go/totpdv1/*.pb.go, clients/node/src/gen/ (.prettierignore)
# and the Java stubs under target/ (spotless only reads src/).
#
#   clients/format.sh check [go] [node] [java]
#   clients/format.sh write [go] [node] [java]
#
# gofmt comes with Go; prettier is a devDependency of clients/node (installed
# with `npm ci` when missing); google-java-format runs through the Spotless
# Maven plugin pinned in clients/java/pom.xml (Maven fetches it). A missing
# toolchain skips its language with a message; with CI=true it fails instead,
# as clients/run-tests.sh does.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLIENTS="$ROOT/clients"
CI="${CI:-false}"

mode="${1:-}"
case "$mode" in
  check | write) shift ;;
  *) echo "usage: clients/format.sh check|write [go] [node] [java]" >&2; exit 2 ;;
esac
langs=("$@")
[[ ${#langs[@]} -eq 0 ]] && langs=(go node java)

failed=()

# needs LANG COMMAND... : true when every command exists; otherwise skip (or fail under CI).
needs() {
  local lang="$1" cmd
  shift
  for cmd in "$@"; do
    if ! command -v "$cmd" >/dev/null; then
      if [[ "$CI" == "true" ]]; then
        echo "clients/$lang: format $mode FAILED: '$cmd' is missing under CI=true" >&2
        failed+=("$lang")
      else
        echo "clients/$lang: format $mode SKIPPED: '$cmd' is missing" >&2
      fi
      return 1
    fi
  done
}

# bad LANG: the check found files to rewrite (the tool listed them above).
bad() {
  echo "clients/$1: formatting differs from the house style: run 'make fmt'" >&2
  failed+=("$1")
}

go_files() {
  find "$CLIENTS/go" -name '*.go' ! -name '*.pb.go' -print0
}

run_go() {
  needs go gofmt || return 0
  if [[ "$mode" == write ]]; then
    go_files | xargs -0 gofmt -w || failed+=(go)
    return 0
  fi
  local out
  # gofmt -l exits 0 when files differ and non-zero only on a syntax error.
  if ! out="$(go_files | xargs -0 gofmt -l)"; then failed+=(go); return 0; fi
  if [[ -n "$out" ]]; then
    echo "gofmt would rewrite:" >&2
    echo "$out" | sed "s|^$ROOT/|  |" >&2
    bad go
  fi
}

run_node() {
  needs node node npm || return 0
  local dir="$CLIENTS/node"
  if [[ ! -x "$dir/node_modules/.bin/prettier" ]]; then
    # Only the formatter is needed here: skip the package's build (its prepare script).
    (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) || {
      failed+=(node); return 0; }
  fi
  if [[ "$mode" == write ]]; then
    (cd "$dir" && npm run --silent format >/dev/null) || failed+=(node)
  else
    (cd "$dir" && npm run --silent format:check) || bad node
  fi
}

run_java() {
  needs java java mvn || return 0
  local goal=spotless:check
  [[ "$mode" == write ]] && goal=spotless:apply
  (cd "$CLIENTS/java" && mvn -B -q -ntp -Dstyle.color=never "$goal") || {
    if [[ "$mode" == write ]]; then failed+=(java); else bad java; fi; }
}

for l in "${langs[@]}"; do
  case "$l" in
    go) run_go ;;
    node) run_node ;;
    java) run_java ;;
    *) echo "unknown language '$l' (go, node, java)" >&2; exit 2 ;;
  esac
done

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "clients: format $mode failed for: ${failed[*]}" >&2
  exit 1
fi
