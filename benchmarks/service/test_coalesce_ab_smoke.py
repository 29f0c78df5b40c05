"""Smoke test: the coalescing A/B runs at tiny sizes from its command line, every
`totpd serve` variant answers beside the no-op floor, and the table names each (run
with `pytest benchmarks/service`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.service import coalesce_ab


def test_every_variant_is_measured_beside_the_floor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "coalesce_ab.json"
    tiny = ["--factors", "300", "--seconds", "0.3", "--turns", "1", "--concurrency", "2"]
    assert coalesce_ab.main(["--db", "sqlite", *tiny, "--out", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert set(figures["medians"]) == set(coalesce_ab.SERVERS)
    for name in coalesce_ab.SERVERS:
        assert figures["medians"][name]["rps"] > 0
        assert figures["medians"][name]["server_cpu_us_per_call"] > 0
    assert figures["ratios"]["noop"] == 1.0
    printed = capsys.readouterr().out
    for name in coalesce_ab.SERVERS:
        assert name in printed
