"""Keyrings with several keys, for the key-rotation tests (`totpd rekey`, `keys status`)."""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections import Counter
from pathlib import Path

from sqlalchemy import Engine, text

from totpd.crypto import Keyring


def new_keys(count: int) -> dict[str, bytes]:
    """`count` fresh keys with ids unique to the test (the PostgreSQL tests share a database)."""
    return {"k" + secrets.token_hex(4): os.urandom(32) for _ in range(count)}


def write_keyring(path: Path, keys: dict[str, bytes], primary: str) -> Path:
    document = {
        "primary": primary,
        "keys": {key_id: base64.b64encode(key).decode() for key_id, key in keys.items()},
    }
    path.write_text(json.dumps(document), encoding="utf-8")
    path.chmod(0o600)
    return path


def keyring_of(keys: dict[str, bytes], primary: str, *only: str) -> Keyring:
    """A keyring of `keys` (or of the ids in `only`) with `primary`."""
    chosen = {key_id: keys[key_id] for key_id in (only or keys)}
    return Keyring(chosen, primary)


def live_secrets_by_key(engine: Engine, factor_ids: list[str]) -> Counter[str]:
    """The key id of each of these factors' live secrets, counted; formats other than 2
    count under "format N"."""
    found: Counter[str] = Counter()
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT id, secret_key_id, secret_format FROM factors "
                "WHERE secret_ciphertext IS NOT NULL"
            )
        ).all()
    wanted = set(factor_ids)
    for factor_id, key_id, secret_format in rows:
        if factor_id in wanted:
            found[key_id if secret_format == 2 else f"format {secret_format}"] += 1
    return found


def database_url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)
