"""The store keys everything by tenant, on both databases: the same account id (and
the same request id) in two tenants are two rows; a round, a read or a write of one
tenant never sees or changes the other's."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Engine

from tests.conftest import START_TIME
from totpd.domain import LIVE_STATES, Algorithm, FactorState
from totpd.store import AccountWrite, AttemptRequest, FactorStore, FactorWrite, NewFactor
from totpd.store.requests import Completion, NewRequest

NOW = int(START_TIME)
SHOP, BANK = "shop", "bank"
ACTIVE = FactorState.ACTIVE


def add(store: FactorStore, tenant: str, account_id: str, label: str = "phone") -> str:
    factor_id = str(uuid.uuid4())
    new = NewFactor(
        factor_id=factor_id,
        account_id=account_id,
        label=label,
        issuer="totpd",
        algorithm=Algorithm.SHA1,
        digits=6,
        period_seconds=30,
        secret_key_id="k",
        secret_nonce=b"n" * 12,
        secret_ciphertext=b"c" * 36,
        created_at=NOW,
        expires_at=NOW + 600,
    )
    store.add_to_account(account_id, now=NOW, make_factor=lambda _: new, tenant=tenant)
    return factor_id


def activate(store: FactorStore, tenant: str, factor_id: str, account_id: str) -> None:
    (pending,) = store.attempts.read(
        [AttemptRequest(account_id, 6, factor_id)],
        state=FactorState.PENDING,
        now=NOW,
        tenant=tenant,
    )
    won = FactorWrite(factor_id, 0, 0, 1, 1, 0, 0, pending.last_used_step)
    assert store.attempts.write_if_unchanged(
        [won], state=FactorState.PENDING, now=NOW, tenant=tenant
    )


@pytest.fixture
def store(engine: Engine) -> FactorStore:
    return FactorStore(engine)


@pytest.fixture
def two(store: FactorStore) -> dict[str, str]:
    """alice's active "phone" in shop and in bank (the same label: per tenant)."""
    ids = {tenant: add(store, tenant, "alice") for tenant in (SHOP, BANK)}
    for tenant, factor_id in ids.items():
        activate(store, tenant, factor_id, "alice")
    return ids


@pytest.mark.parametrize("accounts", [["alice"], ["alice", "bob"]])
def test_a_round_reads_its_tenant_only(
    store: FactorStore, two: dict[str, str], accounts: list[str]
) -> None:
    requests = [AttemptRequest(account, 6, None) for account in accounts]
    for tenant in (SHOP, BANK):
        found = store.attempts.read(requests, state=ACTIVE, now=NOW, tenant=tenant)
        assert [f.factor_id for f in found] == [two[tenant]]
        with store.attempts.locked() as locked:
            found = locked.read(requests, state=ACTIVE, now=NOW, tenant=tenant)
        assert [f.factor_id for f in found] == [two[tenant]]
    assert store.attempts.read(requests, state=ACTIVE, now=NOW) == []  # default: nothing


def test_a_write_in_the_wrong_tenant_changes_nothing(
    store: FactorStore, two: dict[str, str]
) -> None:
    shop = two[SHOP]
    failed = FactorWrite(shop, 1, 0, 1, 0, 0, 0, 1)
    assert not store.attempts.write_if_unchanged([failed], state=ACTIVE, now=NOW, tenant=BANK)
    with store.attempts.locked() as locked:
        assert locked.write(
            [failed, failed._replace(factor_id=two[BANK])], state=ACTIVE, now=NOW, tenant=BANK
        ) == {two[BANK]}
    assert store.get(shop, tenant=SHOP).failed_attempts == 0  # type: ignore[union-attr]
    assert store.get(two[BANK], tenant=BANK).failed_attempts == 1  # type: ignore[union-attr]


@pytest.mark.parametrize("many", [False, True])
def test_the_same_account_has_a_row_per_tenant(
    store: FactorStore, two: dict[str, str], many: bool
) -> None:
    others = [AccountWrite("bob", 5, 1, None, None, None)] if many else []
    for tenant, failures in ((SHOP, 3), (BANK, 7)):
        first = AccountWrite("alice", 10, failures, None, None, None)
        assert store.attempts.write_if_unchanged(
            [], state=ACTIVE, now=NOW, accounts=[first, *others], tenant=tenant
        )
    shop, bank = (store.account_state("alice", tenant=t) for t in (SHOP, BANK))
    assert shop is not None and bank is not None
    assert (shop.consecutive_failures, bank.consecutive_failures) == (3, 7)
    # An update applies in its tenant only (the other's row holds other values).
    again = AccountWrite("alice", 20, 4, None, 10, 3)
    assert store.attempts.write_if_unchanged(
        [], state=ACTIVE, now=NOW, accounts=[again], tenant=SHOP
    )
    assert not store.attempts.write_if_unchanged(
        [], state=ACTIVE, now=NOW, accounts=[again._replace(consecutive_failures=5)], tenant=BANK
    )
    assert store.account_state("alice", tenant=BANK) == bank
    with store.attempts.locked() as locked:  # PostgreSQL inserts and locks per tenant
        assert (
            len(locked.read([AttemptRequest("carol", 6, None)], state=ACTIVE, now=NOW, tenant=BANK))
            == 0
        )
    assert store.account_state("carol", tenant=SHOP) is None


def test_reads_disable_and_unlock_stay_in_their_tenant(
    store: FactorStore, two: dict[str, str]
) -> None:
    shop, bank = two[SHOP], two[BANK]
    assert store.get(shop, tenant=BANK) is None
    assert set(store.get_many([shop, bank], tenant=SHOP)) == {shop}
    listed = store.list_for_account("alice", LIVE_STATES, now=NOW, tenant=BANK)
    assert [f.factor_id for f in listed] == [bank]
    assert [f.factor_id for f in store.list_for_accounts(["alice"], ACTIVE, tenant=SHOP)] == [shop]
    assert store.disable([shop], now=NOW, tenant=BANK) == []
    store.attempts.write_if_unchanged(
        [],
        state=ACTIVE,
        now=NOW,
        accounts=[AccountWrite("alice", 1, 9, NOW, None, None)],
        tenant=SHOP,
    )
    assert not store.unlock_account("alice", tenant="elsewhere").known
    found = store.unlock_account("alice", tenant=BANK)
    assert found.known and found.locked_at is None
    assert store.account_state("alice", tenant=SHOP).locked_at == NOW  # type: ignore[union-attr]
    assert [f.factor_id for f in store.disable([shop, bank], now=NOW, tenant=SHOP)] == [shop]
    assert store.get(bank, tenant=BANK).state is ACTIVE  # type: ignore[union-attr]


def test_a_request_id_is_claimed_per_tenant(store: FactorStore) -> None:
    def claim(tenant: str, token: str) -> NewRequest:
        return NewRequest(
            tenant,
            "req-1",
            "default",
            "Enroll",
            "alice",
            b"f",
            "k",
            token,
            NOW,
            NOW + 60,
            NOW + 600,
        )

    shop, bank = claim(SHOP, "t-shop"), claim(BANK, "t-bank")
    assert store.requests.claim(shop, now=NOW) is None
    assert store.requests.claim(bank, now=NOW) is None  # not shop's claim
    store.requests.complete(Completion(SHOP, "req-1", "default", "t-shop", '{"factors": []}'))
    done = store.requests.get(SHOP, "req-1", "default", now=NOW)
    running = store.requests.get(BANK, "req-1", "default", now=NOW)
    assert done is not None and done.state == "done"
    assert running is not None and running.state == "running"
    store.requests.release(BANK, "req-1", "default", "t-bank")
    assert store.requests.get(BANK, "req-1", "default", now=NOW) is None
    assert store.requests.get(SHOP, "req-1", "default", now=NOW) == done
