"""Multi-lane kernels against a plain ``hmac`` reference, on every CPU path.

The 8- and 16-lane kernels group pairs by algorithm into lanes, so one batch mixes
algorithms, digits, key lengths (empty, one block, longer than a block: hashed
first), counters near zero (negative steps masked) and near 2**32 (carry into the
high counter word), partial last groups and repeated keys, for every window.
"""

from __future__ import annotations

import random
from array import array

import pytest

from tests.native.conftest import PATHS
from tests.totp_oracle import hotp
from totpd import otp
from totpd.service.types import Algorithm


def ref_verify(key: bytes, counter: int, digits: int, alg: Algorithm, code: int, w: int) -> int:
    for step in range(max(0, counter - w), counter + w + 1):
        if hotp(key, step, digits, alg.value) == code:
            return step
    return -1


Row = tuple[bytes, Algorithm, int, int]


def make_batch(
    seed: int, n_keys: int, only: Algorithm | None = None
) -> tuple[list[Row], random.Random]:
    rng = random.Random(seed)
    rows: list[Row] = []
    for _ in range(n_keys):
        alg = only or rng.choice(list(Algorithm))
        klen = rng.choice([0, 1, 20, 32, 63, 64, 65, 100, 127, 128, 129, 200])
        counter = rng.choice(
            [0, 1, 2, 7, 8, rng.randrange(2**32 - 9, 2**32 + 9), rng.randrange(2**63 - 9)]
        )
        rows.append((rng.randbytes(klen), alg, rng.randint(6, 8), counter))
    return rows, rng


def check_batch(rows: list[Row], rng: random.Random, n_pairs: int, window: int) -> None:
    n_keys = len(rows)
    table = otp.KeyTable()
    for key, alg, digits, counter in rows:
        table.add(key, alg, digits, counter)
    idx: list[int] = []
    codes: list[int] = []
    want: list[int] = []
    for _ in range(n_pairs):
        k = rng.randrange(n_keys)
        key, alg, digits, counter = rows[k]
        kind = rng.random()
        if kind < 0.6:
            step = counter + rng.randint(-window - 1, window + 1)
            code = hotp(key, max(0, step), digits, alg.value)
        else:
            code = rng.randrange(10**digits)
        idx.append(k)
        codes.append(code)
        want.append(ref_verify(key, counter, digits, alg, code, window))
    for path in PATHS:
        got = otp.verify_batch(table, array("I", idx), array("I", codes), window, path=path)
        assert list(got) == want, path
    table.wipe()


@pytest.mark.parametrize("window", [0, 1, 2, 3, 8])
@pytest.mark.parametrize("n_keys", [1, 15, 17, 70])
def test_lanes_match_reference(window: int, n_keys: int) -> None:
    rows, rng = make_batch(window * 1000 + n_keys, n_keys)
    check_batch(rows, rng, 3 * n_keys + 5, window)


@pytest.mark.parametrize("window", [0, 1, 3])
@pytest.mark.parametrize(
    ("alg", "n"),
    [(Algorithm.SHA1, n) for n in (1, 4, 5, 6, 9, 15, 16, 21, 32, 37)]
    + [(Algorithm.SHA512, n) for n in (1, 2, 3, 7, 8, 9, 17)],
)
def test_partial_lane_groups(alg: Algorithm, n: int, window: int) -> None:
    """Every fill level of the last 16-lane (8-lane) group, keys and pairs alike."""
    rows, rng = make_batch(n * 7 + window, n, only=alg)
    check_batch(rows, rng, n, window)
