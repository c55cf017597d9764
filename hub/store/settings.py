"""Which platform store a hub opens: ``api.store`` in the configuration.

::

    api:
      store: var/platform.sqlite          # the embedded default: one SQLite file
      # or, in cluster mode, every node the same PostgreSQL database:
      store:
        backend: postgresql
        dsn: "host=db1 port=5432 dbname=hub user=hub"   # libpq keywords or a postgresql:// URL
        password_file: /etc/hub/pg.password   # or password_env: HUB_PG_PASSWORD; never in dsn
        pool: 4               # connections per process
        retry_seconds: 30     # how long a call waits for PostgreSQL before it fails

The password is read when the store is opened, never kept in the settings' text or logged;
a DSN with a password in it is refused by ``hub check`` (it would end up in logs and in
``ps``). Without password_file and password_env, libpq's own ways apply (``PGPASSWORD``,
``~/.pgpass``, peer or certificate authentication).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hub.validate import Invalid, Section, choice, integer, number, string


@dataclass(frozen=True)
class StoreSettings:
    backend: str = "sqlite"
    path: str = "var/platform.sqlite"  # sqlite
    dsn: str = ""  # postgresql
    password_file: str | None = None
    password_env: str | None = None
    pool: int = 4
    retry_seconds: float = 30.0

    def describe(self) -> str:
        """For log lines: never the password."""
        if self.backend == "sqlite":
            return self.path
        from hub.store.postgres import redact

        return f"postgresql {redact(self.dsn)}"

    def password(self) -> str | None:
        if self.password_file is not None:
            with open(self.password_file, encoding="utf-8") as f:
                return f.read().strip("\r\n")
        if self.password_env is not None:
            value = os.environ.get(self.password_env)
            if value is None:
                raise OSError(f"the environment variable {self.password_env} is not set")
            return value
        return None


def _dsn(v: Any) -> str:
    v = string()(v)
    try:
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        raise Invalid("the postgresql backend needs psycopg: pip install "
                      "'hub-server[postgresql]'") from None
    try:
        params = conninfo_to_dict(v)
    except Exception as e:  # noqa: BLE001 - psycopg.ProgrammingError and its kin
        raise Invalid(f"not a PostgreSQL connection string: {e}") from None
    if params.get("password"):
        raise Invalid("holds a password: put it in password_file or password_env instead")
    return v


def parse_store(parent: Section, key: str, default_path: str, base: str) -> StoreSettings:
    """``parent[key]``: a path (SQLite, as before) or a mapping naming the backend."""
    raw = parent.raw(key, default_path)
    if not isinstance(raw, dict):
        return StoreSettings(path=parent.get(key, string(), default_path))
    s = parent.section(key)
    backend = s.get("backend", choice("sqlite", "postgresql"), "sqlite") or "sqlite"
    if backend == "sqlite":
        out = StoreSettings(path=s.get("path", string(), default_path))
        s.finish()
        return out
    dsn = s.get("dsn", _dsn)
    pw_file = s.get("password_file", string(), None)
    pw_env = s.get("password_env", string(r"[A-Za-z_][A-Za-z0-9_]*", "a variable name"), None)
    if pw_file is not None and pw_env is not None:
        s.checker.error(s.path, "give password_file or password_env, not both")
    if pw_file is not None and not os.path.isabs(pw_file):
        pw_file = os.path.join(base, pw_file)
    if pw_file is not None and not os.access(pw_file, os.R_OK):
        s.checker.error(s.path / "password_file", f"cannot read {pw_file}")
    if pw_env is not None and pw_env not in os.environ:
        s.checker.error(s.path / "password_env", f"the environment variable {pw_env} is not set")
    out = StoreSettings(
        backend="postgresql", path="", dsn=dsn or "", password_file=pw_file,
        password_env=pw_env, pool=s.get("pool", integer(1, 64), 4),
        retry_seconds=s.get("retry_seconds", number(0, 3600, "s"), 30.0))
    s.finish()
    return out


def open_store(settings: StoreSettings,
               on_health: Callable[[bool, str], None] | None = None) -> Any:
    """The store the settings name, opened (migrations applied): a
    :class:`hub.store.PlatformStore`."""
    if settings.backend == "sqlite":
        from hub.store.sqlite import SqliteStore

        store: Any = SqliteStore(settings.path)
    else:
        from hub.store.postgres import PostgresStore

        store = PostgresStore(settings.dsn, settings.password(), pool=settings.pool,
                              retry_seconds=settings.retry_seconds, on_health=on_health)
    store.open()
    return store
