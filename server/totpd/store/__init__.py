"""Persistence: SQLAlchemy models, migrations and the factor repository."""

from totpd.store.database import migrate, open_engine
from totpd.store.repository import (
    AttemptRequest,
    AttemptSchedule,
    AttemptTransaction,
    FactorStore,
    LabelTaken,
    ReservedFactor,
)

__all__ = [
    "AttemptRequest",
    "AttemptSchedule",
    "AttemptTransaction",
    "FactorStore",
    "LabelTaken",
    "ReservedFactor",
    "migrate",
    "open_engine",
]
