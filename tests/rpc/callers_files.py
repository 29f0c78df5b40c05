"""Callers files and credentials for the tests of caller resolution (rpc/callers.py)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from totpd.service.access import PERMISSIONS, new_token, token_sha256


@dataclass
class TestCaller:
    """A caller of a test's callers file; `token` None for one named by its certificate."""

    __test__ = False  # not a test class

    name: str
    tenants: Sequence[str] = ("shop",)
    permissions: Sequence[str] = PERMISSIONS
    token: str | None = field(default_factory=new_token)

    def metadata(self, tenant: str | None = None) -> list[tuple[str, str]]:
        """The call metadata: its bearer token, and `x-totpd-tenant` when given."""
        pairs = [("authorization", f"Bearer {self.token}")] if self.token else []
        if tenant is not None:
            pairs.append(("x-totpd-tenant", tenant))
        return pairs


def callers_toml(callers: Sequence[TestCaller]) -> str:
    """The file's text: names, token hashes, tenants, permissions; never a token."""
    blocks = []
    for caller in callers:
        lines = ["[[callers]]", f"name = {json.dumps(caller.name)}"]
        if caller.token is not None:
            lines.append(f'token_sha256 = "{token_sha256(caller.token)}"')
        lines.append(f"tenants = {json.dumps(list(caller.tenants))}")
        lines.append(f"permissions = {json.dumps(list(caller.permissions))}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def write_callers(path: Path, callers: Sequence[TestCaller] | str) -> Path:
    """Write the file whole (a new inode, as editors and config management do)."""
    text = callers if isinstance(callers, str) else callers_toml(callers)
    temporary = path.with_name(path.name + ".new")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
    return path
