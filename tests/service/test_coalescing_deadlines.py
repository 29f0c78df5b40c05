"""A coalesced round whose database hangs for real (tests/hung_database.py): every
call of it ends by its own deadline with DeadlineExceededError, and once the
database is back nothing of the round was stored."""

from __future__ import annotations

from contextlib import ExitStack

import pytest
from sqlalchemy import Engine

from tests.conftest import Clock
from tests.enrollments import enroll_active_in_time as enrolled
from tests.hung_database import (
    HangingDatabase,
    database,
    hang_before_write,
    hung_engine,
    paused_postgres,
)
from tests.service.coalesced import Call, HeldRound, results, run_behind_a_held_round
from tests.totp_oracle import code_at, wrong_code
from totpd import deadlines
from totpd.crypto import Keyring
from totpd.service.mfa import MfaService
from totpd.service.policy import Policy
from totpd.service.types import VerifyItem, VerifyResult
from totpd.store import FactorStore
from totpd.store.deadline import DeadlineExceededError

__all__ = ["database", "hung_engine", "paused_postgres"]  # fixtures

DEADLINE = 0.5


@pytest.fixture
def service(hung_engine: Engine, keyring: Keyring, policy: Policy, clock: Clock) -> MfaService:
    store = FactorStore(hung_engine)
    return MfaService(store, keyring, policy, clock, coalesce_verify=True)


def test_a_coalesced_round_that_outlives_its_deadlines_stores_nothing(
    database: HangingDatabase,
    service: MfaService,
    clock: Clock,
    account_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = enrolled(service, clock, account_id)
    one, two = (enrolled(service, clock, f"{account_id}-{n}") for n in (1, 2))
    right = code_at(one, clock.now)
    waiting = [
        Call("c1", VerifyItem(one.factor.account_id, right), deadline=DEADLINE),
        Call(
            "c2",
            VerifyItem(two.factor.account_id, wrong_code(code_at(two, clock.now))),
            deadline=DEADLINE,
        ),
    ]
    leader = Call("leader", VerifyItem(first.factor.account_id, code_at(first, clock.now)), 30)
    with ExitStack() as stack:
        held = HeldRound(service, monkeypatch)
        hang_before_write(monkeypatch, database, stack, write=2)
        outcomes = run_behind_a_held_round(service, held, leader, waiting)
    monkeypatch.undo()
    database.settle("BEGIN")

    assert results(outcomes) == [VerifyResult.VALID, *[DeadlineExceededError] * 2]
    assert held.sizes[:2] == [1, 2]
    store = service.deps.store
    factors = store.get_many([one.factor.factor_id, two.factor.factor_id])
    assert [f.failed_attempts for f in factors.values()] == [0, 0]
    with deadlines.within(30):
        assert service.verify(waiting[0].item).result is VerifyResult.VALID
