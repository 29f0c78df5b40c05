"""`python -m totpd` as a real process: the ready-file contract other harnesses
use, health, SIGTERM shutdown, and the startup errors an operator sees."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.cli.processes import (
    GRACE_SECONDS,
    NOT_SERVING,
    SERVING,
    dev_server,
    log_records,
    run_totpd,
)
from totpd.crypto import Keyring
from totpd.v1 import totp_service_pb2 as pb
from totpd.v1 import totp_service_pb2_grpc


@pytest.mark.slow  # a `totpd serve` process
def test_dev_server_ready_file_health_and_sigterm(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    with dev_server(tmp_path, subprocess_env) as (process, address):
        host, port = address.rsplit(":", 1)
        assert host == "127.0.0.1"
        assert int(port) > 0
        key_file = tmp_path / "data" / "totpd.key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        Keyring.load(key_file)  # a real keyring

        with grpc.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for service in ("", "totpd.v1.TotpService"):
                check = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
                assert check.status == SERVING
            enrolled = totp_service_pb2_grpc.TotpServiceStub(channel).Enroll(
                pb.EnrollRequest(account_id="sigterm-test"), timeout=10
            )
            secret, uri = enrolled.secret_base32, enrolled.otpauth_uri
            if sys.platform == "linux":  # `top -H` tells totpd's threads apart
                tasks = Path(f"/proc/{process.pid}/task").iterdir()
                names = {(task / "comm").read_text().strip() for task in tasks}
                assert {"totpd-loop", "totpd-log-write", "totpd-rpc_0"} <= names

            # Watch health while shutting down: NOT_SERVING comes before the end.
            statuses: list[int] = []
            watch = health.Watch(health_pb2.HealthCheckRequest(service=""))

            def follow() -> None:
                try:
                    statuses.extend(response.status for response in watch)
                except grpc.RpcError:
                    pass

            follower = threading.Thread(target=follow)
            follower.start()
            deadline = time.monotonic() + 5
            while not statuses and time.monotonic() < deadline:
                time.sleep(0.01)

            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=GRACE_SECONDS + 10)
            elapsed = time.monotonic() - started
            watch.cancel()
            follower.join(timeout=5)

        assert process.returncode == 0, stderr
        assert elapsed < GRACE_SECONDS + 5
        assert statuses[:2] == [SERVING, NOT_SERVING]

    records = log_records(stderr)
    messages = [record["msg"] for record in records]
    assert any("DEVELOPMENT key" in m or "development keyring" in m for m in messages)
    assert any(r.get("key_file") == str(key_file) for r in records)
    assert "serving" in messages
    # The embedded SQLite database: coalesced unary Verify by default ("auto").
    assert next(r for r in records if r["msg"] == "serving")["coalesce_verify"] is True
    assert "draining: health is NOT_SERVING, still serving" in messages
    # The cancelled Watch stream may write its access line after the stop.
    lifecycle = [record["msg"] for record in records if record["logger"] != "totpd.access"]
    assert lifecycle[-1] == "stopped"
    assert [r["method"] for r in records if r["logger"] == "totpd.access"].count(
        "/totpd.v1.TotpService/Enroll"
    ) == 1
    key_bytes = json.loads(key_file.read_text())["keys"]
    for leak in [secret, uri, *key_bytes.values()]:
        assert leak not in stderr


@pytest.mark.slow  # a `totpd serve` process
def test_second_start_reuses_the_dev_key(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    with dev_server(tmp_path, subprocess_env) as (process, _):
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=GRACE_SECONDS + 10)
    key = (tmp_path / "data" / "totpd.key").read_bytes()
    (tmp_path / "ready").unlink()
    with dev_server(tmp_path, subprocess_env) as (process, _):
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=GRACE_SECONDS + 10)
    assert process.returncode == 0
    assert (tmp_path / "data" / "totpd.key").read_bytes() == key
    assert "DEVELOPMENT" not in stderr


def test_missing_key_without_dev_is_a_clear_startup_error(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    result = run_totpd(
        "serve", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path), env=subprocess_env
    )
    assert result.returncode == 2
    assert f"no key file at {tmp_path / 'totpd.key'}" in result.stderr
    assert "totpd keygen" in result.stderr
    assert not (tmp_path / "totpd.key").exists()


def test_bad_configuration_is_a_clear_startup_error(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    result = run_totpd("serve", "--window", "3", env=subprocess_env)
    assert result.returncode == 2
    assert "window must be 0 or 1" in result.stderr
    env = {**subprocess_env, "TOTPD_MAX_WORKERS": "lots"}
    result = run_totpd("serve", env=env)
    assert result.returncode == 2
    assert "TOTPD_MAX_WORKERS: max_workers: expected an integer" in result.stderr


def test_config_file_is_read_and_validated(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    config = tmp_path / "totpd.toml"
    config.write_text("[policy]\nwindow = 2\n", encoding="utf-8")
    result = run_totpd("serve", "--config", str(config), env=subprocess_env)
    assert (result.returncode, result.stderr.strip()) == (
        2,
        "totpd: error: policy: window must be 0 or 1 (steps each side), got 2",
    )
    env = {**subprocess_env, "TOTPD_CONFIG": str(config)}
    assert "window must be 0 or 1" in run_totpd("serve", env=env).stderr
    # A flag overrides the file: the error is now about the missing key file.
    result = run_totpd(
        "serve",
        "--config",
        str(config),
        "--window",
        "0",
        "--data-dir",
        str(tmp_path),
        env=subprocess_env,
    )
    assert result.returncode == 2
    assert "no key file" in result.stderr


@pytest.mark.slow  # a `totpd serve` process
def test_address_in_use_is_a_clear_startup_error(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    with dev_server(tmp_path, subprocess_env) as (process, address):
        result = run_totpd(
            "serve",
            "--dev",
            "--listen",
            address,
            "--data-dir",
            str(tmp_path / "data"),
            env=subprocess_env,
        )
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=GRACE_SECONDS + 10)
    assert result.returncode == 2
    assert f"cannot listen on {address}" in result.stderr
    assert "choose another with --listen HOST:PORT" in result.stderr


def test_unknown_cpu_path_is_a_clear_startup_error(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    env = {**subprocess_env, "TOTPD_CPU_PATH": "sse9"}
    result = run_totpd("serve", "--dev", "--data-dir", str(tmp_path), env=env)
    assert result.returncode == 2
    (last_line,) = result.stderr.strip().splitlines()[-1:]
    assert last_line.startswith("totpd: error: CPU path unknown or not supported")
    assert "TOTPD_CPU_PATH=sse9; use one of auto, portable" in last_line
    assert "Traceback" not in result.stderr


def test_keygen_writes_once_and_never_overwrites(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    out = tmp_path / "keys" / "totpd.key"
    first = run_totpd("keygen", "--out", str(out), env=subprocess_env)
    assert first.returncode == 0, first.stderr
    keyring = Keyring.load(out)
    assert keyring.primary_key_id in first.stdout
    assert out.stat().st_mode & 0o777 == 0o600
    content = out.read_bytes()

    second = run_totpd("keygen", "--out", str(out), env=subprocess_env)
    assert second.returncode == 2
    assert "refusing to overwrite" in second.stderr
    assert out.read_bytes() == content


def test_migrate_creates_the_schema(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    from sqlalchemy import create_engine, inspect

    data_dir = tmp_path / "var"  # not there yet: created, as `serve` does
    result = run_totpd("migrate", "--data-dir", str(data_dir), env=subprocess_env)
    assert result.returncode == 0, result.stderr
    engine = create_engine(f"sqlite:///{data_dir / 'totpd.sqlite3'}")
    try:
        assert "factors" in inspect(engine).get_table_names()
    finally:
        engine.dispose()
    again = run_totpd("migrate", "--data-dir", str(data_dir), env=subprocess_env)
    assert again.returncode == 0, again.stderr
