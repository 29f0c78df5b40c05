"""Typed results of the totpd client: plain dataclasses and enums, no protobuf."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime

from .errors import TotpdError
from .v1 import factor_pb2, lifecycle_pb2


class VerifyResult(enum.Enum):
    """The verdict on one code. A wrong or reused code is a result, not an error."""

    UNSPECIFIED = 0
    VALID = 1
    INVALID = 2
    REPLAYED = 3
    LOCKED = 4

    @classmethod
    def _missing_(cls, value: object) -> VerifyResult:
        return cls.UNSPECIFIED  # newer than this client: treat as a refusal


class FactorState(enum.Enum):
    UNSPECIFIED = 0
    PENDING = 1
    ACTIVE = 2
    DISABLED = 3
    EXPIRED = 4

    @classmethod
    def _missing_(cls, value: object) -> FactorState:
        return cls.UNSPECIFIED


class Algorithm(enum.Enum):
    UNSPECIFIED = 0
    SHA1 = 1
    SHA256 = 2
    SHA512 = 3

    @classmethod
    def _missing_(cls, value: object) -> Algorithm:
        return cls.UNSPECIFIED


def _time(unix: int) -> datetime | None:
    return datetime.fromtimestamp(unix, tz=UTC) if unix else None


@dataclass(frozen=True, slots=True)
class Factor:
    """One authenticator app of one account, without secret material."""

    factor_id: str
    account_id: str
    label: str
    issuer: str
    algorithm: Algorithm
    digits: int
    period_seconds: int
    state: FactorState
    created_at: datetime | None
    confirmed_at: datetime | None
    last_used_at: datetime | None
    expires_at: datetime | None
    drift_steps: int = 0
    """The app's clock drift measured by the last resync, in time steps (positive:
    the app runs ahead); verification centres its window on it. 0 before any."""

    @classmethod
    def from_proto(cls, f: factor_pb2.Factor) -> Factor:
        return cls(
            factor_id=f.factor_id,
            account_id=f.account_id,
            label=f.label,
            issuer=f.issuer,
            algorithm=Algorithm(f.algorithm),
            digits=f.digits,
            period_seconds=f.period_seconds,
            state=FactorState(f.state),
            created_at=_time(f.created_at_unix),
            confirmed_at=_time(f.confirmed_at_unix),
            last_used_at=_time(f.last_used_at_unix),
            expires_at=_time(f.expires_at_unix),
            drift_steps=f.drift_steps,
        )


@dataclass(frozen=True, slots=True)
class VerifyOutcome:
    """The verdict with what the caller needs to act on it."""

    result: VerifyResult
    factor_id: str
    step_offset: int
    attempts_left: int
    retry_after: float
    """Seconds until the next attempt is compared (LOCKED, backoff); 0 otherwise."""
    unlock_required: bool = False
    """LOCKED until an operator unlocks the account (or the user proves possession
    through another factor): waiting does not help, ``retry_after`` is 0."""

    @property
    def valid(self) -> bool:
        return self.result is VerifyResult.VALID

    @classmethod
    def from_proto(cls, o: factor_pb2.VerifyOutcome) -> VerifyOutcome:
        return cls(
            result=VerifyResult(o.result),
            factor_id=o.factor_id,
            step_offset=o.step_offset,
            attempts_left=o.attempts_left,
            retry_after=float(o.retry_after_seconds),
            unlock_required=o.unlock_required,
        )


@dataclass(frozen=True, slots=True)
class Enrollment:
    """A new PENDING factor and the only copy of its secret material."""

    factor: Factor
    otpauth_uri: str
    secret_base32: str
    qr_png: bytes
    qr_svg: str

    def __repr__(self) -> str:  # keep the secret out of logs and tracebacks
        return f"Enrollment(factor={self.factor!r}, secret=<redacted>)"


@dataclass(frozen=True, slots=True)
class Confirmation:
    outcome: VerifyOutcome
    factor: Factor


@dataclass(frozen=True, slots=True)
class DisableResult:
    outcome: VerifyOutcome
    factors: list[Factor]


@dataclass(frozen=True, slots=True)
class BatchItem:
    account_id: str
    code: str
    factor_id: str = ""


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Exactly one of ``outcome`` and ``error`` is set."""

    outcome: VerifyOutcome | None = None
    error: TotpdError | None = None

    @property
    def valid(self) -> bool:
        return self.outcome is not None and self.outcome.valid


@dataclass(frozen=True, slots=True)
class RecoveryCodesStatus:
    """How many recovery codes an account has left, never the codes themselves."""

    remaining: int
    """Unused codes of the current set; 0 when the account has none."""
    issued: int
    """How many codes the current set had when generated; 0 when there is no set."""
    generated_at: datetime | None

    @classmethod
    def from_proto(cls, s: lifecycle_pb2.RecoveryCodesStatus) -> RecoveryCodesStatus:
        return cls(s.remaining, s.issued, _time(s.generated_at_unix))


@dataclass(frozen=True, slots=True)
class RecoveryCodes:
    """A new set of single-use recovery codes: the only copy, show it to the user once."""

    codes: list[str]
    status: RecoveryCodesStatus

    def __repr__(self) -> str:  # keep the codes out of logs and tracebacks
        return f"RecoveryCodes(codes=<{len(self.codes)} redacted>, status={self.status!r})"


@dataclass(frozen=True, slots=True)
class RecoveryCodeVerification:
    """The verdict on one recovery code and the account's codes after it."""

    outcome: VerifyOutcome
    status: RecoveryCodesStatus

    @property
    def valid(self) -> bool:
        return self.outcome.valid


@dataclass(frozen=True, slots=True)
class UnlockResult:
    """What an unlock cleared; all zero/False when there was nothing to clear."""

    lock_lifted: bool
    consecutive_failures_cleared: int
    factors_cleared: int
    budget_refilled: bool

    @property
    def cleared_anything(self) -> bool:
        return bool(
            self.lock_lifted
            or self.consecutive_failures_cleared
            or self.factors_cleared
            or self.budget_refilled
        )


@dataclass(frozen=True, slots=True)
class ResyncResult:
    """VALID: ``factor.drift_steps`` is the new drift (also ``outcome.step_offset``)."""

    outcome: VerifyOutcome
    factor: Factor


@dataclass(frozen=True, slots=True)
class MfaStatus:
    """An account's factors and its recovery codes left (what ``ListFactors`` returns)."""

    factors: list[Factor]
    recovery_codes: RecoveryCodesStatus
