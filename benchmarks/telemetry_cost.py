"""CPU per unary Verify with the metrics hooks on and off, in one process.

    python -m benchmarks.telemetry_cost [--calls 3000] [--runs 3]

A real gRPC server (4 workers) and its client in this process, SQLite, every
call a VALID verdict (the hot path: one read, one conditional write). Each run
is a fresh child process, alternating "on" (as shipped) and "off" (the RPC
metrics interceptor, the pool listeners and the engine's hooks replaced by
no-ops), so the two sides share the machine's state. The figure is process CPU
time (user + system, server and client) per call: robust to a busy machine,
unlike wall time. benchmarks/NOTES.md has the numbers.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

_ACCOUNTS = 250


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _hooks_off() -> None:
    import contextlib

    from totpd.rpc import interceptors, server
    from totpd.service import verification
    from totpd.store import database

    class PassThrough(interceptors.CachingInterceptor):
        def _wrap(self, handler: Any, method: str) -> Any:
            return handler

    server.MetricsInterceptor = PassThrough  # type: ignore[misc]
    database._count_connections = lambda engine: None
    off: Any = verification.metrics
    off.count_verdicts = lambda results: None
    off.StoreRound = lambda checks: contextlib.nullcontext()


def _run(mode: str, calls: int) -> dict[str, float]:
    if mode == "off":
        _hooks_off()
    from tests.conftest import Clock
    from tests.enrollments import enroll_active
    from tests.rpc.harness import running_server
    from tests.totp_oracle import code_at
    from totpd.app import build_service
    from totpd.config import Settings
    from totpd.crypto import write_new_keyring
    from totpd.v1 import totp_service_pb2 as pb

    with tempfile.TemporaryDirectory() as directory:
        data = Path(directory)
        settings = Settings(listen_address="127.0.0.1:0", data_dir=data, key_file=data / "k")
        write_new_keyring(settings.key_file)
        service = build_service(settings)
        clock = Clock()
        service._clock = clock  # type: ignore[attr-defined]
        service._checker._clock = clock  # type: ignore[attr-defined]
        enrolled = [enroll_active(service, clock, f"bench-{i}") for i in range(_ACCOUNTS)]
        passes = -(-calls // _ACCOUNTS)
        plan = []
        for step in range(passes):
            at = clock.now + 30 * (step + 1)
            plan.append((at, [(e.factor.account_id, code_at(e, at)) for e in enrolled]))
        with running_server(settings, service) as live:
            verify = live.stub.Verify
            for _ in range(50):  # warm up: handlers wrapped, connections opened
                live.stub.ListFactors(pb.ListFactorsRequest(account_id="nobody"), timeout=10)
            started = _cpu()
            done = 0
            for at, items in plan:
                clock.now = at
                for account, code in items[: calls - done]:
                    outcome = verify(pb.VerifyRequest(account_id=account, code=code), timeout=10)
                    assert outcome.outcome.result == 1  # VALID
                done += len(items[: calls - done])
            spent = _cpu() - started
    return {"calls": done, "cpu_us_per_call": spent / done * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", choices=["on", "off"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_run(args.child, args.calls)))
        return
    results: dict[str, list[float]] = {"on": [], "off": []}
    for _ in range(args.runs):
        for mode in ("off", "on"):
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.telemetry_cost",
                    "--child",
                    mode,
                    "--calls",
                    str(args.calls),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            results[mode].append(json.loads(out.stdout.strip().splitlines()[-1])["cpu_us_per_call"])
    for mode, figures in results.items():
        runs = ", ".join(f"{f:.1f}" for f in figures)
        print(f"{mode}: median {sorted(figures)[len(figures) // 2]:.1f} µs CPU/call ({runs})")


if __name__ == "__main__":
    main()
