"""The platform store's inspection plans and tasks, hazard reminders and the outbox's
attempt log: migration 5 (:data:`MIGRATION`); a mixin of :class:`hub.store.SqliteStore`.
Migration 9 (:data:`MIGRATION_9`, as assigned; the integrator numbers it on merge) adds
monthly plans (``frequency``, the plan's fixed ``utc_offset_minutes``), the photos of a
task's items (``inspection_files``) and an index for the voice limits' look-back on the
attempt log.

``inspection_log`` orders the live stream of inspection changes (plans created or changed,
tasks generated, missed, done). ``notification_attempts`` keeps every attempt of every
notification with the provider's answer; ``notifications.next_ts`` is when a pending one
is tried again (the outbox's durable retry time, kept across restarts).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

from hub.alarmdesk.inspections import CATCH_UP, plan_next_start, plan_periods
from hub.store.alarms import Where

MIGRATION = """
    ALTER TABLE notifications ADD COLUMN next_ts REAL;
    CREATE TABLE notification_attempts (
        id INTEGER PRIMARY KEY AUTOINCREMENT, notification_id INTEGER NOT NULL,
        attempt INTEGER NOT NULL, ts REAL NOT NULL, outcome TEXT NOT NULL,
        answer TEXT NOT NULL);
    CREATE INDEX notification_attempts_of ON notification_attempts (notification_id);
    CREATE TABLE hazard_reminders (
        hazard_id INTEGER NOT NULL, kind TEXT NOT NULL, ts REAL NOT NULL,
        PRIMARY KEY (hazard_id, kind));
    CREATE TABLE inspection_plans (
        id INTEGER PRIMARY KEY AUTOINCREMENT, project TEXT NOT NULL, name TEXT NOT NULL,
        items TEXT NOT NULL, every REAL NOT NULL, grace REAL NOT NULL,
        start_ts REAL NOT NULL, next_ts REAL NOT NULL, assignee TEXT NOT NULL,
        active INTEGER NOT NULL, created_by TEXT NOT NULL, created_ts REAL NOT NULL,
        updated_ts REAL NOT NULL);
    CREATE INDEX inspection_plans_due ON inspection_plans (active, next_ts);
    CREATE TABLE inspection_tasks (
        id INTEGER PRIMARY KEY AUTOINCREMENT, plan_id INTEGER NOT NULL,
        project TEXT NOT NULL, due_ts REAL NOT NULL, deadline_ts REAL NOT NULL,
        state TEXT NOT NULL, done_by TEXT NOT NULL, done_ts REAL,
        late INTEGER NOT NULL, results TEXT NOT NULL, problems INTEGER NOT NULL,
        note TEXT NOT NULL, hazard_id INTEGER, UNIQUE (plan_id, due_ts));
    CREATE INDEX inspection_tasks_state ON inspection_tasks (state, deadline_ts);
    CREATE INDEX inspection_tasks_project ON inspection_tasks (project, due_ts);
    CREATE TABLE inspection_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT, project TEXT NOT NULL, plan_id INTEGER NOT NULL,
        task_id INTEGER, ts REAL NOT NULL, by TEXT NOT NULL, action TEXT NOT NULL,
        details TEXT NOT NULL);
"""

MIGRATION_9 = """
    ALTER TABLE inspection_plans ADD COLUMN frequency TEXT NOT NULL DEFAULT '';
    ALTER TABLE inspection_plans ADD COLUMN utc_offset_minutes INTEGER NOT NULL DEFAULT 480;
    CREATE TABLE inspection_files (
        id INTEGER PRIMARY KEY AUTOINCREMENT, task_id INTEGER NOT NULL, item TEXT NOT NULL,
        name TEXT NOT NULL, content_type TEXT NOT NULL, size INTEGER NOT NULL,
        sha256 TEXT NOT NULL, path TEXT NOT NULL, by TEXT NOT NULL, ts REAL NOT NULL);
    CREATE INDEX inspection_files_task ON inspection_files (task_id);
    CREATE INDEX notification_attempts_ts ON notification_attempts (ts);
"""

_PLAN = ("id, project, name, items, every, grace, start_ts, next_ts, assignee, active, "
         "created_by, created_ts, updated_ts, frequency, utc_offset_minutes")
_FILE = ("id", "task_id", "item", "name", "content_type", "size", "sha256", "path", "by", "ts")
_TASK = ("t.id, t.plan_id, t.project, p.name, t.due_ts, t.deadline_ts, t.state, t.done_by, "
         "t.done_ts, t.late, t.results, t.problems, t.note, t.hazard_id, p.items, p.assignee")
_TASK_FROM = "inspection_tasks t JOIN inspection_plans p ON p.id = t.plan_id"


class TaskState(Exception):
    """The task was recorded already."""


def _plan(row: tuple) -> dict[str, Any]:
    keys = [k.strip() for k in _PLAN.split(",")]
    d = dict(zip(keys, row, strict=True))
    d["items"] = json.loads(d["items"])
    d["active"] = bool(d["active"])
    return d


def _task(row: tuple) -> dict[str, Any]:
    keys = ("id", "plan_id", "project", "plan_name", "due_ts", "deadline_ts", "state",
            "done_by", "done_ts", "late", "results", "problems", "note", "hazard_id",
            "items", "assignee")
    d = dict(zip(keys, row, strict=True))
    d["results"] = json.loads(d["results"])
    d["items"] = json.loads(d["items"])
    d["late"] = bool(d["late"])
    return d


def _log(db: sqlite3.Connection, project: str, plan_id: int, task_id: int | None, ts: float,
         by: str, action: str, details: dict[str, Any]) -> dict[str, Any]:
    cur = db.execute(
        "INSERT INTO inspection_log (project, plan_id, task_id, ts, by, action, details) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (project, plan_id, task_id, ts, by, action, json.dumps(details, ensure_ascii=False)))
    return {"seq": cur.lastrowid, "project": project, "plan_id": plan_id, "task_id": task_id,
            "ts": ts, "by": by, "action": action, "details": details}


class InspectionTables:
    _read: Callable[..., Any]
    _write: Callable[..., Any]

    # ------------------------------------------------------------ plans

    def plan_add(self, project: str, name: str, items: list[str], every: float, grace: float,
                 start_ts: float, assignee: str, by: str, ts: float, frequency: str = "",
                 utc_offset_minutes: int = 480) -> tuple[dict[str, Any], dict[str, Any]]:
        """A plan; ``frequency`` ``monthly`` runs by the calendar in the plan's local time
        (``utc_offset_minutes``), its ``grace`` 0 meaning until the next period."""
        def do(db: sqlite3.Connection) -> tuple[dict[str, Any], dict[str, Any]]:
            cur = db.execute(
                f"INSERT INTO inspection_plans ({_PLAN[4:]}) VALUES "
                f"({', '.join('?' * 14)})",
                (project, name, json.dumps(items, ensure_ascii=False), every, grace, start_ts,
                 start_ts, assignee, 1, by, ts, ts, frequency, utc_offset_minutes))
            plan = _plan(db.execute(f"SELECT {_PLAN} FROM inspection_plans WHERE id = ?",
                                    (cur.lastrowid,)).fetchone())
            return plan, _log(db, project, plan["id"], None, ts, by, "plan.created",
                              {"name": name, "every": every, "items": len(items)}
                              | ({"frequency": frequency} if frequency else {}))
        return self._write(do)

    def plan(self, plan_id: int) -> dict[str, Any] | None:
        row = self._read(lambda db: db.execute(
            f"SELECT {_PLAN} FROM inspection_plans WHERE id = ?", (plan_id,)).fetchone())
        return _plan(row) if row else None

    def plans(self, projects: set[str] | None = None, *, active_only: bool = False,
              after_id: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        w = Where("id > ?", after_id)
        if not w.projects(projects):
            return []
        if active_only:
            w.add("active = 1")
        rows = self._read(lambda db: db.execute(
            f"SELECT {_PLAN} FROM inspection_plans WHERE {w.sql} ORDER BY id LIMIT ?",
            (*w.args, limit)).fetchall())
        return [_plan(r) for r in rows]

    def plan_update(self, plan_id: int, changes: dict[str, Any], by: str, ts: float
                    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Change name, items, every, grace, assignee or active. A new frequency counts
        from now (its first task one period later: this period's task exists); a plan made
        active again skips the periods it was idle (they are neither generated nor
        missed)."""
        def do(db: sqlite3.Connection) -> tuple[dict[str, Any], dict[str, Any]]:
            old = _plan(db.execute(f"SELECT {_PLAN} FROM inspection_plans WHERE id = ?",
                                   (plan_id,)).fetchone())
            new = {**old, **changes}
            if "every" in changes:  # the current period's task exists; the new one after it
                new["start_ts"] = ts
                new["next_ts"] = plan_next_start(new, ts)
            elif changes.get("active") and not old["active"]:  # idle periods are skipped
                new["next_ts"] = plan_next_start(new, ts)
            db.execute(
                "UPDATE inspection_plans SET name = ?, items = ?, every = ?, grace = ?, "
                "start_ts = ?, next_ts = ?, assignee = ?, active = ?, updated_ts = ?, "
                "frequency = ? WHERE id = ?",
                (new["name"], json.dumps(new["items"], ensure_ascii=False), new["every"],
                 new["grace"], new["start_ts"], new["next_ts"], new["assignee"],
                 int(new["active"]), ts, new["frequency"], plan_id))
            plan = _plan(db.execute(f"SELECT {_PLAN} FROM inspection_plans WHERE id = ?",
                                    (plan_id,)).fetchone())
            return plan, _log(db, plan["project"], plan_id, None, ts, by, "plan.updated",
                              {k: v for k, v in changes.items() if k != "items"}
                              | ({"items": len(changes["items"])} if "items" in changes
                                 else {}))
        return self._write(do)

    # ------------------------------------------------------------ tasks

    def inspection_tick(self, now: float, cap: int = CATCH_UP) -> list[dict[str, Any]]:
        """Generate the tasks of every period begun by ``now`` and flag open tasks past
        their deadline as missed, in one transaction; the changes made."""
        def do(db: sqlite3.Connection) -> list[dict[str, Any]]:
            changes = []
            due = db.execute(f"SELECT {_PLAN} FROM inspection_plans WHERE active = 1 AND "
                             "next_ts <= ? ORDER BY id", (now,)).fetchall()
            for plan in map(_plan, due):
                for start, deadline in plan_periods(plan, now, cap):
                    cur = db.execute(
                        "INSERT OR IGNORE INTO inspection_tasks (plan_id, project, due_ts, "
                        "deadline_ts, state, done_by, late, results, problems, note) "
                        "VALUES (?, ?, ?, ?, 'open', '', 0, '[]', 0, '')",
                        (plan["id"], plan["project"], start, deadline))
                    if cur.rowcount:
                        changes.append(_log(db, plan["project"], plan["id"], cur.lastrowid,
                                            now, "hub", "task.created",
                                            {"due_ts": start, "deadline_ts": deadline}))
                db.execute("UPDATE inspection_plans SET next_ts = ? WHERE id = ?",
                           (plan_next_start(plan, now), plan["id"]))
            late = db.execute("SELECT id, plan_id, project, deadline_ts FROM inspection_tasks "
                              "WHERE state = 'open' AND deadline_ts <= ? ORDER BY id",
                              (now,)).fetchall()
            for task_id, plan_id, project, deadline in late:
                db.execute("UPDATE inspection_tasks SET state = 'missed' WHERE id = ?",
                           (task_id,))
                changes.append(_log(db, project, plan_id, task_id, now, "hub", "task.missed",
                                    {"deadline_ts": deadline}))
            return changes
        return self._write(do)

    def task(self, task_id: int) -> dict[str, Any] | None:
        row = self._read(lambda db: db.execute(
            f"SELECT {_TASK} FROM {_TASK_FROM} WHERE t.id = ?", (task_id,)).fetchone())
        return _task(row) if row else None

    def tasks(self, projects: set[str] | None = None, *, state: str | None = None,
              plan_id: int | None = None, since: float | None = None,
              until: float | None = None, after_id: int = 0, limit: int = 100
              ) -> list[dict[str, Any]]:
        w = Where("t.id > ?", after_id)
        if projects is not None:
            if not projects:
                return []
            w.add(f"t.project IN ({', '.join('?' * len(projects))})", *sorted(projects))
        w.equal(**{"t.state": state, "t.plan_id": plan_id}).period("t.due_ts", since, until)
        rows = self._read(lambda db: db.execute(
            f"SELECT {_TASK} FROM {_TASK_FROM} WHERE {w.sql} ORDER BY t.id LIMIT ?",
            (*w.args, limit)).fetchall())
        return [_task(r) for r in rows]

    def task_record(self, task_id: int, results: list[dict[str, Any]], note: str, by: str,
                    ts: float, hazard_id: int | None = None
                    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Record a task's results (open or missed: then late); TaskState when done."""
        problems = sum(1 for r in results if r.get("result") == "problem")

        def do(db: sqlite3.Connection) -> tuple[dict[str, Any], dict[str, Any]]:
            row = db.execute("SELECT state, plan_id, project FROM inspection_tasks "
                             "WHERE id = ?", (task_id,)).fetchone()
            state, plan_id, project = row
            if state == "done":
                raise TaskState(f"task {task_id} was recorded already")
            db.execute(
                "UPDATE inspection_tasks SET state = 'done', done_by = ?, done_ts = ?, "
                "late = ?, results = ?, problems = ?, note = ?, hazard_id = ? WHERE id = ?",
                (by, ts, int(state == "missed"), json.dumps(results, ensure_ascii=False),
                 problems, note, hazard_id, task_id))
            change = _log(db, project, plan_id, task_id, ts, by, "task.done",
                          {"late": state == "missed", "problems": problems,
                           "hazard_id": hazard_id, "note": note})
            return _task(db.execute(f"SELECT {_TASK} FROM {_TASK_FROM} WHERE t.id = ?",
                                    (task_id,)).fetchone()), change
        return self._write(do)

    def inspection_changes(self, after: int, projects: set[str] | None = None,
                           limit: int = 500) -> list[dict[str, Any]]:
        w = Where("id > ?", after)
        if not w.projects(projects):
            return []
        rows = self._read(lambda db: db.execute(
            "SELECT id, project, plan_id, task_id, ts, by, action, details FROM "
            f"inspection_log WHERE {w.sql} ORDER BY id LIMIT ?", (*w.args, limit)).fetchall())
        return [{"seq": r[0], "project": r[1], "plan_id": r[2], "task_id": r[3], "ts": r[4],
                 "by": r[5], "action": r[6], "details": json.loads(r[7])} for r in rows]

    def last_inspection_change(self) -> int:
        return self._read(lambda db: db.execute(
            "SELECT COALESCE(MAX(id), 0) FROM inspection_log").fetchone()[0])

    def inspection_times(self, projects: set[str] | None, since: float | None,
                         until: float | None) -> list[tuple]:
        """``(state, late, due_ts, deadline_ts, done_ts, problems)`` of the tasks due in
        the period, for the statistics."""
        w = Where()
        if not w.projects(projects):
            return []
        w.period("due_ts", since, until)
        return self._read(lambda db: db.execute(
            "SELECT state, late, due_ts, deadline_ts, done_ts, problems FROM "
            f"inspection_tasks WHERE {w.sql}", w.args).fetchall())

    # ------------------------------------------------------------ photos of a task's items

    def inspection_file_add(self, task_id: int, item: str, name: str, content_type: str,
                            size: int, sha256: str, path: str, by: str, ts: float) -> int:
        return self._write(lambda db: db.execute(
            f"INSERT INTO inspection_files ({', '.join(_FILE[1:])}) VALUES "
            f"({', '.join('?' * 9)})",
            (task_id, item, name, content_type, size, sha256, path, by, ts)).lastrowid)

    def inspection_files(self, task_id: int) -> list[dict[str, Any]]:
        rows = self._read(lambda db: db.execute(
            f"SELECT {', '.join(_FILE)} FROM inspection_files WHERE task_id = ? ORDER BY id",
            (task_id,)).fetchall())
        return [dict(zip(_FILE, r, strict=True)) for r in rows]

    # ------------------------------------------------------------ hazard reminders

    def hazards_with_deadline(self, limit: int = 100_000) -> list[Any]:
        """Hazards not closed that have a deadline, with the reminder kinds sent."""
        rows = self._read(lambda db: db.execute(
            "SELECT h.id, h.project, h.category, h.description, h.deadline, h.responsible, "
            "h.severity, h.device FROM hazards h WHERE h.state != 'closed' AND h.deadline IS "
            "NOT NULL ORDER BY h.id LIMIT ?", (limit,)).fetchall())
        sent: dict[int, set[str]] = {}
        for hid, kind in self._read(lambda db: db.execute(
                "SELECT hazard_id, kind FROM hazard_reminders").fetchall()):
            sent.setdefault(hid, set()).add(kind)
        return [(*r, sent.get(r[0], set())) for r in rows]

    def hazard_reminded(self, hazard_id: int, kind: str, ts: float) -> None:
        self._write(lambda db: db.execute(
            "INSERT OR IGNORE INTO hazard_reminders (hazard_id, kind, ts) VALUES (?, ?, ?)",
            (hazard_id, kind, ts)))

    # ------------------------------------------------------------ outbox attempts

    def notify_attempt(self, row_id: int, attempt: int, ts: float, outcome: str, answer: str,
                       next_ts: float | None) -> None:
        """One attempt's answer, and when the notification is tried next (None: ended)."""
        def do(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO notification_attempts (notification_id, attempt, ts, "
                       "outcome, answer) VALUES (?, ?, ?, ?, ?)",
                       (row_id, attempt, ts, outcome, answer[:2000]))
            db.execute("UPDATE notifications SET next_ts = ? WHERE id = ?", (next_ts, row_id))
        self._write(do)

    def notify_settle(self, settled: list[tuple[int, str, str, int, float, str, str,
                                                float | None]]) -> None:
        """Attempts answered, in one transaction: each ``(row, status, answers so far,
        attempts, ts, outcome, this answer, next try or None)`` ends or reschedules its
        notification (as :meth:`notify_done` then :meth:`notify_attempt`)."""
        def do(db: sqlite3.Connection) -> None:
            for row, status, text, attempts, ts, outcome, answer, next_ts in settled:
                db.execute("UPDATE notifications SET status = ?, answer = ?, attempts = ?, "
                           "done_ts = ?, next_ts = ? WHERE id = ?",
                           (status, text[:2000], attempts, ts, next_ts, row))
                db.execute("INSERT INTO notification_attempts (notification_id, attempt, ts, "
                           "outcome, answer) VALUES (?, ?, ?, ?, ?)",
                           (row, attempts, ts, outcome, answer[:2000]))
        self._write(do)

    def notify_attempts(self, row_id: int) -> list[dict[str, Any]]:
        rows = self._read(lambda db: db.execute(
            "SELECT attempt, ts, outcome, answer FROM notification_attempts WHERE "
            "notification_id = ? ORDER BY id", (row_id,)).fetchall())
        return [dict(zip(("attempt", "ts", "outcome", "answer"), r, strict=True))
                for r in rows]

    def notify_attempt_times(self, channel: str, since: float, not_like: str = ""
                             ) -> list[tuple[str, float]]:
        """``(recipient, ts)`` of the attempts on ``channel`` since ``since``, oldest
        first, leaving out those whose answer matches ``not_like`` (a LIKE pattern: the
        attempts our own side refused before any request went out)."""
        w = Where("n.channel = ?", channel).add("a.ts >= ?", since)
        if not_like:
            w.add("a.answer NOT LIKE ?", not_like)
        return [tuple(r) for r in self._read(lambda db: db.execute(
            "SELECT n.recipient, a.ts FROM notification_attempts a JOIN notifications n ON "
            f"n.id = a.notification_id WHERE {w.sql} ORDER BY a.ts", w.args).fetchall())]

    def notify_retry_state(self) -> dict[int, tuple[int, float | None]]:
        """Pending notifications' (attempts made, next try) for a restart."""
        rows = self._read(lambda db: db.execute(
            "SELECT id, attempts, next_ts FROM notifications WHERE status = 'pending'"
        ).fetchall())
        return {r[0]: (r[1], r[2]) for r in rows}
