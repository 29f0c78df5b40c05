"""Recovery codes as values: making a set, reading a typed code, and the keyed hash
that is all the database keeps of one (README, "Recovery codes", says why a fast
keyed hash suffices for codes of this entropy)."""

from __future__ import annotations

import secrets
import struct
from typing import Final, NamedTuple

from totpd.crypto import RECOVERY_CODE_INFO, Keyring
from totpd.service.errors import ErrorReason, TotpdError

# Crockford's base32: no i, l, o or u, so nothing typed by hand is ambiguous.
ALPHABET: Final = "0123456789abcdefghjkmnpqrstvwxyz"
CODE_LENGTH: Final = 12  # 60 bits
GROUP: Final = 4
# What a hand-typed code may become on its way to the alphabet: case folded
# (ASCII only, see `normalized`), separators dropped, look-alikes mapped.
_TYPED: Final = str.maketrans({"o": "0", "i": "1", "l": "1"} | dict.fromkeys("- \t\r\n\v\f"))
# The longest input worth reading: a code with a separator or two around every character.
_TYPED_MAX: Final = 64
_HASH_FORMAT: Final = b"totpd.recovery-code.v1"
_LENGTHS: Final = struct.Struct(">3H")


class RecoveryStatus(NamedTuple):
    """An account's recovery codes left, never the codes (ListFactors, the RPCs)."""

    remaining: int
    issued: int
    generated_at: int  # Unix seconds; 0 when the account has no set


NO_CODES: Final = RecoveryStatus(0, 0, 0)


def new_codes(count: int) -> list[str]:
    """`count` distinct fresh codes from the CSPRNG, in their canonical form (12
    alphabet characters, no separators)."""
    codes: dict[str, None] = {}
    while len(codes) < count:
        codes["".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))] = None
    return list(codes)


def grouped(code: str) -> str:
    """The form shown to the user: "k7q29xmfw4c8" -> "k7q2-9xmf-w4c8"."""
    return "-".join(code[start : start + GROUP] for start in range(0, len(code), GROUP))


def normalized(typed: str) -> str:
    """The canonical form of a code as typed: any case, '-' and white space anywhere,
    o for 0 and i or l for 1. MALFORMED_CODE (never quoting it) for anything else."""
    # ASCII first: str.lower maps some non-ASCII letters (the Kelvin sign) to ASCII ones.
    if len(typed) <= _TYPED_MAX and typed.isascii():
        code = typed.lower().translate(_TYPED)
        if len(code) == CODE_LENGTH and all(char in ALPHABET for char in code):
            return code
    raise TotpdError(
        ErrorReason.MALFORMED_CODE,
        f"a recovery code has {CODE_LENGTH} letters and digits, as issued"
        f" (for example xxxx-xxxx-xxxx); separators and letter case do not matter",
        field="code",
    )


def code_hash(keyring: Keyring, key_id: str, tenant: str, account_id: str, code: str) -> bytes:
    """HMAC-SHA256 of the code bound to its account and tenant, under the recovery-code
    key derived from key `key_id`. Lengths first: no two bindings can collide."""
    parts = (tenant.encode(), account_id.encode(), code.encode())
    data = b"".join((_HASH_FORMAT, _LENGTHS.pack(*map(len, parts)), *parts))
    return keyring.keyed_hash(key_id, RECOVERY_CODE_INFO, data)
