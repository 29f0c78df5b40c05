"""Shared by the store tests: an interleaving forced between a round's optimistic
read and its write; the connections a pool invalidated; a database of its own for
the query-plan tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event

from tests.store.upgrades import empty_database_url
from totpd.service.mfa import MfaService
from totpd.store import AttemptRequest, CandidateFactor, FactorWrite, migrate, open_engine


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def planning_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated database that no other test has written to. The shared PostgreSQL
    test database is TRUNCATEd between tests, which keeps the column statistics
    earlier tests' rows left (and ANALYZE's row counts are not rolled back), so a
    plan read there depends on which tests ran before it."""
    engine = open_engine(empty_database_url(request, tmp_path, "plans"))
    migrate(engine)
    yield engine
    engine.dispose()


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
