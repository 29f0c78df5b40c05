"""The purge of ended factors and expired request records, on both databases."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.engine import make_url

from tests.conftest import Clock
from tests.enrollments import enroll_active
from tests.pg_server import ThrowawayPostgres
from totpd.crypto import Keyring
from totpd.service.mfa import MfaService
from totpd.service.policy import Policy
from totpd.service.purging import Purger, PurgeReport
from totpd.service.types import EnrollParams, FactorState
from totpd.store import FactorStore, migrate, open_engine
from totpd.store.models import FactorRow, RequestRecord

DAY = 86400


def ids_in(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return set(connection.scalars(select(FactorRow.id)))


def ended_at(engine: Engine, factor_id: str) -> int | None:
    with engine.connect() as connection:
        return connection.scalar(select(FactorRow.ended_at).where(FactorRow.id == factor_id))


def record_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(RequestRecord)) or 0)


def purge_once(service: MfaService, engine: Engine, clock: Clock) -> PurgeReport:
    store = FactorStore(engine)  # the purger keeps only a weak reference
    return Purger(store, service.policy, clock, interval=3600).run_once()


def test_disable_and_expiry_record_when_a_factor_ended(
    service: MfaService, clock: Clock, account_id: str, engine: Engine
) -> None:
    active = enroll_active(service, clock, account_id, label="a")
    pending = service.enroll(EnrollParams(account_id, "p"))
    assert ended_at(engine, active.factor.factor_id) is None
    service.disable(account_id, active.factor.factor_id, None, True)
    assert ended_at(engine, active.factor.factor_id) == int(clock.now)
    clock.advance(2 * service.policy.enrollment_ttl_seconds)
    listed = service.list_factors(account_id, include_inactive=True)
    assert {f.state for f in listed} == {FactorState.DISABLED, FactorState.EXPIRED}
    # Expired at its deadline, not when expiry noticed it.
    assert ended_at(engine, pending.factor.factor_id) == pending.factor.expires_at


def test_factors_past_the_retention_are_purged_and_the_others_kept(
    service: MfaService, clock: Clock, engine: Engine
) -> None:
    retention = service.policy.ended_factor_retention_days * DAY
    old_disabled = enroll_active(service, clock, "old-disabled").factor.factor_id
    service.disable("old-disabled", None, None, True)
    old_expired = service.enroll(EnrollParams("old-expired", "")).factor.factor_id
    never_read = service.enroll(EnrollParams("never-read", "")).factor.factor_id
    clock.advance(service.policy.enrollment_ttl_seconds)
    service.list_factors("old-expired", include_inactive=True)  # marks it expired
    clock.advance(retention)
    active = enroll_active(service, clock, "active").factor.factor_id
    recent_disabled = enroll_active(service, clock, "recent").factor.factor_id
    service.disable("recent", None, None, True)
    pending = service.enroll(EnrollParams("pending", "")).factor.factor_id
    clock.advance(1)

    report = purge_once(service, engine, clock)

    assert report.factors == 3
    assert ids_in(engine) == {active, recent_disabled, pending}
    assert not ids_in(engine) & {old_disabled, old_expired, never_read}


def test_a_factor_is_kept_until_its_retention_has_passed(
    service: MfaService, clock: Clock, engine: Engine
) -> None:
    factor_id = enroll_active(service, clock, "acct").factor.factor_id
    service.disable("acct", None, None, True)
    clock.advance(service.policy.ended_factor_retention_days * DAY)
    assert purge_once(service, engine, clock).factors == 0
    assert factor_id in ids_in(engine)
    clock.advance(1)
    assert purge_once(service, engine, clock).factors == 1
    assert ids_in(engine) == set()


def test_the_purge_deletes_in_batches(
    service: MfaService, clock: Clock, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(12):
        service.enroll(EnrollParams(f"acct-{i}", ""))
    clock.advance(service.policy.ended_factor_retention_days * DAY + 3600)
    store = FactorStore(engine)
    batches: list[int] = []
    real = store.purge.ended_before

    def counted(cutoff: int, *, limit: int) -> int:
        deleted = real(cutoff, limit=limit)
        batches.append(deleted)
        return deleted

    monkeypatch.setattr(store.purge, "ended_before", counted)
    report = Purger(store, service.policy, clock, interval=3600, batch=5, pause=0).run_once()
    assert report.factors == 12
    assert batches == [5, 5, 2]
    assert ids_in(engine) == set()


def test_expired_request_records_are_purged(engine: Engine, keyring: Keyring, clock: Clock) -> None:
    policy = Policy(request_id_retention_seconds=600)
    service = MfaService(FactorStore(engine), keyring, policy, clock)
    service.enroll(EnrollParams("a", ""), request_id="r-1")
    clock.advance(300)
    service.enroll(EnrollParams("b", ""), request_id="r-2")
    clock.advance(300)
    report = purge_once(service, engine, clock)
    assert (report.requests, record_count(engine)) == (1, 1)
    clock.advance(300)
    assert purge_once(service, engine, clock).requests == 1
    assert record_count(engine) == 0


@pytest.mark.slow
def test_the_purge_runs_while_accounts_enroll_and_disable(
    service: MfaService, clock: Clock, engine: Engine
) -> None:
    for i in range(40):
        enroll_active(service, clock, f"old-{i}")
        service.disable(f"old-{i}", None, None, True)
    clock.advance(service.policy.ended_factor_retention_days * DAY + 1)
    store = FactorStore(engine)
    background = Purger(store, service.policy, clock, interval=0.01, batch=3, pause=0.001).start()
    errors: list[BaseException] = []
    # enroll_active types the code of the shared clock's now, then moves the clock a
    # step on: two workers doing so at once could move it past the first's window.
    activating = threading.Lock()

    def churn(worker: int) -> None:
        try:
            for i in range(5):
                account = f"new-{worker}-{i}"
                with activating:
                    enroll_active(service, clock, account, label="a")
                service.enroll(EnrollParams(account, "b"))
                service.disable(account, None, None, True)
                service.enroll(EnrollParams(account, "c"))
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=churn, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    wait_for(lambda: not any(i.startswith("old") for i in accounts_in(engine)))
    background.stop()
    assert errors == []
    accounts = accounts_in(engine)
    assert not any(account.startswith("old-") for account in accounts)
    # Every new account: its two disabled factors and the pending one are kept.
    for worker in range(4):
        for i in range(5):
            assert accounts.count(f"new-{worker}-{i}") == 3


def accounts_in(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.scalars(select(FactorRow.account_id)))


def wait_for(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


@pytest.mark.postgres
def test_a_database_fault_does_not_end_the_purge_thread(
    keyring: Keyring, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    server = ThrowawayPostgres()
    server.start()
    admin = open_engine(
        make_url(server.url).set(database="postgres").render_as_string(hide_password=False)
    )
    engine = open_engine(server.url)
    try:
        migrate(engine)
        service = MfaService(FactorStore(engine), keyring, Policy(), clock)
        enroll_active(service, clock, "acct")
        service.disable("acct", None, None, True)
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("ALTER DATABASE totpd ALLOW_CONNECTIONS false"))
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = 'totpd' AND pid <> pg_backend_pid()"
                )
            )
        engine.dispose()
        clock.advance(31 * DAY)
        with caplog.at_level(logging.WARNING, logger="totpd.purge"):
            store = FactorStore(engine)  # the purger keeps only a weak reference
            background = Purger(store, service.policy, clock, interval=0.05).start()
            wait_for(lambda: background.runs >= 3)
            assert background.is_running()
            failures = [r for r in caplog.records if r.name == "totpd.purge"]
            assert len(failures) >= 3
            causes = [str(getattr(r, "cause", "")) for r in failures]
            assert all(cause and "SELECT" not in cause for cause in causes)
            with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.execute(text("ALTER DATABASE totpd ALLOW_CONNECTIONS true"))
            wait_for(lambda: ids_in(engine) == set())
        background.stop()
    finally:
        engine.dispose()
        admin.dispose()
        server.stop()
