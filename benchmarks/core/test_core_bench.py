"""pytest-benchmark suite of the C core (run: pytest benchmarks/core).

Verifications per second on one core (threads=1), window 1, batch sizes 1, 100, 10k,
100k, valid and invalid codes, each algorithm and CPU path, against pyotp
``TOTP.verify(valid_window=1)`` and a plain ``hmac.digest`` loop in the same run.
The rate is ``extra_info["verifications"] / mean``; ``run_core_bench.py`` prints it.
"""

from __future__ import annotations

import functools

import pytest
from corebench import Workload, make_pyotp, make_workload, run_core, run_hmac_loop, run_pyotp

from totpd import otp
from totpd.service.types import Algorithm

BATCHES = [1, 100, 10_000, 100_000]
PEER_BATCH = 1_000


@functools.cache
def workload(alg: Algorithm, batch: int, valid: bool) -> Workload:
    return make_workload(alg, batch, valid)


@pytest.mark.parametrize("valid", [True, False], ids=["valid", "invalid"])
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("path", otp.cpu_paths())
@pytest.mark.parametrize("alg", list(Algorithm), ids=lambda a: a.value)
def test_core(benchmark, alg: Algorithm, path: str, batch: int, valid: bool) -> None:  # type: ignore[no-untyped-def]
    w = workload(alg, batch, valid)
    benchmark.group = f"core-{alg.value}-{batch}"
    benchmark.extra_info.update(verifications=batch, peer="totpd", path=path, alg=alg.value)
    rounds = max(3, min(200, 200_000 // batch))
    out = benchmark.pedantic(run_core, args=(w, path), rounds=rounds, warmup_rounds=1)
    assert all((s >= 0) == valid for s in out)


@pytest.mark.parametrize("alg", list(Algorithm), ids=lambda a: a.value)
def test_pyotp(benchmark, alg: Algorithm) -> None:  # type: ignore[no-untyped-def]
    w = workload(alg, PEER_BATCH, True)
    totps = make_pyotp(w)
    benchmark.group = f"peer-{alg.value}"
    benchmark.extra_info.update(verifications=PEER_BATCH, peer="pyotp", alg=alg.value)
    ok = benchmark.pedantic(run_pyotp, args=(totps, w.codes), rounds=3, warmup_rounds=1)
    assert ok == PEER_BATCH


@pytest.mark.parametrize("alg", list(Algorithm), ids=lambda a: a.value)
def test_hmac_loop(benchmark, alg: Algorithm) -> None:  # type: ignore[no-untyped-def]
    w = workload(alg, PEER_BATCH, True)
    benchmark.group = f"peer-{alg.value}"
    benchmark.extra_info.update(verifications=PEER_BATCH, peer="hmac-loop", alg=alg.value)
    ok = benchmark.pedantic(run_hmac_loop, args=(w,), rounds=3, warmup_rounds=1)
    assert ok == PEER_BATCH
