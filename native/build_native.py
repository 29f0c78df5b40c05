"""cffi builder for ``totpd._native`` (API, out-of-line mode).

``setup.py`` names ``native/build_native.py:ffibuilder``; ``pip install`` compiles
the module. The cdef is the marked section of ``totpd_core.h``: preprocessor
lines other than ``#define NAME value`` are dropped and every constant's value
is replaced by ``...`` so cffi takes it from the compiled header.

Run directly (``python native/build_native.py [outdir]``) to build in place.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
HEADER = HERE / "totpd_core.h"
SOURCES = [
    "batch.c",
    "dispatch.c",
    "errors.c",
    "hmac.c",
    "hmac_x8.c",
    "lanes.c",
    "sha_portable.c",
    "sha_shani.c",
    "sha1_avx2.c",
    "sha1_avx512.c",
    "sha512_avx512.c",
]

# Our C is held to -Werror; SIMD functions carry their own target attributes
# so the module still runs on CPUs without them (runtime dispatch).
CFLAGS = ["-O3", "-std=c11", "-Wall", "-Wextra", "-Werror", "-fno-strict-aliasing"]
DEFINES = [("TOTPD_SIMD", "1")]

_DEFINE = re.compile(r"^\s*#\s*define\s+(\w+)\s+(\S+)")


def read_cdef(header: Path = HEADER) -> str:
    text = header.read_text(encoding="utf-8")
    start = text.index("/* TOTPD-CDEF-BEGIN */")
    end = text.index("/* TOTPD-CDEF-END */")
    out: list[str] = []
    for line in text[start:end].splitlines():
        m = _DEFINE.match(line)
        if m:
            out.append(f"#define {m.group(1)} ...")
        elif line.lstrip().startswith("#"):
            continue
        else:
            out.append(line)
    return "\n".join(out)


def _sources() -> list[str]:
    # Relative paths keep setuptools happy when building from the repo root.
    root = Path.cwd()
    out = []
    for name in SOURCES:
        p = HERE / name
        try:
            out.append(str(p.relative_to(root)))
        except ValueError:
            out.append(str(p))
    return out


ffibuilder = FFI()
ffibuilder.cdef(read_cdef())
ffibuilder.set_source(
    "totpd._native",
    # The generated wrapper is cffi's code, not ours: it is compiled with the
    # same flags but these warnings are relaxed in its translation unit only.
    '#pragma GCC diagnostic ignored "-Wunused-parameter"\n'
    '#pragma GCC diagnostic ignored "-Wmissing-field-initializers"\n'
    '#include "totpd_core.h"\n',
    sources=_sources(),
    include_dirs=[str(HERE)],
    define_macros=DEFINES,
    extra_compile_args=CFLAGS,
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=sys.argv[1] if len(sys.argv) > 1 else os.curdir, verbose=True)
