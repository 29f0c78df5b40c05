"""Recovery codes (GenerateRecoveryCodes, VerifyRecoveryCode, their status in ListFactors):
single-use codes that open an account whose authenticator is lost, under the same
account-wide attempt limits as TOTP codes.

A code's attempt is one transaction (store/recovery.py): the account's attempt
state is read and decided before any comparison, and the verdict's writes (the
code consumed, or the failure counted) and its audit event commit together.
"""

from __future__ import annotations

import hmac
from typing import NamedTuple

from totpd.service import failure_budget, recovery_codes, validation
from totpd.service.audit import AuditContext, time_us
from totpd.service.errors import ErrorReason, TotpdError
from totpd.service.mfa.deps import Deps
from totpd.service.policy import Policy
from totpd.service.recovery_codes import RecoveryStatus
from totpd.service.round_plan import FAILED_RESULTS
from totpd.service.types import VerifyOutcome, VerifyResult
from totpd.store import AccountState, RecoveryAttempt, RecoveryCounts, StoredCode
from totpd.telemetry import metrics


class NewRecoveryCodes(NamedTuple):
    """A set as GenerateRecoveryCodes returns it, the only time its codes exist."""

    codes: list[str]  # grouped for reading: "k7q2-9xmf-w4c8"
    status: RecoveryStatus


class RecoveryVerdict(NamedTuple):
    outcome: VerifyOutcome
    status: RecoveryStatus


def generate(
    deps: Deps, tenant: str, account_id: str, audit: AuditContext | None = None
) -> NewRecoveryCodes:
    """A new set for an account with an ACTIVE factor, replacing its earlier set.

    No request_id: a retry makes another set, and the lost response's set is
    replaced with it (its codes were never shown, so nothing usable is lost).
    """
    account_id = validation.account_id(account_id)
    count = deps.policies.for_tenant(tenant).recovery_codes_count
    codes = recovery_codes.new_codes(count)
    key_id = deps.keyring.primary_key_id
    hashes = [
        recovery_codes.code_hash(deps.keyring, key_id, tenant, account_id, code) for code in codes
    ]
    now = deps.now()
    events = [] if audit is None else [audit.row(time_us(deps.clock), account_id, None)]
    if not deps.store.recovery.replace(
        account_id, tenant=tenant, key_id=key_id, hashes=hashes, now=now, events=events
    ):
        raise TotpdError(
            ErrorReason.ACCOUNT_NOT_FOUND,
            "the account has no active factor; confirm an enrollment before generating"
            " recovery codes",
            field="account_id",
        )
    grouped = [recovery_codes.grouped(code) for code in codes]
    return NewRecoveryCodes(grouped, RecoveryStatus(count, count, now))


def status(deps: Deps, tenant: str, account_id: str) -> RecoveryStatus:
    account_id = validation.account_id(account_id)
    return _status(deps.store.recovery.counts(account_id, tenant=tenant))


def verify(
    deps: Deps,
    tenant: str,
    account_id: str,
    code: str,
    caller: str | None,
    audit: AuditContext | None = None,
) -> RecoveryVerdict:
    """VALID once per code, REPLAYED after, INVALID for no code of the current set,
    LOCKED (nothing compared) under the account's limits; INVALID and REPLAYED
    count one failure on the account, as a wrong TOTP code does.

    Malformed input raises before anything is read or counted; so does
    RATE_LIMITED, the caller's rate of failures across accounts (as for Verify).
    """
    account_id = validation.account_id(account_id)
    typed = recovery_codes.normalized(code)
    callers = deps.checker.callers
    reservation = callers.reserve(caller, 1)
    failed = 0
    try:
        verdict = _attempt(deps, tenant, account_id, typed, audit)
        failed = 1 if verdict.outcome.result in FAILED_RESULTS else 0
    finally:
        callers.settle(reservation, failed)
    metrics.count_verdicts([verdict.outcome.result])
    return verdict


def _attempt(
    deps: Deps, tenant: str, account_id: str, typed: str, audit: AuditContext | None
) -> RecoveryVerdict:
    policy = deps.policies.for_tenant(tenant)
    now = deps.now()
    with deps.store.recovery.attempt(account_id, tenant=tenant) as attempt:
        read = attempt.read()
        if not read.known:
            raise TotpdError(
                ErrorReason.ACCOUNT_NOT_FOUND,
                "the account has no factor and no recovery codes",
                field="account_id",
            )
        outcome = _locked(policy, read.account, now)
        consumed = False
        if outcome is None:
            match = _match(deps, tenant, account_id, typed, read.codes)
            if match is not None and match.used_at is None:
                consumed = attempt.consume(match.code_hash, now)
            if consumed:
                outcome = _success(policy, read.account, attempt, now)
            else:  # a code used meanwhile (not under our lock) is a replay too
                result = VerifyResult.INVALID if match is None else VerifyResult.REPLAYED
                outcome = _failure(policy, read.account, attempt, now, result)
        if audit is not None:
            attempt.record([audit.row(time_us(deps.clock), account_id, None, outcome)])
        return RecoveryVerdict(outcome, _left(read.codes, consumed))


def _locked(policy: Policy, account: AccountState | None, now: int) -> VerifyOutcome | None:
    """The verdict before any comparison when the account may not try now (as for TOTP)."""
    if account is None:  # no failure ever counted: a full budget
        return None
    if account.locked_at is not None:
        return VerifyOutcome(VerifyResult.LOCKED, unlock_required=True)
    wait = failure_budget.wait_seconds(policy, account.budget_tat, now, 1)
    if wait:
        return VerifyOutcome(VerifyResult.LOCKED, retry_after_seconds=wait)
    return None


def _match(
    deps: Deps, tenant: str, account_id: str, typed: str, codes: list[StoredCode]
) -> StoredCode | None:
    """The stored code the typed one is, hashed under each key the set was hashed
    with and compared in constant time with every stored hash."""
    hashes = {
        key_id: recovery_codes.code_hash(deps.keyring, key_id, tenant, account_id, typed)
        for key_id in {stored.hash_key_id for stored in codes}
    }
    found: StoredCode | None = None
    for stored in codes:
        if hmac.compare_digest(stored.code_hash, hashes[stored.hash_key_id]):
            found = stored
    return found


def _success(
    policy: Policy, account: AccountState | None, attempt: RecoveryAttempt, now: int
) -> VerifyOutcome:
    """The code is consumed; as a TOTP success, it ends the account's run of failures
    (and a lock cannot be in place: it was checked first). The budget stays spent."""
    tat = 0 if account is None else account.budget_tat
    if account is not None and account.consecutive_failures:
        attempt.write_account(tat, 0, None)
    left = min(policy.max_consecutive_failures, failure_budget.pairs_left(policy, tat, now))
    return VerifyOutcome(VerifyResult.VALID, attempts_left=left)


def _failure(
    policy: Policy,
    account: AccountState | None,
    attempt: RecoveryAttempt,
    now: int,
    result: VerifyResult,
) -> VerifyOutcome:
    """One failure on the account: one budget pair and one consecutive failure,
    locking it at the policy's maximum (accounting.count_on_account, one pair)."""
    tat = failure_budget.spend(policy, 0 if account is None else account.budget_tat, now, 1)
    failures = (0 if account is None else account.consecutive_failures) + 1
    locked = failures >= policy.max_consecutive_failures
    attempt.write_account(tat, failures, now if locked else None)
    if locked:
        return VerifyOutcome(result, unlock_required=True)
    return VerifyOutcome(
        result,
        attempts_left=min(
            policy.max_consecutive_failures - failures, failure_budget.pairs_left(policy, tat, now)
        ),
        retry_after_seconds=failure_budget.wait_seconds(policy, tat, now, 1),
    )


def _status(counts: RecoveryCounts) -> RecoveryStatus:
    return RecoveryStatus(*counts)


def _left(codes: list[StoredCode], consumed: bool) -> RecoveryStatus:
    """The set's status after the attempt, from the codes it read."""
    unused = sum(1 for code in codes if code.used_at is None) - consumed
    return RecoveryStatus(unused, len(codes), max((code.created_at for code in codes), default=0))
