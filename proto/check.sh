#!/usr/bin/env bash
# CI check for the API contract (what `make proto-check` / .ci/run call):
#   1. buf lint
#   2. regenerate every language (proto/generate.sh) and fail on any
#      difference from what is committed (git diff --exit-code)
#   3. buf breaking: proto/ against the last release, the newest snapshot in
#      proto/releases/ (vX.Y.Z.binpb, written by `make cut-release`): runs on any
#      clone, shallow ones included, and holds the contract across many commits.
#   4. buf breaking: proto/ against the previous commit (or against
#      $PROTO_BASE_REF, e.g. origin/main). Skipped with a message when git has
#      no such commit (first commit, shallow clone) or it has no proto/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUF="$ROOT/proto/tools/node_modules/.bin/buf"
log() { printf 'check-proto: %s\n' "$*" >&2; }

GENERATED=(server/totpd/v1 clients/python/src/totpd_client/v1 clients/go/totpdv1 clients/node/src/gen)

proto/generate.sh   # installs the pinned tools, runs buf lint, regenerates

# Generated files must match the committed ones, and nothing new may appear.
if ! git diff --exit-code --stat -- "${GENERATED[@]}"; then
  git diff -- "${GENERATED[@]}" | head -200
  log "generated code is stale: run 'make proto' (proto/generate.sh) and commit the result"
  exit 1
fi
untracked="$(git ls-files --others --exclude-standard -- "${GENERATED[@]}")"
if [[ -n "$untracked" ]]; then
  printf '%s\n' "$untracked"
  log "generated files are not committed: run 'make proto' and commit them"
  exit 1
fi
log "generated code is up to date"

# Breaking-change check against the last release (a checked-in buf image).
last_release="$(ls proto/releases/v*.binpb 2>/dev/null | sort -V | tail -1 || true)"
if [[ -z "$last_release" ]]; then
  log "no snapshot in proto/releases: nothing released to compare against (make proto-snapshot)"
else
  log "buf breaking against the last release, $last_release"
  "$BUF" breaking --against "$last_release"
  log "no breaking change against $last_release"
fi

# Breaking-change check against the previous commit.
base="${PROTO_BASE_REF:-HEAD~1}"
if [[ "$(git rev-parse --is-shallow-repository 2>/dev/null)" == "true" ]] \
   && ! git rev-parse --verify -q "$base^{commit}" >/dev/null; then
  log "shallow clone without $base: buf breaking skipped (fetch more history to run it)"
elif ! git rev-parse --verify -q "$base^{commit}" >/dev/null; then
  log "no commit $base (first commit?): buf breaking skipped"
elif ! git cat-file -e "$base:proto/totpd/v1" 2>/dev/null; then
  log "$base has no proto/totpd/v1: nothing to compare, buf breaking skipped"
else
  sha="$(git rev-parse "$base^{commit}")"
  log "buf breaking against $base ($sha)"
  "$BUF" breaking --against ".git#ref=$sha"
  log "no breaking change against $base"
fi
