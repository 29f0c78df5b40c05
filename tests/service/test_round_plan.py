"""How a call's checks are spread over rounds (service/round_plan.py): the shortcuts
for the common batch (one check per account, nothing waiting) answer as the
general path does."""

from __future__ import annotations

from totpd.service.checks import Check, Verdict
from totpd.service.errors import ErrorReason, TotpdError
from totpd.service.round_plan import answer_while_locked, failures, one_per_account
from totpd.service.types import VerifyItem, VerifyOutcome, VerifyResult


def _checks(*accounts: str) -> list[Check]:
    return [Check(i, VerifyItem(account, "123456", None), 6) for i, account in enumerate(accounts)]


def test_distinct_accounts_make_one_round() -> None:
    checks = _checks("a", "b", "c")
    assert one_per_account(checks) == (checks, [])
    assert one_per_account([]) == ([], [])


def test_a_repeated_account_waits_for_the_next_round_in_request_order() -> None:
    checks = _checks("a", "b", "a", "c", "b", "a")
    now, later = one_per_account(checks)
    assert [c.position for c in now] == [0, 1, 3]
    assert [c.position for c in later] == [2, 4, 5]
    assert one_per_account(later) == ([later[0], later[1]], [later[2]])


def test_failures_counts_wrong_and_reused_codes_only() -> None:
    verdicts: list[Verdict] = [
        VerifyOutcome(VerifyResult.INVALID),
        VerifyOutcome(VerifyResult.VALID, "f"),
        VerifyOutcome(VerifyResult.REPLAYED, "f"),
        VerifyOutcome(VerifyResult.LOCKED),
        TotpdError(ErrorReason.ACCOUNT_NOT_FOUND, "no such account"),
        VerifyOutcome(VerifyResult.INVALID),
    ]
    assert failures(verdicts) == 3
    assert failures([]) == 0


def test_nothing_waiting_leaves_every_verdict_as_it_was() -> None:
    (check,) = _checks("a")
    locked = VerifyOutcome(VerifyResult.LOCKED, retry_after_seconds=5)
    verdicts: list[Verdict | None] = [None]
    assert answer_while_locked([(check, locked)], [], verdicts) == []
    assert verdicts == [None]
    # With a check waiting for the same (account, factor, digits), it is answered LOCKED.
    waiting = Check(1, check.item, 6)
    verdicts = [None, None]
    assert answer_while_locked([(check, locked)], [waiting], verdicts) == []
    assert verdicts[1] is locked
