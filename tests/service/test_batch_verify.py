"""BatchVerify: exactly the semantics of Verify per item, vectorised."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.conftest import Clock
from tests.enrollments import enroll_active
from tests.service.conftest import results_of
from tests.totp_oracle import code_at, wrong_code
from totpd.crypto import Keyring, write_new_keyring
from totpd.service.errors import ErrorReason, TotpdError
from totpd.service.mfa import MfaService
from totpd.service.policy import Policy
from totpd.service.types import Enrollment, EnrollParams, VerifyItem, VerifyOutcome, VerifyResult
from totpd.store import Attempts, FactorStore


def test_items_answered_in_order_with_their_own_verdicts(
    service: MfaService, clock: Clock, account_id: str
) -> None:
    alice = enroll_active(service, clock, account_id + "-a")
    bob = enroll_active(service, clock, account_id + "-b")
    items = [
        VerifyItem(account_id + "-a", code_at(alice, clock.now)),
        VerifyItem(account_id + "-b", wrong_code(code_at(bob, clock.now))),
        VerifyItem(account_id + "-b", "12 456"),
        VerifyItem("no such account", "123456"),
        VerifyItem(account_id + "-nobody", "123456"),
        VerifyItem(account_id + "-a", code_at(alice, clock.now)),
        VerifyItem(account_id + "-b", code_at(bob, clock.now), bob.factor.factor_id),
        VerifyItem(account_id + "-a", "123456", "not-a-uuid"),
    ]
    outcomes = service.verify_batch(items)
    assert results_of(outcomes) == [
        VerifyResult.VALID,
        VerifyResult.INVALID,
        ErrorReason.MALFORMED_CODE,
        ErrorReason.INVALID_ARGUMENT,
        ErrorReason.ACCOUNT_NOT_FOUND,
        VerifyResult.REPLAYED,
        VerifyResult.VALID,
        ErrorReason.INVALID_ARGUMENT,
    ]
    first = outcomes[0]
    assert isinstance(first, VerifyOutcome) and first.factor_id == alice.factor.factor_id
    wrong = outcomes[1]
    assert isinstance(wrong, VerifyOutcome)
    assert wrong.attempts_left == service.policy.lock_after_failures - 1
    # The success of item 6 reset bob's failure from item 1, as a unary call would.
    again = service.verify(VerifyItem(account_id + "-b", wrong_code(code_at(bob, clock.now))))
    assert again.attempts_left == service.policy.lock_after_failures - 1


def test_batch_counts_like_sequential_calls(
    service: MfaService, clock: Clock, account_id: str
) -> None:
    enrollment = enroll_active(service, clock, account_id)
    wrong = wrong_code(code_at(enrollment, clock.now))
    limit = service.policy.lock_after_failures
    outcomes = service.verify_batch([VerifyItem(account_id, wrong)] * 4)
    assert results_of(outcomes) == [VerifyResult.INVALID] * 3 + [VerifyResult.LOCKED]
    assert [o.attempts_left for o in outcomes if isinstance(o, VerifyOutcome)] == [
        limit - 1,
        limit - 2,
        limit - 3,
        limit - 3,
    ]


def test_items_after_a_lock_are_answered_without_more_rounds(
    service: MfaService, clock: Clock, account_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    six = enroll_active(service, clock, account_id)
    eight = enroll_active(service, clock, account_id, "tablet", digits=8)
    wrong = wrong_code(code_at(six, clock.now))
    reads = 0
    real_read = Attempts.read

    def counting_read(self: Attempts, *args: object, **kwargs: object) -> object:
        nonlocal reads
        reads += 1
        return real_read(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Attempts, "read", counting_read)
    # 40 wrong 6-digit codes, then a good 8-digit one: the 8-digit factor
    # was never a candidate of the locked items, so it is still judged.
    items = [VerifyItem(account_id, wrong)] * 40 + [
        VerifyItem(account_id, code_at(eight, clock.now))
    ]
    outcomes = service.verify_batch(items)

    assert results_of(outcomes) == (
        [VerifyResult.INVALID] * 3 + [VerifyResult.LOCKED] * 37 + [VerifyResult.VALID]
    )
    locked = [o for o in outcomes if isinstance(o, VerifyOutcome)][3:40]
    assert len({(o.attempts_left, o.retry_after_seconds) for o in locked}) == 1
    assert reads == 5  # 3 counted, 1 locked, then the 8-digit item: not 41 rounds


def test_a_lock_on_one_named_factor_answers_only_items_naming_it(
    service: MfaService, clock: Clock, account_id: str
) -> None:
    phone = enroll_active(service, clock, account_id)
    tablet = enroll_active(service, clock, account_id, "tablet")
    period = tablet.factor.period_seconds
    wrong = wrong_code(code_at(phone, clock.now))
    items = [VerifyItem(account_id, wrong, phone.factor.factor_id)] * 5 + [
        # Account-wide: the phone is blocked, so only the tablet is compared.
        VerifyItem(account_id, code_at(tablet, clock.now)),
        # Naming the tablet, which is not blocked: judged (the next step, in the window).
        VerifyItem(account_id, code_at(tablet, clock.now + period), tablet.factor.factor_id),
    ]
    outcomes = service.verify_batch(items)
    assert results_of(outcomes) == (
        [VerifyResult.INVALID] * 3 + [VerifyResult.LOCKED] * 2 + [VerifyResult.VALID] * 2
    )


def test_a_lock_found_while_explaining_is_not_copied_to_later_items(
    service: MfaService, clock: Clock, account_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An item the round's read found no candidate for is explained by a second
    read, which can race (here another client confirms the factor in between)
    and answer LOCKED: later items still get a round of their own."""
    pending = service.enroll(EnrollParams(account_id, "phone"))
    factor_id = pending.factor.factor_id
    real_read = Attempts.read
    reads = 0

    def confirm_after_first_read(self: Attempts, *args: Any, **kwargs: Any) -> Any:
        nonlocal reads
        rows = real_read(self, *args, **kwargs)
        reads += 1
        if reads == 1:
            service.confirm(account_id, factor_id, code_at(pending, clock.now))
        return rows

    monkeypatch.setattr(Attempts, "read", confirm_after_first_read)
    later = code_at(pending, clock.now + pending.factor.period_seconds)  # next step, in window
    outcomes = service.verify_batch(
        [VerifyItem(account_id, "000000", factor_id), VerifyItem(account_id, later, factor_id)]
    )
    assert results_of(outcomes) == [VerifyResult.LOCKED, VerifyResult.VALID]


def test_batch_too_large_is_refused_before_any_work(
    engine: Engine, keyring: Keyring, clock: Clock, account_id: str
) -> None:
    service = MfaService(FactorStore(engine), keyring, Policy(max_batch_items=3), clock)
    enrollment = enroll_active(service, clock, account_id)
    wrong = wrong_code(code_at(enrollment, clock.now))
    with pytest.raises(TotpdError) as caught:
        service.verify_batch([VerifyItem(account_id, wrong)] * 4)
    assert caught.value.reason is ErrorReason.BATCH_TOO_LARGE
    outcome = service.verify(VerifyItem(account_id, wrong))
    assert outcome.attempts_left == service.policy.lock_after_failures - 1


def test_many_accounts_in_one_batch(service: MfaService, clock: Clock, account_id: str) -> None:
    enrollments = [enroll_active(service, clock, f"{account_id}-{n}") for n in range(30)]
    clock.advance(30)
    items = [
        VerifyItem(f"{account_id}-{n}", code_at(e, clock.now) if n % 3 else "000000")
        for n, e in enumerate(enrollments)
    ]
    outcomes = service.verify_batch(items)
    for n, (enrollment, outcome) in enumerate(zip(enrollments, outcomes, strict=True)):
        assert isinstance(outcome, VerifyOutcome)
        if n % 3:
            assert outcome.result is VerifyResult.VALID
            assert outcome.factor_id == enrollment.factor.factor_id
        elif code_at(enrollment, clock.now) != "000000":
            assert outcome.result is VerifyResult.INVALID


def test_secret_that_cannot_be_opened_fails_closed_for_its_item_only(
    engine: Engine, keyring: Keyring, clock: Clock, account_id: str, tmp_path: Path
) -> None:
    service = MfaService(FactorStore(engine), keyring, Policy(), clock)
    alice = enroll_active(service, clock, account_id + "-a")
    bob = enroll_active(service, clock, account_id + "-b")
    other_path = tmp_path / "other-keyring.json"
    write_new_keyring(other_path)
    wrong_keys = MfaService(FactorStore(engine), Keyring.load(other_path), Policy(), clock)
    outcomes = wrong_keys.verify_batch(
        [
            VerifyItem(account_id + "-a", code_at(alice, clock.now)),
            VerifyItem(account_id + "-b", "123456", "0" * 8 + "-0000-0000-0000-" + "0" * 12),
        ]
    )
    assert results_of(outcomes) == [ErrorReason.SECRET_UNAVAILABLE, ErrorReason.FACTOR_NOT_FOUND]
    with pytest.raises(TotpdError) as caught:
        wrong_keys.verify(VerifyItem(account_id + "-b", code_at(bob, clock.now)))
    assert caught.value.reason is ErrorReason.SECRET_UNAVAILABLE
    # The right keyring still verifies: nothing was consumed by the failed attempts.
    assert service.verify(VerifyItem(account_id + "-a", code_at(alice, clock.now))).result is (
        VerifyResult.VALID
    )


def _race(calls: list[object]) -> list[VerifyResult]:
    """Run each call at once on its own thread; collect every item's verdict."""
    barrier = threading.Barrier(len(calls))
    verdicts: list[VerifyResult] = []
    lock = threading.Lock()

    def run(call: object) -> None:
        barrier.wait(timeout=30)
        produced = call()  # type: ignore[operator]
        with lock:
            for outcome in produced if isinstance(produced, list) else [produced]:
                assert isinstance(outcome, VerifyOutcome)
                verdicts.append(outcome.result)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return verdicts


def _same_code_items(enrollment: Enrollment, clock: Clock, count: int) -> list[VerifyItem]:
    return [VerifyItem(enrollment.factor.account_id, code_at(enrollment, clock.now))] * count


def test_same_code_twice_in_one_batch(service: MfaService, clock: Clock, account_id: str) -> None:
    enrollment = enroll_active(service, clock, account_id)
    outcomes = service.verify_batch(_same_code_items(enrollment, clock, 2))
    assert results_of(outcomes) == [VerifyResult.VALID, VerifyResult.REPLAYED]


def test_same_code_in_concurrent_batches(
    service: MfaService, clock: Clock, account_id: str
) -> None:
    enrollment = enroll_active(service, clock, account_id)
    items = _same_code_items(enrollment, clock, 1)
    verdicts = _race([lambda: service.verify_batch(items) for _ in range(8)])
    assert Counter(verdicts)[VerifyResult.VALID] == 1
    assert len(verdicts) == 8


def test_batch_racing_unary_verify(service: MfaService, clock: Clock, account_id: str) -> None:
    enrollment = enroll_active(service, clock, account_id)
    items = _same_code_items(enrollment, clock, 3)
    calls: list[object] = [lambda: service.verify_batch(items) for _ in range(4)]
    calls += [lambda: service.verify(items[0]) for _ in range(4)]
    verdicts = _race(calls)
    assert len(verdicts) == 16
    assert Counter(verdicts)[VerifyResult.VALID] == 1


def test_named_factor_and_two_factor_accounts_in_one_bulk_round(
    service: MfaService, engine: Engine, clock: Clock, account_id: str
) -> None:
    """The bulk lock (more than one item per round) honours a named factor, and
    an account with two factors compares both; as the unary tests do one by one."""
    phone = enroll_active(service, clock, account_id, "phone")
    tablet = enroll_active(service, clock, account_id, "tablet")
    other = enroll_active(service, clock, account_id + "-other")
    clock.advance(30)
    phone_code, tablet_code = code_at(phone, clock.now), code_at(tablet, clock.now)
    if phone_code == tablet_code:
        clock.advance(30)  # one in a million: the two devices agree on this step
        phone_code, tablet_code = code_at(phone, clock.now), code_at(tablet, clock.now)
    outcomes = service.verify_batch(
        [
            VerifyItem(account_id, phone_code, tablet.factor.factor_id),  # wrong device named
            VerifyItem(account_id + "-other", code_at(other, clock.now)),
        ]
    )
    assert results_of(outcomes) == [VerifyResult.INVALID, VerifyResult.VALID]
    store = FactorStore(engine)

    def failures() -> tuple[int, int]:
        rows = [store.get(e.factor.factor_id) for e in (phone, tablet)]
        return (rows[0].failed_attempts, rows[1].failed_attempts)  # type: ignore[union-attr]

    assert failures() == (0, 1)  # only the named tablet was compared
    outcomes = service.verify_batch(
        [
            VerifyItem(account_id, tablet_code),  # either device, no name
            VerifyItem(account_id + "-other", wrong_code(code_at(other, clock.now))),
        ]
    )
    assert results_of(outcomes) == [VerifyResult.VALID, VerifyResult.INVALID]
    first = outcomes[0]
    assert isinstance(first, VerifyOutcome) and first.factor_id == tablet.factor.factor_id
    assert failures() == (0, 0)  # the proof of possession reset every compared factor
