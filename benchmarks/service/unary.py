"""Unary Verify under closed-loop load: requests/second and latency percentiles.

One `totpd serve` process per core, each on its own loopback port (the server
turns SO_REUSEPORT off on purpose, so two processes cannot share a port); the
client (grpc.aio, one channel per server) keeps `concurrency` calls in flight,
spread round-robin over the servers. Every request is a fresh valid code of a
distinct factor, so each call does the full work: count the attempt, compare,
consume the step. Each level is bounded: a fixed duration and a fixed budget of
pre-built requests, whichever ends first, after a short warm-up that is not
counted. Latency is measured by the client from send to response.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from typing import Any

import grpc

from benchmarks.service.fixtures import FactorPool, cpu_seconds
from totpd.v1 import factor_pb2
from totpd.v1 import totp_service_pb2 as pb
from totpd.v1 import totp_service_pb2_grpc as pb_grpc


def _requests(pool: FactorPool, n: int) -> list[pb.VerifyRequest]:
    return [
        pb.VerifyRequest(account_id=pool.account(index), code=pool.code(index, step))
        for index, step in pool.take(n)
    ]


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    rank = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[rank]


async def _drive(
    addresses: list[str],
    requests: list[pb.VerifyRequest],
    warmup: int,
    concurrency: int,
    seconds: float,
) -> tuple[list[float], float, dict[str, int]]:
    channels = [grpc.aio.insecure_channel(address) for address in addresses]
    stubs = [pb_grpc.TotpServiceStub(ch) for ch in channels]
    try:
        for ch in channels:
            await asyncio.wait_for(ch.channel_ready(), timeout=30)
        queue = iter(requests)
        latencies: list[float] = []
        verdicts: dict[str, int] = {}

        async def worker(k: int, limit: int | None, deadline: float, record: bool) -> None:
            stub = stubs[k % len(stubs)]
            done = 0
            while time.perf_counter() < deadline and (limit is None or done < limit):
                request = next(queue, None)
                if request is None:
                    return
                started = time.perf_counter()
                try:
                    response = await stub.Verify(request, timeout=30)
                    name = factor_pb2.VerifyResult.Name(response.outcome.result)
                except grpc.aio.AioRpcError as error:
                    name = f"error:{error.code().name}"
                elapsed = time.perf_counter() - started
                done += 1
                if record:
                    latencies.append(elapsed)
                    verdicts[name] = verdicts.get(name, 0) + 1

        per_worker = max(1, warmup // concurrency)
        far = time.perf_counter() + 60
        await asyncio.gather(*(worker(k, per_worker, far, False) for k in range(concurrency)))
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(*(worker(k, None, deadline, True) for k in range(concurrency)))
        elapsed = time.perf_counter() - started
        return latencies, elapsed, verdicts
    finally:
        for ch in channels:
            await ch.close()


def run_level(
    addresses: list[str],
    pids: list[int],
    pool: FactorPool,
    concurrency: int,
    seconds: float,
    max_rate: float,
) -> dict[str, Any]:
    warmup = max(200, 4 * concurrency)
    budget = min(len(pool) - warmup, int(seconds * max_rate))
    requests = _requests(pool, warmup + budget)
    gc.collect()
    gc.freeze()  # the benchmark's own heap must not pause the client mid-run
    server_cpu = [cpu_seconds(pid) for pid in pids]
    client_cpu = time.process_time()
    try:
        latencies, elapsed, verdicts = asyncio.run(
            _drive(addresses, requests, warmup, concurrency, seconds)
        )
    finally:
        gc.unfreeze()
    client_cpu = time.process_time() - client_cpu
    server_cpu = [cpu_seconds(pid) - before for pid, before in zip(pids, server_cpu, strict=True)]
    latencies.sort()
    count = len(latencies)
    return {
        "concurrency": concurrency,
        "servers": len(addresses),
        "requests": count,
        "seconds": elapsed,
        "rps": count / elapsed if elapsed else 0.0,
        "p50_ms": 1000 * _percentile(latencies, 50),
        "p90_ms": 1000 * _percentile(latencies, 90),
        "p99_ms": 1000 * _percentile(latencies, 99),
        "max_ms": 1000 * latencies[-1] if latencies else float("nan"),
        "mean_ms": 1000 * statistics.fmean(latencies) if latencies else float("nan"),
        "verdicts": verdicts,
        "budget_exhausted": count >= budget,
        "client_cpu_s": client_cpu,
        "server_cpu_s": server_cpu,
    }
