"""SQLAlchemy 2.0 typed mappings of the factors and accounts tables."""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, Integer, LargeBinary, MetaData, SmallInteger, String, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Constraint names are fixed so migrations stay identical on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "pk": "pk_%(table_name)s",
}

# States whose label is taken and which count toward the per-account limit.
LIVE_STATES = ("pending", "active")
NEVER_USED_STEP = -1


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class FactorRow(Base):
    __tablename__ = "factors"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(128))
    label: Mapped[str] = mapped_column(String(64))
    issuer: Mapped[str] = mapped_column(String(64))
    algorithm: Mapped[str] = mapped_column(String(8))
    digits: Mapped[int] = mapped_column(SmallInteger)
    period_seconds: Mapped[int] = mapped_column(SmallInteger)
    state: Mapped[str] = mapped_column(String(16))
    # AES-256-GCM sealed secret (totpd.crypto); NULL once disabled or expired.
    secret_key_id: Mapped[str | None] = mapped_column(String(32))
    secret_nonce: Mapped[bytes | None] = mapped_column(LargeBinary)
    secret_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    # Replay protection: a step is accepted only if greater than this.
    last_used_step: Mapped[int] = mapped_column(BigInteger, default=NEVER_USED_STEP)
    # Attempt limits: consecutive failures, and the earliest time (Unix
    # seconds) the next attempt is compared (backoff or lock).
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    blocked_until: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[int] = mapped_column(BigInteger)
    confirmed_at: Mapped[int | None] = mapped_column(BigInteger)
    last_used_at: Mapped[int | None] = mapped_column(BigInteger)
    expires_at: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        Index("ix_factors_account_id_state", "account_id", "state"),
        # A label is unique among an account's live factors only: a disabled
        # "Pixel 8" must not block enrolling the replacement "Pixel 8".
        Index(
            "uq_factors_account_id_label_live",
            "account_id",
            "label",
            unique=True,
            sqlite_where=text("state IN ('pending', 'active')"),
            postgresql_where=text("state IN ('pending', 'active')"),
        ),
    )


class AccountRow(Base):
    """Attempt state of a whole account, across its factors.

    A row appears with an account's first counted failure (or when a locked
    round locks it); an account without one has a full budget and no failures.
    """

    __tablename__ = "accounts"

    account_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    # The failure budget as a GCRA "theoretical arrival time" (Unix seconds):
    # each compared failed (code, factor) pair pushes it later by
    # window / budget seconds, and a pair may be compared only while it stays
    # within one window of now. At or before now: the budget is full.
    budget_tat: Mapped[int] = mapped_column(BigInteger, default=0)
    # Failed verifications in a row, across factors and timed locks; only a
    # success (or an operator's unlock) resets it.
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    # When consecutive_failures reached the policy's maximum: the account is
    # locked until unlocked (`FactorStore.unlock_account`). NULL: not locked.
    locked_at: Mapped[int | None] = mapped_column(BigInteger)
