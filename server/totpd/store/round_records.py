"""The records of a verification round: what it reads (`AttemptRequest`,
`CandidateFactor`) and what it writes (`FactorWrite`, `AccountWrite`)."""

from __future__ import annotations

from typing import NamedTuple


class AttemptRequest(NamedTuple):
    """One code to check against an account's factors with `digits` digits."""

    account_id: str
    digits: int
    factor_id: str | None


class CandidateFactor(NamedTuple):
    """A factor a code may be checked against, as a round read it.

    A flat named tuple in the column order of the read, so a row becomes one
    with a single `_make`: 10,000 of them are built per large batch, and
    keyword construction or nested tuples cost 3x more.
    """

    factor_id: str
    account_id: str
    algorithm: str
    digits: int
    period_seconds: int
    secret_key_id: str
    secret_nonce: bytes
    secret_ciphertext: bytes
    last_used_step: int
    failed_attempts: int
    blocked_until: int
    # The account's row (accounts table), the same on each of its factors;
    # all None when the account has none yet (a full budget, no failures).
    budget_tat: int | None
    consecutive_failures: int | None
    locked_at: int | None
    # The app's measured clock drift in steps (Resync): the window's centre.
    drift_steps: int


class FactorWrite(NamedTuple):
    """The new attempt state of one factor, and the state it was decided from.

    In the JSON row order of the write. `consumed` is 1 for a won step:
    `last_used_step` is then the new, greater step (and a pending factor
    becomes active); 0 leaves it unchanged. An int, not a bool, because the
    row goes to the database as JSON as it is. The `seen_*` fields are the
    values read: the write applies only where the factor still holds them.
    """

    factor_id: str
    failed_attempts: int
    blocked_until: int
    last_used_step: int
    consumed: int
    seen_failed_attempts: int
    seen_blocked_until: int
    seen_last_used_step: int


class AccountWrite(NamedTuple):
    """The new attempt state of one account, and the state it was decided from.

    In the JSON row order of the write. `seen_*` None: the account had no
    row; it is then inserted, only if still absent. Otherwise the row is
    updated only where it still holds the values read (and is not locked).
    """

    account_id: str
    budget_tat: int
    consecutive_failures: int
    locked_at: int | None
    seen_budget_tat: int | None
    seen_consecutive_failures: int | None
