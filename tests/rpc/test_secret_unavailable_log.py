"""Every SECRET_UNAVAILABLE logs one ERROR line naming the factor and the key id,
and nothing secret: not the secret, the code, the URI or the key. One line per
occurrence, none twice (the engine logs it; the gRPC layer does not again).
A real server on both databases, with a keyring that cannot open the secrets."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.conftest import Clock
from tests.enrollments import enroll_active
from tests.rpc.conftest import Secrets, make_settings
from tests.rpc.harness import LogCapture, call_fails, running_server
from tests.totp_oracle import code_at
from totpd.crypto import Keyring, write_new_keyring
from totpd.service.mfa import MfaService
from totpd.service.policy import Policy
from totpd.service.types import EnrollParams
from totpd.store import FactorStore
from totpd.v1 import errors_pb2
from totpd.v1 import totp_service_pb2 as pb


def keyring_missing_the_key(tmp_path: Path) -> Keyring:
    path = tmp_path / "other.key"
    write_new_keyring(path)
    return Keyring.load(path)


def keyring_with_a_wrong_key(tmp_path: Path, sealing: Keyring) -> Keyring:
    """The same key id, other key bytes: the secret fails authentication."""
    path = tmp_path / "wrong.key"
    wrong = base64.b64encode(bytes(32)).decode()
    key_id = sealing.primary_key_id
    path.write_text(json.dumps({"primary": key_id, "keys": {key_id: wrong}}))
    return Keyring.load(path)


def secret_lines(capture: LogCapture) -> list[dict[str, object]]:
    records = [json.loads(line) for line in capture.lines]
    return [r for r in records if r["level"] == "ERROR"]


@pytest.mark.parametrize("opening", ["key id not in the keyring", "wrong key"])
def test_each_secret_unavailable_logs_one_error_line_with_factor_and_key_ids(
    engine: Engine,
    keyring: Keyring,
    clock: Clock,
    tmp_path: Path,
    secrets_seen: Secrets,
    no_secrets_in_logs: LogCapture,
    opening: str,
) -> None:
    sealing = MfaService(FactorStore(engine), keyring, Policy(), clock)
    active = enroll_active(sealing, clock, "alice")
    pending = sealing.enroll(EnrollParams("alice", "tablet"))
    code = code_at(active, clock.now)
    for enrolled in (active, pending):
        secrets_seen.add(enrolled.secret_base32, enrolled.otpauth_uri)
    secrets_seen.add(code, code_at(pending, clock.now))

    opener = (
        keyring_missing_the_key(tmp_path)
        if opening == "key id not in the keyring"
        else keyring_with_a_wrong_key(tmp_path, keyring)
    )
    settings = make_settings(tmp_path / "server")
    secrets_seen.add(*_keys(tmp_path))
    service = MfaService(FactorStore(engine), opener, Policy(), clock)
    with running_server(settings, service) as live:
        verify = call_fails(live.stub.Verify, pb.VerifyRequest(account_id="alice", code=code))
        confirm = call_fails(
            live.stub.ConfirmEnrollment,
            pb.ConfirmEnrollmentRequest(
                account_id="alice",
                factor_id=pending.factor.factor_id,
                code=code_at(pending, clock.now),
            ),
        )
        batch = live.stub.BatchVerify(
            pb.BatchVerifyRequest(items=[pb.BatchVerifyItem(account_id="alice", code=code)]),
            timeout=10,
        )

    assert {(f.code.name, f.reason) for f in (verify, confirm)} == {
        ("INTERNAL", "ERROR_REASON_SECRET_UNAVAILABLE")
    }
    (item,) = batch.results
    assert item.error.reason == errors_pb2.ERROR_REASON_SECRET_UNAVAILABLE
    lines = secret_lines(no_secrets_in_logs)
    assert [(r["msg"], r["factor_id"], r["key_id"]) for r in lines] == [
        ("stored secret cannot be opened", active.factor.factor_id, keyring.primary_key_id),
        ("stored secret cannot be opened", pending.factor.factor_id, keyring.primary_key_id),
        ("stored secret cannot be opened", active.factor.factor_id, keyring.primary_key_id),
    ]
    assert all(r["logger"] == "totpd.service" and "exc" not in r for r in lines)


def _keys(tmp_path: Path) -> list[str]:
    """Every key (base64) of every keyring file the test wrote, to check none is logged."""
    found: list[str] = []
    for path in tmp_path.rglob("*"):
        if path.suffix in (".key", ".json"):
            found.extend(json.loads(path.read_text())["keys"].values())
    assert len(found) >= 3
    return found
