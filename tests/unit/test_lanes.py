"""Parts of one call run on two lanes (service/lanes.py): every part once, results
in order, nothing started after a fault, the call's context on the helper, and a
call whose helper is busy runs its parts alone."""

from __future__ import annotations

import contextvars
import threading

import pytest

from totpd.service import lanes

_CALL: contextvars.ContextVar[str] = contextvars.ContextVar("test_lanes_call", default="none")


def test_every_part_runs_once_and_results_keep_the_parts_order() -> None:
    ran: list[int] = []
    lock = threading.Lock()

    def run(part: int) -> int:
        with lock:
            ran.append(part)
        return part * 10

    results = lanes.run_parts(list(range(50)), run, stops=lambda _: False)

    assert results == [part * 10 for part in range(50)]
    assert sorted(ran) == list(range(50))


def test_both_lanes_work_and_the_helper_sees_the_calls_context() -> None:
    both_started = threading.Barrier(2, timeout=10)
    seen: dict[str, str] = {}

    def run(part: int) -> int:
        if part < 2:  # the first two parts wait for each other: one on each lane
            both_started.wait()
        seen[threading.current_thread().name] = _CALL.get()
        return part

    token = _CALL.set("call-7")
    try:
        assert lanes.run_parts([0, 1, 2, 3], run, stops=lambda _: False) == [0, 1, 2, 3]
    finally:
        _CALL.reset(token)
    assert len(seen) == 2
    assert set(seen.values()) == {"call-7"}
    assert any(name.startswith("totpd-lane") for name in seen)


def test_no_part_starts_after_one_that_stops() -> None:
    started: list[int] = []
    lock = threading.Lock()

    def run(part: int) -> str:
        with lock:
            started.append(part)
        return "fault" if part == 0 else "ok"

    results = lanes.run_parts(list(range(20)), run, stops=lambda result: result == "fault")

    assert results[0] == "fault"
    # The other lane may have been inside one part when the fault was seen.
    assert len(started) <= 2
    assert all(results[part] is None for part in range(20) if part not in started)


def test_an_error_raised_by_a_part_leaves_once_both_lanes_stopped() -> None:
    finished: list[int] = []

    def run(part: int) -> int:
        if part == 1:
            raise RuntimeError("part 1 broke")
        finished.append(part)
        return part

    with pytest.raises(RuntimeError, match="part 1 broke"):
        lanes.run_parts([0, 1, 2, 3, 4, 5], run, stops=lambda _: False)
    assert len(finished) <= 2  # no part starts after the error


def test_a_call_whose_helpers_are_all_busy_runs_every_part_itself() -> None:
    release = threading.Event()
    pool = lanes._helper_pool()
    blockers = [pool.submit(release.wait, 30) for _ in range(pool._max_workers)]
    try:
        names: set[str] = set()
        results = lanes.run_parts(
            [1, 2, 3],
            lambda part: names.add(threading.current_thread().name) or part,
            stops=lambda _: False,
        )
        assert results == [1, 2, 3]
        assert names == {threading.current_thread().name}
    finally:
        release.set()
        for blocker in blockers:
            blocker.result(timeout=30)
