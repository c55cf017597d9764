"""Grades on a schedule: once a local day has ended, every configured device is graded
for it, the grades are kept with the rollups (table ``grades``), and a change of grade
from the day before is journaled as a state event ``safety_grade`` (level info for a
better grade, warning for a worse one) that notification policies can push like any
other event. Run by the ``rollups`` sink (:class:`hub.rollups.RollupSink`).

Rules 6-8 (hazards, overdue rectifications, near set points) come from
:func:`hub.analysis.inputs.grading_inputs`, as for the API's grades, from the sources the
running hub registered for its journal (:func:`hub.analysis.inputs.sources_for`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from hub.analysis.grading import GRADES, GradingScheme, journal_grade
from hub.analysis.inputs import GradingSources, grading_inputs, sources_for
from hub.model import Event, EventKind, EventState, Level, event_id
from hub.rollups.store import DAY, RollupStore

CODE = "safety_grade"

GRADES_SCHEMA = """
CREATE TABLE IF NOT EXISTS grades (
    subject TEXT NOT NULL, day REAL NOT NULL, score REAL NOT NULL, grade TEXT NOT NULL,
    PRIMARY KEY (subject, day)) WITHOUT ROWID;
"""


def stored_grades(store: RollupStore, subject: str) -> list[tuple[float, float, str]]:
    """(day start, score, grade) of ``subject``, oldest first."""
    if store.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'grades'").fetchone() is None:
        return []
    return store.db.execute("SELECT day, score, grade FROM grades WHERE subject = ? "
                            "ORDER BY day", (subject,)).fetchall()


def grade_days(store: RollupStore, journal: Any, devices: Sequence[str], now: float,
               scheme: GradingScheme, record: Callable[[list[Event]], Any],
               sources: GradingSources | None = None) -> int:
    """Grade every whole local day not graded yet (at most the last 7) for ``devices``;
    journal an event per change of grade. Returns the days graded. ``sources``: of rules
    6-8 (default: those registered for ``journal``)."""
    if sources is None:
        sources = sources_for(journal)
    db = store.db
    db.executescript(GRADES_SCHEMA)
    today = store.day_start(now)
    row = db.execute("SELECT value FROM meta WHERE key = 'graded_until'").fetchone()
    start = max(float(row[0]) if row else today - DAY, today - 7 * DAY)
    days = 0
    while start + DAY <= today:
        events: list[Event] = []
        extra, _ = grading_inputs(sources, list(devices), start, start + DAY, scheme, store)
        db.execute("BEGIN IMMEDIATE")
        try:
            for dev in devices:
                g = journal_grade(journal, dev, start, start + DAY, scheme, extra=extra[dev])
                before = db.execute("SELECT score, grade FROM grades WHERE subject = ? AND "
                                    "day < ? ORDER BY day DESC LIMIT 1",
                                    (dev, start)).fetchone()
                db.execute("INSERT OR REPLACE INTO grades VALUES (?, ?, ?, ?)",
                           (dev, start, g.score, g.grade))
                if before is not None and before[1] != g.grade:
                    worse = GRADES.index(g.grade) > GRADES.index(before[1])
                    ts = start + DAY
                    why = "; ".join(d.reason for d in g.deductions[:3])
                    events.append(Event(
                        dev, EventKind.STATE, CODE, EventState.NOTICE, ts,
                        Level.WARNING if worse else Level.INFO,
                        id=event_id(dev, CODE, "", "info", ts), value=g.score,
                        message=f"安全评级 {before[1]} → {g.grade}（{g.score:.1f} 分）"
                        + (f"：{why}" if why else "")))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('graded_until', ?)",
                       (start + DAY,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if events:
            record(events)
        start += DAY
        days += 1
    return days
