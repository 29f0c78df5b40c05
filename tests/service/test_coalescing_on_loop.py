"""Verify calls coalesced as coroutines on an event loop (`Coalescer.verify_on_loop`,
the rpc layer's path): they share rounds without a thread each, and each keeps
its verdict, its deadline and its caller's limit, also when it is cancelled.
On both databases, with real rounds on the real round threads."""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.audit_rows import verdict_events
from tests.conftest import Clock
from tests.service.coalesced import WAIT, HeldRound, coalescing_service, enrolled, failed, results
from tests.totp_oracle import code_at, wrong_code
from totpd import calls, deadlines
from totpd.crypto import Keyring
from totpd.service import coalescing
from totpd.service.errors import ErrorReason
from totpd.service.mfa import MfaService
from totpd.service.policy import Policy
from totpd.service.types import Enrollment, VerifyItem, VerifyResult
from totpd.store import AttemptRequest, CandidateFactor
from totpd.store.deadline import DeadlineExceededError

VALID, INVALID = VerifyResult.VALID, VerifyResult.INVALID


@pytest.fixture
def service(engine: Engine, keyring: Keyring, policy: Policy, clock: Clock) -> MfaService:
    return coalescing_service(engine, keyring, policy, clock)


def item(enrollment: Enrollment, clock: Clock, *, wrong: bool = False) -> VerifyItem:
    code = code_at(enrollment, clock.now)
    return VerifyItem(enrollment.factor.account_id, wrong_code(code) if wrong else code)


def call_on_loop(
    service: MfaService, caller: str, verify: VerifyItem, deadline: float = WAIT
) -> asyncio.Task[Any]:
    """A Verify call as the rpc layer makes it: a task of its own, in its caller's
    scope and under its deadline; its result is the outcome or the exception."""
    scope = calls.CallScope(caller, "default", "ipv4:127.0.0.1:1", "Verify")

    async def run() -> object:
        try:
            return await service.verify_on_loop(verify, caller=caller)
        except Exception as error:  # the test asserts on it
            return error

    context = contextvars.copy_context()
    context.run(calls.enter, scope)
    context.run(deadlines.begin, deadline)
    return asyncio.get_running_loop().create_task(run(), context=context)


def round_sizes(service: MfaService, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    attempts = service.deps.store.attempts
    real = attempts.read
    sizes: list[int] = []

    def read(requests: Sequence[AttemptRequest], **kwargs: Any) -> list[CandidateFactor]:
        sizes.append(len(requests))
        return real(requests, **kwargs)

    monkeypatch.setattr(attempts, "read", read)
    return sizes


async def until(condition: Any) -> None:
    """Wait on the loop (never blocking it) until `condition()` holds."""
    for _ in range(int(WAIT / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the condition never held")


async def held_open(held: HeldRound) -> None:
    """Wait, off the loop, until the held round is at its read."""
    assert await asyncio.to_thread(held.holding.wait, WAIT)


def test_calls_on_the_loop_share_rounds(
    engine: Engine,
    service: MfaService,
    clock: Clock,
    account_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Six calls arriving together on a quiet tenant: the first starts a round at
    once, the others share what follows; each its own verdict and event."""
    factors = enrolled(service, clock, account_id, 6)
    before = len(verdict_events(engine))
    sizes = round_sizes(service, monkeypatch)

    async def scenario() -> list[object]:
        tasks = [
            call_on_loop(service, f"c{n}", item(e, clock, wrong=n % 2 == 1))
            for n, e in enumerate(factors)
        ]
        return list(await asyncio.gather(*tasks))

    outcomes = asyncio.run(scenario())

    assert sum(sizes) == 6 and len(sizes) < 6
    assert results(outcomes) == [VALID, INVALID] * 3
    assert [failed(service, e) for e in factors] == [0, 1] * 3
    added = verdict_events(engine)[before:]
    assert sorted(e["caller"] for e in added) == [f"c{n}" for n in range(6)]


def test_under_load_a_round_waits_for_the_calls_arriving_with_it(
    service: MfaService, clock: Clock, account_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a round of several calls, the next one to start waits `GATHER_SECONDS`
    (long here): the six calls arriving together all share it."""
    first, *queued = enrolled(service, clock, account_id, 4)
    wave = enrolled(service, clock, account_id + "-wave", 6)
    monkeypatch.setattr(coalescing, "GATHER_SECONDS", 0.2)
    held = HeldRound(service, monkeypatch)

    async def scenario() -> list[object]:
        leader = call_on_loop(service, "leader", item(first, clock))
        await held_open(held)
        busy = [call_on_loop(service, "c", item(e, clock)) for e in queued]
        coalescer = service.coalescer
        assert coalescer is not None
        await until(lambda: coalescer.waiting("default") == len(queued))
        held.release.set()
        await asyncio.gather(leader, *busy)
        await asyncio.to_thread(_rounds_ended, service)
        return list(
            await asyncio.gather(*(call_on_loop(service, "c", item(e, clock)) for e in wave))
        )

    outcomes = asyncio.run(scenario())

    assert held.sizes == [1, 3, 6]
    assert results(outcomes) == [VALID] * 6


def test_a_quiet_tenants_call_starts_its_round_at_once(
    service: MfaService, clock: Clock, account_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No window for a call that comes alone: a quiet server adds no latency."""
    (factor,) = enrolled(service, clock, account_id, 1)
    monkeypatch.setattr(coalescing, "GATHER_SECONDS", WAIT)

    async def scenario() -> object:
        return await asyncio.wait_for(call_on_loop(service, "c", item(factor, clock)), WAIT / 2)

    assert results([asyncio.run(scenario())]) == [VALID]


def test_same_account_calls_on_the_loop_take_turns_one_valid(
    service: MfaService, clock: Clock, account_id: str
) -> None:
    (factor,) = enrolled(service, clock, account_id, 1)
    code = item(factor, clock)

    async def scenario() -> list[object]:
        return list(await asyncio.gather(*(call_on_loop(service, "c", code) for _ in range(8))))

    found = results(asyncio.run(scenario()))
    assert found.count(VALID) == 1
    # The others are replays, until replays (failures) put the factor in backoff.
    assert set(found) == {VALID, VerifyResult.REPLAYED, VerifyResult.LOCKED}


def test_a_call_whose_deadline_passes_while_it_waits_on_the_loop_is_not_checked(
    service: MfaService, clock: Clock, account_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It ends at its deadline, while the round ahead of it is still held."""
    first, short = enrolled(service, clock, account_id, 2)
    held = HeldRound(service, monkeypatch)

    async def scenario() -> list[object]:
        leader = call_on_loop(service, "leader", item(first, clock))
        await held_open(held)
        waiting = call_on_loop(service, "c", item(short, clock), deadline=0.2)
        outcome = await asyncio.wait_for(waiting, WAIT)
        assert not leader.done()  # ended at its own deadline, not by the round
        held.release.set()
        return [await leader, outcome]

    outcomes = asyncio.run(scenario())

    assert results(outcomes) == [VALID, DeadlineExceededError]
    assert held.sizes == [1]  # the short call never reached a round
    assert service.verify(item(short, clock)).result is VALID


def test_a_cancelled_call_still_waiting_is_withdrawn(
    service: MfaService, clock: Clock, account_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, gone = enrolled(service, clock, account_id, 2)
    held = HeldRound(service, monkeypatch)
    coalescer = service.coalescer
    assert coalescer is not None

    async def scenario() -> object:
        leader = call_on_loop(service, "leader", item(first, clock))
        await held_open(held)
        waiting = call_on_loop(service, "c", item(gone, clock, wrong=True))
        await until(lambda: coalescer.waiting("default") == 1)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert coalescer.waiting("default") == 0
        held.release.set()
        return await leader

    assert results([asyncio.run(scenario())]) == [VALID]
    assert held.sizes == [1]
    assert failed(service, gone) == 0  # never compared, never counted


def test_a_call_cancelled_in_its_round_counts_its_failure_against_its_caller(
    engine: Engine,
    keyring: Keyring,
    clock: Clock,
    account_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The round it joined runs on: its wrong code is counted on the factor, and
    its caller's room is spent by it, as if the client had waited."""
    policy = Policy(caller_failures_per_second=1, caller_failure_burst=1, max_batch_items=1)
    service = coalescing_service(engine, keyring, policy, clock)
    guessed, other = enrolled(service, clock, account_id, 2)
    held = HeldRound(service, monkeypatch)

    async def scenario() -> object:
        call = call_on_loop(service, "greedy", item(guessed, clock, wrong=True))
        await held_open(held)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        held.release.set()
        await asyncio.to_thread(_rounds_ended, service)
        return await call_on_loop(service, "greedy", item(other, clock, wrong=True))

    again = asyncio.run(scenario())

    assert failed(service, guessed) == 1
    assert results([again]) == [ErrorReason.RATE_LIMITED]  # the room was spent


def _rounds_ended(service: MfaService) -> None:
    """Wait until no round of the tenant runs (the last hand-over is done)."""
    coalescer = service.coalescer
    assert coalescer is not None
    ends = time.monotonic() + WAIT
    while coalescer.rounds_running("default"):
        assert time.monotonic() < ends, "the round never ended"
        time.sleep(0.005)
