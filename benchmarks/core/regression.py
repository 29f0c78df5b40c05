"""The C core against an earlier commit's, on this machine, in the same run: issue 16's
"no regression of the core", measured rather than read off targets set on another CPU.

    python benchmarks/core/regression.py [--against COMMIT] [--turns 3] [--out DIR]

The baseline (default: the commit of benchmarks/reference/core.json, the run the
core's targets came from) is exported with `git archive` and its C core compiled in
place; the current core is the one this checkout runs. Each turn times both, in
alternating order, each in a fresh child process that imports only that tree's
`totpd` (PYTHONPATH) and calls the API both share: `otp.KeyTable.of` and
`otp.verify_batch` at 10k valid codes per algorithm, one thread, the default CPU path,
CPU time of the calling thread. How to read it: benchmarks/README.md, "The core
against an earlier commit".
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
REFERENCE = ROOT / "benchmarks" / "reference" / "core.json"
RESULT = "core_regression.json"

ALGORITHMS = ("SHA1", "SHA256", "SHA512")
BATCH = 10_000
PERIOD, DIGITS, WINDOW = 30, 6, 1
MODULUS = 1_000_000  # 10 ** DIGITS
STEP = 1_700_000_000 // PERIOD
# The current core is "no slower" when its median rate is at least this share of the
# baseline's: the spread of one algorithm's turns on this shared machine is a few percent.
TOLERANCE = 0.05
# What a baseline tree needs to compile its core and import its `otp` module.
TREE_PATHS = ("native", "server", "setup.py", "pyproject.toml")


# -- the child: one tree's core, timed ---------------------------------------------


def _code(key: bytes, algorithm: str) -> int:
    digest = hmac.digest(key, STEP.to_bytes(8, "big"), algorithm.lower())
    offset = digest[-1] & 15
    return (int.from_bytes(digest[offset : offset + 4], "big") & 0x7FFFFFFF) % MODULUS


def time_core(repeat: int) -> dict[str, Any]:
    """Per algorithm, `repeat` timings of one 10k batch of valid codes (items/s of
    thread CPU), after checking that every code matched its step."""
    from array import array

    import totpd
    from totpd import otp
    from totpd.service.types import Algorithm

    rates: dict[str, list[float]] = {}
    for name in ALGORITHMS:
        algorithm = Algorithm[name]
        rng = random.Random(1)
        keys = [rng.randbytes(algorithm.secret_size) for _ in range(BATCH)]
        codes = array("I", [_code(key, name) for key in keys])
        table = otp.KeyTable.of(keys, [algorithm] * BATCH, [DIGITS] * BATCH, [STEP] * BATCH)
        indices = array("I", range(BATCH))
        matched = otp.verify_batch(table, indices, codes, WINDOW, threads=1)
        if list(matched) != [STEP] * BATCH:
            raise SystemExit(f"{name}: the core did not match every valid code")
        samples = []
        for _ in range(repeat):
            started = time.thread_time()
            otp.verify_batch(table, indices, codes, WINDOW, threads=1)
            samples.append(BATCH / max(time.thread_time() - started, 1e-9))
        rates[name] = samples
    return {"rates": rates, "path": otp.cpu_path(), "module": totpd.__file__}


# -- the parent: build, alternate, compare ------------------------------------------


def reference_commit() -> str:
    """The commit the reference core run (and so the core's targets) came from."""
    return str(json.loads(REFERENCE.read_text())["meta"]["git"]["commit"])


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()


def export_tree(commit: str, directory: Path) -> Path:
    """`commit`'s server package and C core in `directory`, the core compiled in place."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit, *TREE_PATHS],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
        cwd=directory,
        check=True,
        capture_output=True,
    )
    return directory / "server"


def run_child(server_dir: Path, repeat: int) -> dict[str, Any]:
    """`time_core` in a fresh interpreter that imports `totpd` from `server_dir` only."""
    env = {k: v for k, v in os.environ.items() if k != "TOTPD_CPU_PATH"}
    env["PYTHONPATH"] = str(server_dir)
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", "--repeat", str(repeat)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, Any] = json.loads(out)
    if not Path(result["module"]).resolve().is_relative_to(server_dir.resolve()):
        raise RuntimeError(f"the child imported {result['module']}, not {server_dir}'s totpd")
    return result


def compare(turns: list[dict[str, dict[str, Any]]], tolerance: float = TOLERANCE) -> dict[str, Any]:
    """Medians per side and algorithm over every turn, their ratio, each turn's ratio."""
    algorithms: dict[str, Any] = {}
    for name in ALGORITHMS:
        side = {
            label: [rate for turn in turns for rate in turn[label]["rates"][name]]
            for label in ("baseline", "current")
        }
        baseline, current = (statistics.median(side[k]) for k in ("baseline", "current"))
        per_turn = [
            statistics.median(turn["current"]["rates"][name])
            / statistics.median(turn["baseline"]["rates"][name])
            for turn in turns
        ]
        algorithms[name] = {
            "baseline_rate": baseline,
            "current_rate": current,
            "ratio": current / baseline,
            "turn_ratios": per_turn,
        }
    met = all(row["ratio"] >= 1 - tolerance for row in algorithms.values())
    return {"algorithms": algorithms, "tolerance": tolerance, "met": met}


def measure(commit: str, turns: int, repeat: int) -> dict[str, Any]:
    """Both cores, `turns` alternating turns of `repeat` timings per algorithm each."""
    current_dir = ROOT / "server"
    with tempfile.TemporaryDirectory(prefix="totpd-core-baseline-") as scratch:
        baseline_dir = export_tree(commit, Path(scratch))
        sides = {"baseline": baseline_dir, "current": current_dir}
        results: list[dict[str, dict[str, Any]]] = []
        for turn in range(turns):
            order = ("baseline", "current") if turn % 2 == 0 else ("current", "baseline")
            results.append({label: run_child(sides[label], repeat) for label in order})
    summary = compare(results)
    paths = {label: results[0][label]["path"] for label in ("baseline", "current")}
    summary.update(
        baseline={"commit": _git("rev-parse", commit), "path": paths["baseline"]},
        current={
            "commit": _git("rev-parse", "HEAD"),
            "dirty": bool(_git("status", "--porcelain", "--", "native", "server/totpd/otp")),
            "path": paths["current"],
        },
        turns=turns,
        repeat=repeat,
        batch=BATCH,
        raw=results,
    )
    return summary


def lines(summary: dict[str, Any]) -> list[str]:
    """The comparison as the report prints it."""
    base, current = summary["baseline"], summary["current"]
    out = [
        f"C core at {current['commit'][:10]} against {base['commit'][:10]}, 10k valid codes, "
        f"one thread, {summary['turns']} alternating turns (paths: {current['path']} / "
        f"{base['path']}):"
    ]
    for name, row in summary["algorithms"].items():
        spread = ", ".join(f"{ratio:.2f}" for ratio in row["turn_ratios"])
        current, baseline = row["current_rate"] / 1e6, row["baseline_rate"] / 1e6
        out.append(
            f"  {name:6} {current:6.2f}M/s vs {baseline:6.2f}M/s = {row['ratio']:.2f}x"
            f" (turns: {spread})"
        )
    verdict = "no regression" if summary["met"] else "REGRESSION"
    out.append(f"  {verdict} (each algorithm within {summary['tolerance']:.0%} of the baseline)")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", help="the baseline commit (default: the reference run's)")
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=15, help="timings per algorithm per turn")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(time_core(args.repeat)))
        return 0
    if args.turns < 1 or args.repeat < 1:
        parser.error("--turns and --repeat want at least 1")
    summary = measure(args.against or reference_commit(), args.turns, args.repeat)
    print("\n".join(lines(summary)))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / RESULT).write_text(json.dumps(summary, indent=2))
    print(f"wrote {args.out / RESULT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
