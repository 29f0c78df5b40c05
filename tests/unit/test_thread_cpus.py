"""One CPU for a process's interpreter threads (totpd/thread_cpus.py), on this
machine's real scheduler: each pin is made in a thread of its own, read back from
/proc, and never outlives its test."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from tests.cpu_lists import PROCESS_CPUS, cpus_of_task, needs_two_cpus
from totpd import thread_cpus

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="CPU affinity from /proc")

T = TypeVar("T")


@pytest.fixture(autouse=True)
def no_pin_remembered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts as a process in which no thread was pinned."""
    monkeypatch.setattr(thread_cpus, "_process_cpus", None)
    yield


def in_thread(body: Callable[[], T]) -> T:
    """`body`'s result, run in a fresh thread (whose CPUs die with it)."""
    results: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(body())
        except BaseException as error:  # handed to the test's thread
            errors.append(error)

    thread = threading.Thread(target=run, name="totpd-cpus-test")
    thread.start()
    thread.join(timeout=10)
    if errors:
        raise errors[0]
    assert results, "the thread did not finish"
    return results[0]


def cpus_of_this_thread() -> frozenset[int]:
    """The calling thread's CPUs, as the kernel reports them (not Python's view)."""
    return cpus_of_task(threading.get_native_id())


def test_each_worker_takes_the_next_cpu_of_the_process_wrapping(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {5, 1, 3})
    assert [thread_cpus.interpreter_cpu(index) for index in range(5)] == [1, 3, 5, 1, 3]
    assert thread_cpus.interpreter_cpu() == 1


def test_a_process_on_one_cpu_has_nothing_to_pin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {2})
    assert thread_cpus.interpreter_cpu(0) is None
    assert thread_cpus.interpreter_cpu(3) is None


@needs_two_cpus
def test_a_pinned_thread_runs_on_its_cpu_and_so_do_the_threads_it_starts() -> None:
    cpu = max(PROCESS_CPUS)

    def pinned_then_child() -> tuple[bool, frozenset[int], frozenset[int]]:
        pinned = thread_cpus.pin_this_thread(cpu)
        return pinned, cpus_of_this_thread(), in_thread(cpus_of_this_thread)

    pinned, own, child = in_thread(pinned_then_child)
    assert pinned
    assert own == child == {cpu}
    assert cpus_of_this_thread() == PROCESS_CPUS  # the test's own thread: untouched


@needs_two_cpus
def test_a_thread_started_by_a_pinned_one_takes_every_process_cpu_back() -> None:
    def pinned_then_released_child() -> frozenset[int]:
        assert thread_cpus.pin_this_thread(min(PROCESS_CPUS))

        def released() -> frozenset[int]:
            thread_cpus.use_process_cpus()
            return cpus_of_this_thread()

        return in_thread(released)

    assert in_thread(pinned_then_released_child) == PROCESS_CPUS


def test_without_a_pin_taking_the_process_cpus_back_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[object] = []
    monkeypatch.setattr(os, "sched_setaffinity", lambda *args: calls.append(args))
    thread_cpus.use_process_cpus()
    assert calls == []


def test_a_refused_pin_is_logged_and_the_thread_keeps_its_cpus(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(pid: int, cpus: object) -> None:
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(os, "sched_setaffinity", refuse)
    with caplog.at_level(logging.WARNING, logger="totpd"):
        assert in_thread(lambda: (thread_cpus.pin_this_thread(0), cpus_of_this_thread())) == (
            False,
            PROCESS_CPUS,
        )
    (record,) = [r for r in caplog.records if "not pinned" in r.getMessage()]
    assert record.__dict__["cpu"] == 0
    assert record.__dict__["error"] == "Invalid argument"


def test_a_cpu_the_process_may_not_use_is_refused_by_the_kernel() -> None:
    """Not a simulated refusal: a CPU beyond the machine's (EINVAL from the kernel)."""
    outside = max(PROCESS_CPUS, default=0) + 4096
    assert in_thread(lambda: (thread_cpus.pin_this_thread(outside), cpus_of_this_thread())) == (
        False,
        PROCESS_CPUS,
    )
