"""Enroll -> ConfirmEnrollment -> Verify through the installed totpd-client wheel.

    python flow.py HOST:PORT

Run by release/check.py from a fresh virtualenv that has only the released wheels (and
their dependencies): nothing from the repository is importable. The codes come from the
standard library (RFC 6238 with HMAC-SHA1), not from the client or the server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import sys
import time
import uuid

import totpd_client
from totpd_client import Algorithm, TotpdClient, VerifyResult


def totp(secret_base32: str, at: float, digits: int, period: int) -> str:
    key = base64.b32decode(secret_base32 + "=" * (-len(secret_base32) % 8))
    mac = hmac.new(key, struct.pack(">Q", int(at) // period), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    number = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(number % 10**digits).zfill(digits)


def main(target: str) -> None:
    account = f"release-check-py-{uuid.uuid4()}"
    with TotpdClient(target, insecure=True) as client:
        e = client.enroll(account, "release check")
        f = e.factor
        assert f.algorithm is Algorithm.SHA1, f.algorithm
        now = time.time()
        code = totp(e.secret_base32, now, f.digits, f.period_seconds)
        confirmed = client.confirm(account, f.factor_id, code)
        assert confirmed.outcome.result is VerifyResult.VALID, confirmed.outcome
        again = client.verify(account, code)
        assert again.result is VerifyResult.REPLAYED, again
        following = totp(e.secret_base32, now + f.period_seconds, f.digits, f.period_seconds)
        outcome = client.verify(account, following)
        assert outcome.result is VerifyResult.VALID, outcome
    print(
        f"python: totpd_client from {totpd_client.__file__}: enroll -> confirm VALID -> "
        "verify same code REPLAYED -> verify next code VALID"
    )


if __name__ == "__main__":
    main(sys.argv[1])
