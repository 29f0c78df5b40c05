"""Recovery codes in the database: an account's set replaced in one transaction, one
code's attempt decided and consumed in one transaction under the account's lock,
and the set dropped when the account's last active factor is disabled.

Only keyed hashes are stored (service/recovery_codes.py makes them). Lock order on
PostgreSQL, the same as every other writer's: an account's row, then its factors,
then its recovery codes; the account's drop lock comes after its factors.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import NamedTuple

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Insert,
    bindparam,
    delete,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from totpd.domain import FactorState
from totpd.store import deadline
from totpd.store.audit import AuditRow, append_in
from totpd.store.database import IMMEDIATE_TRANSACTION
from totpd.store.models import AccountRow, FactorRow, RecoveryCodeRow
from totpd.store.records import AccountState

# The seed of hashtextextended(tenant and account_id, seed), the key of an account's
# advisory lock while a disable decides whether its recovery codes go (apart from
# the enrollment lock's seed 0: a disable holds factor rows an enrollment may wait for).
_DROP_LOCK_SEED = 15


class RecoveryCounts(NamedTuple):
    """An account's current set: unused codes, codes issued, when (0, 0, 0: none)."""

    remaining: int
    issued: int
    generated_at: int


class StoredCode(NamedTuple):
    code_hash: bytes
    hash_key_id: str
    created_at: int
    used_at: int | None


class RecoveryRead(NamedTuple):
    """What an attempt decides on: whether the account exists in the tenant (a factor
    in any state, or codes), its attempt state (None: no failure ever), its codes."""

    known: bool
    account: AccountState | None
    codes: list[StoredCode]


class RecoveryStore:
    def __init__(self, engine: Engine, writer: AbstractContextManager[object]) -> None:
        self._engine = engine
        self._writer = writer  # queues SQLite's writers (see database.writer_queue)

    @deadline.bounded
    def counts(self, account_id: str, *, tenant: str) -> RecoveryCounts:
        with self._engine.connect() as connection:
            return _counts(connection, account_id, tenant)

    @deadline.bounded
    def replace(
        self,
        account_id: str,
        *,
        tenant: str,
        key_id: str,
        hashes: Sequence[bytes],
        now: int,
        events: Sequence[AuditRow] = (),
    ) -> bool:
        """Replace the account's set with `hashes` (under key `key_id`) and append
        `events`, in one transaction; False, with nothing written, if the account has
        no ACTIVE factor.

        On PostgreSQL the active factors are locked (FOR SHARE) to the commit: a
        disable of them waits, then drops the new set, or runs first and leaves
        none active here.
        """
        active = select(FactorRow.id).where(
            FactorRow.tenant == tenant,
            FactorRow.account_id == account_id,
            FactorRow.state == FactorState.ACTIVE,
        )
        if self._engine.dialect.name == "postgresql":
            active = active.with_for_update(read=True)
        rows = [
            {
                "account_id": account_id,
                "tenant": tenant,
                "code_hash": code_hash,
                "hash_key_id": key_id,
                "created_at": now,
                "used_at": None,
            }
            for code_hash in hashes
        ]
        with self._writer, self._engine.connect() as connection:
            connection.execution_options(**{IMMEDIATE_TRANSACTION: True})
            with connection.begin():
                if not connection.execute(active).all():
                    return False
                connection.execute(delete(RecoveryCodeRow).where(*_of(account_id, tenant)))
                connection.execute(insert(RecoveryCodeRow), rows)
                append_in(connection, events)
                deadline.check()  # before the commit
        return True

    @contextmanager
    def attempt(self, account_id: str, *, tenant: str) -> Iterator[RecoveryAttempt]:
        """One transaction for one code's attempt, holding the account (its row on
        PostgreSQL, the write lock on SQLite) from the read to the commit, so the
        attempt state it reads is the one it writes over. It commits only while
        the call's deadline holds (DeadlineExceededError); an error rolls it back."""
        with (
            deadline.CUT_AT_DEADLINE,
            self._writer,
            self._engine.connect() as connection,
        ):
            connection.execution_options(**{IMMEDIATE_TRANSACTION: True})
            with connection.begin():
                yield RecoveryAttempt(connection, account_id, tenant)
                deadline.check()  # before the commit


class RecoveryAttempt:
    """`read`, decide, then `consume` and/or `write_account`, and `record`."""

    def __init__(self, connection: Connection, account_id: str, tenant: str) -> None:
        self._connection = connection
        self._keys = {"p_account": account_id, "p_tenant": tenant}
        self._account_id = account_id
        self._dialect = connection.dialect.name

    def read(self) -> RecoveryRead:
        """The account as the attempt decides on it; a known account's row is locked
        (on PostgreSQL inserted first, with a full budget, where missing: a row that
        does not exist cannot be locked)."""
        run, keys = self._connection.execute, self._keys
        codes = self._codes()
        if not codes and run(_ANY_FACTOR, keys).first() is None:
            return RecoveryRead(False, None, [])
        if self._dialect == "postgresql":
            run(_INSERT_MISSING_ACCOUNT, keys)
            row = run(_ACCOUNT.with_for_update(), keys).first()
            codes = self._codes()  # again, under the lock
        else:  # SQLite: the write lock is held since BEGIN IMMEDIATE
            row = run(_ACCOUNT, keys).first()
        state = None if row is None else AccountState(self._account_id, *row)
        return RecoveryRead(True, state, codes)

    def _codes(self) -> list[StoredCode]:
        return [StoredCode(*row) for row in self._connection.execute(_CODES, self._keys)]

    def consume(self, code_hash: bytes, now: int) -> bool:
        """Mark the code used, only if it still is unused: True if this call did."""
        values = {**self._keys, "p_hash": code_hash, "p_now": now}
        return len(self._connection.execute(_CONSUME, values).all()) == 1

    def write_account(
        self, budget_tat: int, consecutive_failures: int, locked_at: int | None
    ) -> None:
        """Store the account's new attempt state (its row is held by this attempt)."""
        values = {
            "account_id": self._account_id,
            "tenant": self._keys["p_tenant"],
            "budget_tat": budget_tat,
            "consecutive_failures": consecutive_failures,
            "locked_at": locked_at,
        }
        self._connection.execute(_upsert_account(self._dialect), values)

    def record(self, events: Sequence[AuditRow]) -> None:
        """Append the attempt's audit events, committed with it or not at all."""
        append_in(self._connection, events)


def drop_where_mfa_off(connection: Connection, tenant: str, account_ids: Iterable[str]) -> None:
    """In a disable's transaction, after its factors were disabled: delete the
    recovery codes of each of these accounts that has no ACTIVE factor left.

    On PostgreSQL each account's drop lock is taken first, so that two disables
    of an account's last two active factors, each seeing the other's factor
    still active, cannot both leave the codes: the second to take the lock
    reads the first's commit.
    """
    accounts = sorted(set(account_ids))
    if not accounts:
        return
    if connection.dialect.name == "postgresql":
        for account_id in accounts:
            name = f"{len(tenant)}:{tenant}:{account_id}"  # unambiguous: length-prefixed
            key = func.hashtextextended(name, _DROP_LOCK_SEED)
            connection.execute(select(func.pg_advisory_xact_lock(key)))
    active = select(FactorRow.id).where(
        FactorRow.tenant == RecoveryCodeRow.tenant,
        FactorRow.account_id == RecoveryCodeRow.account_id,
        FactorRow.state == FactorState.ACTIVE,
    )
    connection.execute(
        delete(RecoveryCodeRow).where(
            RecoveryCodeRow.tenant == tenant,
            RecoveryCodeRow.account_id.in_(accounts),
            ~exists(active),
        )
    )


def _of(account_id: str, tenant: str) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    return (RecoveryCodeRow.account_id == account_id, RecoveryCodeRow.tenant == tenant)


# The attempt's statements, built once (building them per call cost more than
# running them); the values bind ``p_account``, ``p_tenant`` and their own.
_OF_KEYS = (
    RecoveryCodeRow.account_id == bindparam("p_account"),
    RecoveryCodeRow.tenant == bindparam("p_tenant"),
)
_CODES = select(
    RecoveryCodeRow.code_hash,
    RecoveryCodeRow.hash_key_id,
    RecoveryCodeRow.created_at,
    RecoveryCodeRow.used_at,
).where(*_OF_KEYS)
_ANY_FACTOR = (
    select(FactorRow.id)
    .where(
        FactorRow.tenant == bindparam("p_tenant"), FactorRow.account_id == bindparam("p_account")
    )
    .limit(1)
)
_ACCOUNT = select(
    AccountRow.budget_tat, AccountRow.consecutive_failures, AccountRow.locked_at
).where(AccountRow.account_id == bindparam("p_account"), AccountRow.tenant == bindparam("p_tenant"))
_INSERT_MISSING_ACCOUNT = (
    postgresql.insert(AccountRow)
    .values(
        account_id=bindparam("p_account"),
        tenant=bindparam("p_tenant"),
        budget_tat=0,
        consecutive_failures=0,
        locked_at=None,
    )
    .on_conflict_do_nothing(index_elements=["account_id", "tenant"])
)
_CONSUME = (
    update(RecoveryCodeRow)
    .where(
        *_OF_KEYS,
        RecoveryCodeRow.code_hash == bindparam("p_hash"),
        RecoveryCodeRow.used_at.is_(None),
    )
    .values(used_at=bindparam("p_now"))
    .returning(RecoveryCodeRow.code_hash)
)


@functools.cache
def _upsert_account(dialect: str) -> Insert:
    """Insert the account's row or overwrite its attempt state (values by column name)."""
    statement = (postgresql if dialect == "postgresql" else sqlite).insert(AccountRow)
    upsert: Insert = statement.on_conflict_do_update(
        index_elements=["account_id", "tenant"],
        set_={
            name: statement.excluded[name]
            for name in ("budget_tat", "consecutive_failures", "locked_at")
        },
    )
    return upsert


def _counts(connection: Connection, account_id: str, tenant: str) -> RecoveryCounts:
    query = select(
        func.count(), func.count(RecoveryCodeRow.used_at), func.max(RecoveryCodeRow.created_at)
    ).where(*_of(account_id, tenant))
    issued, used, generated_at = connection.execute(query).one()
    return RecoveryCounts(issued - used, issued, generated_at or 0)
