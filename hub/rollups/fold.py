"""The fold's memory: buckets folded in and not yet written (see :class:`Accumulator`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from hub.rollups.store import _UPSERT, COUNTERS, DAY, HOUR, RollupStore

#: journal series ids up to this go through a table indexed by id (a journal's are dense)
_LUT_MAX = 1 << 22


class FoldConflict(RuntimeError):
    """The store's applied seq moved under a fold's memory: writing would count twice."""


class Accumulator:
    """Buckets folded in memory and not yet written: the sink's worker keeps one across
    many batches and writes it every ``flush_interval`` (:meth:`write`), so a series that
    gets a reading a minute costs one upsert per flush, not one per reading.

    A batch is folded into partial buckets as arrays (:mod:`hub.rollups.vector`); they
    are merged into :attr:`acc` at a write (or when :attr:`acc` is looked at), so the
    Python work is per bucket and flush, not per reading or batch.

    Skips rows at or below ``top`` (the store's applied seq, then the highest row added):
    a batch read again after a restart adds nothing."""

    def __init__(self, store: RollupStore) -> None:
        self.store = store
        self.top = store.applied
        self.mark = self.top  # what :meth:`write` records as applied
        #: the applied seq this memory builds on: :meth:`flush` refuses to write over
        #: another writer's (a second fold process, a rebuild), which would count twice
        self.base = self.top
        self._acc: dict[tuple[int, int, float], list] = {}
        #: partial buckets of the batches since: (width, fields) (see vector.FIELDS)
        self._parts: list[tuple[int, list]] = []
        self._pending = 0  # rows of ``_parts``
        self.touched: dict[int, tuple[float, float]] = {}
        self.readings = 0  # folded in since the last write
        # journal series id -> the store's (-1: not looked up yet), and a counter?
        self._lut, self._counters_lut = _empty_lut()
        self._counter: dict[int, bool] = {}  # the store's series id -> a counter?
        self._keys: dict[int, tuple[int, bool]] = {}  # journal series id -> both

    @property
    def acc(self) -> dict[tuple[int, int, float], list]:
        """``(series, width, start) -> [count, min, max, total, last_ts, last, energy]``
        (energy None but for counters); days made of whole hours are made at a write."""
        if self._parts:
            self._materialise()
        return self._acc

    @property
    def size(self) -> int:
        """Buckets held, at most (batches since the last merge counted in full)."""
        return len(self._acc) + self._pending

    def add(self, rows: Sequence[Sequence], names: Callable[[int], tuple[str, str, str]],
            end: int | None = None, floor: float | None = None) -> int:
        """Fold ``rows`` in (memory only); ``end``: the seq the batch reaches (filtered
        kinds included). ``rows`` are journal rows ``(seq, kind, series, ts, value,
        quality, data)``, tuples or lists, in any order (they are folded in seq order).
        Returns the readings folded in."""
        if not rows:
            self.mark = max(self.top, self.mark, end or 0)
            return 0
        from hub.rollups import vector

        cols = vector.columns(rows, self.top)
        n = self._fold(cols, names, floor) if len(cols.seq) else 0
        self.top = max(self.top, cols.seq_max)
        self.mark = max(self.top, self.mark, end or 0)
        self.readings += n
        return n

    def _fold(self, cols: Any, names: Callable[[int], tuple[str, str, str]],
              floor: float | None) -> int:
        import numpy as np

        from hub.rollups import vector

        store = self.store
        ssid, counter = self._series(cols.sid, names)
        seq, ts, value = cols.seq, cols.ts, cols.value
        energy = None
        if counter.any():
            # baselines move whatever the floor: only the buckets start at it
            at = np.flatnonzero(counter)
            deltas, moved = vector.energy(ssid[at], seq[at], ts[at], value[at],
                                          store._load_counters())
            store._counters.update(moved)  # type: ignore[union-attr]
            self.touched.update(moved)
            energy = np.zeros(len(ssid))
            energy[at] = deltas
        if floor is not None:
            inside = ts >= floor
            if not inside.all():
                ssid, seq, ts, value = ssid[inside], seq[inside], ts[inside], value[inside]
                if energy is not None:
                    energy = energy[inside]
                if not len(ssid):
                    return 0
        each = vector.readings(ssid, seq, ts, value, energy)
        hours = vector.regroup(each, float(HOUR))
        self._parts.append((HOUR, hours))
        self._pending += len(hours[0])
        tz = store.tz_offset
        if tz % HOUR:  # days that start within an hour: folded in apart
            days = vector.regroup(each, float(DAY), float(tz))
            self._parts.append((DAY, days))
            self._pending += len(days[0])
        return len(ssid)

    def _merged(self, days: bool = False) -> list[tuple[int, list]]:
        """The partial buckets of the batches since the last call, merged per bucket:
        ``(width, fields)`` (see :data:`hub.rollups.vector.FIELDS`); with ``days``, the
        days made of those hours too (days of whole hours). Forgets them."""
        from hub.rollups import vector

        tz = float(self.store.tz_offset)
        merged = []
        for width in (HOUR, DAY):
            parts = [p for w, p in self._parts if w == width]
            if parts:
                merged.append((width, vector.regroup(vector.concat(parts), float(width),
                                                     tz if width == DAY else 0.0)))
        if days and merged:
            merged.append((DAY, vector.regroup(merged[0][1], float(DAY), tz)))
        self._parts, self._pending = [], 0
        return merged

    def _rows(self, merged: list[tuple[int, list]]) -> Iterator[tuple]:
        """Merged partial buckets as rows of the buckets table (energy None but for
        counters), in key order within a width."""
        counter = self._counter
        for width, fields in merged:
            # last_seq left out: the order of the batches is the order of ``_acc``
            sid, start, count, lo, hi, total, last_ts, _, last, energy = (
                f.tolist() for f in fields)
            energy = [e if counter[k] else None for k, e in zip(sid, energy, strict=True)]
            yield from zip(sid, [width] * len(sid), start, count, lo, hi, total, last_ts, last,
                           energy, strict=True)

    def _materialise(self, days: bool = False) -> None:
        """The partial buckets of the batches since the last call merged into ``_acc``."""
        acc = self._acc
        for sid, width, start, *part in self._rows(self._merged(days)):
            b = acc.get((sid, width, start))
            if b is None:
                acc[(sid, width, start)] = part
            else:
                _combine(b, part)

    def _series(self, sid: Any, names: Callable[[int], tuple[str, str, str]]) -> tuple:
        """The store's series ids of journal series ids ``sid`` (an array) and whether
        each is a counter; names are looked up once per journal series."""
        import numpy as np

        top = int(sid.max())
        if top >= _LUT_MAX:  # ids too far apart for a table: one look-up per id in the batch
            ids, inverse = np.unique(sid, return_inverse=True)
            found = [self._lookup(j, names) for j in ids.tolist()]
            inverse = inverse.reshape(-1)
            return (np.array([s for s, _ in found], dtype=np.int64)[inverse],
                    np.array([c for _, c in found], dtype=bool)[inverse])
        lut, counters = self._lut, self._counters_lut
        if top >= len(lut):
            size = max(top + 1, 2 * len(lut))
            lut = np.concatenate([lut, np.full(size - len(lut), -1, dtype=np.int64)])
            counters = np.concatenate([counters, np.zeros(size - len(counters), dtype=bool)])
            self._lut, self._counters_lut = lut, counters
        ssid = lut[sid]
        if (ssid < 0).any():
            for jsid in np.unique(sid[ssid < 0]).tolist():
                lut[jsid], counters[jsid] = self._lookup(jsid, names)
            ssid = lut[sid]
        return ssid, counters[sid]

    def _lookup(self, jsid: int, names: Callable[[int], tuple[str, str, str]]
                ) -> tuple[int, bool]:
        """The store's series id of journal series ``jsid`` and whether it is a counter."""
        found = self._keys.get(jsid)
        if found is None:
            device, channel, quantity = names(jsid)
            sid = self.store._series_id((device, channel, quantity))
            found = self._keys[jsid] = (sid, quantity in COUNTERS)
            self._counter[sid] = found[1]
        return found

    def write(self) -> int:
        """Upsert what was folded in and record the applied seq, inside the caller's
        transaction; then start empty. Returns the seq recorded."""
        store = self.store
        whole_hours = store.tz_offset % HOUR == 0
        if not self._acc:  # nothing looked at since the last write: rows from the arrays
            rows: Iterable[tuple] = self._rows(self._merged(days=whole_hours))
        else:
            self._materialise()
            if whole_hours:
                self._days_from_hours()
            # in key order: the upserts walk the table's B-tree once
            rows = [(s, w, st, *b) for (s, w, st), b in sorted(self._acc.items())]
        db = store.db
        db.executemany(_UPSERT, rows)
        db.executemany("INSERT OR REPLACE INTO counters VALUES (?, ?, ?)",
                       [(s, ts, v) for s, (ts, v) in self.touched.items()])
        if self.mark > store.applied:
            db.execute("UPDATE meta SET value = ? WHERE key = 'applied'", (self.mark,))
        self._acc, self.touched, self.readings = {}, {}, 0
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
        self._acc, self.touched, self.readings = {}, {}, 0
        self._parts, self._pending = [], 0
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
    ``acc[key]``."""
    b = acc.get(key)
    if b is None:
        acc[key] = part
    else:
        _combine(b, part)


def _combine(b: list, part: list) -> None:
    """``part``, a partial bucket of later readings, folded into the bucket ``b``."""
    b[0] += part[0]
    b[1] = min(b[1], part[1])
    b[2] = max(b[2], part[2])
    b[3] += part[3]
    if part[4] >= b[4]:
        b[4], b[5] = part[4], part[5]
    if part[6] is not None:
        b[6] += part[6]


def _empty_lut() -> tuple[Any, Any]:
    import numpy as np

    return np.full(0, -1, dtype=np.int64), np.zeros(0, dtype=bool)
