"""Factors: enrollment, reads, disable; account unlock. Rounds live in rounds.py.

Design notes: ARCHITECTURE.md, "Module notes", store/repository.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Final, NamedTuple, TypeVar

from sqlalchemy import Engine, create_engine, func, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from totpd.calls import DEFAULT_TENANT
from totpd.domain import LIVE_STATES, NEVER_USED_STEP, Algorithm, FactorState
from totpd.store import deadline, faults, recovery
from totpd.store.audit import AuditRow, AuditStore, append_in
from totpd.store.database import IMMEDIATE_TRANSACTION, sqlite_file, writer_queue
from totpd.store.errors import LabelTakenError, StoreUnavailableError
from totpd.store.models import AccountRow, FactorRow
from totpd.store.purge import FactorPurge
from totpd.store.records import AccountState, NewFactor, StoredFactor
from totpd.store.requests import Completion, RequestStore, complete_in
from totpd.store.rounds import Attempts
from totpd.store.sealed_secrets import LEGACY, SealedSecrets

_T = TypeVar("_T")
# The seed of hashtextextended(tenant and account_id, seed), the key of an
# account's enrollment advisory lock.
_ENROLLMENT_LOCK_SEED = 0


class AccountUnlock(NamedTuple):
    """What `unlock_account` found, all of which it cleared."""

    known: bool  # the account has factors (in any state) or attempt state
    locked_at: int | None  # when it locked after too many consecutive failures
    consecutive_failures: int
    budget_tat: int  # the failure budget's arrival time (at or before now: full)
    factors_unblocked: int  # live factors whose failures or timed lock were cleared


class FactorStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._writer = writer_queue(engine)
        self.attempts = Attempts(engine, self._writer)
        self.requests = RequestStore(engine, self._writer)
        self.purge = FactorPurge(engine, self._writer)
        # The start-up re-seal's rows; `.selecting(...)` for `totpd rekey`'s.
        self.sealed_secrets = SealedSecrets(engine, self._writer, LEGACY)
        self.audit = AuditStore(engine, self._writer)
        self.recovery = recovery.RecoveryStore(engine, self._writer)
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._ping_engine = _ping_engine(engine)

    # -- health ------------------------------------------------------------

    def ping(self) -> None:
        """Read one row on a new connection; StoreUnavailableError if the database
        cannot be reached or read. May block as long as the database does (a
        hung server): the health probe runs it where it can stop waiting."""
        try:
            with self._ping_engine.connect() as connection:
                connection.execute(select(FactorRow.id).limit(1)).all()
        except DBAPIError as error:
            cause = error.orig if error.orig is not None else error
            raise StoreUnavailableError("the database does not answer", cause) from error

    @faults.translated
    def secret_key_ids(self) -> set[str]:
        """The id of every key a stored secret is sealed with."""
        query = (
            select(FactorRow.secret_key_id)
            .where(FactorRow.secret_ciphertext.is_not(None))
            .distinct()
        )
        with self._sessions() as session:
            return {key_id for key_id in session.scalars(query) if key_id is not None}

    # -- reads -------------------------------------------------------------

    @deadline.bounded
    def get(self, factor_id: str, *, tenant: str = DEFAULT_TENANT) -> StoredFactor | None:
        """The tenant's factor; None: absent, or another tenant's."""
        with self._sessions() as session:
            row = session.get(FactorRow, factor_id)
            return None if row is None or row.tenant != tenant else _stored(row)

    @deadline.bounded
    def list_for_account(
        self,
        account_id: str,
        states: Iterable[FactorState],
        *,
        now: int,
        tenant: str = DEFAULT_TENANT,
    ) -> list[StoredFactor]:
        """The account's factors in `states`, newest first.

        Pending factors past their deadline are first marked EXPIRED, their
        secrets erased, in the same transaction: expiry is lazy, per account.
        """
        with self._sessions.begin() as session:
            listed = _expire_and_list(session, tenant, account_id, states, now)
            factors = [_stored(row) for row in listed]
            deadline.check()  # before the commit
            return factors

    @deadline.bounded
    def list_for_accounts(
        self, account_ids: Iterable[str], state: FactorState, *, tenant: str = DEFAULT_TENANT
    ) -> list[StoredFactor]:
        factors: list[StoredFactor] = []
        with self._sessions() as session:
            for chunk in _chunks(sorted(set(account_ids))):
                query = select(FactorRow).where(
                    FactorRow.tenant == tenant,
                    FactorRow.account_id.in_(chunk),
                    FactorRow.state == state,
                )
                factors.extend(_stored(row) for row in session.scalars(query))
        return factors

    @deadline.bounded
    def get_many(
        self, factor_ids: Iterable[str], *, tenant: str = DEFAULT_TENANT
    ) -> dict[str, StoredFactor]:
        factors: dict[str, StoredFactor] = {}
        with self._sessions() as session:
            for chunk in _chunks(sorted(set(factor_ids))):
                query = select(FactorRow).where(FactorRow.id.in_(chunk), FactorRow.tenant == tenant)
                factors.update((row.id, _stored(row)) for row in session.scalars(query))
        return factors

    # -- enrollment --------------------------------------------------------

    @deadline.bounded
    def add_to_account(
        self,
        account_id: str,
        *,
        now: int,
        make_factor: Callable[[list[StoredFactor]], NewFactor],
        completes: Completion | None = None,
        tenant: str = DEFAULT_TENANT,
        events: Sequence[AuditRow] = (),
    ) -> StoredFactor:
        """Insert the factor `make_factor` builds from the account's live factors, with no
        other enrollment of the account in between: the count and the labels it
        saw cannot change under it, so a limit it checks holds under concurrency.

        One transaction, serialised per account: PostgreSQL takes an advisory
        lock on the account id; SQLite takes its write lock up front (BEGIN
        IMMEDIATE, queued with the other writers). `make_factor` may raise to refuse.
        `completes`: the request record that stores this result, in the same transaction;
        `events`: the audit events of the enrollment, appended in it too.
        """
        with self._writer, self._engine.connect() as connection:
            connection.execution_options(**{IMMEDIATE_TRANSACTION: True})
            with connection.begin(), Session(bind=connection, expire_on_commit=False) as session:
                if self._engine.dialect.name == "postgresql":
                    name = f"{len(tenant)}:{tenant}:{account_id}"  # unambiguous: length-prefixed
                    key = func.hashtextextended(name, _ENROLLMENT_LOCK_SEED)
                    session.execute(select(func.pg_advisory_xact_lock(key)))
                live = _expire_and_list(session, tenant, account_id, LIVE_STATES, now)
                row = _new_row(make_factor([_stored(factor) for factor in live]), tenant)
                session.add(row)
                try:
                    session.flush()
                except IntegrityError:
                    raise LabelTakenError from None
                if completes is not None:
                    complete_in(connection, completes)
                append_in(connection, events)
                deadline.check()  # before the commit
        return _stored(row)

    # -- account unlock ----------------------------------------------------

    @deadline.bounded
    def unlock_account(
        self,
        account_id: str,
        *,
        tenant: str = DEFAULT_TENANT,
        factor_id: str | None = None,
        events: Callable[[AccountUnlock], Sequence[AuditRow]] | None = None,
    ) -> AccountUnlock:
        """Lift the account's lock after too many consecutive failures, end its run
        of failures, refill its failure budget, and clear its live factors'
        failures, backoff and timed lock (only `factor_id`'s, if given): the
        user can sign in at once.

        One transaction; a round that read the old state writes nothing and
        is decided again. For operators (`totpd unlock`, Unlock) and for a
        recovery path that proves possession another way. `events`: builds the
        audit events of what was found, appended in the same transaction.
        """
        which = FactorRow.account_id == account_id
        if factor_id is not None:
            which = which & (FactorRow.id == factor_id)
        clear_factors = (
            update(FactorRow)
            .where(
                FactorRow.tenant == tenant,
                which,
                FactorRow.state.in_(LIVE_STATES),
                (FactorRow.failed_attempts != 0) | (FactorRow.blocked_until != 0),
            )
            .values(failed_attempts=0, blocked_until=0)
            .returning(FactorRow.id)
            .execution_options(synchronize_session=False)
        )
        has_factors = (
            select(FactorRow.id)
            .where(FactorRow.tenant == tenant, FactorRow.account_id == account_id)
            .limit(1)
        )
        with self._writer, self._engine.connect() as connection:
            connection.execution_options(**{IMMEDIATE_TRANSACTION: True})
            with connection.begin(), Session(bind=connection, expire_on_commit=False) as session:
                row = session.get(AccountRow, (account_id, tenant), with_for_update=True)
                unblocked = len(session.scalars(clear_factors).all())
                known = row is not None or session.scalar(has_factors) is not None
                if row is None:
                    found = AccountUnlock(known, None, 0, 0, unblocked)
                else:
                    found = AccountUnlock(
                        known, row.locked_at, row.consecutive_failures, row.budget_tat, unblocked
                    )
                    row.locked_at = None
                    row.consecutive_failures = 0
                    row.budget_tat = 0
                    session.flush()
                if events is not None and known:
                    append_in(connection, events(found))
                deadline.check()  # before the commit
        return found

    @faults.translated
    def account_state(
        self, account_id: str, *, tenant: str = DEFAULT_TENANT
    ) -> AccountState | None:
        """The account's attempt state; None: no failure was ever counted."""
        with self._sessions() as session:
            row = session.get(AccountRow, (account_id, tenant))
            if row is None:
                return None
            return AccountState(
                row.account_id, row.budget_tat, row.consecutive_failures, row.locked_at
            )

    # -- disable -----------------------------------------------------------

    @deadline.bounded
    def disable(
        self,
        factor_ids: Sequence[str],
        *,
        now: int,
        completes: Callable[[list[StoredFactor]], Completion | None] | None = None,
        tenant: str = DEFAULT_TENANT,
        events: Callable[[list[StoredFactor]], Sequence[AuditRow]] | None = None,
    ) -> list[StoredFactor]:
        """Turn live factors DISABLED and erase their secrets; returns them. An account
        left without an ACTIVE factor loses its recovery codes in the same transaction.

        `completes`: builds, from the disabled factors, the request record that
        stores this result, written in the same transaction; `events`: builds the
        audit events of the disabled factors, appended in it too.
        """
        statement = (
            update(FactorRow)
            .where(
                FactorRow.id.in_(factor_ids),
                FactorRow.tenant == tenant,
                FactorRow.state.in_(LIVE_STATES),
            )
            .values(state=FactorState.DISABLED, expires_at=None, ended_at=now, **_ERASED_SECRET)
            .returning(FactorRow)
            .execution_options(synchronize_session=False)
        )
        with self._sessions.begin() as session:
            disabled = [_stored(row) for row in session.scalars(statement)]
            recovery.drop_where_mfa_off(
                session.connection(), tenant, (f.account_id for f in disabled)
            )
            completion = completes(disabled) if completes is not None else None
            if completion is not None:
                complete_in(session.connection(), completion)
            if events is not None:
                append_in(session.connection(), events(disabled))
            deadline.check()  # before the commit
            return disabled


# The record fields a factor row holds under the same name, as the same value.
_SAME_IN_ROW: Final = tuple(
    field.name
    for field in dataclasses.fields(StoredFactor)
    if field.name not in ("factor_id", "algorithm", "state")
)
_NEW_IN_ROW: Final = tuple(
    field.name
    for field in dataclasses.fields(NewFactor)
    if field.name not in ("factor_id", "algorithm")
)


def _stored(row: FactorRow) -> StoredFactor:
    return StoredFactor(
        factor_id=row.id,
        algorithm=Algorithm(row.algorithm),
        state=FactorState(row.state),
        **{name: getattr(row, name) for name in _SAME_IN_ROW},
    )


def _new_row(factor: NewFactor, tenant: str) -> FactorRow:
    return FactorRow(
        id=factor.factor_id,
        tenant=tenant,
        algorithm=factor.algorithm.value,
        state=FactorState.PENDING.value,
        last_used_step=NEVER_USED_STEP,
        failed_attempts=0,
        blocked_until=0,
        **{name: getattr(factor, name) for name in _NEW_IN_ROW},
    )


def _ping_engine(engine: Engine) -> Engine:
    """An engine that connects anew for every ping: it tests connection
    acquisition itself (the pool's connections may be stale, or point at a
    SQLite file since replaced), and a pool exhausted by load, an overload,
    does not read as an outage. A memory database exists only in its own pool."""
    if engine.dialect.name == "sqlite" and sqlite_file(engine) is None:
        return engine
    return create_engine(engine.url, poolclass=NullPool)


_ERASED_SECRET: dict[str, None] = {
    "secret_key_id": None,
    "secret_nonce": None,
    "secret_ciphertext": None,
}


# Ids per IN list of the read and reset helpers: keeps every backend under its
# bound-parameter limit (SQLite: 32,766). The hot statements bind one JSON value.
_CHUNK = 4000


def _expire_and_list(
    session: Session, tenant: str, account_id: str, states: Iterable[FactorState], now: int
) -> list[FactorRow]:
    expire = (
        update(FactorRow)
        .where(
            FactorRow.tenant == tenant,
            FactorRow.account_id == account_id,
            FactorRow.state == FactorState.PENDING,
            FactorRow.expires_at <= now,
        )
        # It ended when its deadline passed, not when expiry noticed it.
        .values(state=FactorState.EXPIRED, ended_at=FactorRow.expires_at, **_ERASED_SECRET)
        .execution_options(synchronize_session=False)
    )
    query = (
        select(FactorRow)
        .where(
            FactorRow.tenant == tenant,
            FactorRow.account_id == account_id,
            FactorRow.state.in_(tuple(states)),
        )
        .order_by(FactorRow.created_at.desc(), FactorRow.id)
    )
    session.execute(expire)
    return list(session.scalars(query))


def _chunks(items: Sequence[_T]) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]
