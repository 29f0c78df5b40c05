"""Shapes the store's hot path relies on without checking at run time."""

from totpd.store import CandidateFactor
from totpd.store.round_sql import READ_COLUMNS


def test_candidate_factor_fields_follow_the_read() -> None:
    # `Attempts.read` builds each CandidateFactor from a row by position.
    columns = [column.name for column in READ_COLUMNS]
    assert columns == ["id", *CandidateFactor._fields[1:]]
