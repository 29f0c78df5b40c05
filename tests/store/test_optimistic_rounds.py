"""A round whose factors change between its read and its write writes nothing
and is decided again under locks, on both databases.

The interleaving is forced: the round's read is wrapped so that another
attempt on the same factor runs (and commits) right after it.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.conftest import Clock
from tests.enrollments import enroll_active
from tests.store.conftest import interleave_after_read, one_more_failure
from tests.totp_oracle import code_at, wrong_code
from totpd.domain import FactorState
from totpd.service.mfa import MfaService
from totpd.service.types import VerifyItem, VerifyResult
from totpd.store import (
    AttemptRequest,
    Attempts,
    CandidateFactor,
    FactorStore,
    FactorWrite,
    RoundAbortedError,
)


def test_a_changed_factor_stops_the_whole_write(
    service: MfaService, engine: Engine, clock: Clock, account_id: str
) -> None:
    alice = enroll_active(service, clock, account_id + "-a")
    bob = enroll_active(service, clock, account_id + "-b")
    store = FactorStore(engine)
    requests = [
        AttemptRequest(account_id + "-a", 6, None),
        AttemptRequest(account_id + "-b", 6, None),
    ]
    read = store.attempts.read(requests, state=FactorState.ACTIVE, now=int(clock.now))
    assert len(read) == 2
    # Bob's factor changes after the read: a wrong code counts one failure.
    service.verify(VerifyItem(account_id + "-b", wrong_code(code_at(bob, clock.now))))
    writes = [one_more_failure(factor) for factor in read]
    assert not store.attempts.write_if_unchanged(
        writes, state=FactorState.ACTIVE, now=int(clock.now)
    )

    def failures() -> dict[str, int]:
        rows = [store.get(e.factor.factor_id) for e in (alice, bob)]
        return {row.account_id: row.failed_attempts for row in rows if row is not None}

    # Nothing of the stale write landed: not Alice's row, not a second count on Bob's.
    assert failures() == {account_id + "-a": 0, account_id + "-b": 1}
    # Read again, the same write applies.
    read = store.attempts.read(requests, state=FactorState.ACTIVE, now=int(clock.now))
    writes = [one_more_failure(factor) for factor in read]
    assert store.attempts.write_if_unchanged(writes, state=FactorState.ACTIVE, now=int(clock.now))
    assert failures() == {account_id + "-a": 1, account_id + "-b": 2}


@pytest.mark.parametrize("batch", [False, True])
def test_a_code_won_in_between_is_a_replay(
    service: MfaService,
    clock: Clock,
    account_id: str,
    monkeypatch: pytest.MonkeyPatch,
    batch: bool,
) -> None:
    mine = enroll_active(service, clock, account_id)
    other = enroll_active(service, clock, account_id + "-other")
    code = code_at(mine, clock.now)
    interleaved: list[VerifyResult] = []
    locked_rounds = interleave_after_read(
        service,
        monkeypatch,
        lambda: interleaved.append(service.verify(VerifyItem(account_id, code)).result),
    )
    if batch:
        outcomes = service.verify_batch(
            [
                VerifyItem(account_id, code),
                VerifyItem(account_id + "-other", code_at(other, clock.now)),
            ]
        )
        results = [o.result for o in outcomes]  # type: ignore[union-attr]
    else:
        results = [service.verify(VerifyItem(account_id, code)).result]
    assert interleaved == [VerifyResult.VALID]
    assert results[0] is VerifyResult.REPLAYED
    if batch:  # the other item of the round was decided again and still won
        assert results[1] is VerifyResult.VALID
    assert locked_rounds == [1]


def test_failures_counted_in_between_are_not_lost(
    service: MfaService, clock: Clock, account_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = enroll_active(service, clock, account_id)
    wrong = wrong_code(code_at(mine, clock.now))
    interleave_after_read(
        service, monkeypatch, lambda: service.verify(VerifyItem(account_id, wrong))
    )
    outcome = service.verify(VerifyItem(account_id, wrong))
    assert outcome.result is VerifyResult.INVALID
    # Two failures, each counted once: the stale decision (1 failure) was not stored.
    assert outcome.attempts_left == service.policy.lock_after_failures - 2


def test_a_locked_round_aborted_by_the_database_is_decided_again(
    service: MfaService, clock: Clock, account_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = enroll_active(service, clock, account_id)
    attempts = service.deps.store.attempts
    real_locked = attempts.locked
    aborts = [RoundAbortedError("deadlock", Exception("deadlock detected"))]

    def locked() -> Any:
        if aborts:
            raise aborts.pop()
        return real_locked()

    monkeypatch.setattr(attempts, "write_if_unchanged", lambda *a, **k: False)
    monkeypatch.setattr(attempts, "locked", locked)
    outcome = service.verify(VerifyItem(account_id, code_at(mine, clock.now)))
    assert outcome.result is VerifyResult.VALID and not aborts


def test_a_round_aborted_every_time_fails_without_a_verdict(
    service: MfaService, clock: Clock, account_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = enroll_active(service, clock, account_id)
    attempts = service.deps.store.attempts

    def locked() -> Any:
        raise RoundAbortedError("deadlock", Exception("deadlock detected"))

    monkeypatch.setattr(attempts, "write_if_unchanged", lambda *a, **k: False)
    monkeypatch.setattr(attempts, "locked", locked)
    with pytest.raises(RoundAbortedError):
        service.verify(VerifyItem(account_id, code_at(mine, clock.now)))
    monkeypatch.undo()
    # Nothing was written: the code still verifies once.
    assert (
        service.verify(VerifyItem(account_id, code_at(mine, clock.now))).result
        is VerifyResult.VALID
    )


def test_a_won_step_on_a_changed_factor_stops_every_other_row(
    service: MfaService, engine: Engine, clock: Clock, account_id: str
) -> None:
    """Won steps of factors with no failure on record travel in their own rows
    (3 values on SQLite); a change to one still stops the whole write."""
    alice = enroll_active(service, clock, account_id + "-a")
    bob = enroll_active(service, clock, account_id + "-b")
    carol = enroll_active(service, clock, account_id + "-c")
    store = FactorStore(engine)
    requests = [AttemptRequest(account_id + s, 6, None) for s in ("-a", "-b", "-c")]
    now = int(clock.now)
    read = {
        f.account_id: f for f in store.attempts.read(requests, state=FactorState.ACTIVE, now=now)
    }
    step = now // 30

    def won(factor: CandidateFactor) -> FactorWrite:
        return FactorWrite(factor.factor_id, 0, 0, step, 1, 0, 0, factor.last_used_step)

    writes = [won(read[account_id + "-a"]), won(read[account_id + "-b"])]
    writes.append(one_more_failure(read[account_id + "-c"]))
    # Bob's factor counts a failure after the read: his won row no longer applies.
    service.verify(VerifyItem(account_id + "-b", wrong_code(code_at(bob, clock.now))))
    assert not store.attempts.write_if_unchanged(writes, state=FactorState.ACTIVE, now=now)
    rows = {e.factor.account_id: store.get(e.factor.factor_id) for e in (alice, bob, carol)}
    assert {a: (r.last_used_step, r.failed_attempts) for a, r in rows.items() if r} == {
        account_id + "-a": (read[account_id + "-a"].last_used_step, 0),
        account_id + "-b": (read[account_id + "-b"].last_used_step, 1),
        account_id + "-c": (read[account_id + "-c"].last_used_step, 0),
    }
    # Without the change, the same kinds of rows all apply at once.
    writes[1] = one_more_failure(
        store.attempts.read(requests[1:2], state=FactorState.ACTIVE, now=now)[0]
    )
    assert store.attempts.write_if_unchanged(writes, state=FactorState.ACTIVE, now=now)
    enrolled = zip("abc", (alice, bob, carol), strict=True)
    stored = {a: store.get(e.factor.factor_id) for a, e in enrolled}
    assert stored["a"] is not None and stored["a"].last_used_step == step
    assert stored["b"] is not None and stored["b"].failed_attempts == 2
    assert stored["c"] is not None and stored["c"].failed_attempts == 1


def test_only_postgresql_runs_a_large_round_as_parts(engine: Engine) -> None:
    """service/lanes.py: PostgreSQL's backends work beside the server's Python;
    SQLite's one writer works in the server's process (no gain measured)."""
    attempts = Attempts(engine, threading.Lock())
    assert attempts.parallel_rounds is (engine.dialect.name == "postgresql")
