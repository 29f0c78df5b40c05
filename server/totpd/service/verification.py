"""Checking codes against accounts' factors: count, compare, consume.

One engine serves Verify, BatchVerify, ConfirmEnrollment and Disable, so they
cannot drift apart. A round's order is the security argument:
1. Read the candidate factors with their attempt state (store/attempts.py).
2. A blocked factor (backoff or lock) is never compared and reveals nothing.
   The native core compares every step of the window of the others, without
   early exit.
3. Store, in one conditional UPDATE, each compared factor's new state: one
   more failure, or the consumed step (only if newer than the last used one)
   with the failure count reset on every compared factor. Each row is written
   only if the factor still holds the state read in step 1, and the round's
   rows are written all or none: so a decision always rests on the state it
   replaces, guesses cannot outrun the attempt limit and a step is won once.
   If any factor changed in between, nothing was written and the round is
   decided again under locks (the read waits for other attempts to commit).

On active factors the account's own state counts too (failure_budget.py):
a permanently locked account, or one whose failure budget cannot pay for
every factor the code would be compared with, is answered LOCKED before
anything is compared; a failure spends one budget pair per factor compared
and one consecutive failure, written with the factors, under the same
all-or-nothing condition. Before any round, the caller must have room in its
own rate of failures for every item (caller_limits.py), or the call is
refused whole.

Each stage is vectorised: one query reads the factors of a whole round, one C
call compares every (code, factor) pair, one UPDATE writes the outcome.
A round holds at most one item per account, which keeps each item's counting
exactly as if the items had come one after another.
"""

from __future__ import annotations

import contextlib
import logging
import math
from array import array
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import NamedTuple

from totpd import otp
from totpd.crypto import Keyring, SecretUnavailable
from totpd.domain import Algorithm, FactorState
from totpd.service import failure_budget, validation
from totpd.service.caller_limits import CallerLimits
from totpd.service.errors import ErrorReason, TotpdError
from totpd.service.faults import is_store_fault, store_fault
from totpd.service.policy import Policy
from totpd.service.types import VerifyOutcome, VerifyResult
from totpd.store import (
    AccountWrite,
    AttemptRequest,
    CandidateFactor,
    FactorStore,
    FactorWrite,
    RoundAborted,
    StoredFactor,
)

CheckResult = VerifyOutcome | TotpdError
_log = logging.getLogger("totpd.service")
# Tries of a locked round, which the database may abort to break a deadlock.
_LOCKED_TRIES = 3
_ALGORITHMS = {algorithm.value: algorithm for algorithm in Algorithm}


class CodeCheck(NamedTuple):
    """One code to check: against `factor_id` only, or every factor of the account.

    `account_id` and `factor_id` are already validated; the code is checked here.
    """

    account_id: str
    code: str
    factor_id: str | None


class _Item(NamedTuple):
    position: int  # in the caller's request list
    check: CodeCheck
    digits: int


class _Round(NamedTuple):
    """A round decided again under locks: its items and what its stages need."""

    items: list[_Item]
    requests: list[AttemptRequest]
    state: FactorState
    now: int
    activate: bool


class CodeChecker:
    def __init__(
        self, store: FactorStore, keyring: Keyring, policy: Policy, clock: Callable[[], float]
    ) -> None:
        self._store = store
        self._keyring = keyring
        self._policy = policy
        self._clock = clock
        self._callers = CallerLimits(
            policy.caller_failures_per_second, policy.caller_failure_burst, clock
        )

    def check(
        self,
        request: CodeCheck,
        *,
        state: FactorState,
        activate: bool = True,
        caller: str | None = None,
    ) -> VerifyOutcome:
        """One code; errors (database faults included) are raised.

        `activate`: a code that wins a step of a pending factor confirms it.
        """
        (result,) = self.check_many(
            [request], state=state, activate=activate, faults_per_item=False, caller=caller
        )
        if isinstance(result, TotpdError):
            raise result
        return result

    def check_many(
        self,
        requests: Sequence[CodeCheck],
        *,
        state: FactorState,
        activate: bool = True,
        faults_per_item: bool = True,
        caller: str | None = None,
    ) -> list[CheckResult]:
        """`_check_all` for a caller with room for every item to fail.

        RATE_LIMITED (nothing compared, nothing counted) if `caller` has no
        room for len(requests) failures; the room its items did not fail in
        is given back. None: a call from inside totpd, not limited.
        """
        reservation = self._callers.reserve(caller, len(requests))
        results: list[CheckResult] = []
        try:
            results = self._check_all(
                requests, state=state, activate=activate, faults_per_item=faults_per_item
            )
        finally:
            self._callers.settle(reservation, _failures(results))
        return results

    def _check_all(
        self,
        requests: Sequence[CodeCheck],
        *,
        state: FactorState,
        activate: bool,
        faults_per_item: bool,
    ) -> list[CheckResult]:
        """Many codes against factors in `state`; each gets its result or its error.

        A database fault before any item has its verdict fails the whole call
        (nothing was stored; the caller retries it). After that, with
        `faults_per_item`, it does not discard the verdicts already reached (a
        retry would find their steps used and count their failures twice):
        those items keep them and every item not decided gets the fault as its
        own error.
        """
        results: list[CheckResult | None] = [None] * len(requests)
        waiting: list[_Item] = []
        for index, request in enumerate(requests):
            try:
                waiting.append(_Item(index, request, validation.code_digits(request.code)))
            except TotpdError as error:
                results[index] = error
        now = math.floor(self._clock())
        judged_any = False
        while waiting:
            this_round, waiting = _one_per_account(waiting)
            decided: list[tuple[_Item, CheckResult]] = []
            try:
                decided, missing = self._run_round(this_round, state, now, activate)
                for item, result in decided:
                    results[item.position] = result
                judged_any = judged_any or bool(decided)
                for item, result in self._explain_uncounted(missing, state, now):
                    results[item.position] = result
            except Exception as error:
                if not (faults_per_item and judged_any and is_store_fault(error)):
                    raise
                fault = store_fault(error, "BatchVerify")
                for item in [*this_round, *waiting]:
                    if results[item.position] is None:
                        results[item.position] = fault
                break
            waiting = _answer_while_locked(decided, waiting, results)
        return [result for result in results if result is not None]

    def _run_round(
        self, items: list[_Item], state: FactorState, now: int, activate: bool
    ) -> tuple[list[tuple[_Item, CheckResult]], list[_Item]]:
        """Decide and store one round; returns the verdicts and the items with
        no candidate factor (nothing was counted for them)."""
        requests = [AttemptRequest(i.check.account_id, i.digits, i.check.factor_id) for i in items]
        attempts = self._store.attempts
        factors = attempts.read(requests, state=state, now=now)
        results, writes, accounts, missing = self._decide(items, factors, now, state)
        if not attempts.write_if_unchanged(
            writes, state=state, now=now, activate=activate, accounts=accounts
        ):
            # A factor changed between the read and the write (another attempt
            # on it, a disable): nothing was written. Decide again under locks.
            locked_round = _Round(items, requests, state, now, activate)
            results, missing = self._run_locked_round(locked_round)
        return results, missing

    def _run_locked_round(
        self, round_: _Round
    ) -> tuple[list[tuple[_Item, CheckResult]], list[_Item]]:
        """The round with its factors locked from read to write: it cannot conflict.

        The database may abort it to break a deadlock; then it is tried again,
        and the last try's RoundAborted reaches the caller as UNAVAILABLE
        (nothing was written).
        """
        for _ in range(_LOCKED_TRIES - 1):
            with contextlib.suppress(RoundAborted):
                return self._locked_round(round_)
        return self._locked_round(round_)

    def _locked_round(self, round_: _Round) -> tuple[list[tuple[_Item, CheckResult]], list[_Item]]:
        state, now = round_.state, round_.now
        with self._store.attempts.locked() as locked:
            factors = locked.read(round_.requests, state=state, now=now)
            results, writes, accounts, missing = self._decide(round_.items, factors, now, state)
            written = locked.write(
                writes, state=state, now=now, activate=round_.activate, accounts=accounts
            )
        return [(item, _unless_lost(result, written)) for item, result in results], missing

    def _decide(
        self, items: list[_Item], factors: list[CandidateFactor], now: int, state: FactorState
    ) -> tuple[list[tuple[_Item, CheckResult]], list[FactorWrite], list[AccountWrite], list[_Item]]:
        """Judge the items whose account has candidate factors; the others are missing.

        The account's limits guard active factors only: a pending factor's
        code confirms an enrollment, it does not sign anyone in.
        """
        by_account: dict[str, list[CandidateFactor]] = defaultdict(list)
        for factor in factors:
            by_account[factor.account_id].append(factor)
        found: list[_Item] = []
        missing: list[_Item] = []
        for item in items:
            (found if item.check.account_id in by_account else missing).append(item)
        results, writes, accounts = self._judge(found, by_account, now, state is FactorState.ACTIVE)
        return results, writes, accounts, missing

    def _judge(
        self,
        items: list[_Item],
        by_account: dict[str, list[CandidateFactor]],
        now: int,
        guarded: bool,
    ) -> tuple[list[tuple[_Item, CheckResult]], list[FactorWrite], list[AccountWrite]]:
        """Compare every code with its account's unblocked factors, and decide each
        item's verdict and each compared factor's (and, when `guarded`, account's)
        new attempt state."""
        results, compared, steps, counters = self._compare(items, by_account, now, guarded)
        writes: list[FactorWrite] = []
        accounts: list[AccountWrite] = []
        pair = 0
        for item, unblocked in compared:
            winner: CandidateFactor | None = None
            replayed: CandidateFactor | None = None
            for f in unblocked:
                step = steps[pair]
                if step >= 0 and winner is None:
                    if step > f.last_used_step:
                        winner, won_step, counter = f, step, counters[pair]
                    elif replayed is None:
                        replayed = f
                pair += 1
            if winner is not None:
                outcome = self._success(winner, won_step, counter, unblocked, writes)
                if guarded and winner.consecutive_failures:
                    accounts.append(_account_reset(winner))
            else:
                outcome = self._failure(replayed, unblocked, writes, now)
                if guarded:
                    outcome = self._count_on_account(outcome, unblocked, accounts, now)
            results.append((item, outcome))
        return results, writes, accounts

    def _compare(
        self,
        items: list[_Item],
        by_account: dict[str, list[CandidateFactor]],
        now: int,
        guarded: bool,
    ) -> tuple[
        list[tuple[_Item, CheckResult]],
        list[tuple[_Item, list[CandidateFactor]]],
        array[int],
        list[int],
    ]:
        """One C call for every (code, unblocked factor) pair.

        Returns the items already answered (every factor blocked, the account
        locked or its budget short, or a secret that cannot be opened), the
        compared items with their factors in pair order, the matched step of
        each pair (-1: none) and its counter. Plain loops over flat lists, the
        one-factor account kept cheap: this runs once per item of a
        10,000-item batch, where every object and call shows.
        """
        answered: list[tuple[_Item, CheckResult]] = []
        compared: list[tuple[_Item, list[CandidateFactor]]] = []
        keys: list[bytes] = []
        algorithms: list[Algorithm] = []
        digits: list[int] = []
        counters: list[int] = []
        codes: list[int] = []
        open_secret = self._keyring.open_parts
        for item in items:
            factors = by_account[item.check.account_id]
            if guarded and factors[0].locked_at is not None:
                answered.append((item, _account_locked(item)))
                continue
            if len(factors) == 1:
                unblocked = factors if factors[0].blocked_until <= now else []
            else:
                unblocked = [f for f in factors if f.blocked_until <= now]
            if not unblocked:
                answered.append((item, self._locked(item, factors, now)))
                continue
            tat = factors[0].budget_tat
            if guarded and tat is not None:  # None: no failure yet, a full budget
                wait = failure_budget.wait_seconds(self._policy, tat, now, len(unblocked))
                if wait:
                    answered.append((item, _budget_spent(item, wait)))
                    continue
            opened = len(keys)
            try:
                for f in unblocked:
                    keys.append(
                        open_secret(
                            f.factor_id,
                            f.account_id,
                            f.secret_key_id,
                            f.secret_nonce,
                            f.secret_ciphertext,
                        )
                    )
            except SecretUnavailable:
                # Fail closed: no verdict without every secret of the item.
                _log_secret_unavailable(unblocked[len(keys) - opened])
                del keys[opened:]
                answered.append((item, _secret_unavailable()))
                continue
            compared.append((item, unblocked))
            code = int(item.check.code)
            for f in unblocked:
                algorithms.append(_ALGORITHMS[f.algorithm])
                digits.append(f.digits)
                counters.append(now // f.period_seconds)
                codes.append(code)
        with otp.KeyTable.of(keys, algorithms, digits, counters) as table:
            steps = otp.verify_batch(table, range(len(keys)), codes, self._policy.window)
        return answered, compared, steps, counters

    def _success(
        self,
        winner: CandidateFactor,
        step: int,
        counter: int,
        compared: list[CandidateFactor],
        writes: list[FactorWrite],
    ) -> VerifyOutcome:
        """The step is consumed; proof of possession resets every compared factor."""
        writes.append(_write(winner, 0, 0, step, 1))
        if len(compared) > 1:
            writes.extend(_write(f, 0, 0, f.last_used_step, 0) for f in compared if f is not winner)
        return VerifyOutcome(
            VerifyResult.VALID,
            winner.factor_id,
            step - counter,
            self._policy.lock_after_failures,
        )

    def _failure(
        self,
        replayed: CandidateFactor | None,
        compared: list[CandidateFactor],
        writes: list[FactorWrite],
        now: int,
    ) -> VerifyOutcome:
        """A wrong or reused code counts one failure on every compared factor.

        `replayed` is the first factor whose window held the code at an
        already used step: the verdict is then REPLAYED, naming it.
        """
        wait_after = self._policy.wait_after
        most = 0
        shortest_wait: int | None = None
        for f in compared:
            count = f.failed_attempts + 1
            wait = wait_after(count)
            blocked = now + wait if wait else f.blocked_until
            writes.append(_write(f, count, blocked, f.last_used_step, 0))
            most = max(most, count)
            shortest_wait = wait if shortest_wait is None else min(shortest_wait, wait)
        return VerifyOutcome(
            VerifyResult.INVALID if replayed is None else VerifyResult.REPLAYED,
            None if replayed is None else replayed.factor_id,
            attempts_left=self._policy.attempts_left(most),
            retry_after_seconds=shortest_wait or 0,
        )

    def _count_on_account(
        self,
        outcome: VerifyOutcome,
        compared: list[CandidateFactor],
        accounts: list[AccountWrite],
        now: int,
    ) -> VerifyOutcome:
        """A failure spends one budget pair per compared factor and one
        consecutive failure of the account; the outcome says what is left."""
        policy = self._policy
        account = compared[0]
        pairs = len(compared)
        tat = failure_budget.spend(policy, account.budget_tat or 0, now, pairs)
        failures = (account.consecutive_failures or 0) + 1
        locked = failures >= policy.max_consecutive_failures
        accounts.append(
            AccountWrite(
                account.account_id,
                tat,
                failures,
                now if locked else None,
                account.budget_tat,
                account.consecutive_failures,
            )
        )
        if locked:
            return outcome._replace(attempts_left=0, retry_after_seconds=0, unlock_required=True)
        return outcome._replace(
            attempts_left=min(
                outcome.attempts_left,
                policy.max_consecutive_failures - failures,
                failure_budget.pairs_left(policy, tat, now) // pairs,
            ),
            retry_after_seconds=max(
                outcome.retry_after_seconds,
                failure_budget.wait_seconds(policy, tat, now, pairs),
            ),
        )

    def _locked(self, item: _Item, blocked: list[CandidateFactor], now: int) -> VerifyOutcome:
        """Every candidate is blocked: nothing is compared, nothing is revealed."""
        return VerifyOutcome(
            VerifyResult.LOCKED,
            factor_id=item.check.factor_id,
            attempts_left=self._policy.attempts_left(min(f.failed_attempts for f in blocked)),
            retry_after_seconds=max(1, min(f.blocked_until for f in blocked) - now),
        )

    def _explain_uncounted(
        self, items: list[_Item], state: FactorState, now: int
    ) -> list[tuple[_Item, CheckResult]]:
        """Nothing was counted: say why (not found, wrong state, digits, or blocked)."""
        if not items:
            return []
        named = self._store.get_many(i.check.factor_id for i in items if i.check.factor_id)
        in_state: dict[str, list[StoredFactor]] = defaultdict(list)
        for factor in self._store.list_for_accounts((i.check.account_id for i in items), state):
            in_state[factor.account_id].append(factor)
        results: list[tuple[_Item, CheckResult]] = []
        for item in items:
            try:
                results.append((item, self._explain(item, named, in_state, state, now)))
            except TotpdError as error:
                results.append((item, error))
        return results

    def _explain(
        self,
        item: _Item,
        named: dict[str, StoredFactor],
        in_state: dict[str, list[StoredFactor]],
        state: FactorState,
        now: int,
    ) -> VerifyOutcome:
        check = item.check
        if check.factor_id is not None:
            row = named.get(check.factor_id)
            if row is None or row.account_id != check.account_id:
                raise TotpdError(
                    ErrorReason.FACTOR_NOT_FOUND,
                    "the account has no factor with this factor_id",
                    field="factor_id",
                )
            _require_state(row, state, now)
            candidates = [row]
        else:
            candidates = in_state.get(check.account_id, [])
            if not candidates:
                raise TotpdError(
                    ErrorReason.ACCOUNT_NOT_FOUND,
                    f"the account has no {state} factor",
                    field="account_id",
                )
        sizes = sorted({row.digits for row in candidates})
        if item.digits not in sizes:
            allowed = " or ".join(str(size) for size in sizes)
            raise TotpdError(
                ErrorReason.MALFORMED_CODE,
                f"code must have {allowed} digits for this account's factors",
                field="code",
            )
        blocked = [row for row in candidates if row.digits == item.digits]
        return VerifyOutcome(
            VerifyResult.LOCKED,
            factor_id=check.factor_id,
            attempts_left=self._policy.attempts_left(min(row.failed_attempts for row in blocked)),
            retry_after_seconds=max(1, min(row.blocked_until for row in blocked) - now),
        )


def _write(
    factor: CandidateFactor, failed: int, blocked_until: int, last_used_step: int, consumed: int
) -> FactorWrite:
    """The factor's new attempt state, to be stored only where it is still as read."""
    return FactorWrite(
        factor.factor_id,
        failed,
        blocked_until,
        last_used_step,
        consumed,
        factor.failed_attempts,
        factor.blocked_until,
        factor.last_used_step,
    )


def _account_reset(winner: CandidateFactor) -> AccountWrite:
    """A success ends the account's run of failures; its budget stays spent."""
    tat = winner.budget_tat or 0
    return AccountWrite(
        winner.account_id, tat, 0, None, winner.budget_tat, winner.consecutive_failures
    )


def _account_locked(item: _Item) -> VerifyOutcome:
    """Too many failures in a row: locked until unlocked; waiting does not help."""
    return VerifyOutcome(VerifyResult.LOCKED, factor_id=item.check.factor_id, unlock_required=True)


def _budget_spent(item: _Item, wait: int) -> VerifyOutcome:
    """The budget cannot pay for this code's possible failures: nothing is compared."""
    return VerifyOutcome(
        VerifyResult.LOCKED, factor_id=item.check.factor_id, retry_after_seconds=wait
    )


_FAILED = (VerifyResult.INVALID, VerifyResult.REPLAYED)


def _failures(results: list[CheckResult]) -> int:
    return sum(
        1 for result in results if isinstance(result, VerifyOutcome) and result.result in _FAILED
    )


def _unless_lost(result: CheckResult, written: set[str]) -> CheckResult:
    """A success whose write did not land lost its step to someone else: a replay.

    Cannot happen while the rows are locked; kept so that a broken lock shows
    as a refusal, never as a second VALID.
    """
    if isinstance(result, VerifyOutcome) and result.result is VerifyResult.VALID:
        if result.factor_id not in written:
            return VerifyOutcome(VerifyResult.REPLAYED, factor_id=result.factor_id)
    return result


def _answer_while_locked(
    decided: list[tuple[_Item, CheckResult]],
    waiting: list[_Item],
    results: list[CheckResult | None],
) -> list[_Item]:
    """Answer LOCKED, without another round, the waiting items whose exact
    candidates (account, factor, digits) a round's read found all blocked.

    Nothing was compared or counted for a LOCKED item, so the factors' state,
    and the verdict at the batch's `now`, stay the same for the items after
    it: the answer a round of their own would give. Only verdicts of the
    round's read count (`decided`), not the explanations of items it found no
    candidate for, which read again and may race. Without this, a batch of
    10,000 items for one account ran 10,000 rounds.
    """
    locked: dict[tuple[str, str | None, int], CheckResult] = {}
    for item, result in decided:
        if isinstance(result, VerifyOutcome) and result.result is VerifyResult.LOCKED:
            locked[(item.check.account_id, item.check.factor_id, item.digits)] = result
    if not locked:
        return waiting
    still: list[_Item] = []
    for item in waiting:
        answer = locked.get((item.check.account_id, item.check.factor_id, item.digits))
        if answer is None:
            still.append(item)
        else:
            results[item.position] = answer
    return still


def _one_per_account(items: list[_Item]) -> tuple[list[_Item], list[_Item]]:
    """Split off the first item of each account; the rest wait for the next round."""
    seen: set[str] = set()
    now_items: list[_Item] = []
    later: list[_Item] = []
    for item in items:
        if item.check.account_id in seen:
            later.append(item)
        else:
            seen.add(item.check.account_id)
            now_items.append(item)
    return now_items, later


def _log_secret_unavailable(factor: CandidateFactor) -> None:
    """One ERROR line per occurrence: which factor and key, never the secret or code.

    The only line: the caller gets a TotpdError, which the gRPC layer does not log.
    """
    _log.error(
        "stored secret cannot be opened",
        extra={"factor_id": factor.factor_id, "key_id": factor.secret_key_id},
    )


def _secret_unavailable() -> TotpdError:
    return TotpdError(ErrorReason.SECRET_UNAVAILABLE, "a stored secret cannot be opened")


def _require_state(factor: StoredFactor, state: FactorState, now: int) -> None:
    pending = FactorState.PENDING
    if state is pending and (
        factor.state is FactorState.EXPIRED
        or (factor.state is pending and (factor.expires_at or 0) <= now)
    ):
        raise TotpdError(
            ErrorReason.ENROLLMENT_EXPIRED,
            "the enrollment expired before it was confirmed; enroll again",
            field="factor_id",
        )
    if factor.state is not state:
        wanted = "pending (not yet confirmed)" if state is pending else "active"
        raise TotpdError(
            ErrorReason.FACTOR_NOT_ACTIVE,
            f"the factor is {factor.state}, it must be {wanted}",
            field="factor_id",
        )
