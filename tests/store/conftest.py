"""Shared by the store tests: an interleaving forced between a round's optimistic
read and its write; the connections a pool invalidated."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Engine, event

from totpd.service.mfa import MfaService
from totpd.store import AttemptRequest, CandidateFactor, FactorWrite


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


@contextmanager
def invalidations(engine: Engine) -> Iterator[list[object]]:
    """Every connection the engine's pool invalidates meanwhile (SQLAlchemy's own event)."""
    seen: list[object] = []

    def invalidated(dbapi_connection: object, record: object, error: object) -> None:
        seen.append(dbapi_connection)

    event.listen(engine, "invalidate", invalidated)
    try:
        yield seen
    finally:
        event.remove(engine, "invalidate", invalidated)


def one_more_failure(factor: CandidateFactor) -> FactorWrite:
    """The write of one more failed attempt on `factor`, conditioned on its state as read."""
    return FactorWrite(
        factor.factor_id,
        factor.failed_attempts + 1,
        factor.blocked_until,
        factor.last_used_step,
        0,
        factor.failed_attempts,
        factor.blocked_until,
        factor.last_used_step,
    )
