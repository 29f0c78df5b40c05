"""Secrets bound to their account: moved rows fail closed, legacy rows are re-sealed."""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Engine, select, text, update

from tests.conftest import Clock
from tests.enrollments import enroll_active
from tests.totp_oracle import code_at
from totpd.crypto import Keyring
from totpd.service.errors import ErrorReason, TotpdError
from totpd.service.mfa import MfaService
from totpd.service.resealing import reseal_legacy_secrets
from totpd.service.types import Enrollment, EnrollParams, VerifyItem, VerifyResult
from totpd.store import FactorStore
from totpd.store.models import FactorRow


def raw_key(tmp_path: Path, key_id: str) -> bytes:
    """The key bytes of the `keyring` fixture's file (tests/conftest.py)."""
    document = json.loads((tmp_path / "keyring.json").read_text())
    return base64.b64decode(document["keys"][key_id])


def stored(engine: Engine, factor_id: str) -> FactorRow:
    with engine.connect() as connection:
        return connection.execute(  # type: ignore[no-any-return]
            select(FactorRow.__table__).where(FactorRow.id == factor_id)  # type: ignore[arg-type]
        ).one()


def make_legacy(engine: Engine, tmp_path: Path, keyring: Keyring, enrollment: Enrollment) -> None:
    """Store the factor's secret as a release before the account binding did (format 1)."""
    factor_id = enrollment.factor.factor_id
    secret = base64.b32decode(enrollment.secret_base32 + "=" * (-len(enrollment.secret_base32) % 8))
    key_id = keyring.primary_key_id
    nonce = os.urandom(12)
    aad = b"\x00".join((b"totpd.secret.v1", factor_id.encode(), key_id.encode()))
    ciphertext = AESGCM(raw_key(tmp_path, key_id)).encrypt(nonce, secret, aad)
    with engine.begin() as connection:
        connection.execute(
            update(FactorRow)
            .where(FactorRow.id == factor_id)
            .values(secret_format=1, secret_nonce=nonce, secret_ciphertext=ciphertext)
        )


def verify_error(service: MfaService, account_id: str, code: str) -> TotpdError:
    with pytest.raises(TotpdError) as caught:
        service.verify(VerifyItem(account_id, code))
    return caught.value


def move(engine: Engine, factor_id: str, account_id: str) -> None:
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE factors SET account_id = :account WHERE id = :id"),
            {"account": account_id, "id": factor_id},
        )


def test_new_secrets_are_stored_in_the_account_bound_format(
    service: MfaService, clock: Clock, account_id: str, engine: Engine
) -> None:
    enrollment = enroll_active(service, clock, account_id)
    assert stored(engine, enrollment.factor.factor_id).secret_format == 2


def test_a_secret_moved_to_another_account_no_longer_verifies(
    service: MfaService, clock: Clock, account_id: str, engine: Engine
) -> None:
    enrollment = enroll_active(service, clock, account_id)
    move(engine, enrollment.factor.factor_id, "mallory")
    error = verify_error(service, "mallory", code_at(enrollment, clock.now))
    assert error.reason is ErrorReason.SECRET_UNAVAILABLE
    # Moved back, it verifies again: only the binding failed, not the data.
    move(engine, enrollment.factor.factor_id, account_id)
    outcome = service.verify(VerifyItem(account_id, code_at(enrollment, clock.now)))
    assert outcome.result is VerifyResult.VALID


def test_a_pending_secret_moved_to_another_account_cannot_be_confirmed(
    service: MfaService, clock: Clock, account_id: str, engine: Engine
) -> None:
    enrollment = service.enroll(EnrollParams(account_id, "phone"))
    move(engine, enrollment.factor.factor_id, "mallory")
    with pytest.raises(TotpdError) as caught:
        service.confirm("mallory", enrollment.factor.factor_id, code_at(enrollment, clock.now))
    assert caught.value.reason is ErrorReason.SECRET_UNAVAILABLE


def test_legacy_secrets_fail_closed_until_re_sealed_then_verify(
    service: MfaService,
    clock: Clock,
    account_id: str,
    engine: Engine,
    keyring: Keyring,
    tmp_path: Path,
) -> None:
    enrollment = enroll_active(service, clock, account_id)
    make_legacy(engine, tmp_path, keyring, enrollment)
    # The serving path opens the account-bound format only.
    error = verify_error(service, account_id, code_at(enrollment, clock.now))
    assert error.reason is ErrorReason.SECRET_UNAVAILABLE
    report = reseal_legacy_secrets(FactorStore(engine).sealed_secrets, keyring)
    assert (report.resealed, report.unavailable) == (1, 0)
    assert stored(engine, enrollment.factor.factor_id).secret_format == 2
    outcome = service.verify(VerifyItem(account_id, code_at(enrollment, clock.now)))
    assert outcome.result is VerifyResult.VALID
    # Idempotent: nothing is left to re-seal.
    assert reseal_legacy_secrets(FactorStore(engine).sealed_secrets, keyring) == (0, 0)


def test_relabelling_a_moved_row_as_legacy_does_not_make_it_open(
    service: MfaService,
    clock: Clock,
    account_id: str,
    engine: Engine,
    keyring: Keyring,
    caplog: pytest.LogCaptureFixture,
) -> None:
    enrollment = enroll_active(service, clock, account_id)
    factor_id = enrollment.factor.factor_id
    move(engine, factor_id, "mallory")
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE factors SET secret_format = 1 WHERE id = :id"), {"id": factor_id}
        )
    with caplog.at_level(logging.ERROR, logger="totpd.crypto"):
        report = reseal_legacy_secrets(FactorStore(engine).sealed_secrets, keyring)
    assert (report.resealed, report.unavailable) == (0, 1)
    assert stored(engine, factor_id).secret_format == 1
    error = verify_error(service, "mallory", code_at(enrollment, clock.now))
    assert error.reason is ErrorReason.SECRET_UNAVAILABLE
    (line,) = [r for r in caplog.records if r.name == "totpd.crypto"]
    assert (line.factor_id, line.key_id) == (factor_id, keyring.primary_key_id)  # type: ignore[attr-defined]


def test_a_legacy_row_whose_key_is_missing_stays_legacy_and_fails_closed(
    service: MfaService,
    clock: Clock,
    account_id: str,
    engine: Engine,
    keyring: Keyring,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    enrollment = enroll_active(service, clock, account_id)
    make_legacy(engine, tmp_path, keyring, enrollment)
    other = Keyring({"other": b"\x09" * 32}, "other")
    with caplog.at_level(logging.ERROR, logger="totpd.crypto"):
        report = reseal_legacy_secrets(FactorStore(engine).sealed_secrets, other)
    assert (report.resealed, report.unavailable) == (0, 1)
    assert stored(engine, enrollment.factor.factor_id).secret_format == 1
    messages = [r.getMessage() for r in caplog.records if r.name == "totpd.crypto"]
    assert len(messages) == 1 and enrollment.secret_base32 not in messages[0]
    error = verify_error(service, account_id, code_at(enrollment, clock.now))
    assert error.reason is ErrorReason.SECRET_UNAVAILABLE


def test_two_replicas_re_sealing_at_once_re_seal_each_row_once(
    service: MfaService,
    clock: Clock,
    engine: Engine,
    keyring: Keyring,
    tmp_path: Path,
) -> None:
    enrollments = [enroll_active(service, clock, f"acct-{i}") for i in range(30)]
    for enrollment in enrollments:
        make_legacy(engine, tmp_path, keyring, enrollment)
    barrier = threading.Barrier(2)
    reports = []

    def replica() -> None:
        store = FactorStore(engine)
        barrier.wait(timeout=30)
        reports.append(reseal_legacy_secrets(store.sealed_secrets, keyring, batch=7))

    threads = [threading.Thread(target=replica) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sum(report.resealed for report in reports) == 30
    assert sum(report.unavailable for report in reports) == 0
    for i, enrollment in enumerate(enrollments):
        outcome = service.verify(VerifyItem(f"acct-{i}", code_at(enrollment, clock.now)))
        assert outcome.result is VerifyResult.VALID
