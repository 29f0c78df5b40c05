"""Server settings: one typed record, filled from defaults, a TOML file, the
environment (TOTPD_*) and command-line flags, later sources winning."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from totpd.service.policy import Policy

DEFAULT_DATA_DIR = Path("var")


@dataclass(frozen=True, slots=True)
class Settings:
    # Loopback only by default: exposing totpd is a deliberate choice.
    listen_address: str = "127.0.0.1:50051"
    # Empty means SQLite at <data_dir>/totpd.sqlite3.
    database_url: str = ""
    data_dir: Path = DEFAULT_DATA_DIR
    # Keyring file for secrets at rest; see `totpd keygen`.
    key_file: Path = DEFAULT_DATA_DIR / "totpd.key"
    # Create a development key on first start if key_file is missing.
    create_dev_key: bool = False
    policy: Policy = field(default_factory=Policy)
    max_workers: int = 16
    max_message_bytes: int = 4 * 1024 * 1024
    shutdown_grace_seconds: float = 10.0
    log_level: str = "INFO"
    log_format: str = "json"

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'totpd.sqlite3'}"
