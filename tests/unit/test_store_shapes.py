"""Shapes the store's hot path relies on without checking at run time."""

from totpd.store import LockedFactor
from totpd.store.repository import _LOCKED_COLUMNS


def test_locked_factor_fields_follow_the_locking_select() -> None:
    # `AttemptTransaction.lock` builds each LockedFactor from a row by position.
    columns = [column.name for column in _LOCKED_COLUMNS]
    assert columns == ["id", *LockedFactor._fields[1:]]
