"""Secrets at rest: AES-256-GCM under a keyring of identified keys.

Design notes: ARCHITECTURE.md, "Module notes", crypto.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import struct
from pathlib import Path
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from totpd.calls import DEFAULT_TENANT

_NONCE_BYTES = 12
_KEY_BYTES = 32
_TAG_BYTES = 16
_FORMAT_V1 = b"totpd.secret.v1"
_FORMAT_V2 = b"totpd.secret.v2"
# The stored format numbers of those layouts (the factors' `secret_format` column).
FORMAT_V1 = 1
FORMAT_V2 = 2
_LENGTHS = struct.Struct(">4H")
# The tenant slot of the v2 layout. The default tenant's secrets keep the empty
# slot they were sealed with before tenants existed (no re-seal); every other
# tenant's secrets are bound to its name (`tenant_slot`).
NO_TENANT = ""
# HKDF info of the key that fingerprints idempotent requests (their fields can
# include a one-time code, which a plain hash would let anyone enumerate).
_FINGERPRINT_INFO = b"totpd.request-fingerprint.v1"
# HKDF info of the key that hashes recovery codes (service/recovery_codes.py): its own
# key, so no recovery-code hash can ever equal a request fingerprint or vice versa.
RECOVERY_CODE_INFO = b"totpd.recovery-code.v1"


def tenant_slot(tenant: str) -> str:
    """What a secret of `tenant` is sealed to: a row moved to another tenant cannot be opened."""
    return NO_TENANT if tenant == DEFAULT_TENANT else tenant


class SecretUnavailableError(Exception):
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
        self._raw = dict(keys)
        self._derived_keys: dict[tuple[str, bytes], bytes] = {}
        self._primary = primary

    @property
    def primary_key_id(self) -> str:
        return self._primary

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._ciphers)

    def seal(
        self,
        factor_id: str,
        account_id: str,
        secret: bytes | bytearray,
        *,
        tenant_id: str = NO_TENANT,
    ) -> SealedSecret:
        """Seal a factor's secret to the factor, its account and tenant (format v2)."""
        nonce = os.urandom(_NONCE_BYTES)
        aad = _associated_data_v2(tenant_id, account_id, factor_id, self._primary)
        ciphertext = self._ciphers[self._primary].encrypt(nonce, secret, aad)
        return SealedSecret(self._primary, nonce, ciphertext)

    def open(
        self, factor_id: str, account_id: str, sealed: SealedSecret, *, tenant_id: str = NO_TENANT
    ) -> bytes:
        return self.open_parts(factor_id, account_id, *sealed, tenant_id=tenant_id)

    def open_parts(
        self,
        factor_id: str,
        account_id: str,
        key_id: str,
        nonce: bytes,
        ciphertext: bytes,
        *,
        tenant_id: str = NO_TENANT,
    ) -> bytes:
        """Open a v2 secret from its three stored parts; the only opener of the serving path."""
        aad = _associated_data_v2(tenant_id, account_id, factor_id, key_id)
        return self._decrypt(key_id, nonce, ciphertext, aad)

    def open_legacy_parts(
        self, factor_id: str, key_id: str, nonce: bytes, ciphertext: bytes
    ) -> bytes:
        """Open a v1 secret (bound to its row and key id only). For re-sealing, nothing else."""
        return self._decrypt(key_id, nonce, ciphertext, _associated_data_v1(factor_id, key_id))

    def open_to_reseal(
        self,
        secret_format: int,
        factor_id: str,
        account_id: str,
        sealed: SealedSecret,
        *,
        tenant_id: str,
    ) -> bytearray:
        """Open a stored secret of either format (the row's `secret_format`) into a new
        buffer the caller wipes (`wipe`) once it is sealed again. For re-sealing only."""
        if secret_format == FORMAT_V1:
            aad = _associated_data_v1(factor_id, sealed.key_id)
        elif secret_format == FORMAT_V2:
            aad = _associated_data_v2(tenant_id, account_id, factor_id, sealed.key_id)
        else:
            raise SecretUnavailableError("the secret is stored in an unknown format")
        cipher = self._cipher(sealed.key_id)
        plaintext = bytearray(max(0, len(sealed.ciphertext) - _TAG_BYTES))
        try:
            cipher.decrypt_into(sealed.nonce, sealed.ciphertext, aad, plaintext)
        except (InvalidTag, ValueError):
            wipe(plaintext)
            raise SecretUnavailableError("the secret failed authentication") from None
        return plaintext

    def _cipher(self, key_id: str) -> AESGCM:
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise SecretUnavailableError(
                "the secret was sealed with a key that is not in the keyring"
            )
        return cipher

    def _decrypt(self, key_id: str, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        cipher = self._cipher(key_id)
        try:
            return cipher.decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            raise SecretUnavailableError("the secret failed authentication") from None

    def fingerprint(self, key_id: str, data: bytes) -> bytes:
        """HMAC-SHA256 of `data` under a key derived (HKDF) from key `key_id`.

        Raises SecretUnavailableError when the key is not in the keyring.
        """
        return self.keyed_hash(key_id, _FINGERPRINT_INFO, data)

    def keyed_hash(self, key_id: str, purpose: bytes, data: bytes) -> bytes:
        """HMAC-SHA256 of `data` under the key HKDF derives from key `key_id` with
        `purpose` as its info: one key per purpose, never the raw key.

        Raises SecretUnavailableError when the key is not in the keyring.
        """
        key = self._derived_keys.get((key_id, purpose))
        if key is None:
            raw = self._raw.get(key_id)
            if raw is None:
                raise SecretUnavailableError("the hash key is not in the keyring")
            derive = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose)
            key = self._derived_keys.setdefault((key_id, purpose), derive.derive(raw))
        return hmac.new(key, data, hashlib.sha256).digest()

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


def wipe(buffer: bytearray) -> None:
    """Overwrite a plaintext secret's buffer with zeros."""
    buffer[:] = bytes(len(buffer))


def _associated_data_v1(row_id: str, key_id: str) -> bytes:
    return b"\x00".join((_FORMAT_V1, row_id.encode(), key_id.encode()))


def _associated_data_v2(tenant_id: str, account_id: str, factor_id: str, key_id: str) -> bytes:
    """The four parts' lengths first, then the parts: no choice of ids can make
    two different bindings collide. (Built in one expression: it runs per
    factor of every verification.)"""
    tenant, account, factor, key = (
        tenant_id.encode(),
        account_id.encode(),
        factor_id.encode(),
        key_id.encode(),
    )
    lengths = _LENGTHS.pack(len(tenant), len(account), len(factor), len(key))
    return b"".join((_FORMAT_V2, lengths, tenant, account, factor, key))


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
