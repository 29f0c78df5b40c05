"""Admission by cost, alone: budgets, refusals with a retry delay, release on every path."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from totpd.rpc.admission import MAX_RETRY_SECONDS, MIN_RETRY_SECONDS, Admission
from totpd.service.errors import ErrorReason, TotpdError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def refusal(admission: Admission, cost: int) -> TotpdError:
    with pytest.raises(TotpdError) as caught:
        admission.acquire(cost)
    return caught.value


def test_calls_fit_until_their_items_exceed_the_budget_then_are_refused_with_a_delay() -> None:
    admission = Admission(100, max_calls=10)
    first = admission.acquire(60)
    second = admission.acquire(40)
    assert admission.items_in_flight == 100
    refused = refusal(admission, 1)
    assert refused.reason is ErrorReason.OVERLOADED
    assert refused.retry_after_seconds is not None
    assert MIN_RETRY_SECONDS <= refused.retry_after_seconds <= 1.5 * MAX_RETRY_SECONDS
    assert "nothing was done" in refused.message
    first.release()
    assert admission.items_in_flight == 40
    admission.acquire(60).release()
    second.release()
    assert (admission.items_in_flight, admission.calls_in_flight) == (0, 0)


def test_calls_beyond_the_call_budget_are_refused_whatever_their_cost() -> None:
    admission = Admission(1000, max_calls=2)
    tickets = [admission.acquire(1), admission.acquire(1)]
    assert refusal(admission, 1).reason is ErrorReason.OVERLOADED
    tickets[0].release()
    with admission.acquire(1):
        assert admission.calls_in_flight == 2
    tickets[1].release()
    assert admission.calls_in_flight == 0


def test_calls_sharing_a_connection_are_bounded_by_items_only() -> None:
    """Coalesced Verify calls on the loop hold no connection each: beyond the call
    budget they are still admitted, until their items fill the item budget; and
    they take no room from calls that do hold a connection."""
    admission = Admission(5, max_calls=2)
    shared = [admission.acquire(1, shares_connection=True) for _ in range(3)]
    assert admission.calls_in_flight == 0 and admission.items_in_flight == 3
    own = [admission.acquire(1), admission.acquire(1)]
    assert refusal(admission, 1).reason is ErrorReason.OVERLOADED  # two calls hold connections
    assert admission.items_in_flight == 5
    with pytest.raises(TotpdError):  # and the items are all taken
        admission.acquire(1, shares_connection=True)
    for ticket in [*shared, *own]:
        ticket.release()
    assert admission.calls_in_flight == 0 and admission.items_in_flight == 0


def test_a_call_costlier_than_the_budget_is_admitted_alone_never_refused_forever() -> None:
    admission = Admission(10, max_calls=5)
    with admission.acquire(50):
        assert admission.items_in_flight == 10
        assert refusal(admission, 1).reason is ErrorReason.OVERLOADED
    with admission.acquire(0):  # free calls still count as one item
        assert admission.items_in_flight == 1
    assert admission.items_in_flight == 0


def test_release_twice_returns_the_cost_once() -> None:
    admission = Admission(10, max_calls=5)
    ticket = admission.acquire(4)
    other = admission.acquire(3)
    ticket.release()
    ticket.release()
    assert admission.items_in_flight == 3
    other.release()
    assert admission.items_in_flight == 0


def test_the_ticket_is_released_when_the_admitted_work_raises() -> None:
    admission = Admission(10, max_calls=5)
    with pytest.raises(RuntimeError), admission.acquire(10):
        raise RuntimeError("the handler failed")
    assert admission.items_in_flight == 0
    admission.acquire(10).release()


def test_the_delay_is_the_expected_time_until_enough_work_finishes() -> None:
    clock = Clock()
    admission = Admission(20_000, max_calls=10, clock=clock, jitter=lambda: 0.0)
    # Teach it the pace: a 20,000-item call that took 2 s (0.1 ms an item).
    started = admission.acquire(20_000)
    clock.now += 2.0
    started.release()
    big = admission.acquire(12_000)  # expected to end 1.2 s after its start
    clock.now += 0.1
    small = admission.acquire(8_000)  # expected to end 0.8 s from now
    # 3,000 items must free up: the 8,000-item call, ending first, is enough.
    assert refusal(admission, 3_000).retry_after_seconds == pytest.approx(0.8, abs=1e-3)
    # 14,000 items need both calls to end: the 12,000-item one ends 1.1 s from now.
    assert refusal(admission, 14_000).retry_after_seconds == pytest.approx(1.1, abs=1e-3)
    clock.now += 60.0  # both overdue: the hint never goes below the minimum
    assert refusal(admission, 14_000).retry_after_seconds == MIN_RETRY_SECONDS
    big.release()
    small.release()


def test_the_delay_is_capped_and_jittered_upward() -> None:
    clock = Clock()
    admission = Admission(10_000, max_calls=10, clock=clock, jitter=lambda: 1.0)
    slow = admission.acquire(10_000)
    clock.now += 1000.0  # a call that took 100 ms an item
    slow.release()
    with admission.acquire(10_000):
        delay = refusal(admission, 1).retry_after_seconds
    assert delay == pytest.approx(1.5 * MAX_RETRY_SECONDS)


def test_many_threads_never_exceed_the_budget_and_leave_it_empty() -> None:
    admission = Admission(50, max_calls=8)
    lock = threading.Lock()
    state = {"items": 0, "calls": 0, "peak_items": 0, "peak_calls": 0, "refused": 0}

    def worker(seed: int) -> None:
        for round_number in range(300):
            cost = 1 + (seed * 7 + round_number) % 20
            try:
                ticket = admission.acquire(cost)
            except TotpdError as error:
                assert error.reason is ErrorReason.OVERLOADED
                with lock:
                    state["refused"] += 1
                continue
            with ticket:
                with lock:
                    state["items"] += cost
                    state["calls"] += 1
                    state["peak_items"] = max(state["peak_items"], state["items"])
                    state["peak_calls"] = max(state["peak_calls"], state["calls"])
                time.sleep(0.0005)  # let the other threads in while this call holds its cost
                with lock:
                    state["items"] -= cost
                    state["calls"] -= 1

    with ThreadPoolExecutor(max_workers=16) as pool:
        for result in [pool.submit(worker, seed) for seed in range(16)]:
            result.result(timeout=60)
    assert state["peak_items"] <= 50
    assert state["peak_calls"] <= 8
    assert state["refused"] > 0
    assert (admission.items_in_flight, admission.calls_in_flight) == (0, 0)


def test_budgets_below_one_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Admission(0, max_calls=1)


def test_refusals_are_logged_once_per_interval_with_their_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    admission = Admission(1, max_calls=1, clock=clock)
    caplog.set_level("WARNING", logger="totpd.admission")
    with admission.acquire(1):
        for _ in range(5):
            refusal(admission, 1)
        clock.now += 10.0
        refusal(admission, 1)
    counts = [getattr(record, "refused", None) for record in caplog.records]
    assert counts == [1, 5]
    assert all(record.getMessage() == "overloaded: calls refused" for record in caplog.records)
