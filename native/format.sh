#!/usr/bin/env bash
# Checks (make lint) or rewrites (make fmt) the formatting of the C core and its
# tests (native/**/*.c, *.h) with clang-format and the root .clang-format.
#
#   native/format.sh check|write
#
# The style is pinned to clang-format 14, Debian 12's: other major versions
# break some lines differently, so another version is reported, fails the check
# under CI=true and is not used to rewrite files. CLANG_FORMAT=/path/to/binary
# picks the binary; otherwise clang-format-14, then clang-format. A missing
# clang-format is installed from Debian's packages when running as root
# (tests/ensure-test-packages.sh); otherwise the check is skipped with a
# message, or fails under CI=true, as clients/format.sh does for its tools.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CI="${CI:-false}"
EXPECTED_MAJOR=14

mode="${1:-}"
case "$mode" in
  check | write) ;;
  *) echo "usage: native/format.sh check|write" >&2; exit 2 ;;
esac

# skip_or_fail MESSAGE: a missing or unusable formatter skips locally, fails under CI.
skip_or_fail() {
  if [[ "$CI" == "true" ]]; then
    echo "native: format $mode FAILED: $1" >&2
    exit 1
  fi
  echo "native: format $mode SKIPPED: $1" >&2
  exit 0
}

find_clang_format() {
  local c
  for c in "${CLANG_FORMAT:-}" clang-format-$EXPECTED_MAJOR clang-format; do
    [[ -n "$c" ]] && command -v "$c" >/dev/null && { command -v "$c"; return 0; }
  done
  return 1
}

if [[ -n "${CLANG_FORMAT:-}" ]] && ! command -v "$CLANG_FORMAT" >/dev/null; then
  skip_or_fail "CLANG_FORMAT=$CLANG_FORMAT is not an executable"
fi
cf="$(find_clang_format)" || {
  "$ROOT/tests/ensure-test-packages.sh" clang-format >&2 || true
  cf="$(find_clang_format)"
} || skip_or_fail "clang-format is missing (apt-get install clang-format)"

version="$("$cf" --version)"
major="$(sed -nE 's/.*clang-format version ([0-9]+)\..*/\1/p' <<<"$version")"
if [[ "$major" != "$EXPECTED_MAJOR" ]]; then
  note="$cf is version ${major:-unknown}, the house style is pinned to clang-format $EXPECTED_MAJOR"
  note+=" (Debian 12's); other versions break lines differently: set CLANG_FORMAT to a"
  note+=" clang-format-$EXPECTED_MAJOR binary"
  [[ "$mode" == write ]] && skip_or_fail "$note"
  [[ "$CI" == "true" ]] && skip_or_fail "$note"
  echo "native: WARNING: $note; checking anyway" >&2
fi

# The C sources and headers, build outputs excluded.
files=()
while IFS= read -r -d '' f; do files+=("$f"); done < <(
  find "$ROOT/native" \( -name build -o -name __pycache__ \) -prune -o \
    -type f \( -name '*.c' -o -name '*.h' \) -print0 | sort -z)
[[ ${#files[@]} -eq 0 ]] && exit 0

if [[ "$mode" == write ]]; then
  "$cf" -i --style=file "${files[@]}" || { echo "native: clang-format failed" >&2; exit 1; }
  exit 0
fi

formatted="$(mktemp)"
trap 'rm -f "$formatted"' EXIT
differ=()
diffs=""
for f in "${files[@]}"; do
  rel="${f#"$ROOT"/}"
  "$cf" --style=file "$f" >"$formatted" || { echo "native: clang-format failed on $rel" >&2; exit 1; }
  if ! d="$(diff -u --label "$rel" --label "$rel (formatted)" "$f" "$formatted")"; then
    differ+=("$rel")
    diffs+="$d"$'\n'
  fi
done
if [[ ${#differ[@]} -gt 0 ]]; then
  echo "clang-format would rewrite:" >&2
  printf '  %s\n' "${differ[@]}" >&2
  # The first lines of the changes, to show what differs without flooding the log.
  head -n 40 <<<"$diffs" >&2
  [[ "$major" != "$EXPECTED_MAJOR" ]] &&
    echo "native: note: $cf is version ${major:-unknown}, not $EXPECTED_MAJOR: the differences may come from the version" >&2
  echo "native: formatting differs from the house style (.clang-format): run 'make fmt'" >&2
  exit 1
fi
