"""OS thread names: `top -H` and /proc tell totpd's threads apart (Linux)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from totpd.thread_names import name_os_threads, name_this_thread

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="thread names from /proc")


def _os_name_of(thread_body: Callable[[], None], name: str) -> str:
    """The OS name a thread called `name` has after `thread_body` ran in it."""
    seen: list[str] = []

    def run() -> None:
        thread_body()
        native = threading.get_native_id()
        seen.append(Path(f"/proc/self/task/{native}/comm").read_text().rstrip("\n"))

    thread = threading.Thread(target=run, name=name)
    thread.start()
    thread.join(timeout=10)
    assert seen, "the thread did not run"
    return seen[0]


@pytest.fixture
def hook_installed() -> Iterator[None]:
    name_os_threads()
    try:
        yield
    finally:
        threading.setprofile(None)  # type: ignore[arg-type]


def test_a_thread_names_itself_with_its_python_name() -> None:
    assert _os_name_of(name_this_thread, "totpd-unit") == "totpd-unit"


def test_a_long_name_keeps_its_first_15_bytes() -> None:
    assert _os_name_of(name_this_thread, "totpd-a-very-long-name") == "totpd-a-very-lo"


def test_without_the_hook_a_thread_keeps_the_process_name() -> None:
    assert _os_name_of(lambda: None, "totpd-unnamed") != "totpd-unnamed"


def test_the_hook_names_every_thread_started_after_it(hook_installed: None) -> None:
    assert _os_name_of(lambda: None, "totpd-hooked") == "totpd-hooked"
    assert _os_name_of(lambda: None, "totpd-hooked-2") == "totpd-hooked-2"


def test_the_hook_leaves_no_profiler_behind(hook_installed: None) -> None:
    profilers: list[object] = []
    _os_name_of(lambda: profilers.append(sys.getprofile()), "totpd-profiled")
    assert profilers == [None]
