"""How a call's checks are spread over rounds, and what one round's verdicts
settle for the checks after it (glossary: verification.py)."""

from __future__ import annotations

import math

from totpd.service.checks import Check, Verdict
from totpd.service.types import VerifyOutcome, VerifyResult

FAILED_RESULTS = (VerifyResult.INVALID, VerifyResult.REPLAYED)
# A round of more checks is split into parts of about this many, each a round
# of its own, run up to three at a time (service/lanes.py). Smaller parts
# overlap more of the database's work with Python's; each costs its statements
# and a commit.
PART_CHECKS = 1_000


def failures(verdicts: list[Verdict]) -> int:
    # One C-level count per failed result: it runs over every verdict of a batch.
    results = [verdict.result for verdict in verdicts if isinstance(verdict, VerifyOutcome)]
    return sum(map(results.count, FAILED_RESULTS))


def unless_lost(verdict: Verdict, written: set[str]) -> Verdict:
    """A success whose write did not land lost its step to someone else: a replay.

    Cannot happen while the rows are locked; kept so that a broken lock shows
    as a refusal, never as a second VALID.
    """
    if isinstance(verdict, VerifyOutcome) and verdict.result is VerifyResult.VALID:
        if verdict.factor_id not in written:
            return VerifyOutcome(VerifyResult.REPLAYED, factor_id=verdict.factor_id)
    return verdict


def answer_while_locked(
    decided: list[tuple[Check, Verdict]],
    waiting: list[Check],
    verdicts: list[Verdict | None],
) -> list[Check]:
    """Answer LOCKED, without another round, the waiting checks whose exact
    candidates (account, factor, digits) a round's read found all blocked.

    Nothing was compared or counted for a LOCKED check, so the factors' state,
    and the verdict at the batch's `now`, stay the same for the checks after
    it: the answer a round of their own would give. Only verdicts of the
    round's read count (`decided`), not the explanations of checks it found no
    candidate for, which read again and may race. Without this, a batch for
    one account would run one round per check (benchmarks/NOTES.md).
    """
    if not waiting:  # a batch of one check per account: nothing to answer
        return waiting
    locked: dict[tuple[str, str | None, int], Verdict] = {}
    for check, verdict in decided:
        if isinstance(verdict, VerifyOutcome) and verdict.result is VerifyResult.LOCKED:
            locked[(check.item.account_id, check.item.factor_id, check.digits)] = verdict
    if not locked:
        return waiting
    still: list[Check] = []
    for check in waiting:
        answer = locked.get((check.item.account_id, check.item.factor_id, check.digits))
        if answer is None:
            still.append(check)
        else:
            verdicts[check.position] = answer
    return still


def one_per_account(checks: list[Check]) -> tuple[list[Check], list[Check]]:
    """Split off the first check of each account; the rest wait for the next round."""
    accounts = {check.item.account_id for check in checks}
    if len(accounts) == len(checks):  # the common batch: one check per account
        return checks, []
    seen: set[str] = set()
    now_items: list[Check] = []
    later: list[Check] = []
    for check in checks:
        if check.item.account_id in seen:
            later.append(check)
        else:
            seen.add(check.item.account_id)
            now_items.append(check)
    return now_items, later


def round_parts(checks: list[Check]) -> list[list[Check]]:
    """`checks` (one per account) in parts of at most PART_CHECKS, as even as can be."""
    size = PART_CHECKS
    if len(checks) <= size:
        return [checks]
    step = math.ceil(len(checks) / math.ceil(len(checks) / size))
    return [checks[start : start + step] for start in range(0, len(checks), step)]
