"""The MFA service: :class:`MfaService` (mfa/service.py) and a module per job beneath it;
see ARCHITECTURE.md ("service/")."""

from totpd.service.mfa.factors import to_factor
from totpd.service.mfa.service import MfaService

__all__ = ["MfaService", "to_factor"]
