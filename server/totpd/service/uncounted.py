"""Why nothing was counted for a check whose round read no candidate factor:
not found, wrong state, wrong number of digits, or blocked."""

from __future__ import annotations

from collections import defaultdict

from totpd.domain import FactorState
from totpd.service.checks import Check, Verdict
from totpd.service.errors import ErrorReason, TotpdError, factor_not_found
from totpd.service.policy import Policy
from totpd.service.types import VerifyOutcome, VerifyResult
from totpd.store import FactorStore, StoredFactor


def uncounted_verdicts(
    store: FactorStore,
    policy: Policy,
    checks: list[Check],
    state: FactorState,
    now: int,
    tenant: str,
) -> list[tuple[Check, Verdict]]:
    """Each check's error (or LOCKED verdict), read again from the tenant's factors."""
    if not checks:
        return []
    named = store.get_many((c.item.factor_id for c in checks if c.item.factor_id), tenant=tenant)
    in_state: dict[str, list[StoredFactor]] = defaultdict(list)
    # A check naming its factor reads only that factor (`named`).
    account_wide = (c.item.account_id for c in checks if c.item.factor_id is None)
    for factor in store.list_for_accounts(account_wide, state, tenant=tenant):
        in_state[factor.account_id].append(factor)
    verdicts: list[tuple[Check, Verdict]] = []
    for check in checks:
        try:
            verdict = _uncounted_verdict(policy, check, named, in_state, state, now)
            verdicts.append((check, verdict))
        except TotpdError as error:
            verdicts.append((check, error))
    return verdicts


def _uncounted_verdict(
    policy: Policy,
    check: Check,
    named: dict[str, StoredFactor],
    in_state: dict[str, list[StoredFactor]],
    state: FactorState,
    now: int,
) -> VerifyOutcome:
    item = check.item
    if item.factor_id is not None:
        row = named.get(item.factor_id)
        if row is None or row.account_id != item.account_id:
            raise factor_not_found()
        _require_state(row, state, now)
        candidates = [row]
    else:
        candidates = in_state.get(item.account_id, [])
        if not candidates:
            raise TotpdError(
                ErrorReason.ACCOUNT_NOT_FOUND,
                f"the account has no {state} factor",
                field="account_id",
            )
    sizes = sorted({row.digits for row in candidates})
    if check.digits not in sizes:
        allowed = " or ".join(str(size) for size in sizes)
        raise TotpdError(
            ErrorReason.MALFORMED_CODE,
            f"code must have {allowed} digits for this account's factors",
            field="code",
        )
    blocked = [row for row in candidates if row.digits == check.digits]
    return VerifyOutcome(
        VerifyResult.LOCKED,
        factor_id=item.factor_id,
        attempts_left=policy.attempts_left(min(row.failed_attempts for row in blocked)),
        retry_after_seconds=max(1, min(row.blocked_until for row in blocked) - now),
    )


def _require_state(factor: StoredFactor, state: FactorState, now: int) -> None:
    pending = FactorState.PENDING
    if state is pending and (
        factor.state is FactorState.EXPIRED
        or (factor.state is pending and (factor.expires_at or 0) <= now)
    ):
        raise TotpdError(
            ErrorReason.ENROLLMENT_EXPIRED,
            "the enrollment expired before it was confirmed; enroll again",
            field="factor_id",
        )
    if factor.state is not state:
        wanted = "pending (not yet confirmed)" if state is pending else "active"
        raise TotpdError(
            ErrorReason.FACTOR_NOT_ACTIVE,
            f"the factor is {factor.state}, it must be {wanted}",
            field="factor_id",
        )
