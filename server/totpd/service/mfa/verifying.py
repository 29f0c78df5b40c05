"""Verifying codes of active factors, one or a batch, through the engine
(service/verification.py)."""

from __future__ import annotations

from collections.abc import Sequence

from totpd.domain import FactorState
from totpd.service import validation
from totpd.service.audit import AuditContext
from totpd.service.coalescing import Coalescer
from totpd.service.errors import ErrorReason, TotpdError
from totpd.service.mfa.deps import Deps
from totpd.service.policy import Policy
from totpd.service.types import VerifyItem, VerifyOutcome


def verify(
    deps: Deps,
    tenant: str,
    item: VerifyItem,
    caller: str | None,
    audit: AuditContext | None = None,
    coalescer: Coalescer | None = None,
) -> VerifyOutcome:
    """With `coalescer`, in a round shared with the concurrent calls of the tenant."""
    if coalescer is not None:
        return coalescer.verify(validated(item), caller, tenant, audit)
    return deps.checker.check(
        validated(item), state=FactorState.ACTIVE, caller=caller, tenant=tenant, audit=audit
    )


async def verify_on_loop(
    tenant: str,
    item: VerifyItem,
    caller: str | None,
    audit: AuditContext | None,
    coalescer: Coalescer,
) -> VerifyOutcome:
    """`verify` in a shared round, awaited on the event loop."""
    return await coalescer.verify_on_loop(validated(item), caller, tenant, audit)


def check_batch_size(policy: Policy, count: int) -> None:
    """BATCH_TOO_LARGE, the one error that fails a whole batch, before any work
    (the limit of the tenant's policy)."""
    if count > policy.max_batch_items:
        raise TotpdError(
            ErrorReason.BATCH_TOO_LARGE,
            f"a batch holds at most {policy.max_batch_items} items; split it",
            field="items",
        )


def verify_batch(
    deps: Deps,
    tenant: str,
    items: Sequence[VerifyItem],
    caller: str | None,
    audit: AuditContext | None = None,
) -> list[VerifyOutcome | TotpdError]:
    """Each item with exactly the semantics of `verify`; item errors stay per item.

    RATE_LIMITED fails the whole batch, before any item is checked.
    """
    check_batch_size(deps.policies.for_tenant(tenant), len(items))
    results: list[VerifyOutcome | TotpdError | None] = [None] * len(items)
    requests: list[VerifyItem] = []
    positions: list[int] = []
    for position, item in enumerate(items):
        try:
            requests.append(validated(item))
            positions.append(position)
        except TotpdError as error:
            results[position] = error
    verdicts = deps.checker.check_many(
        requests, state=FactorState.ACTIVE, caller=caller, tenant=tenant, audit=audit
    )
    for position, verdict in zip(positions, verdicts, strict=True):
        results[position] = verdict
    return [result for result in results if result is not None]


def validated(item: VerifyItem) -> VerifyItem:
    """The request with its ids validated, as the engine takes it."""
    account_id = validation.account_id(item.account_id)
    factor_id = validation.optional_factor_id(item.factor_id)
    if factor_id is item.factor_id:  # nothing normalised: no new item per batch item
        return item
    return VerifyItem(account_id, item.code, factor_id)
