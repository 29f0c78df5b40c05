"""A server process's memory while several callers' 10k-item batches run at once
(issue 16: "server memory per process bounded while 10k-item batches run").

One caller holds one 10k batch at a time (its failure budget is reserved for the
whole batch: caller_failure_burst defaults to max_batch_items), so concurrent
large batches come from several callers: a callers file of N bearer-token
callers in the seeded tenant. Per level (1, 2, 4 ... callers), every caller
sends `rounds` batches one after another, all callers at once; the server's
VmRSS is sampled throughout (RssSampler), its VmHWM read after. Admission bounds
the items in flight (max_items_in_flight, 25,000 by default: two 10k batches),
so a level beyond that waits or is refused (RESOURCE_EXHAUSTED), which the
figures count.

``python -m benchmarks.service.batch_memory [--db postgresql] [--callers 1,2,4]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc

from benchmarks.service import batch, report
from benchmarks.service.fixtures import Database, FactorPool, measure_on_seeded
from benchmarks.service.process_memory import RssSampler, status_kb
from benchmarks.service.servers import ServerProcess
from totpd.calls import DEFAULT_TENANT
from totpd.service.access import new_token, token_sha256
from totpd.v1 import totp_service_pb2_grpc as pb_grpc

LEVELS = [1, 2, 4]


def _callers_file(path: Path, tokens: list[str]) -> Path:
    """Callers allowed to verify in the seeded tenant; the file holds only hashes."""
    blocks = [
        f'[[callers]]\nname = "bench-{n}"\ntoken_sha256 = "{token_sha256(token)}"\n'
        f'tenants = ["{DEFAULT_TENANT}"]\npermissions = ["verify"]\n'
        for n, token in enumerate(tokens)
    ]
    path.write_text("\n".join(blocks), encoding="utf-8")
    return path


def _level(
    server: ServerProcess, pool: FactorPool, tokens: list[str], n: int, rounds: int
) -> dict[str, Any]:
    """Every caller's `rounds` batches, all callers at once; memory sampled throughout."""
    # Built before the callers start: each its own fresh codes (the pool is not thread-safe).
    requests = [[batch.batch_request(pool, pool.take(n)) for _ in range(rounds)] for _ in tokens]
    lock = threading.Lock()
    statuses: Counter[str] = Counter()
    seconds: list[float] = []
    valid = [0]

    def caller(token: str, own: list[Any]) -> None:
        stub = pb_grpc.TotpServiceStub(batch.channel(server.address))
        metadata = [("authorization", f"Bearer {token}")]
        for request in own:
            started = time.perf_counter()
            try:
                response = stub.BatchVerify(request, timeout=600, metadata=metadata)
                status, good = "OK", batch.count_valid(response, {})
            except grpc.RpcError as failed:
                status, good = failed.code().name, 0
            with lock:
                statuses[status] += 1
                seconds.append(time.perf_counter() - started)
                valid[0] += good

    sampler = RssSampler([server.pid])
    with sampler.running():
        threads = [
            threading.Thread(target=caller, args=(token, own))
            for token, own in zip(tokens, requests, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return {
        "callers": len(tokens),
        "batches": len(tokens) * rounds,
        "statuses": dict(statuses),
        "valid_fraction": valid[0] / (n * len(tokens) * rounds),
        "median_call_s": statistics.median(seconds),
        "peak_rss_kb": sampler.peak_kb[server.pid],
    }


def measure(
    database: Database, data_dir: Path, pool: FactorPool, config: dict[str, Any]
) -> dict[str, Any]:
    """One server process; the levels in order, each with callers of their own."""
    most = max(config["levels"])
    tokens = [new_token() for _ in range(most)]
    callers = _callers_file(data_dir / "callers.toml", tokens)
    server = ServerProcess(
        data_dir, database.url, name="totpd-batch-memory", env={"TOTPD_CALLERS_FILE": str(callers)}
    )
    server.start()
    try:
        idle_kb = status_kb(server.pid, "VmRSS")
        levels = [
            _level(server, pool, tokens[:count], config["batch"], config["rounds"])
            for count in config["levels"]
        ]
        hwm_kb = status_kb(server.pid, "VmHWM")
    finally:
        server.stop()
    return {"batch": config["batch"], "idle_rss_kb": idle_kb, "hwm_kb": hwm_kb, "levels": levels}


def table(name: str, figures: dict[str, Any]) -> list[str]:
    lines = [
        f"\n{name}: one server process, BatchVerify x{figures['batch']:,} from several callers"
        f" at once (idle {figures['idle_rss_kb'] / 1024:,.0f} MB, VmHWM after all"
        f" {figures['hwm_kb'] / 1024:,.0f} MB)",
        f"{'callers':>8} {'batches':>8} {'peak RSS MB':>12} {'median call s':>14}  statuses",
    ]
    for level in figures["levels"]:
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(level["statuses"].items()))
        lines.append(
            f"{level['callers']:>8} {level['batches']:>8} {level['peak_rss_kb'] / 1024:>12,.0f}"
            f" {level['median_call_s']:>14.2f}  {statuses}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.service.batch_memory")
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--callers", default=",".join(map(str, LEVELS)), help="levels, e.g. 1,2,4")
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3, help="batches per caller and level")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    config = {
        "levels": [int(level) for level in args.callers.split(",")],
        "batch": args.batch,
        "rounds": args.rounds,
    }
    # Enough factors that every batch of a level has codes of its own.
    factors = max(40_000, 2 * args.batch * max(config["levels"]))
    figures = measure_on_seeded(
        args.db,
        factors,
        "batch-memory",
        lambda database, data_dir, pool: measure(database, data_dir, pool, config),
    )
    return report.print_and_save(table(args.db, figures), figures, args.out)


if __name__ == "__main__":
    sys.exit(main())
