"""`releasebits serve --db postgresql://...` that cannot start: one clear line, exit 1, no
traceback, the password never shown (issue 15: unreachable host, wrong password, no CREATE)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests import pg

pytestmark = [pytest.mark.e2e, pytest.mark.needs_postgres]


def serve(db: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RELEASEBITS_DB": db, "RELEASEBITS_PORT": str(pg.free_port())}
    return subprocess.run(
        [sys.executable, "-m", "exporter", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def limited(pg_cluster: pg.Cluster) -> Iterator[str]:
    """A database the `limited` role may connect to but not create tables in (PostgreSQL 15:
    only the owner of the database may CREATE in its public schema)."""
    url = pg_cluster.database("noperm", template="template0")
    name = url.rsplit("/", 1)[1]
    with pg_cluster.admin() as conn:
        conn.execute("CREATE ROLE limited LOGIN PASSWORD 'limited-pw'")
        conn.execute(f"ALTER DATABASE {name} OWNER TO postgres")
    try:
        yield f"postgresql://limited:limited-pw@127.0.0.1:{pg_cluster.port}/{name}"
    finally:
        pg_cluster.drop(url)
        with pg_cluster.admin() as conn:
            conn.execute("DROP ROLE limited")


def test_nothing_listening(pg_cluster: pg.Cluster) -> None:
    port = pg.free_port()
    line = one_line(serve(f"postgresql://releasebits:secret-pw@127.0.0.1:{port}/rb"))
    assert line == (
        f"releasebits: error: db: cannot connect to postgresql://releasebits:***@127.0.0.1:{port}"
        f'/rb: connection to server at "127.0.0.1", port {port} failed: Connection refused'
    )


def test_wrong_password(pg_cluster: pg.Cluster) -> None:
    url = pg_cluster.url(pg.TEMPLATE, password="wrong-pw")
    line = one_line(serve(url))
    assert line.startswith(
        "releasebits: error: db: cannot connect to postgresql://releasebits:***@"
    )
    assert line.endswith('password authentication failed for user "releasebits"')
    assert "wrong-pw" not in line


def test_a_role_that_may_not_create_tables(limited: str) -> None:
    line = one_line(serve(limited))
    assert line == (
        f"releasebits: error: db: {limited.replace('limited-pw', '***')}: permission denied for "
        "schema public (the role needs CREATE on the schema to create ReleaseBits' tables)"
    )


def test_not_a_database_url() -> None:
    line = one_line(serve("mysql://root@localhost/rb"))
    assert line == (
        "releasebits: error: db: expected a file path or a postgresql:// URL, got mysql://..."
    )
