"""`totpd token new`, and `totpd serve` with and without a callers file: the secure
default (no anonymous callers beyond loopback) and a real process serving its callers."""

from __future__ import annotations

import hashlib
import signal
import tomllib
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from tests.cli.processes import dev_server, run_totpd
from tests.rpc.conftest import Secrets
from tests.rpc.harness import LogCapture
from totpd.config import ConfigError, Settings, load_settings
from totpd.rpc.callers import load_access, warn_if_anonymous
from totpd.service.access import parse_callers
from totpd.v1 import totp_service_pb2 as pb
from totpd.v1 import totp_service_pb2_grpc


def new_token(subprocess_env: dict[str, str], *args: str) -> tuple[str, str]:
    result = run_totpd("token", "new", *args, env=subprocess_env)
    assert result.returncode == 0, result.stderr
    token, _, entry = result.stdout.partition("\n")
    return token, entry


def test_token_new_prints_a_token_once_and_the_entry_holding_its_hash(
    subprocess_env: dict[str, str], secrets_seen: Secrets
) -> None:
    token, entry = new_token(
        subprocess_env,
        "login",
        "--tenant",
        "shop",
        "--permission",
        "verify",
        "--permission",
        "enroll",
    )
    secrets_seen.add(token)
    assert token.startswith("totpd_") and len(token) >= 6 + 43  # 256 bits, URL-safe base64
    assert token not in entry
    (caller,) = tomllib.loads(entry)["callers"]
    assert caller == {
        "name": "login",
        "token_sha256": hashlib.sha256(token.encode()).hexdigest(),
        "tenants": ["shop"],
        "permissions": ["verify", "enroll"],
    }
    found = parse_callers(entry, "entry").by_token(token)
    assert found is not None and found.name == "login"
    other, _ = new_token(subprocess_env, "login")
    secrets_seen.add(other)
    assert other != token


def test_token_new_defaults_and_refusals(subprocess_env: dict[str, str]) -> None:
    _token, entry = new_token(subprocess_env, "spiffe://example.org/ns/payments/sa/stepup")
    (caller,) = tomllib.loads(entry)["callers"]
    assert (caller["tenants"], caller["permissions"]) == (["default"], ["verify"])
    refused = run_totpd("token", "new", "a", "--tenant", "no spaces", env=subprocess_env)
    assert refused.returncode == 2 and "not a tenant name" in refused.stderr
    assert refused.stdout == ""  # no token printed for an entry that would not load
    refused = run_totpd("token", "new", "local", env=subprocess_env)
    assert refused.returncode == 2 and "reserved" in refused.stderr


def test_serving_beyond_loopback_needs_a_callers_file(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    result = run_totpd(
        "serve", "--dev", "--listen", "0.0.0.0:0", "--data-dir", str(tmp_path), env=subprocess_env
    )
    assert result.returncode == 2
    assert "beyond loopback, with no callers_file" in result.stderr
    assert "--allow-anonymous" in result.stderr
    assert not (tmp_path / "totpd.key").exists()  # refused before anything was created


def test_a_broken_callers_file_stops_the_start(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    callers = tmp_path / "callers.toml"
    callers.write_text('[[callers]]\nname = "a"\npermissions = ["all"]\n', encoding="utf-8")
    result = run_totpd(
        "serve",
        "--dev",
        "--data-dir",
        str(tmp_path),
        "--callers-file",
        str(callers),
        env=subprocess_env,
    )
    assert result.returncode == 2
    assert "unknown permission 'all'" in result.stderr and "caller #1 ('a')" in result.stderr


def test_allow_anonymous_is_accepted_and_warned_about(no_secrets_in_logs: LogCapture) -> None:
    wide = load_settings(None, {"listen_address": "0.0.0.0:50051"}, environ={})
    with pytest.raises(ConfigError, match="allow-anonymous"):
        load_access(wide)
    anonymous = replace(wide, allow_anonymous=True)
    assert load_access(anonymous).callers is None
    assert warn_if_anonymous(anonymous, "0.0.0.0:50051")
    assert not warn_if_anonymous(Settings(), "127.0.0.1:50051")
    assert (
        sum("no callers file (allow_anonymous)" in line for line in no_secrets_in_logs.lines) == 1
    )
    flags = load_settings(None, {"allow_anonymous": True}, environ={})
    assert flags.allow_anonymous


def test_a_served_process_answers_its_callers_only(
    tmp_path: Path, subprocess_env: dict[str, str], secrets_seen: Secrets
) -> None:
    token, entry = new_token(subprocess_env, "reader", "--permission", "read")
    secrets_seen.add(token)
    callers = tmp_path / "callers.toml"
    callers.write_text(entry + "\n", encoding="utf-8")
    with dev_server(tmp_path, subprocess_env, "--callers-file", str(callers)) as (process, address):
        with grpc.insecure_channel(address) as channel:
            stub = totp_service_pb2_grpc.TotpServiceStub(channel)
            request = pb.ListFactorsRequest(account_id="alice")
            with pytest.raises(grpc.RpcError) as caught:
                stub.ListFactors(request, timeout=10)
            assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
            with pytest.raises(grpc.RpcError) as caught:
                stub.Enroll(
                    pb.EnrollRequest(account_id="alice"),
                    metadata=[("authorization", f"Bearer {token}")],
                    timeout=10,
                )
            assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
            listed = stub.ListFactors(
                request, metadata=[("authorization", f"Bearer {token}")], timeout=10
            )
            assert list(listed.factors) == []
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0
    assert '"caller": "reader"' in stderr and token not in stderr
