"""Reading factors: one factor of an account, an account's factors, and the public view
of a stored factor (no secret, no counters)."""

from __future__ import annotations

import dataclasses

from totpd.domain import LIVE_STATES, FactorState
from totpd.service import validation
from totpd.service.errors import factor_not_found
from totpd.service.mfa.deps import Deps
from totpd.service.types import Factor
from totpd.store import StoredFactor


def get_factor(deps: Deps, tenant: str, account_id: str, factor_id: str) -> Factor:
    account_id = validation.account_id(account_id)
    factor_id = validation.factor_id(factor_id)
    return to_factor(owned_factor(deps, tenant, account_id, factor_id))


def list_factors(deps: Deps, tenant: str, account_id: str, include_inactive: bool) -> list[Factor]:
    account_id = validation.account_id(account_id)
    states = tuple(FactorState) if include_inactive else LIVE_STATES
    stored = deps.store.list_for_account(account_id, states, now=deps.now(), tenant=tenant)
    return [to_factor(factor) for factor in stored]


def owned_factor(deps: Deps, tenant: str, account_id: str, factor_id: str) -> StoredFactor:
    """The account's factor in the tenant, or FACTOR_NOT_FOUND."""
    factor = deps.store.get(factor_id, tenant=tenant)
    # Another account's (or tenant's) factor is reported exactly like a missing one.
    if factor is None or factor.account_id != account_id:
        raise factor_not_found()
    return factor


_PUBLIC_FIELDS = tuple(field.name for field in dataclasses.fields(Factor))


def to_factor(stored: StoredFactor) -> Factor:
    """The public view of a stored factor: everything but the secret and the counters."""
    return Factor(**{name: getattr(stored, name) for name in _PUBLIC_FIELDS})
