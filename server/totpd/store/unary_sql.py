"""PostgreSQL: a one-factor round's whole write (its account, its factor, its audit
event) as one statement, run alone outside a transaction.

The unary failure writes an account row and a factor row. In a transaction that
is BEGIN, two UPDATEs, the event's INSERT and COMMIT: five round trips, each
costing the server's CPU more than the database's. As one statement it is one,
and stays all or nothing without a transaction:

- ``locked_account`` locks the account row where it still holds what the round
  read (and the deadline, on the database's clock, has not passed);
- ``locked_factor`` locks the factor row where it still holds what the round
  read, only if the account was locked: accounts before factors, the order of
  every other writer (store/rounds.py), so no deadlock;
- both UPDATEs (the account's in ``written_account``, the factor's as the
  statement) apply only if ``locked_factor`` holds its row: with both rows locked
  and found as read, both apply; otherwise neither does, and nothing is
  written, as when the round's transaction saw a row changed.

A row locked after waiting for another writer is checked again at its newest
version (READ COMMITTED), so a row changed meanwhile is never written. Built once
per shape on the round's own statements (round_sql.write_one,
account_sql.account_update_one), bound with their parameters.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Float, Select, Update, bindparam, exists, select

from totpd.domain import FactorState
from totpd.store import account_sql, round_sql


def _locking_select(update: Update, key: Any) -> Select[Any]:
    """SELECT the key of the rows `update` would write, locking them."""
    return select(key).where(update.whereclause).with_for_update()  # type: ignore[arg-type]


@functools.cache
def account_and_factor_write(state: FactorState, activate: bool) -> Update:
    """The factor's conditional write (round_sql.write_one) with its account's
    (account_sql.account_update_one) in front, both or neither; bound with both
    statements' parameters and ``p_deadline``. Returns the factor's id if written."""
    account = account_sql.account_update_one("postgresql")
    accounts = round_sql._ACCOUNTS
    deadline = round_sql._database_now("postgresql") < bindparam("p_deadline", type_=Float)
    locked_account = (
        _locking_select(account, accounts.c.account_id).where(deadline).cte("locked_account")
    )
    factor = round_sql.write_one("postgresql", state, activate, False)
    locked_factor = (
        _locking_select(factor, round_sql._FACTORS.c.id)
        .where(exists(select(locked_account.c.account_id)))
        .cte("locked_factor")
    )
    both = exists(select(locked_factor.c.id))
    written_account = account.where(both).cte("written_account")
    return factor.where(both).add_cte(locked_account, locked_factor, written_account)
