"""Request records of idempotent mutations (AIP-155): claim, complete, release.

Design notes: ARCHITECTURE.md, "Module notes", store/requests.py.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import NamedTuple, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    String,
    Table,
    Update,
    and_,
    bindparam,
    delete,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from totpd.store import faults
from totpd.store.database import IMMEDIATE_TRANSACTION
from totpd.store.models import RequestRecord

RUNNING = "running"
DONE = "done"
_TABLE = cast(Table, RequestRecord.__table__)


class NewRequest(NamedTuple):
    """A claim to insert: the call's identity, fingerprint and deadlines."""

    tenant: str
    request_id: str
    scope: str
    method: str
    account_id: str
    fingerprint: bytes
    fingerprint_key_id: str
    claim_token: str
    created_at: int
    lease_until: int
    expires_at: int


class StoredRequest(NamedTuple):
    """A live record as another call with the same id finds it."""

    method: str
    account_id: str
    fingerprint: bytes
    fingerprint_key_id: str
    state: str
    result: str | None


class Completion(NamedTuple):
    """The result to store on a claim, if the claim is still the caller's."""

    tenant: str
    request_id: str
    scope: str
    claim_token: str
    result: str


class RequestStore:
    def __init__(self, engine: Engine, writer: AbstractContextManager[object]) -> None:
        self._engine = engine
        self._writer = writer  # queues SQLite's writers (see database.writer_queue)

    @faults.translated
    def claim(self, new: NewRequest, *, now: int) -> StoredRequest | None:
        """Claim the id: None when the claim is now the caller's, else the live
        record that holds it (running or done)."""
        dialect = postgresql if self._engine.dialect.name == "postgresql" else sqlite
        claim = (
            dialect.insert(_TABLE)
            .values(**new._asdict(), state=RUNNING)
            .on_conflict_do_nothing(
                index_elements=[_TABLE.c.request_id, _TABLE.c.scope, _TABLE.c.tenant]
            )
            # A returned row, not rowcount: drivers disagree on an upsert's rowcount.
            .returning(_TABLE.c.request_id)
        )
        with self._transaction() as connection:
            if connection.execute(claim).first() is not None:
                return None
            taken_over = connection.execute(
                update(_TABLE)
                .where(_key(new.tenant, new.request_id, new.scope), _dead(now))
                .values(**new._asdict(), state=RUNNING, result=None)
            )
            if taken_over.rowcount == 1:
                return None
            return _live(connection, new.tenant, new.request_id, new.scope, now)

    @faults.translated
    def get(self, tenant: str, request_id: str, scope: str, *, now: int) -> StoredRequest | None:
        """The live record of an id, or None (absent, or only a dead claim is left)."""
        with self._engine.connect() as connection:
            return _live(connection, tenant, request_id, scope, now)

    @faults.translated
    def complete(self, completion: Completion) -> None:
        with self._transaction() as connection:
            complete_in(connection, completion)

    @faults.translated
    def release(self, tenant: str, request_id: str, scope: str, claim_token: str) -> None:
        """Drop the caller's running claim: the call failed and changed nothing it keeps."""
        with self._transaction() as connection:
            connection.execute(
                delete(_TABLE).where(
                    _key(tenant, request_id, scope),
                    _TABLE.c.claim_token == claim_token,
                    _TABLE.c.state == RUNNING,
                )
            )

    @faults.translated
    def purge_expired(self, *, now: int, limit: int) -> int:
        """Delete up to `limit` records past their retention; returns how many."""
        batch = select(_TABLE.c.request_id).where(_TABLE.c.expires_at <= now).limit(limit)
        statement = delete(_TABLE).where(
            _TABLE.c.expires_at <= now, _TABLE.c.request_id.in_(batch.scalar_subquery())
        )
        with self._transaction() as connection:
            return int(connection.execute(statement).rowcount)

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """A write transaction: queued with SQLite's other writers, its lock taken up front."""
        with self._writer, self._engine.connect() as connection:
            connection.execution_options(**{IMMEDIATE_TRANSACTION: True})
            with connection.begin():
                yield connection


def complete_in(connection: Connection, completion: Completion) -> bool:
    """Store the result on the claim inside the caller's transaction.

    False when the claim is no longer the caller's (its lease passed and another
    call took it over): the change stands, and that call's result is kept.
    """
    result = connection.execute(
        update(_TABLE)
        .where(
            _key(completion.tenant, completion.request_id, completion.scope),
            _TABLE.c.claim_token == completion.claim_token,
        )
        .values(state=DONE, result=completion.result)
    )
    return bool(result.rowcount == 1)


@functools.cache
def complete_statement() -> Update:
    """`complete_in` as one statement with binds, for a verification round's own
    transaction (store/rounds.py); returns the record it completed (none: the
    claim was taken over, and that call's result is kept)."""
    return (
        update(_TABLE)
        .where(
            _TABLE.c.tenant == bindparam("p_request_tenant", type_=String),
            _TABLE.c.request_id == bindparam("p_request_id", type_=String),
            _TABLE.c.scope == bindparam("p_scope", type_=String),
            _TABLE.c.claim_token == bindparam("p_claim_token", type_=String),
        )
        .values(state=DONE, result=bindparam("p_result", type_=String))
        .returning(_TABLE.c.request_id)
    )


def complete_values(completion: Completion) -> dict[str, object]:
    return {
        "p_request_tenant": completion.tenant,
        "p_request_id": completion.request_id,
        "p_scope": completion.scope,
        "p_claim_token": completion.claim_token,
        "p_result": completion.result,
    }


def _key(tenant: str, request_id: str, scope: str) -> ColumnElement[bool]:
    return and_(
        _TABLE.c.tenant == tenant, _TABLE.c.request_id == request_id, _TABLE.c.scope == scope
    )


def _dead(now: int) -> ColumnElement[bool]:
    """Past its retention, or a running claim whose lease passed."""
    return or_(
        _TABLE.c.expires_at <= now,
        and_(_TABLE.c.state == RUNNING, _TABLE.c.lease_until <= now),
    )


def _live(
    connection: Connection, tenant: str, request_id: str, scope: str, now: int
) -> StoredRequest | None:
    row = connection.execute(
        select(
            _TABLE.c.method,
            _TABLE.c.account_id,
            _TABLE.c.fingerprint,
            _TABLE.c.fingerprint_key_id,
            _TABLE.c.state,
            _TABLE.c.result,
            _TABLE.c.lease_until,
            _TABLE.c.expires_at,
        ).where(_key(tenant, request_id, scope))
    ).one_or_none()
    if row is None or row.expires_at <= now or (row.state == RUNNING and row.lease_until <= now):
        return None
    return StoredRequest(
        row.method, row.account_id, row.fingerprint, row.fingerprint_key_id, row.state, row.result
    )
