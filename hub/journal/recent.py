"""The rows of the journal's last commits, kept in memory for the sinks that follow it.

A sink keeping up reads what was committed a few milliseconds ago. Reading it back from
SQLite (a row fetched and a tuple built per record) cost the hub about as much as decoding
the messages; the writer already holds those rows, so it keeps the newest ones, exactly as
:meth:`JournalQueries.read_rows` would return them, and serves a read from memory when the
whole answer is there and holds readings only. Anything else (a sink behind by more than
:data:`RECENT_ROWS`, a rewind, a readonly journal, a range with an event, a command or
another record kept as JSON, whose decoding a sink must meet as stored) reads SQLite as
before. Rows enter only after their
transaction committed, and pruning empties the cache, so a read gives what the database
holds.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from operator import itemgetter

from hub.journal.schema import KIND_READING

#: Rows kept: about 0.4 s of the issue-15 workload at 35,000 msg/s (315,000 readings/s),
#: about 20 MB. A sink whose write took longer than the window read SQLite from then on, at
#: a higher cost per row, and never caught up (32,768 rows: 30,000 msg/s kept up, 35,000
#: not; 131,072: 35,000 kept up at 114 MB; 262,144: 146 MB for no rate more).
RECENT_ROWS = 131072

_SEQ = itemgetter(0)


class RecentRows:
    """Holds every committed row with ``start < seq <= end``, in seq order."""

    __slots__ = ("rows", "start", "end", "limit", "others")

    def __init__(self, limit: int = RECENT_ROWS) -> None:
        self.limit = limit
        self.rows: list[tuple] = []
        self.start: int | None = None
        self.end: int | None = None
        self.others: list[int] = []  # seqs of the rows that are not readings

    def clear(self) -> None:
        """Forget everything (records were deleted, the journal closed)."""
        self.rows = []
        self.others = []
        self.start = self.end = None

    def committed(self, before: int, last: int, readings: Sequence[tuple],
                  others: Sequence[tuple]) -> None:
        """A transaction committed the seqs ``(before, last]``: ``readings`` as
        :meth:`JournalQueries.read_rows` gives them (the writer makes them so), ``others``
        ``(seq, kind, device, ts, data)``."""
        if self.end != before:  # not the continuation of what is held: start afresh
            self.rows = []
            self.others = []
            self.start = before
        rows = self.rows
        if others:
            new = list(readings)  # already as SQLite gives them back (Journal.append)
            self.others += [o[0] for o in others]
            new += [(s, kind, None, ts if type(ts) is float else float(ts), None, None, data)
                    for s, kind, _, ts, data in others]
            if readings:
                new.sort(key=_SEQ)
            rows += new
        else:
            rows += readings
        self.end = last
        excess = len(rows) - self.limit
        if excess > 0:
            excess = max(excess, self.limit // 4)  # trim in steps, not row by row
            self.start = rows[excess - 1][0]
            del rows[:excess]
            if self.others and self.others[0] <= self.start:
                del self.others[:bisect_right(self.others, self.start)]

    def read(self, after: int, limit: int, last: int, codes: frozenset[int] | None
             ) -> list[tuple] | None:
        """``read_rows(after, limit)`` of a journal whose last seq is ``last``, or ``None``
        when the answer is not all here."""
        start, rows = self.start, self.rows
        if start is None or after < start or self.end != last:
            return None
        i = bisect_right(rows, after, key=_SEQ)
        if codes is None:
            out = rows[i:i + limit]
        elif KIND_READING in codes:
            out = []
            for row in rows[i:] if i else rows:
                if row[1] in codes:
                    out.append(row)
                    if len(out) >= limit:
                        break
        else:
            return None  # no reading wanted: nothing this cache may answer
        others = self.others
        if others and out and bisect_right(others, after) < bisect_right(others, out[-1][0]):
            return None  # a JSON record in the answer: SQLite's copy, as stored
        return out


__all__ = ["RECENT_ROWS", "RecentRows"]
