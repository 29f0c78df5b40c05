"""The gRPC floor: unary `Verify` of totpd beside a no-op `Verify` on the same grpc
server settings, driven by the same load generator in the same run (issue 16).

Three single-process servers, measured in turns (so a noisy neighbour hits all alike),
each figure the best of its turns (the medians of the turns' rates and CPU beside it):

- ``noop``: `grpc_server` (grpc.aio) with totpd's worker threads, limits and channel
  options, no interceptor, and a `Verify` coroutine that parses the request and
  answers a fixed INVALID: what gRPC and protobuf cost a call on these settings.
- ``noop+interceptors``: the same with totpd's interceptors (access log, metrics,
  error mapping, callers, deadline, admission): the share of the rpc layer. Both no-op
  servers log as `totpd serve` does (JSON lines at INFO, to their log file).
- ``totpd``: `totpd serve` with the default configuration (audit on), its limits
  raised so that every call reads, compares its window and counts a failure.

Below the table, each server's CPU a call by kind of thread (`totpd-loop`, `totpd-round`,
grpc's `event_engine`, ...; `servers.thread_cpu_seconds`): where the time goes.

Every request is a wrong code (`unary.wrong_code`) for a seeded factor. The goal:
totpd at least 60% of the no-op rate at 8 calls in flight, on SQLite and on durable
PostgreSQL.

``--baseline DIR`` adds the same three servers run from another checkout (its
``server/`` and ``benchmarks/`` first on their path), in the same turns: a before/after
of a change to the rpc layer within one run (for example ``git archive main | tar -x -C
DIR`` and copy ``server/totpd/_native*.so`` there).

``python -m benchmarks.service.floor [--db sqlite|postgresql] [--baseline DIR]``; the
servers themselves: ``python -m benchmarks.service.floor serve --ready-file F [--interceptors]``.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from benchmarks.service import report, unary
from benchmarks.service.fixtures import Database, FactorPool, measure_on_seeded
from benchmarks.service.servers import ServerProcess, database_cpu_seconds
from totpd.config import Settings
from totpd.logs import configure_logging
from totpd.rpc.callers import load_access
from totpd.rpc.server import (
    grpc_server,
    interceptors,
    interpreter_cpu,
    tune_garbage_collector,
    write_ready_file,
)
from totpd.thread_names import name_os_threads
from totpd.v1 import factor_pb2
from totpd.v1 import totp_service_pb2 as pb

GOAL = 0.60  # totpd's Verify keeps at least this share of the no-op rate (issue 16)
TURNS = 2
SERVERS = ("noop", "noop+interceptors", "totpd")
VERIFY_METHOD = "/totpd.v1.TotpService/Verify"
# Every call compares and writes: no lock, backoff, budget or per-caller rate stops one
# (a factor in backoff is answered without either, and every turn fails the same factors).
RAISED_LIMITS = {
    "TOTPD_LOCK_AFTER_FAILURES": "1000",
    "TOTPD_BACKOFF_AFTER_FAILURES": "1000",
    "TOTPD_FAILURE_BUDGET": "100000",
    "TOTPD_MAX_CONSECUTIVE_FAILURES": "100",
    "TOTPD_CALLER_FAILURES_PER_SECOND": "0",
}


async def _noop_verify(request: pb.VerifyRequest, context: Any) -> pb.VerifyResponse:
    """A coroutine, as totpd's Verify is on this server: served on its event loop."""
    return NOOP_RESPONSE


NOOP_RESPONSE = pb.VerifyResponse(
    outcome=factor_pb2.VerifyOutcome(result=factor_pb2.VERIFY_RESULT_INVALID, attempts_left=9)
)


def serve(ready_file: Path, with_interceptors: bool) -> int:
    """Run the no-op server on a free loopback port until SIGTERM, logging (and with
    its garbage collector tuned) as `totpd serve` is: its access lines are the rpc
    layer's, so noop+interceptors pays for them as totpd does; its OS threads named
    as `totpd serve` names them."""
    name_os_threads()
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    chain = interceptors(settings, load_access(settings)) if with_interceptors else []
    server = grpc_server(settings, chain, interpreter_cpu=interpreter_cpu(settings))
    handler = grpc.unary_unary_rpc_method_handler(
        _noop_verify,
        request_deserializer=pb.VerifyRequest.FromString,
        response_serializer=pb.VerifyResponse.SerializeToString,
    )
    service, _, method = VERIFY_METHOD[1:].partition("/")
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(service, {method: handler})]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    tune_garbage_collector()
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    write_ready_file(ready_file, f"127.0.0.1:{port}")  # whole: the runner reads it at once
    stop.wait()
    server.stop(grace=0).wait()
    return 0


BASELINE_SUFFIX = "@baseline"


def code_path(checkout: Path | None) -> str:
    """PYTHONPATH for a server: this repository's root (it runs in `data_dir`, and
    `benchmarks` must import), or another checkout's `server/` and root first."""
    root = str(Path(__file__).resolve().parents[2])
    if checkout is None:
        return root
    return os.pathsep.join((str(checkout / "server"), str(checkout), root))


class NoopServerProcess(ServerProcess):
    """The no-op server in its own process, started and measured like `totpd serve`."""

    def __init__(
        self, data_dir: Path, name: str, with_interceptors: bool, checkout: Path | None = None
    ) -> None:
        super().__init__(data_dir, "", name=name, env={"PYTHONPATH": code_path(checkout)})
        self.with_interceptors = with_interceptors

    def command(self) -> list[str]:
        flags = ["--interceptors"] if self.with_interceptors else []
        return [
            sys.executable,
            "-m",
            "benchmarks.service.floor",
            "serve",
            "--ready-file",
            str(self.ready_file),
            *flags,
        ]


def _servers(
    database: Database, data_dir: Path, checkout: Path | None, suffix: str = ""
) -> dict[str, ServerProcess]:
    """The three servers, from this checkout or from `checkout` (names end in `suffix`)."""
    tag = suffix.replace("@", "-")
    env = dict(RAISED_LIMITS)
    if checkout is not None:
        env["PYTHONPATH"] = code_path(checkout)
    return {
        "noop" + suffix: NoopServerProcess(data_dir, "noop" + tag, False, checkout),
        "noop+interceptors" + suffix: NoopServerProcess(
            data_dir, "noop-icpt" + tag, True, checkout
        ),
        "totpd" + suffix: ServerProcess(data_dir, database.url, name="totpd-floor" + tag, env=env),
    }


def floor_level(
    server: ServerProcess, pool: FactorPool, config: dict[str, Any], database: Database | None
) -> dict[str, Any]:
    """One turn of the floor's load on `server`: `config["concurrency"]` wrong codes in
    flight for `config["seconds"]`; the CPU of `database` counted (None: not used)."""
    database_cpu: Callable[[], float | None] = (
        (lambda: None) if database is None else (lambda: database_cpu_seconds(database))
    )
    return unary.run_level(
        server,
        pool,
        config["concurrency"],
        config["seconds"],
        max_rate=20_000.0,
        database_cpu=database_cpu,
        wrong_codes=True,
    )


def measure(
    database: Database, data_dir: Path, pool: FactorPool, config: dict[str, Any]
) -> dict[str, Any]:
    """The three servers at one closed-loop level, in turns; the best turn of each
    (and the baseline checkout's three in the same turns, if `config` names one)."""
    servers = _servers(database, data_dir, None)
    baseline: Path | None = config.get("baseline")
    if baseline is not None:  # each server beside its baseline, A then B in every turn
        others = _servers(database, data_dir, baseline, BASELINE_SUFFIX)
        servers = {
            name: server
            for pair in zip(servers.items(), others.items(), strict=True)
            for name, server in pair
        }

    def run(name: str, server: ServerProcess) -> dict[str, Any]:
        return floor_level(server, pool, config, database if name.startswith("totpd") else None)

    turns = unary.in_turns(servers, config["turns"], run)
    best: dict[str, dict[str, Any]] = {}
    for name, figures_of in turns.items():  # the best turn, every turn's and their medians
        figure = best[name] = max(figures_of, key=lambda turn: turn["rps"])
        figure["turns_rps"] = [turn["rps"] for turn in figures_of]
        figure["turns_cpu_us_per_call"] = [turn["server_cpu_us_per_call"] for turn in figures_of]
        figure["median_rps"] = statistics.median(figure["turns_rps"])
        cpu = [value for value in figure["turns_cpu_us_per_call"] if value is not None]
        figure["median_cpu_us_per_call"] = statistics.median(cpu) if cpu else None
    figures = {
        "servers": best,
        "ratio": best["totpd"]["rps"] / best["noop"]["rps"],
        "interceptors_ratio": best["noop+interceptors"]["rps"] / best["noop"]["rps"],
        "totpd_verdicts": best["totpd"]["verdicts"],
        "goal": GOAL,
        "concurrency": config["concurrency"],
    }
    if baseline is not None:
        figures["baseline"] = str(baseline)
        figures["baseline_ratio"] = (
            best["totpd" + BASELINE_SUFFIX]["rps"] / best["noop" + BASELINE_SUFFIX]["rps"]
        )
    return figures


def table(name: str, figures: dict[str, Any]) -> list[str]:
    lines = [
        f"\n{name}: unary Verify (wrong codes) against the no-op floor, "
        f"{figures['concurrency']} in flight, one process each "
        f"(goal: totpd >= {GOAL:.0%} of noop)",
        f"{'server':>27} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'CPU µs/call':>12} {'of noop':>8} {'median rps':>11} {'median CPU':>11}",
    ]
    suffixes = [""] + ([BASELINE_SUFFIX] if "baseline" in figures else [])
    for suffix in suffixes:
        noop_rate = figures["servers"]["noop" + suffix]["rps"]
        for server in SERVERS:
            figure = figures["servers"][server + suffix]
            cpu = figure["server_cpu_us_per_call"]
            median_cpu = figure["median_cpu_us_per_call"]
            lines.append(
                f"{server + suffix:>27} {figure['rps']:>9,.0f} "
                f"{figure['p50_ms']:>7.2f} {figure['p99_ms']:>7.2f} "
                f"{'-' if cpu is None else f'{cpu:,.0f}':>12} {figure['rps'] / noop_rate:>8.2f}"
                f" {figure['median_rps']:>11,.0f}"
                f" {'-' if median_cpu is None else f'{median_cpu:,.0f}':>11}"
            )
    lines.extend(_by_thread(figures["servers"]))
    verdict = "met" if figures["ratio"] >= GOAL else "missed"
    lines.append(
        f"totpd / noop = {figures['ratio']:.2f}: goal {verdict}; "
        f"totpd verdicts {figures['totpd_verdicts']}"
    )
    if "baseline" in figures:
        lines.append(
            f"baseline ({figures['baseline']}): totpd / noop = {figures['baseline_ratio']:.2f}"
        )
    return lines


def _by_thread(servers: dict[str, dict[str, Any]]) -> list[str]:
    """Each server's CPU a call (its best turn) by kind of thread: what the event
    loop, the round threads and grpc's own threads each cost."""
    lines = []
    for name, figure in servers.items():
        shares = report.by_thread(figure)
        if shares:
            lines.append(f"{name:>27}  CPU µs/call by thread: {shares}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.service.floor")
    commands = parser.add_subparsers(dest="command")
    serve_parser = commands.add_parser("serve", help="run the no-op server (for the benchmark)")
    serve_parser.add_argument("--ready-file", type=Path, required=True)
    serve_parser.add_argument("--interceptors", action="store_true")
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--factors", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--turns", type=int, default=TURNS)
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    parser.add_argument(
        "--baseline", type=Path, help="another checkout whose three servers run in the same turns"
    )
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args.ready_file, args.interceptors)
    config: dict[str, Any] = {
        "seconds": args.seconds,
        "concurrency": args.concurrency,
        "turns": args.turns,
        "baseline": args.baseline.resolve() if args.baseline else None,
    }
    figures = measure_on_seeded(
        args.db,
        args.factors,
        "floor",
        lambda database, data_dir, pool: measure(database, data_dir, pool, config),
    )
    return report.print_and_save(table(args.db, figures), figures, args.out)


if __name__ == "__main__":
    sys.exit(main())
