"""The sinks' cursors in the journal: set, drop, rewind, and what waits on them.

A mixin of :class:`hub.journal.Journal`. A cursor is a sink's durable position: every record
up to its seq was delivered. Retention never passes a cursor. The commit notification and
the commit times (:mod:`hub.journal.notify`) are offered here too, because they are what a
sink's journal tail uses besides its cursor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred


class CursorError(ValueError):
    """A cursor cannot be set or rewound as asked (unknown, or outside what is kept)."""


class Cursors:
    """Needs the writer's ``_conn``, ``_writable``, ``_last_seq``, ``_claimed``, ``_notifier``."""

    _last_seq: int
    _claimed: set[str]
    _notifier: Any
    _conn: Any
    _writable: Any
    _clock: Any

    def set_cursor(self, name: str, seq: int) -> None:
        """Record that sink ``name`` has delivered every record up to ``seq``; durable when
        this returns (its own small transaction)."""
        self._writable()
        if not 0 <= seq <= self._last_seq:
            raise ValueError(f"cursor {name!r}: seq {seq} is not in 0..{self._last_seq}")
        self._conn().execute(
            "INSERT INTO cursors (name, seq) VALUES (?,?)"
            " ON CONFLICT (name) DO UPDATE SET seq = excluded.seq",
            (name, seq),
        )
        self._claimed.add(name)

    def delete_cursor(self, name: str) -> bool:
        """Forget the cursor of a sink that was removed, so it no longer holds records back;
        False if there was none."""
        self._writable()
        self._claimed.discard(name)
        return self._conn().execute("DELETE FROM cursors WHERE name = ?", (name,)).rowcount > 0

    def stale_cursors(self) -> dict[str, int]:
        """Cursors no sink of this process has set (a sink removed from the config, or
        renamed): name -> seq. Retention never passes them, so they hold records back until
        they are dropped (``hub cursors --drop NAME``)."""
        return {k: v for k, v in self.cursors().items() if k not in self._claimed}

    def rewind_cursor(self, name: str, seq: int) -> int:
        """Move the cursor ``name`` back to ``seq`` so that its sink delivers every record
        after it again (a database lost points it had acknowledged); returns the seq it was
        at. The running sink is told at once (:meth:`on_rewind`) and re-sends from there.

        Refused (:class:`CursorError`) for an unknown cursor, a seq past the cursor (that
        would skip records, not re-send them), or one before what the journal still holds.
        """
        self._writable()
        current = self.check_rewind(name, seq)
        self._conn().execute("UPDATE cursors SET seq = ? WHERE name = ?", (seq, name))
        self._notifier.rewound(name, seq)
        return current

    def check_rewind(self, name: str, seq: int) -> int:
        """What :meth:`rewind_cursor` checks, without rewinding: the cursor's seq now, or
        :class:`CursorError`."""
        cursors = self.cursors()  # type: ignore[attr-defined]
        if name not in cursors:
            raise CursorError(f"no cursor named {name!r}")
        current = cursors[name]
        if seq > current:
            raise CursorError(f"cursor {name!r} is at seq {current}; rewinding to {seq} would "
                              "skip records, not send them again")
        first = self.first_seq()
        floor = (first - 1) if first is not None else self._last_seq
        if seq < floor:
            raise CursorError(f"the journal holds records from seq {floor + 1} on only "
                              f"(older ones were pruned); cannot rewind {name!r} to {seq}")
        return current

    def first_seq(self) -> int | None:
        """The seq of the oldest record the journal still holds; None when it holds none."""
        return self._first_seq()

    def seq_at(self, ts: float) -> int:
        """The last seq committed at or before ``ts``: rewinding a cursor there re-sends
        everything committed after ``ts`` (and, by the spacing of the ``marks``, up to
        :data:`hub.journal.writer.MARK_EVERY` seconds more). Raises :class:`CursorError`
        when the journal no longer dates that far back."""
        row = self._conn().execute(
            "SELECT max(seq) FROM marks INDEXED BY marks_ts WHERE ts <= ?", (ts,)).fetchone()
        if row[0] is not None:
            return row[0]
        first = self.first_seq()
        if first is None or first <= 1:
            return 0  # nothing was ever pruned: from the beginning
        oldest = self._conn().execute("SELECT min(ts) FROM marks").fetchone()[0]
        raise CursorError(f"the journal holds records committed since {oldest} only "
                          f"(from seq {first}); {ts} is before that")

    def when_past(self, seq: int) -> Deferred[int]:
        """A Deferred that fires with the last seq after the commit that takes the journal
        past ``seq`` (at once if it is past already). A sink waits on it instead of
        polling; cancel it to stop waiting."""
        return self._notifier.when_past(seq, self._last_seq)

    def commit_time(self, seq: int) -> float | None:
        """When the record ``seq`` was committed, at the latest (None: not committed).

        Exact to the commit for records committed by this process; for older ones the
        ``marks`` table dates them to within :data:`hub.journal.writer.MARK_EVERY` s."""
        if seq > self._last_seq:
            return None
        ts = self._notifier.commit_time(seq)
        if ts is not None:
            return ts
        row = self._conn().execute(
            "SELECT ts FROM marks WHERE seq >= ? ORDER BY seq LIMIT 1", (seq,)).fetchone()
        if row is not None:
            return row[0]
        opened = self._notifier.opened_time()
        return opened if opened is not None else self._clock.seconds()

    def on_rewind(self, name: str, listener: Callable[[int], None]) -> Callable[[], None]:
        """``listener(seq)`` is called when the cursor ``name`` is rewound; returns the
        function that removes it."""
        return self._notifier.on_rewind(name, listener)

    def _mark_close(self) -> None:
        """Date the last records at a clean close, so lag after a restart is measured
        from the right time (a kill -9 leaves at most MARK_EVERY seconds undated)."""
        try:
            self._conn().execute("INSERT OR REPLACE INTO marks (seq, ts) VALUES (?,?)",
                                 (self._last_seq, self._clock.seconds()))
        except Exception:  # closing must not fail on a mark
            pass
