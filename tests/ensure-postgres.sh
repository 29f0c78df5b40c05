#!/usr/bin/env bash
# Make sure PostgreSQL's server binaries are installed (Debian's packages).
# The tests start their own throwaway server from them (tests/pg_server.py);
# nothing here starts a system-wide service.
set -euo pipefail
if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  exit 0
fi
if [[ "$(id -u)" != 0 ]]; then
  echo "ensure-postgres: PostgreSQL is missing; run: sudo apt-get install -y postgresql" >&2
  [[ "${CI:-}" == "true" ]] && exit 1
  exit 0
fi
echo "ensure-postgres: installing postgresql from Debian's packages" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends postgresql >/dev/null
