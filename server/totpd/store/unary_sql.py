"""PostgreSQL: a one-factor round's write run alone, outside a transaction: the
factor's row, or its account's row and the factor's together (with, either way, its
audit event, store/audit_sql.py insert_after).

The unary failure writes an account row and a factor row. In a transaction that
is BEGIN, two UPDATEs, the event's INSERT and COMMIT: five round trips, each
costing the server's CPU more than the database's. As one statement it is one,
and stays all or nothing without a transaction:

- ``locked_account`` locks the account row where it still holds what the round
  read (and the deadline, on the database's clock, has not passed);
- ``locked_factor`` locks the factor row where it still holds what the round
  read, only if the account was locked: accounts before factors, the order of
  every other writer (store/rounds.py), so no deadlock;
- ``written_account`` updates the account only if ``locked_factor`` holds its
  row and the deadline still holds once both locks are taken; the factor's
  UPDATE applies only if the account's did. With both rows locked and found as
  read both apply; otherwise neither does, and nothing is written, as when the
  round's transaction saw a row changed.

A row locked after waiting for another writer is checked again at its newest
version (READ COMMITTED), so a row changed meanwhile is never written; one the
other writer left unchanged is not, and the wait may have outlasted the call
(whose connection the watchdog then cut): the deadline is checked after the
locks, in both statements. Built once per shape on the round's own statements
(round_sql.write_one, account_sql.account_update_one), bound with their
parameters and ``p_deadline``.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import ColumnElement, Float, Select, Update, bindparam, exists, select

from totpd.domain import FactorState
from totpd.store import account_sql, round_sql


def _locking_select(update: Update, key: Any) -> Select[Any]:
    """SELECT the key of the rows `update` would write, locking them."""
    return select(key).where(update.whereclause).with_for_update()  # type: ignore[arg-type]


def _in_time() -> ColumnElement[bool]:
    return round_sql._database_now("postgresql") < bindparam("p_deadline", type_=Float)


@functools.cache
def factor_write(state: FactorState, activate: bool) -> Update:
    """The factor's conditional write (round_sql.write_one), applied only if the
    deadline holds once its row is locked. Returns the factor's id if written."""
    factor = round_sql.write_one("postgresql", state, activate, False)
    locked_factor = _locking_select(factor, round_sql._FACTORS.c.id).cte("locked_factor")
    in_time = exists(select(locked_factor.c.id).where(_in_time()))
    return factor.where(in_time).add_cte(locked_factor)


@functools.cache
def account_and_factor_write(state: FactorState, activate: bool) -> Update:
    """The factor's conditional write (round_sql.write_one) with its account's
    (account_sql.account_update_one) in front, both or neither; bound with both
    statements' parameters and ``p_deadline``. Returns the factor's id if written."""
    account = account_sql.account_update_one("postgresql")
    accounts = round_sql._ACCOUNTS
    locked_account = (
        _locking_select(account, accounts.c.account_id).where(_in_time()).cte("locked_account")
    )
    factor = round_sql.write_one("postgresql", state, activate, False)
    locked_factor = (
        _locking_select(factor, round_sql._FACTORS.c.id)
        .where(exists(select(locked_account.c.account_id)))
        .cte("locked_factor")
    )
    # Checked once, after both locks: the one condition both UPDATEs follow.
    in_time = exists(select(locked_factor.c.id).where(_in_time()))
    written_account = account.where(in_time).cte("written_account")
    return factor.where(exists(select(written_account.c.account_id))).add_cte(
        locked_account, locked_factor, written_account
    )
