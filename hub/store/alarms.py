"""The platform store's alarm records, their history, escalation timers and hazards.

A mixin of :class:`hub.store.SqliteStore` (same connection, lock and transactions) so that
``sqlite.py`` stays about accounts; its schema is migration 2 (:data:`MIGRATION`). The
alarm desk (:mod:`hub.alarmdesk.desk`) writes edges here from the journal; the API and
``hub alarms`` write people's acts. Every change of a record is one row of ``alarm_log``,
whose id orders the live stream of alarm changes.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from hub.alarmdesk.lifecycle import AlarmRecord, Change, apply_ack, apply_act, apply_event
from hub.model import Acknowledgement, Event, EventKind

MIGRATION = """
    CREATE TABLE alarms (
        id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, device TEXT NOT NULL,
        project TEXT NOT NULL, kind TEXT NOT NULL, code TEXT NOT NULL, channel TEXT NOT NULL,
        severity TEXT NOT NULL, first_ts REAL NOT NULL, last_ts REAL NOT NULL,
        active_events TEXT NOT NULL, acked INTEGER NOT NULL, acked_by TEXT NOT NULL,
        acked_ts REAL, cleared_ts REAL, assignee TEXT NOT NULL, cause TEXT NOT NULL,
        action_taken TEXT NOT NULL, count INTEGER NOT NULL, message TEXT NOT NULL,
        value REAL, last_seq INTEGER NOT NULL, open INTEGER NOT NULL);
    CREATE UNIQUE INDEX alarms_open_key ON alarms (key) WHERE open = 1;
    CREATE INDEX alarms_project ON alarms (project, first_ts);
    CREATE TABLE alarm_events (event_id TEXT PRIMARY KEY, alarm_id INTEGER NOT NULL);
    CREATE TABLE alarm_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT, alarm_id INTEGER NOT NULL, project TEXT NOT NULL,
        ts REAL NOT NULL, by TEXT NOT NULL, action TEXT NOT NULL, note TEXT NOT NULL,
        details TEXT NOT NULL);
    CREATE INDEX alarm_log_alarm ON alarm_log (alarm_id);
    CREATE TABLE escalations (
        alarm_id INTEGER PRIMARY KEY, policy TEXT NOT NULL, step INTEGER NOT NULL,
        due REAL NOT NULL, base REAL NOT NULL);
    CREATE TABLE notifications (
        id INTEGER PRIMARY KEY AUTOINCREMENT, alarm_id INTEGER NOT NULL, step INTEGER NOT NULL,
        channel TEXT NOT NULL, recipient TEXT NOT NULL, ts REAL NOT NULL,
        status TEXT NOT NULL, answer TEXT NOT NULL DEFAULT '',
        attempts INTEGER NOT NULL DEFAULT 0, body TEXT NOT NULL, done_ts REAL,
        UNIQUE (alarm_id, step, channel, recipient));
    CREATE INDEX notifications_pending ON notifications (status) WHERE status = 'pending';
    CREATE TABLE policies (
        project TEXT PRIMARY KEY, body TEXT NOT NULL, updated_by TEXT NOT NULL,
        updated_ts REAL NOT NULL);
    CREATE TABLE contacts (
        user_id INTEGER NOT NULL REFERENCES users (id), rank INTEGER NOT NULL,
        channel TEXT NOT NULL, address TEXT NOT NULL, PRIMARY KEY (user_id, channel));
    CREATE TABLE hazards (
        id INTEGER PRIMARY KEY AUTOINCREMENT, project TEXT NOT NULL, device TEXT NOT NULL,
        alarm_id INTEGER, category TEXT NOT NULL, severity TEXT NOT NULL,
        description TEXT NOT NULL, state TEXT NOT NULL, deadline REAL,
        responsible TEXT NOT NULL, created_by TEXT NOT NULL, created_ts REAL NOT NULL,
        updated_ts REAL NOT NULL, closed_ts REAL);
    CREATE INDEX hazards_project ON hazards (project, created_ts);
    CREATE TABLE hazard_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT, hazard_id INTEGER NOT NULL,
        project TEXT NOT NULL, ts REAL NOT NULL, by TEXT NOT NULL, from_state TEXT,
        to_state TEXT NOT NULL, note TEXT NOT NULL);
    CREATE TABLE hazard_files (
        id INTEGER PRIMARY KEY AUTOINCREMENT, hazard_id INTEGER NOT NULL, name TEXT NOT NULL,
        content_type TEXT NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL,
        path TEXT NOT NULL, by TEXT NOT NULL, ts REAL NOT NULL);
"""

_COLS = ("id, key, device, project, kind, code, channel, severity, first_ts, last_ts, "
         "active_events, acked, acked_by, acked_ts, cleared_ts, assignee, cause, "
         "action_taken, count, message, value, last_seq")


class Where:
    """A WHERE clause built from optional filters (values always bound, never pasted)."""

    def __init__(self, first: str = "1 = 1", *args: Any) -> None:
        self.parts = [first]
        self.args: list[Any] = list(args)

    def add(self, clause: str, *args: Any) -> Where:
        self.parts.append(clause)
        self.args.extend(args)
        return self

    def projects(self, projects: set[str] | None) -> bool:
        """Limit to ``projects`` (None: all); False when the set is empty (nothing)."""
        if projects is None:
            return True
        if projects:
            self.add(f"project IN ({', '.join('?' * len(projects))})", *sorted(projects))
        return bool(projects)

    def period(self, column: str, since: float | None, until: float | None) -> Where:
        if since is not None:
            self.add(f"{column} >= ?", since)
        if until is not None:
            self.add(f"{column} <= ?", until)
        return self

    def equal(self, **values: Any) -> Where:
        for col, val in values.items():
            if val is not None:
                self.add(f"{col} = ?", val)
        return self

    @property
    def sql(self) -> str:
        return " AND ".join(self.parts)


def _alarm(row: tuple) -> AlarmRecord:
    return AlarmRecord(*row[:10], tuple(json.loads(row[10])), bool(row[11]), *row[12:])


def _log_row(row: tuple) -> dict[str, Any]:
    return {"seq": row[0], "alarm_id": row[1], "project": row[2], "ts": row[3],
            "by": row[4], "action": row[5], "note": row[6], "details": json.loads(row[7])}


class AlarmTables:
    """Alarm methods of the store (needs ``_read`` and ``_write`` of :class:`SqliteStore`)."""

    _read: Callable[..., Any]
    _write: Callable[..., Any]

    # ------------------------------------------------------------ writing records

    @staticmethod
    def _save(db: sqlite3.Connection, r: AlarmRecord) -> AlarmRecord:
        values = (r.key, r.device, r.project, r.kind, r.code, r.channel, r.severity,
                  r.first_ts, r.last_ts, json.dumps(list(r.active_events)), int(r.acked),
                  r.acked_by, r.acked_ts, r.cleared_ts, r.assignee, r.cause, r.action_taken,
                  r.count, r.message, r.value, r.last_seq, int(r.open))
        if r.id:
            db.execute("UPDATE alarms SET key=?, device=?, project=?, kind=?, code=?, "
                       "channel=?, severity=?, first_ts=?, last_ts=?, active_events=?, "
                       "acked=?, acked_by=?, acked_ts=?, cleared_ts=?, assignee=?, cause=?, "
                       "action_taken=?, count=?, message=?, value=?, last_seq=?, open=? "
                       "WHERE id=?", (*values, r.id))
            return r
        cur = db.execute(f"INSERT INTO alarms ({_COLS[4:]}, open) VALUES "
                         f"({', '.join('?' * 22)})", values)
        return replace(r, id=cur.lastrowid)

    @staticmethod
    def _log(db: sqlite3.Connection, r: AlarmRecord, c: Change) -> int:
        cur = db.execute("INSERT INTO alarm_log (alarm_id, project, ts, by, action, note, "
                         "details) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (r.id, r.project, c.ts, c.by, c.action, c.note,
                          json.dumps(c.details, ensure_ascii=False)))
        return cur.lastrowid

    def ingest(self, items: Iterable[tuple[int, Any]], project_of: Callable[[str], str]
               ) -> list[tuple[AlarmRecord, Change]]:
        """Journal records ``(seq, Event | Acknowledgement)`` applied in one transaction;
        the changes they made, in order. Replays (seq at or below a record's) change
        nothing, so the desk may commit its cursor after this without a window."""
        items = list(items)

        def do(db: sqlite3.Connection) -> list[tuple[AlarmRecord, Change]]:
            out = []
            for seq, rec in items:
                if isinstance(rec, Event):
                    if rec.kind not in (EventKind.ALARM, EventKind.FAULT) or not rec.id:
                        continue
                    key = f"{rec.device}|{rec.channel}|{rec.code}"
                    row = db.execute(f"SELECT {_COLS} FROM alarms WHERE key = ? AND open = 1",
                                     (key,)).fetchone()
                    old = _alarm(row) if row else None
                    new, change = apply_event(old, rec, project_of(rec.device), seq)
                elif isinstance(rec, Acknowledgement):
                    row = db.execute(f"SELECT {', '.join('a.' + c for c in _COLS.split(', '))}"
                                     " FROM alarm_events e JOIN alarms a ON a.id = e.alarm_id"
                                     " WHERE e.event_id = ?", (rec.event_id,)).fetchone()
                    if row is None:
                        continue
                    old = _alarm(row)
                    new, change = apply_ack(old, rec, seq)
                else:
                    continue
                if new is None or new == old:
                    continue
                new = self._save(db, new)
                if isinstance(rec, Event):
                    db.execute("INSERT OR IGNORE INTO alarm_events VALUES (?, ?)",
                               (rec.id, new.id))
                if change is not None:
                    self._log(db, new, change)
                    out.append((new, change))
            return out
        return self._write(do)

    def alarm_act(self, alarm_id: int, action: str, by: str, ts: float, **kw: str
                  ) -> tuple[AlarmRecord, Change | None]:
        """A person's act on a record (see :func:`hub.alarmdesk.lifecycle.apply_act`);
        :class:`hub.store.NotFound` or :class:`IllegalAct`."""
        from hub.store.base import NotFound

        def do(db: sqlite3.Connection) -> tuple[AlarmRecord, Change | None]:
            row = db.execute(f"SELECT {_COLS} FROM alarms WHERE id = ?", (alarm_id,)).fetchone()
            if row is None:
                raise NotFound(f"alarm {alarm_id}")
            new, change = apply_act(_alarm(row), action, by, ts, **kw)
            if change is not None:
                self._save(db, new)
                self._log(db, new, change)
            return new, change
        return self._write(do)

    # ------------------------------------------------------------ reading

    def alarm(self, alarm_id: int) -> AlarmRecord | None:
        row = self._read(lambda db: db.execute(f"SELECT {_COLS} FROM alarms WHERE id = ?",
                                               (alarm_id,)).fetchone())
        return _alarm(row) if row else None

    def alarms(self, projects: set[str] | None = None, *, open_only: bool = False,
               state: str | None = None, device: str | None = None, kind: str | None = None,
               since: float | None = None, until: float | None = None,
               after_id: int = 0, limit: int = 100) -> list[AlarmRecord]:
        """Records, newest id last, filtered; ``projects`` None means every project."""
        w = Where("id > ?", after_id)
        if not w.projects(projects):
            return []
        if open_only:
            w.add("open = 1")
        if state is not None:
            active, _, acked = state.partition("-")
            # CASE: a comparison is 0/1 in SQLite but a boolean in PostgreSQL
            w.add("CASE WHEN active_events != '[]' THEN 1 ELSE 0 END = ? AND acked = ?",
                  int(active == "active"), int(acked == "acknowledged"))
        w.equal(device=device, kind=kind).period("first_ts", since, until)
        sql = f"SELECT {_COLS} FROM alarms WHERE {w.sql} ORDER BY id LIMIT ?"
        rows = self._read(lambda db: db.execute(sql, (*w.args, limit)).fetchall())
        return [_alarm(r) for r in rows]

    def alarm_history(self, alarm_id: int) -> list[dict[str, Any]]:
        rows = self._read(lambda db: db.execute(
            "SELECT id, alarm_id, project, ts, by, action, note, details FROM alarm_log "
            "WHERE alarm_id = ? ORDER BY id", (alarm_id,)).fetchall())
        return [_log_row(r) for r in rows]

    def alarm_changes(self, after: int, projects: set[str] | None = None,
                      limit: int = 500) -> list[dict[str, Any]]:
        """Changes of every record after change ``after`` (the live stream's resume
        point), in the given projects."""
        w = Where("id > ?", after)
        if not w.projects(projects):
            return []
        rows = self._read(lambda db: db.execute(
            "SELECT id, alarm_id, project, ts, by, action, note, details FROM alarm_log "
            f"WHERE {w.sql} ORDER BY id LIMIT ?", (*w.args, limit)).fetchall())
        return [_log_row(r) for r in rows]

    def last_alarm_change(self) -> int:
        return self._read(lambda db: db.execute(
            "SELECT COALESCE(MAX(id), 0) FROM alarm_log").fetchone()[0])

    # ------------------------------------------------------------ escalation timers

    def esc_apply(self, saves: dict[int, tuple[str, int, float, float]],
                  drops: set[int]) -> None:
        """Ladders moved and ended, in one transaction."""
        def do(db: sqlite3.Connection) -> None:
            db.executemany("INSERT OR REPLACE INTO escalations (alarm_id, policy, step, due, "
                           "base) VALUES (?, ?, ?, ?, ?)",
                           [(a, *row) for a, row in saves.items()])
            db.executemany("DELETE FROM escalations WHERE alarm_id = ?",
                           [(a,) for a in drops])
        self._write(do)

    def alarm_records(self, alarm_ids: list[int]) -> dict[int, AlarmRecord]:
        out: dict[int, AlarmRecord] = {}
        ids = list(dict.fromkeys(alarm_ids))
        for i in range(0, len(ids), 500):  # SQLite's bound-parameter limit
            part = ids[i:i + 500]
            rows = self._read(lambda db, part=part: db.execute(
                f"SELECT {_COLS} FROM alarms WHERE id IN ({', '.join('?' * len(part))})",
                part).fetchall())
            out.update((r[0], _alarm(r)) for r in rows)
        return out

    def esc_load(self) -> list[tuple[int, str, int, float, float]]:
        return [tuple(r) for r in self._read(lambda db: db.execute(
            "SELECT alarm_id, policy, step, due, base FROM escalations ORDER BY due"
        ).fetchall())]

    # ------------------------------------------------------------ notifications

    def notify_claim(self, items: list[tuple[int, int, str, str, dict[str, Any]]],
                     ts: float) -> list[int | None]:
        """Claim ``(alarm_id, step, channel, recipient, body)`` attempts in one
        transaction: each new one's row id, or None when it was claimed before (never sent
        twice)."""
        def do(db: sqlite3.Connection) -> list[int | None]:
            out: list[int | None] = []
            for alarm_id, step, channel, recipient, body in items:
                cur = db.execute(
                    "INSERT OR IGNORE INTO notifications (alarm_id, step, channel, recipient, "
                    "ts, status, body) VALUES (?, ?, ?, ?, ?, 'pending', ?)",
                    (alarm_id, step, channel, recipient, ts,
                     json.dumps(body, ensure_ascii=False)))
                out.append(cur.lastrowid if cur.rowcount else None)
            return out
        return self._write(do)

    def notify_done(self, row_id: int, status: str, answer: str, attempts: int,
                    ts: float) -> None:
        self._write(lambda db: db.execute(
            "UPDATE notifications SET status = ?, answer = ?, attempts = ?, done_ts = ? "
            "WHERE id = ?", (status, answer[:2000], attempts, ts, row_id)))

    def notify_pending(self) -> list[tuple[int, str, dict[str, Any]]]:
        rows = self._read(lambda db: db.execute(
            "SELECT id, channel, body FROM notifications WHERE status = 'pending' "
            "ORDER BY id").fetchall())
        return [(r[0], r[1], json.loads(r[2])) for r in rows]

    def notifications(self, alarm_id: int) -> list[dict[str, Any]]:
        rows = self._read(lambda db: db.execute(
            "SELECT id, step, channel, recipient, ts, status, answer, attempts, done_ts "
            "FROM notifications WHERE alarm_id = ? ORDER BY id", (alarm_id,)).fetchall())
        keys = ("id", "step", "channel", "recipient", "ts", "status", "answer", "attempts",
                "done_ts")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    # ------------------------------------------------------------ policies, contacts

    def policy(self, project: str) -> dict[str, Any] | None:
        row = self._read(lambda db: db.execute(
            "SELECT body, updated_by, updated_ts FROM policies WHERE project = ?",
            (project,)).fetchone())
        if row is None:
            return None
        return {**json.loads(row[0]), "updated_by": row[1], "updated_ts": row[2]}

    def set_policy(self, project: str, body: dict[str, Any] | None, by: str,
                   ts: float) -> None:
        def do(db: sqlite3.Connection) -> None:
            if body is None:
                db.execute("DELETE FROM policies WHERE project = ?", (project,))
            else:
                db.execute("INSERT OR REPLACE INTO policies VALUES (?, ?, ?, ?)",
                           (project, json.dumps(body, ensure_ascii=False), by, ts))
        self._write(do)

    def contacts(self, user_id: int) -> list[tuple[str, str]]:
        """``[(channel, address)]`` in the user's order of preference."""
        return [tuple(r) for r in self._read(lambda db: db.execute(
            "SELECT channel, address FROM contacts WHERE user_id = ? ORDER BY rank",
            (user_id,)).fetchall())]

    def set_contacts(self, user_id: int, contacts: list[tuple[str, str]]) -> None:
        def do(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM contacts WHERE user_id = ?", (user_id,))
            db.executemany("INSERT INTO contacts VALUES (?, ?, ?, ?)",
                           [(user_id, i, c, a) for i, (c, a) in enumerate(contacts)])
        self._write(do)

    def users_with_role(self, node_ids: Iterable[int], role: str) -> list[tuple[int, str]]:
        """``[(user id, name)]`` of enabled users granted ``role`` on one of ``node_ids``."""
        nodes = list(node_ids)
        if not nodes:
            return []
        return [tuple(r) for r in self._read(lambda db: db.execute(
            "SELECT DISTINCT u.id, u.name FROM grants g JOIN users u ON u.id = g.user_id "
            f"WHERE g.role = ? AND u.disabled = 0 AND g.node_id IN "
            f"({', '.join('?' * len(nodes))}) ORDER BY u.id", (role, *nodes)).fetchall())]
