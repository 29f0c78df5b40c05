"""Disabling a factor or all of an account's live factors (Disable): with a current code,
or by force (an admin caller); a retry gets the first verdict."""

from __future__ import annotations

from totpd.domain import LIVE_STATES, FactorState
from totpd.service import idempotency, validation
from totpd.service.audit import AuditContext, time_us
from totpd.service.errors import ErrorReason, TotpdError
from totpd.service.mfa.deps import Deps
from totpd.service.mfa.factors import owned_factor, to_factor
from totpd.service.types import Factor, VerifyItem, VerifyOutcome, VerifyResult
from totpd.store import StoredFactor
from totpd.store.audit import AuditRow
from totpd.store.requests import Completion


def disable(
    deps: Deps,
    tenant: str,
    account_id: str,
    factor_id: str | None,
    code: str | None,
    force: bool,
    request_id: str | None,
    caller: str | None,
    audit: AuditContext | None = None,
) -> tuple[VerifyOutcome, list[Factor]]:
    request_id = idempotency.request_id(request_id)
    account_id = validation.account_id(account_id)
    factor_id = validation.optional_factor_id(factor_id)
    _check_proof(code, force)
    fields = (factor_id or "", code or "", "force" if force else "")
    call = deps.requests.start(request_id, "Disable", account_id, fields, tenant=tenant)
    if call.replay is not None:
        return _disabled_again(deps, tenant, account_id, call.replay)
    with call:
        return _disable(deps, tenant, account_id, factor_id, code, force, call, caller, audit)


def _check_proof(code: str | None, force: bool) -> None:
    """A code of the right shape, or force (the rpc layer let only an admin caller send it)."""
    if not force:
        if not code:
            raise TotpdError(
                ErrorReason.CODE_REQUIRED,
                "disable needs a current code, or force for an administrator",
                field="code",
            )
        validation.code_digits(code)


def _disable(
    deps: Deps,
    tenant: str,
    account_id: str,
    factor_id: str | None,
    code: str | None,
    force: bool,
    call: idempotency.Call,
    caller: str | None,
    audit: AuditContext | None = None,
) -> tuple[VerifyOutcome, list[Factor]]:
    targets = _disable_targets(deps, tenant, account_id, factor_id)
    if force:
        outcome = VerifyOutcome(VerifyResult.VALID, factor_id=factor_id)
    else:
        assert code is not None  # checked above
        # The code proves possession of an active target, or of the pending
        # one when nothing is active yet (cancelling an enrollment).
        states = {factor.state for factor in targets}
        state = FactorState.ACTIVE if FactorState.ACTIVE in states else FactorState.PENDING
        # A pending factor's step is used up but the factor is not
        # activated: if the disable below fails, the enrollment the caller
        # is cancelling must not be left active.
        outcome = deps.checker.check(
            VerifyItem(account_id, code, factor_id),
            state=state,
            activate=False,
            caller=caller,
            tenant=tenant,
            audit=audit,
        )
        if outcome.result is not VerifyResult.VALID:
            call.complete(idempotency.outcome_result(outcome))
            return outcome, []

    def record(factors: list[StoredFactor]) -> Completion | None:
        ids = [factor.factor_id for factor in factors]
        return call.completion(idempotency.outcome_result(outcome, ids))

    def events(factors: list[StoredFactor]) -> list[AuditRow]:
        # One event per factor disabled (the code's verdict has its own).
        if audit is None:
            return []
        when = time_us(deps.clock)
        return [audit.row(when, account_id, factor.factor_id) for factor in factors]

    disabled = deps.store.disable(
        [factor.factor_id for factor in targets],
        now=deps.now(),
        completes=record,
        tenant=tenant,
        events=events,
    )
    return outcome, [to_factor(factor) for factor in disabled]


def _disabled_again(
    deps: Deps, tenant: str, account_id: str, first: idempotency.Result
) -> tuple[VerifyOutcome, list[Factor]]:
    """A retried Disable: the first verdict and the factors it disabled, as they are now
    (a factor purged since is left out)."""
    stored = deps.store.get_many(idempotency.factor_ids_of(first), tenant=tenant)
    factors = [
        to_factor(stored[factor_id])
        for factor_id in idempotency.factor_ids_of(first)
        if factor_id in stored and stored[factor_id].account_id == account_id
    ]
    return idempotency.outcome_of(first), factors


def _disable_targets(
    deps: Deps, tenant: str, account_id: str, factor_id: str | None
) -> list[StoredFactor]:
    live = deps.store.list_for_account(account_id, LIVE_STATES, now=deps.now(), tenant=tenant)
    if factor_id is None:
        if not live:
            raise TotpdError(
                ErrorReason.ACCOUNT_NOT_FOUND,
                "the account has no active or pending factor",
                field="account_id",
            )
        return live
    targets = [factor for factor in live if factor.factor_id == factor_id]
    if targets:
        return targets
    factor = owned_factor(deps, tenant, account_id, factor_id)
    if factor.state not in LIVE_STATES:
        raise TotpdError(
            ErrorReason.FACTOR_NOT_ACTIVE,
            f"the factor is already {factor.state}",
            field="factor_id",
        )
    return [factor]
