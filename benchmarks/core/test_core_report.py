"""Smoke tests of the core benchmark's plumbing: kernel map, cells, report. No timing."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import coremeta
import pytest
from corebench import (
    FULL_BATCHES,
    PEER_SAMPLE,
    Cell,
    cells,
    kernel_for,
    kernel_paths,
    sample_stride,
)
from corereport import load_rows, main_table, targets, write_json, write_plot

from totpd import otp
from totpd.service.types import Algorithm

SHA1, SHA256, SHA512 = Algorithm.SHA1, Algorithm.SHA256, Algorithm.SHA512


@pytest.mark.parametrize(
    ("alg", "path", "batch", "shani", "kernel"),
    [
        (SHA1, "portable", 10_000, True, "portable"),
        (SHA1, "shani", 10_000, True, "sha-ni"),
        (SHA1, "avx2", 1, True, "avx2-x8"),
        (SHA1, "avx512", 10_000, True, "avx512vl-x8"),
        (SHA1, "avx512x16", 10_000, True, "avx512-x16"),
        (SHA1, "avx512x16", 4, True, "sha-ni"),  # the scalar tail
        (SHA1, "avx512x16", 4, False, "portable"),
        (SHA256, "avx2", 10_000, True, "sha-ni"),
        (SHA256, "avx512x16", 10_000, False, "portable"),
        (SHA512, "shani", 10_000, True, "portable"),
        (SHA512, "avx512", 10_000, True, "portable"),
        (SHA512, "avx512x16", 2, True, "avx512-x8"),
        (SHA512, "avx512x16", 1, True, "portable"),
    ],
)
def test_kernel_for_follows_the_dispatch(
    alg: Algorithm, path: str, batch: int, shani: bool, kernel: str
) -> None:
    assert kernel_for(alg, path, batch, shani) == kernel


def test_every_supported_path_is_in_exactly_one_kernel() -> None:
    for alg in Algorithm:
        for batch in FULL_BATCHES:
            merged = [p for ps in kernel_paths(alg, batch).values() for p in ps]
            assert sorted(merged) == sorted(otp.cpu_paths())


def test_cells_time_each_kernel_once_per_pass_and_the_aliases_apart() -> None:
    todo = cells(FULL_BATCHES, 10_000, passes=2)
    assert len({c.id for c in todo}) == len(todo)
    first = [c for c in todo if c.run == 1]
    assert len(first) * 2 == len(todo)
    main = [(c.alg, c.impl, c.batch, c.codes) for c in first if c.role == "main"]
    assert len(set(main)) == len(main)
    for a in (c for c in first if c.role == "alias"):
        assert a.batch == 10_000 and a.path in a.paths and a.path != a.paths[0]


def test_peers_time_a_bounded_sample() -> None:
    assert sample_stride(100) == 1
    assert sample_stride(100_000) == 10
    peers = [c for c in cells(FULL_BATCHES, 10_000, 1) if c.is_peer]
    assert all(-(-c.batch // c.stride) <= PEER_SAMPLE for c in peers)


def _bench(cell: Cell, seconds: float, pairs: int | None = None) -> dict[str, Any]:
    """One pytest-benchmark JSON entry, as test_core_bench.py writes it."""
    info = dict(cell.info(), timed_pairs=pairs or cell.batch)
    data = [seconds * 0.9, seconds, seconds * 1.1]
    return dict(extra_info=info, stats=dict(median=seconds, iterations=1, data=data))


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    b = 10_000
    top = Cell("SHA1", "avx512-x16", b, "valid", "avx512x16", ("avx512x16",))
    benches = [
        _bench(top, 1e-3),
        _bench(replace(top, run=2), 1e-3),  # a second pass of the same figure
        _bench(Cell("SHA1", "avx512-x16", b, "invalid", "avx512x16", ("avx512x16",)), 1e-3),
        _bench(Cell("SHA1", "pyotp", b, "valid"), 0.2),
        _bench(Cell("SHA1", "pyotp", b, "invalid"), 0.25),
        _bench(Cell("SHA1", "hmac-loop", b, "valid"), 0.1),
        _bench(Cell("SHA1", "hmac-loop", b, "invalid"), 0.1),
        _bench(Cell("SHA1", "pyotp", 100_000, "valid", stride=10), 0.2, pairs=10_000),
    ]
    path = tmp_path / "raw.json"
    path.write_text(json.dumps(dict(benchmarks=benches)))
    return path


def test_report_rates_ratios_and_outputs(raw: Path, tmp_path: Path) -> None:
    rows = load_rows(raw)
    core = next(r for r in rows if r.impl == "avx512-x16" and r.codes == "valid")
    assert core.rate == pytest.approx(10e6)
    assert core.rounds == 6 and len(core.pass_rates) == 2  # both passes in one figure
    assert core.vs_pyotp == pytest.approx(200)  # 10M/s over pyotp's valid 50k/s
    inv = next(r for r in rows if r.impl == "avx512-x16" and r.codes == "invalid")
    assert inv.vs_pyotp == pytest.approx(250)  # over pyotp's invalid 40k/s
    sampled = next(r for r in rows if r.batch == 100_000)
    assert sampled.sampled and sampled.rate == pytest.approx(50_000)

    (t,) = targets(rows, {"SHA1": "avx512-x16"})
    assert t["met"]
    assert any("avx512-x16" in line for line in main_table(rows))
    write_json(tmp_path / "core.json", rows, [t], {"date": "now"})
    doc = json.loads((tmp_path / "core.json").read_text())
    assert doc["meta"] == {"date": "now"} and len(doc["rows"]) == len(rows)
    pytest.importorskip("matplotlib")
    assert write_plot(tmp_path / "core.png", rows, {"SHA1": "avx512-x16"})


def test_metadata_describes_the_run() -> None:
    meta = coremeta.collect("smoke", "time.perf_counter")
    assert meta["git"]["commit"] and isinstance(meta["git"]["dirty"], bool)
    assert meta["dispatcher"]["default_path"] == otp.cpu_path()
    assert meta["dispatcher"]["paths"] == otp.cpu_paths()
    assert meta["versions"]["pyotp"] != "not installed"
    assert meta["cpu"]["model"]
