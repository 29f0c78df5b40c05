"""Unary Verify under closed-loop and open-loop load: requests/second and latency percentiles.

One `totpd serve --processes N` server (a supervisor and N workers on one
loopback port, SO_REUSEPORT), or one process. The client keeps `concurrency`
calls in flight over several connections, the calls spread round-robin over
them; the kernel spreads the connections over the workers at random, so with
few calls in flight one worker may carry more than its share
(`ServerProcess.connections`). Every request is a fresh valid code of a
distinct factor, so each call does the full work: count the attempt, compare,
consume the step. Each level is bounded: a fixed duration and a fixed budget of
pre-built requests, whichever ends first, after a short warm-up that is not
counted. Latency is measured by the client from send to response.

Closed loop measures latency at whatever rate results: a stalled server also
stops the sending, so its stalls barely show in the tail (coordinated
omission). `run_open_level` therefore also offers a fixed rate (the Go client's
``-rate``): requests are due at fixed intervals of 1/rate whatever the server
does, latency runs from each request's due time, and a request due while
`max_outstanding` calls are in flight is dropped and counted, never sent late.

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

from benchmarks.service.fixtures import FactorPool, current_step
from benchmarks.service.servers import ServerProcess, cpu_seconds, thread_cpu_seconds
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


def _request_lines(pool: FactorPool, n: int, wrong_codes: bool = False) -> str:
    if wrong_codes:
        step = current_step()
        size = len(pool)
        return "".join(
            f"{pool.account(i % size)}\t{wrong_code(pool, i % size, step)}\n" for i in range(n)
        )
    return "".join(
        f"{pool.account(index)}\t{pool.code(index, step)}\n" for index, step in pool.take(n)
    )


def wrong_code(pool: FactorPool, index: int, step: int) -> str:
    """A code of the right shape that no step within two of `step` accepts: the
    server reads, compares every step of its window and counts a failure."""
    near = {pool.code(index, step + offset) for offset in range(-2, 3)}
    code = pool.code(index, step)
    modulus = 10 ** len(code)
    value = int(code)
    while True:
        value = (value + 1) % modulus
        candidate = f"{value:0{len(code)}d}"
        if candidate not in near:
            return candidate


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
    # Each its own connection: grpc shares one between channels to the same address.
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(address, options=options) for address in addresses]
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
    server: ServerProcess,
    pool: FactorPool,
    concurrency: int,
    seconds: float,
    max_rate: float,
    client: str = "go",
    gomaxprocs: int = 1,
    database_cpu: Callable[[], float | None] = lambda: None,
    wrong_codes: bool = False,
) -> dict[str, Any]:
    """One load level; `client` is "go" (the Go load generator) or "python-aio".

    `database_cpu` reads the CPU seconds a separate database server has used
    (None: the database runs inside the servers, as SQLite does). `wrong_codes`
    (Go client only): every request a wrong code, cycling over the pool's
    factors, so no step is consumed and a pool serves any number of calls.
    """
    if client not in CLIENTS:
        raise ValueError(f"client must be one of {CLIENTS}, not {client!r}")
    if wrong_codes and client != "go":
        raise ValueError("wrong_codes needs the Go client")
    warmup = max(200, 4 * concurrency)
    level = _Level(
        server.connections(concurrency),
        server.pid,
        server.workers,
        pool,
        concurrency,
        seconds,
        warmup,
        budget=int(seconds * max_rate)
        if wrong_codes
        else min(len(pool) - warmup, int(seconds * max_rate)),
        wrong_codes=wrong_codes,
    )
    if client == "go":
        return _with_database_cpu(lambda: _run_level_go(level, gomaxprocs), database_cpu)
    return _with_database_cpu(lambda: _run_level_python(level), database_cpu)


def in_turns(
    servers: dict[str, ServerProcess],
    turns: int,
    run: Callable[[str, ServerProcess], dict[str, Any]],
) -> dict[str, list[dict[str, Any]]]:
    """Start `servers`, `run` each in alternating turns (a shared machine's noise hits
    every server alike), stop them: each server's figures, one per turn, each with the
    CPU per call of the server, the client and (0 if not measured) the database:
    `server_cpu_us_per_call`, `client_cpu_us_per_call`, `database_cpu_us_per_call`."""
    figures: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
    try:
        for server in servers.values():
            server.start()
        for _ in range(turns):
            for name, server in servers.items():
                figure = run(name, server)
                _add_cpu_per_call(figure)
                figures[name].append(figure)
    finally:
        for server in servers.values():
            server.stop()
    return figures


def _add_cpu_per_call(figure: dict[str, Any]) -> None:
    """CPU µs per completed call of the server, the client and the database (0 if not
    measured); None for a turn that completed no call."""
    requests = figure["requests"]
    parts = {
        "server": sum(figure["server_cpu_s"]),
        "client": figure["client_cpu_s"],
        "database": figure.get("database_cpu_s") or 0.0,
    }
    for part, seconds in parts.items():
        figure[f"{part}_cpu_us_per_call"] = 1e6 * seconds / requests if requests else None


def medians_of(figures: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    """Each of `keys`' median over a server's turns (None where no turn has one),
    and its verdicts added up."""
    medians: dict[str, Any] = {}
    for key in keys:
        values = [f[key] for f in figures if f[key] is not None]
        medians[key] = statistics.median(values) if values else None
    verdicts: dict[str, int] = {}
    for figure in figures:
        for verdict, count in figure["verdicts"].items():
            verdicts[verdict] = verdicts.get(verdict, 0) + count
    medians["verdicts"] = verdicts
    return medians


def median_turn(turns: list[dict[str, Any]]) -> dict[str, Any]:
    """The turn whose p99 is the median of `turns`' (of an even number, the worse of
    the middle two), whole, so its figures stay one turn's; with every turn's rate,
    p50, p99 and drops under `turns`, so no turn is hidden."""
    ranked = sorted(turns, key=lambda turn: turn["p99_ms"])
    median = dict(ranked[len(ranked) // 2])
    median["turns"] = turn_summaries(turns)
    return median


def turn_summaries(turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each open-loop turn's rate, p50, p99 and drops, in the order they ran."""
    return [{key: turn[key] for key in ("rps", "p50_ms", "p99_ms", "dropped")} for turn in turns]


def run_open_level(
    server: ServerProcess,
    pool: FactorPool,
    rate: float,
    seconds: float,
    max_outstanding: int = 1000,
    *,
    warmup: int = 200,
    warmup_concurrency: int = 8,
    late_after_ms: float = 1.0,
    gomaxprocs: int = 1,
    database_cpu: Callable[[], float | None] = lambda: None,
    wrong_codes: bool = False,
) -> dict[str, Any]:
    """One open-loop level (Go client only): `rate` requests/second for `seconds`.

    Request i is due `i / rate` seconds after the start, sent then whatever the
    server does (round-robin over the servers); its latency runs from that due
    time to the response, so a server stall shows in the tail. At most
    `max_outstanding` calls are in flight: a request due beyond that is dropped
    (`dropped`), never sent late; `late` counts the requests sent more than
    `late_after_ms` past their due time (the generator itself was behind).
    The warm-up (`warmup` requests, `warmup_concurrency` in flight, closed loop)
    is not counted. `requests` and `rps` are completed calls and completed calls
    per second (from the start until the last answer). `wrong_codes`: as
    `run_level`'s, for a server that never reads the codes (the no-op), so the
    pool's steps stay for the servers that do.
    """
    if rate <= 0 or seconds <= 0 or max_outstanding < 1:
        raise ValueError("rate and seconds must be > 0 and max_outstanding >= 1")
    scheduled = max(1, round(rate * seconds))
    if not wrong_codes and warmup + scheduled > len(pool):
        warmup = max(0, len(pool) - scheduled)
    if not wrong_codes and scheduled > len(pool):
        raise ValueError(f"{scheduled} requests need as many factors; the pool has {len(pool)}")
    level = _Level(
        server.connections(warmup_concurrency),
        server.pid,
        server.workers,
        pool,
        warmup_concurrency,
        seconds,
        warmup,
        budget=scheduled,
        wrong_codes=wrong_codes,
    )
    extra = (
        f"-rate={rate!r}",
        f"-max-outstanding={max_outstanding}",
        f"-late-after={late_after_ms * 1000:.0f}us",
    )
    return _with_database_cpu(lambda: _run_level_go(level, gomaxprocs, extra), database_cpu)


def _with_database_cpu(
    run: Callable[[], dict[str, Any]], database_cpu: Callable[[], float | None]
) -> dict[str, Any]:
    """The level's figures, plus the database's CPU seconds during it (None if unknown)."""
    before = database_cpu()
    figures = run()
    after = database_cpu()
    figures["database_cpu_s"] = None if before is None or after is None else after - before
    return figures


class _Level(NamedTuple):
    """One load level: where, how hard, for how long, with how many requests."""

    addresses: list[str]  # one per client connection
    pid: int  # the server process (with --processes N, the supervisor)
    processes: int  # the processes that serve
    pool: FactorPool
    concurrency: int
    seconds: float
    warmup: int  # requests sent first and not counted
    budget: int  # requests available to the timed phase
    wrong_codes: bool = False  # wrong codes instead of fresh valid ones


def _run_level_go(level: _Level, gomaxprocs: int, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run the load generator once; `extra` are more flags (the open loop's)."""
    binary = build_loadgen()
    with tempfile.TemporaryDirectory(prefix="totpd-loadgen-") as tmp:
        requests = Path(tmp) / "requests.txt"
        requests.write_text(
            _request_lines(level.pool, level.warmup + level.budget, level.wrong_codes)
        )
        command = [
            str(binary),
            f"-requests={requests}",
            f"-addr={','.join(level.addresses)}",
            f"-concurrency={level.concurrency}",
            f"-seconds={level.seconds!r}",
            f"-warmup={level.warmup}",
            f"-timeout={CALL_TIMEOUT_S}s",
            f"-gomaxprocs={gomaxprocs}",
            *extra,
        ]
        server_cpu = cpu_seconds(level.pid)
        threads = thread_cpu_seconds(level.pid)
        # Bounded: the timed phase, then every call's deadline, then the warm-up's limit.
        limit = level.seconds + 2 * CALL_TIMEOUT_S + 120
        ran = subprocess.run(command, capture_output=True, text=True, timeout=limit)
        server_cpu = cpu_seconds(level.pid) - server_cpu
        threads = _spent(threads, thread_cpu_seconds(level.pid))
    if ran.returncode != 0:
        raise RuntimeError(f"totpd-loadgen failed ({ran.returncode}):\n{ran.stderr.strip()}")
    figures = _go_figures(level, json.loads(ran.stdout), server_cpu)
    figures["server_threads_cpu_s"] = threads
    return figures


def _spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds each kind of thread used between two `thread_cpu_seconds`."""
    return {name: seconds - before.get(name, 0.0) for name, seconds in after.items()}


_OPEN_LOOP_KEYS = (
    "rate",
    "scheduled",
    "schedule_s",
    "sent",
    "dropped",
    "late",
    "late_after_ms",
    "max_outstanding",
    "peak_outstanding",
)


def _go_figures(level: _Level, out: dict[str, Any], server_cpu: float) -> dict[str, Any]:
    """The load generator's JSON as the level's figures."""
    open_loop = out["mode"] == "open"
    figures: dict[str, Any] = {
        # Open loop: no calls-in-flight setting (`concurrency` is its warm-up's only).
        "concurrency": None if open_loop else level.concurrency,
        "servers": level.processes,
        "connections": len(level.addresses),
        "requests": out["requests"],
        "seconds": out["seconds"],
        "rps": out["rps"],
    }
    milliseconds = ["p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms"]
    milliseconds += sorted(key for key in out if key.endswith("_ms") and key not in milliseconds)
    for key in milliseconds:  # null (no call completed) becomes NaN, as the Python client's
        figures[key] = float("nan") if out[key] is None else out[key]
    figures.update(
        {
            "verdicts": out["verdicts"],
            "budget_exhausted": out["budget_exhausted"],
            "client_cpu_s": out["cpu_s"],
            "server_cpu_s": [server_cpu],
            "client": "go",
            "client_cpu_timed_s": out["cpu_timed_s"],
            "client_gomaxprocs": out["gomaxprocs"],
            "mode": out["mode"],
        }
    )
    if open_loop:
        figures["warmup_concurrency"] = level.concurrency
        figures.update({key: out[key] for key in _OPEN_LOOP_KEYS})
    return figures


def _run_level_python(level: _Level) -> dict[str, Any]:
    addresses, pid, processes, pool, concurrency, seconds, warmup, budget, _ = level
    requests = _requests(pool, warmup + budget)
    gc.collect()
    gc.freeze()  # the benchmark's own heap must not pause the client mid-run
    server_cpu = cpu_seconds(pid)
    client_cpu = time.process_time()
    try:
        latencies, elapsed, verdicts = asyncio.run(
            _drive(addresses, requests, warmup, concurrency, seconds)
        )
    finally:
        gc.unfreeze()
    client_cpu = time.process_time() - client_cpu
    server_cpu = cpu_seconds(pid) - server_cpu
    latencies.sort()
    count = len(latencies)
    return {
        "concurrency": concurrency,
        "servers": processes,
        "connections": len(addresses),
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
        "server_cpu_s": [server_cpu],
        "client": "python-aio",
        "mode": "closed",
    }
