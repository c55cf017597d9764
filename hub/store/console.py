"""The console's tables in the platform store: each account's language, and each project's
floor plan with the places of its devices on it.

A mixin of :class:`hub.store.SqliteStore` (same connection, lock and transactions), as
:mod:`hub.store.alarms` is; its schema is the console's migration (:data:`MIGRATION`,
numbered 7 in the plan of migrations; the integrator renumbers). Portable SQL only: the
upserts are a delete and an insert in one transaction.
"""

from __future__ import annotations

import sqlite3
from typing import Any

MIGRATION = """
    CREATE TABLE console_prefs (
        user_id INTEGER PRIMARY KEY REFERENCES users (id), lang TEXT NOT NULL);
    CREATE TABLE floor_plans (
        project TEXT PRIMARY KEY, name TEXT NOT NULL, content_type TEXT NOT NULL,
        size INTEGER NOT NULL, sha256 TEXT NOT NULL, path TEXT NOT NULL, by TEXT NOT NULL,
        ts REAL NOT NULL);
    CREATE TABLE floor_spots (
        project TEXT NOT NULL, device TEXT NOT NULL, x REAL NOT NULL, y REAL NOT NULL,
        PRIMARY KEY (project, device));
"""


class ConsoleTables:
    """Store methods of the console (mixed into the SQLite store)."""

    _read: Any
    _write: Any

    def user_language(self, user_id: int) -> str | None:
        row = self._read(lambda db: db.execute(
            "SELECT lang FROM console_prefs WHERE user_id = ?", (user_id,)).fetchone())
        return row[0] if row else None

    def set_user_language(self, user_id: int, lang: str) -> None:
        def do(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM console_prefs WHERE user_id = ?", (user_id,))
            db.execute("INSERT INTO console_prefs (user_id, lang) VALUES (?, ?)",
                       (user_id, lang))
        self._write(do)

    def floor_plan(self, project: str) -> dict[str, Any] | None:
        row = self._read(lambda db: db.execute(
            "SELECT name, content_type, size, sha256, path, by, ts FROM floor_plans "
            "WHERE project = ?", (project,)).fetchone())
        if row is None:
            return None
        keys = ("name", "content_type", "size", "sha256", "path", "by", "ts")
        return {"project": project, **dict(zip(keys, row, strict=True))}

    def set_floor_plan(self, project: str, name: str, content_type: str, size: int,
                       sha256: str, path: str, by: str, ts: float) -> None:
        def do(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM floor_plans WHERE project = ?", (project,))
            db.execute("INSERT INTO floor_plans (project, name, content_type, size, sha256, "
                       "path, by, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (project, name, content_type, size, sha256, path, by, ts))
        self._write(do)

    def floor_spots(self, project: str) -> dict[str, tuple[float, float]]:
        rows = self._read(lambda db: db.execute(
            "SELECT device, x, y FROM floor_spots WHERE project = ?", (project,)).fetchall())
        return {d: (x, y) for d, x, y in rows}

    def set_floor_spot(self, project: str, device: str, x: float | None,
                       y: float | None) -> None:
        """Place ``device`` at (x, y), fractions of the plan's width and height; None
        takes it off the plan."""
        def do(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM floor_spots WHERE project = ? AND device = ?",
                       (project, device))
            if x is not None and y is not None:
                db.execute("INSERT INTO floor_spots (project, device, x, y) "
                           "VALUES (?, ?, ?, ?)", (project, device, x, y))
        self._write(do)
