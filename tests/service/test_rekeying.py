"""Key rotation in-process (service/rekeying.py): beside live verifications and disables,
two runs at once, a disable between a batch's read and its write, and a database that
goes away mid-run, on both databases."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from tests.conftest import Clock
from tests.enrollments import enroll_active
from tests.keyrings import keyring_of, live_secrets_by_key, new_keys
from tests.pg_faults import FaultyPostgres, faulty_postgres
from tests.totp_oracle import code_at
from totpd.crypto import Keyring
from totpd.service.mfa import MfaService
from totpd.service.policy import Policy
from totpd.service.rekeying import RekeyOptions, RekeyReport, plan, rekey
from totpd.service.resealing import reseal_all
from totpd.service.types import Enrollment, VerifyItem, VerifyResult
from totpd.store import FactorStore, migrate, open_engine
from totpd.store.errors import StoreFaultError
from totpd.store.sealed_secrets import Selection

Enrolled = list[tuple[str, Enrollment]]


class Rotation:
    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.keys = new_keys(2)
        self.a, self.b = self.keys
        self.store = FactorStore(engine)
        self.engine = engine
        self.clock = clock
        self.both = keyring_of(self.keys, self.b)  # the servers' keyring after step 2
        self.under_a = self.service(keyring_of(self.keys, self.a, self.a))

    def service(self, keyring: Keyring) -> MfaService:
        return MfaService(self.store, keyring, Policy(), self.clock)

    def enroll(self, count: int, prefix: str = "acct") -> Enrolled:
        accounts = [f"{prefix}-{self.a}-{i}" for i in range(count)]
        return [(account, enroll_active(self.under_a, self.clock, account)) for account in accounts]

    def rekey(self, **options: object) -> RekeyReport:
        chosen = RekeyOptions(**options)  # type: ignore[arg-type]
        work = plan(self.store.sealed_secrets, self.both, chosen)
        return rekey(self.store.sealed_secrets, self.both, chosen, total=work.total)

    def all_verify_under_b_alone(self, enrolled: Enrolled) -> None:
        self.clock.advance(30)  # past every step used so far
        only_b = self.service(keyring_of(self.keys, self.b, self.b))
        for account, enrollment in enrolled:
            outcome = only_b.verify(VerifyItem(account, code_at(enrollment, self.clock.now)))
            assert outcome.result is VerifyResult.VALID, account


def factor_ids(enrolled: Enrolled) -> list[str]:
    return [enrollment.factor.factor_id for _, enrollment in enrolled]


def erased(engine: Engine, factor_id: str) -> tuple[str, bool]:
    with engine.connect() as connection:
        state, ciphertext = connection.execute(
            text("SELECT state, secret_ciphertext FROM factors WHERE id = :id"), {"id": factor_id}
        ).one()
    return state, ciphertext is None


def test_rekey_online_beside_verifications_and_disables(engine: Engine, clock: Clock) -> None:
    rotation = Rotation(engine, clock)
    enrolled = rotation.enroll(24)
    server = rotation.service(rotation.both)
    now = clock.now
    results: list[VerifyResult] = []
    disabled: list[str] = []
    start = threading.Barrier(2)

    def traffic() -> None:
        start.wait(timeout=30)
        for i, (account, enrollment) in enumerate(enrolled):
            if i % 3 == 0:
                server.disable(account, enrollment.factor.factor_id, None, True)
                disabled.append(enrollment.factor.factor_id)
            else:
                results.append(server.verify(VerifyItem(account, code_at(enrollment, now))).result)

    thread = threading.Thread(target=traffic)
    thread.start()
    start.wait(timeout=30)
    report = rotation.rekey(batch=2, hold_seconds=0.005)
    thread.join(timeout=120)
    assert not thread.is_alive()
    assert results == [VerifyResult.VALID] * 16
    assert [erased(engine, factor_id) for factor_id in disabled] == [("disabled", True)] * 8
    live = [pair for i, pair in enumerate(enrolled) if i % 3]
    assert live_secrets_by_key(engine, factor_ids(enrolled)) == {rotation.b: 16}
    assert report.unavailable == []
    assert 16 <= report.moved[rotation.a] <= 24 and set(report.moved) == {rotation.a}
    rotation.all_verify_under_b_alone(live)


def test_a_disable_between_the_read_and_the_write_is_never_undone(
    engine: Engine, clock: Clock
) -> None:
    rotation = Rotation(engine, clock)
    enrolled = rotation.enroll(3)
    selected = rotation.store.sealed_secrets.selecting(Selection(rotation.b))
    rows = selected.after("", limit=10)
    assert len(rows) == 3
    account, victim = enrolled[1]
    rotation.service(rotation.both).disable(account, victim.factor.factor_id, None, True)
    replacements, failed = reseal_all(rotation.both, rows)
    assert failed == [] and len(replacements) == 3
    written = selected.replace(replacements)
    assert [item.old.factor_id for item in written] == sorted(
        factor_ids([enrolled[0], enrolled[2]])
    )
    assert erased(engine, victim.factor.factor_id) == ("disabled", True)
    # The same replacements again (a second run that read the same rows): nothing moves twice.
    assert selected.replace(replacements) == []
    rotation.all_verify_under_b_alone([enrolled[0], enrolled[2]])


def test_two_runs_at_once_seal_each_secret_once(engine: Engine, clock: Clock) -> None:
    rotation = Rotation(engine, clock)
    enrolled = rotation.enroll(20)
    barrier = threading.Barrier(2)
    reports: list[RekeyReport] = []

    def run() -> None:
        barrier.wait(timeout=30)
        reports.append(rotation.rekey(batch=3))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(reports) == 2
    assert sum(report.moved[rotation.a] for report in reports) == 20
    assert live_secrets_by_key(engine, factor_ids(enrolled)) == {rotation.b: 20}
    rotation.all_verify_under_b_alone(enrolled)


@pytest.fixture
def faulty() -> Iterator[tuple[FaultyPostgres, Engine]]:
    with faulty_postgres() as server:
        engine = open_engine(server.url)
        migrate(engine)
        try:
            yield server, engine
        finally:
            engine.dispose()


@pytest.mark.slow
@pytest.mark.postgres
def test_a_database_that_goes_away_mid_run(
    faulty: tuple[FaultyPostgres, Engine], clock: Clock, tmp_path: Path
) -> None:
    server, engine = faulty
    rotation = Rotation(engine, clock)
    enrolled = rotation.enroll(6)
    store = rotation.store.sealed_secrets

    def halt_after_first(report: RekeyReport) -> None:
        if report.batches == 1:
            server.halt("immediate")

    restarts: list[float] = []

    def restart(seconds: float) -> None:
        restarts.append(seconds)
        if not server.is_running():
            server.restart()

    # Back after the first retry's pause: the run finishes, each secret moved once.
    options = RekeyOptions(batch=2, retries=4, sleep=restart)
    report = rekey(store, rotation.both, options, total=6, on_batch=halt_after_first)
    assert report.retries >= 1 and restarts[0] == 0.5
    assert report.moved[rotation.a] == 6
    assert live_secrets_by_key(engine, factor_ids(enrolled)) == {rotation.b: 6}

    # Gone for good: the run gives up after its retries, with nothing half-written.
    more = rotation.enroll(4, prefix="more")
    server.halt("immediate")
    pauses: list[float] = []
    with pytest.raises(StoreFaultError):
        rekey(store, rotation.both, RekeyOptions(retries=2, sleep=pauses.append), total=4)
    assert pauses == [0.5, 1.0]
    server.restart()
    assert rotation.rekey().moved[rotation.a] == 4
    rotation.all_verify_under_b_alone(enrolled + more)
