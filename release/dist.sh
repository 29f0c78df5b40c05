#!/usr/bin/env bash
# `make dist`: every artifact of a release, built from this checkout into dist/.
#
#   dist/totpd-V.tar.gz                       server sdist (C core sources + cffi build script)
#   dist/totpd-V-cp311-abi3-linux_x86_64.whl  server wheel, built from that sdist in an isolated
#                                             environment (python -m build), so every make dist
#                                             proves the sdist compiles the core from source
#   dist/totpd_client-V.tar.gz, dist/totpd_client-V-py3-none-any.whl      Python client
#   dist/totpd-client-V.tgz                   npm pack of @totpd/client (ESM + CommonJS + types)
#   dist/maven/dev/totpd/totpd-client/V/      a Maven repository: jar, -sources.jar, -javadoc.jar
#                                             and the flattened POM (mvn deploy to a file URL)
#   dist/goproxy/github.com/totpd/totpd/clients/go/@v/vV.{zip,mod,info}, list
#                                             the Go module as the module proxy serves it
#   dist/goproxy/go.sum                       the two lines a consumer's go.sum will record
#   dist/SHA256SUMS                           sha256sum -c dist/SHA256SUMS checks them all
#
# V is the project version (VERSION). Needs the .venv (make install), npm, mvn and go.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${TOTPD_PYTHON:-$ROOT/.venv/bin/python}"
DIST="$ROOT/dist"
GO_MODULE=github.com/totpd/totpd/clients/go
log() { printf 'dist: %s\n' "$*" >&2; }

"$PY" release/version.py check >/dev/null
VERSION="$("$PY" release/version.py show)"
if [[ -n "$(git status --porcelain 2>/dev/null)" ]]; then
  log "WARNING: uncommitted changes: fine for a test build, not for one you publish"
fi
rm -rf "$DIST"
mkdir -p "$DIST"
started=$SECONDS

step() { # NAME CMD...: run CMD, say how long it took
  local name="$1" t=$SECONDS
  shift
  log "$name ..."
  "$@"
  log "$name: done in $((SECONDS - t)) s"
}

quiet() { # LOG CMD...: CMD's output goes to LOG, shown (its end) only when CMD fails
  local log="$1"
  shift
  "$@" >"$log" 2>&1 || { tail -60 "$log" >&2; log "failed: $*"; return 1; }
}

python_server() { "$PY" -m build --outdir "$DIST" .; }
python_client() { "$PY" -m build --outdir "$DIST" clients/python; }

node_client() {
  # npm pack runs the "prepare" script: both tsc builds from a clean dist/.
  (cd clients/node \
    && npm ci --no-audit --no-fund --loglevel=error \
    && npm pack --pack-destination "$DIST" --loglevel=error)
}

java_client() {
  # deploy to a file URL writes a real repository layout (checksums, maven-metadata.xml);
  # nothing goes to ~/.m2 (install skipped), the suite's tests run in make test-clients.
  (cd clients/java && mvn -B -ntp -Dstyle.color=never -DskipTests -Dmaven.install.skip=true \
    -DaltDeploymentRepository="dist::file://$DIST/maven" deploy)
}

go_client() {
  local when
  when="$(git log -1 --format=%cI HEAD 2>/dev/null || date -u +%Y-%m-%dT%H:%M:%SZ)"
  (cd release/gomodzip && go run . -module "$GO_MODULE" -version "v$VERSION" \
    -dir "$ROOT/clients/go" -out "$DIST/goproxy" -time "$when")
}

LOGS="$(mktemp -d)"
trap 'rm -rf "$LOGS"' EXIT
step "server wheel and sdist (totpd)" quiet "$LOGS/server.log" python_server
step "Python client wheel and sdist (totpd-client)" quiet "$LOGS/client.log" python_client
step "TypeScript client tarball (@totpd/client)" quiet "$LOGS/node.log" node_client
step "Java client jars and POM (dev.totpd:totpd-client)" quiet "$LOGS/java.log" java_client
step "Go module zip ($GO_MODULE)" quiet "$LOGS/go.log" go_client
log "the module's go.sum lines (dist/goproxy/go.sum):"
sed 's/^/  /' "$DIST/goproxy/go.sum" >&2

# The checksums cover the artifacts themselves, not Maven's own .md5/.sha1/metadata files.
(cd "$DIST" && find . -type f \( -name '*.whl' -o -name '*.tar.gz' -o -name '*.tgz' \
    -o -name '*.jar' -o -name '*.pom' -o -name '*.zip' -o -name '*.mod' -o -name '*.info' \) \
    -printf '%P\n' | LC_ALL=C sort | xargs sha256sum >SHA256SUMS)
log "built $VERSION in $((SECONDS - started)) s:"
(cd "$DIST" && awk '{print $2}' SHA256SUMS | xargs ls -l | awk '{printf "  %9d  %s\n", $5, $9}') >&2
