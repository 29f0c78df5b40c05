"""Group commit for unary Verify: concurrent calls of one tenant share a round.

A call arriving while a round of its tenant runs waits; when that round ends,
the first waiting call leads the next one for every call waiting by then (at
most one per account: same-account calls take turns, as a batch's items do),
with one read, one C call, one conditional write and one commit (the engine's
multi-item round, `CodeChecker.check_round`), and wakes each caller with its
own verdict. No timer: a call that finds no round running leads at once.

What stays each call's own: its caller's limit (reserved and settled on its
own thread), its audit event (its own group in the round's transaction), its
validation errors, and its deadline. A round runs under the earliest deadline
of its calls; when that cuts it (nothing was stored), the calls whose own
deadline has not passed run alone, as does every call of a round that failed
for any reason other than a store fault (a secret that cannot be opened...),
so one call's error never becomes another's. A store fault fails every call
of the round: nothing was stored or counted, and each caller may retry. The
round's trace span is a child of its leader's call.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections import deque

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

_QUEUED, _IN_ROUND, _LEAD, _DONE = range(4)
_ALONE = object()  # the call's verdict: run it alone, on its own thread
# Set in a round's own context: a call made from inside a round (a store hook
# in a test) runs alone rather than wait for the round it is part of.
_IN_ROUND_CONTEXT: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "totpd_coalesced_round", default=False
)


class _Call:
    """One waiting Verify call; `wake` is held until the leader hands it its
    verdict or the lead (the cheapest wake-up Python has)."""

    __slots__ = ("audit", "deadline", "digits", "item", "outcome", "state", "wake")

    def __init__(
        self, item: VerifyItem, digits: int, audit: AuditContext | None, deadline: float | None
    ) -> None:
        self.item = item
        self.digits = digits
        self.audit = audit
        self.deadline = deadline
        self.state = _QUEUED
        self.outcome: Verdict | BaseException | object | None = None
        self.wake = threading.Lock()
        self.wake.acquire()


class _Queue:
    __slots__ = ("calls", "rounds")

    def __init__(self) -> None:
        self.calls: deque[_Call] = deque()
        self.rounds = 0  # running now


class Coalescer:
    """Verify calls of the same tenant, coalesced into shared rounds."""

    def __init__(self, checker: CodeChecker, rounds_in_flight: int = 1) -> None:
        """`rounds_in_flight`: rounds of a tenant that may run at once; a call that
        finds fewer running leads one at once."""
        self._checker = checker
        self._most_rounds = rounds_in_flight
        self._lock = threading.Lock()
        self._queues: dict[str, _Queue] = {}

    def verify(
        self, item: VerifyItem, caller: str | None, tenant: str, audit: AuditContext | None
    ) -> VerifyOutcome:
        """`CodeChecker.check` of one active factor's code, in a shared round.

        `item`'s ids are validated; RATE_LIMITED and a malformed code stay the call's.
        """
        limits = self._checker.callers
        reservation = limits.reserve(caller, 1)
        verdicts: list[Verdict] = []
        try:
            call = _Call(item, validation.code_digits(item.code), audit, deadlines.current())
            if _IN_ROUND_CONTEXT.get():
                call.outcome = _ALONE
            verdict = self._verdict(call, tenant)
            verdicts.append(verdict)
        finally:
            limits.settle(reservation, failures(verdicts))
        if isinstance(verdict, TotpdError):
            raise verdict
        return verdict

    def waiting(self, tenant: str) -> int:
        """How many calls of `tenant` wait for a round (not counting one running)."""
        with self._lock:
            queue = self._queues.get(tenant)
            return 0 if queue is None else len(queue.calls)

    def _verdict(self, call: _Call, tenant: str) -> Verdict:
        outcome = call.outcome or self._outcome(call, tenant)
        if outcome is _ALONE:
            # The caller's limit is already reserved (verify): none again.
            return self._checker.check(
                call.item, state=FactorState.ACTIVE, tenant=tenant, audit=call.audit
            )
        if isinstance(outcome, BaseException):
            raise outcome
        assert isinstance(outcome, VerifyOutcome | TotpdError)
        return outcome

    def _outcome(self, call: _Call, tenant: str) -> object:
        """The call's verdict or error, after leading or waiting for its round."""
        with self._lock:
            queue = self._queues.get(tenant)
            if queue is None:
                queue = self._queues[tenant] = _Queue()
            if queue.rounds < self._most_rounds:
                queue.rounds += 1
                call.state = _LEAD
            else:
                queue.calls.append(call)
        while call.state != _DONE:
            if call.state == _LEAD:
                self._lead(queue, tenant, call)
                continue
            left = None if call.deadline is None else call.deadline - time.monotonic()
            if call.wake.acquire(timeout=-1 if left is None else max(left, 0.0)):
                continue
            with self._lock:
                if call.state == _QUEUED:  # not taken yet: nothing was done for it
                    queue.calls.remove(call)
                    return DeadlineExceededError()
            # Taken into a round, which ends by its deadline (ours or sooner).
            call.wake.acquire()
        return call.outcome

    def _lead(self, queue: _Queue, tenant: str, leader: _Call) -> None:
        """Run one round for `leader` and the calls waiting now, hand each its
        outcome, and the lead to the first call still waiting (if any)."""
        with self._lock:
            members = [leader, *_take_round(queue.calls, leader.item.account_id)]
        try:
            now = time.monotonic()
            running: list[_Call] = []
            for call in members:
                if call.deadline is not None and call.deadline <= now:
                    call.outcome = DeadlineExceededError()  # nothing done for it
                else:
                    running.append(call)
            if running:
                # The leader's context (its trace span is the round's parent) when the
                # leader is in the round: its deadline is then no sooner than the
                # round's. Otherwise a context of its own.
                led = running[0] is leader
                context = contextvars.copy_context() if led else contextvars.Context()
                context.run(self._run_round, running, tenant)
        finally:
            self._hand_over(queue, members)

    def _hand_over(self, queue: _Queue, members: list[_Call]) -> None:
        with self._lock:
            for call in members:
                if call.outcome is None:  # a bug in the round: never hang a caller
                    call.outcome = RuntimeError("coalesced round failed")
                was_leader = call.state == _LEAD
                call.state = _DONE
                if not was_leader:
                    call.wake.release()
            if queue.calls:
                # Out of the queue: no other round of the tenant can take it.
                head = queue.calls.popleft()
                head.state = _LEAD
                head.wake.release()
            else:
                queue.rounds -= 1

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


def _take_round(waiting: deque[_Call], leaders_account: str) -> list[_Call]:
    """The waiting calls that join the leader's round, in arrival order: the
    first of each other account."""
    accounts = {leaders_account}
    members: list[_Call] = []
    later: list[_Call] = []
    while waiting and len(members) < MAX_ROUND_CALLS - 1:
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
