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
    "PermissionDeniedError",
    "TenantRequiredError",
    "TotpdClient",
    "TotpdError",
    "UnauthenticatedError",
    "VerifyOutcome",
    "VerifyResult",
]
