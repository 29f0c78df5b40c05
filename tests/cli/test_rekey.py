"""`totpd rekey` and `totpd keys status`, as the operator runs them (a process), on both
databases: a rotation that finishes, a run killed half-way and resumed, the refusals."""

from __future__ import annotations

import base64
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from tests.audit_rows import AUDIT_TRAIL
from tests.conftest import Clock
from tests.enrollments import enroll_active
from tests.keyrings import (
    database_url,
    keyring_of,
    live_secrets_by_key,
    new_keys,
    write_keyring,
)
from tests.rpc.conftest import Secrets, make_settings
from tests.rpc.harness import LiveServer, running_server
from tests.totp_oracle import code_at, wire_code_at
from totpd import calls
from totpd.calls import CallScope
from totpd.cli.keys import KEY_MISSING_EXIT
from totpd.service.mfa import MfaService
from totpd.service.policy import Policy
from totpd.service.types import Enrollment, EnrollParams, VerifyItem, VerifyResult
from totpd.store import FactorStore
from totpd.v1 import factor_pb2
from totpd.v1 import totp_service_pb2 as pb


def totpd(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "totpd", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class Rotation:
    """Factors enrolled under key A; a keyring file that adds key B as the primary."""

    def __init__(self, engine: Engine, tmp_path: Path, clock: Clock) -> None:
        self.keys = new_keys(2)
        self.a, self.b = self.keys
        self.engine = engine
        self.clock = clock
        self.store = FactorStore(engine)
        self.under_a = MfaService(
            self.store, keyring_of(self.keys, self.a, self.a), Policy(), clock
        )
        self.key_file = write_keyring(tmp_path / "keyring.json", self.keys, self.b)
        self.flags = ["--database-url", database_url(engine), "--key-file", str(self.key_file)]

    def enroll(self, count: int, prefix: str) -> list[tuple[str, Enrollment]]:
        return [
            (f"{prefix}-{i}", enroll_active(self.under_a, self.clock, f"{prefix}-{i}"))
            for i in range(count)
        ]

    def only_b(self) -> MfaService:
        return MfaService(self.store, keyring_of(self.keys, self.b, self.b), Policy(), self.clock)


def ids(enrolled: list[tuple[str, Enrollment]]) -> list[str]:
    return [enrollment.factor.factor_id for _, enrollment in enrolled]


def assert_all_verify(
    service: MfaService, enrolled: list[tuple[str, Enrollment]], now: float
) -> None:
    for account, enrollment in enrolled:
        outcome = service.verify(VerifyItem(account, code_at(enrollment, now)))
        assert outcome.result is VerifyResult.VALID, account


def test_rekey_moves_every_live_secret_to_the_primary_and_they_verify_under_it_alone(
    engine: Engine, tmp_path: Path, clock: Clock, subprocess_env: dict[str, str]
) -> None:
    rotation = Rotation(engine, tmp_path, clock)
    a, b = rotation.a, rotation.b
    enrolled = rotation.enroll(6, f"rot-{a}")
    with calls.scoped(CallScope(caller="t", tenant="shop")):  # the tenant is in the binding
        enrolled.append((f"shop-{a}", enroll_active(rotation.under_a, clock, f"shop-{a}")))
    pending = rotation.under_a.enroll(EnrollParams(f"pending-{a}", "phone"))
    gone_account, gone = rotation.enroll(1, f"gone-{a}")[0]
    rotation.under_a.disable(gone_account, gone.factor.factor_id, None, True)
    everything = [*ids(enrolled), pending.factor.factor_id, gone.factor.factor_id]
    assert live_secrets_by_key(engine, everything) == {a: 8}

    done = totpd(subprocess_env, "rekey", "--batch-size", "3", *rotation.flags)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"primary key {b}: re-sealing 8 secret(s) (8 under {a}) in 3 batch(es) of 3"
    assert lines[1] == f"re-sealed 8 secret(s) under {b} in 3 batch(es)"
    assert lines[2] == f"  from {a}: 8"
    assert (
        lines[-1] == f"now: {b} seals 8 live secret(s); no live secret is sealed with another key"
    )
    assert "totpd rekey: 3/8 secret(s) done (37%)" in done.stderr
    assert "totpd rekey: 8/8 secret(s) done (100%)" in done.stderr
    assert live_secrets_by_key(engine, everything) == {b: 8}

    only_b = rotation.only_b()
    with calls.scoped(CallScope(caller="t", tenant="shop")):
        assert_all_verify(only_b, enrolled[-1:], clock.now)
    assert_all_verify(only_b, enrolled[:-1], clock.now)
    outcome, _ = only_b.confirm(
        f"pending-{a}", pending.factor.factor_id, code_at(pending, clock.now)
    )
    assert outcome.result is VerifyResult.VALID
    with engine.connect() as connection:
        events = connection.execute(
            text(
                "SELECT caller, tenant, account_id, status_code "
                f"FROM {AUDIT_TRAIL} WHERE method = 'Rekey'"
            )
        ).all()
    assert [(caller.startswith("cli:"), *rest) for caller, *rest in events] == [
        (True, "*", "*", "OK")
    ]

    again = totpd(subprocess_env, "rekey", *rotation.flags)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == (
        f"primary key {b}: every live secret is already sealed with it; nothing to re-seal"
    )


def test_a_dry_run_says_what_it_would_do_and_writes_nothing(
    engine: Engine, tmp_path: Path, clock: Clock, subprocess_env: dict[str, str]
) -> None:
    rotation = Rotation(engine, tmp_path, clock)
    enrolled = rotation.enroll(3, f"dry-{rotation.a}")
    done = totpd(subprocess_env, "rekey", "--dry-run", "--batch-size", "2", *rotation.flags)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f"primary key {rotation.b}: would re-seal 3 secret(s) (3 under {rotation.a}) "
        "in 2 batch(es) of 2 (dry run: nothing written)"
    )
    assert live_secrets_by_key(engine, ids(enrolled)) == {rotation.a: 3}


def status(
    env: dict[str, str], flags: list[str], returncode: int = 0
) -> dict[str, dict[str, object]]:
    done = totpd(env, "keys", "status", "--json", *flags)
    assert done.returncode == returncode, done.stderr
    return {key["key_id"]: key for key in json.loads(done.stdout)["keys"]}


@pytest.mark.slow
def test_keys_status_before_and_after_a_rotation(
    engine: Engine, tmp_path: Path, clock: Clock, subprocess_env: dict[str, str]
) -> None:
    rotation = Rotation(engine, tmp_path, clock)
    a, b = rotation.a, rotation.b
    rotation.enroll(3, f"st-{a}")
    holder = f"st-{a}-0"
    first_set = rotation.under_a.generate_recovery_codes(holder).codes  # hashed under A
    used = rotation.under_a.verify_recovery_code(holder, first_set[0])
    assert used.outcome.result is VerifyResult.VALID

    before = status(subprocess_env, rotation.flags)
    assert before[b] | {"verdict": ""} == {
        "key_id": b,
        "primary": True,
        "in_keyring": True,
        "state": "primary",
        "removable": False,
        "secrets": 0,
        "recovery_codes_unused": 0,
        "recovery_codes_used": 0,
        "recovery_code_accounts": 0,
        "request_records": 0,
        "request_records_until": None,
        "verdict": "",
    }
    assert (before[a]["secrets"], before[a]["state"]) == (3, "in-use")
    assert (before[a]["recovery_codes_unused"], before[a]["recovery_codes_used"]) == (9, 1)
    assert before[a]["recovery_code_accounts"] == 1
    text_out = totpd(subprocess_env, "keys", "status", *rotation.flags).stdout
    assert text_out.splitlines()[0].split() == (
        "KEY ID PRIMARY IN KEYRING SECRETS RECOVERY CODES REQUESTS STATE".split()
    )
    assert f"{a}: keep: removing it now would break things: 3 live secret(s)" in text_out
    assert "run `totpd rekey`" in text_out and "need a new set (GenerateRecoveryCodes)" in text_out

    assert totpd(subprocess_env, "rekey", *rotation.flags).returncode == 0
    after = status(subprocess_env, rotation.flags)
    assert (after[a]["secrets"], after[a]["state"], after[b]["secrets"]) == (0, "in-use", 3)
    assert "10 recovery code(s) (9 unused) of 1 account(s)" in str(after[a]["verdict"])

    # The account takes a new set from a server whose primary is B: A is free.
    server = MfaService(rotation.store, keyring_of(rotation.keys, b), Policy(), clock)
    second_set = server.generate_recovery_codes(holder).codes
    cleared = status(subprocess_env, rotation.flags)
    assert (cleared[a]["state"], cleared[a]["removable"]) == ("removable", True)
    assert (cleared[b]["recovery_codes_unused"], cleared[b]["recovery_code_accounts"]) == (10, 1)
    text_out = totpd(subprocess_env, "keys", "status", *rotation.flags).stdout
    assert f"{a}: may be removed: no live secret, recovery code or pending request uses it" in (
        text_out
    )
    valid = rotation.only_b().verify_recovery_code(holder, second_set[0])
    assert valid.outcome.result is VerifyResult.VALID

    # The old key dropped from the keyring too early: status says what breaks.
    write_keyring(rotation.key_file, {b: rotation.keys[b]}, b)
    rotation.enroll(1, f"late-{a}")  # a server still sealing with the old key
    missing = status(subprocess_env, rotation.flags, returncode=KEY_MISSING_EXIT)
    assert (missing[a]["state"], missing[a]["in_keyring"], missing[a]["secrets"]) == (
        "missing",
        False,
        1,
    )
    assert "MISSING from the keyring: 1 live secret(s) cannot be opened" in str(
        missing[a]["verdict"]
    )


def test_rekey_refuses_when_the_keyring_lacks_a_key_the_database_uses(
    engine: Engine, tmp_path: Path, clock: Clock, subprocess_env: dict[str, str]
) -> None:
    rotation = Rotation(engine, tmp_path, clock)
    enrolled = rotation.enroll(2, f"miss-{rotation.a}")
    write_keyring(rotation.key_file, {rotation.b: rotation.keys[rotation.b]}, rotation.b)
    for extra in ([], ["--dry-run"]):
        done = totpd(subprocess_env, "rekey", *extra, *rotation.flags)
        assert done.returncode == 2
        assert done.stderr.startswith(
            f"totpd: error: the keyring at {rotation.key_file} lacks key id(s) {rotation.a}, "
            "which 2 stored secret(s) are sealed with: rekey cannot open them."
        )
        assert "Traceback" not in done.stderr
    assert live_secrets_by_key(engine, ids(enrolled)) == {rotation.a: 2}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["rekey", "--batch-size", "0"], "--batch-size: must be between 1 and 10000, got 0"),
        (["rekey", "--batch-size", "many"], "--batch-size: 'many' is not a whole number"),
        (["rekey", "--retries", "-1"], "--retries: must be between 0 and 100, got -1"),
        (["rekey", "--bogus"], "unrecognized arguments: --bogus"),
        (["keys", "status", "--json", "yes"], "unrecognized arguments: yes"),
        (["keys", "rotate"], "invalid choice: 'rotate' (choose from 'status')"),
    ],
)
def test_bad_flags_are_usage_errors(
    args: list[str], message: str, tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    done = totpd(subprocess_env, *args, "--data-dir", str(tmp_path))
    assert done.returncode == 2
    assert not (tmp_path / "totpd.sqlite3").exists()
    assert message in done.stderr


@pytest.mark.parametrize("command", [["rekey"], ["keys", "status"]])
def test_without_a_keyring_or_a_database(
    command: list[str], tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    no_keyring = totpd(subprocess_env, *command, "--key-file", str(tmp_path / "none.json"))
    assert no_keyring.returncode == 2
    assert no_keyring.stderr.startswith(f"totpd: error: no keyring at {tmp_path / 'none.json'}")
    keys = new_keys(1)
    key_file = write_keyring(tmp_path / "k.json", keys, next(iter(keys)))
    retries = ["--retries", "1"] if command == ["rekey"] else []
    url = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    down = totpd(
        subprocess_env, *command, *retries, "--key-file", str(key_file), "--database-url", url
    )
    assert down.returncode == 1
    assert "totpd: error: the database failed: " in down.stderr
    assert "Traceback" not in down.stderr


def _wait_for_line(process: subprocess.Popen[str], prefix: str, timeout: float) -> str:
    """The first stderr line starting with `prefix` (the run's own log lines pass by)."""
    assert process.stderr is not None
    ends = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < ends:
        ready, _, _ = select.select([process.stderr], [], [], 1.0)
        if not ready:
            continue
        line = process.stderr.readline()
        if not line:
            break
        seen.append(line)
        if line.startswith(prefix):
            return line.strip()
    raise AssertionError(f"no {prefix!r} line; stderr so far: {''.join(seen)[-2000:]}")


@pytest.mark.slow
def test_a_run_killed_half_way_resumes_with_nothing_lost_or_sealed_twice(
    engine: Engine, tmp_path: Path, clock: Clock, subprocess_env: dict[str, str]
) -> None:
    rotation = Rotation(engine, tmp_path, clock)
    a, b = rotation.a, rotation.b
    enrolled = rotation.enroll(12, f"kill-{a}")
    # Each batch after the first waits a minute inside its transaction: killed there.
    process = subprocess.Popen(
        [sys.executable, "-m", "totpd", "rekey", "--batch-size", "4", "--hold-seconds", "60",
         *rotation.flags],
        env=subprocess_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        first = _wait_for_line(process, "totpd rekey: ", timeout=60)
        assert first == "totpd rekey: 4/12 secret(s) done (33%)"
        time.sleep(1.0)  # the second batch written, not committed
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert live_secrets_by_key(engine, ids(enrolled)) == {a: 8, b: 4}

    resumed = totpd(subprocess_env, "rekey", "--batch-size", "4", *rotation.flags)
    assert resumed.returncode == 0, resumed.stderr
    lines = resumed.stdout.splitlines()
    assert lines[0] == f"primary key {b}: re-sealing 8 secret(s) (8 under {a}) in 2 batch(es) of 4"
    assert lines[1:3] == [f"re-sealed 8 secret(s) under {b} in 2 batch(es)", f"  from {a}: 8"]
    assert live_secrets_by_key(engine, ids(enrolled)) == {b: 12}
    # Sealed once each: a secret sealed twice would not verify under B alone.
    assert_all_verify(rotation.only_b(), enrolled, clock.now)


def test_a_secret_that_fails_authentication_is_named_and_the_rest_moves(
    engine: Engine, tmp_path: Path, clock: Clock, subprocess_env: dict[str, str]
) -> None:
    rotation = Rotation(engine, tmp_path, clock)
    enrolled = rotation.enroll(3, f"bad-{rotation.a}")
    broken = enrolled[1][1].factor.factor_id
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE factors SET secret_nonce = :n WHERE id = :id"),
            {"n": b"\x00" * 12, "id": broken},
        )
    done = totpd(subprocess_env, "rekey", *rotation.flags)
    assert done.returncode == 1
    assert (
        f"factor {broken}: its secret under {rotation.a} failed authentication; it cannot be "
        "re-sealed and its factor answers SECRET_UNAVAILABLE (enroll it again)"
    ) in done.stdout
    assert f"  from {rotation.a}: 2" in done.stdout
    assert done.stdout.splitlines()[-1] == (
        f"now: {rotation.b} seals 2 live secret(s); still 1 under {rotation.a}: the secret(s) "
        "that failed authentication (above)"
    )
    assert live_secrets_by_key(engine, ids(enrolled)) == {rotation.b: 2, rotation.a: 1}
    with engine.connect() as connection:
        event = connection.execute(
            text(
                f"SELECT status_code, error_reason FROM {AUDIT_TRAIL} WHERE method = 'Rekey' "
                "ORDER BY id DESC"
            )
        ).first()
    assert tuple(event or ()) == ("INTERNAL", "SECRET_UNAVAILABLE")


def _enroll_over_grpc(live: LiveServer, account: str, secrets_seen: Secrets) -> pb.EnrollResponse:
    response = live.stub.Enroll(pb.EnrollRequest(account_id=account), timeout=10)
    secrets_seen.add(response.secret_base32, response.otpauth_uri)
    confirmed = live.stub.ConfirmEnrollment(
        pb.ConfirmEnrollmentRequest(
            account_id=account,
            factor_id=response.factor.factor_id,
            code=_wire_code(response, time.time()),
        ),
        timeout=10,
    )
    assert confirmed.outcome.result == factor_pb2.VERIFY_RESULT_VALID
    return response


def _wire_code(response: pb.EnrollResponse, now: float) -> str:
    factor = response.factor
    return wire_code_at(
        response.secret_base32, factor.algorithm, factor.digits, factor.period_seconds, now
    )


def _verify(live: LiveServer, account: str, response: pb.EnrollResponse, now: float) -> int:
    request = pb.VerifyRequest(account_id=account, code=_wire_code(response, now))
    return int(live.stub.Verify(request, timeout=10).outcome.result)


@pytest.mark.slow
def test_rekey_beside_a_live_server_then_the_old_key_goes(
    tmp_path: Path, subprocess_env: dict[str, str], secrets_seen: Secrets
) -> None:
    from totpd.app import build_service

    settings = make_settings(tmp_path)
    with running_server(settings, build_service(settings)) as live:  # keyring: key A only
        enrolled = {
            f"live-{i}": _enroll_over_grpc(live, f"live-{i}", secrets_seen) for i in range(8)
        }
    document = json.loads(settings.key_file.read_text())
    (a,) = document["keys"]
    keys = {a: base64.b64decode(document["keys"][a]), **new_keys(1)}
    b = next(key for key in keys if key != a)
    write_keyring(settings.key_file, keys, b)  # step 2: B is primary, A still opens

    with running_server(settings, build_service(settings)) as live:
        rekey = subprocess.Popen(
            [sys.executable, "-m", "totpd", "rekey", "--batch-size", "2", "--hold-seconds",
             "0.2", "--data-dir", str(settings.data_dir), "--key-file", str(settings.key_file)],
            env=subprocess_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        # Once its first batch is in, verifications (each account's next step) and a new
        # enrollment while the next batches hold their transactions open.
        _wait_for_line(rekey, "totpd rekey: ", timeout=60)
        results = [_verify(live, account, r, time.time() + 30) for account, r in enrolled.items()]
        enrolled["live-new"] = _enroll_over_grpc(live, "live-new", secrets_seen)
        out, err = rekey.communicate(timeout=120)
    assert rekey.returncode == 0, err
    assert results == [factor_pb2.VERIFY_RESULT_VALID] * 8
    assert f"re-sealed 8 secret(s) under {b} in 4 batch(es)" in out
    assert "; no live secret is sealed with another key" in out  # 8 or 9: the enrollment raced

    status = totpd(
        subprocess_env, "keys", "status", "--json", "--data-dir", str(settings.data_dir),
        "--key-file", str(settings.key_file),
    )  # fmt: skip
    states = {
        key["key_id"]: (key["state"], key["secrets"]) for key in json.loads(status.stdout)["keys"]
    }
    assert states == {a: ("removable", 0), b: ("primary", 9)}
    write_keyring(settings.key_file, {b: keys[b]}, b)  # step 5: A leaves; the server starts
    with running_server(settings, build_service(settings)) as live:
        after = {_verify(live, account, r, time.time() + 30) for account, r in enrolled.items()}
    # The code matched under key B alone: VALID, or REPLAYED where that step was used above.
    assert after <= {factor_pb2.VERIFY_RESULT_VALID, factor_pb2.VERIFY_RESULT_REPLAYED}
