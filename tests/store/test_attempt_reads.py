"""The bulk read of a round (`Attempts.read` with many requests), on both databases.

It selects by account only and matches each request's digits and factor in
Python: these tests pin what it returns.
"""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from tests.conftest import Clock
from tests.enrollments import enroll_active
from totpd.calls import DEFAULT_TENANT
from totpd.domain import FactorState
from totpd.service.mfa import MfaService
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
