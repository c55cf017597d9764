"""A sink's view of the journal: its durable cursor, how far it has read, and the wait for
new records.

Two positions, always ``cursor <= position``:

* ``cursor``: every record up to it was delivered (durable, in the journal's ``cursors``
  table; retention never passes it; after a crash delivery starts again here);
* ``position``: every record up to it was read into the sink's memory (queued, encoded,
  in flight). Reading ahead of the cursor is what lets a sink prepare its next batch while
  the current one travels.

:meth:`JournalTail.restart` forgets what was read but not delivered (``position =
cursor``); the sink reads it again. :meth:`JournalTail.wait` is a Deferred fired by the
journal's commit notification once there is something past ``position``: no polling.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred

from hub.contracts.sink import SinkJournal


class JournalTail:
    """One cursor of one sink. ``kinds`` (names of :data:`hub.journal.KINDS`) filters what
    :meth:`read_rows` and :meth:`read` return; passed-over kinds still move ``position``."""

    def __init__(self, journal: SinkJournal, cursor: str, kinds: set[str] | None = None,
                 on_rewind: Callable[[int], None] | None = None) -> None:
        self.journal = journal
        self.name = cursor
        self.kinds = set(kinds) if kinds is not None else None
        self.cursor = 0
        self.position = 0
        #: counts restarts and rewinds: what was read before carries an older epoch, and
        #: :meth:`commit` ignores it (an answer to a write sent before a rewind)
        self.epoch = 0
        self._on_rewind = on_rewind
        # a tail that reads readings keeps the journal's newest rows in memory until it has
        # read them (hub.journal.recent); a journal without that memory is read as it is
        self._follow: Callable[[str, int], None] | None = (
            getattr(journal, "follow", None)
            if self.kinds is None or "reading" in self.kinds else None)
        self._following = False
        self._stop_listening: Callable[[], None] | None = None
        self._waiting: Deferred[int] | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def claim(self) -> int:
        """At start: take the cursor over (registered at once, so retention waits for this
        sink before its first delivery) and read from it. Returns the cursor."""
        self.cursor = self.position = self.journal.get_cursor(self.name)
        self.journal.set_cursor(self.name, self.cursor)
        self.epoch += 1
        if self._stop_listening is None:
            self._stop_listening = self.journal.on_rewind(self.name, self._rewound)
        return self.cursor

    def release(self) -> None:
        """At stop: no more rewind notices, no more wake-ups."""
        if self._stop_listening is not None:
            self._stop_listening()
            self._stop_listening = None
        self.cancel_wait()
        if self._following:
            self._following = False
            self.journal.unfollow(self.name)  # type: ignore[attr-defined]

    # -- reading -------------------------------------------------------------------------

    def behind(self) -> int:
        """Committed records not yet read (``last_seq - position``)."""
        return self.journal.last_seq() - self.position

    def read_rows(self, limit: int) -> tuple[list[tuple], int, bool]:
        """Up to ``limit`` stored rows past ``position``: ``(rows, end, full)``. ``end`` is
        the new position (past filtered-out kinds up to the journal's last seq when the
        read was not full); ``full`` says more may be waiting."""
        return self._read(self.journal.read_rows, limit)

    def read(self, limit: int) -> tuple[list[tuple[int, object]], int, bool]:
        """As :meth:`read_rows`, as ``(seq, record)``."""
        return self._read(self.journal.read, limit)

    def _read(self, fn: Callable[..., list], limit: int) -> tuple[list, int, bool]:
        top = self.journal.last_seq()
        if top <= self.position:
            return [], self.position, False
        rows = fn(self.position, limit, self.kinds)
        if rows and rows[-1][0] > top:
            # committed by the journal's commit thread, not yet landed: ``last_seq`` (what
            # set_cursor accepts) does not cover them yet; they are read at the next wake-up
            rows = [r for r in rows if r[0] <= top]
        full = len(rows) >= limit
        end = rows[-1][0] if full else max(top, rows[-1][0] if rows else 0)
        self.position = end
        if self._follow is not None:
            self._follow(self.name, end)
            self._following = True
        return rows, end, full

    def wait(self) -> Deferred[int]:
        """Fires after the next commit that puts a record past ``position``: a tail that
        is behind (its sink stopped reading, its queue full) waits for the next commit, not
        for what it left unread, which would fire at once, again and again. One wait at a
        time; a new call replaces (cancels) the previous one."""
        self.cancel_wait()
        after = max(self.position, self.journal.last_seq())
        d = self._waiting = self.journal.when_past(after)
        return d

    def cancel_wait(self) -> None:
        if self._waiting is not None and not self._waiting.called:
            self._waiting.cancel()
        self._waiting = None

    # -- delivering ----------------------------------------------------------------------

    def commit(self, seq: int, epoch: int | None = None) -> bool:
        """Everything up to ``seq`` was delivered: move the durable cursor (never back,
        never past ``position``). With ``epoch``, ignored when the tail restarted since
        (the delivery was of records read before a rewind). True if it moved."""
        if epoch is not None and epoch != self.epoch:
            return False
        seq = min(seq, self.position)
        if seq <= self.cursor:
            return False
        self.journal.set_cursor(self.name, seq)
        self.cursor = seq
        return True

    def restart(self) -> None:
        """Forget what was read and not delivered: read again from the cursor."""
        self.position = self.cursor
        self.epoch += 1
        if self._following:
            self._follow(self.name, self.cursor)  # type: ignore[misc]

    # -- lag -----------------------------------------------------------------------------

    def lag(self, now: float) -> tuple[int, float]:
        """(records, seconds) behind: the seconds since the hub committed the oldest
        record not yet delivered (not its device timestamp: device clocks may be wrong,
        buffered uploads old)."""
        top = self.journal.last_seq()
        if top <= self.cursor:
            return 0, 0.0
        ts = self.journal.commit_time(self.cursor + 1)
        return top - self.cursor, 0.0 if ts is None else max(0.0, now - ts)

    def _rewound(self, seq: int) -> None:
        self.cursor = seq
        self.restart()
        if self._on_rewind is not None:
            self._on_rewind(seq)
