"""Group commit for unary Verify: concurrent calls of one tenant share a round.

Calls of a tenant queue; a round thread takes the first waiting call and the
first waiting call of every other account, runs them as one round (one read,
one C call, one conditional write and one commit: the engine's multi-item
round, `CodeChecker.check_round`), hands each call its own verdict, and takes
the next round while calls wait. At most `rounds_in_flight` rounds of a tenant
run at once; a call that finds fewer running starts one.

A call waits either on its own thread (`verify`) or as a coroutine on the
rpc layer's event loop (`verify_on_loop`), which holds no thread while it
waits: that is where group commit pays (benchmarks/NOTES.md). Under load (the
tenant's last round took more than one call), a call on the loop that starts
a round gives the calls arriving in the next `GATHER_SECONDS` the chance to
join it, since the loop hands over one call per turn; one call at a time
starts its round at once, so a quiet server adds no latency.

What stays each call's own: its caller's limit (reserved and settled by the
call itself), its audit event (its own group in the round's transaction), its
validation errors, and its deadline. A round runs under the earliest deadline
of its calls; when that cuts it (nothing was stored), the calls whose own
deadline has not passed run alone, as does every call of a round that failed
for any reason other than a store fault (a secret that cannot be opened...),
so one call's error never becomes another's. A store fault fails every call
of the round: nothing was stored or counted, and each caller may retry. The
round runs in its first call's context (its trace span is the round's parent).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final

from totpd import deadlines
from totpd.domain import FactorState
from totpd.service import validation
from totpd.service.audit import AuditContext
from totpd.service.checks import Check, Verdict
from totpd.service.errors import TotpdError
from totpd.service.faults import is_store_fault
from totpd.service.round_plan import failures
from totpd.service.types import VerifyItem, VerifyOutcome
from totpd.service.verification import CodeChecker
from totpd.store.deadline import DeadlineExceededError

# The most calls one round takes (the rest wait for the next).
MAX_ROUND_CALLS = 256
# How long a round started from the event loop waits for more calls to join it.
GATHER_SECONDS: Final = 0.001

_QUEUED, _IN_ROUND, _DONE = range(3)
_ALONE = object()  # the call's verdict: run it alone, outside any round
# Set in a round's own context: a call made from inside a round (a store hook
# in a test) runs alone rather than wait for the round it is part of.
_IN_ROUND_CONTEXT: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "totpd_coalesced_round", default=False
)


class _Call:
    """One waiting Verify call. On a thread, `wake` is held until its round ends
    (the cheapest wake-up Python has); on the loop, `future` gets its outcome."""

    __slots__ = (
        "audit",
        "context",
        "deadline",
        "digits",
        "future",
        "item",
        "orphan",
        "outcome",
        "queue",
        "state",
        "wake",
    )

    def __init__(
        self, item: VerifyItem, digits: int, audit: AuditContext | None, deadline: float | None
    ) -> None:
        self.item = item
        self.digits = digits
        self.audit = audit
        self.deadline = deadline
        self.state = _QUEUED
        self.outcome: Verdict | BaseException | object | None = None
        self.context = contextvars.copy_context()
        self.wake: threading.Lock | None = None
        self.future: asyncio.Future[object] | None = None
        self.queue: _Queue | None = None
        # Told the call's failures when its round ends, if its coroutine was cancelled.
        self.orphan: Callable[[int], None] | None = None


class _Queue:
    __slots__ = ("calls", "last_size", "rounds")

    def __init__(self) -> None:
        self.calls: deque[_Call] = deque()
        self.rounds = 0  # running now
        self.last_size = 0  # calls in the round that ended last


class Coalescer:
    """Verify calls of the same tenant, coalesced into shared rounds."""

    def __init__(self, checker: CodeChecker, rounds_in_flight: int = 1) -> None:
        """`rounds_in_flight`: rounds of a tenant that may run at once; a call that
        finds fewer running starts one."""
        self._checker = checker
        self._most_rounds = rounds_in_flight
        self._lock = threading.Lock()
        self._queues: dict[str, _Queue] = {}
        self._threads = ThreadPoolExecutor(
            max_workers=4 * rounds_in_flight, thread_name_prefix="totpd-round"
        )

    def verify(
        self, item: VerifyItem, caller: str | None, tenant: str, audit: AuditContext | None
    ) -> VerifyOutcome:
        """`CodeChecker.check` of one active factor's code, in a shared round,
        waiting on this thread.

        `item`'s ids are validated; RATE_LIMITED and a malformed code stay the call's.
        """
        limits = self._checker.callers
        reservation = limits.reserve(caller, 1)
        verdicts: list[Verdict] = []
        try:
            call = _Call(item, validation.code_digits(item.code), audit, deadlines.current())
            if _IN_ROUND_CONTEXT.get():
                outcome = _ALONE
            else:
                call.wake = threading.Lock()
                call.wake.acquire()
                outcome = self._wait(call, tenant)
            verdict = self._alone(call, tenant) if outcome is _ALONE else _verdict(outcome)
            verdicts.append(verdict)
        finally:
            limits.settle(reservation, failures(verdicts))
        if isinstance(verdict, TotpdError):
            raise verdict
        return verdict

    async def verify_on_loop(
        self, item: VerifyItem, caller: str | None, tenant: str, audit: AuditContext | None
    ) -> VerifyOutcome:
        """`verify` for a coroutine on the event loop: it waits without a thread.

        A call cancelled (its client gone, its deadline passed) while its round
        runs still settles its caller's limit with its verdict, when the round
        hands it over: the attempt was made and counted."""
        limits = self._checker.callers
        reservation = limits.reserve(caller, 1)
        verdicts: list[Verdict] = []
        settled_later = False
        try:
            call = _Call(item, validation.code_digits(item.code), audit, deadlines.current())
            loop = asyncio.get_running_loop()
            call.future = loop.create_future()
            try:
                outcome = await self._awaited(call, tenant, loop)
            except asyncio.CancelledError:
                settled_later = self._orphaned(call, lambda done: limits.settle(reservation, done))
                raise
            if outcome is _ALONE:
                # The loop's own threads: the round threads may all be busy.
                verdict = await loop.run_in_executor(
                    None, call.context.run, self._alone, call, tenant
                )
            else:
                verdict = _verdict(outcome)
            verdicts.append(verdict)
        finally:
            if not settled_later:
                limits.settle(reservation, failures(verdicts))
        if isinstance(verdict, TotpdError):
            raise verdict
        return verdict

    def waiting(self, tenant: str) -> int:
        """How many calls of `tenant` wait for a round (not counting those in one)."""
        with self._lock:
            queue = self._queues.get(tenant)
            return 0 if queue is None else len(queue.calls)

    def rounds_running(self, tenant: str) -> int:
        """How many round threads of `tenant` run now."""
        with self._lock:
            queue = self._queues.get(tenant)
            return 0 if queue is None else queue.rounds

    def _alone(self, call: _Call, tenant: str) -> Verdict:
        # The caller's limit is already reserved (verify): none again.
        return self._checker.check(
            call.item, state=FactorState.ACTIVE, tenant=tenant, audit=call.audit
        )

    def _queued(self, call: _Call, tenant: str) -> tuple[_Queue, bool]:
        """Queue `call`; whether it must start a round thread for its tenant."""
        with self._lock:
            queue = self._queues.get(tenant)
            if queue is None:
                queue = self._queues[tenant] = _Queue()
            queue.calls.append(call)
            call.queue = queue
            starts = queue.rounds < self._most_rounds
            if starts:
                queue.rounds += 1
        return queue, starts

    def _wait(self, call: _Call, tenant: str) -> object:
        """The call's outcome, waiting on this thread until its round ends."""
        assert call.wake is not None
        queue, starts = self._queued(call, tenant)
        if starts:
            self._threads.submit(self._run_rounds, queue, tenant)
        left = None if call.deadline is None else call.deadline - time.monotonic()
        if not call.wake.acquire(timeout=-1 if left is None else max(left, 0.0)):
            if self._withdrawn(call):
                return DeadlineExceededError()
            # Taken into a round, which ends by its deadline (ours or sooner).
            call.wake.acquire()
        return call.outcome

    async def _awaited(self, call: _Call, tenant: str, loop: asyncio.AbstractEventLoop) -> object:
        """The call's outcome, awaited on the loop until its round ends."""
        assert call.future is not None
        queue, starts = self._queued(call, tenant)
        if starts and queue.last_size > 1:  # under load: let the next calls join
            loop.call_later(GATHER_SECONDS, self._threads.submit, self._run_rounds, queue, tenant)
        elif starts:
            self._threads.submit(self._run_rounds, queue, tenant)
        expiry = None
        if call.deadline is not None:
            left = call.deadline - time.monotonic()
            expiry = loop.call_later(max(left, 0.0), self._expire, call)
        try:
            return await call.future
        finally:
            if expiry is not None:
                expiry.cancel()

    def _expire(self, call: _Call) -> None:
        """On the loop, at the call's deadline: a call still queued ends (nothing
        was done for it); one in a round gets its round's outcome."""
        assert call.future is not None
        if not call.future.done() and self._withdrawn(call):
            call.future.set_result(DeadlineExceededError())

    def _orphaned(self, call: _Call, settle: Callable[[int], None]) -> bool:
        """A cancelled call: withdrawn if still queued (False: nothing to settle
        later); if in a round, `settle` hears its failures when the round ends."""
        if self._withdrawn(call):
            return False
        with self._lock:
            if call.state == _IN_ROUND:
                call.orphan = settle
                return True
        settle(_failures_of(call.outcome))  # handed over, not yet resolved on the loop
        return True

    def _withdrawn(self, call: _Call) -> bool:
        """Take `call` out of its queue if no round took it yet (nothing was done for it)."""
        with self._lock:
            if call.state != _QUEUED:
                return False
            assert call.queue is not None
            call.queue.calls.remove(call)
            call.state = _DONE
            return True

    def _run_rounds(self, queue: _Queue, tenant: str) -> None:
        """On a round thread: rounds of the waiting calls until none wait."""
        while True:
            with self._lock:
                if not queue.calls:
                    queue.rounds -= 1
                    return
                members = _take_round(queue.calls)
                queue.last_size = len(members)
            try:
                self._round(members, tenant)
            finally:
                self._hand_over(members)

    def _hand_over(self, members: list[_Call]) -> None:
        """Wake each member with its outcome: a thread at once, the calls on a loop
        with one hand-off to it for the whole round; a cancelled call's caller
        limit is settled here."""
        orphans: list[_Call] = []
        with self._lock:
            for call in members:
                if call.outcome is None:  # a bug in the round: never hang a caller
                    call.outcome = RuntimeError("coalesced round failed")
                call.state = _DONE
                if call.orphan is not None:
                    orphans.append(call)
        on_loops: dict[asyncio.AbstractEventLoop, list[_Call]] = {}
        for call in members:
            if call.wake is not None:
                call.wake.release()
            elif call.future is not None:
                on_loops.setdefault(call.future.get_loop(), []).append(call)
        for call in orphans:
            assert call.orphan is not None
            call.orphan(_failures_of(call.outcome))
        for loop, waiting in on_loops.items():
            try:
                loop.call_soon_threadsafe(_resolve, waiting)
            except RuntimeError:  # the loop is closed: the server stopped
                pass

    def _round(self, members: list[_Call], tenant: str) -> None:
        now = time.monotonic()
        running: list[_Call] = []
        for call in members:
            if call.deadline is not None and call.deadline <= now:
                call.outcome = DeadlineExceededError()  # nothing done for it
            else:
                running.append(call)
        if running:
            # The first call's context, copied: its trace span is the round's parent,
            # and the round's own variables stay the round's.
            running[0].context.copy().run(self._run_round, running, tenant)

    def _run_round(self, calls: list[_Call], tenant: str) -> None:
        """Each call's outcome: its verdict, the round's fault, or `_ALONE`."""
        checks = [Check(i, c.item, c.digits) for i, c in enumerate(calls)]
        deadline = min((c.deadline for c in calls if c.deadline is not None), default=None)
        _IN_ROUND_CONTEXT.set(True)
        try:
            with deadlines.within(None if deadline is None else deadline - time.monotonic()):
                verdicts = self._checker.check_round(
                    checks, [c.audit for c in calls], tenant=tenant
                )
        except Exception as error:  # nothing was stored
            _failed_round(calls, error)
            return
        for call, verdict in zip(calls, verdicts, strict=True):
            call.outcome = verdict


def _verdict(outcome: object) -> Verdict:
    if isinstance(outcome, BaseException):
        raise outcome
    assert isinstance(outcome, VerifyOutcome | TotpdError)
    return outcome


def _failures_of(outcome: object) -> int:
    """The failures a handed-over outcome counts for its caller (none unless a verdict)."""
    return failures([outcome]) if isinstance(outcome, VerifyOutcome | TotpdError) else 0


def _resolve(calls: list[_Call]) -> None:
    for call in calls:
        assert call.future is not None
        if not call.future.done():  # ended at its deadline, or cancelled
            call.future.set_result(call.outcome)


def _take_round(waiting: deque[_Call]) -> list[_Call]:
    """The next round's calls, in arrival order: the first waiting call of each
    account (same-account calls take turns, as a batch's items do)."""
    accounts: set[str] = set()
    members: list[_Call] = []
    later: list[_Call] = []
    while waiting and len(members) < MAX_ROUND_CALLS:
        call = waiting.popleft()
        if call.item.account_id in accounts:
            later.append(call)
        else:
            accounts.add(call.item.account_id)
            call.state = _IN_ROUND
            members.append(call)
    waiting.extendleft(reversed(later))
    return members


def _failed_round(calls: list[_Call], error: Exception) -> None:
    """A round that stored nothing: who fails with its error and who runs alone."""
    now = time.monotonic()
    for call in calls:
        if isinstance(error, DeadlineExceededError):
            mine = call.deadline is not None and call.deadline <= now
            call.outcome = DeadlineExceededError() if mine else _ALONE
        elif is_store_fault(error) or len(calls) == 1:
            call.outcome = error  # as the call's own round would raise it
        else:
            call.outcome = _ALONE
