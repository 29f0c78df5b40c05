"""Secrets at rest: AES-256-GCM under a keyring of identified keys.

Every encryption uses a fresh 96-bit nonce from the OS and binds the row it
belongs to and the key id as associated data, so a ciphertext copied to another
row, or relabelled with another key id, fails to decrypt. A missing or wrong key
fails closed with `SecretUnavailable`.

Keyring file format (JSON, mode 0600):
    {"primary": "<key id>", "keys": {"<key id>": "<base64 of 32 bytes>", ...}}
New secrets are sealed with the primary key; older keys stay to open old rows
(rotation: add a key, make it primary, re-seal at leisure).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from pathlib import Path
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_NONCE_BYTES = 12
_KEY_BYTES = 32
_FORMAT = b"totpd.secret.v1"


class SecretUnavailable(Exception):
    """A stored secret cannot be opened: unknown key id or failed authentication."""


class KeyringError(Exception):
    """The keyring file is missing or malformed."""


class SealedSecret(NamedTuple):
    key_id: str
    nonce: bytes
    ciphertext: bytes


class Keyring:
    def __init__(self, keys: dict[str, bytes], primary: str) -> None:
        if primary not in keys:
            raise KeyringError("the primary key id is not in the keyring")
        for key in keys.values():
            if len(key) != _KEY_BYTES:
                raise KeyringError("every key must be 32 bytes (AES-256)")
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self._primary = primary

    @property
    def primary_key_id(self) -> str:
        return self._primary

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._ciphers)

    def seal(self, row_id: str, secret: bytes) -> SealedSecret:
        nonce = os.urandom(_NONCE_BYTES)
        aad = _associated_data(row_id, self._primary)
        ciphertext = self._ciphers[self._primary].encrypt(nonce, secret, aad)
        return SealedSecret(self._primary, nonce, ciphertext)

    def open(self, row_id: str, sealed: SealedSecret) -> bytes:
        return self.open_parts(row_id, *sealed)

    def open_parts(self, row_id: str, key_id: str, nonce: bytes, ciphertext: bytes) -> bytes:
        """`open` with the sealed secret's three parts as they come from a row."""
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise SecretUnavailable("the secret was sealed with a key that is not in the keyring")
        try:
            return cipher.decrypt(nonce, ciphertext, _associated_data(row_id, key_id))
        except InvalidTag:
            raise SecretUnavailable("the secret failed authentication") from None

    @classmethod
    def load(cls, path: Path) -> Keyring:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            keys = {
                str(key_id): base64.b64decode(value, validate=True)
                for key_id, value in document["keys"].items()
            }
            primary = str(document["primary"])
        except FileNotFoundError:
            raise KeyringError(f"no keyring at {path}; create one with `totpd keygen`") from None
        except (ValueError, KeyError, TypeError, AttributeError):
            raise KeyringError(f"the keyring at {path} is malformed") from None
        return cls(keys, primary)


def _associated_data(row_id: str, key_id: str) -> bytes:
    return b"\x00".join((_FORMAT, row_id.encode(), key_id.encode()))


def write_new_keyring(path: Path) -> str:
    """Create a keyring file with one fresh key; refuse to overwrite. Returns the key id."""
    key_id = "k" + secrets.token_hex(4)
    document = {
        "primary": key_id,
        "keys": {key_id: base64.b64encode(secrets.token_bytes(_KEY_BYTES)).decode()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")
    return key_id
