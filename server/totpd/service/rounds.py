"""What one round of the verification engine carries (service/verification.py):
its checks, their reads, the call(s) whose audit events it writes, and a call's
request record to complete with it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

from totpd.domain import FactorState
from totpd.service.audit import AuditContext, per_call_events
from totpd.service.checks import Check, Verdict
from totpd.service.policy import Policy
from totpd.store import AttemptRequest
from totpd.store.audit import RoundEvents
from totpd.store.requests import Completion


class RoundCompletion(Protocol):
    """A call's request record (service/idempotency.py), completed with its verdict
    in the transaction of the round that stores the verdict: a retry never finds
    the verdict stored and the record still running."""

    def of(self, verdicts: Sequence[tuple[Check, Verdict]]) -> Completion | None:
        """The record of the round's verdicts (None: nothing to store)."""

    def stored(self) -> None:
        """The round that carried the record committed."""


class Round(NamedTuple):
    """A round decided again under locks: its checks and what its stages need."""

    checks: list[Check]
    requests: list[AttemptRequest]
    state: FactorState
    now: int
    activate: bool
    tenant: str
    policy: Policy
    audit: AuditContext | None = None
    completion: RoundCompletion | None = None
    # A coalesced round's calls' audits, by check position (`audit` is then None).
    audits: Sequence[AuditContext | None] = ()

    def events(self, when_us: int, verdicts: list[tuple[Check, Verdict]]) -> list[RoundEvents]:
        """The round's audit events: one group per call."""
        if self.audit is not None:
            return [self.audit.verdict_events(when_us, verdicts)]
        return per_call_events(when_us, verdicts, self.audits) if self.audits else []
