"""The journal's reading side: rows back into records, and the queries of the API, the CLI
and the sinks.

The queries work on a writer's connection and on a read-only one opened by another process
while the hub writes: WAL gives each statement a consistent snapshot. The layout is in
:mod:`hub.journal.schema`.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable
from contextlib import closing
from operator import itemgetter
from typing import Any

from hub.journal.codecs import (
    DECODE,
    QUALITY,
    ack_from_dict,
    command_from_dict,
    decode_event,
    delivery_from_dict,
    result_from_dict,
)
from hub.journal.latest import of_device as latest_of_device
from hub.journal.recent import RecentRows
from hub.journal.schema import KIND_COMMAND, KIND_READING, KINDS, JournalClosedError, JournalError
from hub.journal.segments import decode as _decode
from hub.journal.segments import stored as _stored
from hub.model import Acknowledgement, Command, CommandResult, Delivery, Event, Quality, Reading

_QUALITY = QUALITY
_GOOD = Quality.GOOD
_DECODE = DECODE
_event = decode_event
_SEQ = itemgetter(0)


class JournalQueries:
    """Queries shared by the writing hub and read-only readers (CLI, API in another process).

    Subclasses set ``_db`` and, for a writer, keep the name caches complete as they assign ids.
    """

    _db: sqlite3.Connection | None

    def __init__(self) -> None:
        self._db = None
        # the newest committed rows, filled by the writer (see hub.journal.recent)
        self._recent = RecentRows()
        self._device_ids: dict[str, int] = {}
        self._device_names: dict[int, str] = {}
        # series id -> (device, channel, quantity)
        self._series_names: dict[int, tuple[str, str, str]] = {}

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise JournalClosedError("the journal is not open")
        return self._db

    # -- names ---------------------------------------------------------------------------

    def _load_names(self) -> None:
        """Read every device and series row; a reader calls it again when it meets a new id."""
        db = self._conn()
        for dev_id, name in db.execute("SELECT id, name FROM devices"):
            self._device_ids[name] = dev_id
            self._device_names[dev_id] = name
        # one statement, one snapshot: a device and its first series committed between
        # two reads would leave a series whose device is not known yet
        for sid, name, channel, quantity in db.execute(
            "SELECT l.series, d.name, l.channel, l.quantity FROM latest l "
            "JOIN devices d ON d.id = l.device"
        ):
            self._series_names[sid] = (name, channel, quantity)

    def _series(self, sid: int) -> tuple[str, str, str]:
        names = self._series_names.get(sid)
        if names is None:
            self._load_names()
            names = self._series_names.get(sid)
            if names is None:
                raise JournalError(f"record refers to unknown series {sid}")
        return names

    def _device_id(self, device: str) -> int | None:
        dev_id = self._device_ids.get(device)
        if dev_id is None:
            sql = "SELECT id FROM devices WHERE name = ?"
            row = self._conn().execute(sql, (device,)).fetchone()
            if row is not None:
                dev_id = self._device_ids[device] = row[0]
                self._device_names[dev_id] = device
        return dev_id

    def _of_device(self, sql: str, device: str | None, args: list[Any]) -> str | None:
        """``sql`` narrowed to ``device`` (its id appended to ``args``); None for a device
        the journal has never seen (the answer is empty)."""
        if device is None:
            return sql
        dev_id = self._device_id(device)
        if dev_id is None:
            return None
        args.append(dev_id)
        return sql + " AND device = ?"

    # -- the stream ----------------------------------------------------------------------

    def read(
        self, after: int, limit: int = 1000, kinds: set[str] | None = None
    ) -> list[tuple[int, object]]:
        """Up to ``limit`` committed records with ``seq > after``, as ``(seq, record)`` in seq
        order; ``kinds`` (names from :data:`KINDS`) keeps only those kinds.

        A sink calls ``read(get_cursor(name))``, delivers, then :meth:`set_cursor` to the last
        seq the far side accepted.
        """
        rows = self.read_rows(after, limit, kinds)
        out: list[tuple[int, object]] = []
        append = out.append
        names = self._series_names
        for seq, kind, sid, ts, value, quality, data in rows:
            if kind == KIND_READING:
                n = names.get(sid) or self._series(sid)
                q = _GOOD if quality is None else _QUALITY[quality]
                append((seq, Reading(n[0], n[2], value, ts, n[1], q)))
            else:
                append((seq, _DECODE[kind](data)))
        return out

    def read_rows(
        self, after: int, limit: int = 1000, kinds: set[str] | None = None
    ) -> list[tuple[int, int, int | None, float, float | None, str | None, str | None]]:
        """What :meth:`read` returns, as stored: ``(seq, kind, series, ts, value, quality,
        data)`` rows (``kind`` a code of :data:`KINDS`; ``quality`` ``None`` for good).

        For sinks that turn readings straight into another format at 100,000 a second and
        cannot afford a :class:`Reading` per row: :meth:`series_key` names a series id (ids
        never change, so cache by id), :meth:`record` rebuilds any row's record.
        """
        codes = None
        if kinds is not None:
            unknown = set(kinds) - KINDS.keys()
            if unknown:
                raise ValueError(f"unknown kinds {sorted(unknown)}; known: {sorted(KINDS)}")
            codes = frozenset(KINDS[k] for k in kinds)
        db = self._conn()
        if limit == 0:
            return []
        if limit < 0:  # SQLite's LIMIT -1, as schema 1 read it: no limit
            limit = 1 << 62
        else:
            rows = self._recent.read(after, limit, self._last_seq, codes)
            if rows is not None:
                return rows
        out = [] if codes is not None and KIND_READING not in codes else \
            self._segment_rows(db, after, limit)
        if codes is None or codes - {KIND_READING}:
            sql = "SELECT seq, kind, NULL, ts, NULL, NULL, data FROM entries WHERE seq > ?"
            if codes is not None:
                # literal codes, validated above, let SQLite plan the filter
                sql += f" AND kind IN ({','.join(str(c) for c in sorted(codes))})"
            others = db.execute(sql + " ORDER BY seq LIMIT ?", (after, limit)).fetchall()
            if others:
                out += others
                out.sort(key=_SEQ)
                del out[limit:]
        return out

    def follow(self, name: str, seq: int) -> None:
        """Sink ``name`` reads readings and has read up to ``seq``: the rows after it stay
        in memory while it catches up (:mod:`hub.journal.recent`)."""
        self._recent.follow(name, seq)

    def unfollow(self, name: str) -> None:
        """Sink ``name`` stopped: no row is held in memory for it."""
        self._recent.unfollow(name)

    def _segment_rows(self, db: sqlite3.Connection, after: int, limit: int) -> list[tuple]:
        """The first ``limit`` reading rows with ``seq > after``, from the segments."""
        row = db.execute("SELECT base FROM segments WHERE first <= ? ORDER BY first DESC"
                         " LIMIT 1", (after,)).fetchone()
        start = after + 1 if row is None else row[0]
        out: list[tuple] = []
        bound = math.inf  # no segment starting after the limit-th seq can be in the answer
        # the bound is tightened when ``out`` reaches ``limit``, then again each time another
        # ``limit`` rows came in: a sort per segment past the limit (a commit of many
        # devices' segments read in several batches) cost more than the decoding
        tighten = limit
        # closed when left: an unfinished statement would hold its snapshot
        with closing(db.execute("SELECT first, body FROM segments WHERE first >= ?"
                                " ORDER BY first", (start,))) as cursor:
            for first, body in cursor:
                if first > bound:
                    break
                rows = _decode(body)
                if rows[0][0] <= after:
                    rows = [r for r in rows if r[0] > after]
                out += rows
                if len(out) >= tighten:
                    out.sort(key=_SEQ)
                    del out[limit:]
                    bound = out[-1][0]
                    tighten = 2 * limit
        out.sort(key=_SEQ)
        del out[limit:]
        return out

    def stored_readings(self, after: int, limit: int) -> tuple[list[list], bool]:
        """Up to ``limit`` reading rows with ``seq > after`` as stored, ``[seq, 0, series,
        ts, value, quality, None]`` lists, not in seq order, read from the file's segments
        (not from a writer's memory); and whether the read stopped at ``limit`` (more may
        follow). Every reading up to the highest seq returned is in the answer.

        For a consumer that orders rows itself (the rollup fold works on whole batches):
        whole commits are read and kept as decoded, only the last one ordered and cut when
        it goes past ``limit``; no row is copied into a tuple."""
        db = self._conn()
        row = db.execute("SELECT base FROM segments WHERE first <= ? ORDER BY first DESC"
                         " LIMIT 1", (after,)).fetchone()
        out: list[list] = []
        commit, begun, more = None, 0, False
        if row is not None:  # segments of the commit holding ``after`` that go past it
            commit = row[0]
            for (body,) in db.execute("SELECT body FROM segments WHERE first >= ? AND"
                                      " first <= ? AND last > ?", (commit, after, after)):
                out += [r for r in _stored(body) if r[0] > after]
        # closed when left: an unfinished statement would hold its snapshot
        with closing(db.execute("SELECT base, body FROM segments WHERE first > ?"
                                " ORDER BY first", (after,))) as cursor:
            for base, body in cursor:
                if base != commit:
                    if len(out) >= limit:
                        more = True
                        break
                    commit, begun = base, len(out)
                out += _stored(body)
        if len(out) > limit:  # the last commit, in seq order, up to the limit
            last_commit = out[begun:]
            last_commit.sort(key=_SEQ)
            out[begun:] = last_commit[:limit - begun]
            more = True
        return out, more

    def _first_seq(self) -> int | None:
        """The oldest seq the journal holds (None if it holds no record)."""
        firsts = self._conn().execute("SELECT (SELECT min(first) FROM segments),"
                                      " (SELECT min(seq) FROM entries)").fetchone()
        return min((f for f in firsts if f is not None), default=None)

    def first_reading_ts(self) -> float | None:
        """The ts of the oldest reading the journal holds (None if it holds none)."""
        return self._conn().execute("SELECT min(ts_min) FROM segments").fetchone()[0]

    def series_key(self, sid: int) -> tuple[str, str, str]:
        """``(device, channel, quantity)`` of a series id from :meth:`read_rows`."""
        return self._series_names.get(sid) or self._series(sid)

    def record(self, row: tuple) -> object:
        """The record of a :meth:`read_rows` row, as :meth:`read` gives it."""
        _, kind, sid, ts, value, quality, data = row
        if kind == KIND_READING:
            n = self.series_key(sid)
            return Reading(n[0], n[2], value, ts, n[1], _GOOD if quality is None else
                           _QUALITY[quality])
        return _DECODE[kind](data)

    def get_cursor(self, name: str) -> int:
        """The seq the sink ``name`` has delivered up to; 0 if it never set one."""
        row = self._conn().execute("SELECT seq FROM cursors WHERE name = ?", (name,)).fetchone()
        return 0 if row is None else row[0]

    def cursors(self) -> dict[str, int]:
        """Every registered cursor: sink name -> seq delivered up to."""
        return dict(self._conn().execute("SELECT name, seq FROM cursors ORDER BY name"))

    # -- queries for the API -------------------------------------------------------------

    def latest(self, device: str, quantity: str | None = None) -> list[Reading]:
        """The newest reading of each (channel, quantity) of ``device``, sorted by quantity
        then channel; from the ``latest`` table and the segments committed since it was
        last saved (see :mod:`hub.journal.latest`), never from history."""
        dev_id = self._device_id(device)
        if dev_id is None:
            return []
        out = []
        for sid, ch, qty, (_, ts, value, q) in latest_of_device(self._conn(), dev_id):
            if ch is None:
                _, ch, qty = self._series(sid)
            if quantity is not None and qty != quantity:
                continue
            if type(value) is int:
                value = float(value)
            out.append(Reading(device, qty, value, float(ts), ch,
                               _GOOD if q is None else _QUALITY[q]))
        out.sort(key=lambda r: (r.quantity, r.channel))
        return out

    def history(
        self,
        device: str,
        quantity: str | None = None,
        channel: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> list[Reading]:
        """Readings of ``device`` with ``since <= ts <= until``, ordered by ts (then seq).

        With ``limit``, the newest ``limit`` readings of the range, still oldest first, as
        :meth:`events` does: a chart asks for the recent end of a range.
        """
        dev_id = self._device_id(device)
        if dev_id is None:
            return []
        wanted: set[int] | None = None
        if quantity is not None or channel is not None:
            wanted = set(self._matching_series(dev_id, quantity, channel))
            if not wanted:
                return []
        lo = -math.inf if since is None else since
        hi = math.inf if until is None else until
        # a segment spans the ts of one commit of one device: few are read for nothing
        found: list[tuple] = []  # (ts, seq, series, value, quality)
        with closing(self._conn().execute(
                "SELECT ts_max, body FROM segments WHERE device = ? AND ts_max >= ?"
                " AND ts_min <= ? ORDER BY ts_max DESC", (dev_id, lo, hi))) as cursor:
            for ts_max, body in cursor:
                if limit is not None and len(found) >= limit:
                    # newest first: once the limit-th newest ts is past this segment's
                    # newest, no older segment can change the answer
                    found.sort(reverse=True)
                    del found[limit:]
                    if found and ts_max < found[-1][0]:
                        break
                for seq, _, sid, ts, value, q, _ in _stored(body):
                    if lo <= ts <= hi and (wanted is None or sid in wanted):
                        found.append((float(ts), seq, sid, value, q))
        found.sort()
        if limit is not None:
            found = found[-limit:] if limit > 0 else []
        out = []
        for ts, _, sid, value, q in found:
            _, ch, qty = self._series_names.get(sid) or self._series(sid)
            if value is not None and type(value) is not float:
                value = float(value)
            out.append(Reading(device, qty, value, ts, ch, _GOOD if q is None else _QUALITY[q]))
        return out

    def _matching_series(self, dev_id: int, quantity: str | None, channel: str | None) -> list[int]:
        sql = "SELECT series FROM latest WHERE device = ?"
        args: list[Any] = [dev_id]
        if quantity is not None:
            sql += " AND quantity = ?"
            args.append(quantity)
        if channel is not None:
            sql += " AND channel = ?"
            args.append(channel)
        return [sid for (sid,) in self._conn().execute(sql, args)]

    def events(
        self, device: str | None = None, since: float | None = None, limit: int = 1000
    ) -> list[Event]:
        """The newest ``limit`` events (of ``device``, with ``ts >= since``), newest last."""
        # "kind = 1" is a literal so that SQLite may use the partial event indexes
        args: list[Any] = []
        sql = self._of_device("SELECT data FROM entries WHERE kind = 1", device, args)
        if sql is None:
            return []
        if since is not None:
            sql += " AND ts >= ?"
            args.append(since)
        rows = self._conn().execute(sql + " ORDER BY ts DESC, seq DESC LIMIT ?", [*args, limit])
        out = [_event(data) for (data,) in rows]
        out.reverse()
        return out

    def unfinished_commands(self, devices: Iterable[str], since: float) -> list[Command]:
        """Commands of ``devices`` journaled at ``ts >= since`` with no final result yet, in
        the order they were accepted: what a transport that queues commands for sleeping
        devices takes up again after a restart. One indexed query per device."""
        found: list[tuple[int, Command]] = []
        sql = ("SELECT seq, kind, data FROM entries WHERE device = ? AND ts >= ?"
               " AND kind IN (2, 3) ORDER BY seq")
        for device in devices:
            dev_id = self._device_id(device)
            if dev_id is None:
                continue
            open_: dict[str, tuple[int, Command]] = {}
            for seq, kind, data in self._conn().execute(sql, (dev_id, since)):
                if kind == KIND_COMMAND:
                    c = command_from_dict(json.loads(data))
                    open_[c.id] = (seq, c)
                else:
                    r = result_from_dict(json.loads(data))
                    if r.status.final:
                        open_.pop(r.command_id, None)
            found += open_.values()
        return [c for _, c in sorted(found, key=lambda x: x[0])]

    def command_records(self, device: str, since: float, until: float
                        ) -> list[tuple[int, Command | CommandResult]]:
        """``(seq, command or result)`` of ``device`` journaled at ``since <= ts <= until``,
        in seq order (one indexed query): a command's lifecycle after a restart."""
        dev_id = self._device_id(device)
        if dev_id is None:
            return []
        rows = self._conn().execute(
            "SELECT seq, kind, data FROM entries WHERE device = ? AND ts >= ? AND ts <= ?"
            " AND kind IN (2, 3) ORDER BY seq", (dev_id, since, until))
        return [(seq, command_from_dict(json.loads(data)) if kind == KIND_COMMAND
                 else result_from_dict(json.loads(data))) for seq, kind, data in rows]

    def active_events(self) -> list[Event]:
        """Alarms and faults raised and not yet cleared, in the order they were raised."""
        return [
            _event(data) for (data,) in self._conn().execute("SELECT data FROM active ORDER BY seq")
        ]

    def active_after(
        self, after: int, limit: int = 100, kind: str | None = None
    ) -> list[tuple[int, Event]]:
        """``(seq, event)`` of the events still active (raised, not cleared) whose raise has
        ``seq > after``, of ``kind`` (an :class:`EventKind` value) if given, in seq order, at
        most ``limit``.

        For a sink with a backlog that lets new alarms overtake it: the ``active`` table holds
        only live alarms and faults, so the look stays cheap however long the backlog is."""
        sql = "SELECT seq, data FROM active WHERE seq > ?"
        args: list[Any] = [after]
        if kind is not None:
            sql += " AND json_extract(data, '$.kind') = ?"
            args.append(kind)
        rows = self._conn().execute(sql + " ORDER BY seq LIMIT ?", [*args, limit])
        return [(seq, _event(data)) for seq, data in rows]

    def event(self, event_id: str) -> Event | None:
        """The newest record of the event ``event_id`` (raised or cleared), or ``None``."""
        row = self._conn().execute("SELECT data FROM active WHERE id = ?", (event_id,)).fetchone()
        if row is not None:
            return _event(row[0])
        # not active: cleared or a notice; event rows only, through their partial index
        sql = ("SELECT data FROM entries INDEXED BY entries_event_ts WHERE kind = 1"
               " AND json_extract(data, '$.id') = ? ORDER BY seq DESC LIMIT 1")
        row = self._conn().execute(sql, (event_id,)).fetchone()
        return None if row is None else _event(row[0])

    def acknowledgements(self, device: str | None = None) -> list[Acknowledgement]:
        """Acknowledgements (of events of ``device``), oldest first."""
        args: list[Any] = []
        sql = self._of_device("SELECT data FROM entries WHERE kind = 4", device, args)
        if sql is None:
            return []
        rows = self._conn().execute(sql + " ORDER BY seq", args)
        return [ack_from_dict(json.loads(data)) for (data,) in rows]

    def deliveries(self, since: float, sink: str | None = None) -> list[tuple[int, Delivery]]:
        """``(seq, delivery)`` of deliveries with ``ts >= since`` (of ``sink``), in seq order."""
        sql = ("SELECT seq, data FROM entries INDEXED BY entries_delivery"
               " WHERE kind = 5 AND ts >= ? ORDER BY seq")
        out = [(seq, delivery_from_dict(json.loads(data)))
               for seq, data in self._conn().execute(sql, (since,))]
        return [(s, d) for s, d in out if sink is None or d.sink == sink]

    def used_bytes(self) -> int:
        """Bytes of the database in use: pages minus free pages, the file size not counted."""
        db = self._conn()
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        size = db.execute("PRAGMA page_size").fetchone()[0]
        return (pages - free) * size
