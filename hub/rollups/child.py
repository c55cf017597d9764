"""The fold process: ``python -m hub.rollups.child``, started and supervised by the hub's
rollup sink (:mod:`hub.rollups.supervise`), so that folding 100,000 readings a second costs
the hub process nothing but a line read now and then.

It reads the journal **read-only** (SQLite in WAL mode: the hub keeps writing while it
reads) from the rollup store's applied seq, folds readings into an
:class:`hub.rollups.fold.Accumulator` and writes it every ``--flush`` seconds in one
transaction that also records the new applied seq. That seq is its durable cursor: a
kill -9 at any instant leaves either the whole write or none of it, and the next run
starts after what was written, so nothing is counted twice or lost.

Only one fold writes a store at a time: an exclusive ``flock`` on ``<store>.fold.lock``
(released by the kernel when the holder dies), and :class:`hub.rollups.fold.FoldConflict`
should anything else move the applied seq meanwhile.

Talks to the hub through its standard streams:

* stdin: ``stop`` (write what was folded in, exit 0); end of file (the hub is gone, even
  by kill -9): the same. SIGINT and SIGTERM are ignored: they reach the whole process
  group (Ctrl-C, systemd's stop) and the hub's stop comes through stdin;
* stdout, one JSON object a line: ``{"ready": applied, "pid": ...}`` once the lock is
  held, ``{"flushed": seq, "readings": n, "cpu": s}`` after each write;
* stderr: what went wrong, for the hub's log. Any error ends the process with status 1;
  the hub starts a new one after a backoff.
"""

from __future__ import annotations

import argparse
import fcntl
import gc
import json
import os
import select
import signal
import sys
import time
from typing import IO, Any

from hub.rollups.fold import Accumulator
from hub.rollups.store import RollupStore

#: buckets held in memory before a write is forced (as the thread worker's bound)
MAX_BUCKETS = 200_000
#: rows read from the journal at a time, at least (whole commits are read): the cost of a
#: batch's fold is mostly per batch, not per reading
READ_ROWS = 100_000


def lock_path(store_path: str) -> str:
    """The file whose ``flock`` a fold (or a rebuild) holds while it writes the store."""
    return store_path + ".fold.lock"


def try_lock(store_path: str) -> int | None:
    """The fold lock taken at once (its fd: close it to release), or None if held."""
    path = lock_path(store_path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


class _WallClock:
    """The read-only journal asks the time only to date lag; the child has no reactor."""

    @staticmethod
    def seconds() -> float:
        return time.time()


class Fold:
    """The child's loop, apart from its streams so that it can be driven in a test."""

    def __init__(self, journal_path: str, store_path: str, tz_offset: int, batch: int,
                 flush_interval: float, poll_interval: float, out: IO[str]) -> None:
        self.journal_path = journal_path
        self.store_path = store_path
        self.tz_offset = tz_offset
        self.batch = batch
        self.flush_interval = flush_interval
        self.poll_interval = poll_interval
        self.out = out
        self.parent = os.getppid()
        self.journal: Any = None
        self.store: RollupStore | None = None
        self.acc: Accumulator | None = None
        self._lock_fd: int | None = None
        self._reported = -1

    def say(self, **what: Any) -> None:
        try:
            self.out.write(json.dumps(what) + "\n")
            self.out.flush()
        except OSError:  # the hub is gone (kill -9): what was written stays written
            pass

    # -- lifecycle -------------------------------------------------------------------------

    def lock(self, stdin: int) -> bool:
        """Take the store's fold lock, waiting while another fold (a previous run still
        writing its last flush) holds it; False if told to stop meanwhile."""
        while True:
            fd = try_lock(self.store_path)
            if fd is not None:
                self._lock_fd = fd
                return True
            if _readable(stdin, 0.1):
                data = os.read(stdin, 4096)
                if not data or b"stop" in data:
                    return False
            if self._orphaned():
                return False

    def open(self) -> None:
        from hub.journal import Journal

        self.journal = Journal(self.journal_path, clock=_WallClock(), readonly=True)
        self.journal.open()
        self.store = RollupStore(self.store_path, tz_offset=self.tz_offset)
        self.acc = Accumulator(self.store)
        import hub.rollups.vector  # noqa: F401  (numpy, a fraction of a second: not in a batch)
        self.say(ready=self.store.applied, pid=os.getpid(), cpu=round(time.process_time(), 3))

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None
        if self.journal is not None:
            self.journal.close()
            self.journal = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def _orphaned(self) -> bool:
        return os.getppid() != self.parent

    # -- the work --------------------------------------------------------------------------

    def step(self) -> bool:
        """Read and fold one batch; True if more may be waiting at once."""
        acc, journal = self.acc, self.journal
        assert acc is not None and journal is not None
        after = acc.mark
        top = journal.last_seq()
        if top <= after:
            return False
        # a batch is 100,000 lists alive at once: the cyclic collector, run every 700 of
        # them, would go over them again and again (it cost more than decoding them); a
        # batch makes no cycles, and what it held is gone when it ends
        gc.disable()
        try:
            # whole commits, in no order: the fold orders a batch itself
            rows, full = journal.stored_readings(after, self.batch)
            # not full: the read's snapshot is newer than ``top``, so every reading up to
            # ``top`` is in it and the records between are of other kinds; full: every
            # reading up to the highest seq read is in it
            acc.add(rows, journal.series_key, None if full else top)
            del rows
        finally:
            gc.enable()
        if acc.size > MAX_BUCKETS:
            self.flush()
        return full

    def flush(self) -> None:
        acc = self.acc
        assert acc is not None and self.store is not None
        n = acc.readings
        if acc.size or acc.mark > self.store.applied:
            acc.flush()
        if n or acc.mark != self._reported:
            self._reported = acc.mark
            self.say(flushed=acc.mark, readings=n, cpu=round(time.process_time(), 3))

    def run(self, stdin: int) -> int:
        """Until ``stop`` or end of file on ``stdin``: fold, write every flush interval."""
        if not self.lock(stdin):
            return 0
        try:
            self.open()
            next_flush = time.monotonic() + self.flush_interval
            buf = b""
            while True:
                more = self.step()
                now = time.monotonic()
                if now >= next_flush:
                    self.flush()
                    next_flush = now + self.flush_interval
                    if self._orphaned():
                        return 0
                wait = 0.0 if more else max(0.0, min(self.poll_interval, next_flush - now))
                if _readable(stdin, wait):
                    data = os.read(stdin, 4096)
                    buf += data
                    if not data or b"stop" in buf:
                        self.flush()
                        return 0
        finally:
            self.close()


def _readable(fd: int, timeout: float) -> bool:
    return bool(select.select([fd], [], [], timeout)[0])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hub.rollups.child",
                                description="the rollup fold (started by the hub)")
    p.add_argument("--journal", required=True)
    p.add_argument("--store", required=True)
    p.add_argument("--tz-offset", type=int, required=True)
    p.add_argument("--batch", type=int, default=5000)
    p.add_argument("--flush", type=float, default=1.0)
    p.add_argument("--poll", type=float, default=0.2)
    a = p.parse_args(argv)
    # the hub decides when this ends: a Ctrl-C or systemd's SIGTERM reach the whole
    # process group at once, and a child gone before the hub's own stop would look like a
    # crash to it (restarted, a fault). The hub says stop, or its end of stdin closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    fold = Fold(a.journal, a.store, a.tz_offset, a.batch, a.flush, a.poll, sys.stdout)
    return fold.run(sys.stdin.fileno())


if __name__ == "__main__":
    sys.exit(main())
