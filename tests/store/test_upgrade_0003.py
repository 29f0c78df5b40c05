"""Upgrading a database from revision 0001: the schema moves, then the keyring
step re-seals the legacy secrets (at startup and in `totpd migrate`)."""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Engine, inspect, text

from tests.conftest import START_TIME
from tests.rpc.conftest import make_settings
from tests.store.upgrades import empty_database_url, migrate_to
from tests.totp_oracle import totp
from totpd.cli.serve import main
from totpd.crypto import Keyring, write_new_keyring
from totpd.service.mfa import MfaService
from totpd.service.types import VerifyItem, VerifyResult
from totpd.store import FactorStore, migrate, open_engine

SECRET = b"\x11" * 20
NOW = int(START_TIME)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def old_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database at revision 0001."""
    url = empty_database_url(request, tmp_path, "upgrade")
    engine = open_engine(url)
    migrate_to(engine, "0001")
    engine.dispose()
    yield url


def insert_v1(engine: Engine, keyring_key: bytes, key_id: str, state: str) -> str:
    """A factor as revision 0001's server stored it: secret sealed without the account."""
    factor_id = str(uuid.uuid4())
    nonce = os.urandom(12)
    aad = b"\x00".join((b"totpd.secret.v1", factor_id.encode(), key_id.encode()))
    live = state in ("pending", "active")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO factors (id, account_id, label, issuer, algorithm, digits,"
                " period_seconds, state, secret_key_id, secret_nonce, secret_ciphertext,"
                " last_used_step, failed_attempts, blocked_until, created_at, expires_at)"
                " VALUES (:id, :account, :label, 'totpd', 'SHA1', 6, 30, :state, :key_id,"
                " :nonce, :ciphertext, -1, 0, 0, :now, :expires)"
            ),
            {
                "id": factor_id,
                "account": f"acct-{factor_id[:8]}",
                "label": state,
                "state": state,
                "key_id": key_id if live else None,
                "nonce": nonce if live else None,
                "ciphertext": AESGCM(keyring_key).encrypt(nonce, SECRET, aad) if live else None,
                "now": NOW - 100,
                "expires": NOW + 500 if state == "pending" else None,
            },
        )
    return factor_id


def column(engine: Engine, name: str, factor_id: str) -> object:
    with engine.connect() as connection:
        return connection.execute(
            text(f"SELECT {name} FROM factors WHERE id = :id"), {"id": factor_id}
        ).scalar_one()


def key_of(path: Path) -> tuple[str, bytes]:
    keyring = Keyring.load(path)
    document = json.loads(path.read_text())
    return keyring.primary_key_id, base64.b64decode(document["keys"][keyring.primary_key_id])


def test_the_upgrade_keeps_old_rows_legacy_and_dates_the_ended_ones(
    old_database: str, tmp_path: Path
) -> None:
    write_new_keyring(tmp_path / "k.json")
    key_id, key = key_of(tmp_path / "k.json")
    engine = open_engine(old_database)
    ids = {
        state: insert_v1(engine, key, key_id, state) for state in ("active", "disabled", "expired")
    }
    migrate(engine)
    assert "request_records" in inspect(engine).get_table_names()
    assert column(engine, "secret_format", ids["active"]) == 1
    assert column(engine, "ended_at", ids["active"]) is None
    for state in ("disabled", "expired"):
        assert isinstance(column(engine, "ended_at", ids[state]), int)
    engine.dispose()


def test_startup_re_seals_legacy_secrets_and_they_verify(old_database: str, tmp_path: Path) -> None:
    from totpd.app import build_service

    settings = replace(make_settings(tmp_path), database_url=old_database)
    key_id, key = key_of(settings.key_file)
    engine = open_engine(old_database)
    factor_id = insert_v1(engine, key, key_id, "active")
    service: MfaService = build_service(settings)
    assert column(engine, "secret_format", factor_id) == 2
    account = f"acct-{factor_id[:8]}"
    code = totp(base64.b32encode(SECRET).decode(), time.time())
    assert service.verify(VerifyItem(account, code)).result is VerifyResult.VALID
    engine.dispose()


def test_totpd_migrate_re_seals_when_the_key_file_exists(old_database: str, tmp_path: Path) -> None:
    key_file = tmp_path / "totpd.key"
    write_new_keyring(key_file)
    key_id, key = key_of(key_file)
    engine = open_engine(old_database)
    factor_id = insert_v1(engine, key, key_id, "active")
    args = ["migrate", "--database-url", old_database, "--data-dir", str(tmp_path)]
    assert main([*args, "--key-file", str(tmp_path / "absent.key")]) == 0
    assert column(engine, "secret_format", factor_id) == 1  # no keyring: the schema only
    assert main([*args, "--key-file", str(key_file)]) == 0
    assert column(engine, "secret_format", factor_id) == 2
    store = FactorStore(engine)
    assert store.sealed_secrets.after("", limit=10) == []
    engine.dispose()
