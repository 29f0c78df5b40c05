"""Build the C core with sanitizers into standalone test programs and run them.

* ``native/tests/test_core*.c`` under ASan+UBSan with gcc, and with clang where it
  is installed: clang's UBSan also reports what gcc's misses (``NULL + 0``
  pointer arithmetic). ``tests/ensure-test-packages.sh`` installs clang in CI.
* ``native/tests/test_residue.c`` with the production flags (``-O3``, no
  sanitizer, which would change every stack frame): no HMAC pad state may stay
  on the stack after an entry point returns.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

# Each case compiles the whole core with sanitizers: seconds, not milliseconds.
pytestmark = pytest.mark.slow

NATIVE = Path(__file__).resolve().parents[2] / "native"


def _core_sources() -> list[str]:
    """The core's C files, as native/build_native.py lists them for the build."""
    spec = importlib.util.spec_from_file_location("build_native", NATIVE / "build_native.py")
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    return list(build.SOURCES)


CORE = _core_sources()
TEST_CORE = ["tests/test_core.c", "tests/test_core_split.c", "tests/test_core_race.c"]
WARN = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-DTOTPD_SIMD=1"]
SANITIZE = {
    "gcc": ["-fsanitize=address,undefined"],
    # pointer-overflow (NULL + 0 among others) is part of clang's undefined;
    # named here so a future clang that drops it from the group still checks it.
    "clang": ["-fsanitize=address,undefined,pointer-overflow"],
}
SAN_FLAGS = ["-O1", "-g", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all", "-pthread"]


def _clang() -> str | None:
    """``clang``, else the newest versioned ``clang-N`` on PATH."""
    if shutil.which("clang"):
        return "clang"
    found: list[tuple[int, str]] = []
    for directory in os.get_exec_path():
        for path in glob.glob(os.path.join(directory, "clang-[0-9]*")):
            suffix = os.path.basename(path).removeprefix("clang-")
            if suffix.isdigit() and os.access(path, os.X_OK):
                found.append((int(suffix), os.path.basename(path)))
    return max(found)[1] if found else None


def _compilers() -> list[Any]:
    gcc = shutil.which("gcc")
    clang = _clang()
    return [
        pytest.param(
            ("gcc", "gcc"), marks=pytest.mark.skipif(gcc is None, reason="gcc not installed")
        ),
        pytest.param(
            ("clang", clang or "clang"),
            marks=pytest.mark.skipif(
                clang is None, reason="clang not installed (tests/ensure-test-packages.sh)"
            ),
        ),
    ]


def _build(
    cc: str, flags: list[str], program: list[str], exe: Path
) -> subprocess.CompletedProcess[str]:
    sources = [str(NATIVE / s) for s in [*CORE, *program]]
    return subprocess.run(
        [cc, *WARN, *flags, f"-I{NATIVE}", *sources, "-o", str(exe)],
        capture_output=True,
        text=True,
        check=False,
    )


def _run_passing(exe: Path, env: dict[str, str], *, timeout: float) -> str:
    """Run a C test program; it must exit 0 and report no failed check. Its output."""
    run = subprocess.run(
        [str(exe)], capture_output=True, text=True, check=False, timeout=timeout, env=env
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "failures: 0" in run.stdout
    return run.stdout


@pytest.mark.parametrize("compiler", _compilers(), ids=["gcc", "clang"])
def test_core_under_asan_ubsan(compiler: tuple[str, str], tmp_path: Path) -> None:
    family, cc = compiler
    exe = tmp_path / "test_core"
    flags = [*SAN_FLAGS, *SANITIZE[family]]
    if family == "clang":
        probe = tmp_path / "probe.c"
        probe.write_text("int main(void) { return 0; }\n", encoding="utf-8")
        check = subprocess.run(
            [cc, *flags, str(probe), "-o", str(tmp_path / "probe")],
            capture_output=True,
            text=True,
            check=False,
        )
        if check.returncode != 0:
            pytest.skip(f"{cc} has no sanitizer runtime (libclang-rt-dev): {check.stderr[-300:]}")
    build = _build(cc, flags, TEST_CORE, exe)
    assert build.returncode == 0, build.stderr
    env = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0", "UBSAN_OPTIONS": "print_stacktrace=1"}
    output = _run_passing(exe, env, timeout=300)
    assert "paths tested: 0" not in output


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")
def test_no_pad_state_left_on_the_stack(tmp_path: Path) -> None:
    exe = tmp_path / "test_residue"
    # The flags native/build_native.py compiles the module with.
    build = _build("gcc", ["-O3", "-fno-strict-aliasing"], ["tests/test_residue.c"], exe)
    assert build.returncode == 0, build.stderr
    # Lazy symbol binding saves the vector registers on the stack, below the
    # frames the core scrubs: register contents are not what this test checks.
    output = _run_passing(exe, {"LD_BIND_NOW": "1"}, timeout=120)
    assert "paths tested: 0" not in output
