"""`totpd serve` refuses to start with a keyring that lacks a key the stored
secrets are sealed with: exit code 2 and one line naming the missing key ids."""

from __future__ import annotations

import base64
import json
import signal
from pathlib import Path

import pytest

from tests.cli.processes import GRACE_SECONDS, dev_server, run_totpd
from totpd.app import build_service
from totpd.config import Settings
from totpd.crypto import Keyring, write_new_keyring
from totpd.service.types import EnrollParams

pytestmark = pytest.mark.slow  # `totpd serve` and `totpd migrate` processes


def database_with_a_secret(data_dir: Path) -> Path:
    """A SQLite database holding one secret sealed with a fresh keyring; returns its key file."""
    key_file = data_dir / "sealing.key"
    write_new_keyring(key_file)
    service = build_service(Settings(data_dir=data_dir, key_file=key_file))
    service.enroll(EnrollParams("alice", "phone"))
    return key_file


def key_bytes(key_file: Path) -> list[str]:
    return list(json.loads(key_file.read_text())["keys"].values())


def test_serve_with_a_keyring_lacking_a_stored_key_exits_2_naming_it(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    data_dir = tmp_path / "data"
    sealing = database_with_a_secret(data_dir)
    other = tmp_path / "other.key"
    write_new_keyring(other)

    result = run_totpd(
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        str(data_dir),
        "--key-file",
        str(other),
        env=subprocess_env,
    )

    assert result.returncode == 2
    (last_line,) = result.stderr.strip().splitlines()[-1:]
    missing = Keyring.load(sealing).primary_key_id
    assert last_line.startswith(f"totpd: error: the keyring at {other} lacks key id(s) {missing},")
    assert Keyring.load(other).primary_key_id not in last_line
    assert "Traceback" not in result.stderr
    for key in key_bytes(sealing) + key_bytes(other):
        assert key not in result.stderr

    # `migrate` touches no secret: it needs no keyring, and does not check one.
    migrated = run_totpd("migrate", "--data-dir", str(data_dir), env=subprocess_env)
    assert migrated.returncode == 0, migrated.stderr


def test_serve_with_a_rotated_keyring_holding_the_old_key_starts(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    data_dir = tmp_path / "data"
    sealing = database_with_a_secret(data_dir)
    old = json.loads(sealing.read_text())
    rotated = tmp_path / "rotated.key"
    rotated.write_text(
        json.dumps(
            {
                "primary": "knew",
                "keys": {**old["keys"], "knew": base64.b64encode(bytes(range(32))).decode()},
            }
        )
    )

    with dev_server(tmp_path, subprocess_env, "--key-file", str(rotated)) as (process, _):
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=GRACE_SECONDS + 10)
    assert process.returncode == 0, stderr
