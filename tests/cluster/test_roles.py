"""PostgreSQL roles with least privilege, as docs/deploy.md sets them up: a
migration role owns the database and its schema; the serving role may only read
and write rows. `totpd migrate` runs as the first, `totpd serve` as the second
(its start-up migration finds the schema current and changes nothing), and the
serving role cannot alter, drop or create anything.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import ProgrammingError

from tests.cluster.serving import run_totpd, serving
from totpd.crypto import write_new_keyring
from totpd.v1 import totp_service_pb2 as pb
from totpd.v1 import totp_service_pb2_grpc

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parents[2]
SQL_FILE = ROOT / "deploy" / "postgres" / "roles.sql"
AFTER_MIGRATE = ROOT / "deploy" / "postgres" / "after-migrate.sql"


def psql(url: str, script: str) -> None:
    """Run a script with psql, as an operator would (meta-commands such as \\connect too)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/psql"), reverse=True)
    binary = found[0] if found else shutil.which("psql")
    if binary is None:
        pytest.skip("psql is not installed")
    parts = make_url(url)
    done = subprocess.run(
        [
            binary,
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-f",
            "-",
            "-h",
            str(parts.host),
            "-p",
            str(parts.port),
            "-U",
            str(parts.username),
            "-d",
            str(parts.database),
        ],
        input=script,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture
def roles(postgres_url: str) -> Iterator[dict[str, str]]:
    """A fresh database set up by deploy/postgres/roles.sql, under unique names; the
    migration role's and the serving role's URLs."""
    suffix = uuid.uuid4().hex[:8]
    names = {"db": f"totpd_roles_{suffix}", "migrate": f"mig_{suffix}", "app": f"app_{suffix}"}
    admin = make_url(postgres_url)
    script = SQL_FILE.read_text()
    for placeholder, name in (
        ("totpd_migrate", names["migrate"]),
        ("totpd_app", names["app"]),
        ("DATABASE totpd", f"DATABASE {names['db']}"),
        ("\\connect totpd", f"\\connect {names['db']}"),
    ):
        script = script.replace(placeholder, name)
    admin_url = admin.render_as_string(hide_password=False)
    psql(admin_url, script)
    urls = {
        role: admin.set(username=names[role], database=names["db"]).render_as_string(
            hide_password=False
        )
        for role in ("migrate", "app")
    }
    try:
        yield urls
    finally:
        psql(
            admin_url,
            f"DROP DATABASE IF EXISTS {names['db']} WITH (FORCE);"
            f" DROP ROLE IF EXISTS {names['app']}; DROP ROLE IF EXISTS {names['migrate']};",
        )


def test_the_serving_role_serves_but_cannot_change_the_schema(
    roles: dict[str, str], tmp_path: Path
) -> None:
    work = tmp_path
    key_file = work / "totpd.key"
    write_new_keyring(key_file)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("TOTPD_")}
    base_env |= {"TOTPD_KEY_FILE": str(key_file), "TOTPD_DATA_DIR": str(work)}

    refused = run_totpd("migrate", env=base_env | {"TOTPD_DATABASE_URL": roles["app"]})
    assert refused.returncode != 0
    assert "permission denied" in refused.stderr
    migrated = run_totpd("migrate", env=base_env | {"TOTPD_DATABASE_URL": roles["migrate"]})
    assert migrated.returncode == 0, migrated.stderr
    app_role = make_url(roles["app"]).username
    assert app_role is not None
    psql(roles["migrate"], AFTER_MIGRATE.read_text().replace("totpd_app", app_role))

    _serves(work, base_env | {"TOTPD_DATABASE_URL": roles["app"]})

    engine = create_engine(roles["app"])
    try:
        for statement in (
            "ALTER TABLE factors ADD COLUMN spare integer",
            "DROP TABLE accounts",
            "CREATE TABLE spare (x integer)",
            "TRUNCATE factors",
            "UPDATE alembic_version SET version_num = '0001'",
        ):
            with engine.connect() as connection, pytest.raises(ProgrammingError) as caught:
                connection.execute(text(statement))
            assert "permission denied" in str(caught.value) or "must be owner" in str(caught.value)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM factors")).scalar_one() == 1
    finally:
        engine.dispose()


def _serves(work: Path, env: dict[str, str]) -> None:
    """`totpd serve` as the serving role: it starts and enrolls a factor."""
    with serving(work, env) as address, grpc.insecure_channel(address) as channel:
        stub = totp_service_pb2_grpc.TotpServiceStub(channel)
        enrolled = stub.Enroll(pb.EnrollRequest(account_id="roles"), timeout=10)
    assert enrolled.factor.account_id == "roles"
