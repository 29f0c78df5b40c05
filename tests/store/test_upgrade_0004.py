"""Upgrading a database written at revision 0003 (before tenants): its factors,
accounts and request records land in tenant "default" and keep working; the new
keys let another tenant hold the same account ids."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, text

from tests.conftest import START_TIME, Clock
from tests.enrollments import enroll_active
from tests.store.upgrades import alembic, empty_database_url, schema_differences
from tests.totp_oracle import totp
from totpd import calls
from totpd.calls import DEFAULT_TENANT, CallScope
from totpd.crypto import Keyring, write_new_keyring
from totpd.service.errors import ErrorReason, TotpdError
from totpd.service.mfa import MfaService
from totpd.service.policy import Policy
from totpd.service.types import VerifyItem, VerifyResult
from totpd.store import FactorStore, migrate, open_engine

SECRET = b"\x22" * 20
NOW = int(START_TIME)
ACCOUNT = "alice"
REQUEST_ID = "req-0003"
SHOP = CallScope(caller="t", tenant="shop")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine_at_0003(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty database at revision 0003, the release before tenants."""
    url = empty_database_url(request, tmp_path, "upgrade4")
    engine = open_engine(url)
    alembic(engine, "upgrade", "0003")
    yield engine
    engine.dispose()


def _insert_as_0003(engine: Engine, keyring: Keyring) -> str:
    """An active factor, its account's failures and a request record, as 0003's
    server wrote them (format-2 secret: no tenant in its associated data)."""
    factor_id = str(uuid.uuid4())
    sealed = keyring.seal(factor_id, ACCOUNT, SECRET)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO factors (id, account_id, label, issuer, algorithm, digits,"
                " period_seconds, state, secret_key_id, secret_nonce, secret_ciphertext,"
                " last_used_step, failed_attempts, blocked_until, created_at, confirmed_at,"
                " secret_format) VALUES (:id, :account, 'phone', 'totpd', 'SHA1', 6, 30,"
                " 'active', :key_id, :nonce, :ciphertext, :step, 2, 0, :now, :now, 2)"
            ),
            {
                "id": factor_id,
                "account": ACCOUNT,
                "key_id": sealed.key_id,
                "nonce": sealed.nonce,
                "ciphertext": sealed.ciphertext,
                "step": NOW // 30 - 10,
                "now": NOW - 1000,
            },
        )
        connection.execute(
            text(
                "INSERT INTO accounts (account_id, budget_tat, consecutive_failures, locked_at)"
                " VALUES (:account, 0, 2, NULL)"
            ),
            {"account": ACCOUNT},
        )
        connection.execute(
            text(
                "INSERT INTO request_records (request_id, scope, method, account_id,"
                " fingerprint, fingerprint_key_id, claim_token, state, result, created_at,"
                " lease_until, expires_at) VALUES (:rid, 'default', 'Enroll', :account,"
                " :fingerprint, :key_id, 'token', 'done', :result, :now, :now, :expires)"
            ),
            {
                "rid": REQUEST_ID,
                "account": ACCOUNT,
                "fingerprint": b"\x00" * 32,
                "key_id": sealed.key_id,
                "result": f'{{"factors": ["{factor_id}"]}}',
                "now": NOW - 10,
                "expires": NOW + 86400,
            },
        )
    return factor_id


def _tenants(engine: Engine, table: str) -> list[str]:
    with engine.connect() as connection:
        return list(connection.execute(text(f"SELECT tenant FROM {table}")).scalars())


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    write_new_keyring(tmp_path / "keyring.json")
    return Keyring.load(tmp_path / "keyring.json")


def test_rows_of_0003_land_in_the_default_tenant_and_still_verify(
    engine_at_0003: Engine, keyring: Keyring
) -> None:
    engine = engine_at_0003
    factor_id = _insert_as_0003(engine, keyring)
    migrate(engine)
    for table in ("factors", "accounts", "request_records"):
        assert _tenants(engine, table) == [DEFAULT_TENANT]
    keys = {
        table: inspect(engine).get_pk_constraint(table)["constrained_columns"]
        for table in ("accounts", "request_records")
    }
    assert keys == {
        "accounts": ["account_id", "tenant"],
        "request_records": ["request_id", "scope", "tenant"],
    }
    store = FactorStore(engine)
    state = store.account_state(ACCOUNT)
    assert state is not None and state.consecutive_failures == 2
    assert store.account_state(ACCOUNT, tenant="shop") is None
    assert store.requests.get(DEFAULT_TENANT, REQUEST_ID, "default", now=NOW) is not None
    assert store.requests.get("shop", REQUEST_ID, "default", now=NOW) is None

    clock = Clock()
    service = MfaService(store, keyring, Policy(), clock)
    code = totp(base64.b32encode(SECRET).decode(), clock.now)
    outcome = service.verify(VerifyItem(ACCOUNT, code))
    assert (outcome.result, outcome.factor_id) == (VerifyResult.VALID, factor_id)
    state = store.account_state(ACCOUNT)
    assert state is not None and state.consecutive_failures == 0  # reset by the success
    assert service.verify(VerifyItem(ACCOUNT, code)).result is VerifyResult.REPLAYED

    # The same account id in another tenant is another account: the label is free,
    # its code is not the old factor's, and nothing of the default tenant shows.
    with calls.scoped(SHOP):
        assert service.list_factors(ACCOUNT, include_inactive=True) == []
        with pytest.raises(TotpdError) as missing:
            service.verify(VerifyItem(ACCOUNT, code))
        assert missing.value.reason is ErrorReason.ACCOUNT_NOT_FOUND
        shop = enroll_active(service, clock, ACCOUNT, "phone")
    assert shop.factor.factor_id != factor_id
    assert [f.factor_id for f in service.list_factors(ACCOUNT, True)] == [factor_id]


def test_downgrade_to_0003_keeps_default_rows_and_refuses_other_tenants(
    engine_at_0003: Engine, keyring: Keyring
) -> None:
    engine = engine_at_0003
    factor_id = _insert_as_0003(engine, keyring)
    migrate(engine)
    store = FactorStore(engine)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO accounts (tenant, account_id, budget_tat, consecutive_failures)"
                " VALUES ('shop', :account, 0, 1)"
            ),
            {"account": ACCOUNT},
        )
    with pytest.raises(RuntimeError, match="tenants other than default"):
        alembic(engine, "downgrade", "0003")
    store.unlock_account(ACCOUNT, tenant="shop")
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM accounts WHERE tenant = 'shop'"))
    alembic(engine, "downgrade", "0003")
    assert "tenant" not in {c["name"] for c in inspect(engine).get_columns("factors")}
    with engine.connect() as connection:
        found = connection.execute(text("SELECT id FROM factors")).scalars().all()
    assert found == [factor_id]


def test_the_migrated_schema_is_the_models(engine: Engine) -> None:
    """Revision head and store/models.py agree: the tenant columns, keys and indexes."""
    differences = schema_differences(engine)
    assert differences == []
