"""Server settings: one typed record, filled from defaults, a TOML file, the
environment (TOTPD_*) and command-line flags, later sources winning.

Design notes: ARCHITECTURE.md, "Module notes", config/__init__.py.
"""

from totpd.config.settings import (
    DEFAULT_DATA_DIR,
    IDENTITY_KINDS,
    KEY_FILE_NAME,
    LOG_FORMATS,
    LOG_LEVELS,
    ConfigError,
    Settings,
    identity_kinds,
    is_loopback_host,
    parse_listen_address,
    validate,
)
from totpd.config.sources import CONFIG_ENV, ENV_PREFIX, KEYS, env_name, load_settings

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_DATA_DIR",
    "ENV_PREFIX",
    "IDENTITY_KINDS",
    "KEYS",
    "KEY_FILE_NAME",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "ConfigError",
    "Settings",
    "env_name",
    "identity_kinds",
    "is_loopback_host",
    "load_settings",
    "parse_listen_address",
    "validate",
]
