"""Store faults are logged as one short line per cause and interval, never a
stack trace: an outage fails hundreds of calls a second, all for one reason."""

from __future__ import annotations

import logging

import pytest

from tests.conftest import Clock
from totpd.service import faults
from totpd.service.errors import ErrorReason
from totpd.service.faults import LogLimiter, store_fault
from totpd.store.errors import StoreOverloadedError, StoreUnavailableError


def test_the_limiter_admits_one_line_per_key_and_interval_and_counts_the_rest() -> None:
    clock = Clock(0.0)
    limiter = LogLimiter(interval=10, clock=clock)

    assert limiter.admit("a") == 0
    assert [limiter.admit("a") for _ in range(3)] == [None, None, None]
    assert limiter.admit("b") == 0  # another cause has its own interval
    clock.advance(9.9)
    assert limiter.admit("a") is None
    clock.advance(0.1)
    assert limiter.admit("a") == 4  # the line after the interval says how many were held
    assert limiter.admit("a") is None
    clock.advance(10)
    assert limiter.admit("a") == 1
    clock.advance(10)
    assert limiter.admit("a") == 0


def test_the_limiter_forgets_old_keys_instead_of_growing() -> None:
    clock = Clock(0.0)
    limiter = LogLimiter(interval=10, clock=clock, max_keys=3)
    for key in "abc":
        limiter.admit(key)
    clock.advance(10)
    limiter.admit("d")  # full: the keys whose interval ended are forgotten
    assert len(limiter) == 1
    assert limiter.admit("d") is None  # still within its interval
    limiter.reset()
    assert limiter.admit("d") == 0


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock(0.0)
    monkeypatch.setattr(faults, "FAULT_LOG", LogLimiter(interval=10, clock=clock))
    return clock


def fault_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "totpd.store"]


def test_an_outage_logs_one_warning_per_cause_and_interval_without_a_stack(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    refused = StoreUnavailableError("cannot connect", ConnectionRefusedError("refused"))
    dropped = StoreUnavailableError(
        "the database failed", Exception("server closed the connection")
    )

    for _ in range(50):
        assert store_fault(refused, "Verify") is not None
    for _ in range(5):
        store_fault(dropped, "GetFactor")
    clock.advance(10)
    error = store_fault(refused, "Enroll")

    assert error is not None
    assert error.reason is ErrorReason.STORE_UNAVAILABLE
    lines = [
        (r.levelname, r.getMessage(), getattr(r, "cause", None), getattr(r, "suppressed", 0))
        for r in fault_records(caplog)
    ]
    assert lines == [
        ("WARNING", "store unavailable", "ConnectionRefusedError: refused", 0),
        ("WARNING", "store unavailable", "Exception: server closed the connection", 0),
        ("WARNING", "store unavailable", "ConnectionRefusedError: refused", 49),
    ]
    assert all(r.exc_info is None and r.stack_info is None for r in fault_records(caplog))


def test_an_exhausted_pool_is_overloaded_and_logged_once_per_interval(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    busy = StoreOverloadedError("no connection freed up", TimeoutError("QueuePool limit"))
    errors = [store_fault(busy, "BatchVerify") for _ in range(10)]

    assert {e.reason for e in errors if e is not None} == {ErrorReason.OVERLOADED}
    assert [r.getMessage() for r in fault_records(caplog)] == ["database pool exhausted"]


def test_an_error_that_is_not_a_store_fault_is_left_alone(caplog: pytest.LogCaptureFixture) -> None:
    assert store_fault(ValueError("a bug"), "Verify") is None
    assert store_fault(OSError("not the store's"), "Verify") is None
    assert fault_records(caplog) == []
