"""RFC 4226 and RFC 6238 vectors on every CPU path (design.md section 6)."""

from __future__ import annotations

from array import array

import pytest

from tests.native.conftest import SEEDS
from totpd import otp
from totpd.service.types import Algorithm

RFC6238 = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]
ALGS = (Algorithm.SHA1, Algorithm.SHA256, Algorithm.SHA512)
RFC4226 = "755224 287082 359152 969429 338314 254676 287922 162583 399871 520489".split()


def test_seed_sizes() -> None:
    for alg, seed in SEEDS.items():
        assert len(seed) == alg.secret_size


@pytest.mark.parametrize("counter", range(10))
def test_rfc4226_hotp(path: str, counter: int) -> None:
    assert (
        otp.hotp(SEEDS[Algorithm.SHA1], counter, 6, Algorithm.SHA1, path=path) == RFC4226[counter]
    )


@pytest.mark.parametrize(("unix_time", "sha1", "sha256", "sha512"), RFC6238)
def test_rfc6238_totp(path: str, unix_time: int, sha1: str, sha256: str, sha512: str) -> None:
    for alg, want in zip(ALGS, (sha1, sha256, sha512), strict=True):
        assert otp.totp(SEEDS[alg], unix_time, 30, 8, alg, path=path) == want
        assert otp.totp(SEEDS[alg], unix_time, 30, 6, alg, path=path) == want[-6:]
        assert otp.totp(SEEDS[alg], unix_time, 30, 7, alg, path=path) == want[-7:]


@pytest.mark.parametrize(("unix_time", "sha1", "sha256", "sha512"), RFC6238)
def test_rfc6238_batch(path: str, unix_time: int, sha1: str, sha256: str, sha512: str) -> None:
    table = otp.KeyTable()
    for alg in ALGS:
        table.add(SEEDS[alg], alg, 8, unix_time // 30)
    codes = [int(sha1), int(sha256), int(sha512)]
    got = otp.verify_batch(table, [0, 1, 2], codes, 1, path=path)
    assert got.typecode == "q"
    assert list(got) == [unix_time // 30] * 3
    # Rotated codes: each is another algorithm's answer, so none may match.
    got = otp.verify_batch(table, [0, 1, 2], codes[1:] + codes[:1], 1, path=path)
    assert list(got) == [-1, -1, -1]
    table.wipe()


def test_trap_short_seed_for_sha256_sha512(path: str) -> None:
    """The 20-byte seed gives other codes for SHA-256/512: only the full seeds are right."""
    short = SEEDS[Algorithm.SHA1]
    assert otp.totp(short, 59, 30, 8, Algorithm.SHA256, path=path) == "32247374"
    assert otp.totp(short, 59, 30, 8, Algorithm.SHA512, path=path) == "69342147"
    assert otp.totp(short, 59, 30, 8, Algorithm.SHA256, path=path) != "46119246"
    assert otp.totp(short, 59, 30, 8, Algorithm.SHA512, path=path) != "90693936"
    assert otp.verify(short, Algorithm.SHA256, 8, 1, 46119246, 1, path=path) is None
    assert otp.verify(short, Algorithm.SHA512, 8, 1, 90693936, 1, path=path) is None


def test_all_paths_agree_on_long_and_odd_keys() -> None:
    """Keys shorter than, equal to and longer than the block size (hashed first)."""
    material = bytes(range(256)) * 2
    for alg in ALGS:
        for size in (0, 1, 19, 20, 63, 64, 65, 127, 128, 129, 300):
            key = material[:size]
            results = {p: otp.hotp(key, 123456789, 8, alg, path=p) for p in otp.cpu_paths()}
            assert len(set(results.values())) == 1, (alg, size, results)


def test_cpu_path_reporting() -> None:
    assert otp.cpu_path() in otp.cpu_paths()
    assert "portable" in otp.cpu_paths()


def test_batch_uses_array_inputs(path: str) -> None:
    table = otp.KeyTable()
    table.add(SEEDS[Algorithm.SHA1], Algorithm.SHA1, 6, 1)
    got = otp.verify_batch(table, array("I", [0, 0]), array("I", [287082, 287083]), 1, path=path)
    assert list(got) == [1, -1]
