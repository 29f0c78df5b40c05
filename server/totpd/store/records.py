"""What the store hands the service and takes from it: typed records, never ORM rows.

The service reads a factor as `StoredFactor` and enrolls one as `NewFactor`; the
mapping to and from rows (store/models.py) stays inside the store. The hot
verification path has its own records (`CandidateFactor`, `FactorWrite`,
`AccountWrite`, in store/rounds.py).
"""

from __future__ import annotations

from typing import NamedTuple

from totpd.domain import Algorithm, FactorState


class StoredFactor(NamedTuple):
    """One factor as stored: its public fields, its sealed secret and its attempt state.

    The secret parts are None once the factor is disabled or expired (erased).
    """

    factor_id: str
    account_id: str
    label: str
    issuer: str
    algorithm: Algorithm
    digits: int
    period_seconds: int
    state: FactorState
    secret_key_id: str | None
    secret_nonce: bytes | None
    secret_ciphertext: bytes | None
    last_used_step: int
    failed_attempts: int
    blocked_until: int
    created_at: int
    confirmed_at: int | None
    last_used_at: int | None
    expires_at: int | None


class NewFactor(NamedTuple):
    """A factor to enroll: stored PENDING, never used, with no failure counted."""

    factor_id: str
    account_id: str
    label: str
    issuer: str
    algorithm: Algorithm
    digits: int
    period_seconds: int
    secret_key_id: str
    secret_nonce: bytes
    secret_ciphertext: bytes
    created_at: int
    expires_at: int


class AccountState(NamedTuple):
    """An account's attempt state across its factors (see models.AccountRow)."""

    account_id: str
    budget_tat: int
    consecutive_failures: int
    locked_at: int | None
