"""Unlocking an account (Unlock, `totpd unlock`): an operator lifts its attempt limits,
with one audit event in the same transaction."""

from __future__ import annotations

from collections.abc import Callable

from totpd.service import validation
from totpd.service.audit import AuditContext, time_us
from totpd.service.errors import ErrorReason, TotpdError, factor_not_found
from totpd.service.types import Unlocked
from totpd.store import AccountUnlock, FactorStore
from totpd.store.audit import AuditRow


def unlock_account(
    store: FactorStore,
    clock: Callable[[], float],
    tenant: str,
    account_id: str,
    factor_id: str | None,
    audit: AuditContext | None,
) -> AccountUnlock:
    """Clear the account's lock, run of failures and budget, and its live factors'
    failures and backoff (only `factor_id`'s, if given); returns what was found.

    ACCOUNT_NOT_FOUND for an account with no factor and no attempt state;
    FACTOR_NOT_FOUND for a factor not of this account (and tenant). No store
    or keyring beyond the database: the CLI runs it while the server is down.
    """
    account_id = validation.account_id(account_id)
    factor_id = validation.optional_factor_id(factor_id)
    if factor_id is not None:
        factor = store.get(factor_id, tenant=tenant)
        if factor is None or factor.account_id != account_id:
            raise factor_not_found()

    def events(found: AccountUnlock) -> list[AuditRow]:
        return [] if audit is None else [audit.row(time_us(clock), account_id, factor_id)]

    found = store.unlock_account(account_id, tenant=tenant, factor_id=factor_id, events=events)
    if not found.known:
        raise TotpdError(
            ErrorReason.ACCOUNT_NOT_FOUND,
            "the account has no factors and no attempt state: nothing to unlock",
            field="account_id",
        )
    return found


def unlocked(found: AccountUnlock, now: int) -> Unlocked:
    """The UnlockResponse's view of what was cleared (a budget whose arrival time
    is past was full already)."""
    return Unlocked(
        lock_lifted=found.locked_at is not None,
        consecutive_failures_cleared=found.consecutive_failures,
        factors_cleared=found.factors_unblocked,
        budget_refilled=found.budget_tat > now,
    )
