"""Resync: an app's clock drift measured from two consecutive codes, under the same
attempt limits as a verification, decided in one locked round."""

from __future__ import annotations

import contextlib
from typing import NamedTuple

from totpd import otp
from totpd.crypto import tenant_slot
from totpd.domain import Algorithm, FactorState
from totpd.service import validation
from totpd.service.accounting import (
    account_reset,
    count_on_account,
    failure_writes,
    success_writes,
)
from totpd.service.audit import AuditContext, time_us
from totpd.service.checks import Check, Verdict
from totpd.service.errors import ErrorReason, TotpdError, secret_unavailable
from totpd.service.matching import open_keys, unblocked_factors
from totpd.service.mfa.deps import Deps
from totpd.service.mfa.factors import owned_factor, to_factor
from totpd.service.policy import Policy
from totpd.service.round_plan import failures
from totpd.service.types import Factor, VerifyItem, VerifyOutcome, VerifyResult
from totpd.store import (
    AccountWrite,
    AttemptRequest,
    CandidateFactor,
    FactorWrite,
    RoundAbortedError,
)
from totpd.telemetry import metrics

# Tries of the locked round, which the database may abort to break a deadlock.
_TRIES = 3


class _Request(NamedTuple):
    """A validated Resync: the factor, its two codes, the call's context."""

    tenant: str
    account_id: str
    factor_id: str
    code1: int
    code2: int
    digits: int
    audit: AuditContext | None


def resync(
    deps: Deps,
    tenant: str,
    account_id: str,
    factor_id: str,
    codes: tuple[str, str],
    caller: str | None,
    audit: AuditContext | None = None,
) -> tuple[VerifyOutcome, Factor]:
    """The verdict on the pair (VALID stores the drift and consumes both steps) and
    the factor after it. Bad input is refused before anything is read or counted."""
    account_id = validation.account_id(account_id)
    factor_id = validation.factor_id(factor_id)
    for field, code in zip(("code1", "code2"), codes, strict=True):
        validation.code_digits(code, field)
    stored = owned_factor(deps, tenant, account_id, factor_id)
    if stored.state is not FactorState.ACTIVE:
        raise _not_active(stored.state)
    for field, code in zip(("code1", "code2"), codes, strict=True):
        if len(code) != stored.digits:
            raise TotpdError(
                ErrorReason.MALFORMED_CODE,
                f"{field} must have {stored.digits} digits for this factor",
                field=field,
            )
    code1, code2 = (int(code) for code in codes)
    request = _Request(tenant, account_id, factor_id, code1, code2, stored.digits, audit)
    limits = deps.checker.callers
    reservation = limits.reserve(caller, 1)
    outcome: VerifyOutcome | None = None
    try:
        outcome = _decided(deps, request)
    finally:
        limits.settle(reservation, failures([outcome] if outcome is not None else []))
    metrics.count_verdicts([outcome.result])
    return outcome, to_factor(owned_factor(deps, tenant, account_id, factor_id))


def _decided(deps: Deps, request: _Request) -> VerifyOutcome:
    """The locked round, tried again when the database aborts it (nothing written);
    the last try's RoundAbortedError reaches the caller as UNAVAILABLE."""
    for _ in range(_TRIES - 1):
        with contextlib.suppress(RoundAbortedError):
            return _locked_round(deps, request)
    return _locked_round(deps, request)


def _locked_round(deps: Deps, request: _Request) -> VerifyOutcome:
    """Read the factor and its account under locks, decide, write, commit: a
    concurrent Verify or Resync of the factor waits, or finds its read changed
    and decides again, so no step is consumed twice."""
    now = deps.now()
    tenant = request.tenant
    policy = deps.policies.for_tenant(tenant)
    wanted = AttemptRequest(request.account_id, request.digits, request.factor_id)
    with deps.store.attempts.locked() as locked:
        factors = locked.read([wanted], state=FactorState.ACTIVE, now=now, tenant=tenant)
        if not factors:  # disabled (or erased) since it was looked up
            raise _not_active(None)
        check = Check(0, VerifyItem(request.account_id, "", request.factor_id), request.digits)
        writes: list[FactorWrite] = []
        accounts: list[AccountWrite] = []
        answered: list[tuple[Check, Verdict]] = []
        unblocked = unblocked_factors(check, factors, now, True, policy, answered)
        if unblocked is None:  # locked, backing off, or no budget: nothing compared
            outcome = answered[0][1]
            assert isinstance(outcome, VerifyOutcome)
        else:
            factor = unblocked[0]
            pair = _matched_pair(deps, request, factor, now, policy)
            outcome = _verdict(policy, factor, pair, now, writes, accounts)
        locked.write(
            writes,
            state=FactorState.ACTIVE,
            now=now,
            activate=False,
            accounts=accounts,
            tenant=tenant,
        )
        if outcome.result is VerifyResult.VALID:
            step = now // factors[0].period_seconds + outcome.step_offset
            locked.set_drift(request.factor_id, step=step, drift=outcome.step_offset, tenant=tenant)
        if request.audit is not None:
            events = request.audit.verdict_events(time_us(deps.clock), [(check, outcome)])
            locked.record([events])
    return outcome


def _matched_pair(
    deps: Deps, request: _Request, factor: CandidateFactor, now: int, policy: Policy
) -> int | None:
    """The step s of code1 with code2 at s + 1, both within the search range of the
    server's step; None: no such pair. One C call, every step compared in
    constant time (one key entry per step, window 0)."""
    keys: list[bytes] = []
    if not open_keys(deps.keyring.open_parts, tenant_slot(request.tenant), [factor], keys):
        raise secret_unavailable()
    current = now // factor.period_seconds
    # At least one step each way: a 60 s range still reaches a 120 s period's neighbours.
    reach = max(1, policy.resync_range_seconds // factor.period_seconds)
    first = max(0, current - reach)
    count = current + reach - first + 1  # steps first .. current + reach
    algorithm = Algorithm(factor.algorithm)
    steps = range(first, first + count)
    # code1 at every step but the last, code2 at every step but the first.
    indices = [*range(count - 1), *range(1, count)]
    codes = [request.code1] * (count - 1) + [request.code2] * (count - 1)
    with otp.KeyTable.of(
        keys * count, [algorithm] * count, [factor.digits] * count, steps
    ) as table:
        matched = otp.verify_batch(table, indices, codes, 0)
    pairs = [first + i for i in range(count - 1) if matched[i] >= 0 and matched[count - 1 + i] >= 0]
    if not pairs:
        return None
    # Two pairs in range happen about once in 10^10 at 6 digits: the nearer one.
    return min(pairs, key=lambda step: abs(step + 1 - current))


def _verdict(
    policy: Policy,
    factor: CandidateFactor,
    pair: int | None,
    now: int,
    writes: list[FactorWrite],
    accounts: list[AccountWrite],
) -> VerifyOutcome:
    """VALID consumes both steps (the last used step becomes s + 1) and resets the
    failures as a success does; a pair at used steps is REPLAYED, no pair INVALID,
    each counted as one failure. A resync never makes a used step usable again."""
    current = now // factor.period_seconds
    if pair is not None and pair + 1 > factor.last_used_step:
        outcome = success_writes(policy, factor, pair + 1, current, [factor], writes)
        if factor.consecutive_failures:
            accounts.append(account_reset(factor))
        return outcome
    replayed = factor if pair is not None else None
    outcome = failure_writes(policy, replayed, [factor], writes, now)
    return count_on_account(policy, outcome, [factor], accounts, now)


def _not_active(state: FactorState | None) -> TotpdError:
    now_is = "no longer active" if state is None else f"{state}"
    return TotpdError(
        ErrorReason.FACTOR_NOT_ACTIVE,
        f"the factor is {now_is}; only an active factor can be resynchronised",
        field="factor_id",
    )
