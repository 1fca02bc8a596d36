"""A throwaway PostgreSQL cluster for the tests: initdb + pg_ctl in a temp directory on a free
port (no systemd, nothing left behind), and a fresh database per test cloned from a migrated
template. A database a test is done with is emptied and handed to the next test (a few ms)
rather than dropped and cloned again (~150 ms each, most of the PostgreSQL pass's extra time),
unless the test changed its schema.

As root, the server programs run as `postgres` (initdb and postgres refuse root). The Unix
socket (trust) is for setup; TCP asks for a password (scram-sha-256), so a wrong password is a
real refusal. fsync=off: a crash of the server keeps every committed row (the writes are in the
page cache); only an OS crash could lose them, which no test here does.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

APP_USER, APP_PASSWORD = "releasebits", "rb-test-pw"
TEMPLATE = "releasebits_template"
# What a recycled database must still have to pass for a fresh clone: the template's columns,
# indexes and applied migrations.
_SCHEMA = (
    "SELECT (SELECT string_agg(table_name || '.' || column_name || ' ' || data_type || ' ' "
    "|| is_nullable || ' ' || coalesce(column_default, ''), ',' "
    "ORDER BY table_name, column_name) FROM information_schema.columns "
    "WHERE table_schema = 'public'), "
    "(SELECT string_agg(indexdef, ',' ORDER BY indexdef) FROM pg_indexes "
    "WHERE schemaname = 'public'), "
    "(SELECT string_agg(name, ',' ORDER BY name) FROM _releasebits_migrations)"
)


def bindir() -> str | None:
    """$PG_BINDIR, else `pg_config --bindir`, else the newest /usr/lib/postgresql/*/bin."""
    candidates = [os.environ.get("PG_BINDIR", "")]
    if shutil.which("pg_config"):
        found = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        candidates.append(found.stdout.strip())
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True
    )
    for d in candidates:
        if d and os.access(os.path.join(d, "initdb"), os.X_OK):
            return d
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    """One running server; `database()` hands out fresh databases."""

    bindir: str
    base: str  # data/, sock/ and the server log; short, for the socket path (< 108 bytes)
    port: int = field(default_factory=free_port)
    as_user: str | None = "postgres" if os.geteuid() == 0 else None
    _names: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _spare: list[str] = field(default_factory=list)  # emptied clones of the template
    _schema: tuple[object, ...] | None = None  # the template's (_SCHEMA)

    @property
    def data(self) -> str:
        return os.path.join(self.base, "data")

    @property
    def sockdir(self) -> str:
        return os.path.join(self.base, "sock")

    @property
    def log(self) -> str:
        return os.path.join(self.base, "postgres.log")

    def url(self, db: str, user: str = APP_USER, password: str = APP_PASSWORD) -> str:
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{db}"

    def run(self, prog: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [os.path.join(self.bindir, prog), *args]
        if self.as_user:
            cmd = ["runuser", "-u", self.as_user, "--", *cmd]
        # cwd=base: as `postgres`, root's working directory would be unreadable.
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=self.base, check=False)
        if check and done.returncode:
            log = Path(self.log)
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{prog} failed ({done.returncode}): {done.stderr}{tail}")
        return done

    def admin(self, db: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        """A superuser connection over the Unix socket (trust), autocommit."""
        return psycopg.connect(
            host=self.sockdir, port=self.port, user="postgres", dbname=db, autocommit=True
        )

    def init(self) -> None:
        os.mkdir(self.sockdir, 0o700)
        if self.as_user:
            owner = pwd.getpwnam(self.as_user)
            for path in (self.base, self.sockdir):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        self.run(
            "initdb", "-D", self.data, "-U", "postgres", "-E", "UTF8", "--locale=C",
            "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", "--no-instructions",
        )  # fmt: skip
        with open(os.path.join(self.data, "pg_hba.conf"), "w") as f:
            f.write("local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n")

    def start(self, *, fsync: bool = False) -> None:
        """fsync=False for tests; benchmarks start it durable, as a production server runs."""
        sync = "on" if fsync else "off"
        for attempt in range(3):  # free_port() can race another process: try another port
            options = (
                f"-p {self.port} -k {self.sockdir} -c listen_addresses=127.0.0.1 "
                f"-c fsync={sync} -c full_page_writes={sync} -c max_connections=300"
            )
            try:
                self.run("pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "30",
                         "-o", options, "start")  # fmt: skip
                return
            except RuntimeError:
                if attempt == 2:
                    raise
                self.port = free_port()

    def stop(self) -> None:
        self.run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop", check=False)

    def setup(self, migrate: object) -> None:
        """The application role and a migrated template (`migrate(url)` applies the schema)."""
        with self.admin() as conn:
            conn.execute(f"CREATE ROLE {APP_USER} LOGIN CREATEDB PASSWORD '{APP_PASSWORD}'")
            conn.execute(f"CREATE DATABASE {TEMPLATE} OWNER {APP_USER}")
        migrate(self.url(TEMPLATE))  # type: ignore[operator]
        with self.admin(TEMPLATE) as conn:
            self._schema = conn.execute(_SCHEMA).fetchone()

    def database(self, prefix: str = "t", *, template: str = TEMPLATE) -> str:
        """A new database (a copy of the migrated template, or `template0`: empty); its URL.
        A copy of the template may be one a finished test gave back, emptied (`recycle`)."""
        if template == TEMPLATE and self._spare:
            return self.url(self._spare.pop())
        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        with self.admin() as conn:
            conn.execute(
                f"CREATE DATABASE {name} OWNER {APP_USER} TEMPLATE {template} STRATEGY file_copy"
            )
        return self.url(name)

    def recycle(self, url: str) -> None:
        """Done with a copy of the template: end its sessions (their locks go with them),
        delete every row and restart the generated ids, and keep it for the next `database()`.
        One whose schema a test changed is dropped instead."""
        name = url.rsplit("/", 1)[1]
        with self.admin(name) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            if conn.execute(_SCHEMA).fetchone() != self._schema:
                conn.close()
                self.drop(url)
                return
            tables = conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> '_releasebits_migrations'"
            ).fetchall()
            identities = conn.execute(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = 'public' AND is_identity = 'YES' "
                "AND table_name <> '_releasebits_migrations'"
            ).fetchall()
            with conn.transaction():
                # Foreign keys unchecked while every table is emptied, in any order.
                conn.execute("SET LOCAL session_replication_role = replica")
                for (table,) in tables:
                    conn.execute(f"DELETE FROM {table}")  # faster than TRUNCATE on a few rows
                for table, column in identities:
                    conn.execute(
                        "SELECT setval(pg_get_serial_sequence(%s, %s), 1, false)", [table, column]
                    )
        self._spare.append(name)

    def drop(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with self.admin() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def start_cluster(migrate: object, *, fsync: bool = False) -> Cluster:
    """A running cluster with the role and template; the caller stops it (`close`)."""
    found = bindir()
    if found is None:
        raise FileNotFoundError("PostgreSQL server binaries (initdb) not found")
    started = time.monotonic()
    cluster = Cluster(found, tempfile.mkdtemp(prefix="rbpg-", dir="/tmp"))
    try:
        cluster.init()
        cluster.start(fsync=fsync)
        cluster.setup(migrate)
    except BaseException:
        close(cluster)
        raise
    print(f"[pg] cluster on port {cluster.port} ready in {time.monotonic() - started:.1f} s")
    return cluster


def close(cluster: Cluster) -> None:
    cluster.stop()
    shutil.rmtree(cluster.base, ignore_errors=True)
