"""buf breaking against the last release's snapshot (proto/releases) catches a break."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUF = ROOT / "proto/tools/node_modules/.bin/buf"


def last_release() -> Path:
    snapshots = sorted(
        (ROOT / "proto/releases").glob("v*.binpb"),
        key=lambda p: tuple(int(x) for x in p.stem[1:].split("-")[0].split(".")),
    )
    assert snapshots, "proto/releases holds no snapshot"
    return snapshots[-1]


def buf_breaking(proto_dir: Path, against: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BUF), "breaking", str(proto_dir), "--against", str(against)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def proto_copy(tmp_path: Path) -> Path:
    if not BUF.exists():
        pytest.skip("buf is not installed (make proto-check installs it into proto/tools)")
    shutil.copytree(ROOT / "proto/totpd", tmp_path / "totpd")
    return tmp_path


def test_the_current_proto_is_compatible_with_the_last_release(proto_copy: Path) -> None:
    out = buf_breaking(proto_copy, last_release())
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_removed_field_breaks_against_the_last_release(proto_copy: Path) -> None:
    factor = proto_copy / "totpd/v1/factor.proto"
    text = factor.read_text()
    # VerifyOutcome's first field, present since 0.1.0.
    assert "VerifyResult result = 1;" in text
    factor.write_text(text.replace("VerifyResult result = 1;", "reserved 1;"))
    out = buf_breaking(proto_copy, last_release())
    assert out.returncode != 0
    assert "VerifyOutcome" in out.stdout
