"""Stored secrets to re-seal, their replacement, and which key each table relies on.

Two jobs share this: the start-up step that upgrades legacy (format 1) secrets
(service/resealing.py) and `totpd rekey`, which moves every secret to the
primary key. Both read rows in id order, a batch at a time, and replace each
secret with one conditional UPDATE: only where the row still holds the exact
(format, key id, nonce, ciphertext) it read. So a disable or expiry in between
(which erases the secret) is never undone, two runs at once never seal a row
twice, and a run killed half-way leaves each row either old or new.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import NamedTuple

from sqlalchemy import ColumnElement, Engine, bindparam, func, or_, select, update

from totpd.store import deadline
from totpd.store.database import IMMEDIATE_TRANSACTION
from totpd.store.models import (
    LEGACY_SECRET_FORMAT,
    SECRET_FORMAT,
    FactorRow,
    RecoveryCodeRow,
    RequestRecord,
)


class StoredSecret(NamedTuple):
    """A row's sealed secret as read, with what its associated data binds."""

    factor_id: str
    tenant: str
    account_id: str
    secret_format: int
    key_id: str
    nonce: bytes
    ciphertext: bytes


class Resealed(NamedTuple):
    """The new sealed parts of a secret (format `SECRET_FORMAT`), and the secret they replace."""

    old: StoredSecret
    key_id: str
    nonce: bytes
    ciphertext: bytes


class Selection(NamedTuple):
    """Which live secrets to re-seal: legacy ones (`primary` None), or every one
    that is legacy or not sealed with `primary`."""

    primary: str | None = None

    def condition(self) -> ColumnElement[bool]:
        if self.primary is None:
            return FactorRow.secret_format == LEGACY_SECRET_FORMAT
        return or_(
            FactorRow.secret_key_id != self.primary,
            FactorRow.secret_format != SECRET_FORMAT,
        )


LEGACY = Selection()


class KeyUse(NamedTuple):
    """What the database holds under one key id."""

    secrets: int = 0  # live secrets sealed with it
    recovery_codes_unused: int = 0  # recovery codes hashed with it
    recovery_codes_used: int = 0
    recovery_code_accounts: int = 0
    request_records: int = 0  # unexpired idempotent requests fingerprinted with it
    request_records_until: int | None = None  # when the last of those expires (Unix seconds)


_LIVE = FactorRow.secret_ciphertext.is_not(None)
# One row's new secret, where it still holds the old one: built once, so a batch
# compiles it once (the statement cache) and runs it per row.
_REPLACE = (
    update(FactorRow)
    .where(
        FactorRow.id == bindparam("p_id"),
        FactorRow.secret_format == bindparam("p_old_format"),
        FactorRow.secret_key_id == bindparam("p_old_key_id"),
        FactorRow.secret_nonce == bindparam("p_old_nonce"),
        FactorRow.secret_ciphertext == bindparam("p_old_ciphertext"),
    )
    .values(
        secret_format=SECRET_FORMAT,
        secret_key_id=bindparam("p_key_id"),
        secret_nonce=bindparam("p_nonce"),
        secret_ciphertext=bindparam("p_ciphertext"),
    )
)


class SealedSecrets:
    """The live secrets a `Selection` picks (the re-seal reads and writes), and key usage."""

    def __init__(
        self, engine: Engine, writer: AbstractContextManager[object], selection: Selection = LEGACY
    ) -> None:
        self._engine = engine
        self._writer = writer
        self.selection = selection

    def selecting(self, selection: Selection) -> SealedSecrets:
        return SealedSecrets(self._engine, self._writer, selection)

    @deadline.bounded
    def after(self, factor_id: str, *, limit: int) -> list[StoredSecret]:
        """Up to `limit` selected secrets of rows whose id sorts after `factor_id`."""
        query = (
            select(
                FactorRow.id,
                FactorRow.tenant,
                FactorRow.account_id,
                FactorRow.secret_format,
                FactorRow.secret_key_id,
                FactorRow.secret_nonce,
                FactorRow.secret_ciphertext,
            )
            .where(_LIVE, self.selection.condition(), FactorRow.id > factor_id)
            .order_by(FactorRow.id)
            .limit(limit)
        )
        with self._engine.connect() as connection:
            return [StoredSecret._make(row) for row in connection.execute(query)]

    @deadline.bounded
    def count_by_key(self) -> dict[str, int]:
        """How many selected secrets each key id seals."""
        query = (
            select(FactorRow.secret_key_id, func.count())
            .where(_LIVE, self.selection.condition())
            .group_by(FactorRow.secret_key_id)
        )
        with self._engine.connect() as connection:
            return {str(key_id): int(n) for key_id, n in connection.execute(query)}

    @deadline.bounded
    def replace(
        self, resealed: Sequence[Resealed], *, before_commit: Callable[[], None] | None = None
    ) -> list[Resealed]:
        """Store the new secrets in one transaction; returns those whose row took them
        (a row whose secret changed since it was read keeps its own).

        `before_commit` runs inside the transaction, after the writes (the crash test's hook).
        """
        if not resealed:
            return []
        written: list[Resealed] = []
        with self._writer, self._engine.connect() as connection:
            connection.execution_options(**{IMMEDIATE_TRANSACTION: True})
            with connection.begin():
                for item in resealed:
                    old = item.old
                    values = {
                        "p_id": old.factor_id,
                        "p_old_format": old.secret_format,
                        "p_old_key_id": old.key_id,
                        "p_old_nonce": old.nonce,
                        "p_old_ciphertext": old.ciphertext,
                        "p_key_id": item.key_id,
                        "p_nonce": item.nonce,
                        "p_ciphertext": item.ciphertext,
                    }
                    if connection.execute(_REPLACE, values).rowcount == 1:
                        written.append(item)
                if before_commit is not None:
                    before_commit()
                deadline.check()  # nothing commits after the deadline
        return written

    @deadline.bounded
    def key_usage(self, *, now: int) -> dict[str, KeyUse]:
        """Every key id the database relies on, and for what (all tenants)."""
        secrets = select(FactorRow.secret_key_id, func.count()).where(_LIVE)
        codes = select(
            RecoveryCodeRow.hash_key_id,
            func.count().filter(RecoveryCodeRow.used_at.is_(None)),
            func.count().filter(RecoveryCodeRow.used_at.is_not(None)),
        )
        holders = (
            select(RecoveryCodeRow.hash_key_id, RecoveryCodeRow.tenant, RecoveryCodeRow.account_id)
            .distinct()
            .subquery()
        )
        accounts = select(holders.c.hash_key_id, func.count()).group_by(holders.c.hash_key_id)
        requests = select(
            RequestRecord.fingerprint_key_id, func.count(), func.max(RequestRecord.expires_at)
        ).where(RequestRecord.expires_at > now)
        uses: dict[str, KeyUse] = {}
        with self._engine.connect() as connection:
            for key_id, n in connection.execute(secrets.group_by(FactorRow.secret_key_id)):
                if key_id is not None:
                    uses[key_id] = KeyUse(secrets=int(n))
            for key_id, unused, used in connection.execute(
                codes.group_by(RecoveryCodeRow.hash_key_id)
            ):
                uses[key_id] = uses.get(key_id, KeyUse())._replace(
                    recovery_codes_unused=int(unused), recovery_codes_used=int(used)
                )
            for key_id, n in connection.execute(accounts):
                uses[key_id] = uses[key_id]._replace(recovery_code_accounts=int(n))
            for key_id, n, until in connection.execute(
                requests.group_by(RequestRecord.fingerprint_key_id)
            ):
                uses[key_id] = uses.get(key_id, KeyUse())._replace(
                    request_records=int(n), request_records_until=int(until)
                )
        return uses
