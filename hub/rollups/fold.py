"""The fold's memory: buckets folded in and not yet written (see :class:`Accumulator`)."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from operator import itemgetter

from hub.rollups.store import _UPSERT, COUNTERS, DAY, HOUR, RollupStore

_SEQ = itemgetter(0)


class FoldConflict(RuntimeError):
    """The store's applied seq moved under a fold's memory: writing would count twice."""


class Accumulator:
    """Buckets folded in memory and not yet written: the sink's worker keeps one across
    many batches and writes it every ``flush_interval`` (:meth:`write`), so a series that
    gets a reading a minute costs one upsert per flush, not one per reading.

    Skips rows at or below ``top`` (the store's applied seq, then the last row added):
    a batch read again after a restart adds nothing."""

    def __init__(self, store: RollupStore) -> None:
        self.store = store
        self.top = store.applied
        self.mark = self.top  # what :meth:`write` records as applied
        #: the applied seq this memory builds on: :meth:`flush` refuses to write over
        #: another writer's (a second fold process, a rebuild), which would count twice
        self.base = self.top
        self.acc: dict[tuple[int, int, float], list] = {}
        self.touched: dict[int, tuple[float, float]] = {}
        self.readings = 0  # folded in since the last write
        self._keys: dict[int, tuple[int, bool]] = {}

    def add(self, rows: Sequence[tuple], names: Callable[[int], tuple[str, str, str]],
            end: int | None = None, floor: float | None = None) -> int:
        """Fold ``rows`` in (memory only); ``end``: the seq the batch reaches (filtered
        kinds included). Returns the readings folded in."""
        store = self.store
        counters = store._load_counters()
        acc, touched, keys = self.acc, self.touched, self._keys
        top = self.top
        tz = store.tz_offset
        # days made of whole hours: fold each reading into its hour only, the hours into
        # days at write time (half the work per reading)
        whole_hours = tz % HOUR == 0
        i = 0
        if rows and rows[0][0] <= top:  # in seq order: skip what was folded in already
            i = bisect_right(rows, top, key=_SEQ)
        n = 0
        for _, kind, jsid, ts, value, quality, _ in rows[i:] if i else rows:
            if kind or quality is not None or value is None:
                continue
            k = keys.get(jsid)
            if k is None:
                device, channel, quantity = names(jsid)
                k = keys[jsid] = (store._series_id((device, channel, quantity)),
                                  quantity in COUNTERS)
            sid, counter = k
            energy = None
            if counter:
                prev = counters.get(sid)
                energy = 0.0
                if prev is None or ts > prev[0]:
                    if prev is not None:
                        energy = value - prev[1] if value >= prev[1] else value
                    counters[sid] = touched[sid] = (ts, value)
            if floor is not None and ts < floor:
                continue
            n += 1
            hour = ts // HOUR * HOUR
            b = acc.get((sid, HOUR, hour))
            if b is None:
                acc[(sid, HOUR, hour)] = [1, value, value, value, ts, value, energy]
            else:
                b[0] += 1
                if value < b[1]:
                    b[1] = value
                elif value > b[2]:
                    b[2] = value
                b[3] += value
                if ts >= b[4]:
                    b[4] = ts
                    b[5] = value
                if energy is not None:
                    b[6] += energy
            if not whole_hours:  # days that start within an hour: folded in apart
                _merge(acc, (sid, DAY, (ts + tz) // DAY * DAY - tz),
                       [1, value, value, value, ts, value, energy])
        if rows:
            self.top = max(top, rows[-1][0])
        self.mark = max(self.top, self.mark, end or 0)
        self.readings += n
        return n

    def write(self) -> int:
        """Upsert what was folded in and record the applied seq, inside the caller's
        transaction; then start empty. Returns the seq recorded."""
        store = self.store
        if store.tz_offset % HOUR == 0:
            self._days_from_hours()
        db = store.db
        db.executemany(_UPSERT, [(s, w, st, *b) for (s, w, st), b in self.acc.items()])
        db.executemany("INSERT OR REPLACE INTO counters VALUES (?, ?, ?)",
                       [(s, ts, v) for s, (ts, v) in self.touched.items()])
        if self.mark > store.applied:
            db.execute("UPDATE meta SET value = ? WHERE key = 'applied'", (self.mark,))
        self.acc, self.touched, self.readings = {}, {}, 0
        self.base = self.mark
        return self.mark

    def flush(self) -> int:
        """:meth:`write` in a transaction of its own; on failure everything folded in
        since the last write is forgotten (the store's counters too) and the error
        raised: the caller reads again from the applied seq."""
        db = self.store.db
        db.execute("BEGIN IMMEDIATE")
        try:
            applied = self.store.applied
            if applied != self.base:
                raise FoldConflict(f"the rollups were written by someone else meanwhile "
                                   f"(applied {applied}, this fold built on {self.base})")
            mark = self.write()
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            self.forget()
            raise
        return mark

    def forget(self) -> None:
        """Drop what was not written: start again from the store's applied seq."""
        self.store._counters = None
        self.acc, self.touched, self.readings = {}, {}, 0
        self.top = self.mark = self.base = self.store.applied

    def _days_from_hours(self) -> None:
        acc = self.acc
        tz = self.store.tz_offset
        for (sid, width, start), h in list(acc.items()):
            if width == HOUR:
                _merge(acc, (sid, DAY, (start + tz) // DAY * DAY - tz), list(h))


def _merge(acc: dict[tuple[int, int, float], list], key: tuple[int, int, float],
           part: list) -> None:
    """Fold a partial bucket ``[count, min, max, total, last_ts, last, energy]`` into
    ``acc[key]`` (the hot path, one reading into its hour, is inlined in ``add``)."""
    b = acc.get(key)
    if b is None:
        acc[key] = part
        return
    b[0] += part[0]
    b[1] = min(b[1], part[1])
    b[2] = max(b[2], part[2])
    b[3] += part[3]
    if part[4] >= b[4]:
        b[4], b[5] = part[4], part[5]
    if part[6] is not None:
        b[6] += part[6]
