"""Every audit event stores its account's bucket (store/models.py account_bucket),
whichever path wrote it, on both databases; the account filter reads through it
without mixing accounts that share a bucket; account lookups use the
(account_bucket, id) index on both databases; and migrations 0008 (the column)
and 0009 (PostgreSQL's index) upgrade a database with events and downgrade it."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, text

from tests.audit_rows import audit_store, event_indexes, read_plan
from tests.conftest import Clock
from tests.enrollments import enroll_active
from tests.store.conftest import one_more_failure
from tests.store.upgrades import alembic, empty_database_url, migrate_to
from totpd.domain import FactorState
from totpd.service.mfa import MfaService
from totpd.store import AttemptRequest, FactorStore, migrate, open_engine
from totpd.store.audit import AuditCall, AuditFilter, AuditRow, RoundEvents
from totpd.store.models import ACCOUNT_BUCKETS, account_bucket

ACCOUNT_INDEX = "ix_audit_events_account_bucket_id"


def _stored_buckets(engine: Engine) -> dict[str, set[int]]:
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT account_id, account_bucket FROM audit_events"))
        buckets: dict[str, set[int]] = {}
        for account, bucket in rows:
            buckets.setdefault(account, set()).add(bucket)
        return buckets


def _call(n: int, now_us: int) -> AuditCall:
    return AuditCall(now_us, f"caller-{n}", "default", "Verify", None, "peer")


def _denial(account: str) -> AuditRow:
    return AuditRow(
        1, "spy", "default", "Verify", account, None, None, "PERMISSION_DENIED",
        "PERMISSION_DENIED", None, None, "peer",
    )  # fmt: skip


@pytest.mark.usefixtures("audit_writes")  # INSERTed and COPYed (tests/conftest.py)
def test_every_write_path_stores_the_accounts_bucket(
    service: MfaService, engine: Engine, clock: Clock, account_id: str
) -> None:
    suffixes = [f"-{n}" for n in range(7)]
    for suffix in suffixes:
        enroll_active(service, clock, account_id + suffix)
    store = FactorStore(engine)
    now = int(clock.now)
    requests = [AttemptRequest(account_id + s, 6, None) for s in suffixes]
    read = store.attempts.read(requests, state=FactorState.ACTIVE, now=now)
    by_account = {factor.account_id: factor for factor in read}

    def round_of(groups: list[list[str]]) -> None:
        factors = [by_account[account_id + s] for group in groups for s in group]
        events = [
            RoundEvents(
                _call(n, now * 1_000_000),
                [(account_id + s, by_account[account_id + s].factor_id, "INVALID", None)
                 for s in group],
            )
            for n, group in enumerate(groups)
        ]  # fmt: skip
        written = [one_more_failure(factor) for factor in factors]
        assert store.attempts.write_if_unchanged(
            written, state=FactorState.ACTIVE, now=now, events=events
        )

    # Each account is in one round only: its factor as read stays current.
    round_of([["-0"]])  # one call, one event: the unary statement
    round_of([["-1", "-2"]])  # one call, several events
    round_of([["-3"], ["-4", "-5"]])  # several calls (a coalesced round)
    with store.attempts.locked() as locked:
        again = locked.read(requests[6:], state=FactorState.ACTIVE, now=now)
        locked.write([one_more_failure(f) for f in again], state=FactorState.ACTIVE, now=now)
        locked.record([RoundEvents(_call(9, now), [(account_id + "-6", None, "INVALID", None)])])
    audit_store(engine).append([_denial(account_id + "-denied")])

    stored = _stored_buckets(engine)
    accounts = [account_id + s for s in (*suffixes, "-denied")]
    assert set(stored) >= set(accounts)
    for account in accounts:
        assert stored[account] == {account_bucket(account)}, account


def _same_bucket_accounts() -> tuple[str, str]:
    first = "alice"
    for n in itertools.count():
        other = f"account-{n}"
        if account_bucket(other) == account_bucket(first):
            return first, other
    raise AssertionError("unreachable")


def test_the_account_filter_keeps_accounts_that_share_a_bucket_apart(engine: Engine) -> None:
    alice, other = _same_bucket_accounts()
    store = audit_store(engine)
    store.append([_denial(alice), _denial(other), _denial(alice), _denial("bob")])
    for account, count in ((alice, 2), (other, 1), ("bob", 1), ("nobody", 0)):
        page = store.page(AuditFilter(account_id=account), after_id=0, limit=10)
        assert [record.row.account_id for record in page] == [account] * count


def test_buckets_spread_and_stay_in_range() -> None:
    buckets = [account_bucket(f"user-{n}@example.com") for n in range(4096)]
    assert set(buckets) == set(range(ACCOUNT_BUCKETS))
    assert account_bucket("ü-ñ") == account_bucket("ü-ñ")


def _account_lookup_plan(engine: Engine) -> str:
    """The query plan of one account's first page of events, as text."""
    store = audit_store(engine)
    store.append([_denial(f"user-{n}") for n in range(50)])

    def first_page() -> list[str]:
        page = store.page(AuditFilter(account_id="user-7"), after_id=0, limit=10)
        return [record.row.account_id for record in page]

    assert first_page() == ["user-7"]
    return read_plan(engine, first_page)


def test_account_lookups_read_through_the_bucket_index(planning_engine: Engine) -> None:
    assert ACCOUNT_INDEX in _account_lookup_plan(planning_engine)


# -- migrations 0008 and 0009 -----------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def old_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    return open_engine(empty_database_url(request, tmp_path, "audit_buckets"))


def test_a_0007_database_with_events_upgrades_and_downgrades(old_engine: Engine) -> None:
    migrate_to(old_engine, "0007")
    accounts = [f"old-{n}" for n in range(40)]
    with old_engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO audit_calls (id, time_us, caller, tenant, method, status_code, peer)"
                " VALUES (1, 1000, 'login', 'default', 'BatchVerify', 'OK', 'p')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO audit_events (call_id, account_id, verify_result)"
                " VALUES (1, :account, 'INVALID')"
            ),
            [{"account": account} for account in accounts],
        )
    migrate(old_engine)
    assert _stored_buckets(old_engine) == {a: {account_bucket(a)} for a in accounts}
    assert event_indexes(old_engine) == {ACCOUNT_INDEX}
    store = audit_store(old_engine)
    page = store.page(AuditFilter(account_id="old-7"), after_id=0, limit=10)
    assert [record.row.account_id for record in page] == ["old-7"]

    alembic(old_engine, "downgrade", "0007")
    columns = {column["name"] for column in inspect(old_engine).get_columns("audit_events")}
    assert "account_bucket" not in columns
    assert event_indexes(old_engine) == {"ix_audit_events_account_id", "ix_audit_events_call_id"}
    old_engine.dispose()
