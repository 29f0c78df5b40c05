"""Concurrent unary Verify calls share rounds (service/coalescing.py), and each
keeps what is its own: its verdict, its caller's limit, its audit event, its
errors and its deadline. On both databases, with real rounds."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.audit_rows import verdict_events
from tests.conftest import Clock
from tests.service.coalesced import (
    Call,
    HeldRound,
    coalescing_service,
    enrolled,
    failed,
    results,
    run_behind_a_held_round,
    verify_as,
)
from tests.service.test_batch_faults import DOWN, failing_after
from tests.totp_oracle import code_at, wrong_code
from totpd.config.settings import ConfigError
from totpd.config.sources import load_settings
from totpd.crypto import Keyring
from totpd.service.errors import ErrorReason
from totpd.service.mfa import MfaService
from totpd.service.policy import Policy
from totpd.service.types import Enrollment, VerifyItem, VerifyResult
from totpd.store import Attempts, FactorStore
from totpd.store.deadline import DeadlineExceededError
from totpd.store.errors import StoreUnavailableError

VALID, INVALID, REPLAYED = VerifyResult.VALID, VerifyResult.INVALID, VerifyResult.REPLAYED


@pytest.fixture
def service(engine: Engine, keyring: Keyring, policy: Policy, clock: Clock) -> MfaService:
    return coalescing_service(engine, keyring, policy, clock)


def test_calls_waiting_behind_a_round_share_the_next_one(
    engine: Engine,
    service: MfaService,
    clock: Clock,
    account_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One read for the five waiting calls; each its own verdict, count and event."""
    first, *others = enrolled(service, clock, account_id, 6)
    before = len(verdict_events(engine))
    held = HeldRound(service, monkeypatch)
    waiting = [
        Call(f"caller-{n}", VerifyItem(e.factor.account_id, code_at(e, clock.now)))
        if n % 2 == 0
        else Call(f"caller-{n}", VerifyItem(e.factor.account_id, wrong_code(code_at(e, clock.now))))
        for n, e in enumerate(others)
    ]
    leader = Call("leader", VerifyItem(first.factor.account_id, code_at(first, clock.now)))
    outcomes = run_behind_a_held_round(service, held, leader, waiting)

    assert held.sizes == [1, 5]
    assert results(outcomes) == [VALID, VALID, INVALID, VALID, INVALID, VALID]
    assert [failed(service, e) for e in others] == [0, 1, 0, 1, 0]
    # One event per verdict, with its own call's caller.
    added = verdict_events(engine)[before:]
    seen = {(e["account_id"], e["caller"], e["verify_result"]) for e in added}
    expected = {(leader.item.account_id, "leader", "VALID")} | {
        (call.item.account_id, call.caller, result.name)
        for call, result in zip(waiting, [VALID, INVALID, VALID, INVALID, VALID], strict=True)
    }
    assert len(added) == 6
    assert seen == expected


def test_same_account_calls_take_turns_one_valid(
    service: MfaService, clock: Clock, account_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four calls with one code for each of two accounts wait together: one round
    per turn takes one call of each account; exactly one VALID per account."""
    first, one, two = enrolled(service, clock, account_id, 3)
    held = HeldRound(service, monkeypatch)
    waiting = [
        Call(f"c{n}", VerifyItem(e.factor.account_id, code_at(e, clock.now)))
        for n in range(4)
        for e in (one, two)
    ]
    leader = Call("leader", VerifyItem(first.factor.account_id, code_at(first, clock.now)))
    outcomes = run_behind_a_held_round(service, held, leader, waiting)

    assert held.sizes == [1, 2, 2, 2, 2]
    for account in (one, two):
        mine = [
            result
            for call, result in zip(waiting, results(outcomes[1:]), strict=True)
            if call.item.account_id == account.factor.account_id
        ]
        counts = Counter(mine)
        assert counts[VALID] == 1
        assert set(counts) <= {VALID, REPLAYED, VerifyResult.LOCKED}


@pytest.mark.parametrize("rounds", [1, 3])
@pytest.mark.parametrize("accounts", [1, 3])
def test_many_threads_one_valid_per_account(
    engine: Engine,
    keyring: Keyring,
    clock: Clock,
    account_id: str,
    accounts: int,
    rounds: int,
) -> None:
    """Free-running threads (coalesced however they meet, `rounds` at once): one
    VALID per account and one event per verdict."""
    store = FactorStore(engine)
    service = MfaService(
        store, keyring, Policy(), clock, coalesce_verify=True, verify_rounds_in_flight=rounds
    )
    enrollments = enrolled(service, clock, account_id, accounts)
    before = len(verdict_events(engine))
    per_account = 12
    barrier = threading.Barrier(accounts * per_account)
    outcomes: list[object] = []
    lock = threading.Lock()

    def attempt(enrollment: Enrollment) -> None:
        barrier.wait(timeout=30)
        item = VerifyItem(enrollment.factor.account_id, code_at(enrollment, clock.now))
        outcome = verify_as(service, Call("racer", item))
        with lock:
            outcomes.append((enrollment.factor.account_id, outcome))

    threads = [
        threading.Thread(target=attempt, args=(e,)) for e in enrollments for _ in range(per_account)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(outcomes) == accounts * per_account
    for enrollment in enrollments:
        mine = results([o for a, o in outcomes if a == enrollment.factor.account_id])
        assert Counter(mine)[VALID] == 1
        assert set(mine) <= {VALID, REPLAYED, VerifyResult.LOCKED}
    assert len(verdict_events(engine)) - before == accounts * per_account


def test_caller_limits_are_spent_per_caller_across_a_round(
    engine: Engine,
    keyring: Keyring,
    clock: Clock,
    account_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A caller with room for 3 failures sends 4 wrong codes while a round runs:
    3 join the next round, the 4th is RATE_LIMITED at once; another caller in the
    same round is not held back, and the room is spent by the failures only."""
    policy = Policy(caller_failures_per_second=1, caller_failure_burst=3, max_batch_items=3)
    service = coalescing_service(engine, keyring, policy, clock)
    first, *others = enrolled(service, clock, account_id, 6)
    held = HeldRound(service, monkeypatch)

    def wrong(caller: str, enrollment: Enrollment) -> Call:
        code = wrong_code(code_at(enrollment, clock.now))
        return Call(caller, VerifyItem(enrollment.factor.account_id, code))

    greedy = [wrong("greedy", e) for e in others[:4]]
    polite = Call("polite", VerifyItem(others[4].factor.account_id, code_at(others[4], clock.now)))
    leader = wrong("leader", first)
    outcomes = run_behind_a_held_round(service, held, leader, [*greedy, polite], queued=4)

    found = results(outcomes)
    assert found[0] is INVALID and found[5] is VALID
    assert Counter(found[1:5]) == Counter({INVALID: 3, ErrorReason.RATE_LIMITED: 1})
    assert held.sizes == [1, 4]
    # Three failures spent greedy's room; polite's success spent none of its own.
    again = verify_as(service, wrong("greedy", others[0]))
    assert results([again]) == [ErrorReason.RATE_LIMITED]
    assert results([verify_as(service, wrong("polite", others[4]))]) == [INVALID]


def test_a_store_fault_fails_every_call_of_the_round_and_counts_nothing(
    service: MfaService, clock: Clock, account_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, *others = enrolled(service, clock, account_id, 4)
    held = HeldRound(service, monkeypatch)
    monkeypatch.setattr(
        Attempts, "write_if_unchanged", failing_after(1, Attempts.write_if_unchanged, DOWN)
    )
    codes = [code_at(e, clock.now) for e in others]
    waiting = [
        Call("c", VerifyItem(others[0].factor.account_id, codes[0])),
        Call("c", VerifyItem(others[1].factor.account_id, wrong_code(codes[1]))),
        Call("c", VerifyItem(others[2].factor.account_id, wrong_code(codes[2]))),
    ]
    leader = Call("leader", VerifyItem(first.factor.account_id, code_at(first, clock.now)))
    outcomes = run_behind_a_held_round(service, held, leader, waiting)
    monkeypatch.undo()

    assert results(outcomes) == [VALID, *[StoreUnavailableError] * 3]
    assert [failed(service, e) for e in others] == [0, 0, 0]
    assert service.verify(VerifyItem(others[0].factor.account_id, codes[0])).result is VALID


def test_a_calls_own_error_stays_its_own(
    engine: Engine,
    service: MfaService,
    clock: Clock,
    account_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An unknown account and a malformed code in a round: the others get their verdicts."""
    first, one = enrolled(service, clock, account_id, 2)
    before = len(verdict_events(engine))
    held = HeldRound(service, monkeypatch)
    waiting = [
        Call("c", VerifyItem(account_id + "-nobody", "123456")),
        Call("c", VerifyItem(one.factor.account_id, code_at(one, clock.now))),
        Call("c", VerifyItem(one.factor.account_id, "12 456")),  # never queues
    ]
    leader = Call("leader", VerifyItem(first.factor.account_id, code_at(first, clock.now)))
    outcomes = run_behind_a_held_round(service, held, leader, waiting, queued=2)

    assert results(outcomes) == [
        VALID,
        ErrorReason.ACCOUNT_NOT_FOUND,
        VALID,
        ErrorReason.MALFORMED_CODE,
    ]
    assert held.sizes == [1, 2]
    assert len(verdict_events(engine)) - before == 2  # errors decide nothing


def test_a_call_whose_deadline_passes_while_it_waits_is_not_checked(
    service: MfaService, clock: Clock, account_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, one, two = enrolled(service, clock, account_id, 3)
    held = HeldRound(service, monkeypatch)
    short = Call("c", VerifyItem(one.factor.account_id, code_at(one, clock.now)), deadline=0.2)
    wrong = wrong_code(code_at(two, clock.now))
    patient = Call("c", VerifyItem(two.factor.account_id, wrong), deadline=30)
    leader = Call("leader", VerifyItem(first.factor.account_id, code_at(first, clock.now)))
    outcomes = run_behind_a_held_round(
        service, held, leader, [short, patient], hold_after_queued=0.4
    )

    assert results(outcomes) == [VALID, DeadlineExceededError, INVALID]
    assert held.sizes == [1, 1]  # the short call never reached a round
    assert failed(service, one) == 0 and failed(service, two) == 1
    assert service.verify(short.item).result is VALID


def test_a_round_cut_by_one_calls_deadline_runs_the_others_alone(
    service: MfaService, clock: Clock, account_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The round runs under its earliest deadline; the write arrives after it
    (nothing stored); the call with time left gets its verdict from a round of
    its own, the late one DEADLINE_EXCEEDED with nothing consumed."""
    first, one, two = enrolled(service, clock, account_id, 3)
    held = HeldRound(service, monkeypatch)
    real = Attempts.write_if_unchanged
    writes = [0]

    def late_second_write(self: Attempts, *args: Any, **kwargs: Any) -> Any:
        writes[0] += 1
        if writes[0] == 2:
            time.sleep(0.6)  # past the short call's deadline
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Attempts, "write_if_unchanged", late_second_write)
    short = Call("c", VerifyItem(one.factor.account_id, code_at(one, clock.now)), deadline=0.5)
    patient = Call("c", VerifyItem(two.factor.account_id, code_at(two, clock.now)), deadline=30)
    leader = Call("leader", VerifyItem(first.factor.account_id, code_at(first, clock.now)))
    outcomes = run_behind_a_held_round(service, held, leader, [short, patient])
    monkeypatch.undo()

    assert results(outcomes) == [VALID, DeadlineExceededError, VALID]
    assert held.sizes == [1, 2, 1]
    assert failed(service, one) == 0
    assert service.verify(short.item).result is VALID
    assert service.verify(patient.item).result is REPLAYED


def test_the_settings_turn_coalescing_on(engine: Engine, keyring: Keyring, clock: Clock) -> None:
    off = MfaService(FactorStore(engine), keyring, Policy(), clock)
    assert off.coalescer is None  # the default
    settings = load_settings(None, {}, {"TOTPD_COALESCE_VERIFY": "true"})
    assert settings.coalesce_verify is True and settings.coalesces_verify is True


@pytest.mark.parametrize(
    ("value", "database_url", "coalesces"),
    [
        (None, "", True),  # auto, the embedded default: SQLite
        ("auto", "sqlite:////srv/totpd/totpd.sqlite3", True),
        (None, "postgresql+psycopg://totpd@db/totpd", True),  # auto: on for both
        ("AUTO", "postgresql+psycopg://totpd@db/totpd", True),
        ("false", "", False),
        ("true", "postgresql+psycopg://totpd@db/totpd", True),
    ],
)
def test_coalescing_by_default_on_both_databases(
    value: str | None, database_url: str, coalesces: bool
) -> None:
    env = {"TOTPD_DATABASE_URL": database_url}
    if value is not None:
        env["TOTPD_COALESCE_VERIFY"] = value
    settings = load_settings(None, {}, env)
    assert settings.coalesces_verify is coalesces
    if value is None or value.lower() == "auto":
        assert settings.coalesce_verify is None


@pytest.mark.parametrize("value", ["sometimes", "2", "automatic"])
def test_coalescing_refuses_a_value_it_does_not_know(value: str) -> None:
    with pytest.raises(ConfigError, match=r"coalesce_verify.*true/false.*auto"):
        load_settings(None, {}, {"TOTPD_COALESCE_VERIFY": value})


def test_verify_rounds_in_flight_is_bounded() -> None:
    rounds = {"TOTPD_VERIFY_ROUNDS_IN_FLIGHT": "3"}
    assert load_settings(None, {}, rounds).verify_rounds_in_flight == 3
    with pytest.raises(ConfigError, match="verify_rounds_in_flight"):
        load_settings(None, {}, {"TOTPD_VERIFY_ROUNDS_IN_FLIGHT": "0"})
