"""Python client for totpd, the gRPC RFC 6238 TOTP verification service.

>>> from totpd_client import TotpdClient, VerifyResult
>>> with TotpdClient("127.0.0.1:50051", insecure=True) as totpd:
...     outcome = totpd.verify("alice", "123456")
"""

from .client import DEFAULT_TIMEOUT, TotpdClient
from .errors import DOMAIN, ErrorReason, TotpdError
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
    "BatchItem",
    "BatchResult",
    "Confirmation",
    "DisableResult",
    "Enrollment",
    "ErrorReason",
    "Factor",
    "FactorState",
    "TotpdClient",
    "TotpdError",
    "VerifyOutcome",
    "VerifyResult",
]
