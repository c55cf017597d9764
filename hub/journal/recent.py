"""The rows of the journal's last commits, kept in memory for the sinks that follow it.

A sink keeping up reads what was committed a few milliseconds ago. Reading it back from
SQLite (a row fetched and a tuple built per record) cost the hub about as much as decoding
the messages; the writer already holds those rows, so it keeps the newest ones, exactly as
:meth:`JournalQueries.read_rows` would return them, and serves a read from memory when the
whole answer is there and holds readings only. Anything else (a sink behind by more than
the rows kept, a rewind, a readonly journal, a range with an event, a command or
another record kept as JSON, whose decoding a sink must meet as stored) reads SQLite as
before. Rows enter only after their
transaction committed, and pruning empties the cache, so a read gives what the database
holds.

How many rows: :data:`RECENT_ROWS` at least, and beyond that the rows a *follower* (a sink
that reads readings: :meth:`RecentRows.follow`, through :class:`hub.sinks.JournalTail`) has
not read yet, up to :data:`RECENT_ROWS_HELD`. A sink whose write stalls for a moment (the
database behind it compacting, a full machine) must not fall out of memory for good: once
it reads SQLite, each row costs it more than the hub spends taking it in, and it never
catches up (issue 15's workload at 40,000 msg/s: 25.4 µs per message kept up from memory,
30-36 µs and falling behind from SQLite). A fixed window large enough for such a stall
held that much memory all the time; held rows cost it only while a sink is behind.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from operator import itemgetter

from hub.journal.schema import KIND_READING

#: Rows kept whoever has read them: about 0.2 s of the issue-15 workload at 35,000 msg/s
#: (315,000 readings/s), about 11 MB (a row is about 170 bytes in memory).
RECENT_ROWS = 65536
#: Rows kept at most for a follower that has not read them: about 0.6 s at 35,000 msg/s,
#: about 33 MB, which keeps the hub under issue 15's 150 MB while a sink is behind (126 MB
#: at 50,000 msg/s, behind; 262,144 rows reached 150 MB there); a sink further behind
#: reads SQLite.
RECENT_ROWS_HELD = 196608

_SEQ = itemgetter(0)


class RecentRows:
    """Holds every committed row with ``start < seq <= end``, in seq order."""

    __slots__ = ("rows", "start", "end", "limit", "held", "others", "followers")

    def __init__(self, limit: int = RECENT_ROWS, held: int = RECENT_ROWS_HELD) -> None:
        self.limit = limit
        self.held = max(held, limit)
        #: follower name -> the seq it has read up to
        self.followers: dict[str, int] = {}
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
        n = len(rows)
        excess = n - self.limit
        if excess > 0:
            step = self.limit // 4  # trim in steps, not row by row
            excess = max(excess, step)
            if self.followers:  # what a follower has not read stays, up to ``held`` rows
                read = bisect_right(rows, min(self.followers.values()), key=_SEQ)
                excess = min(excess, read)
                if n - excess > self.held:
                    excess = max(n - self.held, step)
                elif excess < step:
                    excess = 0
        if excess > 0:
            self.start = rows[excess - 1][0]
            del rows[:excess]
            if self.others and self.others[0] <= self.start:
                del self.others[:bisect_right(self.others, self.start)]

    def follow(self, name: str, seq: int) -> None:
        """Follower ``name`` (a sink reading readings) has read every row up to ``seq``."""
        self.followers[name] = seq

    def unfollow(self, name: str) -> None:
        """``name`` reads no more (its sink stopped): nothing is held for it."""
        self.followers.pop(name, None)

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


__all__ = ["RECENT_ROWS", "RECENT_ROWS_HELD", "RecentRows"]
