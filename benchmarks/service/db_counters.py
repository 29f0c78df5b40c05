"""What PostgreSQL did for a measurement: WAL written, and the factors table's updates
(how many were HOT) and block reads (pages not found in shared_buffers).

WAL position is exact at any moment; the table counters are PostgreSQL's cumulative
statistics, which a backend flushes at most once a second and when it exits, so they
are read around a whole measurement, after its servers have stopped. None for SQLite.
"""

from __future__ import annotations

from typing import Any

from benchmarks.service.fixtures import Database

_TABLE_COUNTERS = (
    "SELECT s.n_tup_upd, s.n_tup_hot_upd, io.heap_blks_read, io.heap_blks_hit,"
    " coalesce(io.idx_blks_read, 0), coalesce(io.idx_blks_hit, 0)"
    " FROM pg_stat_user_tables s JOIN pg_statio_user_tables io USING (relid)"
    " WHERE s.relname = 'factors'"
)
TABLE_COUNTERS = ("updates", "hot_updates", "heap_read", "heap_hit", "index_read", "index_hit")


def wal_bytes(database: Database) -> int | None:
    """The server's current WAL position in bytes (PostgreSQL; None for SQLite)."""
    if database.name != "postgresql":
        return None
    with database.connect_raw() as connection:
        row = connection.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')")
        return int(row.fetchone()[0])


def table_counters(database: Database) -> dict[str, int] | None:
    """The factors table's cumulative update and block counters (PostgreSQL)."""
    if database.name != "postgresql":
        return None
    with database.connect_raw() as connection:
        row = connection.execute(_TABLE_COUNTERS).fetchone()
    return (
        None if row is None else {name: int(v) for name, v in zip(TABLE_COUNTERS, row, strict=True)}
    )


def table_delta(before: dict[str, int] | None, after: dict[str, int] | None) -> dict[str, Any]:
    """The counters' growth over a measurement, with the HOT share of the updates and
    the share of the pages read from outside shared_buffers."""
    if before is None or after is None:
        return {}
    delta = {name: after[name] - before[name] for name in TABLE_COUNTERS}
    pages = sum(delta[name] for name in TABLE_COUNTERS[2:])
    reads = delta["heap_read"] + delta["index_read"]
    return {
        **delta,
        "hot_fraction": delta["hot_updates"] / delta["updates"] if delta["updates"] else None,
        "read_fraction": reads / pages if pages else None,
        "reads_per_update": reads / delta["updates"] if delta["updates"] else None,
    }
