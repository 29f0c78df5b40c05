"""The only place with SQL: factor rows and the atomic updates that guard them.

Every write that decides security is one conditional UPDATE, so several
server processes sharing a database stay correct without locks in memory:

- `reserve_attempts` counts an attempt *before* any code is compared, and only
  on factors that are not blocked (backoff or lock). Parallel guesses therefore
  cannot outrun the attempt limit.
- `consume_step` accepts a time step only if it is greater than the factor's
  `last_used_step`, in the same statement that records it (rowcount 1 = won).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Engine, case, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from totpd.crypto import SealedSecret
from totpd.store.models import LIVE_STATES, FactorRow


class LabelTaken(Exception):
    """Another live factor of the account already has this label."""


@dataclass(frozen=True, slots=True)
class AttemptSchedule:
    """How failures turn into waiting time, decided by the service's policy.

    `waits[n]` is the number of seconds no attempt is compared after the n-th
    consecutive failure; the last entry applies to every count beyond it (the lock).
    """

    waits: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ReservedFactor:
    """A factor whose attempt was counted and may now be compared."""

    factor_id: str
    algorithm: str
    digits: int
    period_seconds: int
    sealed: SealedSecret
    last_used_step: int
    failed_attempts: int


class FactorStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @property
    def engine(self) -> Engine:
        return self._engine

    # -- reads -------------------------------------------------------------

    def get(self, factor_id: str) -> FactorRow | None:
        with self._sessions() as session:
            return session.get(FactorRow, factor_id)

    def list_for_account(self, account_id: str, states: Iterable[str]) -> list[FactorRow]:
        query = (
            select(FactorRow)
            .where(FactorRow.account_id == account_id, FactorRow.state.in_(tuple(states)))
            .order_by(FactorRow.created_at.desc(), FactorRow.id)
        )
        with self._sessions() as session:
            return list(session.scalars(query))

    def count_live(self, account_id: str) -> int:
        return len(self.list_for_account(account_id, LIVE_STATES))

    # -- enrollment --------------------------------------------------------

    def insert(self, row: FactorRow) -> FactorRow:
        try:
            with self._sessions.begin() as session:
                session.add(row)
        except IntegrityError:
            raise LabelTaken from None
        return row

    def expire_stale_enrollments(self, now: int, account_id: str | None = None) -> int:
        """Mark pending factors past their deadline EXPIRED and erase their secrets."""
        statement = (
            update(FactorRow)
            .where(FactorRow.state == "pending", FactorRow.expires_at <= now)
            .values(state="expired", **_ERASED_SECRET)
            .execution_options(synchronize_session=False)
        )
        if account_id is not None:
            statement = statement.where(FactorRow.account_id == account_id)
        with self._sessions.begin() as session:
            return _rowcount(session.execute(statement))

    # -- verification ------------------------------------------------------

    def reserve_attempts(
        self,
        *,
        account_id: str,
        factor_id: str | None,
        state: str,
        digits: int,
        now: int,
        schedule: AttemptSchedule,
    ) -> list[ReservedFactor]:
        """Count one attempt on every matching factor that is not blocked.

        Matching: the account's factors in `state` with `digits` digits (and the
        one `factor_id` if given; pending factors only until they expire).
        Returns the counted factors with their sealed secrets.
        """
        counted = FactorRow.failed_attempts + 1
        statement = (
            update(FactorRow)
            .where(
                FactorRow.account_id == account_id,
                FactorRow.state == state,
                FactorRow.digits == digits,
                FactorRow.blocked_until <= now,
            )
            .values(failed_attempts=counted, blocked_until=_blocked_until(counted, now, schedule))
            .returning(
                FactorRow.id,
                FactorRow.algorithm,
                FactorRow.digits,
                FactorRow.period_seconds,
                FactorRow.secret_key_id,
                FactorRow.secret_nonce,
                FactorRow.secret_ciphertext,
                FactorRow.last_used_step,
                FactorRow.failed_attempts,
            )
            .execution_options(synchronize_session=False)
        )
        if factor_id is not None:
            statement = statement.where(FactorRow.id == factor_id)
        if state == "pending":
            statement = statement.where(FactorRow.expires_at > now)
        with self._sessions.begin() as session:
            rows = session.execute(statement).all()
        reserved = []
        for row in rows:
            if row.secret_key_id is None or row.secret_nonce is None:
                continue  # erased concurrently; nothing to compare against
            reserved.append(
                ReservedFactor(
                    factor_id=row.id,
                    algorithm=row.algorithm,
                    digits=row.digits,
                    period_seconds=row.period_seconds,
                    sealed=SealedSecret(
                        row.secret_key_id, row.secret_nonce, row.secret_ciphertext or b""
                    ),
                    last_used_step=row.last_used_step,
                    failed_attempts=row.failed_attempts,
                )
            )
        return reserved

    def consume_step(self, factor_id: str, *, state: str, step: int, now: int) -> bool:
        """Record `step` as used if it is newer than the last one; reset failures.

        Confirming a pending factor activates it in the same statement.
        True if this call won the step.
        """
        values: dict[str, object] = {
            "last_used_step": step,
            "last_used_at": now,
            "failed_attempts": 0,
            "blocked_until": 0,
        }
        if state == "pending":
            values.update(state="active", confirmed_at=now, expires_at=None)
        statement = (
            update(FactorRow)
            .where(
                FactorRow.id == factor_id,
                FactorRow.state == state,
                FactorRow.last_used_step < step,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if state == "pending":
            statement = statement.where(FactorRow.expires_at > now)
        with self._sessions.begin() as session:
            return _rowcount(session.execute(statement)) == 1

    def reset_failures(self, factor_ids: Sequence[str]) -> None:
        """Clear the consecutive-failure count: the account proved possession."""
        if not factor_ids:
            return
        statement = (
            update(FactorRow)
            .where(FactorRow.id.in_(factor_ids))
            .values(failed_attempts=0, blocked_until=0)
            .execution_options(synchronize_session=False)
        )
        with self._sessions.begin() as session:
            session.execute(statement)

    # -- disable -----------------------------------------------------------

    def disable(self, factor_ids: Sequence[str]) -> list[FactorRow]:
        """Turn live factors DISABLED and erase their secrets; returns them."""
        statement = (
            update(FactorRow)
            .where(FactorRow.id.in_(factor_ids), FactorRow.state.in_(LIVE_STATES))
            .values(state="disabled", expires_at=None, **_ERASED_SECRET)
            .returning(FactorRow)
            .execution_options(synchronize_session=False)
        )
        with self._sessions.begin() as session:
            return list(session.scalars(statement))


_ERASED_SECRET: dict[str, None] = {
    "secret_key_id": None,
    "secret_nonce": None,
    "secret_ciphertext": None,
}


def _blocked_until(
    failures: ColumnElement[int], now: int, schedule: AttemptSchedule
) -> ColumnElement[int]:
    """SQL for the new `blocked_until` after the `failures`-th consecutive failure."""
    last = len(schedule.waits) - 1
    waits = [
        (failures == n, now + wait) for n, wait in enumerate(schedule.waits[:last]) if wait > 0
    ]
    return case(
        (failures >= last, now + schedule.waits[last]),
        *waits,
        else_=FactorRow.blocked_until,
    )


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0))
