"""Deleting factors that ended long ago, one small batch per transaction.

Disabled and expired factors hold no secret but stay in the table until their
`ended_at` is older than the retention; pending factors that were never
confirmed go once their `expires_at` is that old (expiry marks them only
when their account is next read). Each call deletes at most `limit` rows in one
short transaction, so the purge never holds the write lock for long.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

from sqlalchemy import Engine, and_, delete, or_, select

from totpd.domain import ENDED_STATES, FactorState
from totpd.store import faults
from totpd.store.database import IMMEDIATE_TRANSACTION
from totpd.store.models import FactorRow


class FactorPurge:
    def __init__(self, engine: Engine, writer: AbstractContextManager[object]) -> None:
        self._engine = engine
        self._writer = writer  # queues SQLite's writers (see database.writer_queue)

    @faults.translated
    def ended_before(self, cutoff: int, *, limit: int) -> int:
        """Delete up to `limit` factors that ended (or, pending, expired) before
        `cutoff`; returns how many."""
        gone = or_(
            and_(FactorRow.state.in_(ENDED_STATES), FactorRow.ended_at < cutoff),
            and_(FactorRow.state == FactorState.PENDING, FactorRow.expires_at < cutoff),
        )
        batch = select(FactorRow.id).where(gone).limit(limit)
        # The condition again on the DELETE: a row that came back to life
        # between the subquery and the delete is not deleted.
        statement = delete(FactorRow).where(FactorRow.id.in_(batch.scalar_subquery()), gone)
        with self._writer, self._engine.connect() as connection:
            connection.execution_options(**{IMMEDIATE_TRANSACTION: True})
            with connection.begin():
                return int(connection.execute(statement).rowcount)
