"""The callers file over a real server: token hashes, reloads (good and broken), callers
under concurrency while the file changes, and the parsing rules."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from tests.rpc.callers_files import TestCaller, callers_toml, write_callers
from tests.rpc.conftest import Secrets, make_settings
from tests.rpc.harness import LiveServer, LogCapture, call_fails, running_server
from totpd.app import build_service
from totpd.config import ConfigError, Settings
from totpd.rpc.callers import load_access
from totpd.service.access import CallersFileError, parse_callers, token_sha256
from totpd.v1 import totp_service_pb2 as pb

REQUEST = pb.ListFactorsRequest(account_id="alice")
READER = TestCaller("reader", permissions=["read"])
HASH = "ab" * 32


def wait_until(check: Callable[[], bool], seconds: float = 6.0) -> bool:
    """Poll `check` until true (a reload is noticed within about a second)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def allowed(live: LiveServer, caller: TestCaller) -> bool:
    try:
        live.stub.ListFactors(REQUEST, metadata=caller.metadata(), timeout=10)
    except grpc.RpcError as error:
        assert error.code() is grpc.StatusCode.UNAUTHENTICATED
        return False
    return True


@pytest.fixture
def callers_settings(tmp_path: Path) -> Settings:
    return replace(make_settings(tmp_path), callers_file=tmp_path / "callers.toml")


@pytest.fixture
def reader_server(callers_settings: Settings, secrets_seen: Secrets) -> LiveServer:
    secrets_seen.add(READER.token or "")
    assert callers_settings.callers_file is not None
    write_callers(callers_settings.callers_file, [READER])
    with running_server(callers_settings, build_service(callers_settings)) as live:
        yield live  # type: ignore[misc]


def test_a_token_differing_in_one_character_is_refused(reader_server: LiveServer) -> None:
    assert READER.token is not None
    assert allowed(reader_server, READER)
    for index in (len("totpd_"), len(READER.token) // 2, len(READER.token) - 1):
        character = READER.token[index]
        changed = "A" if character != "A" else "B"
        forged = replace(READER, token=READER.token[:index] + changed + READER.token[index + 1 :])
        got = call_fails(reader_server.stub.ListFactors, REQUEST, metadata=forged.metadata())
        assert got.reason == "ERROR_REASON_UNAUTHENTICATED"
        assert READER.token not in got.message and forged.token not in got.message
    for bad in ("Bearer", "Basic dXNlcjpwYXNz", f"bearer  {READER.token}x"):
        got = call_fails(reader_server.stub.ListFactors, REQUEST, metadata=[("authorization", bad)])
        assert got.reason == "ERROR_REASON_UNAUTHENTICATED"


def test_the_callers_file_holds_only_hashes(callers_settings: Settings) -> None:
    """The file a test server runs on has no token in it; a token pasted where its hash
    belongs is refused at startup, with a message that does not repeat it."""
    text = callers_toml([READER])
    assert READER.token is not None and READER.token not in text
    assert token_sha256(READER.token) in text
    pasted = text.replace(token_sha256(READER.token), READER.token)
    assert callers_settings.callers_file is not None
    write_callers(callers_settings.callers_file, pasted)
    with pytest.raises(ConfigError, match="never the token itself") as caught:
        load_access(callers_settings)
    assert READER.token not in str(caught.value)


def test_a_changed_file_takes_effect_and_a_broken_one_is_refused(
    reader_server: LiveServer,
    callers_settings: Settings,
    secrets_seen: Secrets,
    no_secrets_in_logs: LogCapture,
) -> None:
    path = callers_settings.callers_file
    assert path is not None
    newcomer = TestCaller("newcomer", permissions=["read"])
    secrets_seen.add(newcomer.token or "")
    assert not allowed(reader_server, newcomer)
    write_callers(path, [READER, newcomer])
    assert wait_until(lambda: allowed(reader_server, newcomer))
    reloaded = [json.loads(line) for line in no_secrets_in_logs.lines if "callers reloaded" in line]
    assert [line["callers"] for line in reloaded] == [2]

    # A typo: refused with a warning; both callers keep working.
    write_callers(path, callers_toml([READER]).replace("permissions", "permisions"))

    def refused() -> bool:  # the file is checked on a call
        assert allowed(reader_server, READER)
        return any("does not load" in line for line in no_secrets_in_logs.lines)

    assert wait_until(refused)
    assert allowed(reader_server, READER) and allowed(reader_server, newcomer)
    warning = next(json.loads(line) for line in no_secrets_in_logs.lines if "does not load" in line)
    assert warning["level"] == "WARNING" and "permisions" in warning["error"]

    # Removing a caller takes effect too.
    write_callers(path, [READER])
    assert wait_until(lambda: not allowed(reader_server, newcomer))
    assert allowed(reader_server, READER)


def test_concurrent_callers_are_each_attributed_while_the_file_reloads(
    reader_server: LiveServer,
    callers_settings: Settings,
    secrets_seen: Secrets,
    no_secrets_in_logs: LogCapture,
) -> None:
    """Eight callers, each with its own token and tenant, call at once (caller i makes
    5 + i calls) while the file is rewritten; every access line names its own caller
    and tenant, and each caller has exactly its count."""
    path = callers_settings.callers_file
    assert path is not None
    team = [TestCaller(f"svc-{i}", tenants=[f"t{i}"], permissions=["read"]) for i in range(8)]
    secrets_seen.add(*(caller.token or "" for caller in team))
    write_callers(path, [READER, *team])
    assert wait_until(lambda: allowed(reader_server, team[-1]))
    no_secrets_in_logs.lines.clear()
    start = threading.Barrier(len(team) + 1)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            start.wait(timeout=10)
            for _ in range(5 + index):
                reader_server.stub.ListFactors(REQUEST, metadata=team[index].metadata(), timeout=10)
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(team))]
    for thread in threads:
        thread.start()
    start.wait(timeout=10)
    for round_ in range(6):  # the same callers, in another order: each a real reload
        order = team[round_ % len(team) :] + team[: round_ % len(team)]
        write_callers(path, [*order, READER])
        time.sleep(0.25)
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors[:1]
    lines = [json.loads(line) for line in no_secrets_in_logs.lines]
    served = [line for line in lines if line.get("logger") == "totpd.access"]
    assert all(line["code"] == "OK" for line in served)
    assert all(line["tenant"] == "t" + line["caller"].removeprefix("svc-") for line in served)
    assert Counter(line["caller"] for line in served) == {
        f"svc-{i}": 5 + i for i in range(len(team))
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[[callers]]\nname = "a"\npermissions = ["verify"]\ncolour = "red"\n',
            "unknown key 'colour'",
        ),
        ('[[callers]]\nname = "a"\npermissions = ["verfy"]\n', "unknown permission 'verfy'"),
        (
            '[[callers]]\nname = "a"\npermissions = []\n' * 2,
            "caller #2 ('a'): the name is already used",
        ),
        (
            f'[[callers]]\nname = "a"\ntoken_sha256 = "{HASH}"\npermissions = []\n'
            f'[[callers]]\nname = "b"\ntoken_sha256 = ["{HASH}"]\npermissions = []\n',
            "also 'a''s",
        ),
        ('[[callers]]\nname = "a"\ntoken_sha256 = "abc"\npermissions = []\n', "64 lowercase hex"),
        ('[[callers]]\nname = "a"\n', "needs permissions"),
        ('[[callers]]\nname = "local"\npermissions = []\n', "reserved"),
        (
            '[[callers]]\nname = "a"\ntenants = ["no spaces"]\npermissions = []\n',
            "not a tenant name",
        ),
        ('[[callers]]\nname = "a"\ntenants = []\npermissions = []\n', "at least one tenant"),
        ("callers = 3\n", "array of tables"),
        ("[[caller]]\n", "unknown key 'caller'"),
        ("[[callers]\n", "not valid TOML"),
    ],
)
def test_the_callers_file_is_checked_strictly(text: str, message: str) -> None:
    with pytest.raises(CallersFileError, match=r"callers\.toml") as caught:
        parse_callers(text, "callers.toml")
    assert message in str(caught.value)


def test_token_hashes_rotate_side_by_side() -> None:
    """A caller may hold two hashes while its clients move from the old token to the new."""
    old, new = TestCaller("login"), TestCaller("login")
    assert old.token is not None and new.token is not None
    text = (
        '[[callers]]\nname = "login"\n'
        f'token_sha256 = ["{token_sha256(old.token)}", "{token_sha256(new.token)}"]\n'
        'tenants = ["shop"]\npermissions = ["verify"]\n'
    )
    directory = parse_callers(text, "callers.toml")
    assert directory.by_token(old.token) is directory.by_token(new.token) is not None
    assert directory.by_token(old.token[:-1]) is None
