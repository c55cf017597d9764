"""The journal's storage layout: schema, record-kind codes and errors.

Devices and series (device, channel, quantity) are stored once, in ``devices`` and
``latest``, and records refer to them by integer id. Readings, nearly all of the volume, are
stored by the **segment**: what one commit holds of one device, its readings encoded once
(orjson, a JSON array of ``[seq, device, series, ts, value, quality]``) in one row, so a
commit of thousands of readings costs SQLite one row and one index entry per device, not
one per reading. The rarer records (events, commands, results, acknowledgements,
deliveries) keep a row each in ``entries``. Ids never change and those rows are never
deleted, so a reader may cache names for as long as it likes.

Tables (schema version 2, kept in ``PRAGMA user_version``)::

    segments first PK (seq of its first reading), base (first seq of its commit),
             last, device -> devices.id, n (readings), ts_min, ts_max, body (JSON, BLOB);
             index (device, ts_max) for history
    entries  seq PK, kind (1 event, 2 command, 3 command_result, 4 acknowledgement,
             5 delivery), device -> devices.id, ts, data (JSON);
             indexes (device, ts), for events (ts) and (device, ts), acks, deliveries
    devices  id PK, name UNIQUE, last_seen            -- presence, written by touch()
    latest   series PK, device, channel, quantity, ts, value, quality, seq
             -- one row per series: its newest reading as of meta.latest_seq, saved
             every 16 commits; newer ones are in the segments after it (hub.journal.latest)
    active   id PK, seq, data                         -- raised, not yet cleared events
    cursors  name PK, seq                             -- one per sink
    marks    seq PK, ts                               -- commit time of seq, for retention
    meta     key PK, value                            -- last_seq survives pruning;
                                                         latest_seq (see latest)
    records  VIEW: every record as a row, as schema 1 stored them (readings unpacked from
             their segments by json_each; DELETE and UPDATE through it work), for
             people using the sqlite3 shell and for tests, never for the hub's hot paths
    readings VIEW of reading records with names

The segments of one commit have ``first`` between the commit's first and last seq and
``base`` = its first seq; seqs of different commits never interleave. So the segments that
may hold seqs after ``s`` are those from the ``base`` of the segment with the largest
``first <= s`` on (see :meth:`JournalQueries.read_rows`).
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

SCHEMA_VERSION = 2

#: The tables and views of schema 2 that schema 1 did not have (the migration creates them).
SEGMENT_TABLES = """
CREATE TABLE segments (
    first INTEGER PRIMARY KEY, base INTEGER NOT NULL, last INTEGER NOT NULL,
    device INTEGER NOT NULL, n INTEGER NOT NULL, ts_min REAL NOT NULL, ts_max REAL NOT NULL,
    body BLOB NOT NULL);
CREATE INDEX segments_device_ts ON segments (device, ts_max);
CREATE TABLE entries (
    seq INTEGER PRIMARY KEY, kind INTEGER NOT NULL, device INTEGER NOT NULL,
    ts REAL NOT NULL, data TEXT NOT NULL);
CREATE INDEX entries_device_ts ON entries (device, ts);
CREATE INDEX entries_event_ts ON entries (ts) WHERE kind = 1;
CREATE INDEX entries_event_device_ts ON entries (device, ts) WHERE kind = 1;
CREATE INDEX entries_ack ON entries (device) WHERE kind = 4;
CREATE INDEX entries_delivery ON entries (ts) WHERE kind = 5;
"""

VIEWS = """
CREATE VIEW records (seq, kind, device, series, ts, value, quality, data) AS
    SELECT json_extract(j.value, '$[0]'), 0, s.device, json_extract(j.value, '$[2]'),
           CAST(json_extract(j.value, '$[3]') AS REAL),
           CAST(json_extract(j.value, '$[4]') AS REAL), json_extract(j.value, '$[5]'), NULL
    FROM segments s, json_each(CAST(s.body AS TEXT)) j
    UNION ALL
    SELECT seq, kind, device, NULL, ts, NULL, NULL, data FROM entries;
CREATE TRIGGER records_delete INSTEAD OF DELETE ON records BEGIN
    DELETE FROM entries WHERE seq = OLD.seq AND OLD.kind <> 0;
    UPDATE segments SET n = n - 1, body = CAST((
        SELECT json_group_array(json(j.value)) FROM json_each(CAST(segments.body AS TEXT)) j
        WHERE json_extract(j.value, '$[0]') <> OLD.seq) AS BLOB)
    WHERE OLD.kind = 0 AND device = OLD.device AND first <= OLD.seq AND last >= OLD.seq;
    DELETE FROM segments WHERE OLD.kind = 0 AND n = 0;
    UPDATE segments SET first = json_extract(CAST(body AS TEXT), '$[0][0]')
    WHERE OLD.kind = 0 AND first = OLD.seq;
END;
CREATE TRIGGER records_update_entry INSTEAD OF UPDATE ON records WHEN OLD.kind <> 0 BEGIN
    UPDATE entries SET kind = NEW.kind, ts = NEW.ts, data = NEW.data WHERE seq = OLD.seq;
END;
CREATE TRIGGER records_update_reading INSTEAD OF UPDATE ON records WHEN OLD.kind = 0 BEGIN
    UPDATE segments SET body = CAST((
        SELECT json_group_array(CASE WHEN json_extract(j.value, '$[0]') = OLD.seq
            THEN json_array(OLD.seq, 0, NEW.series, NEW.ts, NEW.value, NEW.quality, NULL)
            ELSE json(j.value) END)
        FROM json_each(CAST(segments.body AS TEXT)) j) AS BLOB)
    WHERE device = OLD.device AND first <= OLD.seq AND last >= OLD.seq;
END;
CREATE VIEW readings AS
    SELECT r.seq, d.name AS device, l.channel, l.quantity, r.ts, r.value,
           coalesce(r.quality, 'good') AS quality
    FROM records r JOIN latest l ON l.series = r.series JOIN devices d ON d.id = r.device
    WHERE r.kind = 0;
"""

#: The tables schema 1 and 2 share (the upgrade leaves them as they are).
COMMON_TABLES = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value);
CREATE TABLE devices (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, last_seen REAL);
CREATE TABLE latest (
    series INTEGER PRIMARY KEY, device INTEGER NOT NULL, channel TEXT NOT NULL,
    quantity TEXT NOT NULL, ts REAL, value REAL, quality TEXT, seq INTEGER,
    UNIQUE (device, quantity, channel));
CREATE TABLE active (id TEXT PRIMARY KEY, seq INTEGER NOT NULL, data TEXT NOT NULL);
CREATE TABLE cursors (name TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE marks (seq INTEGER PRIMARY KEY, ts REAL NOT NULL);
CREATE INDEX marks_ts ON marks (ts);
INSERT INTO meta (key, value) VALUES ('last_seq', 0);
"""
#: Creates a new journal (the caller sets ``PRAGMA user_version`` to SCHEMA_VERSION).
SCHEMA = COMMON_TABLES + SEGMENT_TABLES + VIEWS


class JournalError(Exception):
    """The journal cannot do what was asked (not a journal, newer schema, bad argument)."""


class JournalReadOnlyError(JournalError):
    """A write was attempted on a journal opened with ``readonly=True``."""


class JournalClosedError(JournalError):
    """The journal is not open."""
