"""The platform store's hazards, their transitions and attachments (tables of migration 2,
see :mod:`hub.store.alarms`); a mixin of :class:`hub.store.SqliteStore`."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from hub.alarmdesk.hazards import check_transition
from hub.store.alarms import Where


@dataclass(frozen=True)
class Hazard:
    id: int
    project: str
    device: str
    alarm_id: int | None
    category: str
    severity: str
    description: str
    state: str
    deadline: float | None
    responsible: str
    created_by: str
    created_ts: float
    updated_ts: float
    closed_ts: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_COLS = ("id, project, device, alarm_id, category, severity, description, state, deadline, "
         "responsible, created_by, created_ts, updated_ts, closed_ts")


class HazardTables:
    _read: Callable[..., Any]
    _write: Callable[..., Any]

    def hazard_add(self, project: str, device: str, alarm_id: int | None, category: str,
                   severity: str, description: str, deadline: float | None,
                   responsible: str, by: str, ts: float, note: str = "") -> Hazard:
        def do(db: sqlite3.Connection) -> Hazard:
            cur = db.execute(
                f"INSERT INTO hazards ({_COLS[4:]}) VALUES ({', '.join('?' * 13)})",
                (project, device, alarm_id, category, severity, description, "found",
                 deadline, responsible, by, ts, ts, None))
            db.execute("INSERT INTO hazard_log (hazard_id, project, ts, by, from_state, "
                       "to_state, note) VALUES (?, ?, ?, ?, NULL, 'found', ?)",
                       (cur.lastrowid, project, ts, by, note))
            return Hazard(*db.execute(f"SELECT {_COLS} FROM hazards WHERE id = ?",
                                      (cur.lastrowid,)).fetchone())
        return self._write(do)

    def hazard(self, hazard_id: int) -> Hazard | None:
        row = self._read(lambda db: db.execute(f"SELECT {_COLS} FROM hazards WHERE id = ?",
                                               (hazard_id,)).fetchone())
        return Hazard(*row) if row else None

    def hazards(self, projects: set[str] | None = None, *, state: str | None = None,
                overdue_at: float | None = None, since: float | None = None,
                until: float | None = None, after_id: int = 0,
                limit: int = 100) -> list[Hazard]:
        w = Where("id > ?", after_id)
        if not w.projects(projects):
            return []
        w.equal(state=state).period("created_ts", since, until)
        if overdue_at is not None:
            w.add("state != 'closed' AND deadline IS NOT NULL AND deadline < ?", overdue_at)
        sql = f"SELECT {_COLS} FROM hazards WHERE {w.sql} ORDER BY id LIMIT ?"
        args = w.args
        return [Hazard(*r) for r in self._read(lambda db: db.execute(sql, (*args, limit))
                                              .fetchall())]

    def hazard_move(self, hazard_id: int, to: str, by: str, ts: float,
                    note: str = "") -> Hazard:
        """Check and make a transition in one transaction (``IllegalTransition``)."""
        from hub.store.base import NotFound

        def do(db: sqlite3.Connection) -> Hazard:
            row = db.execute(f"SELECT {_COLS} FROM hazards WHERE id = ?",
                             (hazard_id,)).fetchone()
            if row is None:
                raise NotFound(f"hazard {hazard_id}")
            h = Hazard(*row)
            check_transition(h.state, to)
            db.execute("UPDATE hazards SET state = ?, updated_ts = ?, closed_ts = ? "
                       "WHERE id = ?", (to, ts, ts if to == "closed" else None, hazard_id))
            db.execute("INSERT INTO hazard_log (hazard_id, project, ts, by, from_state, "
                       "to_state, note) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (hazard_id, h.project, ts, by, h.state, to, note))
            return Hazard(*db.execute(f"SELECT {_COLS} FROM hazards WHERE id = ?",
                                      (hazard_id,)).fetchone())
        return self._write(do)

    def hazard_history(self, hazard_id: int) -> list[dict[str, Any]]:
        rows = self._read(lambda db: db.execute(
            "SELECT id, ts, by, from_state, to_state, note FROM hazard_log "
            "WHERE hazard_id = ? ORDER BY id", (hazard_id,)).fetchall())
        return [dict(zip(("seq", "ts", "by", "from_state", "to_state", "note"), r,
                         strict=True)) for r in rows]

    def hazard_changes(self, after: int, projects: set[str] | None = None,
                       limit: int = 500) -> list[dict[str, Any]]:
        """Transitions of every hazard after ``after`` (the live stream's resume point)."""
        w = Where("id > ?", after)
        if not w.projects(projects):
            return []
        rows = self._read(lambda db: db.execute(
            "SELECT id, hazard_id, project, ts, by, from_state, to_state, note FROM hazard_log "
            f"WHERE {w.sql} ORDER BY id LIMIT ?", (*w.args, limit)).fetchall())
        return [dict(zip(("seq", "hazard_id", "project", "ts", "by", "from_state", "to_state",
                          "note"), r, strict=True)) for r in rows]

    def last_hazard_change(self) -> int:
        return self._read(lambda db: db.execute(
            "SELECT COALESCE(MAX(id), 0) FROM hazard_log").fetchone()[0])

    def hazard_file_add(self, hazard_id: int, name: str, content_type: str, size: int,
                        sha256: str, path: str, by: str, ts: float) -> int:
        return self._write(lambda db: db.execute(
            "INSERT INTO hazard_files (hazard_id, name, content_type, size, sha256, path, "
            "by, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (hazard_id, name, content_type, size, sha256, path, by, ts)).lastrowid)

    def hazard_files(self, hazard_id: int) -> list[dict[str, Any]]:
        rows = self._read(lambda db: db.execute(
            "SELECT id, name, content_type, size, sha256, path, by, ts FROM hazard_files "
            "WHERE hazard_id = ? ORDER BY id", (hazard_id,)).fetchall())
        return [dict(zip(("id", "name", "content_type", "size", "sha256", "path", "by", "ts"),
                         r, strict=True)) for r in rows]

    def alarm_times(self, projects: set[str] | None, since: float | None,
                    until: float | None) -> list[tuple]:
        """``(kind, severity, state, first_ts, acked_ts, closed_ts)`` of the alarms raised
        in the period, for the statistics (closed: when cleared and acknowledged)."""
        w = Where()
        if not w.projects(projects):
            return []
        w.period("first_ts", since, until)
        return self._read(lambda db: db.execute(
            "SELECT kind, severity, acked, CASE WHEN active_events != '[]' THEN 1 ELSE 0 END, "
            "first_ts, acked_ts, "
            f"cleared_ts, code FROM alarms WHERE {w.sql}", w.args).fetchall())
