"""The rollup store: hourly and daily aggregates of every series, in their own SQLite file.

Why a file of its own (``<state_dir>/rollups.sqlite`` by default) and not tables in the
journal: rollups are kept far longer than raw readings (two years at least, T/CFPA
023-2023 §6.3.1 b, while an operator may prune the journal after weeks), they are rebuilt
by replacing them wholesale, and reports read them while the journal takes 100,000
readings a second: a separate file has its own lock and its own WAL.

Tables::

    meta     key PK, value     -- 'applied': the highest journal seq folded in
                               -- 'tz_offset': seconds east of UTC that days start at
    series   id PK, device, channel, quantity    -- names, never the journal's ids
    buckets  series, width (3600 | 86400), start, count, min, max, total, last_ts, last,
             energy   PK (series, width, start)
    counters series PK, ts, value   -- the newest reading of each energy counter

**Idempotent**: the seq of the last record folded in is written in the same transaction
as the buckets, and records at or below it are skipped, so a batch delivered twice (the
sink's cursor lags the store after a crash) changes nothing.

**Energy deltas** (``active_energy``, ``reactive_energy``: cumulative counters), the rule:

* the first reading of a counter only sets its baseline (no delta);
* a reading newer than the counter's newest adds ``value - previous`` when the counter did
  not go down; when it went down the meter was reset (or replaced, or rolled over) and
  counted from zero since, so ``value`` itself is added: energy is never negative and a
  reset loses at most what was counted between the last reading before it and the reset;
* the delta belongs to the bucket (hour, day) of the *later* reading: after a gap (the
  device offline for a day) the whole consumption of the gap lands in the bucket where
  the device came back, which is what the meter says and what totals over longer periods
  need; nothing is invented for the hours the device said nothing;
* a reading not newer than the counter's newest (out of order, a buffered upload after
  newer values, a duplicate) counts for min/max/mean/count but adds no energy: the delta
  was already counted by the newer reading.

Only good-quality readings are folded in (uncertain and bad values would poison min and
max). Records are folded in journal order, so a rebuild gives the same result as the
incremental updates did.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

HOUR, DAY = 3600, 86400
WIDTHS = (HOUR, DAY)
#: cumulative counters: their buckets carry the energy delta
COUNTERS = frozenset({"active_energy", "reactive_energy"})
#: China standard time: the day of a daily bucket starts at local midnight
DEFAULT_TZ_OFFSET = 8 * 3600
SCHEMA_VERSION = 1
_KIND_READING = 0

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value);
CREATE TABLE series (id INTEGER PRIMARY KEY, device TEXT NOT NULL, channel TEXT NOT NULL,
                     quantity TEXT NOT NULL, UNIQUE (device, quantity, channel));
CREATE TABLE buckets (
    series INTEGER NOT NULL, width INTEGER NOT NULL, start REAL NOT NULL,
    count INTEGER NOT NULL, min REAL, max REAL, total REAL, last_ts REAL, last REAL,
    energy REAL, PRIMARY KEY (series, width, start)) WITHOUT ROWID;
CREATE TABLE counters (series INTEGER PRIMARY KEY, ts REAL NOT NULL, value REAL NOT NULL);
INSERT INTO meta VALUES ('applied', 0);
"""

_UPSERT = """
INSERT INTO buckets (series, width, start, count, min, max, total, last_ts, last, energy)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (series, width, start) DO UPDATE SET
    count = count + excluded.count,
    min = min(min, excluded.min),
    max = max(max, excluded.max),
    total = total + excluded.total,
    last = CASE WHEN excluded.last_ts >= last_ts THEN excluded.last ELSE last END,
    last_ts = max(last_ts, excluded.last_ts),
    energy = energy + excluded.energy
"""


@dataclass(frozen=True)
class Bucket:
    """One aggregate: ``start`` of the hour or (local) day, ``width`` in seconds."""

    device: str
    channel: str
    quantity: str
    width: int
    start: float
    count: int
    min: float
    max: float
    mean: float
    last: float
    last_ts: float
    energy: float | None  # counters only: kWh (kvarh) consumed in the bucket


def default_path(state_dir: str) -> str:
    return os.path.join(state_dir, "rollups.sqlite")


def resolve_path(path: str | None, state_dir: str) -> str:
    """The store's file: ``path`` (relative to ``state_dir``) or the default."""
    return default_path(state_dir) if not path else os.path.join(state_dir, path)


class RollupStore:
    """The rollups of one hub. ``tz_offset``: seconds east of UTC where days start; fixed
    when the store is created (a change needs a rebuild), the stored value wins."""

    def __init__(self, path: str, *, tz_offset: int = DEFAULT_TZ_OFFSET,
                 readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        if readonly:
            self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True,
                                      check_same_thread=False)
        else:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            if self.db.execute("PRAGMA user_version").fetchone()[0] == 0:
                self.db.executescript(
                    f"BEGIN; {SCHEMA} INSERT INTO meta VALUES ('tz_offset', {int(tz_offset)});"
                    f" PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
        self.tz_offset = int(self._meta("tz_offset", tz_offset))
        self._sids: dict[tuple[str, str, str], int] = {}
        self._counters: dict[int, tuple[float, float]] | None = None

    def close(self) -> None:
        self.db.close()

    def _meta(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else row[0]

    @property
    def applied(self) -> int:
        """The highest journal seq folded in."""
        return int(self._meta("applied", 0))

    def day_start(self, ts: float) -> float:
        """Start (UTC epoch) of the local day holding ``ts``."""
        return (ts + self.tz_offset) // DAY * DAY - self.tz_offset

    # -- folding records in ----------------------------------------------------------------

    def _series_id(self, key: tuple[str, str, str]) -> int:
        sid = self._sids.get(key)
        if sid is None:
            row = self.db.execute("SELECT id FROM series WHERE device = ? AND channel = ? AND "
                                  "quantity = ?", key).fetchone()
            if row is None:
                sid = self.db.execute("INSERT INTO series (device, channel, quantity) "
                                      "VALUES (?, ?, ?)", key).lastrowid
            else:
                sid = row[0]
            self._sids[key] = sid
        return sid

    def _load_counters(self) -> dict[int, tuple[float, float]]:
        if self._counters is None:
            self._counters = {s: (ts, v) for s, ts, v in
                              self.db.execute("SELECT series, ts, value FROM counters")}
        return self._counters

    def apply(self, rows: Iterable[tuple], names: Callable[[int], tuple[str, str, str]],
              end: int | None = None, floor: float | None = None) -> int:
        """Fold journal rows (``(seq, kind, series, ts, value, quality, data)``, as
        :meth:`hub.journal.JournalQueries.read_rows` gives them, in seq order;
        ``names(series)`` is ``(device, channel, quantity)``) into the buckets, in one
        transaction; ``end`` (default: the last row's seq) is recorded as applied. Rows at
        or below the applied seq are skipped. Readings before ``floor`` only move energy
        baselines (a rebuild keeps the buckets older than what the journal still holds).
        Returns the readings folded in."""
        from hub.rollups.fold import Accumulator

        acc = Accumulator(self)
        self.db.execute("BEGIN IMMEDIATE")
        try:
            n = acc.add(rows, names, end, floor)
            acc.write()
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            self._counters = None  # what memory holds may be ahead of the file now
            raise
        return n

    def fold_journal(self, journal: Any, batch: int = 50_000, floor: float | None = None,
                     progress: Callable[[int], None] | None = None) -> int:
        """Fold in everything the journal holds past :attr:`applied` (a rebuild, or a
        catch-up without a running hub). Returns the readings folded in."""
        n = 0
        after = self.applied
        while True:
            rows = journal.read_rows(after, batch, {"reading"})
            if not rows:
                break
            n += self.apply(rows, journal.series_key, floor=floor)
            after = rows[-1][0]
            if progress is not None:
                progress(after)
        top = journal.last_seq()
        if top > self.applied:
            self.apply([], journal.series_key, end=top)
        return n

    def rebuild(self, journal: Any, progress: Callable[[int], None] | None = None) -> int:
        """Build the rollups again from the journal (``hub rollups rebuild``; the hub
        should be stopped). Days the journal no longer holds in full (raw readings pruned
        sooner than rollups) keep their buckets: everything from the first whole local day
        of the journal's readings on is rebuilt, older readings only set energy baselines.
        Returns the readings folded in."""
        # the journal's public reader, not its tables: the oldest reading it holds
        first = journal.first_reading_ts()
        oldest = self.db.execute("SELECT min(start) FROM buckets").fetchone()[0]
        floor: float | None = None
        if first is None:
            floor = float("inf") if oldest is not None else None
        elif oldest is not None and oldest < self.day_start(first):
            day = self.day_start(first)
            floor = day if day == first else day + DAY
        self.forget_from(floor)
        return self.fold_journal(journal, floor=floor, progress=progress)

    def forget_from(self, floor: float | None) -> None:
        """Before a rebuild: drop buckets from ``floor`` on (all with None), the energy
        baselines and the applied mark."""
        self.db.execute("BEGIN IMMEDIATE")
        if floor is None:
            self.db.execute("DELETE FROM buckets")
        else:
            self.db.execute("DELETE FROM buckets WHERE start >= ?", (floor,))
        self.db.execute("DELETE FROM counters")
        self.db.execute("UPDATE meta SET value = 0 WHERE key = 'applied'")
        self.db.execute("COMMIT")
        self._counters = None

    def prune(self, now: float, hourly_days: float, daily_days: float) -> int:
        """Drop hourly buckets older than ``hourly_days`` and daily ones older than
        ``daily_days``; returns how many."""
        self.db.execute("BEGIN IMMEDIATE")
        n = self.db.execute("DELETE FROM buckets WHERE width = ? AND start < ?",
                            (HOUR, now - hourly_days * DAY)).rowcount
        n += self.db.execute("DELETE FROM buckets WHERE width = ? AND start < ?",
                             (DAY, now - daily_days * DAY)).rowcount
        self.db.execute("COMMIT")
        return n

    # -- queries ---------------------------------------------------------------------------

    def buckets(self, device: str, quantity: str | None = None, channel: str | None = None,
                width: int = HOUR, since: float | None = None,
                until: float | None = None) -> list[Bucket]:
        """Buckets of ``device`` (one quantity, one channel if given) starting in
        ``[since, until)``, ordered by series then start."""
        sql = ("SELECT s.device, s.channel, s.quantity, b.width, b.start, b.count, b.min, "
               "b.max, b.total, b.last, b.last_ts, b.energy FROM buckets b JOIN series s ON "
               "s.id = b.series WHERE s.device = ? AND b.width = ?")
        args: list[Any] = [device, width]
        for col, v in (("s.quantity", quantity), ("s.channel", channel)):
            if v is not None:
                sql += f" AND {col} = ?"
                args.append(v)
        sql += _range(args, since, until, "b.start")
        rows = self.db.execute(sql + " ORDER BY s.quantity, s.channel, b.start", args)
        return [Bucket(d, c, q, w, st, n, lo, hi, tot / n, last, lts, e)
                for d, c, q, w, st, n, lo, hi, tot, last, lts, e in rows]

    def energy(self, device: str, width: int = HOUR, since: float | None = None,
               until: float | None = None, quantity: str = "active_energy"
               ) -> dict[float, float]:
        """Energy of ``device`` per bucket start. A device's total is its whole-device
        counter (channel ``""``) when it has one, else the sum of its channels (circuits,
        phases): never both, which would count twice."""
        per: dict[str, dict[float, float]] = {}
        for b in self.buckets(device, quantity, None, width, since, until):
            if b.energy is not None:
                per.setdefault(b.channel, {})[b.start] = b.energy
        if "" in per:
            return per[""]
        out: dict[float, float] = {}
        for series in per.values():
            for start, e in series.items():
                out[start] = out.get(start, 0.0) + e
        return dict(sorted(out.items()))

    def _series_ids(self, devices: Iterable[str], quantity: str,
                    channel: str | None = None) -> dict[str, list[int]]:
        """Series ids of ``quantity`` per device; for counters the device's whole-device
        series (channel ``""``) when it has one, else all its channels (as :meth:`energy`
        counts)."""
        wanted = set(devices)
        per: dict[str, dict[str, int]] = {}
        sql = "SELECT id, device, channel FROM series WHERE quantity = ?"
        args: list[Any] = [quantity]
        if channel is not None:
            sql += " AND channel = ?"
            args.append(channel)
        for sid, device, ch in self.db.execute(sql, args):
            if device in wanted:
                per.setdefault(device, {})[ch] = sid
        return {d: [chs[""]] if "" in chs else list(chs.values()) for d, chs in per.items()}

    def _sum_by(self, ids: list[int], column: str, width: int, since: float | None,
                until: float | None, by: str) -> list[tuple]:
        out: list[tuple] = []
        for k in range(0, len(ids), 500):
            chunk = ids[k:k + 500]
            sql = (f"SELECT {by}, sum({column}) FROM buckets WHERE width = ? AND series IN "
                   f"({','.join('?' * len(chunk))})")
            args: list[Any] = [width, *chunk]
            sql += _range(args, since, until, "start")
            out += self.db.execute(sql + f" GROUP BY {by}", args).fetchall()
        return out

    def project_energy(self, devices: Iterable[str], width: int = HOUR,
                       since: float | None = None, until: float | None = None,
                       quantity: str = "active_energy") -> dict[float, float]:
        """Energy of several devices summed per bucket start (each device counted as
        :meth:`energy` counts it), in one query per 500 series."""
        ids = [i for v in self._series_ids(devices, quantity).values() for i in v]
        out: dict[float, float] = {}
        for start, kwh in self._sum_by(ids, "energy", width, since, until, "start"):
            out[start] = out.get(start, 0.0) + (kwh or 0.0)
        return dict(sorted(out.items()))

    def device_energy(self, devices: Iterable[str], width: int = DAY,
                      since: float | None = None, until: float | None = None,
                      quantity: str = "active_energy") -> dict[str, float]:
        """Each device's energy over the range (as :meth:`energy` counts it)."""
        per = self._series_ids(devices, quantity)
        owner = {i: d for d, v in per.items() for i in v}
        out: dict[str, float] = {}
        for sid, kwh in self._sum_by(list(owner), "energy", width, since, until, "series"):
            out[owner[sid]] = out.get(owner[sid], 0.0) + (kwh or 0.0)
        return out

    def project_mean(self, devices: Iterable[str], quantity: str, width: int,
                     since: float | None = None, until: float | None = None,
                     channel: str = "") -> dict[float, float]:
        """The sum over devices of each bucket's mean of ``quantity`` (one channel), per
        bucket start: a project's load from its devices' ``active_power``."""
        ids = [i for v in self._series_ids(devices, quantity, channel).values() for i in v]
        out: dict[float, float] = {}
        for start, m in self._sum_by(ids, "total * 1.0 / count", width, since, until,
                                     "start"):
            out[start] = out.get(start, 0.0) + (m or 0.0)
        return dict(sorted(out.items()))

    def devices(self) -> list[str]:
        return [d for (d,) in self.db.execute("SELECT DISTINCT device FROM series ORDER BY 1")]


def _range(args: list[Any], since: float | None, until: float | None, column: str) -> str:
    """The SQL of ``since <= column < until`` (either bound may be None); appends its
    arguments to ``args``."""
    sql = ""
    for bound, op in ((since, ">="), (until, "<")):
        if bound is not None:
            sql += f" AND {column} {op} ?"
            args.append(bound)
    return sql
