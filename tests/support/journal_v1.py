"""A journal as schema 1 stored it (a row per reading in ``records``), written without the
journal's code, so the upgrade to schema 2 is tested against the old layout itself."""

from __future__ import annotations

import json
import sqlite3

from hub.journal.schema import COMMON_TABLES
from hub.model import Event, Quality, Reading

#: Schema 1: the tables schema 2 kept, and ``records`` with a row per record.
SCHEMA_V1 = COMMON_TABLES + """
CREATE TABLE records (
    seq INTEGER PRIMARY KEY, kind INTEGER NOT NULL, device INTEGER NOT NULL,
    series INTEGER, ts REAL NOT NULL, value REAL, quality TEXT, data TEXT);
CREATE INDEX records_device_ts ON records (device, ts);
CREATE INDEX records_event_ts ON records (ts) WHERE kind = 1;
CREATE INDEX records_event_device_ts ON records (device, ts) WHERE kind = 1;
CREATE VIEW readings AS
    SELECT r.seq, d.name AS device, l.channel, l.quantity, r.ts, r.value,
           coalesce(r.quality, 'good') AS quality
    FROM records r JOIN latest l ON l.series = r.series JOIN devices d ON d.id = r.device
    WHERE r.kind = 0;
CREATE INDEX IF NOT EXISTS records_ack ON records (device) WHERE kind = 4;
CREATE INDEX IF NOT EXISTS records_delivery ON records (ts) WHERE kind = 5;
"""


def write_v1(path: str, records: list[Reading | Event], cursors: dict[str, int]) -> None:
    """A schema 1 journal at ``path`` holding ``records`` (seq 1, 2, ... in order), its
    ``latest`` rows, ``cursors`` and one mark."""
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(f"BEGIN; {SCHEMA_V1} PRAGMA user_version = 1; COMMIT;")
    devices: dict[str, int] = {}
    series: dict[tuple[str, str, str], int] = {}
    db.execute("BEGIN")
    for seq, r in enumerate(records, 1):
        dev = devices.setdefault(r.device, len(devices) + 1)
        db.execute("INSERT OR IGNORE INTO devices (id, name) VALUES (?,?)", (dev, r.device))
        if isinstance(r, Reading):
            key = (r.device, r.channel, r.quantity)
            if key not in series:
                series[key] = len(series) + 1
                db.execute("INSERT INTO latest (series, device, channel, quantity)"
                           " VALUES (?,?,?,?)", (series[key], dev, r.channel, r.quantity))
            q = None if r.quality is Quality.GOOD else Quality(r.quality).value
            db.execute("INSERT INTO records (seq, kind, device, series, ts, value, quality)"
                       " VALUES (?,0,?,?,?,?,?)", (seq, dev, series[key], r.ts, r.value, q))
            db.execute("UPDATE latest SET seq = ?, ts = ?, value = ?, quality = ?"
                       " WHERE series = ? AND (ts IS NULL OR ts <= ?)",
                       (seq, r.ts, r.value, q, series[key], r.ts))
        else:
            db.execute("INSERT INTO records (seq, kind, device, ts, data) VALUES (?,1,?,?,?)",
                       (seq, dev, r.ts, json.dumps(r.to_dict())))
    db.execute("UPDATE meta SET value = ? WHERE key = 'last_seq'", (len(records),))
    db.execute("INSERT INTO marks (seq, ts) VALUES (?, ?)", (len(records), records[-1].ts))
    for name, seq in cursors.items():
        db.execute("INSERT INTO cursors (name, seq) VALUES (?,?)", (name, seq))
    db.execute("COMMIT")
    db.close()
