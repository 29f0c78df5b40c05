"""Checking codes against accounts' factors: count, compare, consume.

One engine serves Verify, BatchVerify, ConfirmEnrollment and Disable, so they
cannot drift apart. The order is the security argument:
1. `reserve` counts the attempt on every eligible factor that is not blocked,
   atomically, before any comparison: parallel guesses cannot outrun the limit
   (their own `reserve` waits for this round's commit), and a blocked factor is
   never compared, so it reveals nothing.
2. The native core compares every step of the window, without early exit.
3. `consume` accepts a matched step only if it is newer than the last
   used one, in one conditional UPDATE: exactly one concurrent caller wins.
A success resets the failure count of every factor that was counted. The three
writes of a round share one transaction: one commit per verify.

Each stage is vectorised: one UPDATE counts the attempts of a whole round, one
C call compares every (code, factor) pair, one UPDATE consumes the winners.
A round holds at most one item per account, which keeps each item's counting
exactly as if the items had come one after another.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from totpd import otp
from totpd.crypto import Keyring, SecretUnavailable
from totpd.service import validation
from totpd.service.errors import ErrorReason, TotpdError
from totpd.service.policy import Policy
from totpd.service.types import Algorithm, VerifyOutcome, VerifyResult
from totpd.store import (
    AttemptRequest,
    AttemptSchedule,
    AttemptTransaction,
    FactorStore,
    ReservedFactor,
)
from totpd.store.models import FactorRow

CheckResult = VerifyOutcome | TotpdError


@dataclass(frozen=True, slots=True)
class CodeCheck:
    """One code to check: against `factor_id` only, or every factor of the account.

    `account_id` and `factor_id` are already validated; the code is checked here.
    """

    account_id: str
    code: str
    factor_id: str | None


@dataclass(frozen=True, slots=True)
class _Item:
    index: int
    check: CodeCheck
    digits: int


class CodeChecker:
    def __init__(
        self, store: FactorStore, keyring: Keyring, policy: Policy, clock: Callable[[], float]
    ) -> None:
        self._store = store
        self._keyring = keyring
        self._policy = policy
        self._clock = clock
        self._schedule = AttemptSchedule(
            tuple(policy.wait_after(n) for n in range(policy.lock_after_failures + 1))
        )

    def check(self, request: CodeCheck, *, state: str) -> VerifyOutcome:
        """One code; errors are raised."""
        (result,) = self.check_many([request], state=state)
        if isinstance(result, TotpdError):
            raise result
        return result

    def check_many(self, requests: Sequence[CodeCheck], *, state: str) -> list[CheckResult]:
        """Many codes against factors in `state`; each gets its result or its error."""
        results: list[CheckResult | None] = [None] * len(requests)
        waiting: list[_Item] = []
        for index, request in enumerate(requests):
            try:
                waiting.append(_Item(index, request, validation.code_digits(request.code)))
            except TotpdError as error:
                results[index] = error
        now = math.floor(self._clock())
        while waiting:
            this_round, waiting = _one_per_account(waiting)
            for item, result in self._run_round(this_round, state, now):
                results[item.index] = result
        return [result for result in results if result is not None]

    def _run_round(
        self, items: list[_Item], state: str, now: int
    ) -> list[tuple[_Item, CheckResult]]:
        with self._store.attempt_transaction() as attempts:
            reserved = attempts.reserve(
                [AttemptRequest(i.check.account_id, i.digits, i.check.factor_id) for i in items],
                state=state,
                now=now,
                schedule=self._schedule,
            )
            by_account: dict[str, list[ReservedFactor]] = defaultdict(list)
            for factor in reserved:
                by_account[factor.account_id].append(factor)
            counted = [item for item in items if item.check.account_id in by_account]
            uncounted = [item for item in items if item.check.account_id not in by_account]
            results = self._compare_and_consume(attempts, counted, by_account, state, now)
        results.extend(self._explain_uncounted(uncounted, state, now))
        return results

    def _compare_and_consume(
        self,
        attempts: AttemptTransaction,
        items: list[_Item],
        by_account: dict[str, list[ReservedFactor]],
        state: str,
        now: int,
    ) -> list[tuple[_Item, CheckResult]]:
        results: list[tuple[_Item, CheckResult]] = []
        pairs: list[tuple[_Item, ReservedFactor, int]] = []  # item, factor, its counter
        key_indices: list[int] = []
        with otp.KeyTable() as table:
            for item in items:
                try:
                    factors = by_account[item.check.account_id]
                    keys = [self._keyring.open(f.factor_id, f.sealed) for f in factors]
                except SecretUnavailable:
                    # Fail closed: no verdict without every secret of the item.
                    results.append((item, _secret_unavailable()))
                    continue
                for factor, key in zip(factors, keys, strict=True):
                    counter = now // factor.period_seconds
                    algorithm = Algorithm(factor.algorithm)
                    key_indices.append(table.add(key, algorithm, factor.digits, counter))
                    pairs.append((item, factor, counter))
            codes = [int(item.check.code) for item, _, _ in pairs]
            steps = otp.verify_batch(table, key_indices, codes, self._policy.window)

        # Per item: the first matched factor whose step is fresh, else a replay.
        matches: dict[int, list[tuple[ReservedFactor, int, int]]] = defaultdict(list)
        for (item, factor, counter), step in zip(pairs, steps, strict=True):
            if step >= 0:
                matches[item.index].append((factor, int(step), counter))
        winners: dict[int, tuple[ReservedFactor, int, int]] = {}
        for index, found in matches.items():
            fresh = [match for match in found if match[1] > match[0].last_used_step]
            if fresh:
                winners[index] = fresh[0]
        won = attempts.consume(
            [(factor.factor_id, step) for factor, step, _ in winners.values()],
            state=state,
            now=now,
        )
        proved_accounts = set()
        judged = {id(item) for item, _ in results}
        for item in items:
            if id(item) in judged:
                continue
            winner = winners.get(item.index)
            if winner is not None and winner[0].factor_id in won:
                factor, step, counter = winner
                proved_accounts.add(item.check.account_id)
                results.append(
                    (
                        item,
                        VerifyOutcome(
                            VerifyResult.VALID,
                            factor_id=factor.factor_id,
                            step_offset=step - counter,
                            attempts_left=self._policy.lock_after_failures,
                        ),
                    )
                )
                continue
            matched = matches.get(item.index)
            results.append((item, self._failure(by_account[item.check.account_id], matched)))
        attempts.reset_failures(
            [
                factor.factor_id
                for account in proved_accounts
                for factor in by_account[account]
                if factor.factor_id not in won
            ]
        )
        return results

    def _failure(
        self, counted: list[ReservedFactor], matched: list[tuple[ReservedFactor, int, int]] | None
    ) -> VerifyOutcome:
        worst = max(factor.failed_attempts for factor in counted)
        return VerifyOutcome(
            VerifyResult.REPLAYED if matched else VerifyResult.INVALID,
            factor_id=matched[0][0].factor_id if matched else None,
            attempts_left=self._policy.attempts_left(worst),
            retry_after_seconds=min(self._policy.wait_after(f.failed_attempts) for f in counted),
        )

    def _explain_uncounted(
        self, items: list[_Item], state: str, now: int
    ) -> list[tuple[_Item, CheckResult]]:
        """Nothing was counted: say why (not found, wrong state, digits, or blocked)."""
        if not items:
            return []
        named = self._store.get_many(i.check.factor_id for i in items if i.check.factor_id)
        in_state: dict[str, list[FactorRow]] = defaultdict(list)
        for row in self._store.list_for_accounts((i.check.account_id for i in items), state):
            in_state[row.account_id].append(row)
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
        named: dict[str, FactorRow],
        in_state: dict[str, list[FactorRow]],
        state: str,
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


def _secret_unavailable() -> TotpdError:
    return TotpdError(ErrorReason.SECRET_UNAVAILABLE, "a stored secret cannot be opened")


def _require_state(row: FactorRow, state: str, now: int) -> None:
    if state == "pending" and (
        row.state == "expired" or (row.state == "pending" and (row.expires_at or 0) <= now)
    ):
        raise TotpdError(
            ErrorReason.ENROLLMENT_EXPIRED,
            "the enrollment expired before it was confirmed; enroll again",
            field="factor_id",
        )
    if row.state != state:
        wanted = "pending (not yet confirmed)" if state == "pending" else "active"
        raise TotpdError(
            ErrorReason.FACTOR_NOT_ACTIVE,
            f"the factor is {row.state}, it must be {wanted}",
            field="factor_id",
        )
