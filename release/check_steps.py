"""The parts release/check.py's checks run on: the scratch directory, commands
with their logs, dist/'s files, and the wheels' virtualenv with its server."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"
SMOKE = ROOT / "release" / "smoke"
STEP_TIMEOUT = 900  # seconds for one command: pip, npm, mvn and go download on a fresh machine


class CheckError(Exception):
    """A check failed; the message says what, the command logs say why."""


class MissingToolError(CheckError):
    """A toolchain the check needs is not installed."""


@dataclass
class Scratch:
    root: Path
    version: str
    logs: Path

    def log_file(self, name: str) -> Path:
        return self.logs / f"{name}.log"


def say(msg: str) -> None:
    print(f"release-check: {msg}", flush=True)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment minus anything that would point a tool back at the repository."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env.update(extra)
    return env


def run(
    scratch: Scratch,
    name: str,
    cmd: list[str],
    cwd: Path,
    env: dict[str, str] | None = None,
) -> str:
    """Run CMD, its output appended to logs/NAME.log; on failure raise with the log's tail."""
    log = scratch.log_file(name)
    with log.open("a", encoding="utf-8") as out:
        out.write(f"\n$ {' '.join(cmd)}   (in {cwd})\n")
        out.flush()
        proc = subprocess.run(  # noqa: S603 (our own commands)
            cmd,
            cwd=cwd,
            env=env or clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=STEP_TIMEOUT,
            check=False,
        )
        out.write(proc.stdout)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-40:])
        raise CheckError(f"{' '.join(cmd[:3])} ... exited {proc.returncode}:\n{tail}")
    return proc.stdout


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise MissingToolError(f"not installed: {', '.join(missing)}")


def one(pattern: str) -> Path:
    found = sorted(DIST.glob(pattern))
    if len(found) != 1:
        raise CheckError(f"expected one dist/{pattern}, found {[p.name for p in found]}")
    return found[0]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_sums() -> None:
    sums = DIST / "SHA256SUMS"
    if not sums.exists():
        raise CheckError("dist/SHA256SUMS is missing: run make dist")
    lines = sums.read_text(encoding="utf-8").splitlines()
    for line in lines:
        digest, name = line.split(maxsplit=1)
        if sha256(DIST / name) != digest:
            raise CheckError(f"dist/{name} does not match dist/SHA256SUMS")
    say(f"dist/SHA256SUMS: {len(lines)} artifacts match")


def make_venv(scratch: Scratch, name: str) -> Path:
    venv = scratch.root / name
    # sys.executable is the repository's .venv; venv bases the new one on its base Python.
    run(scratch, name, [sys.executable, "-m", "venv", str(venv)], scratch.root)
    run(scratch, name, [str(venv / "bin/python"), "-m", "pip", "install", "-q", "-U", "pip"], venv)
    return venv


# --- python: the wheels, and the server every other check talks to -----------------


def install_wheels(scratch: Scratch) -> Path:
    v = scratch.version
    venv = make_venv(scratch, "python")
    wheels = [one(f"totpd-{v}-*.whl"), one(f"totpd_client-{v}-py3-none-any.whl")]
    pip = [str(venv / "bin/python"), "-m", "pip", "install", "-q"]
    run(scratch, "python", [*pip, *map(str, wheels)], scratch.root)
    where = run(
        scratch,
        "python",
        [str(venv / "bin/python"), "-c", "import totpd; print(totpd.__version__, totpd.__file__)"],
        scratch.root,
    ).split()
    if where[0] != v or not where[1].startswith(str(venv)):
        raise CheckError(f"the virtualenv imports totpd {where}, not {v} from its site-packages")
    say(f"python: {', '.join(w.name for w in wheels)} installed in a fresh virtualenv")
    return venv


@contextmanager
def running_server(scratch: Scratch, venv: Path) -> Iterator[str]:
    """`totpd serve --dev` from the wheel's virtualenv on 127.0.0.1:0; yields HOST:PORT."""
    data = scratch.root / "server"
    data.mkdir()
    ready = data / "ready"
    log = scratch.log_file("server").open("wb")
    cmd = [str(venv / "bin/totpd"), "serve", "--dev", "--listen", "127.0.0.1:0"]
    cmd += ["--data-dir", str(data), "--ready-file", str(ready)]
    proc = subprocess.Popen(  # noqa: S603 (the server we just installed)
        cmd, cwd=data, env=clean_env(TOTPD_DRAIN_SECONDS="0"), stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 60
        while not (ready.exists() and ":" in ready.read_text(encoding="utf-8")):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise CheckError("totpd serve did not start: see logs/server.log")
            time.sleep(0.1)
        target = ready.read_text(encoding="utf-8").strip()
        say(f"server: {venv / 'bin/totpd'} serve --dev listening on {target}")
        yield target
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
