"""Differential property tests against pyotp, every CPU path.

``test_against_pyotp`` (10,000 examples per run) draws a secret of 16..64 bytes, an
algorithm, 6-8 digits and a time (up to the year 9999, i.e. past 2**32 steps at
30 s) plus a raw HOTP counter up to 2**63; it checks ``totp``/``hotp``, ``verify``
and one ``verify_batch`` on every path against pyotp.

``test_lane_batches_against_pyotp`` draws whole batches of 16..48 pairs, mostly
SHA-1 (so the 8- and 16-lane kernels run, full and partial groups) with keys of
0..200 bytes (empty, one block, longer than a block: hashed first).
"""

from __future__ import annotations

import base64
import hashlib

import pyotp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import DrawFn

from tests.native.conftest import PATHS
from totpd import otp
from totpd.service.types import Algorithm

DIGESTS = {
    Algorithm.SHA1: hashlib.sha1,
    Algorithm.SHA256: hashlib.sha256,
    Algorithm.SHA512: hashlib.sha512,
}
YEAR_9999 = 253402300799  # pyotp's limit; 2**32 steps of 30 s end at 128849018880


@pytest.mark.slow  # 10,000 examples; the fast run checks pyotp codes through the service tests
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


class AnyKeyHOTP(pyotp.HOTP):
    """pyotp's HOTP without its minimum key length: the core takes any key."""

    min_secret_length_bits = 0


LaneRow = tuple[bytes, Algorithm, int, int]


@st.composite
def lane_batches(draw: DrawFn) -> tuple[list[LaneRow], list[tuple[int, int | None]]]:
    """Keys (mostly SHA-1, 0..200 bytes) and pairs: (key index, step offset or None)."""
    n_keys = draw(st.integers(1, 24))
    rows: list[LaneRow] = []
    for _ in range(n_keys):
        alg = draw(st.sampled_from([Algorithm.SHA1] * 4 + [Algorithm.SHA256, Algorithm.SHA512]))
        size = draw(
            st.one_of(
                st.sampled_from([0, 1, 20, 63, 64, 65, 127, 128, 129, 200]), st.integers(0, 200)
            )
        )
        key = draw(st.binary(min_size=size, max_size=size))
        counter = draw(
            st.one_of(st.integers(0, 3), st.integers(0, 2**40), st.integers(2**32 - 2, 2**32 + 2))
        )
        rows.append((key, alg, draw(st.integers(6, 8)), counter))
    n_pairs = draw(st.integers(16, 48))
    pairs = [
        (draw(st.integers(0, n_keys - 1)), draw(st.one_of(st.none(), st.integers(-2, 2))))
        for _ in range(n_pairs)
    ]
    return rows, pairs


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(batch=lane_batches(), window=st.integers(0, 2))
@pytest.mark.slow  # 300 drawn batches
def test_lane_batches_against_pyotp(
    batch: tuple[list[LaneRow], list[tuple[int, int | None]]], window: int
) -> None:
    rows, pairs = batch
    refs = [
        AnyKeyHOTP(base64.b32encode(key).decode(), digits=digits, digest=DIGESTS[alg])
        for key, alg, digits, _ in rows
    ]
    idx: list[int] = []
    codes: list[int] = []
    want: list[int] = []
    for k, offset in pairs:
        ref, counter = refs[k], rows[k][3]
        if offset is None or counter + offset < 0:
            code = (counter * 7919 + k) % 10 ** rows[k][2]  # arbitrary, mostly no match
        else:
            code = int(ref.at(counter + offset))
        steps = range(max(0, counter - window), counter + window + 1)
        idx.append(k)
        codes.append(code)
        want.append(next((s for s in steps if int(ref.at(s)) == code), -1))
    with otp.KeyTable.of(
        [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows]
    ) as table:
        for path in PATHS:
            got = otp.verify_batch(table, idx, codes, window, threads=1, path=path)
            assert list(got) == want, path
