"""The store's and the engine's metrics on the real store (SQLite and PostgreSQL):
rounds decided again under locks, pool and writer-queue waits, secrets that do
not open, outages."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.conftest import Clock
from tests.enrollments import enroll_active
from tests.rpc.conftest import Secrets, make_settings
from tests.rpc.harness import call_fails, running_server
from tests.store.conftest import interleave_after_read
from tests.telemetry.scrape import Delta
from tests.totp_oracle import code_at, wrong_code
from totpd.crypto import Keyring, write_new_keyring
from totpd.service.errors import ErrorReason, TotpdError
from totpd.service.mfa import MfaService
from totpd.service.policy import Policy
from totpd.service.types import VerifyItem, VerifyResult
from totpd.store import FactorStore, migrate, open_engine
from totpd.store.database import SqliteWriterQueue
from totpd.telemetry.metrics import MetricsListener
from totpd.v1 import totp_service_pb2 as pb


def test_a_round_decided_again_under_locks_is_counted(
    service: MfaService,
    clock: Clock,
    account_id: str,
    monkeypatch: pytest.MonkeyPatch,
    listener: MetricsListener,
) -> None:
    mine = enroll_active(service, clock, account_id)
    wrong = wrong_code(code_at(mine, clock.now))
    delta = Delta(listener.port)
    locked_rounds = interleave_after_read(
        service, monkeypatch, lambda: service.verify(VerifyItem(account_id, wrong))
    )
    assert service.verify(VerifyItem(account_id, wrong)).result is VerifyResult.INVALID
    delta.take()
    assert locked_rounds == [1]
    assert delta("totpd_store_rounds_relocked_total") == 1
    # The interleaved Verify's round and the outer one (which includes its retry).
    assert delta("totpd_store_round_duration_seconds_count") == 2
    assert delta("totpd_verdicts_total", result="invalid") == 2


def test_a_checkout_that_waits_for_a_connection_is_counted(
    tmp_path: Path, listener: MetricsListener
) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'pool.sqlite3'}")
    try:
        delta = Delta(listener.port)
        held = [engine.raw_connection() for _ in range(engine.pool.size() + 10)]  # + overflow
        taken = len(held)
        in_use = Delta(listener.port)
        waiter = threading.Thread(target=lambda: engine.raw_connection().close())
        waiter.start()
        time.sleep(0.2)
        held.pop().close()  # the waiting checkout gets this one
        waiter.join(timeout=10)
        assert not waiter.is_alive()
        for connection in held:
            connection.close()
        delta.take()
        in_use.take()
    finally:
        engine.dispose()
    assert delta("totpd_store_waits_total", resource="pool") == 1
    assert delta("totpd_store_wait_seconds_sum", resource="pool") >= 0.15
    assert delta("totpd_store_pool_connections_in_use") == 0
    assert in_use("totpd_store_pool_connections_in_use") == -taken


def test_a_writer_that_waits_for_the_sqlite_writer_queue_is_counted(
    tmp_path: Path, listener: MetricsListener
) -> None:
    queue = SqliteWriterQueue(str(tmp_path / "queue.sqlite3"))
    delta = Delta(listener.port)
    with queue:
        waiter = threading.Thread(target=lambda: queue.__enter__() or queue.__exit__())
        waiter.start()
        time.sleep(0.2)
    waiter.join(timeout=10)
    assert not waiter.is_alive()
    with queue:  # free: no wait
        pass
    delta.take()
    assert delta("totpd_store_waits_total", resource="sqlite_writers") == 1
    assert delta("totpd_store_wait_seconds_sum", resource="sqlite_writers") >= 0.15


def test_a_secret_that_does_not_open_is_counted(
    engine: Engine, keyring: Keyring, clock: Clock, tmp_path: Path, listener: MetricsListener
) -> None:
    sealing = MfaService(FactorStore(engine), keyring, Policy(), clock)
    active = enroll_active(sealing, clock, "alice")
    other = tmp_path / "other.key"
    write_new_keyring(other)
    opening = MfaService(FactorStore(engine), Keyring.load(other), Policy(), clock)
    delta = Delta(listener.port)
    with pytest.raises(TotpdError) as caught:
        opening.verify(VerifyItem("alice", code_at(active, clock.now)))
    assert caught.value.reason is ErrorReason.SECRET_UNAVAILABLE
    assert delta.take()("totpd_secret_unavailable_total") == 1


def test_an_outage_is_counted_by_reason(
    tmp_path: Path,
    keyring: Keyring,
    clock: Clock,
    secrets_seen: Secrets,
    listener: MetricsListener,
) -> None:
    """The SQLite file replaced by a directory, as when its volume is gone."""
    database = tmp_path / "outage.sqlite3"
    engine = open_engine(f"sqlite:///{database}")
    migrate(engine)
    service = MfaService(FactorStore(engine), keyring, Policy(), clock)
    settings = make_settings(tmp_path / "server")
    try:
        with running_server(settings, service) as live:
            engine.dispose()
            aside = tmp_path / "aside"
            aside.mkdir()
            for path in tmp_path.glob("outage.sqlite3*"):
                shutil.move(path, aside / path.name)
            database.mkdir()
            delta = Delta(listener.port)
            failed = call_fails(live.stub.Verify, pb.VerifyRequest(account_id="a", code="123456"))
            delta.take()
    finally:
        engine.dispose()
    assert failed.reason == "ERROR_REASON_STORE_UNAVAILABLE"
    assert delta("totpd_store_faults_total", reason="STORE_UNAVAILABLE") == 1
    assert delta("totpd_rpc_requests_total", method="Verify", code="UNAVAILABLE") == 1
