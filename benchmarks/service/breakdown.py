"""Where one BatchVerify call spends its time, measured in-process (a child process that
holds only what a server holds), each stage timed by wrapping the server's functions.

The stages: benchmarks/README.md, "Where one call's time goes".
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import json
import pstats
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks.service.batch import batch_request
from benchmarks.service.fixtures import ROOT, Database, FactorPool, make_keyring
from totpd import otp
from totpd.rpc import convert
from totpd.rpc.server import tune_garbage_collector
from totpd.rpc.servicer import TotpServicer
from totpd.service import round_plan
from totpd.service.audit import AuditContext
from totpd.service.mfa import MfaService
from totpd.service.policy import Policy
from totpd.store import FactorStore, dbapi, open_engine
from totpd.store import rounds as store_rounds
from totpd.v1 import totp_service_pb2 as pb

# Statements on these tables inside the round's write are the audit trail's.
_AUDIT_PREFIX = "audit"
STAGES = (
    "parse",
    "to_domain",
    "validate",
    "read_select",
    "decrypt",
    "key_table",
    "c_verify",
    "judge",
    "write_update",
    "engine_glue",
    "response_build",
    "serialize",
)


class Timers:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        seconds = self.seconds
        clock = time.perf_counter

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                seconds[name] += clock() - started

        return timed


@contextlib.contextmanager
def _patched(target: Any, name: str, value: Any) -> Iterator[None]:
    original = getattr(target, name)
    setattr(target, name, value)
    try:
        yield
    finally:
        setattr(target, name, original)


def one_lane() -> contextlib.AbstractContextManager[None]:
    """A large round not split into parts (service/lanes.py): stages timed on two
    threads at once would overlap, and their sum exceed the call."""
    if not hasattr(round_plan, "PART_CHECKS"):  # a server copy from before the parts (an A/B)
        return contextlib.nullcontext()
    return _patched(round_plan, "PART_CHECKS", sys.maxsize)


class _LoopbackContext:
    """The one thing the servicer asks of grpc's context: the caller's address."""

    def peer(self) -> str:
        return "ipv4:127.0.0.1:0"


LOOPBACK_CONTEXT = _LoopbackContext()


class InProcessServer:
    """The server's objects in this process, on the benchmark database."""

    def __init__(self, database_url: str, data_dir: Path, policy: Policy | None = None) -> None:
        self.engine = open_engine(database_url)
        self.store = FactorStore(self.engine)
        self.keyring = make_keyring(data_dir)
        self.service = MfaService(self.store, self.keyring, policy or Policy(), time.time)
        self.servicer = TotpServicer(self.service)

    def call(self, data: bytes) -> bytes:
        request = pb.BatchVerifyRequest.FromString(data)
        context = LOOPBACK_CONTEXT
        return self.servicer.BatchVerify(request, context).SerializeToString()  # type: ignore[arg-type]

    def verify(self, request: pb.VerifyRequest) -> pb.VerifyResponse:
        """One unary Verify, as the servicer answers it (unary_stages.py)."""
        return self.servicer.Verify(request, LOOPBACK_CONTEXT)  # type: ignore[arg-type]

    def close(self) -> None:
        self.engine.dispose()


def stage_times(server: InProcessServer, data: bytes) -> dict[str, float]:
    """One call with every stage timed; returns seconds per stage and the total."""
    timers = Timers()
    with contextlib.ExitStack() as stack:
        stack.enter_context(one_lane())
        time_store(stack, server, timers)
        time_engine(stack, server, timers)
        time_gc(stack, timers.seconds)
        started = time.perf_counter()
        request = timers.wrap("parse", pb.BatchVerifyRequest.FromString)(data)
        response = timers.wrap("servicer", server.servicer.BatchVerify)(request, LOOPBACK_CONTEXT)
        timers.wrap("serialize", response.SerializeToString)()
        total = time.perf_counter() - started
    return stages_from(timers.seconds, total)


def time_store(stack: contextlib.ExitStack, server: InProcessServer, timers: Timers) -> None:
    """The round's read and write, the SQL inside each, and the locked retries."""
    seconds = timers.seconds
    sql_stage: list[str] = ["other"]

    def in_stage(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            sql_stage[0] = name
            try:
                return fn(*args, **kwargs)
            finally:
                sql_stage[0] = "other"

        return timers.wrap(name, run)

    _time_statements(stack, timers, sql_stage)
    attempts = server.store.attempts
    for method, stage in (("read", "read_select"), ("write_if_unchanged", "write_update")):
        wrapped = in_stage(stage, getattr(attempts, method))
        stack.enter_context(_patched(attempts, method, wrapped))
    original_locked = attempts.locked

    def counted_locked() -> Any:
        seconds["locked_retries"] += 1
        return original_locked()

    stack.enter_context(_patched(attempts, "locked", counted_locked))


def _time_statements(stack: contextlib.ExitStack, timers: Timers, sql_stage: list[str]) -> None:
    """Each statement's driver time under the stage it runs in; inside the round's
    write, the audit trail's statements and the COMMIT on their own too. A write run
    as one statement (`rounds._write_alone`: on PostgreSQL the factor's UPDATE inside
    its event's INSERT) is the write's, whatever table it names."""
    seconds = timers.seconds
    audit_statement: list[bool] = [False]
    alone: list[bool] = [False]

    def statement(elapsed: float) -> None:
        seconds[sql_stage[0] + "_sql_exec"] += elapsed
        if sql_stage[0] == "write_update" and audit_statement[0]:
            seconds["write_audit_sql_exec"] += elapsed

    original_run = dbapi.RawConnection.run

    def on_table(table: str, call: Callable[[], Any]) -> Any:
        """`call`, its statement time counted as the audit trail's if `table` is."""
        audit_statement[0] = table.startswith(_AUDIT_PREFIX)
        try:
            return call()
        finally:
            audit_statement[0] = False

    def run(connection: dbapi.RawConnection, statement: Any, values: Any) -> Any:
        table = "" if alone[0] else str(getattr(getattr(statement, "table", None), "name", ""))
        return on_table(table, lambda: original_run(connection, statement, values))

    original_alone = store_rounds._write_alone

    def write_alone(*args: Any) -> bool:
        alone[0] = True
        try:
            return original_alone(*args)
        finally:
            alone[0] = False

    original_copy = dbapi.RawConnection.copy

    def copy(connection: dbapi.RawConnection, into: dbapi.CopyInto, rows: Any) -> int:
        return int(on_table(into.table, lambda: original_copy(connection, into, rows)))

    original_commit = dbapi.RawConnection.commit
    timed_commit = timers.wrap("commit", original_commit)

    def commit(connection: dbapi.RawConnection) -> None:
        (timed_commit if sql_stage[0] == "write_update" else original_commit)(connection)

    stack.enter_context(_patched(dbapi.RawConnection, "run", run))
    stack.enter_context(_patched(dbapi.RawConnection, "copy", copy))
    stack.enter_context(_patched(dbapi.RawConnection, "commit", commit))
    stack.enter_context(_patched(store_rounds, "_write_alone", write_alone))
    stack.enter_context(dbapi.timed_statements(statement))


def time_engine(
    stack: contextlib.ExitStack, server: InProcessServer, timers: Timers, unary: bool = False
) -> None:
    """The servicer's conversion, the service, the engine, decryption and the C core
    (of BatchVerify, or with `unary` of Verify)."""
    service = server.service
    checker = service.deps.checker
    patches: list[tuple[Any, str, str]] = [
        (checker, "_candidate_verdicts", "judge_total"),
        (server.keyring, "open_parts", "decrypt"),
        (otp.KeyTable, "of", "key_table"),
        (otp, "verify_batch", "c_verify"),
        (convert, "verify_item" if unary else "verify_items", "to_domain"),
        (service, "verify" if unary else "verify_batch", "service"),
        (checker, "check_many", "check_many"),
    ]
    if hasattr(AuditContext, "verdict_events"):  # the audit rows' Python, inside engine_glue
        patches.append((AuditContext, "verdict_events", "audit_rows"))
    for target, name, stage in patches:
        stack.enter_context(_patched(target, name, timers.wrap(stage, getattr(target, name))))


def time_gc(stack: contextlib.ExitStack, seconds: dict[str, float]) -> None:
    """The cyclic collector's pauses, whichever stage they fell in."""
    gc_started: list[float] = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            seconds["gc_pauses"] += time.perf_counter() - gc_started[0]

    gc.callbacks.append(on_gc)
    stack.callback(gc.callbacks.remove, on_gc)


def stages_from(seconds: dict[str, float], total: float) -> dict[str, float]:
    """The stages of the module docstring from the timed functions (some nest)."""
    out = {name: seconds.get(name, 0.0) for name in STAGES}
    out["validate"] = seconds["service"] - seconds["check_many"]
    out["judge"] = seconds["judge_total"] - sum(
        seconds[name] for name in ("decrypt", "key_table", "c_verify")
    )
    out["engine_glue"] = seconds["check_many"] - sum(
        seconds[name] for name in ("read_select", "judge_total", "write_update")
    )
    out["response_build"] = seconds["servicer"] - seconds["service"] - seconds["to_domain"]
    for name in ("read_select", "write_update", "other"):
        key = name + "_sql_exec"
        if key in seconds:
            out[key] = seconds[key]
    for name in ("commit", "write_audit_sql_exec", "audit_rows"):
        out[name] = seconds.get(name, 0.0)
    out["gc_pauses"] = seconds.get("gc_pauses", 0.0)
    out["locked_retries"] = seconds.get("locked_retries", 0)
    out["total"] = total
    return out


# The stages grouped as issue 16 names them, each (name, parts added, parts taken
# away, what it is). Their sum is the in-process call.
GROUPS: tuple[tuple[str, tuple[str, ...], tuple[str, ...], str], ...] = (
    ("wire", ("parse", "to_domain", "response_build", "serialize"), (), "proto in and out"),
    ("validate", ("validate",), (), "ids and shape checks"),
    ("SQL read", ("read_select",), (), "checkout, SELECT, rows to records"),
    ("decrypt", ("decrypt",), (), "AES-256-GCM per factor"),
    ("C", ("key_table", "c_verify"), (), "key table and the C core"),
    ("decide", ("judge", "engine_glue"), ("audit_rows",), "verdicts, writes, rounds"),
    ("audit rows", ("audit_rows",), (), "the round's audit events, Python"),
    (
        "SQL write",
        ("write_update",),
        ("commit", "write_audit_sql_exec"),
        "writer queue, BEGIN, conditional UPDATE",
    ),
    # PostgreSQL sends the events' INSERT inside the write's UPDATE statement up to
    # COPY's size (audit_sql.with_write): there it counts as SQL write.
    ("audit insert", ("write_audit_sql_exec",), (), "the events' own statement or COPY"),
    ("commit", ("commit",), (), "COMMIT of the round's write"),
)


def grouped(stages: dict[str, float]) -> list[tuple[str, float, str]]:
    """The call's seconds by `GROUPS`, in order."""
    return [
        (name, sum(stages.get(p, 0.0) for p in plus) - sum(stages.get(m, 0.0) for m in minus), what)
        for name, plus, minus, what in GROUPS
    ]


def stage_table(breakdown: dict[str, Any], end_to_end_s: float | None = None) -> list[str]:
    """The grouped stages of a breakdown as lines: µs per item (per call for a unary
    one, unary_stages.py) and share of the in-process call; with `end_to_end_s` (the
    call through gRPC), the rest of it."""
    stages = breakdown["stages_median_s"]
    n = breakdown["batch"]
    total = stages["total"]
    plain = breakdown["uninstrumented_median_s"]
    cpu = 1e6 * breakdown.get("uninstrumented_cpu_median_s", 0.0) / n
    unit = "call" if breakdown.get("unary") else "item"
    if breakdown.get("unary"):  # n calls of one item each, timed together
        header = (
            f"   {n:,} unary Verify calls in-process, one at a time, wrong codes:"
            f" {1e6 * total / n:,.0f} µs per call timed by stage ({1e6 * plain / n:,.0f} µs"
            f" untimed, CPU {cpu:,.0f} µs/call)"
        )
    else:
        header = (
            f"   one {n:,}-item call in-process, median of {breakdown['calls']}:"
            f" {1000 * total:,.1f} ms timed by stage on one lane ({1000 * plain:,.1f} ms"
            f" untimed, as served, CPU {cpu:.1f} µs/item)"
        )
    lines = [header, f"   {'stage':<14} {'µs/' + unit:>8} {'share':>6}  what"]

    def line(name: str, seconds: float, share_of: float, what: str) -> str:
        return f"   {name:<14} {1e6 * seconds / n:>8.2f} {seconds / share_of:>6.0%}  {what}"

    for name, seconds, what in grouped(stages):
        lines.append(line(name, seconds, total, what))
    for key, what in (
        ("read_select_sql_exec", "of SQL read: the driver's execute+fetch"),
        ("write_update_sql_exec", "of SQL write + audit insert: execute+fetch"),
        ("gc_pauses", "cyclic GC, inside the stages above"),
    ):
        lines.append(
            line("  " + key.split("_sql")[0].replace("_", " "), stages.get(key, 0.0), total, what)
        )
    if end_to_end_s is not None:
        rest = end_to_end_s - plain
        lines.append(
            f"   through gRPC {1e6 * end_to_end_s / n:>8.2f} µs/item; gRPC transport and client"
            f" {1e6 * rest / n:.2f} µs/item ({rest / end_to_end_s:.0%} of it)"
            + ("  (below 0: the machine's load moved between the runs)" if rest < 0 else "")
        )
    if stages.get("locked_retries"):
        lines.append(f"   {stages['locked_retries']:.0f} rounds decided again under locks")
    return lines


def run_breakdown(
    database: Database, data_dir: Path, pool: FactorPool, n: int, repeat: int
) -> dict[str, Any]:
    """Write the requests, run the child process, return its measurements."""
    requests = data_dir / f"breakdown-{database.name}-{n}"
    requests.mkdir(parents=True, exist_ok=True)
    # warm-up, `repeat` plain calls, `repeat` timed-by-stage calls, one profiled call
    for i in range(2 * repeat + 2):
        data = batch_request(pool, pool.take(n)).SerializeToString()
        (requests / f"{i:03d}.bin").write_bytes(data)
    return run_child("benchmarks.service.breakdown", database, data_dir, requests)


def run_child(module: str, database: Database, data_dir: Path, requests: Path) -> dict[str, Any]:
    """`python -m module` (a child holding only what a server holds) on the requests
    written at `requests`; returns the measurements it wrote next to them."""
    out = requests.parent / f"{requests.name}.result.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            module,
            "--database-url",
            database.url,
            "--data-dir",
            str(data_dir),
            "--requests",
            str(requests),
            "--out",
            str(out),
        ],
        check=True,
        cwd=ROOT,
        timeout=600,
    )
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def child_main(description: str, measure: Callable[[str, Path, Path], dict[str, Any]]) -> None:
    """A child's command line: `measure(database_url, data_dir, requests)` to --out."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--requests", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    result = measure(args.database_url, args.data_dir, args.requests)
    args.out.write_text(json.dumps(result, indent=2))


def _measure(database_url: str, data_dir: Path, requests: list[bytes]) -> dict[str, Any]:
    repeat = (len(requests) - 2) // 2
    server = InProcessServer(database_url, data_dir)
    tune_garbage_collector()  # as `totpd serve` does: the pauses left are the server's
    n = len(pb.BatchVerifyRequest.FromString(requests[0]).items)
    try:
        server.call(requests[0])  # warm-up
        plain: list[float] = []
        plain_cpu: list[float] = []
        for data in requests[1 : 1 + repeat]:
            started, cpu = time.perf_counter(), time.process_time()
            server.call(data)
            plain.append(time.perf_counter() - started)
            plain_cpu.append(time.process_time() - cpu)
        staged = [stage_times(server, data) for data in requests[1 + repeat : 1 + 2 * repeat]]
        profile = _profile(server, requests[-1])
    finally:
        server.close()
    keys = staged[0].keys()
    median = {k: sorted(s[k] for s in staged)[len(staged) // 2] for k in keys}
    return {
        "batch": n,
        "calls": repeat,
        "uninstrumented_median_s": sorted(plain)[len(plain) // 2],
        # The process's CPU (the C core's threads included): steadier than the
        # wall clock on a shared machine.
        "uninstrumented_cpu_median_s": sorted(plain_cpu)[len(plain_cpu) // 2],
        "stages_median_s": median,
        "profile_top": profile,
    }


def _profile(server: InProcessServer, data: bytes) -> str:
    profiler = cProfile.Profile()  # profiles this thread only: one lane
    with one_lane():
        profiler.enable()
        server.call(data)
        profiler.disable()
    buffer = io.StringIO()
    stats = pstats.Stats(profiler, stream=buffer)
    stats.sort_stats("tottime").print_stats(25)
    return buffer.getvalue()


def _measure_files(database_url: str, data_dir: Path, requests: Path) -> dict[str, Any]:
    calls = [path.read_bytes() for path in sorted(requests.glob("*.bin"))]
    return _measure(database_url, data_dir, calls)


def main() -> None:
    child_main("stage breakdown of BatchVerify (child process)", _measure_files)


if __name__ == "__main__":
    main()
