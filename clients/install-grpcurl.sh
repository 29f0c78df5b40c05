#!/usr/bin/env bash
# Build grpcurl (pinned) with `go install` into the project's cache and print its path.
# The reflection tests (tests/rpc/test_reflection_grpcurl.py) call it when the binary
# is missing; a fresh clone builds it once (about 2 minutes on 2 cores), later runs
# reuse .cache/go-tools/bin/grpcurl.
#
#   clients/install-grpcurl.sh        -> prints /path/to/grpcurl
set -euo pipefail
VERSION=v1.9.4
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/.cache/go-tools/bin"
STAMP="$BIN/.grpcurl-$VERSION"
if [[ ! -x "$BIN/grpcurl" || ! -f "$STAMP" ]]; then
  command -v go >/dev/null || { echo "install-grpcurl: Go 1.24+ is needed (apt-get install golang-go, or go.dev)" >&2; exit 1; }
  mkdir -p "$BIN"
  echo "install-grpcurl: go install github.com/fullstorydev/grpcurl/cmd/grpcurl@$VERSION" >&2
  GOBIN="$BIN" go install "github.com/fullstorydev/grpcurl/cmd/grpcurl@$VERSION" >&2
  rm -f "$BIN"/.grpcurl-*
  touch "$STAMP"
fi
echo "$BIN/grpcurl"
