"""A PostgreSQL failover, as docs/deploy.md sets it up: a primary with a
synchronous streaming standby, and totpd's URL naming both hosts with libpq's
`target_session_attrs=read-write` (the standby first, so the test shows it is
skipped). The primary dies, the standby is promoted (what Patroni does), and the
same totpd, unchanged, goes on against the new primary: a code used before the
failover is still used (synchronous replication), and new writes land.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.cluster.local_cluster import load
from tests.cluster.serving import run_totpd, serving
from tests.totp_oracle import totp, wrong_code

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(300)]


@pytest.fixture
def pair() -> Iterator[tuple[Any, Any]]:
    """A primary and its synchronous standby, each in a directory of its own."""
    local_cluster = load()
    base = Path(tempfile.mkdtemp(prefix="totpd-failover-"))
    base.chmod(0o711)  # the postgres user (when run as root) must reach the data below
    started = []
    try:
        try:
            primary = local_cluster.Postgres(base / "primary")
            standby = local_cluster.Postgres(base / "standby")
        except local_cluster.ClusterError as error:
            if os.environ.get("CI") == "true":
                pytest.fail(f"the failover test needs PostgreSQL: {error}")
            pytest.skip(f"no PostgreSQL: {error}")
        primary.create()
        started.append(primary)
        data = str(standby.dir / "data")
        where = ["-h", "127.0.0.1", "-p", str(primary.port), "-U", "totpd"]
        standby._run(
            "pg_basebackup",
            *where,
            "-D",
            data,
            "-R",
            "-X",
            "stream",
            "--checkpoint=fast",
            "--no-sync",
        )
        standby.start()
        started.append(standby)
        make_synchronous(primary.url)
        yield primary, standby
    finally:
        for server in started:
            try:
                server.stop("immediate")
            except local_cluster.ClusterError:
                pass  # the test stopped it already
        shutil.rmtree(base, ignore_errors=True)


def make_synchronous(url: str) -> None:
    """Every commit from now on waits for the standby (Patroni's synchronous_mode)."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text("ALTER SYSTEM SET synchronous_standby_names = 'walreceiver'"))
            connection.execute(text("SELECT pg_reload_conf()"))
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                states = connection.execute(text("SELECT sync_state FROM pg_stat_replication"))
                if [row[0] for row in states] == ["sync"]:
                    return
                time.sleep(0.1)
    finally:
        engine.dispose()
    raise AssertionError("the standby did not become synchronous")


def test_totpd_follows_a_promoted_standby_through_a_multi_host_url(
    pair: tuple[Any, Any], tmp_path: Path
) -> None:
    from totpd_client import TotpdClient, VerifyResult

    primary, standby = pair
    hosts = f"host=127.0.0.1:{standby.port}&host=127.0.0.1:{primary.port}"
    url = f"postgresql+psycopg://totpd@/totpd?{hosts}&target_session_attrs=read-write"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOTPD_")}
    env |= {"TOTPD_DATABASE_URL": url, "TOTPD_DATA_DIR": str(tmp_path), "TOTPD_DRAIN_SECONDS": "0"}
    for command in (["keygen", "--out", str(tmp_path / "totpd.key")], ["migrate"]):
        done = run_totpd(*command, env=env, timeout=60)
        assert done.returncode == 0, done.stderr
    with (
        serving(tmp_path, env) as address,
        TotpdClient(
            address, insecure=True, timeout=30, max_attempts=100, max_backoff=0.5
        ) as client,
    ):
        enrolled = client.enroll("failover", "Pixel 8")
        step = int(time.time()) // 30
        secret = enrolled.secret_base32
        confirmed = client.confirm("failover", enrolled.factor.factor_id, totp(secret, step * 30))
        assert confirmed.outcome.result is VerifyResult.VALID
        used = totp(secret, (step + 1) * 30)
        assert client.verify("failover", used).result is VerifyResult.VALID

        primary.stop("immediate")
        standby._run("pg_ctl", "-D", str(standby.dir / "data"), "promote", "-w")

        assert client.verify("failover", used).result is VerifyResult.REPLAYED
        assert client.verify("failover", wrong_code(used)).result is VerifyResult.INVALID
        assert client.list_factors("failover")[0].factor_id == enrolled.factor.factor_id
