"""Smoke test: the concurrent-callers memory benchmark runs at tiny sizes, each caller
authenticated by its own token (the callers file holds only hashes), and every
batch's codes are VALID (run with `pytest benchmarks/service`)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.service import batch_memory
from benchmarks.service.fixtures import FactorPool, seed_database, sqlite_database


def test_several_callers_batches_run_at_once_and_memory_is_sampled(tmp_path: Path) -> None:
    config = {"levels": [1, 2], "batch": 300, "rounds": 2}
    with sqlite_database(tmp_path) as database:
        pool = FactorPool(seed_database(database, tmp_path, 2_000))
        figures = batch_memory.measure(database, tmp_path, pool, config)
    callers_file = (tmp_path / "callers.toml").read_text()
    assert callers_file.count("token_sha256") == 2 and "Bearer" not in callers_file
    assert [level["callers"] for level in figures["levels"]] == [1, 2]
    for level in figures["levels"]:
        assert level["statuses"] == {"OK": 2 * level["callers"]}
        assert level["valid_fraction"] == 1.0
        assert level["peak_rss_kb"] >= figures["idle_rss_kb"] > 0
    assert figures["hwm_kb"] >= max(level["peak_rss_kb"] for level in figures["levels"])
    assert "callers" in "\n".join(batch_memory.table("sqlite", figures))
