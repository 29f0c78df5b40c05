"""The audit trail: what each call decided or changed, who asked, in which tenant.

Design notes: ARCHITECTURE.md, "Module notes", service/audit.py.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from totpd import calls
from totpd.service.checks import Check, Verdict
from totpd.service.errors import ErrorReason, TotpdError
from totpd.service.policy import Policy
from totpd.service.types import VerifyOutcome, VerifyResult
from totpd.store import FactorStore
from totpd.store.audit import AuditCall, AuditFilter, AuditRecord, AuditRow, RoundEvents

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
OK = "OK"  # the gRPC status names the events hold (the service imports no grpc)
_DENIED_STATUS = {
    ErrorReason.UNAUTHENTICATED: "UNAUTHENTICATED",
    ErrorReason.TENANT_REQUIRED: "INVALID_ARGUMENT",
}


def time_us(clock: Callable[[], float]) -> int:
    """The clock in whole microseconds, as events record it."""
    return math.floor(clock() * 1_000_000)


@dataclass(frozen=True, slots=True)
class AuditContext:
    """Who made the call an event describes: plain values, read at the service's entry."""

    caller: str
    tenant: str
    peer: str
    method: str
    request_id: str | None

    @classmethod
    def of_call(
        cls, method: str, request_id: str | None = None, *, tenant: str | None = None
    ) -> AuditContext:
        """The call being served (`calls.current()`); `method` as the service names it;
        `tenant`: the one the call acts in, as the service resolved it (its rounds')."""
        scope = calls.current()
        return cls(scope.caller, tenant or scope.tenant, scope.peer, method, request_id or None)

    def row(
        self,
        when_us: int,
        account_id: str,
        factor_id: str | None,
        outcome: VerifyOutcome | None = None,
    ) -> AuditRow:
        """The event of a state change (no outcome) or of a decided code."""
        result = None if outcome is None else outcome.result
        offset = outcome.step_offset if result is VerifyResult.VALID and outcome else None
        return AuditRow(
            when_us,
            self.caller,
            self.tenant,
            self.method,
            account_id,
            factor_id,
            None if result is None else result.name,
            None,
            OK,
            offset,
            self.request_id,
            self.peer,
        )

    def verdict_events(self, when_us: int, decided: Iterable[tuple[Check, Verdict]]) -> RoundEvents:
        """One event per decided code; errors decided nothing (module docstring)."""
        valid = VerifyResult.VALID
        items = [
            (
                check.item.account_id,
                verdict.factor_id or check.item.factor_id,
                verdict.result.name,
                verdict.step_offset if verdict.result is valid else None,
            )
            for check, verdict in decided
            if type(verdict) is VerifyOutcome
        ]
        call = AuditCall(when_us, self.caller, self.tenant, self.method, self.request_id, self.peer)
        return RoundEvents(call, items)


def per_call_events(
    when_us: int,
    decided: Iterable[tuple[Check, Verdict]],
    audits: Sequence[AuditContext | None],
) -> list[RoundEvents]:
    """The events of a round that decided codes for several calls (a coalesced
    round): one group per call, `audits[check.position]` being the check's call."""
    calls_decided: dict[int, list[tuple[Check, Verdict]]] = {}
    for check, verdict in decided:
        calls_decided.setdefault(check.position, []).append((check, verdict))
    return [
        audit.verdict_events(when_us, group)
        for position, group in calls_decided.items()
        if (audit := audits[position]) is not None
    ]


def answered_meanwhile(
    waiting: list[Check], still: list[Check], verdicts: list[Verdict | None]
) -> list[tuple[Check, Verdict]]:
    """The checks of `waiting` answered without a round of their own (not in `still`)."""
    if len(still) == len(waiting):
        return []
    left = {check.position for check in still}
    return [
        (check, verdict)
        for check in waiting
        if check.position not in left and (verdict := verdicts[check.position]) is not None
    ]


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """A ListAuditEvents request as the service takes it ("" / 0: no filter)."""

    tenant: str = ""
    account_id: str = ""
    caller: str = ""
    method: str = ""
    start_us: int = 0
    end_us: int = 0
    page_size: int = 0
    page_token: str = ""


class AuditLog:
    """Denied calls' events, and reading the trail (ListAuditEvents, the export)."""

    def __init__(self, store: FactorStore, policy: Policy, clock: Callable[[], float]) -> None:
        self._store = store
        self._policy = policy
        self._clock = clock

    def record_denied(
        self, scope: calls.CallScope, method: str, reason: ErrorReason, account_id: str = ""
    ) -> None:
        """The event of a call the rpc layer refused (UNAUTHENTICATED, PERMISSION_DENIED,
        TENANT_REQUIRED), in its own transaction. A store fault is raised: the call fails
        (with UNAVAILABLE) rather than go unrecorded."""
        if not self._policy.audit_enabled:
            return
        status = _DENIED_STATUS.get(reason, "PERMISSION_DENIED")
        row = AuditRow(
            time_us(self._clock),
            scope.caller,
            scope.tenant,
            method or scope.method,
            account_id,
            None,
            None,
            reason.name,
            status,
            None,
            None,
            scope.peer,
        )
        self._store.audit.append([row])

    def list_events(self, query: AuditQuery) -> tuple[list[AuditRecord], str]:
        """One page of events, oldest first, and the token of the next page ("" at the end).

        A caller sees only its tenants' events (`calls.current()`); the local
        caller sees all. INVALID_ARGUMENT for a bad page size or token.
        """
        size = query.page_size or DEFAULT_PAGE_SIZE
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise TotpdError(
                ErrorReason.INVALID_ARGUMENT,
                f"page_size must be 0 (for {DEFAULT_PAGE_SIZE}) up to {MAX_PAGE_SIZE}",
                field="page_size",
            )
        if query.start_us < 0 or query.end_us < 0:
            raise TotpdError(
                ErrorReason.INVALID_ARGUMENT,
                "times are Unix microseconds, 0 or more",
                field="start_time_unix_micros",
            )
        tenants = visible_tenants()
        if tenants is not None and query.tenant and query.tenant not in tenants:
            # As for any other call naming a tenant the caller does not hold.
            raise TotpdError(
                ErrorReason.PERMISSION_DENIED,
                "the caller may not read this tenant's events",
                field="tenant",
            )
        where = filter_of(query, tenants)
        after = _token_position(query.page_token, where)
        records = self._store.audit.page(where, after_id=after, limit=size + 1)
        if len(records) <= size:
            return records, ""
        records = records[:size]
        return records, _token(records[-1].event_id, where)

    def prune(self, now: float, *, limit: int) -> int:
        """Delete up to `limit` events older than the retention; returns how many."""
        cutoff = time_us(lambda: now - self._policy.audit_retention_days * 86400)
        return self._store.audit.prune_before(cutoff, limit=limit)


def visible_tenants() -> frozenset[str] | None:
    """The tenants the current caller may read events of: those it holds in the
    callers file (`CallScope.tenants`, set by the rpc layer); None: all (the local
    caller). A scope without a tenant list (made outside the rpc layer) sees its
    call's tenant."""
    scope = calls.current()
    if scope.caller == calls.LOCAL_CALLER:
        return None
    return frozenset(scope.tenants or (scope.tenant,))


def filter_of(query: AuditQuery, tenants: frozenset[str] | None) -> AuditFilter:
    return AuditFilter(
        tenants=tenants,
        tenant=query.tenant or None,
        account_id=query.account_id or None,
        caller=query.caller or None,
        method=query.method or None,
        start_us=query.start_us or None,
        end_us=query.end_us or None,
    )


def _filters_hash(where: AuditFilter) -> str:
    tenants = None if where.tenants is None else sorted(where.tenants)
    fields = [
        tenants,
        where.tenant,
        where.account_id,
        where.caller,
        where.method,
        where.start_us,
        where.end_us,
    ]
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:16]


def _token(after_id: int, where: AuditFilter) -> str:
    raw = json.dumps({"after": after_id, "filters": _filters_hash(where)}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _token_position(token: str, where: AuditFilter) -> int:
    """The last event id of the page before, from its opaque token (0: the first page)."""
    if not token:
        return 0
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        parsed = json.loads(raw)
        after, filters = parsed["after"], parsed["filters"]
        if type(after) is not int or after < 0 or not isinstance(filters, str):
            raise ValueError("bad token fields")
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise TotpdError(
            ErrorReason.INVALID_ARGUMENT,
            "page_token is not one this server returned; start again without it",
            field="page_token",
        ) from None
    if filters != _filters_hash(where):
        raise TotpdError(
            ErrorReason.INVALID_ARGUMENT,
            "page_token belongs to a query with other filters; send the same filters "
            "as the first page, or start again without it",
            field="page_token",
        )
    return after
