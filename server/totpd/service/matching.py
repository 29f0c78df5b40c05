"""One round's codes against its accounts' factors: the checks answered before
any comparison (account locked, every factor blocked, budget short, a secret
that cannot be opened), and one C call for every remaining (code, unblocked
factor) pair."""

from __future__ import annotations

import logging
from array import array
from collections.abc import Callable
from typing import NamedTuple

from totpd import otp
from totpd.crypto import SecretUnavailableError, tenant_slot
from totpd.domain import Algorithm
from totpd.service import failure_budget
from totpd.service.accounting import account_locked_verdict, blocked_verdict, budget_spent_verdict
from totpd.service.checks import Check, Verdict
from totpd.service.errors import secret_unavailable
from totpd.service.policy import Policy
from totpd.store import CandidateFactor
from totpd.telemetry import metrics, tracing

_log = logging.getLogger("totpd.service")
_ALGORITHMS = {algorithm.value: algorithm for algorithm in Algorithm}
# The C call's columns, one entry per (code, factor) pair: keys, algorithms,
# digits, counters (the window's centre) and codes.
_Columns = tuple[list[bytes], list[Algorithm], list[int], list[int], list[int]]


class MatchedSteps(NamedTuple):
    """The checks already answered, the compared checks with their factors in
    pair order, the matched step of each pair (-1: none) and its counter (the
    window's centre: the server's step plus the factor's drift)."""

    answered: list[tuple[Check, Verdict]]
    compared: list[tuple[Check, list[CandidateFactor]]]
    steps: array[int]
    counters: list[int]


def matched_steps(
    open_secret: Callable[..., bytes],
    checks: list[Check],
    by_account: dict[str, list[CandidateFactor]],
    now: int,
    guarded: bool,
    policy: Policy,
    tenant: str,
) -> MatchedSteps:
    """One C call for every (code, unblocked factor) pair.

    Plain loops over flat lists, the one-factor account kept cheap: this runs
    once per check of the largest batches (benchmarks/NOTES.md).
    """
    answered: list[tuple[Check, Verdict]] = []
    compared: list[tuple[Check, list[CandidateFactor]]] = []
    columns: _Columns = ([], [], [], [], [])
    keys, algorithms, digits, counters, codes = columns
    sealed = tenant_slot(tenant)
    for check in checks:
        factors = by_account[check.item.account_id]
        f = factors[0]
        if (
            len(factors) > 1
            or f.blocked_until > now
            or (guarded and (f.locked_at is not None or f.budget_tat is not None))
        ):
            _add_checked(
                open_secret,
                sealed,
                check,
                factors,
                now,
                guarded,
                policy,
                answered,
                compared,
                columns,
            )
            continue
        # The common case, inline: one factor, unblocked, its account with no
        # failure on record (what unblocked_factors answers without a call).
        try:
            keys.append(
                open_secret(
                    f.factor_id,
                    f.account_id,
                    f.secret_key_id,
                    f.secret_nonce,
                    f.secret_ciphertext,
                    tenant_id=sealed,
                )
            )
        except SecretUnavailableError:
            _log_secret_unavailable(f)
            answered.append((check, secret_unavailable()))
            continue
        compared.append((check, factors))
        algorithms.append(_ALGORITHMS[f.algorithm])
        digits.append(f.digits)
        # Centred on the app's measured drift (Resync; 0 until then).
        counters.append(now // f.period_seconds + f.drift_steps)
        codes.append(int(check.item.code))
    with (
        otp.KeyTable.of(keys, algorithms, digits, counters) as table,
        tracing.span("totpd.core.verify_batch", "totpd.core.pairs", len(keys)),
    ):
        steps = otp.verify_batch(table, range(len(keys)), codes, policy.window)
    return MatchedSteps(answered, compared, steps, counters)


def _add_checked(
    open_secret: Callable[..., bytes],
    sealed: str,
    check: Check,
    factors: list[CandidateFactor],
    now: int,
    guarded: bool,
    policy: Policy,
    answered: list[tuple[Check, Verdict]],
    compared: list[tuple[Check, list[CandidateFactor]]],
    columns: _Columns,
) -> None:
    """`matched_steps` for any check: its pairs appended to `columns`, or its
    verdict to `answered`."""
    unblocked = unblocked_factors(check, factors, now, guarded, policy, answered)
    if unblocked is None:
        return
    keys, algorithms, digits, counters, codes = columns
    if not open_keys(open_secret, sealed, unblocked, keys):
        answered.append((check, secret_unavailable()))
        return
    compared.append((check, unblocked))
    code = int(check.item.code)
    for f in unblocked:
        algorithms.append(_ALGORITHMS[f.algorithm])
        digits.append(f.digits)
        counters.append(now // f.period_seconds + f.drift_steps)
        codes.append(code)


def unblocked_factors(
    check: Check,
    factors: list[CandidateFactor],
    now: int,
    guarded: bool,
    policy: Policy,
    answered: list[tuple[Check, Verdict]],
) -> list[CandidateFactor] | None:
    """The check's factors to compare, or None with its verdict appended to
    `answered` (account locked, every factor blocked, or budget short)."""
    if guarded and factors[0].locked_at is not None:
        answered.append((check, account_locked_verdict(check)))
        return None
    if len(factors) == 1:
        unblocked = factors if factors[0].blocked_until <= now else []
    else:
        unblocked = [f for f in factors if f.blocked_until <= now]
    if not unblocked:
        answered.append((check, blocked_verdict(policy, check, factors, now)))
        return None
    tat = factors[0].budget_tat
    if guarded and tat is not None:  # None: no failure yet, a full budget
        wait = failure_budget.wait_seconds(policy, tat, now, len(unblocked))
        if wait:
            answered.append((check, budget_spent_verdict(check, wait)))
            return None
    return unblocked


def open_keys(
    open_secret: Callable[..., bytes],
    tenant: str,
    factors: list[CandidateFactor],
    keys: list[bytes],
) -> bool:
    """Appends every factor's opened secret to `keys`; False, with `keys` as
    before, if one cannot be opened (fail closed: no verdict without every
    secret of the check)."""
    opened = len(keys)
    try:
        for f in factors:
            keys.append(
                open_secret(
                    f.factor_id,
                    f.account_id,
                    f.secret_key_id,
                    f.secret_nonce,
                    f.secret_ciphertext,
                    tenant_id=tenant,
                )
            )
    except SecretUnavailableError:
        _log_secret_unavailable(factors[len(keys) - opened])
        del keys[opened:]
        return False
    return True


def _log_secret_unavailable(factor: CandidateFactor) -> None:
    """One ERROR line per occurrence: which factor and key, never the secret or code.

    The only line: the caller gets a TotpdError, which the gRPC layer does not log.
    """
    metrics.secret_unavailable()
    _log.error(
        "stored secret cannot be opened",
        extra={"factor_id": factor.factor_id, "key_id": factor.secret_key_id},
    )
