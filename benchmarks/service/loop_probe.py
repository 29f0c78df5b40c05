"""What an event-loop rpc layer would reach (issue 16): unary `Verify` served from one
asyncio loop (grpc.aio), its concurrent calls gathered into shared rounds (group
commit), beside the floor's no-op and `totpd serve`, in the same run.

A probe server is not a totpd server. It builds totpd's service as `totpd serve`
does (`build_service`: the default configuration, audit on) and serves `Verify`
alone, through the engine's multi-call round (`CodeChecker.check_round`, the one the
coalescer runs). It measures the ceiling of that design, the figure that says
whether rewriting the rpc layer for it is worth it. The probes (`PROBES`):

- where the round runs: on a worker thread (`rounds`), so the loop keeps taking
  calls while the round waits for its commit; or on the loop itself
  (`rounds-on-loop`), which takes no call until the round ends (a third mode, the
  round's statements awaited on the loop through SQLAlchemy's asyncio bridge, was
  measured and dropped: benchmarks/NOTES.md, sixth and twentieth sessions);
- with or without the interceptor chain's per-call work (`+ chain`: the caller
  resolved and the call run as it, its metrics and its access line); never the
  deadline, admission or per-caller limits;
- one process, or two sharing the port (`x2`, SO_REUSEPORT, as `totpd serve
  --processes auto` on this 2-core machine);
- one round at a time, or a second one once the running round has taken
  `STALL_S` (`2nd if slow`: a slow commit then holds only the calls of its round).

A round (`Gatherer`): the first call that finds no round running or timed times one
(`window`); when it fires, the waiting calls, one per account, go to one round. The
calls that arrive while it runs form the next round as soon as it ends (or, with a
stall limit, once it has run that long).

Two loads, alternating turns, medians of the turns:

- closed loop, 8 in flight, wrong codes (the floor's load, `floor.RAISED_LIMITS`):
  the floor's no-op, `totpd serve`, a grpc.aio no-op and the probes (`CLOSED`);
- open loop at 2,000 req/s, valid codes (the suite's target, default limits):
  `totpd serve --processes auto` and the probes, one process each (`OPEN`).

``python -m benchmarks.service.loop_probe [--db sqlite|postgresql]``; a probe server:
``python -m benchmarks.service.loop_probe serve --ready-file F --mode MODE [--chain] ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import grpc

from benchmarks.service import floor, report, unary
from benchmarks.service.fixtures import Database, FactorPool, measure_on_seeded
from benchmarks.service.servers import ServerProcess, database_cpu_seconds
from totpd import calls
from totpd.calls import DEFAULT_TENANT
from totpd.cli.workers import PortReservation
from totpd.config import load_settings
from totpd.logs import configure_logging
from totpd.rpc import access_log, convert
from totpd.rpc.callers import SERVICE_PREFIX, Callers, load_access
from totpd.rpc.metrics import MethodInstruments
from totpd.rpc.server import server_options, tune_garbage_collector, write_ready_file
from totpd.service import validation
from totpd.service.audit import AuditContext
from totpd.service.checks import Check, Verdict
from totpd.service.coalescing import MAX_ROUND_CALLS
from totpd.service.errors import TotpdError
from totpd.service.mfa import verifying
from totpd.service.types import VerifyItem, VerifyOutcome
from totpd.service.verification import CodeChecker
from totpd.v1 import totp_service_pb2 as pb

WINDOW_S = 0.001  # how long the first waiting call waits for others
STALL_S = 0.004  # a round running this long lets a second start (about a round's time)
OPEN_RATE = 2000.0  # req/s: the suite's open-loop target


class Probe(NamedTuple):
    """One probe server: where its rounds run (`MODES`), whether the interceptor
    chain's per-call work (caller resolution, metrics, access line) comes first, and
    how many processes share its port (as `totpd serve --processes` does), and after
    how many seconds a slow round lets a second one start (None: never)."""

    mode: str
    chain: bool = False
    processes: int = 1
    stall: float | None = None


# noop: no round; rounds: on a worker thread; rounds-on-loop: on the loop itself.
MODES = ("noop", "rounds", "rounds-on-loop")
PROBES = {
    "aio noop": Probe("noop"),
    "aio rounds": Probe("rounds"),
    "aio rounds + chain": Probe("rounds", chain=True),
    "aio rounds + chain x2": Probe("rounds", chain=True, processes=2),
    "+ chain, 2nd if slow": Probe("rounds", chain=True, stall=STALL_S),
    "aio rounds on loop": Probe("rounds-on-loop"),
    "aio on loop + chain": Probe("rounds-on-loop", chain=True),
}
CLOSED = (
    "noop",
    "totpd",
    "aio noop",
    "aio rounds",
    "aio rounds on loop",
    "aio on loop + chain",
    "+ chain, 2nd if slow",
)
OPEN = (
    "totpd",
    "aio rounds",
    "aio rounds + chain",
    "aio rounds + chain x2",
    "+ chain, 2nd if slow",
    "aio rounds on loop",
)
# Always measured: the two no-ops (the closed loop's ratios are of them) and totpd.
BASELINES = ("noop", "totpd", "aio noop")
ROUND_PROBES = tuple(name for name, probe in PROBES.items() if probe.mode != "noop")

# -- the probe server ------------------------------------------------------------


class _Waiting(NamedTuple):
    item: VerifyItem
    digits: int
    audit: AuditContext
    verdict: asyncio.Future[Verdict]


class Gatherer:
    """Verify calls waiting for a round, and the rounds in flight (on the loop).

    One round at a time, unless `stall` is set: then a second round may start once
    the running one has taken `stall` seconds (a slow commit), so the calls that
    arrive meanwhile need not all wait for it.
    """

    def __init__(
        self,
        checker: CodeChecker,
        loop: asyncio.AbstractEventLoop,
        executor: ThreadPoolExecutor | None,
        window: float,
        stall: float | None = None,
    ) -> None:
        """`executor`: the rounds' threads; None: rounds run on the loop, blocking it
        (one at a time)."""
        self._checker = checker
        self._loop = loop
        self._executor = executor
        self._window = window
        self._stall = stall
        self._most_rounds = 1 if stall is None or executor is None else 2
        self._waiting: list[_Waiting] = []
        self._started: list[float] = []  # when each round in flight started (loop time)
        self._timer: asyncio.Handle | None = None  # the next round's start
        self.rounds = 0
        self.calls = 0

    async def verify(self, item: VerifyItem) -> VerifyOutcome:
        audit = AuditContext.of_call("Verify", tenant=DEFAULT_TENANT)
        verdict: asyncio.Future[Verdict] = self._loop.create_future()
        self._waiting.append(_Waiting(item, validation.code_digits(item.code), audit, verdict))
        self._arm()
        outcome = await verdict
        if isinstance(outcome, TotpdError):
            raise outcome
        return outcome

    def _may_start(self) -> bool:
        if not self._started:
            return True
        if len(self._started) >= self._most_rounds or self._stall is None:
            return False
        return self._loop.time() - self._started[0] >= self._stall

    def _arm(self) -> None:
        """Time the next round's start, unless one is timed or none may start before
        a running round ends (its end arms the next)."""
        if self._timer is not None or not self._waiting:
            return
        if not self._started:
            delay = self._window
        elif len(self._started) < self._most_rounds and self._stall is not None:
            running_for = self._loop.time() - self._started[0]
            delay = max(self._window, self._stall - running_for)
        else:
            return
        self._timer = self._loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        if self._waiting and self._may_start():
            self._start()
        else:
            self._arm()

    def _start(self) -> None:
        members, self._waiting = _one_per_account(self._waiting)
        started = self._loop.time()
        self._started.append(started)
        checks = [Check(position, w.item, w.digits) for position, w in enumerate(members)]
        audits = [w.audit for w in members]
        if self._executor is None:  # on the loop: nothing else runs until it ends
            done: Future[list[Verdict]] = Future()
            try:
                done.set_result(self._checker.check_round(checks, audits, tenant=DEFAULT_TENANT))
            except Exception as error:
                done.set_exception(error)
            self._finish(members, started, done)
            return
        done = self._executor.submit(
            self._checker.check_round, checks, audits, tenant=DEFAULT_TENANT
        )
        done.add_done_callback(
            lambda ended: self._loop.call_soon_threadsafe(self._finish, members, started, ended)
        )

    def _finish(
        self,
        members: list[_Waiting],
        started: float,
        ended: Future[list[Verdict]],
    ) -> None:
        self._started.remove(started)
        self.rounds += 1
        self.calls += len(members)
        error = ended.exception()
        for position, waiting in enumerate(members):
            if waiting.verdict.done():  # its call was cancelled meanwhile
                continue
            if error is not None:
                waiting.verdict.set_exception(error)
            else:
                waiting.verdict.set_result(ended.result()[position])
        if self._waiting and not self._started:
            # They waited for this round: no window for them.
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_soon(self._fire)
        else:
            self._arm()


def _one_per_account(waiting: list[_Waiting]) -> tuple[list[_Waiting], list[_Waiting]]:
    """The round's calls (the first of each account, in arrival order) and the rest."""
    accounts: set[str] = set()
    members: list[_Waiting] = []
    later: list[_Waiting] = []
    for call in waiting:
        if call.item.account_id in accounts or len(members) == MAX_ROUND_CALLS:
            later.append(call)
        else:
            accounts.add(call.item.account_id)
            members.append(call)
    return members, later


async def _serve(args: argparse.Namespace) -> None:
    settings = load_settings(
        None, {"database_url": args.database_url, "data_dir": str(args.data_dir)}
    )
    configure_logging(settings.log_level, settings.log_format)
    loop = asyncio.get_running_loop()
    gatherer: Gatherer | None = None
    if args.mode == "noop":

        async def verify(request: pb.VerifyRequest, context: Any) -> pb.VerifyResponse:
            return floor.NOOP_RESPONSE

    else:
        from totpd.app import build_service  # the native core: only where it is used

        service = build_service(settings)
        rounds_at_once = 1 if args.stall is None else 2
        executor = ThreadPoolExecutor(rounds_at_once) if args.mode == "rounds" else None
        gatherer = Gatherer(service.deps.checker, loop, executor, args.window, args.stall)

        async def verify(request: pb.VerifyRequest, context: Any) -> pb.VerifyResponse:
            assert gatherer is not None
            outcome = await gatherer.verify(verifying.validated(convert.verify_item(request)))
            response = pb.VerifyResponse()
            convert.fill_outcome(response.outcome, outcome)
            return response

    serving = _with_chain(verify, Callers(load_access(settings))) if args.chain else verify
    server = grpc.aio.server(
        options=server_options(settings, args.share_port),
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
    )
    handler = grpc.unary_unary_rpc_method_handler(
        serving,
        request_deserializer=pb.VerifyRequest.FromString,
        response_serializer=pb.VerifyResponse.SerializeToString,
    )
    service_name, _, method = floor.VERIFY_METHOD[1:].partition("/")
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(service_name, {method: handler})]
    )
    port = server.add_insecure_port(args.listen)
    tune_garbage_collector()
    await server.start()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    write_ready_file(args.ready_file, f"127.0.0.1:{port}")  # whole: read as soon as it exists
    await stop.wait()
    await server.stop(0)
    if gatherer is not None:
        stats = {"rounds": gatherer.rounds, "calls": gatherer.calls}
        _stats_file(args.ready_file).write_text(json.dumps(stats))


Handler = Callable[[pb.VerifyRequest, Any], Awaitable[pb.VerifyResponse]]


def _with_chain(verify: Handler, callers: Callers) -> Handler:
    """`verify` behind the per-call work of totpd's interceptor chain that fits a
    coroutine as it is (rpc/interceptors.py): the caller and tenant resolved and the
    call run as them, its metrics and its access line. Not the deadline (a round on
    a thread does not see the call's context) nor admission (its semaphore blocks)."""
    instruments = MethodInstruments(floor.VERIFY_METHOD)
    name = floor.VERIFY_METHOD.removeprefix(SERVICE_PREFIX)

    async def handle(request: pb.VerifyRequest, context: Any) -> pb.VerifyResponse:
        started = time.perf_counter()
        caller: str | None = None
        tenant = ""
        code = grpc.StatusCode.UNKNOWN
        try:
            scope = callers.scope(name, request, context)
            caller, tenant = scope.caller, scope.tenant
            entered = calls.enter(scope)
            try:
                response = await verify(request, context)
            finally:
                calls.leave(entered)
            code = grpc.StatusCode.OK
            return response
        finally:
            elapsed = time.perf_counter() - started
            instruments.record(elapsed, code)
            access_log.write(floor.VERIFY_METHOD, code, elapsed, caller, tenant)

    return handle


def _stats_file(ready_file: Path) -> Path:
    return ready_file.with_suffix(".rounds.json")


def _supervise(args: argparse.Namespace) -> None:
    """`args.processes` probe servers on one reserved port (SO_REUSEPORT), as `totpd
    serve --processes` runs its workers; SIGTERM stops them all, their rounds summed."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    ready = [
        args.ready_file.with_name(f"{args.ready_file.stem}-{index}.ready")
        for index in range(args.processes)
    ]
    with PortReservation("127.0.0.1:0") as reservation:
        one = Probe(args.mode, args.chain, 1, args.stall)
        command = _serve_command(one, args.database_url, args.data_dir, args.window)
        command += ["--listen", reservation.address, "--share-port"]
        workers = [subprocess.Popen([*command, "--ready-file", str(path)]) for path in ready]
        try:
            deadline = time.monotonic() + 90
            while not all(path.exists() for path in ready):
                if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
                    raise RuntimeError("a probe worker did not start")
                time.sleep(0.05)
            write_ready_file(args.ready_file, reservation.address)
            stop.wait()
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            for worker in workers:
                worker.wait(timeout=30)
    counts = [json.loads(path.read_text()) for path in map(_stats_file, ready) if path.exists()]
    if counts:
        summed = {key: sum(count[key] for count in counts) for key in ("rounds", "calls")}
        _stats_file(args.ready_file).write_text(json.dumps(summed))


def _serve_command(probe: Probe, database_url: str, data_dir: Path, window: float) -> list[str]:
    """`probe`'s server command line, all but its ready file."""
    command = [sys.executable, "-m", "benchmarks.service.loop_probe", "serve"]
    command += ["--mode", probe.mode, "--database-url", database_url]
    command += ["--data-dir", str(data_dir), "--window", repr(window)]
    command += ["--processes", str(probe.processes)]
    command += ["--chain"] if probe.chain else []
    return command + ([] if probe.stall is None else ["--stall", repr(probe.stall)])


class ProbeServerProcess(ServerProcess):
    """The probe server in its own process, started and measured like `totpd serve`."""

    def __init__(
        self,
        data_dir: Path,
        database_url: str,
        probe: Probe,
        env: dict[str, str] | None = None,
        window: float = WINDOW_S,
    ) -> None:
        code = {"PYTHONPATH": floor.code_path(None)}
        chain = "-chain" if probe.chain else ""
        stall = "" if probe.stall is None else "-stall"
        name = f"probe-{probe.mode}{chain}{stall}-x{probe.processes}"
        super().__init__(data_dir, database_url, name=name, env={**(env or {}), **code})
        self.probe = probe
        self.window = window

    def command(self) -> list[str]:
        command = _serve_command(self.probe, self.database_url, self.data_dir, self.window)
        return [*command, "--ready-file", str(self.ready_file)]

    def round_counts(self) -> dict[str, int] | None:
        """Rounds and calls served, once stopped (the no-op has none)."""
        path = _stats_file(self.ready_file)
        counts: dict[str, int] | None = json.loads(path.read_text()) if path.exists() else None
        return counts


# -- the measurement ---------------------------------------------------------------


def _round_counts(servers: dict[str, ServerProcess]) -> dict[str, dict[str, int]]:
    """Each probe's rounds and calls, by server name (read once it stopped)."""
    counts = {}
    for name, server in servers.items():
        if isinstance(server, ProbeServerProcess) and (served := server.round_counts()):
            counts[name] = served
    return counts


def _probes(
    data_dir: Path,
    url: str,
    names: tuple[str, ...],
    env: dict[str, str] | None,
    window: float,
) -> dict[str, ServerProcess]:
    """The probe servers among `names`, in their order."""
    return {
        name: ProbeServerProcess(data_dir, url, PROBES[name], env, window)
        for name in names
        if name in PROBES
    }


def _selected(names: tuple[str, ...], only: tuple[str, ...] | None) -> tuple[str, ...]:
    """The servers of `names` a run measures: the baselines, and the probes `only`
    names (None: all)."""
    return tuple(name for name in names if name in BASELINES or only is None or name in only)


def measure_closed(
    database: Database, data_dir: Path, pool: FactorPool, config: dict[str, Any]
) -> dict[str, Any]:
    """The floor's load on `CLOSED`; medians of the turns."""
    raised = dict(floor.RAISED_LIMITS)
    names = _selected(CLOSED, config["only"])
    servers = {
        "noop": floor.NoopServerProcess(data_dir, "noop", with_interceptors=False),
        "totpd": ServerProcess(data_dir, database.url, name="totpd-probe", env=raised),
        **_probes(data_dir, database.url, names, raised, config["window"]),
    }

    def run(name: str, server: ServerProcess) -> dict[str, Any]:
        counted = database if name == "totpd" or name in ROUND_PROBES else None
        return floor.floor_level(server, pool, config, counted)

    turns = unary.in_turns(servers, config["turns"], run)
    keys = ("rps", "p50_ms", "p99_ms", "server_cpu_us_per_call")
    medians = {name: unary.medians_of(figures, keys) for name, figures in turns.items()}
    return {
        "medians": medians,
        "of_noop": {name: m["rps"] / medians["noop"]["rps"] for name, m in medians.items()},
        "of_aio_noop": {name: m["rps"] / medians["aio noop"]["rps"] for name, m in medians.items()},
        "rounds": _round_counts(servers),
        "servers": names,
        "concurrency": config["concurrency"],
        "turn_count": config["turns"],
        "window_s": config["window"],
    }


def measure_open(
    database: Database, data_dir: Path, pool: FactorPool, config: dict[str, Any]
) -> dict[str, Any]:
    """Valid codes offered at `config["rate"]` to `OPEN`; medians of the turns."""
    names = _selected(OPEN, config["only"])
    servers = {
        "totpd": ServerProcess(data_dir, database.url, name="totpd-open", processes="auto"),
        **_probes(data_dir, database.url, names, None, config["window"]),
    }

    def run(name: str, server: ServerProcess) -> dict[str, Any]:
        return unary.run_open_level(
            server,
            pool,
            config["rate"],
            config["open_seconds"],
            config["max_outstanding"],
            database_cpu=lambda: database_cpu_seconds(database),
        )

    turns = unary.in_turns(servers, config["turns"], run)
    keys = (
        "rps",
        "p50_ms",
        "p99_ms",
        "dropped",
        "server_cpu_us_per_call",
        "database_cpu_us_per_call",
        "client_cpu_us_per_call",
    )
    medians = {name: unary.medians_of(figures, keys) for name, figures in turns.items()}
    for name, figures in turns.items():
        medians[name]["turns_p99_ms"] = [f["p99_ms"] for f in figures]
        medians[name]["turns_dropped"] = [f["dropped"] for f in figures]
        medians[name]["servers"] = figures[0]["servers"]
    return {
        "medians": medians,
        "rounds": _round_counts(servers),
        "servers": names,
        "rate": config["rate"],
        "turn_count": config["turns"],
    }


def measure(
    database: Database, data_dir: Path, pool: FactorPool, config: dict[str, Any]
) -> dict[str, Any]:
    return {
        "closed": measure_closed(database, data_dir, pool, config),
        "open": measure_open(database, data_dir, pool, config) if config["rate"] else None,
    }


def _per_round(rounds: dict[str, dict[str, int]], server: str) -> str:
    """Calls per round of `server` (warm-up included), "-" for the others."""
    served = rounds.get(server)
    if not served or not served["rounds"]:
        return "-"
    return f"{served['calls'] / served['rounds']:.1f}"


def table(name: str, figures: dict[str, Any]) -> list[str]:
    closed = figures["closed"]
    lines = [
        f"\n{name}: unary Verify (wrong codes), {closed['concurrency']} in flight, one process "
        f"each, medians of {closed['turn_count']} alternating turns; aio rounds: "
        f"{closed['window_s'] * 1000:g} ms window",
        f"{'server':>21} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'CPU µs/call':>12} "
        f"{'of noop':>8} {'of aio noop':>12} {'calls/round':>12}",
    ]
    for server in closed["servers"]:
        m = closed["medians"][server]
        lines.append(
            f"{server:>21} {m['rps']:>9,.0f} {m['p50_ms']:>7.2f} {m['p99_ms']:>7.2f} "
            f"{m['server_cpu_us_per_call']:>12,.0f} {closed['of_noop'][server]:>8.2f} "
            f"{closed['of_aio_noop'][server]:>12.2f} {_per_round(closed['rounds'], server):>12}"
        )
    opened = figures["open"]
    if opened is None:
        return lines
    lines += [
        f"\n{name}: unary Verify (valid codes), open loop at {opened['rate']:,.0f} req/s, "
        f"medians of {opened['turn_count']} alternating turns",
        f"{'server':>21} {'processes':>9} {'reached':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'dropped':>8} {'CPU µs/call':>12} {'+ db + client':>14} {'cores':>6} "
        f"{'calls/round':>12}  p99 of each turn",
    ]
    for server in opened["servers"]:
        m = opened["medians"][server]
        turns_p99 = ", ".join(f"{p99:,.1f}" for p99 in m["turns_p99_ms"])
        every = sum(m[f"{part}_cpu_us_per_call"] for part in ("server", "database", "client"))
        lines.append(
            f"{server:>21} {m['servers']:>9} {m['rps']:>8,.0f} {m['p50_ms']:>8.1f} "
            f"{m['p99_ms']:>8.1f} {m['dropped']:>8,.0f} {m['server_cpu_us_per_call']:>12,.0f}"
            f" {every:>14,.0f} {every * m['rps'] / 1e6:>6.2f}"
            f" {_per_round(opened['rounds'], server):>12}  {turns_p99}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.service.loop_probe")
    commands = parser.add_subparsers(dest="command")
    serve_parser = commands.add_parser("serve", help="run the probe server (for the benchmark)")
    serve_parser.add_argument("--ready-file", type=Path, required=True)
    serve_parser.add_argument("--mode", choices=MODES, required=True)
    serve_parser.add_argument("--database-url", required=True)
    serve_parser.add_argument("--data-dir", type=Path, required=True)
    serve_parser.add_argument("--window", type=float, default=WINDOW_S)
    serve_parser.add_argument("--chain", action="store_true")
    serve_parser.add_argument("--processes", type=int, default=1)
    serve_parser.add_argument("--stall", type=float, help="a second round after this long")
    serve_parser.add_argument("--listen", default="127.0.0.1:0")
    serve_parser.add_argument("--share-port", action="store_true")
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--factors", type=int, default=60_000)
    parser.add_argument("--seconds", type=float, default=4.0, help="each closed-loop turn")
    parser.add_argument("--open-seconds", type=float, default=6.0, help="each open-loop turn")
    parser.add_argument("--rate", type=float, default=OPEN_RATE, help="open loop (0: none)")
    parser.add_argument("--max-outstanding", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--window", type=float, default=WINDOW_S, help="seconds")
    parser.add_argument("--only", nargs="+", choices=sorted(PROBES), help="these probes alone")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    if args.command == "serve":
        if args.processes > 1:
            _supervise(args)
        else:
            asyncio.run(_serve(args))
        return 0
    config = {key: getattr(args, key) for key in _CONFIG_KEYS}
    figures = measure_on_seeded(
        args.db,
        args.factors,
        "loop-probe",
        lambda database, data_dir, pool: measure(database, data_dir, pool, config),
    )
    return report.print_and_save(table(args.db, figures), figures, args.out)


_CONFIG_KEYS = (
    "seconds",
    "open_seconds",
    "rate",
    "max_outstanding",
    "concurrency",
    "turns",
    "window",
    "only",
)


if __name__ == "__main__":
    sys.exit(main())
