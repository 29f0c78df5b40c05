"""Checking one code against an account's factors: count, compare, consume.

The order is the security argument:
1. `reserve_attempts` counts the attempt on every eligible factor that is not
   blocked, atomically, before any comparison (parallel guesses cannot outrun
   the limit; a blocked factor is never compared and reveals nothing).
2. The native core compares every step of the window, without early exit.
3. `consume_step` accepts the matched step only if it is newer than the last
   used one, in one conditional UPDATE (exactly one concurrent caller wins).
A success resets the failure count of every factor that was counted.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from totpd import otp
from totpd.crypto import Keyring
from totpd.service import validation
from totpd.service.errors import ErrorReason, TotpdError
from totpd.service.policy import Policy
from totpd.service.types import Algorithm, VerifyOutcome, VerifyResult
from totpd.store import AttemptSchedule, FactorStore, ReservedFactor
from totpd.store.models import FactorRow


@dataclass(frozen=True, slots=True)
class CodeCheck:
    """One code to check: against `factor_id` only, or every factor in `state`."""

    account_id: str
    code: str
    factor_id: str | None
    state: str  # "active" for sign-in, "pending" for confirmation


class CodeChecker:
    def __init__(
        self, store: FactorStore, keyring: Keyring, policy: Policy, clock: Callable[[], float]
    ) -> None:
        self._store = store
        self._keyring = keyring
        self._policy = policy
        self._clock = clock
        self._schedule = AttemptSchedule(
            tuple(policy.wait_after(n) for n in range(policy.lock_after_failures + 1))
        )

    def check(self, request: CodeCheck) -> VerifyOutcome:
        digits = validation.code_digits(request.code)
        now = math.floor(self._clock())
        reserved = self._store.reserve_attempts(
            account_id=request.account_id,
            factor_id=request.factor_id,
            state=request.state,
            digits=digits,
            now=now,
            schedule=self._schedule,
        )
        if not reserved:
            return self._explain_nothing_reserved(request, digits, now)
        return self._compare_and_consume(request, reserved, now)

    def _compare_and_consume(
        self, request: CodeCheck, reserved: list[ReservedFactor], now: int
    ) -> VerifyOutcome:
        counters = [now // factor.period_seconds for factor in reserved]
        matched = self._match(reserved, counters, int(request.code))
        replayed: str | None = None
        for factor, counter, step in zip(reserved, counters, matched, strict=True):
            if step is None:
                continue
            if step > factor.last_used_step and self._store.consume_step(
                factor.factor_id, state=request.state, step=step, now=now
            ):
                self._store.reset_failures(
                    [other.factor_id for other in reserved if other is not factor]
                )
                return VerifyOutcome(
                    VerifyResult.VALID,
                    factor_id=factor.factor_id,
                    step_offset=step - counter,
                    attempts_left=self._policy.lock_after_failures,
                )
            replayed = replayed or factor.factor_id
        worst = max(factor.failed_attempts for factor in reserved)
        retry_after = min(self._policy.wait_after(factor.failed_attempts) for factor in reserved)
        return VerifyOutcome(
            VerifyResult.REPLAYED if replayed else VerifyResult.INVALID,
            factor_id=replayed,
            attempts_left=self._policy.attempts_left(worst),
            retry_after_seconds=retry_after,
        )

    def _match(
        self, reserved: list[ReservedFactor], counters: list[int], code: int
    ) -> list[int | None]:
        with otp.KeyTable() as table:
            for factor, counter in zip(reserved, counters, strict=True):
                key = self._keyring.open(factor.factor_id, factor.sealed)
                table.add(key, Algorithm(factor.algorithm), factor.digits, counter)
            indices = list(range(len(reserved)))
            steps = otp.verify_batch(table, indices, [code] * len(reserved), self._policy.window)
        return [None if step < 0 else int(step) for step in steps]

    def _explain_nothing_reserved(self, request: CodeCheck, digits: int, now: int) -> VerifyOutcome:
        """Nothing was counted: say why (not found, wrong state, digits, or blocked)."""
        if request.factor_id is not None:
            row = self._store.get(request.factor_id)
            if row is None or row.account_id != request.account_id:
                raise TotpdError(
                    ErrorReason.FACTOR_NOT_FOUND,
                    "the account has no factor with this factor_id",
                    field="factor_id",
                )
            _require_state(row, request.state, now)
            candidates = [row]
        else:
            candidates = self._store.list_for_account(request.account_id, [request.state])
            if not candidates:
                raise TotpdError(
                    ErrorReason.ACCOUNT_NOT_FOUND,
                    f"the account has no {request.state} factor",
                    field="account_id",
                )
        sizes = sorted({row.digits for row in candidates})
        if digits not in sizes:
            allowed = " or ".join(str(size) for size in sizes)
            raise TotpdError(
                ErrorReason.MALFORMED_CODE,
                f"code must have {allowed} digits for this account's factors",
                field="code",
            )
        blocked = [row for row in candidates if row.digits == digits]
        return VerifyOutcome(
            VerifyResult.LOCKED,
            factor_id=request.factor_id,
            attempts_left=self._policy.attempts_left(min(row.failed_attempts for row in blocked)),
            retry_after_seconds=max(1, min(row.blocked_until for row in blocked) - now),
        )


def _require_state(row: FactorRow, state: str, now: int) -> None:
    if state == "pending" and (
        row.state == "expired" or (row.state == "pending" and (row.expires_at or 0) <= now)
    ):
        raise TotpdError(
            ErrorReason.ENROLLMENT_EXPIRED,
            "the enrollment expired before it was confirmed; enroll again",
            field="factor_id",
        )
    if row.state != state:
        wanted = "pending (not yet confirmed)" if state == "pending" else "active"
        raise TotpdError(
            ErrorReason.FACTOR_NOT_ACTIVE,
            f"the factor is {row.state}, it must be {wanted}",
            field="factor_id",
        )
