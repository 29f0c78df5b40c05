"""Parts of one call run on up to three lanes (service/lanes.py): every part once,
results in order, nothing started after a fault, the call's context on every
helper, and a call whose helpers are busy runs its parts alone."""

from __future__ import annotations

import contextvars
import threading
import time

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


LANES = lanes.HELPERS_PER_CALL + 1


def test_every_lane_works_and_each_helper_sees_the_calls_context() -> None:
    all_started = threading.Barrier(LANES, timeout=10)
    seen: dict[str, str] = {}

    def run(part: int) -> int:
        if part < LANES:  # the first parts wait for each other: one on each lane
            all_started.wait()
        seen[threading.current_thread().name] = _CALL.get()
        return part

    token = _CALL.set("call-7")
    try:
        assert lanes.run_parts(list(range(8)), run, stops=lambda _: False) == list(range(8))
    finally:
        _CALL.reset(token)
    assert len(seen) == LANES
    assert set(seen.values()) == {"call-7"}
    helpers = [name for name in seen if name.startswith("totpd-lane")]
    assert len(helpers) == lanes.HELPERS_PER_CALL


def test_no_part_starts_after_one_that_stops() -> None:
    started: list[int] = []
    lock = threading.Lock()

    def run(part: int) -> str:
        with lock:
            started.append(part)
        return "fault" if part == 0 else "ok"

    results = lanes.run_parts(list(range(20)), run, stops=lambda result: result == "fault")

    assert results[0] == "fault"
    # The other lanes may each have been inside one part when the fault was seen.
    assert len(started) <= LANES
    assert all(results[part] is None for part in range(20) if part not in started)


def test_an_error_raised_by_a_part_leaves_once_every_lane_stopped() -> None:
    finished: list[int] = []

    def run(part: int) -> int:
        if part == 1:
            raise RuntimeError("part 1 broke")
        finished.append(part)
        return part

    with pytest.raises(RuntimeError, match="part 1 broke"):
        lanes.run_parts([0, 1, 2, 3, 4, 5], run, stops=lambda _: False)
    assert len(finished) <= LANES  # no part starts after the error


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


@pytest.mark.parametrize("raising", ["the calling lane", "a helper lane"])
def test_an_error_on_any_lane_leaves_only_once_the_other_lanes_finished_their_parts(
    raising: str,
) -> None:
    caller = threading.current_thread()
    all_started = threading.Barrier(LANES, timeout=10)
    finished: list[int] = []
    raised: list[int] = []

    def run(part: int) -> int:
        all_started.wait()  # one part on each lane
        on_caller = threading.current_thread() is caller
        if on_caller == (raising == "the calling lane") and not raised:
            raised.append(part)
            raise RuntimeError("a part broke")
        time.sleep(0.05)  # still running when the error is raised
        finished.append(part)
        return part

    with pytest.raises(RuntimeError, match="a part broke"):
        lanes.run_parts(list(range(LANES)), run, stops=lambda _: False)
    assert sorted(finished + raised) == list(range(LANES))
