"""The verification engine: checks codes against accounts' factors in rounds.

Design notes: ARCHITECTURE.md, "Module notes", service/verification.py.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import NamedTuple

from totpd.crypto import Keyring
from totpd.domain import FactorState
from totpd.service import lanes, validation
from totpd.service.accounting import (
    account_reset,
    count_on_account,
    failure_writes,
    success_writes,
)
from totpd.service.audit import AuditContext, answered_meanwhile, time_us
from totpd.service.caller_limits import CallerLimits
from totpd.service.checks import Check, Verdict
from totpd.service.errors import ErrorReason, TotpdError
from totpd.service.faults import as_domain_error, is_store_fault, store_fault
from totpd.service.matching import matched_steps
from totpd.service.policy import Policies, Policy
from totpd.service.round_plan import (
    answer_while_locked,
    failures,
    one_per_account,
    round_parts,
    unless_lost,
)
from totpd.service.rounds import Round, RoundCompletion
from totpd.service.types import VerifyItem, VerifyOutcome
from totpd.service.uncounted import uncounted_verdicts
from totpd.store import (
    AccountWrite,
    AttemptRequest,
    CandidateFactor,
    FactorStore,
    FactorWrite,
    RoundAbortedError,
)
from totpd.telemetry import metrics

_log = logging.getLogger("totpd.service")
__all__ = ["CodeChecker", "RoundCompletion"]
# Tries of a locked round, which the database may abort to break a deadlock.
_LOCKED_TRIES = 3
# A round's verdicts, and its checks that had no candidate (nothing counted).
_RoundVerdicts = tuple[list[tuple[Check, Verdict]], list[Check]]


class _PartVerdicts(NamedTuple):
    """What one round (a part of a call's round) settled: its stored verdicts, the
    verdicts of its checks without a candidate, and the fault that stopped it."""

    decided: list[tuple[Check, Verdict]]
    loose: list[tuple[Check, Verdict]]
    fault: Exception | None


def _faulted(part: _PartVerdicts) -> bool:
    return part.fault is not None


class CodeChecker:
    """The engine: checks requests in rounds and stores what each round decided."""

    def __init__(
        self, store: FactorStore, keyring: Keyring, policies: Policies, clock: Callable[[], float]
    ) -> None:
        self._store = store
        self._keyring = keyring
        self._policies = policies
        self._clock = clock
        # A caller's limit spans the tenants it acts in: the global policy's.
        policy = policies.default
        self._callers = CallerLimits(
            policy.caller_failures_per_second, policy.caller_failure_burst, clock
        )

    @property
    def callers(self) -> CallerLimits:
        """The per-caller rate of failures: Resync and recovery codes spend from it too."""
        return self._callers

    def check(
        self,
        request: VerifyItem,
        *,
        state: FactorState,
        activate: bool = True,
        caller: str | None = None,
        tenant: str,
        audit: AuditContext | None = None,
        completion: RoundCompletion | None = None,
    ) -> VerifyOutcome:
        """One code; errors (database faults included) are raised.

        `activate`: a code that wins a step of a pending factor confirms it.
        `audit`: the call whose verdicts get audit events (None: none).
        `completion`: the call's request record, stored with its verdict.
        """
        (verdict,) = self.check_many(
            [request],
            state=state,
            activate=activate,
            faults_per_item=False,
            caller=caller,
            tenant=tenant,
            audit=audit,
            completion=completion,
        )
        if isinstance(verdict, TotpdError):
            raise verdict
        return verdict

    def check_many(
        self,
        requests: Sequence[VerifyItem],
        *,
        state: FactorState,
        activate: bool = True,
        faults_per_item: bool = True,
        caller: str | None = None,
        tenant: str,
        audit: AuditContext | None = None,
        completion: RoundCompletion | None = None,
    ) -> list[Verdict]:
        """`_check_all` for a caller with room for every check to fail, in `tenant`
        (its accounts, under its policy).

        RATE_LIMITED (nothing compared, nothing counted) if `caller` has no
        room for len(requests) failures; the room its checks did not fail in
        is given back. None: a call from inside totpd, not limited.
        """
        reservation = self._callers.reserve(caller, len(requests))
        verdicts: list[Verdict] = []
        try:
            verdicts = self._check_all(
                requests,
                state=state,
                activate=activate,
                faults_per_item=faults_per_item,
                tenant=tenant,
                policy=self._policies.for_tenant(tenant),
                audit=audit,
                completion=completion,
            )
        finally:
            if reservation is not None:
                self._callers.settle(reservation, failures(verdicts))
        metrics.count_verdicts([v.result for v in verdicts if type(v) is VerifyOutcome])
        return verdicts

    def check_round(
        self, checks: list[Check], audits: Sequence[AuditContext | None], *, tenant: str
    ) -> list[Verdict]:
        """One round for the checks of concurrent unary calls, each of its own
        account (service/coalescing.py); `audits[check.position]`: its call's.

        An error raised means nothing was stored. Once the round committed, a
        fault fails only the checks it had not decided (as their own error).
        Callers' limits are the calls' own business.
        """
        policy = self._policies.for_tenant(tenant)
        state, now = FactorState.ACTIVE, math.floor(self._clock())
        requests = _attempt_requests(checks)
        round_ = Round(checks, requests, state, now, True, tenant, policy, audits=audits)
        decided, uncounted = self._round_verdicts(round_)
        verdicts: list[Verdict | None] = [None] * len(checks)
        for check, verdict in decided:
            verdicts[check.position] = verdict
        try:
            loose = uncounted_verdicts(self._store, policy, uncounted, state, now, tenant)
            for check, verdict in loose:
                verdicts[check.position] = verdict
            events = round_.events(time_us(self._clock), loose)
            rows = [row for group in events for row in group.rows()]
            if rows:
                self._store.audit.append(rows)
        except Exception as error:  # after the commit: never fail a decided check
            fault = as_domain_error(error, "Verify") or _internal(error)
            for check in uncounted:
                verdicts[check.position] = fault
        done = [verdict for verdict in verdicts if verdict is not None]
        metrics.count_verdicts([v.result for v in done if type(v) is VerifyOutcome])
        return done

    def _check_all(
        self,
        requests: Sequence[VerifyItem],
        *,
        state: FactorState,
        activate: bool,
        faults_per_item: bool,
        tenant: str,
        policy: Policy,
        audit: AuditContext | None = None,
        completion: RoundCompletion | None = None,
    ) -> list[Verdict]:
        """Many codes against factors in `state`; each gets its verdict or its error.

        A database fault before any check has its verdict fails the whole call
        (nothing was stored; the caller retries it). After that, with
        `faults_per_item`, it does not discard the verdicts already reached (a
        retry would find their steps used and count their failures twice):
        those checks keep them and every check not decided gets the fault as its
        own error.

        A round of more than `round_plan.PART_CHECKS` checks runs as parts, each a
        round of its own, up to three at a time (service/lanes.py); once one faults no
        other starts, and the rule above holds over all of them.

        With `audit`, a round's verdicts get their events in the round's
        transaction; the verdicts answered outside a round's write (LOCKED
        without a candidate to write, or settled by an earlier round) change
        nothing, and get theirs in one statement at the end.
        """
        verdicts: list[Verdict | None] = [None] * len(requests)
        waiting = _parsed_checks(requests, verdicts)
        now = math.floor(self._clock())
        decided_any = False
        loose: list[tuple[Check, Verdict]] = []  # decided outside a round's write
        # A request record completes with one round: no parts then.
        split = completion is None and self._store.attempts.parallel_rounds

        def settle(checks: list[Check], record: RoundCompletion | None = None) -> _PartVerdicts:
            requests = _attempt_requests(checks)
            return self._settled_part(
                Round(checks, requests, state, now, activate, tenant, policy, audit, record)
            )

        while waiting:
            this_round, waiting = one_per_account(waiting)
            chunks = round_parts(this_round) if split else [this_round]
            if len(chunks) > 1:
                parts = lanes.run_parts(chunks, settle, stops=_faulted)
            else:
                parts = [settle(this_round, completion)]
            decided, fault = _merged(parts, verdicts, loose)
            decided_any = decided_any or bool(decided)
            if fault is not None:
                if not (faults_per_item and decided_any and is_store_fault(fault)):
                    raise fault
                _fail_undecided(fault, [*this_round, *waiting], verdicts)
                break
            still = answer_while_locked(decided, waiting, verdicts)
            if audit is not None:
                loose += answered_meanwhile(waiting, still, verdicts)
            waiting = still
        if audit is not None and loose:
            self._store.audit.append(audit.verdict_events(time_us(self._clock), loose).rows())
        return [verdict for verdict in verdicts if verdict is not None]

    def _settled_part(self, round_: Round) -> _PartVerdicts:
        """One round decided and stored, and its checks without a candidate
        explained; an error is returned, with the verdicts the round stored
        before it (never lost: the round committed them)."""
        decided: list[tuple[Check, Verdict]] = []
        loose: list[tuple[Check, Verdict]] = []
        try:
            decided, uncounted = self._round_verdicts(round_)
            loose = uncounted_verdicts(
                self._store, round_.policy, uncounted, round_.state, round_.now, round_.tenant
            )
        except Exception as error:
            return _PartVerdicts(decided, loose, error)
        return _PartVerdicts(decided, loose, None)

    def _round_verdicts(self, round_: Round) -> _RoundVerdicts:
        """Decide and store one round; returns the verdicts and the checks with
        no candidate factor (nothing was counted for them)."""
        state, now, tenant = round_.state, round_.now, round_.tenant
        attempts = self._store.attempts
        with metrics.StoreRound(len(round_.checks)):
            with attempts.one_connection():  # the read's and the write's
                factors = attempts.read(round_.requests, state=state, now=now, tenant=tenant)
                verdicts, writes, accounts, uncounted = self._verdicts_and_writes(round_, factors)
                events = round_.events(time_us(self._clock), verdicts)
                record = round_.completion.of(verdicts) if round_.completion else None
                written = attempts.write_if_unchanged(
                    writes,
                    state=state,
                    now=now,
                    activate=round_.activate,
                    accounts=accounts,
                    tenant=tenant,
                    events=events,
                    completion=record,
                )
            if not written:
                # A factor changed between the read and the write (another attempt
                # on it, a disable): nothing was written. Decide again under locks.
                metrics.round_relocked()
                verdicts, uncounted = self._locked_round_verdicts(round_)
            elif record is not None and round_.completion is not None:
                round_.completion.stored()
        return verdicts, uncounted

    def _locked_round_verdicts(self, round_: Round) -> _RoundVerdicts:
        """The round with its factors locked from read to write: it cannot conflict.

        The database may abort it to break a deadlock; then it is tried again,
        and the last try's RoundAbortedError reaches the caller as UNAVAILABLE
        (nothing was written).
        """
        for _ in range(_LOCKED_TRIES - 1):
            with contextlib.suppress(RoundAbortedError):
                return self._locked_round_try(round_)
        return self._locked_round_try(round_)

    def _locked_round_try(self, round_: Round) -> _RoundVerdicts:
        state, now = round_.state, round_.now
        with self._store.attempts.locked() as locked:
            factors = locked.read(round_.requests, state=state, now=now, tenant=round_.tenant)
            verdicts, writes, accounts, uncounted = self._verdicts_and_writes(round_, factors)
            written = locked.write(
                writes,
                state=state,
                now=now,
                activate=round_.activate,
                accounts=accounts,
                tenant=round_.tenant,
            )
            final = [(check, unless_lost(verdict, written)) for check, verdict in verdicts]
            events = round_.events(time_us(self._clock), final)
            if events:
                locked.record(events)
            record = round_.completion.of(final) if round_.completion else None
            if record is not None:
                locked.complete(record)
        if record is not None and round_.completion is not None:
            round_.completion.stored()
        return final, uncounted

    def _verdicts_and_writes(
        self, round_: Round, factors: list[CandidateFactor]
    ) -> tuple[list[tuple[Check, Verdict]], list[FactorWrite], list[AccountWrite], list[Check]]:
        """Verdicts and writes of the checks whose account has candidate factors;
        the others are returned uncounted.

        The account's limits guard active factors only: a pending factor's
        code confirms an enrollment, it does not sign anyone in.
        """
        by_account: dict[str, list[CandidateFactor]] = defaultdict(list)
        for factor in factors:
            by_account[factor.account_id].append(factor)
        found: list[Check] = []
        uncounted: list[Check] = []
        for check in round_.checks:
            (found if check.item.account_id in by_account else uncounted).append(check)
        guarded = round_.state is FactorState.ACTIVE
        verdicts, writes, accounts = self._candidate_verdicts(
            found, by_account, round_.now, guarded, round_
        )
        return verdicts, writes, accounts, uncounted

    def _candidate_verdicts(
        self,
        checks: list[Check],
        by_account: dict[str, list[CandidateFactor]],
        now: int,
        guarded: bool,
        round_: Round,
    ) -> tuple[list[tuple[Check, Verdict]], list[FactorWrite], list[AccountWrite]]:
        """Compare every code with its account's unblocked factors, and decide each
        check's verdict and each compared factor's (and, when `guarded`, account's)
        new attempt state."""
        policy = round_.policy
        verdicts, compared, steps, counters = matched_steps(
            self._keyring.open_parts, checks, by_account, now, guarded, policy, round_.tenant
        )
        writes: list[FactorWrite] = []
        accounts: list[AccountWrite] = []
        pair = 0
        for check, unblocked in compared:
            winner: CandidateFactor | None = None
            replayed: CandidateFactor | None = None
            for f in unblocked:
                step = steps[pair]
                if step >= 0 and winner is None:
                    if step > f.last_used_step:
                        # The offset is from the server's step, drift included.
                        winner, won_step, counter = f, step, counters[pair] - f.drift_steps
                    elif replayed is None:
                        replayed = f
                pair += 1
            if winner is not None:
                outcome = success_writes(policy, winner, won_step, counter, unblocked, writes)
                if guarded and winner.consecutive_failures:
                    accounts.append(account_reset(winner))
            else:
                outcome = failure_writes(policy, replayed, unblocked, writes, now)
                if guarded:
                    outcome = count_on_account(policy, outcome, unblocked, accounts, now)
            verdicts.append((check, outcome))
        return verdicts, writes, accounts


def _merged(
    parts: Sequence[_PartVerdicts | None],
    verdicts: list[Verdict | None],
    loose: list[tuple[Check, Verdict]],
) -> tuple[list[tuple[Check, Verdict]], Exception | None]:
    """The parts' verdicts put in place (those without a candidate also added to
    `loose`); returns the stored ones and the fault to answer, if any: an error not
    the store's before a store fault. A part not started (None) decided nothing."""
    decided: list[tuple[Check, Verdict]] = []
    fault: Exception | None = None
    for part in parts:
        if part is None:
            continue
        for check, verdict in part.decided:
            verdicts[check.position] = verdict
        for check, verdict in part.loose:
            verdicts[check.position] = verdict
        decided += part.decided
        loose += part.loose
        if part.fault is not None and (fault is None or is_store_fault(fault)):
            fault = part.fault
    return decided, fault


def _parsed_checks(requests: Sequence[VerifyItem], verdicts: list[Verdict | None]) -> list[Check]:
    """The requests with a well-formed code as checks; the others get their error."""
    checks: list[Check] = []
    for index, request in enumerate(requests):
        try:
            checks.append(Check(index, request, validation.code_digits(request.code)))
        except TotpdError as error:
            verdicts[index] = error
    return checks


def _attempt_requests(checks: list[Check]) -> list[AttemptRequest]:
    return [AttemptRequest(c.item.account_id, c.digits, c.item.factor_id) for c in checks]


def _internal(error: Exception) -> TotpdError:
    _log.error("verification error", extra={"error_type": type(error).__name__})
    return TotpdError(ErrorReason.INTERNAL, "internal server error")


def _fail_undecided(error: Exception, checks: list[Check], verdicts: list[Verdict | None]) -> None:
    """Every check of `checks` without a verdict gets the store fault as its error."""
    fault = store_fault(error, "BatchVerify")
    for check in checks:
        if verdicts[check.position] is None:
            verdicts[check.position] = fault
