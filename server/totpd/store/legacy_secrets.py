"""Rows whose secret is still sealed in the legacy format, and their re-sealing.

The re-seal step (service/resealing.py) reads them in id order, a batch at a
time, and replaces each ciphertext with one conditional UPDATE: only where the
row still holds the legacy ciphertext it read, so two replicas re-sealing at
once, or a disable in between, never overwrite each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import NamedTuple

from sqlalchemy import Engine, select, update

from totpd.store import faults
from totpd.store.database import IMMEDIATE_TRANSACTION
from totpd.store.models import LEGACY_SECRET_FORMAT, SECRET_FORMAT, FactorRow


class LegacySecret(NamedTuple):
    factor_id: str
    account_id: str
    key_id: str
    nonce: bytes
    ciphertext: bytes


class Resealed(NamedTuple):
    """The new sealed parts of a legacy secret, and the ciphertext they replace."""

    factor_id: str
    old_ciphertext: bytes
    key_id: str
    nonce: bytes
    ciphertext: bytes


class LegacySecrets:
    def __init__(self, engine: Engine, writer: AbstractContextManager[object]) -> None:
        self._engine = engine
        self._writer = writer

    @faults.translated
    def after(self, factor_id: str, *, limit: int) -> list[LegacySecret]:
        """Up to `limit` legacy secrets of rows whose id sorts after `factor_id`."""
        query = (
            select(
                FactorRow.id,
                FactorRow.account_id,
                FactorRow.secret_key_id,
                FactorRow.secret_nonce,
                FactorRow.secret_ciphertext,
            )
            .where(
                FactorRow.secret_format == LEGACY_SECRET_FORMAT,
                FactorRow.secret_ciphertext.is_not(None),
                FactorRow.id > factor_id,
            )
            .order_by(FactorRow.id)
            .limit(limit)
        )
        with self._engine.connect() as connection:
            return [LegacySecret._make(row) for row in connection.execute(query)]

    @faults.translated
    def replace(self, resealed: Sequence[Resealed]) -> int:
        """Store the new secrets in one transaction; returns how many rows took them."""
        if not resealed:
            return 0
        written = 0
        with self._writer, self._engine.connect() as connection:
            connection.execution_options(**{IMMEDIATE_TRANSACTION: True})
            with connection.begin():
                for item in resealed:
                    statement = (
                        update(FactorRow)
                        .where(
                            FactorRow.id == item.factor_id,
                            FactorRow.secret_format == LEGACY_SECRET_FORMAT,
                            FactorRow.secret_ciphertext == item.old_ciphertext,
                        )
                        .values(
                            secret_format=SECRET_FORMAT,
                            secret_key_id=item.key_id,
                            secret_nonce=item.nonce,
                            secret_ciphertext=item.ciphertext,
                        )
                    )
                    written += connection.execute(statement).rowcount
        return written
