"""Typed face of the C TOTP core: :class:`KeyTable` and :func:`verify_batch` for the
service, :func:`verify`, :func:`hotp` and :func:`totp` for one code, and the CPU path.

``_core`` is the only module that imports the compiled ``totpd._native``; see
ARCHITECTURE.md ("otp/") for the package's modules and its test seam.
"""

from totpd.otp._core import MAX_DIGITS, MAX_WINDOW, MIN_DIGITS, NativeError
from totpd.otp.batch import THREAD_SPLIT, verify_batch
from totpd.otp.keys import KeyTable
from totpd.otp.paths import CpuPathError, cpu_path, cpu_paths, use_cpu_path
from totpd.otp.single import hotp, totp, verify

__all__ = [
    "MAX_DIGITS",
    "MAX_WINDOW",
    "MIN_DIGITS",
    "THREAD_SPLIT",
    "CpuPathError",
    "KeyTable",
    "NativeError",
    "cpu_path",
    "cpu_paths",
    "hotp",
    "totp",
    "use_cpu_path",
    "verify",
    "verify_batch",
]
