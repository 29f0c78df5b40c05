"""Accounts with active factors on a real MfaService, for the service, store, gRPC
and CLI tests that need one set up first."""

from __future__ import annotations

from collections.abc import Callable

from tests.conftest import Clock
from tests.totp_oracle import code_at
from totpd import deadlines
from totpd.service.mfa import MfaService
from totpd.service.types import Enrollment, EnrollParams, FactorState, VerifyItem, VerifyResult
from totpd.store import FactorStore


def enroll_active(
    service: MfaService, clock: Clock, account_id: str, label: str = "phone", **options: object
) -> Enrollment:
    enrollment = service.enroll(EnrollParams(account_id, label, **options))  # type: ignore[arg-type]
    outcome, factor = service.confirm(
        account_id, enrollment.factor.factor_id, code_at(enrollment, clock.now)
    )
    assert outcome.result is VerifyResult.VALID
    assert factor.state is FactorState.ACTIVE
    clock.advance(enrollment.factor.period_seconds)  # the confirmation consumed the current step
    return enrollment


def enroll_active_in_time(service: MfaService, clock: Clock, account_id: str) -> Enrollment:
    """An active factor, enrolled within a deadline: the connection that will
    write later has measured the database's clock (as a served call would)."""
    with deadlines.within(30):
        return enroll_active(service, clock, account_id)


def enroll_many(service: MfaService, clock: Clock, account_id: str, count: int) -> list[Enrollment]:
    return [enroll_active(service, clock, account_id, f"phone {i}") for i in range(count)]


def store_of(service: MfaService) -> FactorStore:
    return service.deps.store


def wrong_for_all(enrollments: list[Enrollment], now: float) -> str:
    """A code no factor accepts at `now` (window 1: three steps each)."""
    taken = {code_at(e, now + offset) for e in enrollments for offset in (-30, 0, 30)}
    return next(code for code in (f"{n:06d}" for n in range(1000)) if code not in taken)


def failed_once(
    service: MfaService,
    clock: Clock,
    account_id: str,
    accounts: int,
    enroll: Callable[[MfaService, Clock, str], Enrollment] = enroll_active,
) -> tuple[list[str], list[VerifyItem]]:
    """`accounts` accounts that failed once (each has its row: a round updates
    them), and a wrong code for each."""
    ids = [f"{account_id}-{number}" for number in range(accounts)]
    enrolled = [enroll(service, clock, account) for account in ids]
    items = [
        VerifyItem(a, wrong_for_all([e], clock.now)) for a, e in zip(ids, enrolled, strict=True)
    ]
    service.verify_batch(items)
    return ids, items
