"""Persistence: SQLAlchemy models, migrations and the factor repository."""

from totpd.store.database import migrate, open_engine
from totpd.store.repository import (
    AttemptRequest,
    AttemptSchedule,
    FactorStore,
    LabelTaken,
    ReservedFactor,
)

__all__ = [
    "AttemptRequest",
    "AttemptSchedule",
    "FactorStore",
    "LabelTaken",
    "ReservedFactor",
    "migrate",
    "open_engine",
]
