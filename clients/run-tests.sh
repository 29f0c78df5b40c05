#!/usr/bin/env bash
# Runs the four client suites (Python, Go, Node, Java) against a real totpd,
# installing their dependencies from the registries first (a fresh clone has
# no caches). Called by `make test`.
#
#   clients/run-tests.sh                 all four
#   clients/run-tests.sh go node         some of them
#
# Each suite starts its own totpd with `$TOTPD_PYTHON -m totpd serve --dev ...`
# (default: the repository's .venv/bin/python, else python3), so the server
# package must be installed in that Python (pip install -e .).
#
# A missing toolchain (go, node/npm, java/mvn) skips its suite with a message
# saying what to install; with CI=true it fails the run instead.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLIENTS="$ROOT/clients"
if [[ -z "${TOTPD_PYTHON:-}" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then TOTPD_PYTHON="$ROOT/.venv/bin/python"; else TOTPD_PYTHON=python3; fi
fi
export TOTPD_PYTHON TOTPD_REPO_ROOT="$ROOT"
# The test servers stop at once when a suite ends; the drain has its own tests.
export TOTPD_DRAIN_SECONDS=0
CI="${CI:-false}"

suites=("$@")
[[ ${#suites[@]} -eq 0 ]] && suites=(python go node java)

passed=() failed=() skipped=()
say() { printf '\n==> clients/%s\n' "$*"; }

# missing SUITE WHAT-TO-INSTALL: skip locally, fail under CI.
missing() {
  if [[ "$CI" == "true" ]]; then
    echo "clients/$1: FAILED: toolchain missing under CI=true: $2" >&2
    failed+=("$1")
  else
    echo "clients/$1: SKIPPED: toolchain missing: $2" >&2
    skipped+=("$1")
  fi
}

timed() { # SUITE CMD...: run CMD, record pass/fail with its duration
  local suite="$1" start=$SECONDS
  shift
  if "$@"; then
    passed+=("$suite"); echo "clients/$suite: passed in $((SECONDS - start)) s"
  else
    failed+=("$suite"); echo "clients/$suite: FAILED after $((SECONDS - start)) s" >&2
  fi
}

if ! "$TOTPD_PYTHON" -c 'import totpd' 2>/dev/null; then
  echo "clients: the server package is not importable by $TOTPD_PYTHON;" \
       "run 'pip install -e .' (or make) first, or set TOTPD_PYTHON" >&2
  [[ "$CI" == "true" ]] && exit 1
fi

run_python() {
  # A venv of its own: the client is installed the way a user installs it,
  # apart from the server's packages.
  local venv="$CLIENTS/python/.venv"
  [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv" || return 1
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "$CLIENTS/python[test]" || return 1
  (cd "$CLIENTS/python" && "$venv/bin/python" -m pytest -q -p no:cacheprovider tests)
}

run_go() {
  (cd "$CLIENTS/go" && go mod download && go vet ./... && go test -count=1 ./...)
}

run_node() {
  (cd "$CLIENTS/node" && npm ci --no-audit --no-fund --loglevel=error && npm test)
}

run_java() {
  # -ntp keeps the log short; Surefire's summary lines stay visible.
  (cd "$CLIENTS/java" && mvn -B -ntp -Dstyle.color=never test)
}

for s in "${suites[@]}"; do
  case "$s" in
    python)
      say python
      if command -v python3 >/dev/null; then timed python run_python
      else missing python "Python 3.11+ with venv (apt-get install python3 python3-venv)"; fi ;;
    go)
      say go
      if command -v go >/dev/null; then timed go run_go
      else missing go "Go 1.26+ (https://go.dev/dl, or apt-get install golang-go if new enough)"; fi ;;
    node)
      say node
      if command -v node >/dev/null && command -v npm >/dev/null; then timed node run_node
      else missing node "Node.js 20+ and npm (apt-get install nodejs npm)"; fi ;;
    java)
      say java
      if command -v java >/dev/null && command -v mvn >/dev/null; then timed java run_java
      else missing java "JDK 17+ and Maven 3.8+ (apt-get install openjdk-17-jdk-headless maven)"; fi ;;
    *) echo "unknown suite '$s' (python, go, node, java)" >&2; exit 2 ;;
  esac
done

echo
echo "client suites passed: ${passed[*]:-none}; failed: ${failed[*]:-none}; skipped: ${skipped[*]:-none}"
echo "clients: ${#passed[@]} passed, ${#failed[@]} failed, ${#skipped[@]} skipped"
[[ ${#failed[@]} -eq 0 ]]
