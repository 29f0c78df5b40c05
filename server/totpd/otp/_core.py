"""The one importer of the compiled C core (``totpd._native``): its handles, the limits
it defines, :class:`NativeError` and the argument checks every entry point shares.

The seam: the other modules of ``totpd.otp`` reach C as ``_core.lib.x`` / ``_core.ffi.x``,
read at call time and never bound by ``from ... import lib``, so a test may replace
``_core.lib`` to make the core fail or stall (tests/native/test_native_hygiene.py).
"""

from __future__ import annotations

from typing import Final

from totpd._native import ffi, lib
from totpd.domain import Algorithm

__all__ = [
    "ALG_CODES",
    "I64_MAX",
    "MAX_DIGITS",
    "MAX_WINDOW",
    "MIN_DIGITS",
    "PAD_SLOT_WORDS",
    "U32_MAX",
    "NativeError",
    "alg_code",
    "check",
    "check_counter",
    "check_digits",
    "check_window",
    "ffi",
    "lib",
]

MAX_WINDOW: Final[int] = int(lib.TOTPD_MAX_WINDOW)
MIN_DIGITS: Final[int] = int(lib.TOTPD_MIN_DIGITS)
MAX_DIGITS: Final[int] = int(lib.TOTPD_MAX_DIGITS)
PAD_SLOT_WORDS: Final[int] = int(lib.TOTPD_PAD_SLOT_WORDS)
U32_MAX: Final[int] = 0xFFFFFFFF
I64_MAX: Final[int] = 0x7FFFFFFFFFFFFFFF

ALG_CODES: Final[dict[Algorithm, int]] = {
    Algorithm.SHA1: int(lib.TOTPD_ALG_SHA1),
    Algorithm.SHA256: int(lib.TOTPD_ALG_SHA256),
    Algorithm.SHA512: int(lib.TOTPD_ALG_SHA512),
}


class NativeError(Exception):
    """An error code from the C core (or input the core would reject).

    ``code`` is the C error code (a negative ``TOTPD_ERR_*`` value); the message is the
    core's own (``totpd_strerror``).
    """

    def __init__(self, code: int, detail: str | None = None) -> None:
        self.code = code
        message = ffi.string(lib.totpd_strerror(code)).decode()
        super().__init__(f"{message}: {detail}" if detail else message)


def check(rc: int, detail: str | None = None) -> None:
    """The one error helper: raise NativeError for a negative C return code."""
    if rc != 0:
        raise NativeError(rc, detail)


def alg_code(algorithm: Algorithm) -> int:
    try:
        return ALG_CODES[algorithm]
    except (KeyError, TypeError):
        raise NativeError(int(lib.TOTPD_ERR_ALGORITHM), repr(algorithm)) from None


def check_digits(digits: int) -> None:
    if not MIN_DIGITS <= digits <= MAX_DIGITS:
        raise NativeError(int(lib.TOTPD_ERR_DIGITS), str(digits))


def check_window(window: int) -> None:
    if not 0 <= window <= MAX_WINDOW:
        raise NativeError(int(lib.TOTPD_ERR_WINDOW), str(window))


def check_counter(counter: int) -> None:
    if not 0 <= counter <= I64_MAX:
        raise NativeError(int(lib.TOTPD_ERR_COUNTER), "counter must be in [0, 2**63)")
