"""Smoke test: every piece taken out of a BatchVerify call at tiny sizes, each variant's
calls still every code VALID with no round decided again, so the memory standing in for
the read stayed current (run with `pytest benchmarks/service`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.service import critical_path
from benchmarks.service.fixtures import FactorPool, seed_database, sqlite_database


def test_each_variant_runs_every_code_valid(tmp_path: Path) -> None:
    args = critical_path._parser().parse_args(["--items", "40", "--calls", "2"])
    with sqlite_database(tmp_path) as database:
        pool = FactorPool(seed_database(database, tmp_path, 400))
        figures = critical_path.measure(database, tmp_path, pool, args)
    variants = figures["variants"]
    assert list(variants) == critical_path.variants_for("sqlite")
    assert critical_path.NO_COPY not in variants  # SQLite's rounds COPY nothing
    for figure in variants.values():
        assert len(figure["times_s"]) == 2
        assert figure["valid_fraction"] == 1.0
        assert figure["relocked_rounds"] == 0
    # The read's variant read from memory on each of its calls (one round each).
    assert figures["reads_skipped"] == 2
    # The serial ends are parts of the call as served.
    before, after = figures["before_rounds_median_s"], figures["after_rounds_median_s"]
    assert 0 < before and 0 < after
    assert before + after < variants[critical_path.AS_SERVED]["median_s"]
    printed = "\n".join(critical_path.table("sqlite", figures))
    assert "without the read" in printed and "vs bulk UPDATE" in printed


def test_savings_are_shares_of_the_call_as_served() -> None:
    medians = {critical_path.AS_SERVED: 0.200, critical_path.NO_READ: 0.150}
    rows = critical_path.savings(medians, consume_s=0.150)
    assert [name for name, *_ in rows] == [critical_path.AS_SERVED, critical_path.NO_READ]
    (_, _, served_saved, served_ratio), (_, _, saved, ratio) = rows
    assert served_saved == 0 and served_ratio == pytest.approx(0.75)
    assert saved == pytest.approx(0.25) and ratio == pytest.approx(1.0)
