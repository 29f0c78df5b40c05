"""Resync on the real store (both databases), keyring and C core: the drift it measures,
the verifications centred on it, the attempt limits it shares with Verify, and
what it never does (reopen a used step, write on bad input, outlive its deadline)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from sqlalchemy import Engine, text

from tests.audit_rows import AUDIT_TRAIL
from tests.conftest import Clock
from tests.enrollments import enroll_active
from tests.hung_database import HangingDatabase, database, paused_postgres
from tests.service.conftest import Compared
from tests.service.test_verify import BAD_CODES
from tests.totp_oracle import code_at, wrong_code
from totpd import deadlines
from totpd.crypto import Keyring
from totpd.service.errors import ErrorReason, TotpdError
from totpd.service.mfa import MfaService
from totpd.service.policy import Policy
from totpd.service.types import Enrollment, EnrollParams, VerifyItem, VerifyResult
from totpd.store import Attempts, FactorStore, LockedRound, StoreError, open_engine
from totpd.store.deadline import DeadlineExceededError

__all__ = ["database", "paused_postgres"]  # fixtures

TABLES = ("factors", "accounts", "audit_calls", "audit_events")


def pair_at(enrollment: Enrollment, app_time: float) -> tuple[str, str]:
    """The app's last two codes when its clock reads `app_time`: the one before and
    the one it shows."""
    period = enrollment.factor.period_seconds
    return code_at(enrollment, app_time - period), code_at(enrollment, app_time)


def enrolled(service: MfaService, clock: Clock, account_id: str) -> Enrollment:
    """An active factor confirmed a day ago: every step around now is unused (the
    app's clock went wrong since)."""
    enrollment = enroll_active(service, clock, account_id)
    clock.advance(86400)
    return enrollment


def resync(service: MfaService, enrollment: Enrollment, codes: tuple[str, str]) -> tuple[Any, Any]:
    factor = enrollment.factor
    return service.resync(factor.account_id, factor.factor_id, *codes)


def stored(service: MfaService, enrollment: Enrollment) -> Any:
    factor_id = enrollment.factor.factor_id
    return service.deps.store.get_many([factor_id])[factor_id]


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as connection:
        return {
            table: sorted(
                (tuple(row) for row in connection.execute(text(f"SELECT * FROM {table}"))), key=repr
            )
            for table in TABLES
        }


@pytest.mark.parametrize(("app_ahead", "drift"), [(300, 10), (-420, -14), (600, 20), (-570, -19)])
def test_a_drifted_app_is_resynchronised_and_then_verifies(
    service: MfaService, clock: Clock, account_id: str, app_ahead: int, drift: int
) -> None:
    enrollment = enrolled(service, clock, account_id)
    outcome, factor = resync(service, enrollment, pair_at(enrollment, clock.now + app_ahead))
    assert outcome.result is VerifyResult.VALID
    assert outcome.step_offset == drift
    assert factor.drift_steps == drift
    assert service.get_factor(account_id, factor.factor_id).drift_steps == drift
    assert [f.drift_steps for f in service.list_factors(account_id, False)] == [drift]

    clock.advance(30)
    app_code = code_at(enrollment, clock.now + app_ahead)
    server_code = code_at(enrollment, clock.now)
    # The server's own step is now outside the window centred on the drift.
    assert service.verify(VerifyItem(account_id, server_code)).result is VerifyResult.INVALID
    # The pair's second step, in the window, was consumed by the resync.
    used = service.verify(VerifyItem(account_id, code_at(enrollment, clock.now - 30 + app_ahead)))
    assert used.result is VerifyResult.REPLAYED
    verified = service.verify(VerifyItem(account_id, app_code, factor.factor_id))
    assert verified.result is VerifyResult.VALID
    assert verified.step_offset == drift  # from the server's step, drift included


def test_a_batch_and_a_disable_centre_on_the_drift(
    service: MfaService, clock: Clock, account_id: str
) -> None:
    enrollment = enrolled(service, clock, account_id)
    assert resync(service, enrollment, pair_at(enrollment, clock.now + 240))[0].step_offset == 8
    clock.advance(30)
    (verdict,) = service.verify_batch(
        [VerifyItem(account_id, code_at(enrollment, clock.now + 240))]
    )
    assert not isinstance(verdict, TotpdError)
    assert verdict.result is VerifyResult.VALID
    clock.advance(30)
    outcome, disabled = service.disable(
        account_id, enrollment.factor.factor_id, code_at(enrollment, clock.now + 240), False
    )
    assert outcome.result is VerifyResult.VALID
    assert [f.factor_id for f in disabled] == [enrollment.factor.factor_id]


@pytest.mark.parametrize("app_ahead", [630, -630, 3600])
def test_codes_outside_the_range_are_invalid_and_counted(
    service: MfaService, clock: Clock, account_id: str, app_ahead: int
) -> None:
    enrollment = enrolled(service, clock, account_id)
    outcome, factor = resync(service, enrollment, pair_at(enrollment, clock.now + app_ahead))
    assert outcome.result is VerifyResult.INVALID
    assert outcome.attempts_left == service.policy.lock_after_failures - 1
    assert factor.drift_steps == 0
    assert stored(service, enrollment).failed_attempts == 1
    state = service.deps.store.account_state(account_id)
    assert state is not None and state.consecutive_failures == 1


def test_a_wider_range_setting_finds_a_farther_app(
    engine: Engine, keyring: Keyring, clock: Clock, account_id: str
) -> None:
    service = MfaService(FactorStore(engine), keyring, Policy(resync_range_seconds=1800), clock)
    enrollment = enrolled(service, clock, account_id)
    outcome, factor = resync(service, enrollment, pair_at(enrollment, clock.now - 1500))
    assert (outcome.result, factor.drift_steps) == (VerifyResult.VALID, -50)


def test_a_range_shorter_than_the_period_still_reaches_one_step(
    engine: Engine, keyring: Keyring, clock: Clock, account_id: str
) -> None:
    service = MfaService(FactorStore(engine), keyring, Policy(resync_range_seconds=60), clock)
    enrollment = enroll_active(service, clock, account_id, period_seconds=120)
    clock.advance(86400)
    codes = (code_at(enrollment, clock.now), code_at(enrollment, clock.now + 120))
    outcome, factor = resync(service, enrollment, codes)
    assert (outcome.result, factor.drift_steps) == (VerifyResult.VALID, 1)


def test_failed_resyncs_spend_the_callers_rate_of_failures(
    engine: Engine, keyring: Keyring, clock: Clock, account_id: str
) -> None:
    policy = Policy(caller_failures_per_second=1, caller_failure_burst=2, max_batch_items=2)
    service = MfaService(FactorStore(engine), keyring, policy, clock)
    enrollment = enrolled(service, clock, account_id)
    factor = enrollment.factor
    far = pair_at(enrollment, clock.now + 3000)
    for _ in range(2):
        outcome, _ = service.resync(account_id, factor.factor_id, *far, caller="app")
        assert outcome.result is VerifyResult.INVALID
    with pytest.raises(TotpdError) as caught:
        service.resync(account_id, factor.factor_id, *far, caller="app")
    assert caught.value.reason is ErrorReason.RATE_LIMITED
    assert stored(service, enrollment).failed_attempts == 2  # the refused call counted nothing
    # Another caller has its own room; a success gives back what it reserved.
    done, _ = service.resync(
        account_id, factor.factor_id, *pair_at(enrollment, clock.now), caller="other"
    )
    assert done.result is VerifyResult.VALID


def test_codes_that_are_not_consecutive_are_invalid(
    service: MfaService, clock: Clock, account_id: str
) -> None:
    enrollment = enrolled(service, clock, account_id)
    first, second = pair_at(enrollment, clock.now + 300)
    skipped = code_at(enrollment, clock.now + 300 - 60)
    for codes in ((skipped, second), (second, first), (second, second)):
        assert resync(service, enrollment, codes)[0].result is VerifyResult.INVALID
    assert stored(service, enrollment).failed_attempts == 3
    assert stored(service, enrollment).drift_steps == 0


def test_a_replayed_pair_is_counted_and_changes_nothing(
    service: MfaService, clock: Clock, account_id: str
) -> None:
    enrollment = enrolled(service, clock, account_id)
    codes = pair_at(enrollment, clock.now + 300)
    assert resync(service, enrollment, codes)[0].result is VerifyResult.VALID
    before = stored(service, enrollment)
    clock.advance(60)
    outcome, factor = resync(service, enrollment, codes)
    assert outcome.result is VerifyResult.REPLAYED
    assert outcome.factor_id == enrollment.factor.factor_id
    after = stored(service, enrollment)
    assert (after.drift_steps, after.last_used_step) == (10, before.last_used_step)
    assert after.failed_attempts == 1
    assert factor.drift_steps == 10


def test_a_resync_never_reopens_a_used_step(
    service: MfaService, clock: Clock, account_id: str
) -> None:
    """The app's newer code signed in; a pair ending at or before it is a replay,
    even though it would measure another drift."""
    enrollment = enrolled(service, clock, account_id)
    signed_in = service.verify(VerifyItem(account_id, code_at(enrollment, clock.now + 30)))
    assert (signed_in.result, signed_in.step_offset) == (VerifyResult.VALID, 1)
    outcome, factor = resync(service, enrollment, pair_at(enrollment, clock.now))
    assert outcome.result is VerifyResult.REPLAYED
    assert factor.drift_steps == 0


def test_a_resync_under_lock_compares_nothing_until_unlocked(
    engine: Engine, keyring: Keyring, clock: Clock, account_id: str, compared: Compared
) -> None:
    policy = Policy(max_consecutive_failures=3, backoff_base_seconds=0)
    service = MfaService(FactorStore(engine), keyring, policy, clock)
    enrollment = enrolled(service, clock, account_id)
    wrong = wrong_code(code_at(enrollment, clock.now))
    for _ in range(3):
        service.verify(VerifyItem(account_id, wrong))
    compared.take()
    factors_before = snapshot(engine)["factors"]

    outcome, _ = resync(service, enrollment, pair_at(enrollment, clock.now + 300))
    assert outcome.result is VerifyResult.LOCKED
    assert outcome.unlock_required
    assert compared.take() == 0
    assert snapshot(engine)["factors"] == factors_before

    unlocked = service.unlock(account_id)
    assert unlocked.lock_lifted
    outcome, factor = resync(service, enrollment, pair_at(enrollment, clock.now + 300))
    assert (outcome.result, factor.drift_steps) == (VerifyResult.VALID, 10)
    assert compared.take() > 0


def test_a_success_resets_the_failures(service: MfaService, clock: Clock, account_id: str) -> None:
    enrollment = enrolled(service, clock, account_id)
    service.verify(VerifyItem(account_id, wrong_code(code_at(enrollment, clock.now))))
    outcome, _ = resync(service, enrollment, pair_at(enrollment, clock.now - 120))
    assert outcome.result is VerifyResult.VALID
    assert stored(service, enrollment).failed_attempts == 0
    state = service.deps.store.account_state(account_id)
    assert state is not None and state.consecutive_failures == 0


def test_concurrent_resyncs_and_verifies_consume_a_step_once(
    service: MfaService, clock: Clock, account_id: str
) -> None:
    enrollment = enrolled(service, clock, account_id)
    codes = pair_at(enrollment, clock.now)  # the second: the server's current step
    barrier = threading.Barrier(8)
    results: list[tuple[str, VerifyResult]] = []
    lock = threading.Lock()

    def attempt(kind: str) -> None:
        barrier.wait(timeout=30)
        if kind == "resync":
            result = resync(service, enrollment, codes)[0].result
        else:
            result = service.verify(VerifyItem(account_id, codes[1])).result
        with lock:
            results.append((kind, result))

    threads = [threading.Thread(target=attempt, args=(k,)) for k in ["resync", "verify"] * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    counts = Counter(result for _, result in results)
    assert len(results) == 8
    assert counts[VerifyResult.VALID] == 1
    assert set(counts) <= {VerifyResult.VALID, VerifyResult.REPLAYED, VerifyResult.LOCKED}
    assert stored(service, enrollment).last_used_step == int(clock.now) // 30


@pytest.mark.parametrize("bad", [*BAD_CODES, "1234567"])
def test_malformed_codes_write_nothing(
    engine: Engine, service: MfaService, clock: Clock, account_id: str, bad: str
) -> None:
    enrollment = enrolled(service, clock, account_id)
    good = pair_at(enrollment, clock.now + 300)
    before = snapshot(engine)
    for field, codes in (("code1", (bad, good[1])), ("code2", (good[0], bad))):
        with pytest.raises(TotpdError) as caught:
            resync(service, enrollment, codes)
        assert caught.value.reason is ErrorReason.MALFORMED_CODE
        assert caught.value.field == field
        assert bad not in caught.value.message or bad == ""
    assert snapshot(engine) == before


def test_bad_ids_and_unknown_or_inactive_factors(
    engine: Engine, service: MfaService, clock: Clock, account_id: str
) -> None:
    enrollment = enrolled(service, clock, account_id)
    other = enrolled(service, clock, account_id + "-other")
    pending = service.enroll(EnrollParams(account_id, "tablet"))
    codes = pair_at(enrollment, clock.now)
    factor_id = enrollment.factor.factor_id
    before = snapshot(engine)
    cases = [
        ("", factor_id, ErrorReason.INVALID_ARGUMENT),
        (account_id, "", ErrorReason.INVALID_ARGUMENT),
        (account_id, "not-a-uuid", ErrorReason.INVALID_ARGUMENT),
        (account_id, "00000000-0000-4000-8000-000000000000", ErrorReason.FACTOR_NOT_FOUND),
        (account_id, other.factor.factor_id, ErrorReason.FACTOR_NOT_FOUND),
        (account_id, pending.factor.factor_id, ErrorReason.FACTOR_NOT_ACTIVE),
    ]
    for account, factor, reason in cases:
        with pytest.raises(TotpdError) as caught:
            service.resync(account, factor, *codes)
        assert caught.value.reason is reason, (account, factor)
    assert snapshot(engine) == before
    service.disable(account_id, factor_id, None, True)
    with pytest.raises(TotpdError) as caught:
        service.resync(account_id, factor_id, *codes)
    assert caught.value.reason is ErrorReason.FACTOR_NOT_ACTIVE


def test_every_verdict_has_one_audit_event(
    engine: Engine, service: MfaService, clock: Clock, account_id: str
) -> None:
    enrollment = enrolled(service, clock, account_id)
    codes = pair_at(enrollment, clock.now + 300)
    resync(service, enrollment, codes)
    resync(service, enrollment, codes)
    resync(service, enrollment, (codes[1], codes[0]))
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT method, account_id, factor_id, verify_result, step_offset"
                f" FROM {AUDIT_TRAIL} WHERE method = 'Resync' ORDER BY id"
            )
        ).all()
    factor_id = enrollment.factor.factor_id
    assert [tuple(row) for row in rows] == [
        ("Resync", account_id, factor_id, "VALID", 10),
        ("Resync", account_id, factor_id, "REPLAYED", None),
        ("Resync", account_id, factor_id, "INVALID", None),
    ]


def test_a_database_that_is_down_is_a_store_error(
    engine: Engine, keyring: Keyring, clock: Clock, account_id: str, tmp_path: Any
) -> None:
    service = MfaService(FactorStore(engine), keyring, Policy(), clock)
    enrollment = enrolled(service, clock, account_id)
    if engine.dialect.name == "postgresql":
        url = engine.url.set(port=1).render_as_string(hide_password=False)
    else:
        (tmp_path / "gone").mkdir()
        url = f"sqlite:///{tmp_path / 'gone'}"  # a directory: SQLite cannot open it
    down = open_engine(url)
    try:
        broken = MfaService(FactorStore(down), keyring, Policy(), clock)
        with pytest.raises(StoreError):
            resync(broken, enrollment, pair_at(enrollment, clock.now + 300))
    finally:
        down.dispose()
    assert stored(service, enrollment).drift_steps == 0


# -- deadlines: the database hung for real (tests/hung_database.py) ----------------

DEADLINE = 0.5


@pytest.fixture
def hung_service(database: HangingDatabase, keyring: Keyring, clock: Clock) -> Iterator[MfaService]:
    engine = open_engine(database.url)
    yield MfaService(FactorStore(engine), keyring, Policy(), clock)
    engine.dispose()


def test_a_resync_that_outlives_its_deadline_consumes_nothing(
    database: HangingDatabase,
    hung_service: MfaService,
    clock: Clock,
    account_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PostgreSQL stops once the locked round has read (its write waits); SQLite's
    lock is held before the round begins (its round holds that lock itself)."""
    with deadlines.within(30):
        enrollment = enrolled(hung_service, clock, account_id)
    codes = pair_at(enrollment, clock.now + 300)
    with ExitStack() as stack:
        if database.kind == "postgresql":
            real_write = LockedRound.write

            def hang_then_write(self: LockedRound, *args: Any, **kwargs: Any) -> Any:
                stack.enter_context(database.hung())
                return real_write(self, *args, **kwargs)

            monkeypatch.setattr(LockedRound, "write", hang_then_write)
        else:
            real_locked = Attempts.locked

            def hang_then_lock(self: Attempts) -> Any:
                stack.enter_context(database.hung())
                return real_locked(self)

            monkeypatch.setattr(Attempts, "locked", hang_then_lock)
        with deadlines.within(DEADLINE), pytest.raises(DeadlineExceededError):
            resync(hung_service, enrollment, codes)
    monkeypatch.undo()
    after = stored(hung_service, enrollment)
    assert (after.drift_steps, after.failed_attempts) == (0, 0)
    outcome, factor = resync(hung_service, enrollment, codes)
    assert (outcome.result, factor.drift_steps) == (VerifyResult.VALID, 10)
