"""At startup the keyring must hold every key the stored secrets are sealed
with; otherwise every verification of those factors would fail closed while
health said SERVING. Both databases."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.conftest import Clock
from tests.enrollments import enroll_active
from totpd.app import MissingKeysError, check_keyring
from totpd.config import Settings
from totpd.crypto import Keyring, KeyringError, write_new_keyring
from totpd.service.mfa import MfaService
from totpd.service.policy import Policy
from totpd.service.types import EnrollParams
from totpd.store import FactorStore


def other_keyring(tmp_path: Path, name: str) -> Keyring:
    path = tmp_path / name
    write_new_keyring(path)
    return Keyring.load(path)


def settings_for(tmp_path: Path) -> Settings:
    return Settings(key_file=tmp_path / "other.key")


def test_an_empty_database_accepts_any_keyring(engine: Engine, tmp_path: Path) -> None:
    check_keyring(FactorStore(engine), other_keyring(tmp_path, "a.key"), settings_for(tmp_path))


def test_a_keyring_without_a_stored_key_is_refused_naming_the_missing_ids(
    engine: Engine, keyring: Keyring, tmp_path: Path
) -> None:
    store = FactorStore(engine)
    service = MfaService(store, keyring, Policy(), Clock())
    service.enroll(EnrollParams("alice", "phone"))
    other = other_keyring(tmp_path, "b.key")

    check_keyring(store, keyring, settings_for(tmp_path))  # the keyring that sealed them
    with pytest.raises(MissingKeysError) as caught:
        check_keyring(store, other, settings_for(tmp_path))

    assert isinstance(caught.value, KeyringError)  # the CLI's startup-error path
    message = str(caught.value)
    assert keyring.primary_key_id in message
    assert other.primary_key_id not in message
    assert str(tmp_path / "other.key") in message


def test_secrets_already_erased_need_no_key(
    engine: Engine, keyring: Keyring, clock: Clock, tmp_path: Path
) -> None:
    store = FactorStore(engine)
    service = MfaService(store, keyring, Policy(), clock)
    enrolled = enroll_active(service, clock, "bob")
    service.disable("bob", enrolled.factor.factor_id, None, force=True)

    assert store.secret_key_ids() == set()
    check_keyring(store, other_keyring(tmp_path, "c.key"), settings_for(tmp_path))


def test_every_missing_key_id_is_named_once_in_order(
    engine: Engine, tmp_path: Path, clock: Clock
) -> None:
    store = FactorStore(engine)
    first, second = other_keyring(tmp_path, "1.key"), other_keyring(tmp_path, "2.key")
    for index, sealing in enumerate([first, second, first]):
        MfaService(store, sealing, Policy(), clock).enroll(EnrollParams(f"user-{index}", "phone"))

    assert store.secret_key_ids() == {first.primary_key_id, second.primary_key_id}
    with pytest.raises(MissingKeysError) as caught:
        check_keyring(store, other_keyring(tmp_path, "3.key"), settings_for(tmp_path))
    ids = ", ".join(sorted([first.primary_key_id, second.primary_key_id]))
    assert f"lacks key id(s) {ids}," in str(caught.value)
