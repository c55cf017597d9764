"""One commit of the journal as data and as SQL: :class:`Job` is taken from the writer's
state on the reactor thread, :func:`execute` runs its transaction and touches nothing else,
so it may run on the commit thread (:mod:`hub.journal.committer`)."""

from __future__ import annotations

import sqlite3

from hub.journal import segments
from hub.journal.latest import LatestRows

_INSERT_OTHER = "INSERT INTO entries (seq, kind, device, ts, data) VALUES (?,?,?,?,?)"


class Job:
    """One transaction's rows and ids (see :func:`execute`)."""

    __slots__ = ("readings", "others", "active", "new_devices", "new_series", "touches",
                 "last", "now", "mark", "devices", "latest", "save_latest", "plain")

    def __init__(self, readings: list, others: list, active: list, new_devices: list,
                 new_series: list, touches: list, last: int, now: float, mark: bool,
                 devices: dict[int, int], latest: LatestRows, save_latest: bool,
                 plain: bool = False) -> None:
        self.readings, self.others, self.active = readings, others, active
        self.new_devices, self.new_series, self.touches = new_devices, new_series, touches
        self.last, self.now, self.mark = last, now, mark
        # series id -> device id; only ever grows (the reactor thread adds new series)
        self.devices = devices
        # the writer's newest rows: only the commit in progress touches them
        self.latest, self.save_latest = latest, save_latest
        # every reading's value is a finite float (see hub.journal.segments.encode)
        self.plain = plain


def execute(db: sqlite3.Connection, job: Job) -> None:
    """The transaction of ``job`` on ``db``; raises (after rolling back) if it did not
    commit. Touches no journal state, so it may run in the commit thread."""
    readings, others = job.readings, job.others
    changes: dict = {}
    db.execute("BEGIN IMMEDIATE")
    try:
        if job.new_devices:
            db.executemany("INSERT OR IGNORE INTO devices (id, name) VALUES (?,?)",
                           job.new_devices)
        if job.new_series:
            db.executemany(
                "INSERT OR IGNORE INTO latest (series, device, channel, quantity)"
                " VALUES (?,?,?,?)",
                job.new_series,
            )
        if readings:  # the segments' base: the first reading's seq (see hub.journal.schema)
            changes = job.latest.changes(
                segments.write(db, readings, readings[0][0], job.devices, job.plain))
        if others:
            db.executemany(_INSERT_OTHER, others)
        for raised, eid, seq, data in job.active:
            if raised:
                db.execute("INSERT OR REPLACE INTO active (id, seq, data) VALUES (?,?,?)",
                           (eid, seq, data))
            else:
                db.execute("DELETE FROM active WHERE id = ?", (eid,))
        if job.touches:
            db.executemany(
                "UPDATE devices SET last_seen = ?2"
                " WHERE id = ?1 AND (last_seen IS NULL OR last_seen < ?2)",
                job.touches,
            )
        db.execute("UPDATE meta SET value = max(value, ?) WHERE key = 'last_seq'", (job.last,))
        if job.mark:
            db.execute("INSERT OR REPLACE INTO marks (seq, ts) VALUES (?,?)", (job.last, job.now))
        if job.save_latest:
            job.latest.save(db, changes, job.last)
        db.execute("COMMIT")
    except BaseException:
        rollback(db)
        raise
    job.latest.committed(changes, job.save_latest)


def rollback(db: sqlite3.Connection) -> None:
    try:
        if db.in_transaction:
            db.execute("ROLLBACK")
    except sqlite3.Error:  # a closed or broken connection: the original error says more
        pass
