"""What the store hands the service and takes from it: typed records, never ORM rows.

The service reads a factor as `StoredFactor` and enrolls one as `NewFactor`; the
mapping to and from rows (store/models.py) stays inside the store. The hot
verification path has its own records (`CandidateFactor`, `FactorWrite`,
`AccountWrite`, in store/rounds.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from totpd.domain import FactorFields, FactorState


@dataclass(frozen=True, slots=True)
class StoredFactor(FactorFields):
    """One factor as stored: its public fields, its sealed secret and its attempt state.

    The secret parts are None once the factor is disabled or expired (erased).
    """

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
    # The app's clock drift in steps, measured by the last Resync.
    drift_steps: int = 0


@dataclass(frozen=True, slots=True)
class NewFactor(FactorFields):
    """A factor to enroll: stored PENDING, never used, with no failure counted."""

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
