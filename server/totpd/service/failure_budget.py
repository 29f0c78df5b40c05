"""An account's rolling budget of compared failures: GCRA arithmetic on one timestamp.

The budget holds B (code, factor) pairs and refills one every W / B seconds
(B = failure_budget, W = failure_budget_window_seconds). It is stored as a
"theoretical arrival time" `tat` (Unix seconds): spending n pairs at `now`
moves it to max(tat, now) + n * W / B, and n pairs may be spent only if the
result stays within W of now. So in any span of L seconds at most
B + L * B / W pairs are spent: B at once, then one per W / B seconds.

Integer arithmetic only, rounding against the guesser: a spend moves `tat`
by ceil(n * W / B), never less.
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
