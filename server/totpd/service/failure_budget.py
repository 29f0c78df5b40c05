"""An account's rolling budget of compared failures: GCRA arithmetic on one timestamp.

Design notes: ARCHITECTURE.md, "Module notes", service/failure_budget.py.
"""

from __future__ import annotations

from totpd.service.policy import Policy


def cost_seconds(policy: Policy, pairs: int) -> int:
    """How far spending `pairs` moves the arrival time (rounded up)."""
    window, budget = policy.failure_budget_window_seconds, policy.failure_budget
    return -(-pairs * window // budget)


def wait_seconds(policy: Policy, tat: int, now: int, pairs: int) -> int:
    """Seconds until `pairs` may be spent (0: now).

    More pairs than the whole budget (possible only if the policy was lowered
    below an account's factor count) need a full budget.
    """
    pairs = min(pairs, policy.failure_budget)
    ready_at = tat - policy.failure_budget_window_seconds + cost_seconds(policy, pairs)
    return max(0, ready_at - now)


def spend(policy: Policy, tat: int, now: int, pairs: int) -> int:
    """The arrival time after spending `pairs` at `now`."""
    return max(tat, now) + cost_seconds(policy, pairs)


def pairs_left(policy: Policy, tat: int, now: int) -> int:
    """Whole pairs that may still be spent at `now`."""
    window, budget = policy.failure_budget_window_seconds, policy.failure_budget
    used = max(0, tat - now)
    return max(0, (window - used) * budget // window)
