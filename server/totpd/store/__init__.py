"""Persistence: SQLAlchemy models, migrations, the factor repository and verification rounds."""

from totpd.store.database import migrate, open_engine
from totpd.store.dbapi import RoundAborted
from totpd.store.repository import AccountUnlock, FactorStore, LabelTaken
from totpd.store.rounds import (
    AccountWrite,
    AttemptRequest,
    Attempts,
    CandidateFactor,
    FactorWrite,
    LockedRound,
)

__all__ = [
    "AccountUnlock",
    "AccountWrite",
    "AttemptRequest",
    "Attempts",
    "CandidateFactor",
    "FactorStore",
    "FactorWrite",
    "LabelTaken",
    "LockedRound",
    "RoundAborted",
    "migrate",
    "open_engine",
]
