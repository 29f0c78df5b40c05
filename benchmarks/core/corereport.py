"""Core benchmark report from pytest-benchmark's JSON: terminal table, core.json, core.png.

Rates are verifications per second: ``timed_pairs`` / the median time of one call.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from corebench import KERNEL_NAMES, PEERS, TARGET_BATCH

TARGETS = {"SHA1": 5e6, "SHA256": 2e6, "SHA512": 0.6e6}
TARGET_X_PYOTP = {"SHA1": 150.0}


@dataclass
class Row:
    alg: str
    impl: str  # a totpd kernel, "pyotp" or "hmac-loop"
    batch: int
    codes: str  # "valid", "invalid" or "valid-again"
    path: str  # the forced CPU path timed ("python" for the peers)
    paths: list[str]  # every CPU path that runs this kernel at this batch
    role: str  # "main", "control" (A/A re-run) or "alias" (a merged path)
    timed_pairs: int  # pairs per timed call (peers at 100k: a sample of the batch)
    rounds: int  # over every pass
    iterations: list[int]  # calls per round, per pass
    median_s: float  # one call, median over every round of every pass
    rate: float  # timed_pairs / median_s
    rate_q1: float  # from the slower quartile of the call time
    rate_q3: float
    pass_rates: list[float]  # each pass's own median rate: the spread between passes
    vs_pyotp: float | None = None
    vs_hmac_loop: float | None = None

    @property
    def is_peer(self) -> bool:
        return self.impl in PEERS

    @property
    def sampled(self) -> bool:
        return self.timed_pairs < self.batch

    @property
    def spread(self) -> float:
        """The largest gap between one pass's median and the figure."""
        return max(abs(p / self.rate - 1) for p in self.pass_rates)

    @property
    def peer_codes(self) -> str:
        """The peer figure this row is compared with: same kind of code."""
        return "invalid" if self.codes == "invalid" else "valid"


def load_rows(pytest_json: Path) -> list[Row]:
    data = json.loads(pytest_json.read_text())
    passes: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        key = tuple(info[k] for k in ("alg", "impl", "batch", "codes", "path", "role"))
        passes.setdefault(key, []).append(bench)
    rows = [_row(benches) for benches in passes.values()]
    _add_ratios(rows)
    return rows


def _row(passes: list[dict[str, Any]]) -> Row:
    """One figure from its passes: the median over every round of every pass."""
    info = passes[0]["extra_info"]
    pairs = int(info["timed_pairs"])
    times = sorted(t for b in passes for t in _round_times(b["stats"]))
    q1, med, q3 = statistics.quantiles(times, n=4) if len(times) > 1 else times * 3
    return Row(
        alg=info["alg"],
        impl=info["impl"],
        batch=int(info["batch"]),
        codes=info["codes"],
        path=info["path"],
        paths=list(info["paths"]),
        role=info["role"],
        timed_pairs=pairs,
        rounds=len(times),
        iterations=[int(b["stats"]["iterations"]) for b in passes],
        median_s=med,
        rate=pairs / med,
        rate_q1=pairs / q3,
        rate_q3=pairs / q1,
        pass_rates=[pairs / b["stats"]["median"] for b in passes],
    )


def _round_times(stats: dict[str, Any]) -> list[float]:
    """The time of one call in each round (pytest-benchmark's ``data``)."""
    return list(stats.get("data") or [stats["median"]])


def _add_ratios(rows: list[Row]) -> None:
    """Each figure over the peer's at the same algorithm, batch and kind of code."""
    peer = {(r.impl, r.alg, r.batch, r.codes): r.rate for r in rows if r.is_peer}
    for r in rows:
        if r.impl == "pyotp":
            continue
        py = peer.get(("pyotp", r.alg, r.batch, r.peer_codes))
        r.vs_pyotp = r.rate / py if py else None
        if not r.is_peer:
            loop = peer.get(("hmac-loop", r.alg, r.batch, r.peer_codes))
            r.vs_hmac_loop = r.rate / loop if loop else None


def find(rows: list[Row], **want: Any) -> Row | None:
    for r in rows:
        if all(getattr(r, k) == v for k, v in want.items()):
            return r
    return None


# --- Terminal table ---------------------------------------------------------------
def rate_str(x: float | None) -> str:
    if x is None:
        return "-"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    return f"{x / 1e3:.1f}k" if x >= 1e3 else f"{x:.0f}"


def ratio_str(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


HEADER = (
    f"{'alg':6} {'impl':12} {'batch':>7} {'valid/s':>8} {'invalid/s':>9} {'inv/val':>7} "
    f"{'x pyotp v':>9} {'x pyotp i':>9} {'x loop v':>8} {'x loop i':>8} {'spread':>6}  paths"
)


def _line(valid: Row, invalid: Row | None) -> str:
    inv = invalid.rate if invalid else None
    inv_py = invalid.vs_pyotp if invalid else None
    inv_loop = invalid.vs_hmac_loop if invalid else None
    spread = max(valid.spread, invalid.spread if invalid else 0.0)
    batch = f"{valid.batch}{'*' if valid.sampled else ''}"
    paths = ", ".join(valid.paths) or "python"
    if valid.sampled:
        paths += f" ({valid.timed_pairs:,} of {valid.batch:,} pairs timed)"
    return (
        f"{valid.alg:6} {valid.impl:12} {batch:>7} {rate_str(valid.rate):>8} "
        f"{rate_str(inv):>9} {ratio_str(inv / valid.rate if inv else None):>7} "
        f"{ratio_str(valid.vs_pyotp):>9} {ratio_str(inv_py):>9} "
        f"{ratio_str(valid.vs_hmac_loop):>8} {ratio_str(inv_loop):>8} {spread:>6.1%}"
        f"  {paths}"
    )


def _table_order(rows: list[Row]) -> list[Row]:
    """By algorithm and batch; the kernels in run order, then the peers."""
    algs = list(dict.fromkeys(r.alg for r in rows))
    return sorted(rows, key=lambda r: (algs.index(r.alg), r.batch, r.is_peer))


def main_table(rows: list[Row]) -> list[str]:
    out = [HEADER]
    for v in _table_order(rows):
        if v.role == "main" and v.codes == "valid":
            inv = find(rows, role="main", codes="invalid", alg=v.alg, impl=v.impl, batch=v.batch)
            out.append(_line(v, inv))
    return out


def control_table(rows: list[Row]) -> list[str]:
    out = []
    for again in (r for r in rows if r.role == "control"):
        key = dict(role="main", alg=again.alg, impl=again.impl, batch=again.batch)
        v, i = find(rows, codes="valid", **key), find(rows, codes="invalid", **key)
        if v and i:
            out.append(
                f"{again.alg:6} {again.impl:12} {again.batch:>7} valid {rate_str(v.rate):>7}"
                f"  invalid {rate_str(i.rate):>7} ({i.rate / v.rate - 1:+.1%})"
                f"  valid again {rate_str(again.rate):>7} ({again.rate / v.rate - 1:+.1%})"
            )
    return out


def alias_table(rows: list[Row]) -> list[str]:
    out = []
    for a in (r for r in rows if r.role == "alias"):
        rep = find(rows, role="main", codes=a.codes, alg=a.alg, impl=a.impl, batch=a.batch)
        if rep:
            out.append(
                f"{a.alg:6} {a.impl:12} {a.batch:>7} forced {a.path:10} {rate_str(a.rate):>7}"
                f"  vs {rep.path} {rate_str(rep.rate):>7} ({a.rate / rep.rate - 1:+.1%})"
            )
    return out


def targets(rows: list[Row], auto_kernels: dict[str, str]) -> list[dict[str, Any]]:
    """The issue's targets for the kernel the default (auto) path runs at 10k."""
    out = []
    for alg, goal in TARGETS.items():
        key = dict(role="main", alg=alg, impl=auto_kernels.get(alg), batch=TARGET_BATCH)
        v, i = find(rows, codes="valid", **key), find(rows, codes="invalid", **key)
        if not (v and i):
            continue
        worst = min(v.rate, i.rate)
        ratios = [r for r in (v.vs_pyotp, i.vs_pyotp) if r is not None]
        x_goal = TARGET_X_PYOTP.get(alg)
        met = worst >= goal and (x_goal is None or (bool(ratios) and min(ratios) >= x_goal))
        out.append(
            dict(
                alg=alg,
                kernel=v.impl,
                batch=TARGET_BATCH,
                rate_target=goal,
                rate_valid=v.rate,
                rate_invalid=i.rate,
                x_pyotp_target=x_goal,
                x_pyotp_valid=v.vs_pyotp,
                x_pyotp_invalid=i.vs_pyotp,
                met=met,
            )
        )
    return out


def target_lines(tgts: list[dict[str, Any]]) -> list[str]:
    out = []
    for t in tgts:
        want = f">= {rate_str(t['rate_target'])}/s"
        if t["x_pyotp_target"]:
            want += f" and >= {t['x_pyotp_target']:.0f}x pyotp"
        out.append(
            f"target {t['alg']:6} 10k, {t['kernel']}: {want}: valid {rate_str(t['rate_valid'])}"
            f" ({ratio_str(t['x_pyotp_valid'])}x), invalid {rate_str(t['rate_invalid'])}"
            f" ({ratio_str(t['x_pyotp_invalid'])}x): {'met' if t['met'] else 'MISSED'}"
        )
    return out


def print_report(rows: list[Row], tgts: list[dict[str, Any]], auto_path: str) -> None:
    print(
        f"\ntotpd core, one core (threads=1), window 1: verifications/s, median of rounds;"
        f" default path {auto_path}"
    )
    print("\n".join(main_table(rows)))
    if any(r.sampled for r in rows):
        print("* pyotp and hmac-loop timed a sample of the batch (timed_pairs in core.json)")
    if controls := control_table(rows):
        print("\nA/A control: the valid batch timed again after the invalid one")
        print("\n".join(controls))
    if aliases := alias_table(rows):
        print("\nmerged paths (same kernel), timed once to check the merge")
        print("\n".join(aliases))
    print()
    print("\n".join(target_lines(tgts)) or "targets: need the 10k batch (full sizes)")


# --- JSON and plot -----------------------------------------------------------------
def write_json(
    path: Path, rows: list[Row], tgts: list[dict[str, Any]], meta: dict[str, Any]
) -> None:
    doc = dict(
        meta=meta,
        targets=tgts,
        rows=[dict(asdict(r), sampled=r.sampled, spread=r.spread) for r in rows],
    )
    path.write_text(json.dumps(doc, indent=1) + "\n")


def _line_label(kernel: str, kernel_rows: list[Row], auto: bool) -> str:
    """Kernel name and the paths that run it; a path that runs it at some batch
    sizes only says at which."""
    by_batch = {r.batch: r.paths for r in kernel_rows}
    order = [p for r in kernel_rows for p in r.paths]
    always = [p for p in dict.fromkeys(order) if all(p in ps for ps in by_batch.values())]
    parts = [", ".join(always)] if always else []
    for p in dict.fromkeys(order):
        if p not in always:
            at = ", ".join(str(b) for b, ps in sorted(by_batch.items()) if p in ps)
            parts.append(f"{p} at batch {at}")
    star = " [default]" if auto else ""
    return f"{KERNEL_NAMES.get(kernel, kernel)}{star} ({'; '.join(parts)})"


def write_plot(path: Path, rows: list[Row], auto_kernels: dict[str, str]) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    algs = list(dict.fromkeys(r.alg for r in rows))
    fig, axes = plt.subplots(1, len(algs), figsize=(6 * len(algs), 5.5), sharey=True)
    axes = list(axes) if len(algs) > 1 else [axes]
    for ax, alg in zip(axes, algs, strict=True):
        _plot_alg(ax, [r for r in rows if r.alg == alg and r.role == "main"], alg, auto_kernels)
    axes[0].set_ylabel("verifications / second (median)")
    fig.suptitle(
        "totpd core, one core, window 1: line + filled = valid codes, x = invalid codes,"
        " hollow = peer timed on a sample of the batch",
        fontsize=9,
    )
    fig.savefig(path, dpi=110, bbox_inches="tight")  # keeps the legends below the axes
    plt.close(fig)
    return True


KERNEL_COLOURS = {
    "portable": "C0",
    "sha-ni": "C1",
    "avx2-x8": "C2",
    "avx512vl-x8": "C3",
    "avx512-x16": "C4",
    "avx512-x8": "C4",
    "pyotp": "black",
    "hmac-loop": "grey",
}


def _plot_alg(ax: Any, rows: list[Row], alg: str, auto_kernels: dict[str, str]) -> None:
    # Kernels first, then the peers, each in a colour of its own in every panel.
    impls = sorted(dict.fromkeys(r.impl for r in rows), key=lambda i: i in PEERS)
    for impl in impls:
        mine = sorted((r for r in rows if r.impl == impl), key=lambda r: r.batch)
        valid = [r for r in mine if r.codes == "valid"]
        invalid = [r for r in mine if r.codes == "invalid"]
        peer = impl in PEERS
        colour = KERNEL_COLOURS.get(impl, "C5")
        label = impl if peer else _line_label(impl, valid, impl == auto_kernels.get(alg))
        ax.plot(
            [r.batch for r in valid],
            [r.rate for r in valid],
            linestyle="--" if peer else "-",
            color=colour,
            label=label,
        )
        for r in valid:
            face = "none" if r.sampled else colour
            ax.plot(r.batch, r.rate, "o", color=colour, markerfacecolor=face)
        ax.plot([r.batch for r in invalid], [r.rate for r in invalid], "x", color=colour)
    if alg in TARGETS:
        ax.axhline(TARGETS[alg], color="red", linewidth=0.8, linestyle=":")
        ax.annotate(f"target at 10k: {rate_str(TARGETS[alg])}/s", (1, TARGETS[alg]), fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_title(f"HMAC-{alg}")
    ax.set_xlabel("batch size (pairs per call)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12))
