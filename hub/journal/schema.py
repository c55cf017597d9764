"""The journal's storage layout: schema, record-kind codes and errors.

Devices and series (device, channel, quantity) are stored once, in ``devices`` and
``latest``, and records refer to them by integer id: a reading row is four numbers, which
keeps the journal small enough for years of retention and the inserts fast. Ids never change
and those rows are never deleted, so a reader may cache names for as long as it likes.

Tables (schema version 1, kept in ``PRAGMA user_version``)::

    records  seq PK, kind (0 reading, 1 event, 2 command, 3 command_result,
             4 acknowledgement, 5 delivery),
             device -> devices.id, series -> latest.series (readings), ts, value,
             quality (NULL = good), data (JSON of events, commands and results);
             indexes (device, ts) and, for events only, (ts) and (device, ts);
             for acknowledgements and deliveries, one partial index each (rare rows)
    devices  id PK, name UNIQUE, last_seen            -- presence, written by touch()
    latest   series PK, device, channel, quantity, ts, value, quality, seq
             -- one row per series: its newest reading, updated once per commit
    active   id PK, seq, data                         -- raised, not yet cleared events
    cursors  name PK, seq                             -- one per sink
    marks    seq PK, ts                               -- commit time of seq, for retention
    meta     key PK, value                            -- last_seq survives pruning
    readings VIEW of reading records with names, for people using the sqlite3 shell
"""

from __future__ import annotations

KIND_READING, KIND_EVENT, KIND_COMMAND, KIND_RESULT = 0, 1, 2, 3
KIND_ACK, KIND_DELIVERY = 4, 5

#: The names :meth:`JournalQueries.read` accepts in ``kinds``, and the code stored per row.
KINDS: dict[str, int] = {
    "reading": KIND_READING,
    "event": KIND_EVENT,
    "command": KIND_COMMAND,
    "command_result": KIND_RESULT,
    "acknowledgement": KIND_ACK,
    "delivery": KIND_DELIVERY,
}

SCHEMA_VERSION = 1
#: Creates a new journal (the caller sets ``PRAGMA user_version`` to SCHEMA_VERSION).
SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value);
CREATE TABLE devices (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, last_seen REAL);
CREATE TABLE latest (
    series INTEGER PRIMARY KEY, device INTEGER NOT NULL, channel TEXT NOT NULL,
    quantity TEXT NOT NULL, ts REAL, value REAL, quality TEXT, seq INTEGER,
    UNIQUE (device, quantity, channel));
CREATE TABLE records (
    seq INTEGER PRIMARY KEY, kind INTEGER NOT NULL, device INTEGER NOT NULL,
    series INTEGER, ts REAL NOT NULL, value REAL, quality TEXT, data TEXT);
CREATE INDEX records_device_ts ON records (device, ts);
CREATE INDEX records_event_ts ON records (ts) WHERE kind = 1;
CREATE INDEX records_event_device_ts ON records (device, ts) WHERE kind = 1;
CREATE TABLE active (id TEXT PRIMARY KEY, seq INTEGER NOT NULL, data TEXT NOT NULL);
CREATE TABLE cursors (name TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE marks (seq INTEGER PRIMARY KEY, ts REAL NOT NULL);
CREATE INDEX marks_ts ON marks (ts);
CREATE VIEW readings AS
    SELECT r.seq, d.name AS device, l.channel, l.quantity, r.ts, r.value,
           coalesce(r.quality, 'good') AS quality
    FROM records r JOIN latest l ON l.series = r.series JOIN devices d ON d.id = r.device
    WHERE r.kind = 0;
INSERT INTO meta (key, value) VALUES ('last_seq', 0);
""" + "\n"  # the indexes below are added to journals created before them, at open
#: Indexes a writer creates if missing (``IF NOT EXISTS``): they came after schema 1 and
#: need no migration. Partial, so readings pay nothing for them.
LATER_INDEXES = """
CREATE INDEX IF NOT EXISTS records_ack ON records (device) WHERE kind = 4;
CREATE INDEX IF NOT EXISTS records_delivery ON records (ts) WHERE kind = 5;
"""
SCHEMA += LATER_INDEXES

class JournalError(Exception):
    """The journal cannot do what was asked (not a journal, newer schema, bad argument)."""


class JournalReadOnlyError(JournalError):
    """A write was attempted on a journal opened with ``readonly=True``."""


class JournalClosedError(JournalError):
    """The journal is not open."""
