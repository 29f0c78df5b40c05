"""The CPU path (portable C, SHA-NI, AVX2, AVX-512): which one dispatch chose, which ones
this CPU supports, and the composition root's explicit choice (:func:`use_cpu_path`)."""

from __future__ import annotations

from typing import Final

from totpd.otp import _core
from totpd.otp._core import NativeError

_PATHS: Final[dict[str, int]] = {
    "auto": int(_core.lib.TOTPD_PATH_AUTO),
    "portable": int(_core.lib.TOTPD_PATH_PORTABLE),
    "shani": int(_core.lib.TOTPD_PATH_SHANI),
    "avx2": int(_core.lib.TOTPD_PATH_AVX2),
    "avx512": int(_core.lib.TOTPD_PATH_AVX512),
    "avx512x16": int(_core.lib.TOTPD_PATH_AVX512X16),
}
_PATH_NAMES: Final[dict[int, str]] = {v: k for k, v in _PATHS.items()}
_DEFAULT: Final[int] = -1


class CpuPathError(NativeError, ValueError):
    """The ``cpu_path`` setting names an unknown path, or one this CPU lacks.

    A ValueError too: a configuration error, which `totpd serve` reports in one line.
    """


def path_code(path: str | None) -> int:
    """The C code of a forced path (None: the process default)."""
    if path is None:
        return _DEFAULT
    lib = _core.lib
    try:
        code = _PATHS[path]
    except KeyError:
        raise NativeError(int(lib.TOTPD_ERR_PATH), f"unknown path {path!r}") from None
    if not lib.totpd_path_supported(code):
        raise NativeError(int(lib.TOTPD_ERR_PATH), f"path {path!r} is not supported here")
    return code


def use_cpu_path(name: str) -> None:
    """Make ``name`` ("auto" or one of :func:`cpu_paths`) the path of every call that
    does not force its own. Called once at startup by the composition root, with the
    ``cpu_path`` setting (``TOTPD_CPU_PATH`` in the environment), before any call runs.
    """
    wanted = name.strip().lower() or "auto"
    try:
        _core.check(int(_core.lib.totpd_set_default_path(path_code(wanted))))
    except NativeError as error:
        usable = ", ".join(["auto", *cpu_paths()])
        # The message names the environment variable: the usual way to set it.
        raise CpuPathError(
            error.code, f"cpu_path setting, TOTPD_CPU_PATH={wanted}; use one of {usable}"
        ) from None


def cpu_path() -> str:
    """The path dispatch chose for this process: "portable", "shani", "avx2", "avx512"
    or "avx512x16".

    On "avx2" and "avx512", SHA-1 runs 8 lanes at a time (the latter with AVX-512VL
    rotates and ternary logic) and scalar SHA-1/SHA-256 use SHA-NI where present.
    "avx512x16" (the default where AVX-512BW exists) runs fused kernels on 512-bit
    registers: SHA-1 16 lanes, SHA-512 8 lanes; short tails and SHA-256 go scalar.
    """
    return _PATH_NAMES[int(_core.lib.totpd_default_path())]


def cpu_paths() -> list[str]:
    """Every concrete path this CPU supports (for tests and benchmarks)."""
    supported = _core.lib.totpd_path_supported
    return [name for name, code in _PATHS.items() if name != "auto" and supported(code)]
