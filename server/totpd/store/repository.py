"""Factor rows: enrollment, reads, disable. Verification rounds are in attempts.py.

`store/` is the only place with SQL. The ORM serves the low-rate operations;
the verification hot path (`FactorStore.attempts`) runs compiled statements
on the driver's cursor.

Every operation waits for the database at most until the call's deadline
(store/deadline.py) and raises DeadlineExceededError then; a transaction
commits only while the deadline holds, otherwise it rolls back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from totpd.store import deadline
from totpd.store.attempts import Attempts
from totpd.store.database import IMMEDIATE_TRANSACTION, writer_queue
from totpd.store.models import LIVE_STATES, FactorRow

_T = TypeVar("_T")
# The seed of hashtextextended(account_id, seed), the key of an account's
# enrollment advisory lock.
_ENROLLMENT_LOCK_SEED = 0


class LabelTaken(Exception):
    """Another live factor of the account already has this label."""


class FactorStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._writer = writer_queue(engine)
        self.attempts = Attempts(engine, self._writer)
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    # -- reads -------------------------------------------------------------

    @deadline.bounded
    def get(self, factor_id: str) -> FactorRow | None:
        with self._sessions() as session:
            return session.get(FactorRow, factor_id)

    @deadline.bounded
    def list_for_account(
        self, account_id: str, states: Iterable[str], *, now: int
    ) -> list[FactorRow]:
        """The account's factors in `states`, newest first.

        Pending factors past their deadline are first marked EXPIRED, their
        secrets erased, in the same transaction: expiry is lazy, per account.
        """
        with self._sessions.begin() as session:
            rows = _expire_and_list(session, account_id, states, now)
            deadline.check()  # before the commit
            return rows

    @deadline.bounded
    def list_for_accounts(self, account_ids: Iterable[str], state: str) -> list[FactorRow]:
        rows: list[FactorRow] = []
        with self._sessions() as session:
            for chunk in _chunks(sorted(set(account_ids))):
                query = select(FactorRow).where(
                    FactorRow.account_id.in_(chunk), FactorRow.state == state
                )
                rows.extend(session.scalars(query))
        return rows

    @deadline.bounded
    def get_many(self, factor_ids: Iterable[str]) -> dict[str, FactorRow]:
        rows: dict[str, FactorRow] = {}
        with self._sessions() as session:
            for chunk in _chunks(sorted(set(factor_ids))):
                rows.update(
                    (row.id, row)
                    for row in session.scalars(select(FactorRow).where(FactorRow.id.in_(chunk)))
                )
        return rows

    # -- enrollment --------------------------------------------------------

    @deadline.bounded
    def add_to_account(
        self, account_id: str, *, now: int, make_row: Callable[[list[FactorRow]], FactorRow]
    ) -> FactorRow:
        """Insert the row `make_row` builds from the account's live factors, with no
        other enrollment of the account in between: the count and the labels it
        saw cannot change under it, so a limit it checks holds under concurrency.

        One transaction, serialised per account: PostgreSQL takes an advisory
        lock on the account id; SQLite takes its write lock up front (BEGIN
        IMMEDIATE, queued with the other writers). `make_row` may raise to refuse.
        """
        with self._writer, self._engine.connect() as connection:
            connection.execution_options(**{IMMEDIATE_TRANSACTION: True})
            with connection.begin(), Session(bind=connection, expire_on_commit=False) as session:
                if self._engine.dialect.name == "postgresql":
                    key = func.hashtextextended(account_id, _ENROLLMENT_LOCK_SEED)
                    session.execute(select(func.pg_advisory_xact_lock(key)))
                row = make_row(_expire_and_list(session, account_id, LIVE_STATES, now))
                session.add(row)
                try:
                    session.flush()
                except IntegrityError:
                    raise LabelTaken from None
                deadline.check()  # before the commit
        return row

    # -- disable -----------------------------------------------------------

    @deadline.bounded
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
            disabled = list(session.scalars(statement))
            deadline.check()  # before the commit
            return disabled


_ERASED_SECRET: dict[str, None] = {
    "secret_key_id": None,
    "secret_nonce": None,
    "secret_ciphertext": None,
}


# Ids per IN list of the read and reset helpers: keeps every backend under its
# bound-parameter limit (SQLite: 32,766). The hot statements bind one JSON value.
_CHUNK = 4000


def _expire_and_list(
    session: Session, account_id: str, states: Iterable[str], now: int
) -> list[FactorRow]:
    expire = (
        update(FactorRow)
        .where(
            FactorRow.account_id == account_id,
            FactorRow.state == "pending",
            FactorRow.expires_at <= now,
        )
        .values(state="expired", **_ERASED_SECRET)
        .execution_options(synchronize_session=False)
    )
    query = (
        select(FactorRow)
        .where(FactorRow.account_id == account_id, FactorRow.state.in_(tuple(states)))
        .order_by(FactorRow.created_at.desc(), FactorRow.id)
    )
    session.execute(expire)
    return list(session.scalars(query))


def _chunks(items: Sequence[_T]) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]
