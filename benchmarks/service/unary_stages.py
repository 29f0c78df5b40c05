"""Where a unary Verify call's time goes, in-process: the floor's calls (wrong codes,
limits raised so every call reads, compares its window and writes a failure) replayed
one at a time in a child process that holds only what a server holds, each stage timed
as breakdown.py times a BatchVerify call.

The suite prints it under the floor (benchmarks/service/floor.py), whose no-op servers
give the rest of a served call: gRPC and protobuf (the no-op), and totpd's interceptor
chain (the no-op with it, less the no-op). Standalone: the child of `run_unary_breakdown`.
"""

from __future__ import annotations

import contextlib
import struct
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.service import breakdown, floor, unary
from benchmarks.service.fixtures import Database, FactorPool, current_step
from totpd.config import load_settings
from totpd.rpc.server import tune_garbage_collector
from totpd.v1 import factor_pb2 as factor_pb
from totpd.v1 import totp_service_pb2 as pb

# The floor's server's policy (floor.RAISED_LIMITS, read as `totpd serve` reads them):
# every call compares and writes.
RAISED_POLICY = load_settings(None, {}, floor.RAISED_LIMITS).policy
_LENGTH = struct.Struct(">I")


def pack(messages: list[bytes]) -> bytes:
    """Serialized requests, each behind its length."""
    return b"".join(_LENGTH.pack(len(m)) + m for m in messages)


def unpack(data: bytes) -> list[bytes]:
    messages, at = [], 0
    while at < len(data):
        (size,) = _LENGTH.unpack_from(data, at)
        at += _LENGTH.size
        messages.append(data[at : at + size])
        at += size
    return messages


def stage_times(server: breakdown.InProcessServer, requests: list[bytes]) -> dict[str, float]:
    """`requests` one at a time, every stage timed; seconds per stage over all of them."""
    timers = breakdown.Timers()
    parse = timers.wrap("parse", pb.VerifyRequest.FromString)
    verify = timers.wrap("servicer", server.verify)
    serialize = timers.wrap("serialize", pb.VerifyResponse.SerializeToString)
    with contextlib.ExitStack() as stack:
        breakdown.time_store(stack, server, timers)
        breakdown.time_engine(stack, server, timers, unary=True)
        breakdown.time_gc(stack, timers.seconds)
        started = time.perf_counter()
        for data in requests:
            serialize(verify(parse(data)))
        total = time.perf_counter() - started
    return breakdown.stages_from(timers.seconds, total)


def _measure(database_url: str, data_dir: Path, requests: list[bytes]) -> dict[str, Any]:
    server = breakdown.InProcessServer(database_url, data_dir, RAISED_POLICY)
    tune_garbage_collector()  # as `totpd serve` does
    try:
        for data in requests:  # warm-up: each account's failure row now exists
            server.verify(pb.VerifyRequest.FromString(data))
        results: list[int] = []
        started, cpu = time.perf_counter(), time.process_time()
        for data in requests:
            response = server.verify(pb.VerifyRequest.FromString(data))
            response.SerializeToString()
            results.append(response.outcome.result)
        plain, plain_cpu = time.perf_counter() - started, time.process_time() - cpu
        staged = stage_times(server, requests)
    finally:
        server.close()
    return {
        "unary": True,
        "batch": len(requests),  # the divisor of breakdown.stage_table: per call here
        "calls": len(requests),
        "uninstrumented_median_s": plain,
        "uninstrumented_cpu_median_s": plain_cpu,
        "stages_median_s": staged,
        # The untimed pass's answers: all INVALID when every call compared and failed.
        "verdicts": dict(Counter(factor_pb.VerifyResult.Name(result) for result in results)),
    }


def run_unary_breakdown(
    database: Database, data_dir: Path, pool: FactorPool, calls: int
) -> dict[str, Any]:
    """`calls` wrong codes on as many factors, replayed three times in a child process
    (warm-up, untimed, timed by stage); returns its measurements."""
    step = current_step()
    requests = [
        pb.VerifyRequest(
            account_id=pool.account(index), code=unary.wrong_code(pool, index, step)
        ).SerializeToString()
        for index, _ in pool.take(calls)
    ]
    path = data_dir / f"unary-breakdown-{database.name}.bin"
    path.write_bytes(pack(requests))
    return breakdown.run_child("benchmarks.service.unary_stages", database, data_dir, path)


def table(name: str, parts: dict[str, Any], floor_figures: dict[str, Any] | None) -> list[str]:
    """The in-process stages per call, after what the floor's no-op servers cost a call."""
    lines = [f"\n{name}: where a unary Verify call's time goes (the floor's calls, wrong codes)"]
    if floor_figures is not None:
        servers = floor_figures["servers"]
        noop, chained, served = (
            servers[server]["median_cpu_us_per_call"]
            for server in ("noop", "noop+interceptors", "totpd")
        )
        if None not in (noop, chained, served):
            lines.append(
                f"   served, {floor_figures['concurrency']} in flight (the floor's medians):"
                f" {served:,.0f} µs of server CPU per call: gRPC and protobuf (the no-op)"
                f" {noop:,.0f}, totpd's interceptor chain {chained - noop:,.0f}, the rest"
                f" {served - chained:,.0f} (the service, below, the coalescer and the"
                " hand-offs to and from its round thread)"
            )
    return lines + breakdown.stage_table(parts)


def _measure_file(database_url: str, data_dir: Path, requests: Path) -> dict[str, Any]:
    return _measure(database_url, data_dir, unpack(requests.read_bytes()))


def main() -> None:
    breakdown.child_main("stage breakdown of unary Verify (child process)", _measure_file)


if __name__ == "__main__":
    main()
