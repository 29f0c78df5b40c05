"""The service's values, as its callers (the gRPC layer) see them.

Plain frozen dataclasses, named tuples and enums: no grpc, no SQL. The gRPC
layer maps them to and from the proto messages. The words every layer shares
(`Algorithm`, `FactorState`) live in totpd.domain. The values a BatchVerify
builds once per item (`VerifyItem`, `VerifyOutcome`) are named tuples: 10,000
per call, and a frozen dataclass takes about three times longer to build.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple

from totpd.domain import Algorithm, FactorFields, FactorState

# Re-exported: the service's callers name them through this module too.
__all__ = [
    "Algorithm",
    "EnrollParams",
    "Enrollment",
    "Factor",
    "FactorState",
    "Unlocked",
    "VerifyItem",
    "VerifyOutcome",
    "VerifyResult",
]


class VerifyResult(enum.Enum):
    VALID = "valid"
    INVALID = "invalid"
    REPLAYED = "replayed"
    LOCKED = "locked"


@dataclass(frozen=True, slots=True)
class Factor(FactorFields):
    """One authenticator app of one account, without secret material."""

    state: FactorState
    created_at: int
    confirmed_at: int | None
    last_used_at: int | None
    expires_at: int | None
    # The app's clock drift in steps, measured by the last Resync.
    drift_steps: int = 0


class VerifyOutcome(NamedTuple):
    """The verdict on one code and what a caller needs to act on it."""

    result: VerifyResult
    factor_id: str | None = None
    step_offset: int = 0
    attempts_left: int = 0
    retry_after_seconds: int = 0
    # LOCKED until an operator unlocks the account: waiting does not help.
    unlock_required: bool = False


@dataclass(frozen=True, slots=True)
class EnrollParams:
    """What a caller may choose at enrollment; None means the server default."""

    account_id: str
    label: str
    issuer: str | None = None
    algorithm: Algorithm | None = None
    digits: int | None = None
    period_seconds: int | None = None


@dataclass(frozen=True, slots=True)
class Enrollment:
    """The pending factor and the only copy of its secret that leaves totpd."""

    factor: Factor
    otpauth_uri: str
    secret_base32: str
    qr_png: bytes
    qr_svg: str


class VerifyItem(NamedTuple):
    """One code to check, as in a Verify request or a BatchVerify item."""

    account_id: str
    code: str
    factor_id: str | None = None


@dataclass(frozen=True, slots=True)
class Unlocked:
    """What an Unlock cleared (UnlockResponse)."""

    lock_lifted: bool
    consecutive_failures_cleared: int
    factors_cleared: int
    budget_refilled: bool
