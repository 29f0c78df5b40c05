"""The bulk read of a round (`Attempts.read` with many requests), on both databases.

It selects by account only and matches each request's digits and factor in
Python: these tests pin what it returns.
"""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from tests.conftest import Clock
from tests.enrollments import enroll_active, wrong_for_all
from totpd.calls import DEFAULT_TENANT
from totpd.domain import FactorState
from totpd.service.mfa import MfaService
from totpd.service.types import EnrollParams, VerifyItem
from totpd.store import AttemptRequest, FactorStore


def _read(engine: Engine, clock: Clock, *requests: AttemptRequest) -> list[tuple[str, str]]:
    found = FactorStore(engine).attempts.read(
        requests, state=FactorState.ACTIVE, now=int(clock.now)
    )
    return [(factor.account_id, factor.factor_id) for factor in found]


def test_each_request_gets_its_accounts_factors_with_its_digits_in_id_order(
    service: MfaService, engine: Engine, clock: Clock, account_id: str
) -> None:
    alice, bob = account_id + "-alice", account_id + "-bob"
    alice_six = [
        enroll_active(service, clock, alice, f"phone {i}").factor.factor_id for i in range(3)
    ]
    alice_eight = enroll_active(service, clock, alice, "token", digits=8).factor.factor_id
    bob_six = enroll_active(service, clock, bob, "phone").factor.factor_id
    found = _read(engine, clock, AttemptRequest(alice, 6, None), AttemptRequest(bob, 8, None))
    # Alice's 8-digit factor and Bob's only (6-digit) factor are not candidates.
    assert found == [(alice, factor_id) for factor_id in sorted(alice_six)]
    found = _read(engine, clock, AttemptRequest(alice, 8, None), AttemptRequest(bob, 6, None))
    assert sorted(found) == sorted([(alice, alice_eight), (bob, bob_six)])


def test_a_named_factor_is_read_only_for_its_own_account(
    service: MfaService, engine: Engine, clock: Clock, account_id: str
) -> None:
    alice, bob = account_id + "-alice", account_id + "-bob"
    alice_phone = enroll_active(service, clock, alice, "phone").factor.factor_id
    enroll_active(service, clock, alice, "tablet")
    bob_phone = enroll_active(service, clock, bob, "phone").factor.factor_id
    found = _read(
        engine, clock, AttemptRequest(alice, 6, alice_phone), AttemptRequest(bob, 6, alice_phone)
    )
    # Bob naming Alice's factor reads nothing for Bob, not Alice's factor and not his own.
    assert found == [(alice, alice_phone)]
    assert bob_phone not in {factor_id for _, factor_id in found}


def test_a_round_reads_one_request_per_account(engine: Engine, clock: Clock) -> None:
    with pytest.raises(ValueError, match="one request per account"):
        _read(engine, clock, AttemptRequest("a", 6, None), AttemptRequest("a", 8, None))


@pytest.mark.parametrize("lock", [False, True])
def test_the_bulk_read_joins_each_pair_to_its_own_tenant(
    service: MfaService, engine: Engine, clock: Clock, account_id: str, lock: bool
) -> None:
    alice, bob = account_id + "-alice", account_id + "-bob"
    alice_phone = enroll_active(service, clock, alice, "phone").factor.factor_id
    bob_phone = enroll_active(service, clock, bob, "phone").factor.factor_id
    requests = [AttemptRequest(alice, 6, None), AttemptRequest(bob, 6, None)]
    attempts = FactorStore(engine).attempts
    now = int(clock.now)

    def read(tenant: str) -> list[str]:
        if not lock:
            found = attempts.read(requests, state=FactorState.ACTIVE, now=now, tenant=tenant)
        else:
            with attempts.locked() as locked:
                found = locked.read(requests, state=FactorState.ACTIVE, now=now, tenant=tenant)
        return sorted(factor.factor_id for factor in found)

    assert read(DEFAULT_TENANT) == sorted([alice_phone, bob_phone])
    # The same account ids in another tenant are other accounts: nothing to read.
    assert read("shop") == []


@pytest.mark.parametrize("state", [FactorState.ACTIVE, FactorState.PENDING])
def test_the_locked_bulk_read_returns_what_the_unlocked_one_does(
    service: MfaService, engine: Engine, clock: Clock, account_id: str, state: FactorState
) -> None:
    """SQLite's locked read comes as one row of JSON with the secrets in hex
    (store/rounds.py): the same factors, field for field and byte for byte, each
    account's in id order, with an erased secret left out and a missing account
    row as None (SQLite's pending accounts have none)."""
    alice, bob, carol, dave = (account_id + name for name in ("-a", "-b", "-c", "-d"))
    if state is FactorState.ACTIVE:
        for number in range(3):  # several factors: id order
            enroll_active(service, clock, alice, f"phone {number}")
        enrolled = enroll_active(service, clock, bob)
        service.verify(VerifyItem(bob, wrong_for_all([enrolled], clock.now)))  # an account row
        erased = enroll_active(service, clock, carol).factor.factor_id
    else:
        for number in range(3):
            service.enroll(EnrollParams(alice, f"phone {number}"))
        service.enroll(EnrollParams(bob, "phone"))
        erased = service.enroll(EnrollParams(carol, "phone")).factor.factor_id
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE factors SET secret_ciphertext = NULL WHERE id = :id"), {"id": erased}
        )
    requests = [AttemptRequest(account, 6, None) for account in (alice, bob, carol, dave)]
    attempts = FactorStore(engine).attempts
    now = int(clock.now)
    with attempts.locked() as locked:  # on PostgreSQL it inserts the missing account rows
        found = locked.read(requests, state=state, now=now)
    unlocked = attempts.read(requests, state=state, now=now)
    assert sorted(found) == sorted(unlocked)
    alices = [factor.factor_id for factor in found if factor.account_id == alice]
    assert len(alices) == 3 and alices == sorted(alices)
    assert sorted(factor.account_id for factor in unlocked) == [alice] * 3 + [bob]
    assert all(isinstance(factor.secret_ciphertext, bytes) for factor in unlocked)
    (bobs,) = (factor for factor in unlocked if factor.account_id == bob)
    if state is FactorState.ACTIVE:
        assert bobs.consecutive_failures == 1
    elif engine.dialect.name == "sqlite":
        assert bobs.consecutive_failures is None  # no account row: the JSON's null
