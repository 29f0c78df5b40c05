"""Unary Verify under closed-loop load: requests/second and latency percentiles.

One `totpd serve` process per core, each on its own loopback port (the server
turns SO_REUSEPORT off on purpose, so two processes cannot share a port); the
client keeps `concurrency` calls in flight, one connection per server, the calls
spread round-robin over the servers. Every request is a fresh valid code of a
distinct factor, so each call does the full work: count the attempt, compare,
consume the step. Each level is bounded: a fixed duration and a fixed budget of
pre-built requests, whichever ends first, after a short warm-up that is not
counted. Latency is measured by the client from send to response.

Two clients drive the load:

- ``go`` (the default): ``loadgen/``, a small Go program built once per run
  with ``go build``. It costs a fraction of the CPU per call of a Python client
  and runs with GOMAXPROCS=1, so on a 2-core machine the servers get the CPU.
  The requests are written to a file, one ``account_id<TAB>code`` per line,
  and the program prints its figures as JSON.
- ``python-aio``: the grpc.aio driver below, kept as a fallback (``--python-client``).
  It burns about as much CPU per call as a server, so its req/s mostly
  measures itself.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import gc
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import grpc

from benchmarks.service.fixtures import FactorPool, cpu_seconds
from totpd.v1 import factor_pb2
from totpd.v1 import totp_service_pb2 as pb
from totpd.v1 import totp_service_pb2_grpc as pb_grpc

LOADGEN_DIR = Path(__file__).resolve().parent / "loadgen"
CLIENTS = ("go", "python-aio")
CALL_TIMEOUT_S = 30


@functools.cache
def build_loadgen() -> Path:
    """`go build` the load generator into a temporary directory, once per process."""
    go = shutil.which("go")
    if go is None:
        raise RuntimeError(
            "the unary benchmark's load generator is a Go program"
            f" ({LOADGEN_DIR.relative_to(LOADGEN_DIR.parents[2])}) and `go` is not on PATH:"
            " install Go (see its go.mod for the version) or pass --python-client"
            " to use the slower Python grpc.aio client"
        )
    out_dir = Path(tempfile.mkdtemp(prefix="totpd-loadgen-"))
    atexit.register(shutil.rmtree, out_dir, True)
    binary = out_dir / "totpd-loadgen"
    built = subprocess.run(
        [go, "build", "-o", str(binary), "."],
        cwd=LOADGEN_DIR,
        capture_output=True,
        text=True,
    )
    if built.returncode != 0:
        raise RuntimeError(f"`go build` in {LOADGEN_DIR} failed:\n{built.stderr.strip()}")
    return binary


def _requests(pool: FactorPool, n: int) -> list[pb.VerifyRequest]:
    return [
        pb.VerifyRequest(account_id=pool.account(index), code=pool.code(index, step))
        for index, step in pool.take(n)
    ]


def _request_lines(pool: FactorPool, n: int) -> str:
    return "".join(
        f"{pool.account(index)}\t{pool.code(index, step)}\n" for index, step in pool.take(n)
    )


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
                    response = await stub.Verify(request, timeout=CALL_TIMEOUT_S)
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
            await ch.close(None)


def run_level(
    addresses: list[str],
    pids: list[int],
    pool: FactorPool,
    concurrency: int,
    seconds: float,
    max_rate: float,
    client: str = "go",
    gomaxprocs: int = 1,
    database_cpu: Callable[[], float | None] = lambda: None,
) -> dict[str, Any]:
    """One load level; `client` is "go" (the Go load generator) or "python-aio".

    `database_cpu` reads the CPU seconds a separate database server has used
    (None: the database runs inside the servers, as SQLite does).
    """
    if client not in CLIENTS:
        raise ValueError(f"client must be one of {CLIENTS}, not {client!r}")
    warmup = max(200, 4 * concurrency)
    level = _Level(
        addresses,
        pids,
        pool,
        concurrency,
        seconds,
        warmup,
        budget=min(len(pool) - warmup, int(seconds * max_rate)),
    )
    database_before = database_cpu()
    figures = _run_level_go(level, gomaxprocs) if client == "go" else _run_level_python(level)
    database_after = database_cpu()
    figures["database_cpu_s"] = (
        None
        if database_before is None or database_after is None
        else database_after - database_before
    )
    return figures


class _Level(NamedTuple):
    """One load level: where, how hard, for how long, with how many requests."""

    addresses: list[str]
    pids: list[int]
    pool: FactorPool
    concurrency: int
    seconds: float
    warmup: int  # requests sent first and not counted
    budget: int  # requests available to the timed phase


def _run_level_go(level: _Level, gomaxprocs: int) -> dict[str, Any]:
    addresses, pids, pool, concurrency, seconds, warmup, budget = level
    binary = build_loadgen()
    with tempfile.TemporaryDirectory(prefix="totpd-loadgen-") as tmp:
        requests = Path(tmp) / "requests.txt"
        requests.write_text(_request_lines(pool, warmup + budget))
        command = [
            str(binary),
            f"-requests={requests}",
            f"-addr={','.join(addresses)}",
            f"-concurrency={concurrency}",
            f"-seconds={seconds!r}",
            f"-warmup={warmup}",
            f"-timeout={CALL_TIMEOUT_S}s",
            f"-gomaxprocs={gomaxprocs}",
        ]
        server_cpu = [cpu_seconds(pid) for pid in pids]
        ran = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 180)
        server_cpu = [
            cpu_seconds(pid) - before for pid, before in zip(pids, server_cpu, strict=True)
        ]
    if ran.returncode != 0:
        raise RuntimeError(f"totpd-loadgen failed ({ran.returncode}):\n{ran.stderr.strip()}")
    out = json.loads(ran.stdout)
    nan = float("nan")
    return {
        "concurrency": concurrency,
        "servers": len(addresses),
        "requests": out["requests"],
        "seconds": out["seconds"],
        "rps": out["rps"],
        "p50_ms": nan if out["p50_ms"] is None else out["p50_ms"],
        "p90_ms": nan if out["p90_ms"] is None else out["p90_ms"],
        "p99_ms": nan if out["p99_ms"] is None else out["p99_ms"],
        "max_ms": nan if out["max_ms"] is None else out["max_ms"],
        "mean_ms": nan if out["mean_ms"] is None else out["mean_ms"],
        "verdicts": out["verdicts"],
        "budget_exhausted": out["budget_exhausted"],
        "client_cpu_s": out["cpu_s"],
        "server_cpu_s": server_cpu,
        "client": "go",
        "client_cpu_timed_s": out["cpu_timed_s"],
        "client_gomaxprocs": out["gomaxprocs"],
    }


def _run_level_python(level: _Level) -> dict[str, Any]:
    addresses, pids, pool, concurrency, seconds, warmup, budget = level
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
        "client": "python-aio",
    }
