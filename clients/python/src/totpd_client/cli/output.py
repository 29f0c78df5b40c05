"""Human-readable rendering of totpd results and errors for `totpctl`."""

from __future__ import annotations

import json
from datetime import datetime

import grpc

from ..audit import AuditEvent
from ..errors import ErrorReason, TotpdError
from ..types import (
    DisableResult,
    Factor,
    FactorState,
    RecoveryCodes,
    RecoveryCodesStatus,
    RecoveryCodeVerification,
    ResyncResult,
    UnlockResult,
    VerifyOutcome,
    VerifyResult,
)

# No server answered: a transport failure, not a status from totpd (which carries a reason).
_UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def timestamp(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "-"


def seconds(value: float) -> str:
    return f"{value:g} s"


def outcome_line(outcome: VerifyOutcome, valid_detail: str = "step offset") -> str:
    """`RESULT (factor ..., step offset +N | attempts left N, ...)`."""
    details = []
    if outcome.factor_id:
        details.append(f"factor {outcome.factor_id}")
    if outcome.result is VerifyResult.VALID:
        details.append(f"{valid_detail} {outcome.step_offset:+d}")
    else:
        details.append(f"attempts left {outcome.attempts_left}")
    return f"{outcome.result.name} ({', '.join(details + _waiting(outcome))})"


def _waiting(outcome: VerifyOutcome) -> list[str]:
    if outcome.unlock_required:
        return ["locked until an operator unlocks the account; waiting does not help"]
    if outcome.retry_after:
        return [f"retry after {seconds(outcome.retry_after)}"]
    return []


def recovery_status_line(status: RecoveryCodesStatus) -> str:
    """`recovery codes: N of M left (generated TIME)`, or `recovery codes: none`."""
    if not status.issued:
        return "recovery codes: none"
    return (
        f"recovery codes: {status.remaining} of {status.issued} left"
        f" (generated {timestamp(status.generated_at)})"
    )


def recovery_verification_line(checked: RecoveryCodeVerification) -> str:
    """`RESULT (attempts left N, ..., recovery codes: N of M left)`."""
    outcome, status = checked.outcome, checked.status
    details = [] if outcome.valid else [f"attempts left {outcome.attempts_left}"]
    details += _waiting(outcome)
    details.append(f"recovery codes: {status.remaining} of {status.issued} left")
    return f"{outcome.result.name} ({', '.join(details)})"


def recovery_codes_json(generated: RecoveryCodes) -> str:
    status = generated.status
    generated_at = status.generated_at
    return json.dumps(
        {
            "codes": generated.codes,
            "remaining": status.remaining,
            "issued": status.issued,
            "generated_at": _audit_time(generated_at) if generated_at else "",
        },
        separators=(",", ":"),
    )


def unlock_line(account_id: str, result: UnlockResult) -> str:
    """What the unlock cleared, or that there was nothing to clear."""
    if not result.cleared_anything:
        return f"NOTHING TO UNLOCK ({account_id} had no lock, failures or spent budget)"
    cleared = []
    if result.lock_lifted:
        cleared.append("lock lifted")
    if result.consecutive_failures_cleared:
        cleared.append(f"{result.consecutive_failures_cleared} consecutive failure(s) cleared")
    if result.factors_cleared:
        cleared.append(f"{result.factors_cleared} factor(s) cleared")
    if result.budget_refilled:
        cleared.append("failure budget refilled")
    return f"UNLOCKED {account_id} ({', '.join(cleared)})"


def resync_lines(result: ResyncResult) -> list[str]:
    """VALID shows the new drift; the factor as it is after the attempt."""
    return [outcome_line(result.outcome, "drift"), *factor_lines(result.factor)]


def drift(factor: Factor) -> str:
    return f"{factor.drift_steps:+d}"


def disable_lines(result: DisableResult, *, forced: bool) -> list[str]:
    """A forced disable checked no code, so it has no verdict to show."""
    if forced:
        head = f"DISABLED BY FORCE (no code checked, {len(result.factors)} factor(s))"
    else:
        head = outcome_line(result.outcome)
    return [head, *(f"disabled {f.factor_id} ({f.label})" for f in result.factors)]


def factor_lines(factor: Factor) -> list[str]:
    lines = [
        f"factor id:   {factor.factor_id}",
        f"account:     {factor.account_id}",
        f"label:       {factor.label}",
        f"issuer:      {factor.issuer}",
        f"parameters:  {factor.algorithm.name}, {factor.digits} digits, {factor.period_seconds} s",
        f"state:       {factor.state.name}",
        f"created:     {timestamp(factor.created_at)}",
        f"confirmed:   {timestamp(factor.confirmed_at)}",
        f"last used:   {timestamp(factor.last_used_at)}",
        f"drift:       {drift(factor)} step(s)",
    ]
    if factor.state is FactorState.PENDING:
        lines.append(f"expires:     {timestamp(factor.expires_at)}")
    return lines


def factor_table(factors: list[Factor]) -> list[str]:
    rows = [("FACTOR ID", "LABEL", "ISSUER", "PARAMETERS", "STATE", "DRIFT", "LAST USED")]
    rows += [
        (
            f.factor_id,
            f.label,
            f.issuer,
            f"{f.algorithm.name}/{f.digits}/{f.period_seconds}s",
            f.state.name,
            drift(f),
            timestamp(f.last_used_at),
        )
        for f in factors
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _audit_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def audit_line(event: AuditEvent) -> str:
    """`TIME #ID method=M caller=C tenant=T account=A ... status=S`, empty fields left out."""
    fields = [
        ("method", event.method),
        ("caller", event.caller),
        ("tenant", event.tenant),
        ("account", event.account_id),
        ("factor", event.factor_id),
    ]
    if event.verify_result is not VerifyResult.UNSPECIFIED:
        fields.append(("result", event.verify_result.name))
        if event.verify_result is VerifyResult.VALID:
            fields.append(("offset", f"{event.step_offset:+d}"))
    reason = event.error_reason
    fields += [
        ("status", event.status_code),
        ("reason", "" if reason is ErrorReason.UNSPECIFIED else reason.name),
        ("request", event.request_id),
        ("peer", event.peer),
    ]
    words = " ".join(f"{name}={value}" for name, value in fields if value)
    return f"{_audit_time(event.time)} #{event.event_id} {words}"


def audit_json(event: AuditEvent) -> str:
    """One JSON object: every field, enums by name ("" when unspecified)."""
    unspecified = (VerifyResult.UNSPECIFIED, ErrorReason.UNSPECIFIED)
    return json.dumps(
        {
            "event_id": event.event_id,
            "time": _audit_time(event.time),
            "caller": event.caller,
            "tenant": event.tenant,
            "method": event.method,
            "account_id": event.account_id,
            "factor_id": event.factor_id,
            "verify_result": "" if event.verify_result in unspecified else event.verify_result.name,
            "error_reason": "" if event.error_reason in unspecified else event.error_reason.name,
            "status_code": event.status_code,
            "step_offset": event.step_offset,
            "request_id": event.request_id,
            "peer": event.peer,
        },
        separators=(",", ":"),
    )


def error_line(error: TotpdError, *, server: str, tls: bool) -> str:
    """`CODE REASON: message (field F) (retry after N s)`, plus a hint when nothing answered."""
    line = error.code.name
    if error.reason is not ErrorReason.UNSPECIFIED:
        line += f" {error.reason.value}"
    if error.message:
        line += f": {error.message}"
    if error.field:
        line += f" (field {error.field})"
    if error.retry_after is not None:
        line += f" (retry after {seconds(error.retry_after)})"
    if error.reason is ErrorReason.UNSPECIFIED and error.code in _UNREACHABLE:
        transport = (
            "check --tls-ca, --tls-cert and --tls-key against the server's TLS settings"
            if tls
            else "a TLS server needs --tls or --tls-ca"
        )
        line += f" (is totpd running at {server}? see --server or TOTPCTL_SERVER; {transport})"
    return line
