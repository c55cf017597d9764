"""Segments: a commit's readings of one device, encoded once into one row (schema 2).

A reading row as the writer makes it is the row of :meth:`JournalQueries.read_rows`,
``(seq, 0, series, ts, value, quality, None)`` (``quality`` ``None`` for good, ts and value
floats, a NaN value ``None``); a segment's ``body`` is the orjson array of those rows, so
the commit encodes them as they are and a read decodes them as they are.
An infinite value
(which orjson would also write as ``null``) is written ``1e999``, which SQLite's JSON
functions and :mod:`json` read back as infinite (orjson refuses it: such a body is read by
``json``).
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Mapping, Sequence
from itertools import groupby
from operator import itemgetter

import orjson

from hub.journal.schema import SEGMENT_TABLES, VIEWS

_dumps = orjson.dumps
_loads = orjson.loads

INSERT_SEGMENT = "INSERT INTO segments VALUES (?,?,?,?,?,?,?,?)"


def encode(readings: Sequence[tuple], base: int, devices: Mapping[int, int],
           plain: bool = False) -> tuple[list[tuple], dict[int, tuple]]:
    """The ``segments`` rows of one commit's ``readings`` (in seq order; ``base`` the
    commit's first seq; ``devices`` series id -> device id), and its newest reading per
    series, series -> its row (within a commit the first of equal ts wins), for
    :mod:`hub.journal.latest`. ``plain``: the caller knows every value is a
    finite float (no body then needs the search for values written ``null``)."""
    by_device: dict[int, list[tuple]] = {}
    newest: dict[int, tuple] = {}
    get, latest = by_device.get, newest.get
    for row in readings:
        sid = row[2]
        device = devices[sid]
        rows = get(device)
        if rows is None:
            by_device[device] = [row]
        else:
            rows.append(row)
        cur = latest(sid)
        if cur is None or row[3] > cur[3]:
            newest[sid] = row
    segments = []
    for device, rows in by_device.items():
        ts = list(map(_TS, rows))
        body = _dumps(rows)
        # a value orjson wrote as null (None, NaN or infinite) is followed by the quality
        if not plain and (b"null,null,null]" in body or b'null,"' in body):
            body = _infinities(rows, body)  # rare
        segments.append((rows[0][0], base, rows[-1][0], device, len(rows), min(ts), max(ts),
                         body))
    return segments, newest


_TS = itemgetter(3)
_INF = "\x00inf"


def _infinities(rows: list[tuple], body: bytes) -> bytes:
    """``body`` with the infinite values of ``rows`` written as ``±1e999``."""
    if not any(type(r[4]) is float and r[4] in (math.inf, -math.inf) for r in rows):
        return body
    marked = [r if type(r[4]) is not float or r[4] not in (math.inf, -math.inf)
              else (*r[:4], _INF if r[4] > 0 else "-" + _INF, *r[5:]) for r in rows]
    return (_dumps(marked).replace(rb'"-\u0000inf"', b"-1e999")
            .replace(rb'"\u0000inf"', b"1e999"))


def stored(body: bytes | str) -> list[list]:
    """A segment's rows as lists."""
    try:
        return _loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)  # an infinite value, written 1e999


def decode(body: bytes | str) -> list[tuple]:
    """A segment's rows as :meth:`JournalQueries.read_rows` gives them, in seq order."""
    return [tuple(r) for r in stored(body)]


def real(v: object) -> float | None:
    """A reading's value as SQLite's REAL column gave it back: a float, ``None`` for
    ``None`` and NaN, text that is no number as it was."""
    if v is None:
        return None
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return v  # type: ignore[return-value]  # SQLite's REAL affinity kept text as text
    return None if f != f else f


def write(db: sqlite3.Connection, readings: Sequence[tuple], base: int,
          devices: Mapping[int, int], plain: bool = False) -> dict[int, tuple]:
    """Insert the segments of ``readings`` in the caller's transaction; return the newest
    reading per series (see :func:`encode`)."""
    segments, newest = encode(readings, base, devices, plain)
    db.executemany(INSERT_SEGMENT, segments)
    return newest


def rewrite(db: sqlite3.Connection, segment: tuple, keep: list[tuple]) -> None:
    """Replace ``segment`` (a ``segments`` row) by one holding only the rows ``keep``
    (as stored, a non-empty subset), in the caller's transaction: pruning cuts a segment."""
    first, base, _, device, _, _, _, _ = segment
    ts = [r[3] for r in keep]
    db.execute("DELETE FROM segments WHERE first = ?", (first,))
    db.execute(INSERT_SEGMENT, (keep[0][0], base, keep[-1][0], device, len(keep), min(ts),
                                max(ts), _dumps(keep)))





#: Seqs of schema 1 readings that go into one segment per device when migrating.
MIGRATION_SPAN = 4096


def migrate_from_1(db: sqlite3.Connection) -> None:
    """Schema 1 (a row per reading in ``records``) to 2, in the caller's transaction:
    readings to segments (per device and :data:`MIGRATION_SPAN` seqs, as if committed so),
    other records to ``entries``; the old table, its indexes and views dropped."""
    run_script(db, "DROP VIEW IF EXISTS readings;" + SEGMENT_TABLES)
    db.execute("INSERT INTO entries (seq, kind, device, ts, data)"
               " SELECT seq, kind, device, ts, coalesce(data, '{}') FROM records"
               " WHERE kind <> 0")
    devices = dict(db.execute("SELECT series, device FROM latest"))
    rows = db.execute("SELECT seq, 0, series, ts, value, quality, NULL FROM records"
                      " WHERE kind = 0 ORDER BY seq")
    for _, chunk in groupby(rows, key=lambda r: r[0] // MIGRATION_SPAN):
        chunk_rows = list(chunk)
        segments, _ = encode(chunk_rows, chunk_rows[0][0], devices)
        db.executemany(INSERT_SEGMENT, segments)
    run_script(db, "DROP TABLE records;" + VIEWS)


def run_script(db: sqlite3.Connection, script: str) -> None:
    """``script`` a statement at a time: ``executescript`` would commit the caller's
    transaction first."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            db.execute(statement)
            statement = ""
    if statement.strip():
        db.execute(statement)


__all__ = ["decode", "encode", "migrate_from_1", "real", "rewrite", "run_script", "stored",
           "write"]
