"""Differential property test against pyotp: 10,000 examples per run, every CPU path.

Each example draws a secret of 16..64 bytes, an algorithm, 6-8 digits and a time
(up to the year 9999, i.e. past 2**32 steps at 30 s) plus a raw HOTP counter up to
2**63; it checks ``totp``/``hotp``, ``verify`` and one ``verify_batch`` on every path
against pyotp.
"""

from __future__ import annotations

import base64
import hashlib

import pyotp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.native.conftest import PATHS
from totpd import otp
from totpd.service.types import Algorithm

DIGESTS = {
    Algorithm.SHA1: hashlib.sha1,
    Algorithm.SHA256: hashlib.sha256,
    Algorithm.SHA512: hashlib.sha512,
}
YEAR_9999 = 253402300799  # pyotp's limit; 2**32 steps of 30 s end at 128849018880


@settings(
    max_examples=10_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=False,
)
@given(
    secret=st.binary(min_size=16, max_size=64),
    alg=st.sampled_from(list(Algorithm)),
    digits=st.integers(6, 8),
    unix_time=st.one_of(st.integers(0, YEAR_9999), st.integers(2**32 * 30, YEAR_9999)),
    period=st.sampled_from([15, 30, 60, 120]),
    counter=st.integers(0, 2**63 - 2),
    offset=st.integers(-2, 2),
)
def test_against_pyotp(
    secret: bytes,
    alg: Algorithm,
    digits: int,
    unix_time: int,
    period: int,
    counter: int,
    offset: int,
) -> None:
    b32 = base64.b32encode(secret).decode()
    ref_totp = pyotp.TOTP(b32, digits=digits, digest=DIGESTS[alg], interval=period)
    ref_hotp = pyotp.HOTP(b32, digits=digits, digest=DIGESTS[alg])
    want_t = ref_totp.at(unix_time)
    step = unix_time // period
    assert ref_totp.timecode(unix_time) == step
    want_h = ref_hotp.at(counter)
    # The code the client shows at step + offset, the server sits at `step`.
    client = int(ref_totp.at(unix_time, counter_offset=offset)) if step + offset >= 0 else None

    table = otp.KeyTable()
    table.add(secret, alg, digits, step)
    table.add(secret, alg, digits, counter)
    pairs_codes = [int(want_t), int(want_h), client if client is not None else 0]
    for path in PATHS:
        assert otp.totp(secret, unix_time, period, digits, alg, path=path) == want_t
        assert otp.hotp(secret, counter, digits, alg, path=path) == want_h
        got = otp.verify_batch(table, [0, 1, 0], pairs_codes, 1, threads=1, path=path)
        assert got[0] <= step and got[0] >= step - 1  # lowest match (a rare collision lower)
        assert got[1] in (counter - 1, counter) if counter > 0 else got[1] == counter
        if client is not None and abs(offset) <= 1:
            assert step - 1 <= got[2] <= step + offset
        elif client is not None:
            # Outside the window: a match is only possible by a 10**-digits collision.
            assert got[2] == -1 or got[2] != step + offset
    table.wipe()
