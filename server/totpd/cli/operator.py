"""Who an operator's command (`totpd unlock`, `totpd rekey`) is in the audit trail."""

from __future__ import annotations

import getpass
import os

from totpd.service.audit import AuditContext


def operator_audit(method: str, tenant: str) -> AuditContext:
    """The command's audit context: caller "cli:<OS user>", no peer, no request id."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (a bare container)
        user = str(os.getuid())
    return AuditContext(f"cli:{user}", tenant, "", method, None)
