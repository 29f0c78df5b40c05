"""Coalesced unary `Verify` (service/coalescing.py) against one round per call, beside
the no-op floor: `benchmarks.service.floor`'s servers and load, with `totpd serve`
twice, `coalesce_verify` on and off, measured in alternating turns; medians of the
turns (a shared machine's noise hits every server alike).

``python -m benchmarks.service.coalesce_ab [--db sqlite|postgresql] [--turns 5]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from benchmarks.service import floor, report, unary
from benchmarks.service.fixtures import Database, FactorPool, measure_on_seeded
from benchmarks.service.servers import ServerProcess

# name: (coalesce_verify, max_workers, verify_rounds_in_flight); "noop" is the floor.
VARIANTS = {
    "totpd one round per call": ("false", 4, 1),
    "totpd coalesced": ("true", 4, 1),
    "coalesced, 2 rounds": ("true", 4, 2),
    "one round per call, 8 w": ("false", 8, 1),
    "coalesced, 8 workers": ("true", 8, 1),
    "coalesced, 8 w, 2 rounds": ("true", 8, 2),
    "coalesced, 8 w, 4 rounds": ("true", 8, 4),
}
SERVERS = ("noop", *VARIANTS)


def _servers(database: Database, data_dir: Path) -> dict[str, ServerProcess]:
    servers: dict[str, ServerProcess] = {
        "noop": floor.NoopServerProcess(data_dir, "noop", with_interceptors=False)
    }
    for index, (name, (coalesce, workers, rounds)) in enumerate(VARIANTS.items()):
        env = {
            **floor.RAISED_LIMITS,
            "TOTPD_COALESCE_VERIFY": coalesce,
            "TOTPD_MAX_WORKERS": str(workers),
            "TOTPD_VERIFY_ROUNDS_IN_FLIGHT": str(rounds),
        }
        servers[name] = ServerProcess(data_dir, database.url, name=f"totpd-{index}", env=env)
    return servers


def measure(
    database: Database, data_dir: Path, pool: FactorPool, config: dict[str, Any]
) -> dict[str, Any]:
    servers = _servers(database, data_dir)

    def run(name: str, server: ServerProcess) -> dict[str, Any]:
        return floor.floor_level(server, pool, config, None if name == "noop" else database)

    turns = unary.in_turns(servers, config["turns"], run)
    keys = ("rps", "p50_ms", "p99_ms", "server_cpu_us_per_call")
    medians = {name: unary.medians_of(figures, keys) for name, figures in turns.items()}
    noop = medians["noop"]["rps"]
    return {
        "medians": medians,
        "ratios": {name: medians[name]["rps"] / noop for name in servers},
        "turns": {
            name: [(f["rps"], f["server_cpu_us_per_call"]) for f in t] for name, t in turns.items()
        },
        "concurrency": config["concurrency"],
        "turn_count": config["turns"],
    }


def table(name: str, figures: dict[str, Any]) -> list[str]:
    lines = [
        f"\n{name}: unary Verify (wrong codes), {figures['concurrency']} in flight, "
        f"medians of {figures['turn_count']} alternating turns",
        f"{'server':>26} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'CPU µs/call':>12} {'of noop':>8}",
    ]
    for server in SERVERS:
        m = figures["medians"][server]
        lines.append(
            f"{server:>26} {m['rps']:>9,.0f} {m['p50_ms']:>7.2f} {m['p99_ms']:>7.2f} "
            f"{m['server_cpu_us_per_call']:>12,.0f} {figures['ratios'][server]:>8.2f}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.service.coalesce_ab")
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--factors", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    config = {"seconds": args.seconds, "concurrency": args.concurrency, "turns": args.turns}
    figures = measure_on_seeded(
        args.db,
        args.factors,
        "coalesce-ab",
        lambda database, data_dir, pool: measure(database, data_dir, pool, config),
    )
    return report.print_and_save(table(args.db, figures), figures, args.out)


if __name__ == "__main__":
    sys.exit(main())
