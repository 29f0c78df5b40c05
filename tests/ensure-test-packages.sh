#!/usr/bin/env bash
# Install the Debian packages the tests use, if missing:
#   postgresql  - server binaries; the tests start a throwaway server of their own
#                 (tests/pg_server.py), nothing here starts a system-wide service
#   zbar-tools  - zbarimg, which decodes the QR codes a person would scan
#   clang, libclang-rt-dev - the second sanitizer build of the C core
#                 (tests/native/test_native_sanitizers.py): clang's UBSan reports
#                 what gcc's misses; libclang-rt-dev holds its ASan/UBSan runtime
#   clang-format - the C format check of `make lint` (native/format.sh)
#   prometheus  - prometheus and promtool: the telemetry tests start a server of
#                 their own that scrapes a live totpd (tests/telemetry/), and check
#                 the alert rules; nothing here starts the system-wide service
#
#   tests/ensure-test-packages.sh [package...]   # only those named, default all
set -euo pipefail
want=("$@")
[[ ${#want[@]} -eq 0 ]] && want=(postgresql zbar-tools clang libclang-rt-dev clang-format prometheus)
missing=()
for pkg in "${want[@]}"; do
  case "$pkg" in
    postgresql) compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql) ;;
    zbar-tools) command -v zbarimg >/dev/null || missing+=(zbar-tools) ;;
    clang) command -v clang >/dev/null || missing+=(clang) ;;
    libclang-rt-dev)
      compgen -G "/usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.asan-$(uname -m).a" >/dev/null ||
        missing+=(libclang-rt-dev) ;;
    clang-format) command -v clang-format >/dev/null || missing+=(clang-format) ;;
    prometheus)
      { command -v prometheus && command -v promtool; } >/dev/null || missing+=(prometheus) ;;
    *) echo "ensure-test-packages: unknown package '$pkg'" >&2; exit 2 ;;
  esac
done
[[ ${#missing[@]} -eq 0 ]] && exit 0
if [[ "$(id -u)" != 0 ]]; then
  echo "ensure-test-packages: missing ${missing[*]}; run: sudo apt-get install -y ${missing[*]}" >&2
  [[ "${CI:-}" == "true" ]] && exit 1
  exit 0
fi
echo "ensure-test-packages: installing ${missing[*]} from Debian's packages" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
