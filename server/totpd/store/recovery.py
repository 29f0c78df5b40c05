"""Recovery codes in the database: an account's set replaced in one transaction, one
code's attempt decided and consumed in one transaction under the account's lock,
and the set dropped when the account's last active factor is disabled.

Only keyed hashes are stored (service/recovery_codes.py makes them). Lock order on
PostgreSQL, the same as every other writer's: an account's row, then its factors,
then its recovery codes; the account's drop lock comes after its factors.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import NamedTuple

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
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
    """`read`, decide, then `consume` and/or `write_account`, `counts`, `record`."""

    def __init__(self, connection: Connection, account_id: str, tenant: str) -> None:
        self._connection = connection
        self._account_id = account_id
        self._tenant = tenant
        self._postgres = connection.dialect.name == "postgresql"

    def read(self) -> RecoveryRead:
        """The account as the attempt decides on it; a known account's row is locked
        (on PostgreSQL inserted first, with a full budget, where missing: a row that
        does not exist cannot be locked)."""
        run, account_id, tenant = self._connection.execute, self._account_id, self._tenant
        any_code = select(RecoveryCodeRow.code_hash).where(*_of(account_id, tenant)).limit(1)
        any_factor = (
            select(FactorRow.id)
            .where(FactorRow.tenant == tenant, FactorRow.account_id == account_id)
            .limit(1)
        )
        if run(any_code).first() is None and run(any_factor).first() is None:
            return RecoveryRead(False, None, [])
        if self._postgres:
            run(
                postgresql.insert(AccountRow)
                .values(_account_values(account_id, tenant, 0, 0, None))
                .on_conflict_do_nothing(index_elements=["account_id", "tenant"])
            )
        query = select(
            AccountRow.budget_tat, AccountRow.consecutive_failures, AccountRow.locked_at
        ).where(AccountRow.account_id == account_id, AccountRow.tenant == tenant)
        row = run(query.with_for_update() if self._postgres else query).first()
        state = None if row is None else AccountState(account_id, *row)
        columns = (RecoveryCodeRow.code_hash, RecoveryCodeRow.hash_key_id, RecoveryCodeRow.used_at)
        codes = [
            StoredCode(*found) for found in run(select(*columns).where(*_of(account_id, tenant)))
        ]
        return RecoveryRead(True, state, codes)

    def consume(self, code_hash: bytes, now: int) -> bool:
        """Mark the code used, only if it still is unused: True if this call did."""
        statement = (
            update(RecoveryCodeRow)
            .where(
                *_of(self._account_id, self._tenant),
                RecoveryCodeRow.code_hash == code_hash,
                RecoveryCodeRow.used_at.is_(None),
            )
            .values(used_at=now)
            .returning(RecoveryCodeRow.code_hash)
        )
        return len(self._connection.execute(statement).all()) == 1

    def write_account(
        self, budget_tat: int, consecutive_failures: int, locked_at: int | None
    ) -> None:
        """Store the account's new attempt state (its row is held by this attempt)."""
        values = _account_values(
            self._account_id, self._tenant, budget_tat, consecutive_failures, locked_at
        )
        dialect = postgresql if self._postgres else sqlite
        statement = dialect.insert(AccountRow).values(values)
        self._connection.execute(
            statement.on_conflict_do_update(
                index_elements=["account_id", "tenant"],
                set_={
                    "budget_tat": budget_tat,
                    "consecutive_failures": consecutive_failures,
                    "locked_at": locked_at,
                },
            )
        )

    def counts(self) -> RecoveryCounts:
        """The account's set as this attempt leaves it."""
        return _counts(self._connection, self._account_id, self._tenant)

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


def _counts(connection: Connection, account_id: str, tenant: str) -> RecoveryCounts:
    query = select(
        func.count(), func.count(RecoveryCodeRow.used_at), func.max(RecoveryCodeRow.created_at)
    ).where(*_of(account_id, tenant))
    issued, used, generated_at = connection.execute(query).one()
    return RecoveryCounts(issued - used, issued, generated_at or 0)


def _account_values(
    account_id: str, tenant: str, budget_tat: int, failures: int, locked_at: int | None
) -> dict[str, object]:
    return {
        "account_id": account_id,
        "tenant": tenant,
        "budget_tat": budget_tat,
        "consecutive_failures": failures,
        "locked_at": locked_at,
    }
