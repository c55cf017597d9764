"""Segments: a commit's readings of one device, encoded once into one row (schema 2).

A reading row as the writer makes it is ``(seq, device, series, ts, value, quality)``
(``quality`` ``None`` for good); a segment's ``body`` is the orjson array of those rows.
orjson writes a NaN as ``null``, as SQLite's REAL column stored it; an infinite value
(which orjson would also write as ``null``) is written ``1e999``, which SQLite's JSON
functions and :mod:`json` read back as infinite (orjson refuses it: such a body is read by
``json``). Decoding gives the rows of :meth:`JournalQueries.read_rows`,
``(seq, 0, series, ts, value, quality, None)``, with REAL columns as floats, as SQLite did.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Sequence
from itertools import groupby

import orjson

from hub.journal.schema import KIND_READING, SEGMENT_TABLES, VIEWS

_dumps = orjson.dumps
_loads = orjson.loads

INSERT_SEGMENT = "INSERT INTO segments VALUES (?,?,?,?,?,?,?,?)"
# newer (or as new) than what the row holds: across commits the later commit wins a tie
UPDATE_LATEST = ("UPDATE latest SET seq = ?1, ts = ?2, value = ?3, quality = ?4"
                 " WHERE series = ?5 AND (ts IS NULL OR ts <= ?2)")


def encode(readings: Sequence[tuple], base: int) -> tuple[list[tuple], list[tuple]]:
    """The ``segments`` rows of one commit's ``readings`` (in seq order; ``base`` the
    commit's first seq), and the ``latest`` updates ``(seq, ts, value, quality, series)``
    of its newest reading per series (within a commit the first of equal ts wins)."""
    by_device: dict[int, list[tuple]] = {}
    newest: dict[int, tuple] = {}
    get, latest = by_device.get, newest.get
    for row in readings:
        rows = get(row[1])
        if rows is None:
            by_device[row[1]] = [row]
        else:
            rows.append(row)
        cur = latest(row[2])
        if cur is None or row[3] > cur[3]:
            newest[row[2]] = row
    segments = []
    for device, rows in by_device.items():
        ts = [r[3] for r in rows]
        body = _dumps(rows)
        if b"null," in body:  # a value was None, NaN or infinite (rare)
            body = _infinities(rows, body)
        segments.append((rows[0][0], base, rows[-1][0], device, len(rows), min(ts), max(ts),
                         body))
    return segments, [(r[0], r[3], r[4], r[5], r[2]) for r in newest.values()]


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
    """A segment's rows as stored: ``[seq, device, series, ts, value, quality]`` lists."""
    try:
        return _loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)  # an infinite value, written 1e999


def decode(body: bytes | str) -> list[tuple]:
    """A segment's rows as :meth:`JournalQueries.read_rows` gives them, in seq order."""
    return [(seq, KIND_READING, sid, ts if type(ts) is float else float(ts),
             v if type(v) is float or v is None else _real(v), q, None)
            for seq, _, sid, ts, v, q in stored(body)]


def _real(v: object) -> float | None:
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return v  # type: ignore[return-value]  # SQLite's REAL affinity kept text as text


def write(db: sqlite3.Connection, readings: Sequence[tuple], base: int) -> None:
    """Insert the segments of ``readings`` and update ``latest``, in the caller's
    transaction."""
    segments, latest = encode(readings, base)
    db.executemany(INSERT_SEGMENT, segments)
    db.executemany(UPDATE_LATEST, latest)


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
    rows = db.execute("SELECT seq, device, series, ts, value, quality FROM records"
                      " WHERE kind = 0 ORDER BY seq")
    for _, chunk in groupby(rows, key=lambda r: r[0] // MIGRATION_SPAN):
        chunk_rows = list(chunk)
        segments, _ = encode(chunk_rows, chunk_rows[0][0])
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


__all__ = ["decode", "encode", "migrate_from_1", "rewrite", "run_script", "stored", "write"]
