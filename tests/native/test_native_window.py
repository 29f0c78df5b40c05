"""Window semantics, counter edges, error codes and key wiping."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest

from tests.native.conftest import SEEDS
from tests.totp_oracle import hotp
from totpd import otp
from totpd.service.types import Algorithm

ALGS = (Algorithm.SHA1, Algorithm.SHA256, Algorithm.SHA512)


@pytest.mark.parametrize("alg", ALGS)
@pytest.mark.parametrize("digits", [6, 7, 8])
def test_window_offsets(path: str, alg: Algorithm, digits: int) -> None:
    key = SEEDS[alg]
    server = 1_000_000
    for offset in (-3, -2, -1, 0, 1, 2, 3):
        code = hotp(key, server + offset, digits, alg.value)
        got1 = otp.verify(key, alg, digits, server, code, 1, path=path)
        got0 = otp.verify(key, alg, digits, server, code, 0, path=path)
        if abs(offset) <= 1:
            assert got1 == server + offset
        else:
            assert got1 is None
        assert got0 == (server if offset == 0 else None)


def test_batch_window_mixed(path: str) -> None:
    """One batch mixing algorithms, digits and offsets; results in pair order."""
    table = otp.KeyTable()
    expected: list[int] = []
    indices: list[int] = []
    codes: list[int] = []
    for i in range(40):
        alg = ALGS[i % 3]
        digits = 6 + i % 3
        key = hashlib.sha512(i.to_bytes(2, "big")).digest()[: 16 + i % 49]
        server = 5_000_000_000 + 7 * i
        k = table.add(key, alg, digits, server)
        for offset in (-2, -1, 0, 1, 2):
            indices.append(k)
            codes.append(hotp(key, server + offset, digits, alg.value))
            expected.append(server + offset if abs(offset) <= 1 else -1)
    # More pairs than keys, out of key order.
    order = list(range(len(indices)))[::-1]
    got = otp.verify_batch(
        table, [indices[j] for j in order], [codes[j] for j in order], 1, path=path
    )
    assert list(got) == [expected[j] for j in order]
    table.wipe()


@pytest.mark.parametrize("alg", ALGS)
def test_counter_zero_edge(path: str, alg: Algorithm) -> None:
    key = SEEDS[alg]
    assert otp.verify(key, alg, 6, 0, hotp(key, 0, 6, alg.value), 1, path=path) == 0
    assert otp.verify(key, alg, 6, 0, hotp(key, 1, 6, alg.value), 1, path=path) == 1
    # The skipped step -1 would wrap to 2**64 - 1: its code must not match.
    wrapped = hotp(key, 2**64 - 1, 6, alg.value)
    if wrapped not in (hotp(key, 0, 6, alg.value), hotp(key, 1, 6, alg.value)):
        assert otp.verify(key, alg, 6, 0, wrapped, 1, path=path) is None
    assert otp.verify(key, alg, 6, 1, wrapped, 2, path=path) is None
    assert otp.verify(key, alg, 6, 1, hotp(key, 0, 6, alg.value), 1, path=path) == 0


def test_lowest_step_wins_when_several_match(path: str) -> None:
    """Find steps whose 6-digit codes collide and check the lowest one is returned."""
    alg = Algorithm.SHA1
    key = SEEDS[alg]
    codes = [hotp(key, s, 6, alg.value) for s in range(3)]
    step = 0
    while codes[0] not in (codes[1], codes[2]):
        assert step < 20_000_000
        codes = [*codes[1:], hotp(key, step + 3, 6, alg.value)]
        step += 1
    target = codes[0]
    if codes[1] == target:  # steps step and step+1 collide
        assert otp.verify(key, alg, 6, step + 1, target, 1, path=path) == step
        assert otp.verify(key, alg, 6, step, target, 1, path=path) == step
    else:  # steps step and step+2 collide: the window around step+1 holds both
        assert otp.verify(key, alg, 6, step + 1, target, 1, path=path) == step
    assert otp.verify(key, alg, 6, step + 2, target, 1, path=path) == (
        step + 1 if codes[1] == target else step + 2
    )


def test_huge_counter(path: str) -> None:
    key = SEEDS[Algorithm.SHA1]
    top = 2**63 - 2
    code = hotp(key, top + 1, 8, Algorithm.SHA1.value)
    assert otp.verify(key, Algorithm.SHA1, 8, top, code, 1, path=path) == top + 1
    with pytest.raises(otp.NativeError):
        otp.verify(key, Algorithm.SHA1, 8, top + 1, code, 1, path=path)


def test_codes_out_of_range_never_match(path: str) -> None:
    key = SEEDS[Algorithm.SHA1]
    for code in (-1, 10**6, 2**32 - 1, 2**32, 2**40):
        assert otp.verify(key, Algorithm.SHA1, 6, 7, code, 1, path=path) is None


def test_error_codes() -> None:
    table = otp.KeyTable()
    table.add(SEEDS[Algorithm.SHA1], Algorithm.SHA1, 6, 1)
    with pytest.raises(otp.NativeError, match="window") as err:
        otp.verify_batch(table, [0], [0], otp.MAX_WINDOW + 1)
    assert err.value.code < 0
    with pytest.raises(otp.NativeError):
        otp.verify_batch(table, [0], [0], -1)
    with pytest.raises(otp.NativeError, match="key index"):
        otp.verify_batch(table, [1], [0], 1)
    with pytest.raises(otp.NativeError):
        otp.verify_batch(table, [-1], [0], 1)
    with pytest.raises(ValueError, match="length"):
        otp.verify_batch(table, [0, 0], [0], 1)
    with pytest.raises(otp.NativeError, match="digits"):
        table.add(b"k" * 20, Algorithm.SHA1, 5, 1)
    with pytest.raises(otp.NativeError, match="digits"):
        table.add(b"k" * 20, Algorithm.SHA1, 9, 1)
    with pytest.raises(otp.NativeError, match="algorithm"):
        table.add(b"k" * 20, "SHA1", 6, 1)  # type: ignore[arg-type]
    with pytest.raises(otp.NativeError):
        table.add(b"k" * 20, Algorithm.SHA1, 6, -1)
    with pytest.raises(otp.NativeError, match=r"not supported|unknown"):
        otp.hotp(b"k", 0, 6, Algorithm.SHA1, path="neon")
    assert len(table) == 1


def test_c_errors_reach_python_through_the_raw_table() -> None:
    """Corrupt a table behind KeyTable's back: the C checks still catch it."""
    table = otp.KeyTable()
    table.add(SEEDS[Algorithm.SHA1], Algorithm.SHA1, 6, 1)
    table.algorithms[0] = 9
    with pytest.raises(otp.NativeError, match="algorithm"):
        otp.verify_batch(table, [0], [0], 1)
    table.algorithms[0] = 1
    table.digits[0] = 10
    with pytest.raises(otp.NativeError, match="digits"):
        otp.verify_batch(table, [0], [0], 1)
    table.digits[0] = 6
    table.offsets[1] = 99
    with pytest.raises(otp.NativeError, match="offsets"):
        otp.verify_batch(table, [0], [0], 1)


def test_wipe_zeroes_the_key_buffer() -> None:
    table = otp.KeyTable()
    table.add(b"\x11" * 20, Algorithm.SHA1, 6, 1)
    buf = table.keys
    with table:
        assert bytes(buf) == b"\x11" * 20
    assert len(table) == 0 and len(table.keys) == 0


def test_empty_batch() -> None:
    assert list(otp.verify_batch(otp.KeyTable(), [], [], 1)) == []


def test_threaded_batch_matches_single_thread(path: str) -> None:
    table = otp.KeyTable()
    n = otp.THREAD_SPLIT * 2 + 123
    indices, codes, expected = [], [], []
    for i in range(n):
        alg = ALGS[i % 3]
        key = i.to_bytes(4, "big") * 5
        k = table.add(key, alg, 6, 1000 + i)
        good = i % 2 == 0
        indices.append(k)
        code = hotp(key, 1000 + i - 1, 6, alg.value)
        codes.append(code if good else (code + 1) % 10**6)
        expected.append(1000 + i - 1 if good else -1)
    many = otp.verify_batch(table, indices, codes, 1, threads=2, path=path)
    one = otp.verify_batch(table, indices, codes, 1, threads=1, path=path)
    # A wrong code may still collide with a neighbouring step: check against one thread.
    assert list(many) == list(one)
    assert all(e == g for e, g in zip(expected, one, strict=True) if e >= 0)
    assert sum(g == -1 for g in one) >= n // 2 - 5


def test_forced_path_env(tmp_path: object) -> None:
    # The composition root's step: the cpu_path setting, read from TOTPD_CPU_PATH.
    script = (
        "from totpd import config, otp; "
        "otp.use_cpu_path(config.load_settings().cpu_path); print(otp.cpu_path())"
    )
    for name in otp.cpu_paths():
        env = dict(os.environ, TOTPD_CPU_PATH=name)
        out = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == name
    for bad in ("neon", "sse9"):
        env = dict(os.environ, TOTPD_CPU_PATH=bad)
        out = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False
        )
        assert out.returncode != 0
        assert "CpuPathError" in out.stderr and "use one of auto, portable" in out.stderr


def test_table_of_columns_equals_one_key_at_a_time() -> None:
    keys = [hashlib.sha512(bytes([i])).digest()[: 16 + i] for i in range(9)]
    algorithms = [ALGS[i % 3] for i in range(9)]
    digits = [6 + i % 3 for i in range(9)]
    counters = [1_000 + i for i in range(9)]
    one_by_one = otp.KeyTable()
    for column in zip(keys, algorithms, digits, counters, strict=True):
        one_by_one.add(*column)
    with otp.KeyTable.of(keys, algorithms, digits, counters) as table:
        for name in ("keys", "offsets", "algorithms", "digits", "counters"):
            assert getattr(table, name) == getattr(one_by_one, name), name
        columns = zip(keys, algorithms, digits, counters, strict=True)
        codes = [hotp(k, c, d, a.value) for k, a, d, c in columns]
        assert list(otp.verify_batch(table, range(9), codes, 1)) == counters


def test_table_of_columns_refuses_what_add_refuses() -> None:
    key = [b"k" * 20]
    with pytest.raises(otp.NativeError, match="digits"):
        otp.KeyTable.of(key, [Algorithm.SHA1], [9], [1])
    with pytest.raises(otp.NativeError, match="algorithm"):
        otp.KeyTable.of(key, ["SHA1"], [6], [1])  # type: ignore[list-item]
    with pytest.raises(otp.NativeError):
        otp.KeyTable.of(key, [Algorithm.SHA1], [6], [-1])
    with pytest.raises(ValueError, match="length"):
        otp.KeyTable.of(key, [Algorithm.SHA1], [6, 6], [1])
    assert len(otp.KeyTable.of([], [], [], [])) == 0
