"""Dead letters: lines a server refused for good, kept with its message instead of
blocking a sink's stream forever."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from typing import Any

from twisted.logger import Logger

_log = Logger(namespace="hub.sinks.influxdb")

# ---------------------------------------------------------------------------- dead letters


DEADLETTER_SCHEMA = """
CREATE TABLE IF NOT EXISTS deadletter (
    id INTEGER PRIMARY KEY, sink TEXT NOT NULL, first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL, status INTEGER, message TEXT NOT NULL, lines TEXT NOT NULL,
    points INTEGER NOT NULL, at REAL NOT NULL, UNIQUE (sink, first_seq, last_seq));
"""


def deadletter_path(state_dir: str) -> str:
    return os.path.join(state_dir, "deadletter.sqlite")


class DeadLetters:
    """Lines a server refused for good, with its message: ``<state_dir>/deadletter.sqlite``.

    A row is committed before the sink's cursor passes it. The same chunk stored twice (a
    crash between the two) is kept once: (sink, first_seq, last_seq) is unique.
    """

    def __init__(self, path: str) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout = 5000")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.executescript(DEADLETTER_SCHEMA)

    def add(self, sink: str, entries: Sequence[tuple[int, int, int | None, str, str, int]],
            now: float) -> None:
        """Store ``(first_seq, last_seq, status, message, lines, points)`` in one commit."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT OR IGNORE INTO deadletter (sink, first_seq, last_seq, status, message,"
                " lines, points, at) VALUES (?,?,?,?,?,?,?,?)",
                [(sink, *e, now) for e in entries])

    def entries(self, sink: str | None = None) -> list[dict[str, Any]]:
        sql = ("SELECT id, sink, first_seq, last_seq, status, message, lines, points, at"
               " FROM deadletter")
        args: tuple = ()
        if sink is not None:
            sql += " WHERE sink = ?"
            args = (sink,)
        cols = ("id", "sink", "first_seq", "last_seq", "status", "message", "lines", "points",
                "at")
        return [dict(zip(cols, row, strict=True))
                for row in self._db.execute(sql + " ORDER BY id", args)]

    def close(self) -> None:
        self._db.close()
