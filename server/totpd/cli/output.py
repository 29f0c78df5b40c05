"""Human-readable rendering of totpd responses and errors for `totpctl`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from totpd.v1 import factor_pb2


def enum_name(enum: Any, number: int, prefix: str) -> str:
    try:
        name: str = enum.Name(number)
    except ValueError:
        return str(number)
    return name.removeprefix(prefix)


def timestamp(unix: int) -> str:
    if not unix:
        return "-"
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def outcome_line(outcome: factor_pb2.VerifyOutcome) -> str:
    result = enum_name(factor_pb2.VerifyResult, outcome.result, "VERIFY_RESULT_")
    details = []
    if outcome.factor_id:
        details.append(f"factor {outcome.factor_id}")
    if outcome.result == factor_pb2.VERIFY_RESULT_VALID:
        details.append(f"step offset {outcome.step_offset:+d}")
    else:
        details.append(f"attempts left {outcome.attempts_left}")
    if outcome.retry_after_seconds:
        details.append(f"retry after {outcome.retry_after_seconds} s")
    return f"{result} ({', '.join(details)})"


def factor_lines(factor: factor_pb2.Factor) -> list[str]:
    algorithm = enum_name(factor_pb2.Algorithm, factor.algorithm, "ALGORITHM_")
    state = enum_name(factor_pb2.FactorState, factor.state, "FACTOR_STATE_")
    lines = [
        f"factor id:   {factor.factor_id}",
        f"account:     {factor.account_id}",
        f"label:       {factor.label}",
        f"issuer:      {factor.issuer}",
        f"parameters:  {algorithm}, {factor.digits} digits, {factor.period_seconds} s",
        f"state:       {state}",
        f"created:     {timestamp(factor.created_at_unix)}",
        f"confirmed:   {timestamp(factor.confirmed_at_unix)}",
        f"last used:   {timestamp(factor.last_used_at_unix)}",
    ]
    if factor.state == factor_pb2.FACTOR_STATE_PENDING:
        lines.append(f"expires:     {timestamp(factor.expires_at_unix)}")
    return lines


def factor_table(factors: list[factor_pb2.Factor]) -> list[str]:
    rows = [("FACTOR ID", "LABEL", "ISSUER", "PARAMETERS", "STATE", "LAST USED")]
    for f in factors:
        algorithm = enum_name(factor_pb2.Algorithm, f.algorithm, "ALGORITHM_")
        rows.append(
            (
                f.factor_id,
                f.label,
                f.issuer,
                f"{algorithm}/{f.digits}/{f.period_seconds}s",
                enum_name(factor_pb2.FactorState, f.state, "FACTOR_STATE_"),
                timestamp(f.last_used_at_unix),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def error_line(error: grpc.RpcError) -> str:
    """`CODE REASON: message (field ...)`, from the rich status when the server sent one."""
    call = cast(grpc.Call, error)  # every RpcError a stub raises is also a Call
    code = call.code()
    details = call.details() or ""
    reason, field = "", ""
    status = rpc_status.from_call(call)
    if status is not None:
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                reason = info.reason
                field = info.metadata.get("field", "")
                break
    line = code.name + (f" {reason}" if reason else "") + (f": {details}" if details else "")
    if field:
        line += f" (field {field})"
    return line
