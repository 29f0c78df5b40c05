"""One code at a time: :func:`hotp`, :func:`totp` (for enrollment, tests and tools) and
:func:`verify`, a one-key :func:`~totpd.otp.batch.verify_batch`."""

from __future__ import annotations

from typing import Any

from totpd.domain import Algorithm
from totpd.otp import _core
from totpd.otp.batch import verify_batch
from totpd.otp.keys import KeyTable
from totpd.otp.paths import path_code as _path_code


def _owned_key(key: bytes | bytearray | memoryview) -> tuple[bytearray, Any]:
    buf = bytearray(key)
    return buf, _core.ffi.from_buffer("uint8_t[]", buf)


def hotp(
    key: bytes | bytearray | memoryview,
    counter: int,
    digits: int,
    algorithm: Algorithm,
    *,
    path: str | None = None,
) -> str:
    """RFC 4226 HOTP value, zero-padded to ``digits``."""
    alg = _core.alg_code(algorithm)
    _core.check_digits(digits)
    _core.check_counter(counter)
    path_code = _path_code(path)
    lib = _core.lib
    buf, cbuf = _owned_key(key)
    out = _core.ffi.new("uint32_t *")
    try:
        _core.check(int(lib.totpd_hotp(cbuf, len(buf), alg, digits, counter, path_code, out)))
        return str(int(out[0])).zfill(digits)
    finally:
        lib.totpd_wipe(cbuf, len(buf))


def totp(
    key: bytes | bytearray | memoryview,
    unix_time: int,
    period: int,
    digits: int,
    algorithm: Algorithm,
    *,
    path: str | None = None,
) -> str:
    """RFC 6238 TOTP value at ``unix_time`` (T0 = 0), zero-padded to ``digits``."""
    if period <= 0:
        raise ValueError("period must be positive")
    if unix_time < 0:
        raise ValueError("unix_time must not be negative")
    return hotp(key, unix_time // period, digits, algorithm, path=path)


def verify(
    key: bytes | bytearray | memoryview,
    algorithm: Algorithm,
    digits: int,
    counter: int,
    code: int,
    window: int,
    *,
    path: str | None = None,
) -> int | None:
    """The matched step in ``[counter - window, counter + window]``, or None.

    A one-key :class:`KeyTable` through :func:`verify_batch`; the table's copy of the
    key is wiped before returning.
    """
    table = KeyTable()
    try:
        table.add(key, algorithm, digits, counter)
        step = verify_batch(table, [0], [code], window, threads=1, path=path)[0]
    finally:
        table.wipe()
    return None if step < 0 else step
