"""``latest``, the newest reading per series, kept in memory and written in batches.

Updating a ``latest`` row per series per commit cost the issue-15 workload 6.5 % of the hub
(at 8,000 msg/s a commit holds about 40 nine-value messages: 360 UPDATEs). The writer now
keeps the newest row of every series in memory (:class:`LatestRows`, updated after each
commit) and writes the rows that changed, with ``meta.latest_seq`` = the commit's last seq,
with one commit in :data:`SAVE_COMMITS`, at least every :data:`SAVE_EVERY` seconds, and at
close (and before pruning).

So the ``latest`` table is exact as of ``latest_seq``, and what came after it is in the
segments with ``first > latest_seq`` (fewer than :data:`SAVE_COMMITS` commits, or what
was committed between the last save and a crash). Readers (this process' API readers,
``hub readings --latest`` in another one) fold those segments over the table in one
statement's snapshot (:func:`tail_rows`, :func:`fold`); the writer does the same at open,
so a kill -9 loses nothing of ``latest``. A journal without ``latest_seq`` (written before
this change, when every commit updated ``latest``) has no tail: its table is exact.

Which reading wins is what the per-commit UPDATE decided: the newest ts; within a commit
the first of equal ts, across commits the later one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping

from hub.journal.segments import stored

#: Commits between two writes of the changed ``latest`` rows: the tail a reader folds. At
#: 8,000 msg/s from 100 devices (commits of 40 messages), a tail of a second (200 commits)
#: made the API's latest() 5-7 ms instead of 0.4 (the scan of 20,000 segment rows); 16
#: commits keep it near 1 ms and still write 1/16 of the rows a save per commit wrote.
SAVE_COMMITS = 16
#: Seconds between two writes at the most, for a slow trickle of commits.
SAVE_EVERY = 1.0

_SAVE = "UPDATE latest SET seq = ?, ts = ?, value = ?, quality = ? WHERE series = ?"
_SAVED_SEQ = "INSERT OR REPLACE INTO meta (key, value) VALUES ('latest_seq', ?)"
_TAIL = "SELECT body FROM segments WHERE first > (SELECT value FROM meta WHERE key = 'latest_seq')"
#: one statement, so one snapshot: a save between reading the table and the tail would
#: otherwise lose the readings it wrote
_OF_DEVICE = (
    "SELECT series, channel, quantity, seq, ts, value, quality, NULL FROM latest"
    " WHERE device = ?1 UNION ALL"
    " SELECT first, NULL, NULL, NULL, NULL, NULL, NULL, body FROM segments"
    # +device: the range of first (the rowid) bounds the scan, not the device's history
    " WHERE first > (SELECT value FROM meta WHERE key = 'latest_seq') AND +device = ?1")

Row = tuple  # (seq, ts, value, quality)


def fold(current: dict[int, Row], bodies: Iterable[bytes | str]) -> dict[int, Row]:
    """Apply segments' ``bodies`` (in seq order) to ``current`` (series -> row); return the
    rows that changed."""
    changed: dict[int, Row] = {}
    for body in bodies:
        newest: dict[int, Row] = {}  # a series' readings of one commit are in one segment
        for r in stored(body):
            cur = newest.get(r[2])
            if cur is None or r[3] > cur[1]:
                newest[r[2]] = (r[0], r[3], r[4], r[5])
        for sid, row in newest.items():
            cur = current.get(sid)
            if cur is None or cur[1] <= row[1]:
                current[sid] = changed[sid] = row
    return changed


def of_device(db: sqlite3.Connection, dev_id: int
              ) -> list[tuple[int, str | None, str | None, Row]]:
    """``(series, channel, quantity, (seq, ts, value, quality))`` of each series of the
    device ``dev_id`` that has a reading (channel and quantity None for a series whose row
    the caller must name itself)."""
    names: dict[int, tuple[str, str]] = {}
    current: dict[int, Row] = {}
    tail: list[tuple[int, bytes]] = []
    for sid, ch, qty, seq, ts, value, q, body in db.execute(_OF_DEVICE, (dev_id,)):
        if body is not None:
            tail.append((sid, body))
            continue
        names[sid] = (ch, qty)
        if ts is not None:
            current[sid] = (seq, ts, value, q)
    tail.sort()
    fold(current, (body for _, body in tail))
    return [(sid, *names.get(sid, (None, None)), row) for sid, row in current.items()]


class LatestRows:
    """The writer's newest committed row per series, and those not yet in the table.

    Touched only by the commit in progress (one at a time, in the commit thread or the
    reactor's), never by readers.
    """

    __slots__ = ("rows", "dirty", "unsaved")

    def __init__(self) -> None:
        self.rows: dict[int, Row] = {}
        self.dirty: dict[int, Row] = {}
        self.unsaved = 0  # commits since the last save

    def due(self, since_save: float) -> bool:
        """Whether the next commit saves (``since_save`` seconds after the last save)."""
        return self.unsaved >= SAVE_COMMITS - 1 or since_save >= SAVE_EVERY

    def load(self, db: sqlite3.Connection, last_seq: int) -> None:
        """At open: the table, then the segments committed after its last save (all of
        them up to a crash); those are written by the next save."""
        # a journal of before this change: its table is exact up to last_seq
        db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('latest_seq', ?)",
                   (last_seq,))
        self.rows = {sid: (seq, ts, value, q) for sid, seq, ts, value, q in db.execute(
            "SELECT series, seq, ts, value, quality FROM latest WHERE ts IS NOT NULL")}
        self.dirty = fold(self.rows, (body for (body,) in db.execute(_TAIL + " ORDER BY first")))

    def changes(self, newest: Mapping[int, tuple]) -> dict[int, Row]:
        """What a commit's newest reading rows per series (series -> the row as
        :func:`hub.journal.segments.encode` gives it) change (a later commit wins a tie)."""
        rows = self.rows
        out = {}
        for sid, r in newest.items():
            cur = rows.get(sid)
            if cur is None or cur[1] <= r[3]:
                out[sid] = (r[0], r[3], r[4], r[5])
        return out

    def save(self, db: sqlite3.Connection, changes: Mapping[int, Row], last: int) -> None:
        """Write the rows not yet in the table and ``changes``, in the caller's transaction;
        the table is then exact as of ``last``."""
        pending = dict(self.dirty)
        pending.update(changes)
        db.executemany(_SAVE, [(*row, sid) for sid, row in pending.items()])
        db.execute(_SAVED_SEQ, (last,))

    def committed(self, changes: Mapping[int, Row], saved: bool) -> None:
        """After the COMMIT of ``changes`` (and of a :meth:`save` if ``saved``)."""
        self.rows.update(changes)
        if saved:
            self.dirty.clear()
            self.unsaved = 0
        else:
            self.dirty.update(changes)
            self.unsaved += 1
