#!/usr/bin/env bash
# Save the proto as released: proto/releases/vX.Y.Z.binpb, a buf image (the compiled
# descriptors, without comments) of proto/ for the version in VERSION. `make cut-release`
# runs it; proto/check.sh runs `buf breaking` against the newest snapshot, so each release's
# contract holds until the next one, on any clone (no tags or history needed).
#
#   proto/snapshot.sh            (make proto-snapshot)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUF="$ROOT/proto/tools/node_modules/.bin/buf"
VERSION="$(tr -d '[:space:]' <VERSION)"
OUT="proto/releases/v$VERSION.binpb"
if [[ ! -x "$BUF" ]]; then
  (cd proto/tools && npm ci --no-audit --no-fund --loglevel=error)
fi
if [[ -e "$OUT" ]]; then
  echo "snapshot-proto: $OUT exists: a released contract is never rewritten" >&2
  exit 1
fi
"$BUF" build --exclude-source-info -o "$OUT"
echo "snapshot-proto: wrote $OUT (commit it with the release)" >&2
