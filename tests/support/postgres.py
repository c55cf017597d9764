"""A PostgreSQL for tests (Debian ``postgresql``): one server per test session on a free
loopback port, data in a temporary directory, durability off (fsync, synchronous commit),
stopped by the pid we started. Each test gets its own schema (``pg_dsn``), so tests share the
server but never each other's tables; the DSN sets ``search_path`` to it.

PostgreSQL refuses to run as root: as root, ``initdb`` and ``postgres`` run as the user
``postgres`` (``Popen(user=...)``, so the pid held is the postmaster's and SIGINT reaches it).
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator

import pytest

from tests.support.services import free_port, port_open, wait_until


def pg_bindir() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: scripts/install-system-deps.sh")
    return os.path.dirname(found[-1])


class PostgresServer:
    def __init__(self, root: str, port: int | None = None) -> None:
        self.root = root
        self.data = os.path.join(root, "data")
        self.port = port or free_port()
        self.bin = pg_bindir()
        self.proc: subprocess.Popen | None = None
        self._as: dict = {}
        if os.getuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(root, pw.pw_uid, pw.pw_gid)
            self._as = {"user": "postgres", "group": "postgres", "extra_groups": []}

    def dsn(self, **extra: str) -> str:
        parts = {"host": "127.0.0.1", "port": str(self.port), "user": "postgres",
                 "dbname": "postgres", **extra}
        return " ".join(f"{k}={v}" for k, v in parts.items())

    def init(self) -> PostgresServer:
        subprocess.run([os.path.join(self.bin, "initdb"), "-D", self.data, "-U", "postgres",
                        "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions"],
                       check=True, capture_output=True, cwd=self.root, timeout=60, **self._as)
        return self

    def start(self) -> PostgresServer:
        self.proc = subprocess.Popen(
            [os.path.join(self.bin, "postgres"), "-D", self.data, "-p", str(self.port),
             "-k", self.root, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
             "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "max_connections=200"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.root, "log"), "ab"),
            cwd=self.root, **self._as)
        wait_until(self._ready, 20, what="PostgreSQL accepting connections")
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"postgres exited with {self.proc.returncode}: "
                               f"{open(os.path.join(self.root, 'log')).read()[-2000:]}")
        if not port_open(self.port):
            return False
        import psycopg

        try:
            psycopg.connect(self.dsn(), connect_timeout=2).close()
        except psycopg.OperationalError:  # "the database system is starting up"
            return False
        return True

    def stop(self, fast: bool = True) -> None:
        """SIGINT: fast shutdown (clients are disconnected, as in a restart)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT if fast else signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL for the test session."""
    root = tempfile.mkdtemp(prefix="hub-pg-")
    server = PostgresServer(root).init().start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


_schemas = itertools.count(1)


@pytest.fixture
def pg_dsn(postgres: PostgresServer) -> Iterator[str]:
    """A DSN whose tables live in a new schema of the session's PostgreSQL, dropped after."""
    import psycopg

    name = f"t{os.getpid()}_{next(_schemas)}"
    with psycopg.connect(postgres.dsn(), autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {name}")
    yield postgres.dsn(options=f"-csearch_path={name}")
    with psycopg.connect(postgres.dsn(), autocommit=True) as c:
        c.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def store_backend(request: pytest.FixtureRequest) -> str:
    """The platform store's backends: a test using ``make_store`` runs on each. The
    PostgreSQL runs start a server, so they carry the ``postgresql`` marker (``make test-unit``
    leaves them out: the unit folder is otherwise pure code)."""
    return request.param


@pytest.fixture
def make_store(store_backend: str, tmp_path, request: pytest.FixtureRequest):
    """``make_store(**kw)`` -> an opened platform store of ``store_backend``; each call opens
    another store on the same database (another "node"); all are closed after the test.
    PostgreSQL is started only for the tests that run on it."""
    from hub.store import SqliteStore
    from hub.store.postgres import PostgresStore

    opened: list = []
    dsn = request.getfixturevalue("pg_dsn") if store_backend == "postgresql" else None

    def make(**kw):
        if dsn is None:
            s = SqliteStore(str(tmp_path / "platform.sqlite"))
        else:
            s = PostgresStore(dsn, **kw)
        s.open()
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()
