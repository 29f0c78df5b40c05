"""Server settings: one typed record, filled from defaults, a TOML file, the
environment (TOTPD_*) and command-line flags, later sources winning.

    defaults < TOML file (--config PATH or TOTPD_CONFIG) < TOTPD_<KEY> < flags

Every key has one name: `window` is `window` under `[policy]` in the TOML
file, `TOTPD_WINDOW` in the environment and `--window` on the command line.
A tenant may override some policy keys for itself in `[tenants.NAME.policy]`
(TOML only; `policy.TENANT_KEYS`), on top of the global policy from every source.
Relative paths are relative to the working directory. `key_file` defaults to
`<data_dir>/totpd.key`. TLS is off unless `tls_cert_file` and `tls_key_file`
are both set; `tls_client_ca_file` on top of them requires client certificates
(mTLS); the files themselves are read and checked by `totpd.rpc.tls` at
startup. Unknown keys in the file are errors (typos must not silently fall
back to a default); `load_settings` raises `ConfigError` with a message naming
the source and the key.
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
