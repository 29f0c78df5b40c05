"""A round's writes bound to their statements (round_sql.py, account_sql.py,
unary_sql.py, audit_sql.py): which statements store a decision, with what values;
and the values of its bulk read.

The parameter names are those the statements bind (``p_`` + field).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from sqlalchemy import Insert, Select, Update

from totpd.domain import FactorState
from totpd.store import account_sql, audit, audit_sql, round_sql, unary_sql
from totpd.store.dbapi import RawConnection, json_text
from totpd.store.requests import Completion, complete_statement, complete_values
from totpd.store.round_records import AccountWrite, FactorWrite


def write_statement(
    dialect: str,
    writes: Sequence[FactorWrite],
    state: FactorState,
    now: int,
    tenant: str,
    activate: bool,
    *,
    ids: bool = True,
) -> tuple[Update, dict[str, object]]:
    """The factors' conditional write, for a transaction (or under locks);
    `ids`: one that returns the ids written (else many rows may only be counted)."""
    if len(writes) == 1:
        return round_sql.write_one(dialect, state, activate, False), _one_write_values(
            writes[0], now, tenant
        )
    return round_sql.write_many(dialect, state, activate, ids), bulk_write_values(
        dialect, writes, now=now, tenant=tenant, state=state
    )


def _one_write_values(write: FactorWrite, now: int, tenant: str) -> dict[str, object]:
    return {
        "p_now": now,
        "p_tenant": tenant,
        "p_factor": write.factor_id,
        "p_failed": write.failed_attempts,
        "p_blocked": write.blocked_until,
        "p_step": write.last_used_step,
        "p_consumed": write.consumed,
        "p_seen_failed": write.seen_failed_attempts,
        "p_seen_blocked": write.seen_blocked_until,
        "p_seen_step": write.seen_last_used_step,
    }


def round_keys(accounts: Iterable[str], tenant: str, state: FactorState | None = None) -> str:
    """The ``p_keys`` of a round's accounts (round_sql._round_keys): [account, tenant]
    pairs, with the state read as a third element for PostgreSQL's bulk read
    (round_sql._round_key_rows)."""
    if state is None:
        return json_text([(account, tenant) for account in accounts])
    return json_text([(account, tenant, state.value) for account in accounts])


def bulk_read_values(
    dialect: str, accounts: Iterable[str], *, now: int, tenant: str, state: FactorState
) -> dict[str, object]:
    """The values of `round_sql.read_many` for the factors in `state` of `accounts`
    (also the benchmarks' seam, as `bulk_write_values`)."""
    keys = round_keys(accounts, tenant, state if dialect == "postgresql" else None)
    return {"p_now": now, "p_keys": keys}


def bulk_write_values(
    dialect: str, writes: Sequence[FactorWrite], *, now: int, tenant: str, state: FactorState
) -> dict[str, object]:
    """The values of `round_sql.write_many` for `writes` of factors in `state`
    (also the seam for the benchmarks that run the store's SQL raw:
    benchmarks/service/batch.py)."""
    if dialect == "postgresql":
        # Sorted by factor id: the order the locked read takes row locks in, so
        # a write planned as a loop over the rows locks in that order too.
        # Each row with its tenant and state: round_sql.POSTGRES_WRITE_FIELDS.
        state_value = state.value
        ordered = [(*write, tenant, state_value) for write in sorted(writes)]
        return {"p_now": now, "p_rows": json_text(ordered)}
    values: dict[str, object] = {"p_now": now, "p_tenant": tenant}
    # SQLite locks the whole database, in any order (sorting 10k rows cost ~4 ms).
    won: list[tuple[str, int, int]] = []
    rows: list[FactorWrite] = []
    for write in writes:
        if write.consumed and not (
            write.failed_attempts
            or write.blocked_until
            or write.seen_failed_attempts
            or write.seen_blocked_until
        ):
            won.append((write.factor_id, write.last_used_step, write.seen_last_used_step))
        else:
            rows.append(write)
    values["p_won"] = json_text(won)
    values["p_rows"] = json_text(rows)
    return values


# A statement, its values, and the rows it must return (None: any number).
Statement = tuple[Update | Insert | Select[Any], dict[str, object], int | None]

# PostgreSQL updates up to this many account rows one primary key at a time, all
# sent at once (`EachRow`): it plans a JSON array of rows (`account_update_many`)
# as 100 rows, and for a few rows hashed the whole accounts table until it passed
# about 40k rows (benchmarks/NOTES.md). One key at a time has no plan to get wrong.
EACH_ROW_UP_TO = 32


class EachRow(NamedTuple):
    """PostgreSQL: one statement run once per row of values, pipelined into one
    round trip; each execution must return one row."""

    statement: Update
    rows: list[dict[str, object]]

    def run(self, connection: RawConnection) -> bool:
        """Run them all; False if one touched no row (the round must not commit)."""
        returned = connection.run_each(self.statement, self.rows)
        return all(len(rows) == 1 for rows in returned)


class Counted(NamedTuple):
    """SQLite: a statement that returns no rows and must change `expected` rows,
    as the driver counts them (round_sql.write_many says why)."""

    statement: Update | Insert
    values: dict[str, object]
    expected: int

    def run(self, connection: RawConnection) -> bool:
        """Run it; False if it changed other than its rows (the round must not commit)."""
        return connection.run_count(self.statement, self.values) == self.expected


def _touching(
    postgres: bool, statement: Update | Insert, values: dict[str, object], rows: int
) -> Statement | Counted:
    """A bulk statement that must touch `rows` rows: PostgreSQL's return them
    (psycopg takes a result whole), SQLite's are counted (`Counted`)."""
    return (statement, values, rows) if postgres else Counted(statement, values, rows)


# What a round's write runs in its transaction: statements, PostgreSQL's COPY of
# many audit events, its few account rows one at a time, SQLite's counted writes.
Step = Statement | audit_sql.CopiedEvents | EachRow | Counted


def account_statements(dialect: str, accounts: Sequence[AccountWrite], tenant: str) -> list[Step]:
    """The steps storing `accounts`, each with the rows it must return.

    Rows read as present are updated where still as read; rows read as
    absent are inserted where still absent. On PostgreSQL sorted by account
    id, the order locked rounds lock them in, and a few updates one row at a
    time (`EachRow`).
    """
    postgres = dialect == "postgresql"
    if postgres:
        accounts = sorted(accounts)
    updates = [a for a in accounts if a.seen_budget_tat is not None]
    inserts = [a for a in accounts if a.seen_budget_tat is None]
    steps: list[Step] = []
    if postgres and 1 < len(updates) <= EACH_ROW_UP_TO:
        rows = [_account_values(update, tenant) for update in updates]
        steps.append(EachRow(account_sql.account_update_one(dialect), rows))
        updates = []
    for group, many, one in (
        (updates, account_sql.account_update_many, account_sql.account_update_one),
        (inserts, account_sql.account_insert_many, account_sql.account_insert_one),
    ):
        if len(group) == 1:
            steps.append((one(dialect), _account_values(group[0], tenant), 1))
        elif group:
            bound: Sequence[object] = group
            if postgres and group is updates:  # account_sql.POSTGRES_UPDATE_FIELDS
                bound = [(*update, tenant, None) for update in updates]
            values: dict[str, object] = {"p_rows": json_text(bound), "p_tenant": tenant}
            steps.append(_touching(postgres, many(dialect), values, len(group)))
    return steps


def _account_values(account: AccountWrite, tenant: str) -> dict[str, object]:
    values: dict[str, object] = {f"p_{name}": value for name, value in account._asdict().items()}
    values["p_tenant"] = tenant
    return values


def round_statements(
    dialect: str,
    writes: Sequence[FactorWrite],
    state: FactorState,
    now: int,
    activate: bool,
    accounts: Sequence[AccountWrite],
    tenant: str,
    events: Sequence[audit.RoundEvents],
    completion: Completion | None = None,
) -> Statement | list[Step]:
    """A conditional write's steps, each statement with its values and the rows
    it must touch; one statement, not a list, when it alone is the whole write
    (`alone`)."""
    groups = [group for group in events if group.items]
    # A request record to complete makes it a transaction, whatever else is written.
    if completion is None and len(writes) == 1 and sum(len(g.items) for g in groups) <= 1:
        one = alone(dialect, writes[0], state, now, activate, accounts, tenant, groups)
        if one is not None:
            return one
    statements: list[Step] = [*account_statements(dialect, accounts, tenant)]
    audit_steps = audit_sql.statements(dialect, groups)
    if writes:
        postgres = dialect == "postgresql"
        write, values = write_statement(dialect, writes, state, now, tenant, activate, ids=postgres)
        merged = audit_sql.with_write(write, values, audit_steps) if postgres else None
        if merged is not None:  # the events ride in the write's statement
            statements.append((*merged, len(writes)))
            audit_steps = []
        elif len(writes) == 1:
            statements.append((write, values, 1))
        else:
            statements.append(_touching(postgres, write, values, len(writes)))
    statements.extend(audit_steps)
    if completion is not None:
        statements.append((complete_statement(), complete_values(completion), None))
    return statements


def alone(
    dialect: str,
    write: FactorWrite,
    state: FactorState,
    now: int,
    activate: bool,
    accounts: Sequence[AccountWrite],
    tenant: str,
    groups: Sequence[audit.RoundEvents],
) -> Statement | None:
    """One factor's write as one statement, atomic outside a transaction, with the
    call's deadline in its condition (``p_deadline``, bound by the caller); on
    PostgreSQL with its event and with its account's update (unary_sql.py). None:
    the write needs a transaction."""
    postgres = dialect == "postgresql"
    if groups and not postgres:
        return None
    values = _one_write_values(write, now, tenant)
    statement: Update
    if not accounts:
        statement = (
            unary_sql.factor_write(state, activate)
            if postgres
            else round_sql.write_one(dialect, state, activate, True)
        )
    elif postgres and _one_account_update(accounts, groups):
        statement = unary_sql.account_and_factor_write(state, activate)
        values |= _account_values(accounts[0], tenant)
    else:
        return None
    if not groups:
        return statement, values, 1
    # p_tenant (and p_account_id, checked above) are binds the event shares with
    # the writes: the round's.
    values = {**audit_sql.one_event_values(groups[0]), **values}
    return audit_sql.insert_after(statement), values, 1


def _one_account_update(
    accounts: Sequence[AccountWrite], groups: Sequence[audit.RoundEvents]
) -> bool:
    """One account row, read as present (an absent one is inserted in a
    transaction), and the event, if any, is of that account."""
    if len(accounts) != 1 or accounts[0].seen_budget_tat is None:
        return False
    return not groups or groups[0].items[0][0] == accounts[0].account_id
