"""Persistence: SQLAlchemy models, migrations and the factor repository."""

from totpd.store.database import migrate, open_engine
from totpd.store.repository import (
    AttemptRequest,
    AttemptTransaction,
    FactorStore,
    FactorWrite,
    LabelTaken,
    LockedFactor,
)

__all__ = [
    "AttemptRequest",
    "AttemptTransaction",
    "FactorStore",
    "FactorWrite",
    "LabelTaken",
    "LockedFactor",
    "migrate",
    "open_engine",
]
