from __future__ import annotations

import base64
import hashlib
import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from totpd.crypto import Keyring, KeyringError, SecretUnavailableError, write_new_keyring


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    path = tmp_path / "k.json"
    write_new_keyring(path)
    return Keyring.load(path)


def test_round_trip_with_fresh_nonces(keyring: Keyring) -> None:
    secret = b"\x01" * 20
    first, second = keyring.seal("row-1", "acct", secret), keyring.seal("row-1", "acct", secret)
    assert first.nonce != second.nonce and len(first.nonce) == 12
    assert secret not in first.ciphertext
    assert keyring.open("row-1", "acct", first) == keyring.open("row-1", "acct", second) == secret


def test_ciphertext_moved_to_another_row_fails(keyring: Keyring) -> None:
    sealed = keyring.seal("row-1", "acct", b"secret-bytes-123456")
    with pytest.raises(SecretUnavailableError):
        keyring.open("row-2", "acct", sealed)


def test_ciphertext_moved_to_another_account_fails(keyring: Keyring) -> None:
    sealed = keyring.seal("row-1", "alice", b"secret-bytes-123456")
    with pytest.raises(SecretUnavailableError):
        keyring.open("row-1", "mallory", sealed)


def test_ciphertext_of_another_tenant_fails(keyring: Keyring) -> None:
    sealed = keyring.seal("row-1", "alice", b"secret-bytes-123456", tenant_id="t1")
    assert keyring.open("row-1", "alice", sealed, tenant_id="t1") == b"secret-bytes-123456"
    with pytest.raises(SecretUnavailableError):
        keyring.open("row-1", "alice", sealed)


def test_ids_cannot_shift_between_the_bound_parts(keyring: Keyring) -> None:
    sealed = keyring.seal("b-row", "a", b"s" * 20, tenant_id="t")
    with pytest.raises(SecretUnavailableError):
        keyring.open("row", "a-b", sealed, tenant_id="t")
    with pytest.raises(SecretUnavailableError):
        keyring.open("b-row", "", sealed, tenant_id="ta")


def test_a_v2_ciphertext_never_opens_with_the_legacy_layout(keyring: Keyring) -> None:
    sealed = keyring.seal("row-1", "alice", b"s" * 20)
    with pytest.raises(SecretUnavailableError):
        keyring.open_legacy_parts("row-1", *sealed)


def test_a_legacy_ciphertext_opens_only_with_the_legacy_opener() -> None:
    key = b"\x05" * 32
    ring = Keyring({"k1": key}, "k1")
    nonce = b"\x00" * 12
    legacy = AESGCM(key).encrypt(nonce, b"s" * 20, b"totpd.secret.v1\x00row-1\x00k1")
    assert ring.open_legacy_parts("row-1", "k1", nonce, legacy) == b"s" * 20
    with pytest.raises(SecretUnavailableError):
        ring.open_parts("row-1", "alice", "k1", nonce, legacy)


def test_fingerprints_are_keyed_and_stable(keyring: Keyring, tmp_path: Path) -> None:
    data = b'["Disable", "alice", "123456"]'
    key_id = keyring.primary_key_id
    assert keyring.fingerprint(key_id, data) == keyring.fingerprint(key_id, data)
    assert keyring.fingerprint(key_id, data) != keyring.fingerprint(key_id, data + b" ")
    assert keyring.fingerprint(key_id, data) != hashlib.sha256(data).digest()
    other_path = tmp_path / "other.json"
    write_new_keyring(other_path)
    other = Keyring.load(other_path)
    assert other.fingerprint(other.primary_key_id, data) != keyring.fingerprint(key_id, data)
    with pytest.raises(SecretUnavailableError):
        keyring.fingerprint("no-such-key", data)


def test_relabelled_key_id_fails(tmp_path: Path) -> None:
    raw = base64.b64encode(b"\x07" * 32).decode()
    ring = Keyring({"a": base64.b64decode(raw), "b": base64.b64decode(raw)}, "a")
    sealed = ring.seal("row", "acct", b"s" * 20)
    with pytest.raises(SecretUnavailableError):
        ring.open("row", "acct", sealed._replace(key_id="b"))


def test_missing_or_wrong_key_fails_closed(keyring: Keyring, tmp_path: Path) -> None:
    sealed = keyring.seal("row", "acct", b"s" * 20)
    other_path = tmp_path / "other.json"
    write_new_keyring(other_path)
    other = Keyring.load(other_path)
    with pytest.raises(SecretUnavailableError):
        other.open("row", "acct", sealed)
    same_id = Keyring({sealed.key_id: b"\x00" * 32}, sealed.key_id)
    with pytest.raises(SecretUnavailableError):
        same_id.open("row", "acct", sealed)


def test_rotation_keeps_old_secrets_readable(tmp_path: Path) -> None:
    old, new = b"\x01" * 32, b"\x02" * 32
    sealed = Keyring({"old": old}, "old").seal("row", "acct", b"x" * 20)
    rotated = Keyring({"old": old, "new": new}, "new")
    assert rotated.open("row", "acct", sealed) == b"x" * 20
    assert rotated.seal("row", "acct", b"y" * 20).key_id == "new"


def test_keyring_file_is_private_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    key_id = write_new_keyring(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["primary"] == key_id
    with pytest.raises(FileExistsError):
        write_new_keyring(path)


@pytest.mark.parametrize(
    "content",
    [
        "",
        "{}",
        '{"primary": "a", "keys": {"a": "not base64!"}}',
        '{"primary": "b", "keys": {"a": "AAAA"}}',
    ],
)
def test_malformed_keyring_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "k.json"
    path.write_text(content)
    with pytest.raises(KeyringError):
        Keyring.load(path)


def test_missing_keyring_file(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="totpd keygen"):
        Keyring.load(tmp_path / "absent.json")
