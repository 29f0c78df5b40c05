"""totpd's Prometheus metrics and the hooks the layers above call.

Design notes: ARCHITECTURE.md, "Module notes", telemetry/metrics.py.
"""

from __future__ import annotations

import enum
import platform
import time
from typing import Any, Final

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

from totpd import __version__
from totpd.telemetry import tracing
from totpd.telemetry.listener import (
    LISTENER_ENV,
    MULTIPROC_ENV,
    MetricsListener,
    start_metrics_listener,
    worker_exited,
)

__all__ = [
    "LISTENER_ENV",
    "MULTIPROC_ENV",
    "MetricsListener",
    "start_metrics_listener",
    "worker_exited",
]

# A `_created` series per counter and histogram doubles what Prometheus stores
# for nothing a dashboard uses (multiprocess mode has none anyway).
disable_created_metrics()  # type: ignore[no-untyped-call]

_LATENCY_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
_ROUND_BUCKETS: Final = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
_ITEM_BUCKETS: Final = (1, 10, 100, 500, 1000, 2500, 5000, 10_000, 25_000, 50_000, 100_000)
_WAIT_BUCKETS: Final = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)

RPC_REQUESTS: Final = Counter(
    "totpd_rpc_requests",
    "Unary RPCs served, by service, method and gRPC status code.",
    ("service", "method", "code"),
)
RPC_DURATION: Final = Histogram(
    "totpd_rpc_duration_seconds",
    "Time from a unary RPC's handler start to its answer, by service and method.",
    ("service", "method"),
    buckets=_LATENCY_BUCKETS,
)
BATCH_ITEMS: Final = Histogram(
    "totpd_batch_verify_items",
    "Items per BatchVerify call (refused calls included).",
    buckets=_ITEM_BUCKETS,
)
VERDICTS: Final = Counter(
    "totpd_verdicts",
    "Codes checked (Verify, BatchVerify items, ConfirmEnrollment, Disable,"
    " VerifyRecoveryCode), by verdict.",
    ("result",),
)
SECRET_UNAVAILABLE: Final = Counter(
    "totpd_secret_unavailable",
    "Checks failed closed because a stored secret could not be opened (SECRET_UNAVAILABLE).",
)
STORE_FAULTS: Final = Counter(
    "totpd_store_faults",
    "Calls (or the rest of a batch) failed by a database fault, by reason.",
    ("reason",),
)
ROUND_DURATION: Final = Histogram(
    "totpd_store_round_duration_seconds",
    "One verification round: the store read, the comparison, the conditional write,"
    " and the locked retry after a conflict.",
    buckets=_ROUND_BUCKETS,
)
ROUNDS_RELOCKED: Final = Counter(
    "totpd_store_rounds_relocked",
    "Rounds whose optimistic write met a changed row and were decided again under locks.",
)
POOL_IN_USE: Final = Gauge(
    "totpd_store_pool_connections_in_use",
    "Database connections checked out of the pool.",
    multiprocess_mode="livesum",
)
STORE_WAITS: Final = Counter(
    "totpd_store_waits",
    "Times a call had to wait: for a pooled connection (pool), or for SQLite's"
    " writer queue (sqlite_writers).",
    ("resource",),
)
STORE_WAIT_SECONDS: Final = Histogram(
    "totpd_store_wait_seconds",
    "How long those waits lasted, by resource.",
    ("resource",),
    buckets=_WAIT_BUCKETS,
)
BUILD_INFO: Final = Gauge(
    "totpd_build_info",
    "Always 1: the totpd version and Python version of the running server.",
    ("version", "python_version"),
    multiprocess_mode="livemax",
)
CPU_PATH: Final = Gauge(
    "totpd_core_cpu_path_info",
    "Always 1: the C core's CPU path (portable, shani, avx2, avx512, avx512x16).",
    ("path",),
    multiprocess_mode="livemax",
)

BUILD_INFO.labels(__version__, platform.python_version()).set(1)

# A verdict result member (its value is the label) -> its counter.
_VERDICT_CHILDREN: dict[enum.Enum, Counter] = {}
_POOL_WAITS: Final = STORE_WAITS.labels("pool")
_POOL_WAIT_SECONDS: Final = STORE_WAIT_SECONDS.labels("pool")


def set_cpu_path(path: str) -> None:
    """The C core's CPU path, once chosen at startup."""
    CPU_PATH.clear()
    CPU_PATH.labels(path).set(1)


def count_verdicts(results: list[enum.Enum]) -> None:
    """Count verdicts by result: members of one enum whose values are the labels
    ("valid", "invalid", "replayed", "locked").

    A 10,000-item batch is counted with one C-level `list.count` per member:
    hashing each item (an enum's hash is Python code) cost 10x more.
    """
    if len(results) == 1:
        _verdict(results[0]).inc()
    elif results:
        for member in type(results[0]):
            count = results.count(member)
            if count:
                _verdict(member).inc(count)


def _verdict(result: enum.Enum) -> Counter:
    child = _VERDICT_CHILDREN.get(result)
    if child is None:  # one per member: a benign race
        child = _VERDICT_CHILDREN[result] = VERDICTS.labels(result.value)
    return child


def secret_unavailable() -> None:
    SECRET_UNAVAILABLE.inc()


def store_fault(reason: str) -> None:
    """A database fault answered to a caller: "STORE_UNAVAILABLE", "OVERLOADED",
    "DEADLINE_EXCEEDED"."""
    STORE_FAULTS.labels(reason).inc()


def connection_checked_out() -> None:
    POOL_IN_USE.inc()


def connection_checked_in() -> None:
    POOL_IN_USE.dec()


def pool_waited(seconds: float) -> None:
    """A checkout found every connection taken and waited `seconds` for one."""
    _POOL_WAITS.inc()
    _POOL_WAIT_SECONDS.observe(seconds)


def store_waited(resource: str, seconds: float) -> None:
    STORE_WAITS.labels(resource).inc()
    STORE_WAIT_SECONDS.labels(resource).observe(seconds)


def observe_batch_items(count: int) -> None:
    BATCH_ITEMS.observe(count)


def round_relocked() -> None:
    ROUNDS_RELOCKED.inc()
    tracing.add_event("relocked")


class StoreRound:
    """Times one verification round, inside a span of its own when tracing is on.

    One instance per round (`with StoreRound(len(checks)):`): a plain class,
    cheaper than a generator-based context manager on every Verify.
    """

    __slots__ = ("_checks", "_span", "_started")

    def __init__(self, checks: int) -> None:
        self._checks = checks

    def __enter__(self) -> None:
        self._span = tracing.span("totpd.store.round", "totpd.round.checks", self._checks)
        self._span.__enter__()
        self._started = time.perf_counter()

    def __exit__(self, *exc_info: Any) -> None:
        ROUND_DURATION.observe(time.perf_counter() - self._started)
        self._span.__exit__(*exc_info)
