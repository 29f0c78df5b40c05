"""The core-against-a-commit comparison (regression.py): its verdict, and one real
tiny run against this checkout's own HEAD. No timing is asserted."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import regression


def _turn(baseline: float, current: float) -> dict[str, dict[str, object]]:
    rates = {name: [baseline] for name in regression.ALGORITHMS}
    faster = {name: [current] for name in regression.ALGORITHMS}
    return {"baseline": {"rates": rates}, "current": {"rates": faster}}


def test_compare_takes_medians_over_every_turn_and_judges_each_algorithm() -> None:
    summary = regression.compare([_turn(10.0, 9.8), _turn(10.0, 10.4), _turn(12.0, 9.0)])
    sha1 = summary["algorithms"]["SHA1"]
    assert sha1["baseline_rate"] == 10.0 and sha1["current_rate"] == 9.8
    assert sha1["ratio"] == pytest.approx(0.98)
    assert sha1["turn_ratios"] == pytest.approx([0.98, 1.04, 0.75])
    assert summary["met"] is True  # 0.98 is within 5%
    assert regression.compare([_turn(10.0, 9.4)])["met"] is False


def test_the_reference_commit_names_a_commit_of_this_repository() -> None:
    commit = regression.reference_commit()
    kind = subprocess.run(
        ["git", "cat-file", "-t", commit], cwd=regression.ROOT, capture_output=True, text=True
    ).stdout.strip()
    if not kind:
        pytest.skip("a shallow clone without the reference run's commit")
    assert kind == "commit"


def test_a_run_against_head_builds_the_baseline_and_compares_both_cores(tmp_path: Path) -> None:
    assert (
        regression.main(
            ["--against", "HEAD", "--turns", "1", "--repeat", "1", "--out", str(tmp_path)]
        )
        == 0
    )
    summary = json.loads((tmp_path / regression.RESULT).read_text())
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=regression.ROOT, capture_output=True, text=True
    ).stdout.strip()
    assert summary["baseline"]["commit"] == head == summary["current"]["commit"]
    assert set(summary["algorithms"]) == {"SHA1", "SHA256", "SHA512"}
    for row in summary["algorithms"].values():
        assert row["baseline_rate"] > 0 and row["current_rate"] > 0
    (turn,) = summary["raw"]
    # Each side imported its own tree's totpd: the baseline from the scratch export.
    assert "totpd-core-baseline-" in turn["baseline"]["module"]
    assert turn["current"]["module"].startswith(str(regression.ROOT / "server"))
