"""Shared workload builders for the core micro-benchmarks.

A workload is ``batch`` distinct random keys of the algorithm's secret size, one pair
per key, window 1, with either the valid code of the current step (``valid``) or a
code that is wrong for all three candidate steps (``invalid``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
from array import array
from dataclasses import dataclass

import pyotp

from totpd import otp
from totpd.service.types import Algorithm

DIGESTS = {
    Algorithm.SHA1: hashlib.sha1,
    Algorithm.SHA256: hashlib.sha256,
    Algorithm.SHA512: hashlib.sha512,
}
PERIOD = 30
NOW = 1_700_000_000
STEP = NOW // PERIOD
DIGITS = 6


def ref_code(key: bytes, step: int, alg: Algorithm) -> int:
    digest = hmac.digest(key, step.to_bytes(8, "big"), alg.value.lower())
    off = digest[-1] & 15
    return (int.from_bytes(digest[off : off + 4], "big") & 0x7FFFFFFF) % 10**DIGITS


@dataclass
class Workload:
    alg: Algorithm
    keys: list[bytes]
    codes: list[int]
    table: otp.KeyTable
    indices: array[int]
    code_array: array[int]


def make_workload(alg: Algorithm, batch: int, valid: bool, seed: int = 1) -> Workload:
    rng = random.Random(seed)
    keys = [rng.randbytes(alg.secret_size) for _ in range(batch)]
    codes = []
    for key in keys:
        good = ref_code(key, STEP, alg)
        if valid:
            codes.append(good)
        else:
            near = {ref_code(key, STEP + d, alg) for d in (-1, 0, 1)}
            bad = (good + 1) % 10**DIGITS
            while bad in near:
                bad = (bad + 1) % 10**DIGITS
            codes.append(bad)
    table = otp.KeyTable()
    for key in keys:
        table.add(key, alg, DIGITS, STEP)
    return Workload(alg, keys, codes, table, array("I", range(batch)), array("I", codes))


def run_core(w: Workload, path: str) -> array[int]:
    return otp.verify_batch(w.table, w.indices, w.code_array, 1, threads=1, path=path)


def make_pyotp(w: Workload) -> list[pyotp.TOTP]:
    return [
        pyotp.TOTP(base64.b32encode(k).decode(), digits=DIGITS, digest=DIGESTS[w.alg])
        for k in w.keys
    ]


def run_pyotp(totps: list[pyotp.TOTP], codes: list[int]) -> int:
    ok = 0
    for t, c in zip(totps, codes, strict=True):
        ok += t.verify(str(c).zfill(DIGITS), for_time=NOW, valid_window=1)
    return ok


def run_hmac_loop(w: Workload) -> int:
    """Plain Python: hmac.digest per candidate step, compare_digest, no early exit."""
    name = w.alg.value.lower()
    ok = 0
    for key, code in zip(w.keys, w.codes, strict=True):
        want = str(code).zfill(DIGITS).encode()
        hit = False
        for step in (STEP - 1, STEP, STEP + 1):
            d = hmac.digest(key, step.to_bytes(8, "big"), name)
            off = d[-1] & 15
            v = (int.from_bytes(d[off : off + 4], "big") & 0x7FFFFFFF) % 10**DIGITS
            hit |= hmac.compare_digest(str(v).zfill(DIGITS).encode(), want)
        ok += hit
    return ok
