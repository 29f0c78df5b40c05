"""Recovery codes as values: the alphabet and grouping, what a hand-typed code may
look like, and the keyed hash's bindings and its separation from other keyed uses."""

from __future__ import annotations

import pytest

from totpd.crypto import RECOVERY_CODE_INFO, Keyring
from totpd.service.errors import ErrorReason, TotpdError
from totpd.service.recovery_codes import (
    ALPHABET,
    code_hash,
    grouped,
    new_codes,
    normalized,
)


@pytest.fixture
def keyring() -> Keyring:
    return Keyring({"a": b"\x07" * 32, "b": b"\x08" * 32}, "a")


def test_the_alphabet_is_crockfords_and_a_code_carries_sixty_bits() -> None:
    assert ALPHABET == "0123456789abcdefghjkmnpqrstvwxyz"
    assert len(set(ALPHABET)) == 32 and not set(ALPHABET) & set("ilou")
    codes = new_codes(50)
    assert len(set(codes)) == 50
    assert all(len(code) == 12 and set(code) <= set(ALPHABET) for code in codes)
    # Every character of the alphabet turns up in enough draws (the CSPRNG spans it).
    assert set("".join(new_codes(50))) | set("".join(codes)) == set(ALPHABET)


def test_grouped_and_normalized_round_trip() -> None:
    assert grouped("k7q29xmfw4c8") == "k7q2-9xmf-w4c8"
    for typed in ("k7q2-9xmf-w4c8", "K7Q2-9XMF-W4C8", "k7q29xmfw4c8", " k7q2 9xmf\tw4c8\n"):
        assert normalized(typed) == "k7q29xmfw4c8"
    assert normalized("OoIi-Ll01-0000") == "001111010000"


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "k7q2-9xmf-w4c",
        "k7q2-9xmf-w4c8a",
        "k7q2-9xmf-w4cu",
        "k7q2+9xmf+w4c8",
        "k7q2-9xmf-w4c\u212a",
    ],
)
def test_malformed_codes_name_the_rule_not_the_code(typed: str) -> None:
    with pytest.raises(TotpdError) as caught:
        normalized(typed)
    assert caught.value.reason is ErrorReason.MALFORMED_CODE
    assert caught.value.field == "code"
    assert "k7q2" not in caught.value.message


def test_the_hash_binds_tenant_account_code_and_key(keyring: Keyring) -> None:
    base = code_hash(keyring, "a", "shop", "alice", "k7q29xmfw4c8")
    assert len(base) == 32
    assert base == code_hash(keyring, "a", "shop", "alice", "k7q29xmfw4c8")
    others = {
        code_hash(keyring, "b", "shop", "alice", "k7q29xmfw4c8"),
        code_hash(keyring, "a", "bank", "alice", "k7q29xmfw4c8"),
        code_hash(keyring, "a", "shop", "bob", "k7q29xmfw4c8"),
        code_hash(keyring, "a", "shop", "alice", "k7q29xmfw4c9"),
        # Length-prefixed: moving characters between the parts changes the hash.
        code_hash(keyring, "a", "shopa", "lice", "k7q29xmfw4c8"),
    }
    assert base not in others and len(others) == 5


def test_recovery_hashes_use_their_own_derived_key(keyring: Keyring) -> None:
    data = b"the same bytes"
    assert keyring.keyed_hash("a", RECOVERY_CODE_INFO, data) != keyring.fingerprint("a", data)
