"""Shared by the store tests: an interleaving forced between a round's optimistic
read and its write."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from totpd.service.mfa import MfaService
from totpd.store import AttemptRequest, CandidateFactor


def interleave_after_read(
    service: MfaService, monkeypatch: pytest.MonkeyPatch, other: Callable[[], object]
) -> list[int]:
    """Run `other` once, right after the next round's optimistic read; count locked rounds."""
    attempts = service.deps.store.attempts
    real_read, real_locked = attempts.read, attempts.locked
    pending = [other]
    locked_rounds = [0]

    def read(requests: Sequence[AttemptRequest], **kwargs: Any) -> list[CandidateFactor]:
        factors = real_read(requests, **kwargs)
        if pending:
            pending.pop()()
        return factors

    def locked() -> Any:
        locked_rounds[0] += 1
        return real_locked()

    monkeypatch.setattr(attempts, "read", read)
    monkeypatch.setattr(attempts, "locked", locked)
    return locked_rounds
