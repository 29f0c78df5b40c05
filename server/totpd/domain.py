"""The words every layer shares: algorithms, factor states, bounds.

Below everything: imports nothing from totpd, so the store, the C core's
wrapper (otp/), the service and the gRPC layer can all use it without an
arrow pointing up. See ARCHITECTURE.md for the layer picture.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final


class Algorithm(enum.Enum):
    """HMAC hash of a factor; the value is the otpauth URI spelling."""

    SHA1 = "SHA1"
    SHA256 = "SHA256"
    SHA512 = "SHA512"

    @property
    def secret_size(self) -> int:
        """Secret length in bytes: the digest size (RFC 6238 section 5.1)."""
        return SECRET_SIZES[self]


SECRET_SIZES: Final[dict[Algorithm, int]] = {
    Algorithm.SHA1: 20,
    Algorithm.SHA256: 32,
    Algorithm.SHA512: 64,
}


class FactorState(enum.StrEnum):
    """A factor's life: PENDING until confirmed, then ACTIVE; DISABLED and EXPIRED
    are ends. A StrEnum: the stored column holds the value, and a member compares
    equal to it."""

    PENDING = "pending"
    ACTIVE = "active"
    DISABLED = "disabled"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class FactorFields:
    """What every view of a factor holds: whose it is, its label, and how its codes are
    made. The service's `Factor` and the store's `StoredFactor` and `NewFactor` extend it."""

    factor_id: str
    account_id: str
    label: str
    issuer: str
    algorithm: Algorithm
    digits: int
    period_seconds: int


# States whose label is taken and which count toward the per-account limit.
LIVE_STATES: Final[tuple[FactorState, ...]] = (FactorState.PENDING, FactorState.ACTIVE)
# States a factor never leaves: purged once they have been ended long enough.
ENDED_STATES: Final[tuple[FactorState, ...]] = (FactorState.DISABLED, FactorState.EXPIRED)

# A factor's last used step before its first success: every step is newer.
NEVER_USED_STEP: Final = -1

# Code lengths and periods a factor may have (the C core accepts the digits too).
DIGITS_RANGE: Final = range(6, 9)
PERIOD_RANGE: Final = range(15, 121)
DEFAULT_DIGITS: Final = 6
DEFAULT_PERIOD_SECONDS: Final = 30
DEFAULT_ALGORITHM: Final = Algorithm.SHA1

# Field lengths: what validation accepts is what the columns hold.
ACCOUNT_ID_MAX: Final = 128
# A tenant's name (callers file, x-totpd-tenant metadata): the column's width.
TENANT_MAX: Final = 64
LABEL_MAX: Final = 64
ISSUER_MAX: Final = 64
