"""`totpctl audit` and iter_audit_events against a real totpd (the implicit local caller: admin)."""

from __future__ import annotations

import json
import uuid

import pytest

from totpd_client import TotpdClient
from totpd_client.cli.totpctl import main


def test_totpctl_audit_lists_an_enrollment(
    client: TotpdClient, totpd_target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    account = f"py-live-audit-{uuid.uuid4()}"
    enrolled = client.enroll(account, "phone")
    events = list(client.iter_audit_events(account_id=account))
    assert [(e.method, e.factor_id, e.status_code) for e in events] == [
        ("Enroll", enrolled.factor.factor_id, "OK")
    ]
    capsys.readouterr()
    assert main(["--server", totpd_target, "audit", "--account", account, "--json"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    row = json.loads(line)
    assert (row["method"], row["account_id"], row["caller"]) == ("Enroll", account, "local")
    assert enrolled.secret_base32 not in line
    assert main(["--server", totpd_target, "audit", "--account", account, "--since", "1h"]) == 0
    assert f"method=Enroll caller=local tenant=default account={account}" in capsys.readouterr().out
