"""Core benchmarks: run the pytest-benchmark suite, then write the table, JSON and plot
(``--quick``: smoke sizes; ``--from-json``: redraw from an earlier run's raw JSON).

How to run and read them: benchmarks/README.md, "Core benchmarks: how to run, how to read".
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

from corebench import TARGET_BATCH  # noqa: E402 (needs the path above)
from corereport import load_rows, print_report, targets, write_json, write_plot  # noqa: E402

RAW = "core_pytest_benchmark.json"


# CPU time of the one thread that verifies: on this shared 2-core machine the wall
# clock also counts the slices the scheduler gives to other processes.
CPU_TIMER = "time.thread_time"
WALL_TIMER = "time.perf_counter"


def run_pytest(raw: Path, quick: bool, timer: str) -> int:
    """The pytest-benchmark suite in a child process (its own imports and GC state)."""
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(HERE / "test_core_bench.py"),
        "-q",
        "-p",
        "no:cacheprovider",
        f"--core-sizes={'smoke' if quick else 'full'}",
        f"--benchmark-json={raw}",
        f"--benchmark-timer={timer}",
        "--benchmark-quiet",  # the report below replaces pytest-benchmark's own table
    ]
    return subprocess.run(cmd, cwd=ROOT, check=False).returncode


def default_kernels(meta: dict[str, Any]) -> dict[str, str]:
    """Per algorithm, the kernel the run's default path used at the target batch."""
    disp = meta["dispatcher"]
    by_path = disp["kernel_by_path"]
    return {alg: by_path[alg][str(TARGET_BATCH)][disp["default_path"]] for alg in by_path}


def report(raw: Path, out: Path) -> None:
    meta = json.loads(raw.read_text())["totpd_core"]
    meta["raw"] = str(raw)
    rows = load_rows(raw)
    kernels = default_kernels(meta)
    tgts = targets(rows, kernels)
    print_report(rows, tgts, meta["dispatcher"]["default_path"])
    write_json(out / "core.json", rows, tgts, meta)
    plotted = write_plot(out / "core.png", rows, kernels)
    png = f" and {out / 'core.png'}" if plotted else " (matplotlib missing: no core.png)"
    print(f"\nwrote {raw}, {out / 'core.json'}{png}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--quick", action="store_true", help="smoke sizes, one round per cell")
    ap.add_argument("--from-json", type=Path, help="only redraw from this raw pytest JSON")
    ap.add_argument(
        "--wall-clock", action="store_true", help=f"time with {WALL_TIMER}, not {CPU_TIMER}"
    )
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    raw = args.from_json or args.out / RAW
    if not args.from_json:
        timer = WALL_TIMER if args.wall_clock else CPU_TIMER
        rc = run_pytest(raw.resolve(), args.quick, timer)
        if rc != 0:
            print(f"core benchmarks: pytest failed (exit {rc})", file=sys.stderr)
            return rc
    report(raw, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
