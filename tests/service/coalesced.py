"""Driving concurrent Verify calls into one coalesced round (service/coalescing.py).

`HeldRound` holds the first round's read until the other calls wait behind it,
so the next round takes them all: a real round of the real engine on the real
database, only its start delayed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.conftest import Clock
from tests.enrollments import enroll_active
from totpd import calls, deadlines
from totpd.crypto import Keyring
from totpd.service.mfa import MfaService
from totpd.service.policy import Policy
from totpd.service.types import Enrollment, VerifyItem, VerifyOutcome
from totpd.store import AttemptRequest, CandidateFactor, FactorStore

WAIT = 30.0  # the longest any step of these tests waits for another thread


def coalescing_service(
    engine: Engine, keyring: Keyring, policy: Policy, clock: Clock
) -> MfaService:
    """A real service with coalescing on."""
    return MfaService(FactorStore(engine), keyring, policy, clock, coalesce_verify=True)


def failed(service: MfaService, enrollment: Enrollment) -> int:
    """The factor's failed attempts, as stored."""
    factor_id = enrollment.factor.factor_id
    return service.deps.store.get_many([factor_id])[factor_id].failed_attempts


def enrolled(service: MfaService, clock: Clock, account_id: str, count: int) -> list[Enrollment]:
    """`count` active factors, each of an account of its own."""
    return [enroll_active(service, clock, f"{account_id}-{n}") for n in range(count)]


@dataclass(frozen=True)
class Call:
    caller: str
    item: VerifyItem
    deadline: float | None = None  # seconds, from when the call starts


class HeldRound:
    """Hold the first round's read until released; record every round's size."""

    def __init__(self, service: MfaService, monkeypatch: pytest.MonkeyPatch) -> None:
        attempts = service.deps.store.attempts
        real = attempts.read
        self.sizes: list[int] = []
        self.release = threading.Event()
        self.holding = threading.Event()

        def read(requests: Sequence[AttemptRequest], **kwargs: Any) -> list[CandidateFactor]:
            self.sizes.append(len(requests))
            if len(self.sizes) == 1:
                self.holding.set()
                assert self.release.wait(WAIT)
            return real(requests, **kwargs)

        monkeypatch.setattr(attempts, "read", read)


def verify_as(service: MfaService, call: Call, tenant: str = "default") -> object:
    """The call's outcome, or the exception it raised (made as `call.caller`)."""
    scope = calls.CallScope(call.caller, tenant, "ipv4:127.0.0.1:1", "Verify")
    try:
        with calls.scoped(scope), deadlines.within(call.deadline):
            return service.verify(call.item, caller=call.caller)
    except Exception as error:  # the test asserts on it
        return error


def run_behind_a_held_round(
    service: MfaService,
    held: HeldRound,
    first: Call,
    waiting: Sequence[Call],
    *,
    queued: int | None = None,
    hold_after_queued: float = 0.0,
) -> list[object]:
    """`first` leads a round held at its read; `waiting` start and queue behind it
    (`queued` of them: the others fail before they queue); then the round goes on.
    Returns every call's outcome, `first`'s first."""
    outcomes: list[object] = [None] * (1 + len(waiting))

    def run(index: int, call: Call) -> None:
        outcomes[index] = verify_as(service, call)

    leader = threading.Thread(target=run, args=(0, first))
    leader.start()
    assert held.holding.wait(WAIT)
    threads = [threading.Thread(target=run, args=(n + 1, call)) for n, call in enumerate(waiting)]
    for thread in threads:
        thread.start()
    coalescer = service.coalescer
    assert coalescer is not None
    expected = len(waiting) if queued is None else queued
    ends = time.monotonic() + WAIT
    while coalescer.waiting("default") < expected:
        assert time.monotonic() < ends, "the calls never queued"
        time.sleep(0.005)
    time.sleep(hold_after_queued)
    held.release.set()
    for thread in [leader, *threads]:
        thread.join(WAIT)
        assert not thread.is_alive()
    return outcomes


def results(outcomes: Sequence[object]) -> list[object]:
    """Each outcome's result, an error's reason or an exception's type."""
    found: list[object] = []
    for outcome in outcomes:
        if isinstance(outcome, VerifyOutcome):
            found.append(outcome.result)
        else:
            found.append(getattr(outcome, "reason", type(outcome)))
    return found
