"""Python client for totpd, the gRPC RFC 6238 TOTP verification service.

>>> from totpd_client import TotpdClient, VerifyResult
>>> with TotpdClient("127.0.0.1:50051", insecure=True) as totpd:
...     outcome = totpd.verify("alice", "123456")
"""

from .audit import AuditEvent, AuditPage
from .client import DEFAULT_TIMEOUT, TotpdClient
from .errors import (
    DOMAIN,
    ErrorReason,
    PermissionDeniedError,
    TenantRequiredError,
    TotpdError,
    UnauthenticatedError,
)
from .types import (
    Algorithm,
    BatchItem,
    BatchResult,
    Confirmation,
    DisableResult,
    Enrollment,
    Factor,
    FactorState,
    MfaStatus,
    RecoveryCodes,
    RecoveryCodesStatus,
    RecoveryCodeVerification,
    ResyncResult,
    UnlockResult,
    VerifyOutcome,
    VerifyResult,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "DOMAIN",
    "Algorithm",
    "AuditEvent",
    "AuditPage",
    "BatchItem",
    "BatchResult",
    "Confirmation",
    "DisableResult",
    "Enrollment",
    "ErrorReason",
    "Factor",
    "FactorState",
    "MfaStatus",
    "PermissionDeniedError",
    "RecoveryCodeVerification",
    "RecoveryCodes",
    "RecoveryCodesStatus",
    "ResyncResult",
    "TenantRequiredError",
    "TotpdClient",
    "TotpdError",
    "UnauthenticatedError",
    "UnlockResult",
    "VerifyOutcome",
    "VerifyResult",
]
