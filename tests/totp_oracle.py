"""Codes computed by pyotp, the independent oracle for everything we verify."""

from __future__ import annotations

import hashlib

import pyotp

from totpd.service.types import Enrollment

_DIGESTS = {"SHA1": hashlib.sha1, "SHA256": hashlib.sha256, "SHA512": hashlib.sha512}


def code_at(enrollment: Enrollment, unix_time: float) -> str:
    factor = enrollment.factor
    return pyotp.TOTP(
        enrollment.secret_base32 + "=" * (-len(enrollment.secret_base32) % 8),
        digits=factor.digits,
        digest=_DIGESTS[factor.algorithm.value],
        interval=factor.period_seconds,
    ).at(int(unix_time))


def wrong_code(right: str) -> str:
    """A code of the same length that is certainly not `right`."""
    return "".join(str((int(ch) + 5) % 10) for ch in right)
