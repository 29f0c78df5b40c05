"""Smoke test: the growth benchmark grows one database through two tiny sizes, every
seeded row opens with the server's keyring, each size is measured with fresh valid
codes, and the memory figures come from the server processes (run with
`pytest benchmarks/service`)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from benchmarks.service import bulk_seed, db_counters, growth, growth_report
from benchmarks.service.bulk_seed import DerivedFactors
from benchmarks.service.fixtures import (
    Database,
    make_keyring,
    postgres_database,
    sqlite_database,
)
from totpd.crypto import Keyring
from totpd.store import open_engine

CONFIG: dict[str, Any] = {
    **growth.DEFAULTS,
    "turns": 1,
    "seconds": 0.5,
    "concurrency": 2,
    "batch": 100,
    "repeat": 1,
    "processes": 1,
    "open_rates": [200.0],
}


def test_one_database_grows_and_each_size_is_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bulk_seed, "CHUNK", 1_500)  # several chunks per growth step
    figures = growth.run("sqlite", [12_000, 4_000], CONFIG, workers=2)
    rows = figures["sizes"]
    assert [row["factors"] for row in rows] == [4_000, 12_000]
    assert [(row["seed"]["from"], row["seed"]["rows"]) for row in rows] == [
        (0, 4_000),
        (4_000, 8_000),
    ]
    for row in rows:
        assert row["sample_opened"] == 200
        unary, batch = row["unary"], row["batch"]
        assert unary["rps"] > 0 and unary["server_cpu_us"] > 0
        assert set(unary["verdicts"]) == {"VERIFY_RESULT_VALID"}
        assert batch["valid_fraction"] == 1.0 and batch["rate"] > 0
        # A Python server with the C core loaded holds tens of MB, not a few kB.
        assert growth_report.peak_process_kb(row) > 20_000
        # The reference stays at the smallest size and is measured in the same turns.
        reference = row["reference"]
        assert set(reference["unary"]["verdicts"]) == {"VERIFY_RESULT_VALID"}
        assert reference["batch"]["valid_fraction"] == 1.0
        assert reference["unary_open"] == []
        assert set(row["vs_reference"]) == set(growth_report.COSTS)
        # The database's own bulk UPDATE, measured beside the batches, updated every row.
        for measured in (row, reference):
            assert measured["bulk"]["updated_fraction"] == 1.0
            assert measured["bulk"]["rate"] > 0
        assert set(row["bulk_vs_reference"]) == set(growth_report.BASELINES)
        (level,) = row["unary_open"]
        assert level["sent"] > 0 and level["rate"] == 200.0
    assert figures["reference_factors"] == 4_000
    assert set(figures["growth"]) == set(growth_report.COSTS)
    ratio = figures["growth_vs_reference"]["unary server CPU µs/call"]
    assert ratio is not None and ratio > 0
    shown = "\n".join(growth_report.table(figures))
    assert "side by side with ref" in shown and "ref 4,000" in shown
    assert set(figures["bulk_growth"]) == set(growth_report.BASELINES)
    assert "bulk UPDATE µs/row" in shown and "(the database alone)" in shown


def test_the_pool_hands_out_each_factor_step_once() -> None:
    pool = bulk_seed.GrowthPool(DerivedFactors(os.urandom(32)), 50)
    first, second = pool.take(50), pool.take(50)  # all 50, at now and at now + 1
    assert sorted(index for index, _ in first) == list(range(50))
    seen = {(index, step) for index, step in first + second}
    assert len(seen) == 100
    for index, step in second:
        assert step > dict(first)[index]


@contextlib.contextmanager
def seeded_postgres(
    tmp_path: Path, count: int
) -> Iterator[tuple[Database, Keyring, DerivedFactors]]:
    """A throwaway PostgreSQL database grown to `count` factors, its keyring and the
    factors' derivation."""
    derived = DerivedFactors(os.urandom(32))
    keyring = make_keyring(tmp_path)
    with postgres_database() as database:
        bulk_seed.grow(database, tmp_path / "totpd.key", derived, count)
        yield database, keyring, derived


@pytest.mark.postgres
def test_postgres_grows_by_copy_and_keeps_its_indexes(tmp_path: Path) -> None:
    with seeded_postgres(tmp_path, 200) as (database, keyring, derived):
        indexes = bulk_seed.postgres_index_definitions(database)
        grown = bulk_seed.grow(database, tmp_path / "totpd.key", derived, 700)
        assert grown["indexes_rebuilt"] and grown["rows"] == 500
        assert bulk_seed.postgres_index_definitions(database) == indexes
        assert len(indexes) >= 5  # the primary key and the migrations' indexes
        assert bulk_seed.count_factors(database) == 700
        assert bulk_seed.check_sample(database, keyring, derived, 700, count=700) == 700
        # What the growth table reads from PostgreSQL: WAL and the table's update counters.
        before, wal = db_counters.table_counters(database), db_counters.wal_bytes(database)
        with database.connect_raw() as connection:
            connection.execute("UPDATE factors SET failed_attempts = 1 WHERE account_id LIKE 'b%'")
        delta = db_counters.table_delta(before, db_counters.table_counters(database))
        deadline = time.monotonic() + 15  # a backend flushes its statistics within a second
        while delta["updates"] < 700 and time.monotonic() < deadline:
            time.sleep(0.2)
            delta = db_counters.table_delta(before, db_counters.table_counters(database))
        assert delta["updates"] == 700 and 0 <= delta["hot_fraction"] <= 1
        after_wal = db_counters.wal_bytes(database)
        assert wal is not None and after_wal is not None and after_wal > wal
        growth.prewarm(database)  # --prewarm: the table and its indexes into shared_buffers
        with database.connect_raw() as connection:
            installed = connection.execute(
                "SELECT count(*) FROM pg_extension WHERE extname = 'pg_prewarm'"
            ).fetchone()[0]
        assert installed == 1


@pytest.mark.postgres
def test_postgres_refilled_table_has_room_on_its_pages(tmp_path: Path) -> None:
    # The batch tools' --load-fillfactor: the same rows, pages half full, the
    # table's own setting as before; the rows still open with the keyring.
    with seeded_postgres(tmp_path, 3_000) as (database, keyring, derived):

        def pages_and_options() -> tuple[int, Any]:
            with database.connect_raw() as connection:
                row = connection.execute(
                    "SELECT relpages, reloptions FROM pg_class WHERE relname = 'factors'"
                ).fetchone()
            return int(row[0]), row[1]

        packed, options = pages_and_options()
        bulk_seed.refill(database, 50)
        half_full, options_after = pages_and_options()
        assert options is None and options_after is None
        assert 1.8 * packed <= half_full <= 2.2 * packed
        assert bulk_seed.count_factors(database) == 3_000
        assert bulk_seed.check_sample(database, keyring, derived, 3_000, count=300) == 300


def test_sqlite_rows_are_the_store_s_rows(tmp_path: Path) -> None:
    derived = DerivedFactors(os.urandom(32))
    keyring = make_keyring(tmp_path)
    with sqlite_database(tmp_path) as database:
        bulk_seed.grow(database, tmp_path / "totpd.key", derived, 120)
        assert bulk_seed.check_sample(database, keyring, derived, 120, count=120) == 120
        engine = open_engine(database.url)
        with engine.connect() as connection:
            states = connection.execute(
                text("SELECT state, secret_format, count(*) FROM factors GROUP BY 1, 2")
            ).all()
        engine.dispose()
    assert [tuple(row) for row in states] == [("active", 2, 120)]


def test_the_service_suite_runs_growth_and_prints_its_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks.service import __main__ as suite

    monkeypatch.setattr(suite, "_QUICK_GROWTH_SIZES", [3_000, 6_000])
    monkeypatch.setattr(suite, "_QUICK_GROWTH", {**CONFIG, "open_rates": []})
    figures = suite._growth("sqlite", True, [], tmp_path, "1")
    assert [row["factors"] for row in figures["sizes"]] == [3_000, 6_000]
    assert suite._write({"databases": {}, "growth": {"sqlite": figures}}, tmp_path) == 0
    printed = capsys.readouterr().out
    assert "sqlite: growth" in printed
    assert (tmp_path / "service.json").stat().st_size > 0
