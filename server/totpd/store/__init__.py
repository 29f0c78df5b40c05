"""Persistence: migrations, the factor repository and verification rounds, behind records
(store/records.py); the SQLAlchemy models (store/models.py) stay inside this package."""

from totpd.store.database import migrate, open_engine
from totpd.store.errors import LabelTakenError, RoundAbortedError, StoreError
from totpd.store.records import AccountState, NewFactor, StoredFactor
from totpd.store.recovery import RecoveryAttempt, RecoveryCounts, RecoveryRead, StoredCode
from totpd.store.repository import AccountUnlock, FactorStore
from totpd.store.round_records import AccountWrite, AttemptRequest, CandidateFactor, FactorWrite
from totpd.store.rounds import Attempts, LockedRound

__all__ = [
    "AccountState",
    "AccountUnlock",
    "AccountWrite",
    "AttemptRequest",
    "Attempts",
    "CandidateFactor",
    "FactorStore",
    "FactorWrite",
    "LabelTakenError",
    "LockedRound",
    "NewFactor",
    "RecoveryAttempt",
    "RecoveryCounts",
    "RecoveryRead",
    "RoundAbortedError",
    "StoreError",
    "StoredCode",
    "StoredFactor",
    "migrate",
    "open_engine",
]
