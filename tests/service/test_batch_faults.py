"""A database fault in the middle of a BatchVerify loses no stored verdict.

The rounds of a batch commit one by one. A fault after a round was stored
must not turn the whole call into an error: the caller would retry and find
its steps used (REPLAYED) and its failures counted twice. The stored items
keep their verdict; every item not decided gets the fault as its own error.
A fault before any item has its verdict fails the whole call, as a unary
call does: nothing was stored, and clients retry a failed call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import Clock
from tests.enrollments import enroll_active
from tests.service.conftest import results_of
from tests.totp_oracle import code_at, wrong_code
from totpd.service.errors import ErrorReason, TotpdError
from totpd.service.mfa import MfaService
from totpd.service.types import VerifyItem, VerifyResult
from totpd.store import Attempts, FactorStore
from totpd.store.errors import StoreOverloadedError, StoreUnavailableError

# What the store raises for a database that is down, and for a pool with no free connection.
DOWN = StoreUnavailableError("the database failed a statement", Exception("connection lost"))


def failing_after(calls: int, real: Callable[..., Any], error: Exception) -> Callable[..., Any]:
    """`real` for the first `calls` calls, then `error` on every call (from any thread)."""
    made = 0
    lock = threading.Lock()

    def call(*args: Any, **kwargs: Any) -> Any:
        nonlocal made
        with lock:
            made += 1
            fails = made > calls
        if fails:
            raise error
        return real(*args, **kwargs)

    return call


def test_a_fault_explaining_unknown_accounts_keeps_the_stored_verdicts(
    service: MfaService, clock: Clock, account_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    enrolled = enroll_active(service, clock, account_id)
    code = code_at(enrolled, clock.now)
    items = [VerifyItem(account_id, code), VerifyItem(account_id + "-nobody", "123456")]
    monkeypatch.setattr(FactorStore, "list_for_accounts", failing_after(0, lambda: [], DOWN))

    results = service.verify_batch(items)

    assert results_of(results) == [VerifyResult.VALID, ErrorReason.STORE_UNAVAILABLE]
    monkeypatch.undo()
    # The step was stored as used: the caller was told VALID once, and only once.
    assert results_of(service.verify_batch(items[:1])) == [VerifyResult.REPLAYED]


def test_a_fault_in_a_later_round_fails_only_the_items_not_decided(
    service: MfaService, clock: Clock, account_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    enrolled = enroll_active(service, clock, account_id)
    other = enroll_active(service, clock, account_id + "-b")
    code = code_at(enrolled, clock.now)
    wrong = wrong_code(code)
    # Two items of one account: two rounds. The second round's read fails.
    items = [
        VerifyItem(account_id, wrong),
        VerifyItem(account_id + "-b", code_at(other, clock.now)),
        VerifyItem(account_id, code),
        VerifyItem(account_id, "12 456"),  # malformed: its own error, as always
    ]
    monkeypatch.setattr(Attempts, "read", failing_after(1, Attempts.read, DOWN))

    results = service.verify_batch(items)

    assert results_of(results) == [
        VerifyResult.INVALID,
        VerifyResult.VALID,
        ErrorReason.STORE_UNAVAILABLE,
        ErrorReason.MALFORMED_CODE,
    ]
    monkeypatch.undo()
    # The first round's failure was counted once; the third item's code is unused.
    factor_id = enrolled.factor.factor_id
    assert service.deps.store.get_many([factor_id])[factor_id].failed_attempts == 1
    assert results_of(service.verify_batch([items[2]])) == [VerifyResult.VALID]


def test_an_exhausted_pool_after_a_verdict_is_overloaded_per_item(
    service: MfaService, clock: Clock, account_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    enrolled = enroll_active(service, clock, account_id)
    busy = StoreOverloadedError(
        "no database connection freed up in time",
        TimeoutError("QueuePool limit of size 20 overflow 20 reached"),
    )
    monkeypatch.setattr(Attempts, "read", failing_after(1, Attempts.read, busy))
    wrong = wrong_code(code_at(enrolled, clock.now))

    results = service.verify_batch([VerifyItem(account_id, wrong)] * 2)  # two rounds

    assert results_of(results) == [VerifyResult.INVALID, ErrorReason.OVERLOADED]
    error = results[1]
    assert isinstance(error, TotpdError) and "retry" in error.message


def test_a_fault_before_any_verdict_fails_the_whole_batch(
    service: MfaService, clock: Clock, account_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing was stored: the call fails (UNAVAILABLE), and clients retry it whole."""
    enrolled = enroll_active(service, clock, account_id)
    monkeypatch.setattr(Attempts, "read", failing_after(0, Attempts.read, DOWN))
    items = [VerifyItem(account_id, code_at(enrolled, clock.now)), VerifyItem("x", "12 456")]
    with pytest.raises(StoreUnavailableError):
        service.verify_batch(items)


def test_a_unary_verify_still_fails_whole(
    service: MfaService, clock: Clock, account_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    enrolled = enroll_active(service, clock, account_id)
    monkeypatch.setattr(Attempts, "read", failing_after(0, Attempts.read, DOWN))
    with pytest.raises(StoreUnavailableError):
        service.verify(VerifyItem(account_id, code_at(enrolled, clock.now)))
