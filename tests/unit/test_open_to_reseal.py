"""Keyring.open_to_reseal: either stored format, into a buffer the re-sealer wipes."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from totpd.crypto import FORMAT_V1, FORMAT_V2, Keyring, SealedSecret, SecretUnavailableError, wipe

KEY = os.urandom(32)
SECRET = b"\x07" * 20


@pytest.fixture
def keyring() -> Keyring:
    return Keyring({"old": KEY, "new": os.urandom(32)}, "new")


def legacy(factor_id: str) -> SealedSecret:
    """A format-1 secret under key "old": bound to the row and key id only."""
    nonce = os.urandom(12)
    aad = b"\x00".join((b"totpd.secret.v1", factor_id.encode(), b"old"))
    return SealedSecret("old", nonce, AESGCM(KEY).encrypt(nonce, SECRET, aad))


def test_opens_both_formats_into_a_bytearray(keyring: Keyring) -> None:
    v1 = keyring.open_to_reseal(FORMAT_V1, "f1", "alice", legacy("f1"), tenant_id="")
    sealed = keyring.seal("f2", "alice", SECRET, tenant_id="shop")
    v2 = keyring.open_to_reseal(FORMAT_V2, "f2", "alice", sealed, tenant_id="shop")
    assert isinstance(v1, bytearray) and isinstance(v2, bytearray)
    assert bytes(v1) == bytes(v2) == SECRET
    wipe(v1)
    assert v1 == bytearray(len(SECRET))


@pytest.mark.parametrize(
    ("secret_format", "factor_id", "account", "tenant"),
    [
        (FORMAT_V1, "f2", "alice", "shop"),  # a v2 ciphertext never opens as v1
        (FORMAT_V2, "f2", "alice", ""),  # another tenant
        (FORMAT_V2, "f2", "mallory", "shop"),  # another account
        (FORMAT_V2, "f3", "alice", "shop"),  # another row
        (3, "f2", "alice", "shop"),  # a format this release does not know
    ],
)
def test_a_wrong_binding_or_format_fails_closed(
    keyring: Keyring, secret_format: int, factor_id: str, account: str, tenant: str
) -> None:
    sealed = keyring.seal("f2", "alice", SECRET, tenant_id="shop")
    with pytest.raises(SecretUnavailableError):
        keyring.open_to_reseal(secret_format, factor_id, account, sealed, tenant_id=tenant)


def test_a_key_not_in_the_keyring_fails_closed() -> None:
    only_new = Keyring({"new": os.urandom(32)}, "new")
    with pytest.raises(SecretUnavailableError, match="not in the keyring"):
        only_new.open_to_reseal(FORMAT_V1, "f1", "alice", legacy("f1"), tenant_id="")
