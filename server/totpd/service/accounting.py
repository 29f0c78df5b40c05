"""The attempt state a round writes for compared factors and their account, and
the verdict each state implies (ARCHITECTURE.md, "One Verify, through the code")."""

from __future__ import annotations

from totpd.service import failure_budget
from totpd.service.checks import Check
from totpd.service.policy import Policy
from totpd.service.types import VerifyOutcome, VerifyResult
from totpd.store import AccountWrite, CandidateFactor, FactorWrite


def success_writes(
    policy: Policy,
    winner: CandidateFactor,
    step: int,
    counter: int,
    compared: list[CandidateFactor],
    writes: list[FactorWrite],
) -> VerifyOutcome:
    """Appends the writes of a success, returns its verdict: the step is consumed;
    proof of possession resets every compared factor."""
    # factor_write, inline: once per item of a batch that succeeds.
    writes.append(
        FactorWrite(
            winner.factor_id,
            0,
            0,
            step,
            1,
            winner.failed_attempts,
            winner.blocked_until,
            winner.last_used_step,
        )
    )
    if len(compared) > 1:
        writes.extend(
            factor_write(f, 0, 0, f.last_used_step, 0) for f in compared if f is not winner
        )
    return VerifyOutcome(
        VerifyResult.VALID,
        winner.factor_id,
        step - counter,
        policy.lock_after_failures,
    )


def failure_writes(
    policy: Policy,
    replayed: CandidateFactor | None,
    compared: list[CandidateFactor],
    writes: list[FactorWrite],
    now: int,
) -> VerifyOutcome:
    """Appends the writes of a failure, returns its verdict: a wrong or reused code
    counts one failure on every compared factor.

    `replayed` is the first factor whose window held the code at an
    already used step: the verdict is then REPLAYED, naming it.
    """
    wait_after = policy.wait_after
    most = 0
    shortest_wait: int | None = None
    for f in compared:
        count = f.failed_attempts + 1
        wait = wait_after(count)
        blocked = now + wait if wait else f.blocked_until
        writes.append(factor_write(f, count, blocked, f.last_used_step, 0))
        most = max(most, count)
        shortest_wait = wait if shortest_wait is None else min(shortest_wait, wait)
    return VerifyOutcome(
        VerifyResult.INVALID if replayed is None else VerifyResult.REPLAYED,
        None if replayed is None else replayed.factor_id,
        attempts_left=policy.attempts_left(most),
        retry_after_seconds=shortest_wait or 0,
    )


def count_on_account(
    policy: Policy,
    outcome: VerifyOutcome,
    compared: list[CandidateFactor],
    accounts: list[AccountWrite],
    now: int,
) -> VerifyOutcome:
    """A failure spends one budget pair per compared factor and one
    consecutive failure of the account; the outcome says what is left."""
    account = compared[0]
    pairs = len(compared)
    tat = failure_budget.spend(policy, account.budget_tat or 0, now, pairs)
    failures = (account.consecutive_failures or 0) + 1
    locked = failures >= policy.max_consecutive_failures
    accounts.append(
        AccountWrite(
            account.account_id,
            tat,
            failures,
            now if locked else None,
            account.budget_tat,
            account.consecutive_failures,
        )
    )
    if locked:
        return outcome._replace(attempts_left=0, retry_after_seconds=0, unlock_required=True)
    return outcome._replace(
        attempts_left=min(
            outcome.attempts_left,
            policy.max_consecutive_failures - failures,
            failure_budget.pairs_left(policy, tat, now) // pairs,
        ),
        retry_after_seconds=max(
            outcome.retry_after_seconds,
            failure_budget.wait_seconds(policy, tat, now, pairs),
        ),
    )


def account_reset(winner: CandidateFactor) -> AccountWrite:
    """A success ends the account's run of failures; its budget stays spent."""
    tat = winner.budget_tat or 0
    return AccountWrite(
        winner.account_id, tat, 0, None, winner.budget_tat, winner.consecutive_failures
    )


def factor_write(
    factor: CandidateFactor, failed: int, blocked_until: int, last_used_step: int, consumed: int
) -> FactorWrite:
    """The factor's new attempt state, to be stored only where it is still as read."""
    return FactorWrite(
        factor.factor_id,
        failed,
        blocked_until,
        last_used_step,
        consumed,
        factor.failed_attempts,
        factor.blocked_until,
        factor.last_used_step,
    )


def blocked_verdict(
    policy: Policy, check: Check, blocked: list[CandidateFactor], now: int
) -> VerifyOutcome:
    """Every candidate is blocked: nothing is compared, nothing is revealed."""
    return VerifyOutcome(
        VerifyResult.LOCKED,
        factor_id=check.item.factor_id,
        attempts_left=policy.attempts_left(min(f.failed_attempts for f in blocked)),
        retry_after_seconds=max(1, min(f.blocked_until for f in blocked) - now),
    )


def account_locked_verdict(check: Check) -> VerifyOutcome:
    """Too many failures in a row: locked until unlocked; waiting does not help."""
    return VerifyOutcome(VerifyResult.LOCKED, factor_id=check.item.factor_id, unlock_required=True)


def budget_spent_verdict(check: Check, wait: int) -> VerifyOutcome:
    """The budget cannot pay for this code's possible failures: nothing is compared."""
    return VerifyOutcome(
        VerifyResult.LOCKED, factor_id=check.item.factor_id, retry_after_seconds=wait
    )
