#!/usr/bin/env bash
# Run every benchmark suite: the C core's micro-benchmarks (benchmarks/core/), then the
# service benchmarks (benchmarks/service/). Results land in benchmarks/results/
# (core_pytest_benchmark.json, core.json, core.png from the core suite; core_regression.json
# from the core against the reference run's commit; service.json, service.png,
# service_profile_*.txt from the service suite).
#
#   benchmarks/run.sh [--quick] [--core-only | --service-only] [-- extra service args]
#
#   --quick          a short smoke run with tiny sizes (a minute or two, figures not meaningful)
#                    (core: batches 1 and 100, one round; the full core suite takes ~2 minutes)
#   --core-only      only benchmarks/core
#   --service-only   only benchmarks/service
#   after --, arguments go to `python -m benchmarks.service` (e.g. -- --db postgresql)
#
# PYTHON picks the interpreter (default: .venv/bin/python if present, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
OUT=benchmarks/results
quick=0 core=1 service=1
service_args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) quick=1 ;;
        --core-only) service=0 ;;
        --service-only) core=0 ;;
        --) shift; service_args+=("$@"); break ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
mkdir -p "$OUT"

if [[ $core -eq 1 ]]; then
    if [[ -f benchmarks/core/run_core_bench.py ]]; then
        # pytest-benchmark times the cells (test_core_bench.py); the script writes
        # its raw JSON, then the table, core.json and core.png from it.
        echo "== core benchmarks (benchmarks/core) =="
        core_args=(--out "$OUT")
        [[ $quick -eq 1 ]] && core_args+=(--quick)
        "$PYTHON" benchmarks/core/run_core_bench.py "${core_args[@]}"
        # The same core against the reference run's commit, on this machine (issue 16:
        # no regression of the core); --quick: one turn of one timing each.
        echo "== the C core against the reference run's commit (benchmarks/core/regression.py) =="
        regression_args=(--out "$OUT")
        [[ $quick -eq 1 ]] && regression_args+=(--turns 1 --repeat 1)
        "$PYTHON" benchmarks/core/regression.py "${regression_args[@]}"
    else
        echo "run.sh: benchmarks/core/run_core_bench.py not found; skipping the core suite" >&2
    fi
fi

if [[ $service -eq 1 ]]; then
    echo "== service benchmarks (benchmarks/service) =="
    [[ $quick -eq 1 ]] && service_args=(--quick "${service_args[@]}")
    # The core's targets from this same run join the service report's targets table.
    [[ $core -eq 1 && -f "$OUT/core.json" ]] && service_args=(--core-json "$OUT/core.json" "${service_args[@]}")
    [[ $core -eq 1 && -f "$OUT/core_regression.json" ]] &&
        service_args=(--core-regression-json "$OUT/core_regression.json" "${service_args[@]}")
    "$PYTHON" -m benchmarks.service --out "$OUT" "${service_args[@]}"
fi
