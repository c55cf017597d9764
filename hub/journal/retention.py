"""Retention and size of the journal: pruning what every cursor passed, ``journal_near_full``.

A mixin of :class:`hub.journal.Journal`, apart so that each file keeps to one job.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from twisted.logger import Logger

from hub.journal.segments import rewrite, stored
from hub.model import Event, EventKind, EventState, Level, event_id

log = Logger(namespace="hub.journal")

#: Used pages are looked at after this many commits or this many seconds, whichever first.
SIZE_CHECK_COMMITS = 64
SIZE_CHECK_SECONDS = 1.0
#: Rows deleted per prune transaction, so readers and the WAL never wait on one huge delete.
PRUNE_CHUNK = 20000


class Retention:
    """Needs the writer's ``_conn``, ``_clock``, ``_metrics``, size settings and state."""

    _retention: float | None
    _max_bytes: int | None
    _warn_ratio: float
    _last_seq: int
    _fault: Event | None
    _peak: int
    _commits_since_check: int
    _last_check: float
    _on_fault: Any
    _metrics: Any
    _clock: Any
    _notifier: Any

    # -- size and retention --------------------------------------------------------------

    def prune(self, now: float) -> int:
        """Delete records every cursor has passed that are older than ``retention`` (by the
        time they were committed), then, while the journal is at ``max_bytes``, the oldest
        delivered records; return how many rows were deleted. Undelivered records stay."""
        self._writable()
        self.flush()
        self._save_latest()  # the segments it deletes may hold readings latest has not saved
        db = self._conn()
        positions = self.cursors().values()
        horizon = min(positions) if positions else self._last_seq
        deleted = 0
        if self._retention is not None:
            # by the ts index: only marks older than the cutoff are read, not the whole window
            sql = "SELECT max(seq) FROM marks INDEXED BY marks_ts WHERE ts < ?"
            row = db.execute(sql, (now - self._retention,)).fetchone()
            if row[0] is not None:
                deleted += self._delete_through(min(row[0], horizon))
        if self._max_bytes is not None and self.used_bytes() >= self._max_bytes:
            # free enough to fall below the warning level, or the fault would never clear
            target = (self._warn_ratio - 0.05) * self._max_bytes
            for _ in range(4):  # pages freed per row is only estimated; measure again
                used = self.used_bytes()
                first = self._first_seq()
                if used <= target or first is None or first > horizon:
                    break
                per_row = used / (self._last_seq - first + 1)
                rows = math.ceil((used - target) / per_row)
                deleted += self._delete_through(min(first + rows - 1, horizon))
        if deleted:
            self._metrics.inc("journal.pruned", deleted)
        self._check_size(force=True)
        return deleted

    def _delete_through(self, cut: int) -> int:
        db = self._conn()
        first = self._first_seq()
        deleted = 0
        while first is not None and first <= cut:
            upto = min(cut, first + PRUNE_CHUNK - 1)
            with db:  # one transaction per chunk
                db.execute("BEGIN IMMEDIATE")
                self._recent.clear()  # it must not serve what is no longer stored
                deleted += _delete_readings(db, upto)
                deleted += db.execute("DELETE FROM entries WHERE seq <= ?", (upto,)).rowcount
                db.execute("DELETE FROM marks WHERE seq <= ?", (upto,))
            first = upto + 1
        return deleted

    def _check_size(self, force: bool = False) -> None:
        """Raise or clear journal_near_full; cheap enough only every few commits."""
        now = self._clock.seconds()
        if not force and (
            self._commits_since_check < SIZE_CHECK_COMMITS
            and now - self._last_check < SIZE_CHECK_SECONDS
        ):
            return
        self._commits_since_check, self._last_check = 0, now
        used = self.used_bytes()
        self._metrics.set("journal.used_bytes", used)
        max_bytes = self._max_bytes
        if max_bytes is None:
            return
        limit = self._warn_ratio * max_bytes
        event = None
        if used >= limit:
            if self._fault is None:
                self._peak = used
                self._fault = event = _near_full(EventState.RAISED, now, used, max_bytes, limit)
            self._peak = max(self._peak, used)
        elif self._fault is not None:
            raised, self._fault = self._fault, None
            event = replace(
                _near_full(EventState.CLEARED, now, used, max_bytes, limit),
                id=raised.id,
                raised_ts=raised.ts,
                peak=max(self._peak, raised.value or 0),
            )
        self._metrics.set("journal.near_full", 1 if self._fault is not None else 0)
        if event is not None and self._on_fault is not None:
            try:
                self._on_fault([event])
            except Exception:
                log.failure("journal on_fault observer failed")




def _delete_readings(db: Any, upto: int) -> int:
    """Delete the readings with ``seq <= upto``: whole segments, and the part of the few
    segments (of one commit) that straddle ``upto``. Returns how many."""
    whole = db.execute("SELECT coalesce(sum(n), 0) FROM segments WHERE first <= ?1"
                       " AND last <= ?1", (upto,)).fetchone()[0]
    db.execute("DELETE FROM segments WHERE first <= ?1 AND last <= ?1", (upto,))
    deleted = whole
    for segment in db.execute("SELECT * FROM segments WHERE first <= ?", (upto,)).fetchall():
        rows = stored(segment[-1])
        keep = [r for r in rows if r[0] > upto]
        rewrite(db, segment, keep)
        deleted += len(rows) - len(keep)
    return deleted


def _near_full(state: EventState, now: float, used: int, max_bytes: int, limit: float) -> Event:
    return Event(
        device="hub",
        kind=EventKind.FAULT,
        code="journal_near_full",
        state=state,
        ts=now,
        level=Level.FAULT,
        id=event_id("hub", "journal_near_full", "", Level.FAULT, now),
        value=used,
        set_point=limit,
        message=f"journal uses {used} of {max_bytes} bytes ({used / max_bytes:.0%})",
    )
