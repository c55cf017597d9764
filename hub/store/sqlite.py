"""The embedded platform store: one SQLite file (WAL) under ``state_dir``.

Schema migrations are a numbered list applied in order at :meth:`SqliteStore.open`, each in
its own transaction, with the version in ``PRAGMA user_version``: a store written by a newer
hub is refused rather than guessed at. The CLI (``hub users``) writes the same file while the
hub runs; WAL and a busy timeout make that safe.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from hub.cluster.store import MIGRATION as CLUSTER_MIGRATION
from hub.store.alarms import MIGRATION as ALARMS_MIGRATION
from hub.store.alarms import AlarmTables
from hub.store.base import (
    CHILD_KINDS,
    ROLES,
    ROOT_ID,
    ApiKey,
    Conflict,
    Device,
    Grant,
    Node,
    NotFound,
    Session,
    StoreError,
    User,
)
from hub.store.console import MIGRATION as CONSOLE_MIGRATION
from hub.store.console import ConsoleTables
from hub.store.firmware import MIGRATION as FIRMWARE_MIGRATION
from hub.store.firmware import FirmwareTables
from hub.store.hazards import HazardTables
from hub.store.inspections import MIGRATION as INSPECTIONS_MIGRATION
from hub.store.inspections import MIGRATION_9 as INSPECTIONS_MIGRATION_9
from hub.store.inspections import InspectionTables

T = TypeVar("T")

MIGRATIONS: list[str] = [
    # 1: accounts, the tree, grants, sessions, API keys, devices
    """
    CREATE TABLE users (
        id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL,
        display_name TEXT NOT NULL DEFAULT '', disabled INTEGER NOT NULL DEFAULT 0,
        created_ts REAL NOT NULL, failed_logins INTEGER NOT NULL DEFAULT 0,
        locked_until REAL NOT NULL DEFAULT 0);
    CREATE TABLE nodes (
        id INTEGER PRIMARY KEY, parent INTEGER REFERENCES nodes (id), kind TEXT NOT NULL,
        name TEXT NOT NULL, code TEXT, fields TEXT NOT NULL DEFAULT '{}',
        created_ts REAL NOT NULL);
    CREATE UNIQUE INDEX nodes_code ON nodes (code) WHERE code IS NOT NULL;
    CREATE INDEX nodes_parent ON nodes (parent);
    INSERT INTO nodes (id, parent, kind, name, created_ts) VALUES (1, NULL, 'platform',
        'platform', 0);
    CREATE TABLE grants (
        id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users (id),
        role TEXT NOT NULL, node_id INTEGER NOT NULL REFERENCES nodes (id),
        UNIQUE (user_id, role, node_id));
    CREATE TABLE sessions (
        id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users (id),
        token_hash TEXT NOT NULL UNIQUE, refresh_hash TEXT NOT NULL UNIQUE,
        expires REAL NOT NULL, refresh_expires REAL NOT NULL, created_ts REAL NOT NULL,
        address TEXT NOT NULL DEFAULT '', revoked INTEGER NOT NULL DEFAULT 0);
    CREATE INDEX sessions_user ON sessions (user_id);
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, key_hash TEXT NOT NULL, role TEXT NOT NULL,
        node_id INTEGER NOT NULL REFERENCES nodes (id), created_by INTEGER NOT NULL,
        created_ts REAL NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE devices (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, project TEXT NOT NULL, model TEXT NOT NULL,
        transport TEXT NOT NULL, address TEXT, location TEXT NOT NULL DEFAULT '',
        created_by TEXT NOT NULL DEFAULT '', created_ts REAL NOT NULL,
        updated_ts REAL NOT NULL);
    CREATE INDEX devices_project ON devices (project);
    """,
    # 2: alarm records and their history, escalation timers, notifications, hazards
    ALARMS_MIGRATION,
    # 3: per-device settings of API devices (alarm thresholds, heartbeat) as the YAML has them
    """
    ALTER TABLE devices ADD COLUMN settings TEXT;
    """,
    # 4: commands started through the API, so that their lifecycle (in the journal, found by
    # device and time) stays readable after a restart
    """
    CREATE TABLE commands (id TEXT PRIMARY KEY, device TEXT NOT NULL, ts REAL NOT NULL,
                           ttl REAL NOT NULL);
    """,
    # 5: inspection plans and tasks, hazard reminders, the outbox's attempts and retry times
    INSPECTIONS_MIGRATION,
    # 6: firmware repository and OTA campaigns
    FIRMWARE_MIGRATION,
    # 7: the console's per-account language and floor plans
    CONSOLE_MIGRATION,
    # 8: expired sessions are deleted by refresh expiry at every login; without an index that
    # scans the table, and on PostgreSQL concurrent logins then collide (serialization retries)
    """
    CREATE INDEX sessions_refresh_expires ON sessions (refresh_expires);
    """,
    # 9: monthly inspection plans, photos of inspected items, the voice limits' look-back
    INSPECTIONS_MIGRATION_9,
    # 10: alarm edges applied by the cluster's desks, by identity
    CLUSTER_MIGRATION,
]
SCHEMA_VERSION = len(MIGRATIONS)


def store_path(state_dir: str) -> str:
    return os.path.join(state_dir, "platform.sqlite")


def _user(row: tuple) -> User:
    return User(row[0], row[1], row[2], row[3], bool(row[4]), row[5], row[6], row[7])


def _node(row: tuple) -> Node:
    return Node(row[0], row[1], row[2], row[3], row[4] or "", json.loads(row[5]), row[6])


def _session(row: tuple) -> Session:
    return Session(*row[:8], revoked=bool(row[8]))


def _key(row: tuple) -> ApiKey:
    return ApiKey(*row[:7], revoked=bool(row[7]))


def _device(row: tuple) -> Device:
    return Device(row[0], row[1], row[2], row[3], row[4],
                  None if row[5] is None else json.loads(row[5]), *row[6:10],
                  settings=json.loads(row[10]) if row[10] else {})


_USER_COLS = "id, name, password_hash, display_name, disabled, created_ts, failed_logins, " \
             "locked_until"
_NODE_COLS = "id, parent, kind, name, code, fields, created_ts"
_SESSION_COLS = "id, user_id, token_hash, refresh_hash, expires, refresh_expires, created_ts, " \
                "address, revoked"
_KEY_COLS = "id, name, key_hash, role, node_id, created_by, created_ts, revoked"
_DEVICE_COLS = "id, name, project, model, transport, address, location, created_by, " \
               "created_ts, updated_ts, settings"


class SqliteStore(AlarmTables, HazardTables, InspectionTables, FirmwareTables,
                  ConsoleTables):
    """:class:`hub.store.PlatformStore` on one SQLite file; one connection behind a lock."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- lifecycle

    def open(self) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA busy_timeout = 5000")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA foreign_keys = ON")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.path}: schema {version} is newer than this hub "
                                 f"knows ({SCHEMA_VERSION}); upgrade the hub")
            for n in range(version, SCHEMA_VERSION):
                db.executescript(f"BEGIN IMMEDIATE; {MIGRATIONS[n]}\n"
                                 f"PRAGMA user_version = {n + 1}; COMMIT;")
        except BaseException:
            db.close()
            raise
        try:  # the file holds password hashes and session hashes: the hub's user only
            os.chmod(self.path, 0o600)
        except OSError:
            pass
        self._db = db

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def schema_version(self) -> int:
        return self._read(lambda db: db.execute("PRAGMA user_version").fetchone()[0])

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            if self._db is None:
                raise StoreError("the platform store is not open")
            return fn(self._db)

    def _one(self, convert: Callable[[tuple], T], sql: str, key: object,
             missing: str | None = None) -> T | None:
        """One row by ``key`` converted, or None; with ``missing``, NotFound instead."""
        row = self._read(lambda db: db.execute(sql, (key,)).fetchone())
        if row is None:
            if missing is not None:
                raise NotFound(missing)
            return None
        return convert(row)

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            db = self._db
            if db is None:
                raise StoreError("the platform store is not open")
            db.execute("BEGIN IMMEDIATE")
            try:
                out = fn(db)
            except sqlite3.IntegrityError as e:
                db.execute("ROLLBACK")
                raise Conflict(str(e)) from None
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return out

    # ---------------------------------------------------------------- users

    def add_user(self, name: str, password_hash: str, display_name: str = "",
                 now: float = 0.0) -> User:
        def do(db: sqlite3.Connection) -> User:
            if db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise Conflict(f"a user named {name!r} exists")
            cur = db.execute("INSERT INTO users (name, password_hash, display_name, created_ts)"
                             " VALUES (?, ?, ?, ?)", (name, password_hash, display_name, now))
            return _user(db.execute(f"SELECT {_USER_COLS} FROM users WHERE id = ?",
                                    (cur.lastrowid,)).fetchone())
        return self._write(do)

    def get_user(self, user_id: int) -> User:
        return self._one(_user, f"SELECT {_USER_COLS} FROM users WHERE id = ?", user_id,
                         f"no user {user_id}")

    def user_by_name(self, name: str) -> User | None:
        return self._one(_user, f"SELECT {_USER_COLS} FROM users WHERE name = ?", name)

    def list_users(self) -> list[User]:
        return [_user(r) for r in self._read(lambda db: db.execute(
            f"SELECT {_USER_COLS} FROM users ORDER BY name").fetchall())]

    def count_users(self) -> int:
        return self._read(lambda db: db.execute("SELECT count(*) FROM users").fetchone()[0])

    def update_user(self, user_id: int, **changes: Any) -> User:
        allowed = {"password_hash", "display_name", "disabled", "failed_logins", "locked_until"}
        bad = set(changes) - allowed
        if bad:
            raise ValueError(f"cannot change {sorted(bad)} of a user")

        def do(db: sqlite3.Connection) -> User:
            if changes:
                cols = ", ".join(f"{k} = ?" for k in changes)
                db.execute(f"UPDATE users SET {cols} WHERE id = ?", [*changes.values(), user_id])
            row = db.execute(f"SELECT {_USER_COLS} FROM users WHERE id = ?",
                             (user_id,)).fetchone()
            if row is None:
                raise NotFound(f"no user {user_id}")
            return _user(row)
        return self._write(do)

    # ---------------------------------------------------------------- grants

    def add_grant(self, user_id: int, role: str, node_id: int) -> Grant:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")

        def do(db: sqlite3.Connection) -> Grant:
            row = db.execute("SELECT id FROM grants WHERE user_id = ? AND role = ? AND "
                             "node_id = ?", (user_id, role, node_id)).fetchone()
            if row is not None:
                return Grant(row[0], user_id, role, node_id)
            cur = db.execute("INSERT INTO grants (user_id, role, node_id) VALUES (?, ?, ?)",
                             (user_id, role, node_id))
            return Grant(cur.lastrowid, user_id, role, node_id)
        return self._write(do)

    def remove_grant(self, grant_id: int) -> None:
        self._write(lambda db: db.execute("DELETE FROM grants WHERE id = ?", (grant_id,)))

    def get_grant(self, grant_id: int) -> Grant:
        row = self._read(lambda db: db.execute(
            "SELECT id, user_id, role, node_id FROM grants WHERE id = ?", (grant_id,)).fetchone())
        if row is None:
            raise NotFound(f"no grant {grant_id}")
        return Grant(*row)

    def grants(self, user_id: int | None = None) -> list[Grant]:
        sql = "SELECT id, user_id, role, node_id FROM grants"
        args: tuple = ()
        if user_id is not None:
            sql += " WHERE user_id = ?"
            args = (user_id,)
        return [Grant(*r) for r in self._read(lambda db: db.execute(sql + " ORDER BY id",
                                                                     args).fetchall())]

    # ---------------------------------------------------------------- organisation tree

    def add_node(self, parent: int, kind: str, name: str, code: str = "",
                 fields: Mapping[str, Any] | None = None, now: float = 0.0) -> Node:
        def do(db: sqlite3.Connection) -> Node:
            row = db.execute("SELECT kind FROM nodes WHERE id = ?", (parent,)).fetchone()
            if row is None:
                raise NotFound(f"no node {parent}")
            if kind not in CHILD_KINDS[row[0]]:
                raise Conflict(f"a {kind} cannot sit under a {row[0]}")
            if code and db.execute("SELECT 1 FROM nodes WHERE code = ?", (code,)).fetchone():
                raise Conflict(f"a project with code {code!r} exists")
            cur = db.execute(
                "INSERT INTO nodes (parent, kind, name, code, fields, created_ts)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (parent, kind, name, code or None, json.dumps(dict(fields or {})), now))
            return _node(db.execute(f"SELECT {_NODE_COLS} FROM nodes WHERE id = ?",
                                    (cur.lastrowid,)).fetchone())
        return self._write(do)

    def get_node(self, node_id: int) -> Node:
        return self._one(_node, f"SELECT {_NODE_COLS} FROM nodes WHERE id = ?", node_id,
                         f"no node {node_id}")

    def nodes(self) -> list[Node]:
        return [_node(r) for r in self._read(lambda db: db.execute(
            f"SELECT {_NODE_COLS} FROM nodes ORDER BY id").fetchall())]

    def update_node(self, node_id: int, name: str | None = None,
                    fields: Mapping[str, Any] | None = None) -> Node:
        def do(db: sqlite3.Connection) -> Node:
            row = db.execute(f"SELECT {_NODE_COLS} FROM nodes WHERE id = ?",
                             (node_id,)).fetchone()
            if row is None:
                raise NotFound(f"no node {node_id}")
            node = _node(row)
            merged = {**node.fields, **(fields or {})}
            db.execute("UPDATE nodes SET name = ?, fields = ? WHERE id = ?",
                       (name if name is not None else node.name, json.dumps(merged), node_id))
            return dataclasses.replace(node, name=name or node.name, fields=merged)
        return self._write(do)

    def delete_node(self, node_id: int) -> None:
        if node_id == ROOT_ID:
            raise Conflict("the platform node cannot be deleted")

        def do(db: sqlite3.Connection) -> None:
            row = db.execute("SELECT code FROM nodes WHERE id = ?", (node_id,)).fetchone()
            if row is None:
                raise NotFound(f"no node {node_id}")
            if db.execute("SELECT 1 FROM nodes WHERE parent = ?", (node_id,)).fetchone():
                raise Conflict("it still has units or projects under it")
            if row[0] and db.execute("SELECT 1 FROM devices WHERE project = ?",
                                     (row[0],)).fetchone():
                raise Conflict("it still has devices")
            db.execute("DELETE FROM grants WHERE node_id = ?", (node_id,))
            db.execute("UPDATE api_keys SET revoked = 1 WHERE node_id = ?", (node_id,))
            db.execute("DELETE FROM nodes WHERE id = ?", (node_id,))
        self._write(do)

    # ---------------------------------------------------------------- sessions

    def add_session(self, user_id: int, token_hash: str, refresh_hash: str, expires: float,
                    refresh_expires: float, now: float, address: str = "") -> Session:
        def do(db: sqlite3.Connection) -> Session:
            # expired sessions go as new ones come: the table stays the size of the live ones
            db.execute("DELETE FROM sessions WHERE refresh_expires < ?", (now,))
            cur = db.execute(
                "INSERT INTO sessions (user_id, token_hash, refresh_hash, expires,"
                " refresh_expires, created_ts, address) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (user_id, token_hash, refresh_hash, expires, refresh_expires, now, address))
            return Session(cur.lastrowid, user_id, token_hash, refresh_hash, expires,
                           refresh_expires, now, address)
        return self._write(do)

    def session_by_token(self, token_hash: str) -> Session | None:
        return self._one(_session, f"SELECT {_SESSION_COLS} FROM sessions WHERE token_hash = ?",
                         token_hash)

    def session_by_refresh(self, refresh_hash: str) -> Session | None:
        return self._one(_session,
                         f"SELECT {_SESSION_COLS} FROM sessions WHERE refresh_hash = ?",
                         refresh_hash)

    def revoke_session(self, session_id: int) -> None:
        self._write(lambda db: db.execute("UPDATE sessions SET revoked = 1 WHERE id = ?",
                                          (session_id,)))

    def revoke_user_sessions(self, user_id: int) -> int:
        return self._write(lambda db: db.execute(
            "UPDATE sessions SET revoked = 1 WHERE user_id = ? AND revoked = 0",
            (user_id,)).rowcount)

    # ---------------------------------------------------------------- API keys

    def add_api_key(self, key: ApiKey) -> ApiKey:
        self._write(lambda db: db.execute(
            f"INSERT INTO api_keys ({_KEY_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (key.id, key.name, key.key_hash, key.role, key.node_id, key.created_by,
             key.created_ts, int(key.revoked))))
        return key

    def api_key(self, key_id: str) -> ApiKey | None:
        return self._one(_key, f"SELECT {_KEY_COLS} FROM api_keys WHERE id = ?", key_id)

    def api_keys(self) -> list[ApiKey]:
        return [_key(r) for r in self._read(lambda db: db.execute(
            f"SELECT {_KEY_COLS} FROM api_keys ORDER BY created_ts").fetchall())]

    def revoke_api_key(self, key_id: str) -> None:
        n = self._write(lambda db: db.execute("UPDATE api_keys SET revoked = 1 WHERE id = ?",
                                              (key_id,)).rowcount)
        if not n:
            raise NotFound(f"no API key {key_id}")

    # ---------------------------------------------------------------- devices

    def add_device(self, device: Device) -> Device:
        def do(db: sqlite3.Connection) -> Device:
            if db.execute("SELECT 1 FROM devices WHERE id = ?", (device.id,)).fetchone():
                raise Conflict(f"a device {device.id!r} exists")
            db.execute(f"INSERT INTO devices ({_DEVICE_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                       (device.id, device.name, device.project, device.model,
                        device.transport, json.dumps(device.address), device.location,
                        device.created_by, device.created_ts, device.updated_ts,
                        json.dumps(device.settings or {})))
            return device
        return self._write(do)

    def get_device(self, device_id: str) -> Device | None:
        return self._one(_device, f"SELECT {_DEVICE_COLS} FROM devices WHERE id = ?", device_id)

    def devices(self) -> list[Device]:
        return [_device(r) for r in self._read(lambda db: db.execute(
            f"SELECT {_DEVICE_COLS} FROM devices ORDER BY id").fetchall())]

    def update_device(self, device_id: str, **changes: Any) -> Device:
        allowed = {"name", "project", "model", "transport", "address", "location",
                   "updated_ts", "settings"}
        bad = set(changes) - allowed
        if bad:
            raise ValueError(f"cannot change {sorted(bad)} of a device")
        for key in ("address", "settings"):
            if key in changes:
                changes[key] = json.dumps(changes[key])

        def do(db: sqlite3.Connection) -> Device:
            if changes:
                cols = ", ".join(f"{k} = ?" for k in changes)
                db.execute(f"UPDATE devices SET {cols} WHERE id = ?",
                           [*changes.values(), device_id])
            row = db.execute(f"SELECT {_DEVICE_COLS} FROM devices WHERE id = ?",
                             (device_id,)).fetchone()
            if row is None:
                raise NotFound(f"no device {device_id!r}")
            return _device(row)
        return self._write(do)

    # ---------------------------------------------------------------- commands

    def add_command(self, command_id: str, device: str, ts: float, ttl: float) -> None:
        self._write(lambda db: db.execute(
            "INSERT OR REPLACE INTO commands (id, device, ts, ttl) VALUES (?, ?, ?, ?)",
            (command_id, device, ts, ttl)))

    def command(self, command_id: str) -> tuple[str, float, float] | None:
        row = self._read(lambda db: db.execute(
            "SELECT device, ts, ttl FROM commands WHERE id = ?", (command_id,)).fetchone())
        return None if row is None else (row[0], row[1], row[2])

    def delete_device(self, device_id: str) -> None:
        n = self._write(lambda db: db.execute("DELETE FROM devices WHERE id = ?",
                                              (device_id,)).rowcount)
        if not n:
            raise NotFound(f"no device {device_id!r}")
