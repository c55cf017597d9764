"""The platform store on PostgreSQL (cluster mode): every node's API and alarm desk read and
write one database.

:class:`PostgresStore` is :class:`hub.store.SqliteStore` with its connection swapped: the
table methods and the numbered migrations are the same code, their SQL rewritten once per
statement by :mod:`hub.store.dialect`. Only the lifecycle and the transaction wrappers
(``_read`` and ``_write``) are PostgreSQL's own:

- psycopg 3, synchronous, from the caller's thread, like SQLite: the store's interface is
  synchronous (the API calls it from worker threads, ``hub users`` from a plain process),
  and one set of table methods for both backends is worth more than an async variant. A
  small pool (``pool`` connections) lets the API's threads run side by side.
- Every write is one SERIALIZABLE transaction, retried when PostgreSQL reports a
  serialization failure or deadlock: what SQLite's single writer (BEGIN IMMEDIATE) makes
  correct, read-modify-write of an alarm record by two nodes, a claim of a notification
  ``(alarm, step, channel, recipient)``, stays correct across hub processes. A function
  given to ``_write`` may therefore run more than once: it must touch nothing but ``db``.
- PostgreSQL down or restarting: a call waits and retries with backoff (jittered, doubling
  up to 2 s) for up to ``retry_seconds``, then raises :class:`StoreUnavailable`. The first
  failure calls ``on_health(False, reason)`` (the hub raises a fault event and sets the
  ``store.up`` gauge, :mod:`hub.store.health`), the first success after it
  ``on_health(True, "")``. A write whose connection broke during COMMIT is not retried
  (it may have committed): it raises :class:`StoreUnavailable` and the caller decides,
  so nothing is done twice and nothing acknowledged is lost (a write returned only after
  PostgreSQL committed it).
- Migrations run under a PostgreSQL advisory lock (one per schema): nodes starting together
  apply each migration once, the others wait and find the schema current. The version is
  in the table ``hub_schema``.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from hub.store import sqlite as _sqlite
from hub.store.base import Conflict, StoreError
from hub.store.dialect import Catalog, PgDialect, Table, ddl, split_statements
from hub.store.sqlite import SqliteStore

T = TypeVar("T")

#: attempts of a write that keeps meeting serialization failures before giving up
SERIALIZATION_ATTEMPTS = 30


class StoreUnavailable(StoreError):
    """The database could not be reached in time, or a commit's outcome is unknown."""


async def unavailable_response(request: Any, exc: Exception) -> Any:
    """The API's answer while the database is away: 503 and when to try again (a FastAPI
    exception handler; the body never holds the DSN)."""
    from fastapi.responses import JSONResponse

    return JSONResponse({"detail": "the platform store is unavailable; try again shortly"},
                        status_code=503, headers={"Retry-After": "5"})


def redact(dsn: str) -> str:
    """A DSN for messages: any password in it replaced."""
    dsn = re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", dsn, flags=re.I)
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", dsn)


class _Cursor:
    def __init__(self, cur: Any, returns_id: bool) -> None:
        self._cur = cur
        self.rowcount = cur.rowcount
        self.lastrowid: int | None = None
        if returns_id:
            row = cur.fetchone()
            self.lastrowid = row[0] if row else None

    def fetchone(self) -> tuple | None:
        return self._cur.fetchone()

    def fetchall(self) -> list[tuple]:
        return self._cur.fetchall()


def _args(params: Sequence[Any] | None) -> list[Any]:
    # SQLite stores Python booleans as 0/1 in INTEGER columns; PostgreSQL would refuse them
    return [int(p) if isinstance(p, bool) else p for p in (params or ())]


class PgDb:
    """What the table code calls ``db``: ``execute`` and ``executemany`` in the SQLite
    dialect, with ``rowcount`` and ``lastrowid`` on the cursor."""

    def __init__(self, conn: Any, dialect: PgDialect) -> None:
        self.conn = conn
        self.dialect = dialect

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> _Cursor:
        st = self.dialect.translate(sql)
        cur = self.conn.cursor()
        cur.execute(st.sql, _args(params))
        return _Cursor(cur, st.returns_id)

    def executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> _Cursor:
        st = self.dialect.translate(sql)
        rows = [_args(p) for p in seq]
        cur = self.conn.cursor()
        if rows:
            cur.executemany(st.sql, rows)
        return _Cursor(cur, False)


class _CommitUnknown(Exception):
    pass


class PostgresStore(SqliteStore):
    """:class:`hub.store.PlatformStore` on PostgreSQL; see the module's docstring."""

    def __init__(self, dsn: str, password: str | None = None, *, pool: int = 4,
                 retry_seconds: float = 30.0, connect_timeout: float = 5.0,
                 on_health: Callable[[bool, str], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 rng: Callable[[], float] = random.random) -> None:
        super().__init__(redact(dsn))
        self.dsn = dsn
        self._password = password
        self.pool_size = pool
        self.retry_seconds = retry_seconds
        self.connect_timeout = connect_timeout
        self.on_health = on_health
        self._sleep = sleep
        self._rng = rng
        self.dialect = PgDialect()
        self._idle: list[Any] = []
        self._slots = threading.BoundedSemaphore(pool)
        self._open = False
        self._down: str | None = None  # why the database is unreachable, while it is
        #: calls that waited for the database, and serialization retries (for metrics)
        self.retries = 0
        self.conflicts = 0

    def __repr__(self) -> str:
        return f"PostgresStore({self.path!r})"

    # ---------------------------------------------------------------- connections

    def _connect(self) -> Any:
        import psycopg

        kw: dict[str, Any] = {"autocommit": True, "connect_timeout": max(1, int(
            self.connect_timeout)), "application_name": "hub"}
        if self._password is not None:
            kw["password"] = self._password
        return psycopg.connect(self.dsn, **kw)

    def _take(self) -> Any:
        with self._lock:
            if not self._open:
                raise StoreError("the platform store is not open")
            if self._idle:
                return self._idle.pop()
        return self._connect()

    def _give(self, conn: Any) -> None:
        with self._lock:
            if self._open and not conn.closed and not conn.broken:
                self._idle.append(conn)
                return
        conn.close()

    def _drop_idle(self) -> None:
        """After one broken connection the others are likely broken too (a restart)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for c in idle:
            c.close()

    def _health(self, up: bool, why: str) -> None:
        if up == (self._down is None):
            return
        self._down = None if up else why
        if self.on_health is not None:
            try:
                self.on_health(up, why)
            except Exception:  # noqa: BLE001,S110 - reporting must not break the store
                pass

    @property
    def available(self) -> bool:
        return self._down is None

    def _run(self, fn: Callable[[Any], T], write: bool) -> T:
        import psycopg
        from psycopg import errors

        deadline: float | None = None
        waits = 0
        conflicts = 0
        while True:
            self._slots.acquire()
            conn = None
            try:
                conn = self._take()
                out = self._once(conn, fn, write)
            except errors.IntegrityError as e:
                self._give(conn)
                raise Conflict(str(e).strip()) from None
            except (errors.SerializationFailure, errors.DeadlockDetected):
                self._give(conn)
                conflicts += 1
                self.conflicts += 1
                if conflicts >= SERIALIZATION_ATTEMPTS:
                    raise StoreError("a write kept conflicting with others") from None
                self._sleep(0.002 * min(conflicts, 10) * (0.5 + self._rng()))
                continue
            except _CommitUnknown as e:
                self._discard(conn)
                self._health(False, str(e.__cause__))
                raise StoreUnavailable(f"{self.path}: the connection broke during COMMIT; "
                                       f"the write may or may not have been made") from None
            except psycopg.OperationalError as e:
                self._discard(conn)
                now = time.monotonic()
                deadline = deadline or now + self.retry_seconds
                why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                self._health(False, why)
                if now >= deadline:
                    raise StoreUnavailable(f"{self.path}: {why}") from None
                self.retries += 1
                delay = min(2.0, 0.05 * 2 ** waits) * (0.5 + self._rng() / 2)
                waits += 1
                self._sleep(min(delay, max(0.0, deadline - now)))
                continue
            except BaseException:
                if conn is not None:
                    self._give(conn)
                raise
            finally:
                self._slots.release()
            self._give(conn)
            self._health(True, "")
            return out

    def _discard(self, conn: Any) -> None:
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001,S110 - it is broken already
                pass
        self._drop_idle()

    def _once(self, conn: Any, fn: Callable[[Any], T], write: bool) -> T:
        import psycopg

        db = PgDb(conn, self.dialect)
        if not write:
            return fn(db)
        conn.execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
        try:
            out = fn(db)
        except BaseException:
            if not conn.broken and not conn.closed:
                conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except psycopg.errors.SerializationFailure:
            raise
        except psycopg.OperationalError as e:
            raise _CommitUnknown() from e
        return out

    def _read(self, fn: Callable[[Any], T]) -> T:
        return self._run(fn, write=False)

    def _write(self, fn: Callable[[Any], T]) -> T:
        return self._run(fn, write=True)

    # ---------------------------------------------------------------- lifecycle

    def open(self) -> None:
        with self._lock:
            self._open = True
        try:
            self._run(self._migrate, write=False)
            self.dialect.set_catalog(self._run(load_catalog, write=False))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._open = False
        self._drop_idle()

    def schema_version(self) -> int:
        return self._read(lambda db: db.conn.execute(
            "SELECT version FROM hub_schema").fetchone()[0])

    def _migrate(self, db: PgDb) -> None:
        conn = db.conn
        # one lock per schema, so that stores in other schemas of the database do not wait
        conn.execute("SELECT pg_advisory_lock(hashtext('hub.store:' || current_schema()))")
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS hub_schema (version BIGINT NOT NULL)")
            row = conn.execute("SELECT version FROM hub_schema").fetchone()
            if row is None:
                conn.execute("INSERT INTO hub_schema VALUES (0)")
            version = row[0] if row else 0
            known = _sqlite.SCHEMA_VERSION
            if version > known:
                raise StoreError(f"{self.path}: schema {version} is newer than this hub "
                                 f"knows ({known}); upgrade the hub")
            for n in range(version, known):
                with conn.transaction():
                    migrate(conn, _sqlite.MIGRATIONS[n])
                    conn.execute("UPDATE hub_schema SET version = %s", (n + 1,))
        finally:
            if not conn.broken:
                conn.execute("SELECT pg_advisory_unlock(hashtext('hub.store:' || "
                             "current_schema()))")


def migrate(conn: Any, script: str) -> None:
    """One migration of :data:`hub.store.sqlite.MIGRATIONS` on PostgreSQL (in the caller's
    transaction): DDL translated by :func:`hub.store.dialect.ddl`, DML by the dialect with
    the catalog as it stands, then identity sequences moved past ids the script inserted."""
    dialect: PgDialect | None = None
    for statement in split_statements(script):
        if re.match(r"(INSERT|UPDATE|DELETE)\b", statement, re.I):
            if dialect is None:
                dialect = PgDialect(load_catalog(PgDb(conn, PgDialect())))
            conn.execute(dialect.translate(statement).sql.replace("%%", "%"))
        else:
            dialect = None  # the catalog changed
            conn.execute(ddl(statement))
    from psycopg import sql

    for table, column in conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND is_identity = 'YES'").fetchall():
        conn.execute(sql.SQL(
            "SELECT setval(pg_get_serial_sequence({t}, {c}), "
            "COALESCE((SELECT MAX({col}) FROM {tab}), 0) + 1, false)").format(
                t=sql.Literal(table), c=sql.Literal(column), col=sql.Identifier(column),
                tab=sql.Identifier(table)))


def load_catalog(db: PgDb) -> Catalog:
    """Columns, primary keys and identity columns of the current schema's tables."""
    conn = db.conn
    tables: dict[str, Table] = {}
    for table, column, identity in conn.execute(
            "SELECT table_name, column_name, is_identity FROM information_schema.columns "
            "WHERE table_schema = current_schema() "
            "ORDER BY table_name, ordinal_position").fetchall():
        t = tables.setdefault(table, Table([], []))
        t.columns.append(column)
        if identity == "YES":
            t.identity = column
    for table, column in conn.execute(
            "SELECT tc.table_name, k.column_name FROM information_schema.table_constraints tc "
            "JOIN information_schema.key_column_usage k ON k.constraint_name = "
            "tc.constraint_name AND k.table_schema = tc.table_schema "
            "WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = current_schema() "
            "ORDER BY tc.table_name, k.ordinal_position").fetchall():
        if table in tables:
            tables[table].primary_key.append(column)
    return Catalog(tables)
