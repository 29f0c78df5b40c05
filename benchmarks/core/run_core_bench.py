"""Core benchmark report: a terminal table, a JSON file and a PNG plot.

    python benchmarks/core/run_core_bench.py [--out benchmarks/results] [--repeat 7]

Medians of ``--repeat`` timed runs per cell, one core (threads=1), window 1. Peers
(pyotp ``TOTP.verify(valid_window=1)`` and a plain ``hmac.digest`` loop) run in the
same process on 1,000 codes. Rates are verifications per second.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corebench import make_pyotp, make_workload, run_core, run_hmac_loop, run_pyotp

from totpd import otp
from totpd.service.types import Algorithm

BATCHES = [1, 100, 10_000, 100_000]
PEER_BATCH = 1_000
TARGETS = {"SHA1": 5e6, "SHA256": 2e6, "SHA512": 0.6e6}


def median_rate(fn: Callable[[], object], n: int, repeat: int) -> float:
    fn()
    times = []
    budget = time.perf_counter() + 5.0
    for _ in range(repeat):
        inner = max(1, 20_000 // n)  # time tiny batches in loops
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t0) / inner)
        if time.perf_counter() > budget and len(times) >= 3:
            break
    return n / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    rows: list[dict[str, Any]] = []
    for alg in Algorithm:
        peer = make_workload(alg, PEER_BATCH, True)
        totps = make_pyotp(peer)
        pyotp_rate = median_rate(lambda t=totps, p=peer: run_pyotp(t, p.codes), PEER_BATCH, 3)
        hmac_rate = median_rate(lambda p=peer: run_hmac_loop(p), PEER_BATCH, 3)
        for name, rate in (("pyotp", pyotp_rate), ("hmac-loop", hmac_rate)):
            for batch in BATCHES:
                rows.append(
                    dict(
                        alg=alg.value,
                        peer=name,
                        path="python",
                        batch=batch,
                        valid=True,
                        rate=rate,
                        measured_batch=PEER_BATCH,
                    )
                )
        for batch in BATCHES:
            for valid in (True, False):
                w = make_workload(alg, batch, valid)
                for path in otp.cpu_paths():
                    rate = median_rate(lambda w=w, path=path: run_core(w, path), batch, args.repeat)
                    rows.append(
                        dict(
                            alg=alg.value,
                            peer="totpd",
                            path=path,
                            batch=batch,
                            valid=valid,
                            rate=rate,
                            vs_pyotp=rate / pyotp_rate,
                        )
                    )

    print(f"totpd core, one core, window 1 (auto path: {otp.cpu_path()}); verifications/s")
    print(f"{'alg':7} {'path':9} {'batch':>7} {'valid':>10} {'invalid':>10} {'x pyotp':>8}")
    for r in rows:
        if r["peer"] == "totpd" and r["valid"]:
            inv = next(
                x
                for x in rows
                if x["peer"] == "totpd"
                and not x["valid"]
                and x["alg"] == r["alg"]
                and x["path"] == r["path"]
                and x["batch"] == r["batch"]
            )
            print(
                f"{r['alg']:7} {r['path']:9} {r['batch']:>7} {r['rate']:>10,.0f} "
                f"{inv['rate']:>10,.0f} {r['vs_pyotp']:>8.0f}"
            )
    for r in rows:
        if r["peer"] != "totpd" and r["batch"] == BATCHES[0]:
            print(f"{r['alg']:7} {r['peer']:9} {PEER_BATCH:>7} {r['rate']:>10,.0f}")
    for alg, target in TARGETS.items():
        best = max(
            r["rate"]
            for r in rows
            if r["peer"] == "totpd" and r["alg"] == alg and r["batch"] == 10_000
        )
        verdict = "met" if best >= target else "MISSED"
        print(f"target {alg} 10k batch >= {target:,.0f}/s: best {best:,.0f}/s ({verdict})")

    meta = dict(
        machine=platform.machine(),
        cpu_count=os.cpu_count(),
        python=sys.version,
        auto_path=otp.cpu_path(),
        paths=otp.cpu_paths(),
        time=time.time(),
    )
    (out / "core.json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no PNG")
        return
    fig, axes = plt.subplots(1, 3, figsize=(16, 5), sharey=True)
    for ax, alg in zip(axes, Algorithm, strict=True):
        lines: dict[tuple[str, str], list[tuple[int, float]]] = {}
        for r in rows:
            if r["alg"] == alg.value and r["valid"]:
                label = (r["peer"], r["path"])
                lines.setdefault(label, []).append((r["batch"], r["rate"]))
        for (peer, path), pts in sorted(lines.items()):
            xs, ys = zip(*sorted(pts), strict=True)
            ax.plot(
                xs,
                ys,
                marker="o",
                linestyle="--" if peer != "totpd" else "-",
                label=peer if peer != "totpd" else f"totpd {path}",
            )
        ax.axhline(TARGETS[alg.value], color="grey", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"HMAC-{alg.value}, window 1, one core")
        ax.set_xlabel("batch size (pairs)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("verifications / second")
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "core.png", dpi=110)
    print(f"wrote {out / 'core.json'} and {out / 'core.png'}")


if __name__ == "__main__":
    main()
