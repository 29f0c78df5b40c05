"""The one TOTP oracle of the tests: every code a test submits or expects comes
from here, never from the code under test.

TOTP codes come from pyotp, an independent implementation. `hotp` computes a raw
RFC 4226 code by hand for what pyotp refuses: counters up to 2**64 - 1 (the wrap
of a skipped step) and keys shorter than its minimum (the native kernels take any).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

import pyotp

from totpd.service.types import Enrollment
from totpd.v1 import factor_pb2

_DIGESTS: dict[str, Callable[..., Any]] = {
    "SHA1": hashlib.sha1,
    "SHA256": hashlib.sha256,
    "SHA512": hashlib.sha512,
}
_WIRE_ALGORITHMS = {
    factor_pb2.ALGORITHM_SHA1: "SHA1",
    factor_pb2.ALGORITHM_SHA256: "SHA256",
    factor_pb2.ALGORITHM_SHA512: "SHA512",
}


def totp(
    secret_base32: str,
    unix_time: float,
    *,
    algorithm: str = "SHA1",
    digits: int = 6,
    period: int = 30,
) -> str:
    """The code an authenticator app shows at `unix_time` (algorithm "SHA1", ...)."""
    padded = secret_base32 + "=" * (-len(secret_base32) % 8)
    return pyotp.TOTP(padded, digits=digits, digest=_DIGESTS[algorithm], interval=period).at(
        int(unix_time)
    )


def code_at(enrollment: Enrollment, unix_time: float) -> str:
    """The code for a factor the service enrolled."""
    factor = enrollment.factor
    return totp(
        enrollment.secret_base32,
        unix_time,
        algorithm=factor.algorithm.value,
        digits=factor.digits,
        period=factor.period_seconds,
    )


def wire_code_at(
    secret_base32: str, algorithm: int, digits: int, period: int, unix_time: float
) -> str:
    """The code for a factor as the API describes it (`algorithm`: a proto enum value)."""
    return totp(
        secret_base32,
        unix_time,
        algorithm=_WIRE_ALGORITHMS[algorithm],
        digits=digits,
        period=period,
    )


def hotp(key: bytes, counter: int, digits: int, algorithm: str) -> int:
    """RFC 4226 HOTP of a raw 64-bit counter, as an integer (algorithm "SHA1", ...)."""
    digest = hmac.digest(key, counter.to_bytes(8, "big"), algorithm.lower())
    offset = digest[-1] & 15
    return (int.from_bytes(digest[offset : offset + 4], "big") & 0x7FFFFFFF) % 10**digits


def wrong_code(right: str) -> str:
    """A code of the same length that is certainly not `right`."""
    return "".join(str((int(ch) + 5) % 10) for ch in right)
