"""Who waits for the journal: commit notification, commit times, cursor rewinds.

A sink never polls: it asks :meth:`CommitNotifier.when_past` for a Deferred that fires once
a commit has taken the journal past the seq it has read up to. The same commits give every
record a commit time (:meth:`CommitNotifier.commit_time`), which is what lag is measured
by: a device's own clock may be hours off or upload a buffer of old readings, the hub's
commit is when the record became the sinks' to deliver.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.logger import Logger

_log = Logger(namespace="hub.journal")

#: commit-time samples kept in memory; beyond it every other one is dropped (the bound
#: of a dropped sample becomes its later neighbour's: lag is then under-, never over-stated)
MAX_SAMPLES = 4096


class CommitNotifier:
    """Deferreds fired after commits, the commit time of recent seqs, rewind listeners."""

    def __init__(self) -> None:
        self._waiters: list[tuple[int, Deferred[int]]] = []
        self._seqs: list[int] = []  # ascending last seq of a commit ...
        self._times: list[float] = []  # ... and when it committed
        self._rewind: dict[str, list[Callable[[int], None]]] = {}
        self._opened_at_seq = -1

    # -- commits -------------------------------------------------------------------------

    def when_past(self, seq: int, last_seq: int) -> Deferred[int]:
        """A Deferred that fires with the journal's last seq once it is past ``seq``: at
        once if it already is (``last_seq``), else right after the commit that passes it.
        Cancelling it just forgets the waiter."""
        if last_seq > seq:
            d: Deferred[int] = Deferred()
            d.callback(last_seq)
            return d
        entry: list[tuple[int, Deferred[int]]] = []

        def cancel(_: Deferred[int]) -> None:
            try:
                self._waiters.remove(entry[0])
            except ValueError:
                pass

        d = Deferred(cancel)
        entry.append((seq, d))
        self._waiters.append(entry[0])
        return d

    def committed(self, last_seq: int, ts: float) -> None:
        """A transaction took the journal to ``last_seq`` at ``ts``: note the time, fire
        the waiters it passes (each failure isolated: one bad waiter wakes no fewer)."""
        if not self._seqs or last_seq > self._seqs[-1]:
            self._seqs.append(last_seq)
            self._times.append(ts)
            if len(self._seqs) > MAX_SAMPLES:
                # keep the first (the state at open) and the last, thin the rest
                self._seqs[1:-1] = self._seqs[2:-1:2]
                self._times[1:-1] = self._times[2:-1:2]
        if not self._waiters:
            return
        due = [w for w in self._waiters if w[0] < last_seq]
        if not due:
            return
        self._waiters = [w for w in self._waiters if w[0] >= last_seq]
        for _, d in due:
            try:
                d.callback(last_seq)
            except Exception:
                _log.failure("a journal commit waiter failed")

    def commit_time(self, seq: int) -> float | None:
        """When ``seq`` was committed (at the latest), from the commits this process saw;
        None for a seq committed before the journal was opened, or not committed yet."""
        i = bisect_left(self._seqs, seq)
        if i == len(self._seqs) or (i == 0 and self._seqs[0] == self._opened_at_seq):
            return None
        return self._times[i]

    def opened(self, last_seq: int, ts: float) -> None:
        """The journal was opened at ``last_seq``: records up to it were committed earlier."""
        self._seqs, self._times = [last_seq], [ts]
        self._opened_at_seq = last_seq

    def opened_time(self) -> float | None:
        """When the journal was opened (what dates records no mark covers: they were
        committed before it, after the last mark, by a process killed without its close)."""
        if self._seqs and self._seqs[0] == self._opened_at_seq:
            return self._times[0]
        return None

    # -- rewinds -------------------------------------------------------------------------

    def on_rewind(self, cursor: str, listener: Callable[[int], None]) -> Callable[[], None]:
        """Call ``listener(seq)`` when the cursor ``cursor`` is rewound to ``seq`` (an
        operator asked for a re-send); returns the function that stops listening."""
        self._rewind.setdefault(cursor, []).append(listener)

        def stop() -> None:
            listeners = self._rewind.get(cursor, [])
            if listener in listeners:
                listeners.remove(listener)

        return stop

    def rewound(self, cursor: str, seq: int) -> int:
        """Tell the listeners of ``cursor``; how many there were."""
        listeners = list(self._rewind.get(cursor, []))
        for listener in listeners:
            try:
                listener(seq)
            except Exception:
                _log.failure("a cursor rewind listener failed")
        return len(listeners)
