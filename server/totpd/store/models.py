"""SQLAlchemy 2.0 typed mappings: factors, accounts, request records."""

from __future__ import annotations

import zlib

from sqlalchemy import (
    BigInteger,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from totpd.domain import ACCOUNT_ID_MAX, ISSUER_MAX, LABEL_MAX, NEVER_USED_STEP, TENANT_MAX

# Constraint names are fixed so migrations stay identical on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "pk": "pk_%(table_name)s",
}

# The AAD layout of a row's sealed secret (totpd.crypto): 1 binds the row and
# key id, 2 adds the account and tenant. Rows stored before format 2 existed
# are 1 (the column's server default) until the re-seal step upgrades them.
LEGACY_SECRET_FORMAT = 1
SECRET_FORMAT = 2


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class FactorRow(Base):
    __tablename__ = "factors"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # Every row lives in a tenant: `alice` of `shop` and of `bank` are two accounts.
    # No server default: every write names its tenant (revision 0004 moved older rows
    # to "default").
    tenant: Mapped[str] = mapped_column(String(TENANT_MAX))
    account_id: Mapped[str] = mapped_column(String(ACCOUNT_ID_MAX))
    label: Mapped[str] = mapped_column(String(LABEL_MAX))
    issuer: Mapped[str] = mapped_column(String(ISSUER_MAX))
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
    # -- secrets bound to their account; retention of ended factors --------
    secret_format: Mapped[int] = mapped_column(
        SmallInteger, default=SECRET_FORMAT, server_default=text(str(LEGACY_SECRET_FORMAT))
    )
    # When the factor was disabled or expired (Unix seconds): the purge
    # deletes it once this is older than the retention.
    ended_at: Mapped[int | None] = mapped_column(BigInteger)
    # The app's clock drift in steps, measured by the last Resync: verification
    # centres its window on it (bounded by the resync search range).
    drift_steps: Mapped[int] = mapped_column(SmallInteger, default=0, server_default=text("0"))

    __table_args__ = (
        # The account leads the keys, the tenant follows: no statement filters on
        # the tenant alone, and SQLite's planner (no statistics) would otherwise
        # scan a tenant's rows for a bulk UPDATE ... FROM its JSON rows.
        Index("ix_factors_account_id_tenant_state", "account_id", "tenant", "state"),
        Index("ix_factors_ended_at", "ended_at"),
        Index("ix_factors_expires_at", "expires_at"),
        # A label is unique among an account's live factors only: a disabled
        # "Pixel 8" must not block enrolling the replacement "Pixel 8".
        Index(
            "uq_factors_account_id_tenant_label_live",
            "account_id",
            "tenant",
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

    # The key is (account_id, tenant): see FactorRow's indexes.
    account_id: Mapped[str] = mapped_column(String(ACCOUNT_ID_MAX), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(TENANT_MAX), primary_key=True)
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


class RecoveryCodeRow(Base):
    """One single-use recovery code of an account's current set.

    Only a keyed hash of the code is stored (the key lives in the keyring,
    not the database; `hash_key_id` names it). Generating a new set deletes
    the account's old rows; disabling MFA for the account deletes them too.
    """

    __tablename__ = "recovery_codes"

    account_id: Mapped[str] = mapped_column(String(ACCOUNT_ID_MAX))
    tenant: Mapped[str] = mapped_column(String(TENANT_MAX))
    code_hash: Mapped[bytes] = mapped_column(LargeBinary)
    hash_key_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[int] = mapped_column(BigInteger)
    # When the code was consumed (Unix seconds); NULL while unused.
    used_at: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (PrimaryKeyConstraint("account_id", "tenant", "code_hash"),)


# -- idempotent requests (AIP-155) -------------------------------------------


class RequestRecord(Base):
    """One mutating call made with a request_id: claimed, then its result.

    Never a secret, code or URI: the fields are kept as a keyed fingerprint,
    the result as factor ids and the verdict (service/idempotency.py).
    """

    __tablename__ = "request_records"

    # Request ids are per tenant: two tenants' ids cannot collide.
    tenant: Mapped[str] = mapped_column(String(TENANT_MAX))
    request_id: Mapped[str] = mapped_column(String(64))
    # A namespace of request ids within the tenant (one for now).
    scope: Mapped[str] = mapped_column(String(128))
    method: Mapped[str] = mapped_column(String(32))
    account_id: Mapped[str] = mapped_column(String(ACCOUNT_ID_MAX))
    fingerprint: Mapped[bytes] = mapped_column(LargeBinary)
    fingerprint_key_id: Mapped[str] = mapped_column(String(32))
    # A random token of the call holding the claim: only it completes or releases it.
    claim_token: Mapped[str] = mapped_column(String(32))
    # "running" until the result is stored, then "done".
    state: Mapped[str] = mapped_column(String(16))
    # JSON of the result (see service/idempotency.py); NULL while running.
    result: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger)
    # A running claim older than this was abandoned (crash): another call may take it over.
    lease_until: Mapped[int] = mapped_column(BigInteger)
    # End of the retention window: the record is ignored, then purged.
    expires_at: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        PrimaryKeyConstraint("request_id", "scope", "tenant"),
        Index("ix_request_records_expires_at", "expires_at"),
    )


# -- the audit trail -----------------------------------------------------------


class AuditCallRow(Base):
    """What every event of one call shares: its time, caller, tenant, RPC, status,
    request id and peer (store/audit.py). A batch's 1,000 events share one row.

    Append-only for totpd's own paths: only the retention prune deletes.
    Never a secret, code, otpauth URI or token: no column could hold one.
    """

    __tablename__ = "audit_calls"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    time_us: Mapped[int] = mapped_column(BigInteger)  # Unix microseconds
    caller: Mapped[str] = mapped_column(String(256))
    tenant: Mapped[str] = mapped_column(String(128))
    method: Mapped[str] = mapped_column(String(32))
    status_code: Mapped[str] = mapped_column(String(32))
    error_reason: Mapped[str | None] = mapped_column(String(48))
    request_id: Mapped[str | None] = mapped_column(String(64))
    peer: Mapped[str] = mapped_column(String(256))

    # No index on caller: a caller filter runs within the tenant and time
    # indexes' ranges (an admin read).
    __table_args__ = (
        Index("ix_audit_calls_tenant_time_us", "tenant", "time_us"),
        Index("ix_audit_calls_time_us", "time_us"),
    )


# An event's account bucket. Stored in every row: changing either needs a
# migration that recomputes the column. Each bucket is one more place where
# the index takes inserts (cost per event), and a lookup reads its
# bucket's share of the events: 16 keeps both small.
ACCOUNT_BUCKETS = 16


def account_bucket(account_id: str) -> int:
    """The bucket of `account_id` (a stable hash: the same on every machine)."""
    return zlib.crc32(account_id.encode()) % ACCOUNT_BUCKETS


# An event's id is its call's id times EVENT_IDS_PER_CALL plus its place in the
# call (`event_id`): a call's events are one range of the primary key, which
# serves the way from a call to its events (the prune, time ranges) with no
# call_id column and no index of its own, one of three index entries each event
# cost (benchmarks/NOTES.md). Above the largest batch max_batch_items allows
# (service/policy.py), and call ids keep 43 bits.
EVENT_IDS_PER_CALL = 1 << 20


def event_id(call_id: int, place: int) -> int:
    """The id of the event at `place` (0, 1, ...) among its call's."""
    if not 0 <= place < EVENT_IDS_PER_CALL:
        raise ValueError(f"a call holds at most {EVENT_IDS_PER_CALL} events")
    return call_id * EVENT_IDS_PER_CALL + place


class AuditEventRow(Base):
    """One decided code, state change or denied call: what is its own; its call's
    row is the one of id ``id // EVENT_IDS_PER_CALL`` (store/audit.py).

    Narrow on purpose: every index entry costs every event of every round
    (benchmarks/NOTES.md, "Audit trail").
    """

    __tablename__ = "audit_events"

    # event_id(call, place): assigned by the writers, not by a sequence.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    account_id: Mapped[str] = mapped_column(String(ACCOUNT_ID_MAX))
    # account_bucket(account_id): the account lookups' index.
    account_bucket: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    factor_id: Mapped[str | None] = mapped_column(String(36))
    verify_result: Mapped[str | None] = mapped_column(String(16))
    step_offset: Mapped[int | None] = mapped_column(Integer)

    # The account: an index on account_id puts each event on a page at random:
    # SQLite's WAL writes that page whole at every commit, and PostgreSQL pays a
    # random leaf descent and split per event (a third of a 1,000-event insert).
    # (account_bucket, id) appends to one of ACCOUNT_BUCKETS places instead; a
    # lookup scans its bucket's share in id order (benchmarks/NOTES.md).
    __table_args__ = (Index("ix_audit_events_account_bucket_id", "account_bucket", "id"),)
