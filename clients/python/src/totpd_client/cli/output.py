"""Human-readable rendering of totpd results and errors for `totpctl`."""

from __future__ import annotations

import json
from datetime import datetime

import grpc

from ..audit import AuditEvent
from ..errors import ErrorReason, TotpdError
from ..types import DisableResult, Factor, FactorState, VerifyOutcome, VerifyResult

# No server answered: a transport failure, not a status from totpd (which carries a reason).
_UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def timestamp(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "-"


def seconds(value: float) -> str:
    return f"{value:g} s"


def outcome_line(outcome: VerifyOutcome) -> str:
    """`RESULT (factor ..., step offset +N | attempts left N, ...)`."""
    details = []
    if outcome.factor_id:
        details.append(f"factor {outcome.factor_id}")
    if outcome.result is VerifyResult.VALID:
        details.append(f"step offset {outcome.step_offset:+d}")
    else:
        details.append(f"attempts left {outcome.attempts_left}")
    if outcome.unlock_required:
        details.append("locked until an operator unlocks the account; waiting does not help")
    elif outcome.retry_after:
        details.append(f"retry after {seconds(outcome.retry_after)}")
    return f"{outcome.result.name} ({', '.join(details)})"


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
    ]
    if factor.state is FactorState.PENDING:
        lines.append(f"expires:     {timestamp(factor.expires_at)}")
    return lines


def factor_table(factors: list[Factor]) -> list[str]:
    rows = [("FACTOR ID", "LABEL", "ISSUER", "PARAMETERS", "STATE", "LAST USED")]
    rows += [
        (
            f.factor_id,
            f.label,
            f.issuer,
            f"{f.algorithm.name}/{f.digits}/{f.period_seconds}s",
            f.state.name,
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
