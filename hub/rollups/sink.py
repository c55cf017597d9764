"""The rollup sink: folds committed readings into :class:`hub.rollups.RollupStore` from its
own durable journal cursor, outside the hub process by default, and prunes old buckets and
grades finished days on timers.

**Where the work happens.** By default (``process: true``) in a process of its own,
:mod:`hub.rollups.child`, which reads the journal read-only from the store's applied seq
and writes the store; the hub starts, supervises and stops it
(:class:`hub.rollups.supervise.FoldSupervisor`) and moves the journal cursor (which
retention respects and lag is measured on) to what it reports written. The fold's CPU and
its share of the GIL are then off the hub entirely.

With ``process: false`` (or on a clock that cannot start processes) the reactor thread
only reads the rows of each commit from the journal (:class:`hub.sinks.JournalTail`: the
journal's recent rows are in memory) and hands them to a worker thread
(:class:`FoldWorker`), which owns its own SQLite connection to the rollup file. The worker
folds the rows into an in-memory :class:`hub.rollups.fold.Accumulator` and writes it in
one transaction every ``flush_interval`` seconds: a series with a reading a minute costs
one upsert per flush rather than one per reading, which is what lets the fold keep up with
100,000 readings a second (``python -m scripts.bench_reports``). On a clock that cannot
take calls from other threads (``task.Clock`` in tests) the same worker runs inline,
flushing on the clock.

**At-least-once becomes exactly-once.** The cursor moves only after a flush committed,
to the seq that flush recorded as applied (in the same transaction as the buckets); the
store skips every row at or below it, so what a restart reads again changes nothing. A
failed flush forgets what it held and the sink starts again from its cursor (the
supervisor of :class:`hub.sinks.CursorSink`); batches queued behind a failed one are
dropped by their epoch, never folded in with a hole before them. The fold process works
the same way, with the store's applied seq as its cursor; the journal cursor follows it.
"""

from __future__ import annotations

import os
import queue
import random
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.python.failure import Failure

from hub.rollups.fold import Accumulator
from hub.rollups.store import DEFAULT_TZ_OFFSET, RollupStore, resolve_path
from hub.sinks import CursorSink

_log = Logger(namespace="hub.rollups")

#: seconds between retention passes over the buckets
PRUNE_INTERVAL = 6 * 3600.0
#: seconds between checks for a local day to grade (hub.analysis.schedule)
GRADE_CHECK_INTERVAL = 600.0
#: batches read and handed to the worker but not folded yet (then reading waits)
MAX_QUEUED = 8
#: buckets held in memory before a flush is forced (bounds memory after a long outage)
MAX_BUCKETS = 200_000


@dataclass(frozen=True)
class RollupOptions:
    path: str | None = None  # default <state_dir>/rollups.sqlite; relative: to state_dir
    tz_offset_hours: float = DEFAULT_TZ_OFFSET / 3600
    hourly_days: float = 800.0  # ≥ 2 years (T/CFPA 023-2023 §6.3.1 b)
    daily_days: float = 3660.0
    batch_size: int = 5000
    flush_interval: float = 1.0  # s between writes of what was folded in
    max_lag_seconds: float | None = 300.0
    retry_initial: float = 1.0
    retry_max: float = 60.0
    #: the safety-grading scheme and the time-of-use schedule (:mod:`hub.analysis`),
    #: configured here because they are read with these rollups
    grading: Mapping[str, Any] | None = None
    tou: Mapping[str, Any] | None = None
    #: when daily/weekly/monthly reports are made and who gets them
    #: (:class:`hub.reports.schedule.ReportSchedule`)
    reports: Mapping[str, Any] | None = None
    #: with ``process`` false: "thread" (the default) or "inline" (on the reactor thread)
    worker: str = "thread"
    #: fold in a process of its own (hub.rollups.child); false: in the hub (``worker``)
    process: bool = True
    poll_interval: float = 0.2  # s between the fold process's looks at the journal
    stop_timeout: float = 30.0  # s the fold process gets to write and exit at a stop
    #: false: no rollups (they run by default, :func:`hub.config.load_config`)
    enabled: bool = True


class FoldWorker:
    """Folds batches into the rollup file from one thread (``threaded``) or inline.
    ``report(kind, *args)`` is called on the reactor thread: ``("consumed",)`` after
    each batch, ``("flushed", mark, epoch, readings)`` after each write,
    ``("failed", failure)`` after an error."""

    def __init__(self, path: str, tz_offset: int, names: Callable[[int], tuple[str, str, str]],
                 report: Callable[..., None],
                 call_from_thread: Callable[..., None] | None) -> None:
        self.path = path
        self.tz_offset = tz_offset
        self.names = names
        self.report = report
        self.call_from_thread = call_from_thread
        self.store: RollupStore | None = None
        self.acc: Accumulator | None = None
        self.epoch = 0  # of the newest batch folded in
        self.dead_epoch = -1  # batches of this epoch or older come after a failure
        self._reported = (-1, -1)  # (mark, epoch) last reported
        self.cpu_seconds = 0.0  # the worker thread's CPU time folding and writing
        self._queue: queue.SimpleQueue[tuple] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.done: defer.Deferred[None] = defer.Deferred()

    @property
    def threaded(self) -> bool:
        return self.call_from_thread is not None

    def start(self) -> None:
        if self.threaded:
            self._thread = threading.Thread(target=self._run, name="rollups-fold", daemon=True)
            self._thread.start()
        else:
            self._open()

    def submit(self, *item: Any) -> None:
        """``("rows", rows, end, epoch)``, ``("flush",)`` or ``("stop",)``."""
        if self.threaded:
            self._queue.put(item)
        else:
            self._handle(item)

    # -- the worker's side -----------------------------------------------------------------

    def _open(self) -> None:
        self.store = RollupStore(self.path, tz_offset=self.tz_offset)
        self.acc = Accumulator(self.store)

    def _tell(self, *what: Any) -> None:
        if self.call_from_thread is not None:
            self.call_from_thread(self.report, *what)
        else:
            self.report(*what)

    def _run(self) -> None:
        try:
            self._loop()
        finally:  # the stop waits for this, whatever happened
            assert self.call_from_thread is not None
            self.call_from_thread(self.done.callback, None)

    def _loop(self) -> None:
        try:
            self._open()
        except Exception:
            self._tell("failed", Failure())
        while True:
            item = self._queue.get()
            if self.store is None:  # could not open: try again with each batch
                try:
                    self._open()
                except Exception:
                    self._tell("failed", Failure())
                    if item[0] == "stop":
                        break
                    continue
            cpu = time.thread_time()
            going = self._handle(item)
            self.cpu_seconds += time.thread_time() - cpu
            if not going:
                break
        if self.store is not None:
            self.store.close()
            self.store = None

    def _handle(self, item: tuple) -> bool:
        """Fold, flush or stop; False once stopped. Errors are reported, not raised
        (inline: raised, so that the sink's supervisor sees them at once)."""
        assert self.acc is not None
        try:
            if item[0] == "rows":
                _, rows, end, epoch = item
                if epoch <= self.dead_epoch:
                    return True
                self.epoch = epoch
                self.acc.add(rows, self.names, end)
                if self.acc.size > MAX_BUCKETS:
                    self._flush()
                if self.threaded:
                    self._tell("consumed")
            elif item[0] == "flush":
                self._flush()
            elif item[0] == "stop":
                self._flush()
                if not self.threaded:
                    self.close()
                return False
        except Exception:
            self.dead_epoch = self.epoch
            self.acc.forget()
            if not self.threaded:
                raise
            if item[0] == "rows":
                self._tell("consumed")
            self._tell("failed", Failure())
        return True

    def _flush(self) -> None:
        acc = self.acc
        assert acc is not None and self.store is not None
        n = 0
        if acc.size or acc.mark > self.store.applied:
            n = acc.readings
            acc.flush()
        # also when nothing was written: a cursor behind what the store holds (a
        # restart, a rewind) moves to it
        if n or (acc.mark, self.epoch) != self._reported:
            self._reported = (acc.mark, self.epoch)
            self._tell("flushed", acc.mark, self.epoch, n)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None


class RollupSink(CursorSink):
    """``sinks.<name>: {type: rollups}``; the cursor is named after the key."""

    def __init__(self, hub: Any, name: str, options: RollupOptions | None = None, *,
                 rng: random.Random | None = None) -> None:
        options = options or RollupOptions()
        super().__init__(hub, name, options, rng=rng)
        self.batch_size = options.batch_size
        self.flush_interval = options.flush_interval
        # every kind: the journal's recent rows answer with a slice (a filter would be a
        # Python loop on the reactor thread); the worker passes over what is not a reading
        self.tail = self.add_tail(name)
        self.path = resolve_path(options.path, self.port.state_dir)
        self.tz_offset = int(options.tz_offset_hours * 3600)
        #: the reactor thread's connection: grades, pruning, tests' reads
        self.store: RollupStore | None = None
        self.worker: FoldWorker | None = None
        self.supervisor: Any = None  # hub.rollups.supervise.FoldSupervisor in process mode
        self._fold_mark = 0  # the applied seq the fold process last reported
        self._queued = 0
        self._loops: list[task.LoopingCall] = []

    def started(self) -> None:
        if self.store is None:
            self.store = RollupStore(self.path, tz_offset=self.tz_offset)
        if self._can_spawn():
            self._start_process()
        else:
            threads = getattr(self.clock, "callFromThread", None)
            if self.options.worker != "thread":
                threads = None
            self.worker = FoldWorker(self.path, self.store.tz_offset, self.journal.series_key,
                                     self._report, threads)
            self.worker.start()
        self._queued = 0
        self._loops = []
        for fn, every, now in ((self.prune, PRUNE_INTERVAL, True),
                               (self.grade, GRADE_CHECK_INTERVAL, False),
                               (self.flush, self.flush_interval, False)):
            loop = task.LoopingCall(fn)
            loop.clock = self.clock
            loop.start(every, now=now)
            self._loops.append(loop)

    def stopped(self) -> Any:
        for loop in self._loops:
            if loop.running:
                loop.stop()
        worker, self.worker = self.worker, None
        d: defer.Deferred[Any] = defer.succeed(None)
        supervisor, self.supervisor = self.supervisor, None
        if supervisor is not None:
            d = supervisor.stop()
            d.addCallback(lambda _: self._advance_quietly())
        if worker is not None:
            if worker.threaded:
                d = worker.done
                worker.submit("stop")
            else:
                try:
                    worker.submit("stop")
                except Exception:
                    _log.failure("rollups {sink}: the last flush failed", sink=self.sink)
                    worker.close()

        def close(result: Any) -> Any:
            if self.store is not None:
                self.store.close()
                self.store = None
            return result
        return d.addBoth(close)

    # -- the fold process ------------------------------------------------------------------

    def _can_spawn(self) -> bool:
        from twisted.internet.interfaces import IReactorProcess

        return (self.options.process and IReactorProcess.providedBy(self.clock)
                and getattr(self.journal, "path", None) is not None)

    def _start_process(self) -> None:
        from hub.rollups.child import READ_ROWS
        from hub.rollups.supervise import FoldSupervisor

        assert self.store is not None
        o = self.options
        argv = [sys.executable, "-m", "hub.rollups.child",
                "--journal", os.path.abspath(self.journal.path),  # type: ignore[attr-defined]
                "--store", os.path.abspath(self.path),
                "--tz-offset", str(self.store.tz_offset),
                "--batch", str(max(self.batch_size, READ_ROWS)),
                "--flush", repr(self.flush_interval), "--poll", repr(o.poll_interval)]
        self._fold_mark = self.tail.cursor
        self.supervisor = FoldSupervisor(
            self.clock, argv, metrics=self.metrics, record_events=self.port.record_events,
            backoff=self.backoff, flushed=self._fold_flushed,
            active_events=self.journal.active_events(), stop_timeout=o.stop_timeout,
            name=self.sink)
        self.supervisor.start()

    def _fold_flushed(self, mark: int, n: int) -> None:
        self._fold_mark = max(self._fold_mark, mark)
        self._advance()
        self.metrics.inc("rollups.readings", n)
        self.delivered(n)

    def _advance(self) -> None:
        """Move the journal cursor to what the fold process wrote; not past what this
        hub has seen committed (the child may see a commit first): the rest at the next
        flush tick."""
        tail = self.tail
        seq = min(self._fold_mark, self.journal.last_seq())
        if seq > tail.cursor:
            tail.position = max(tail.position, seq)
            tail.commit(seq)

    def _advance_quietly(self) -> None:
        try:
            self._advance()
        except Exception:  # the journal may be closing with the hub: moved at the next start
            _log.failure("rollups {sink}: moving the cursor at stop failed", sink=self.sink)

    def _arm(self) -> None:
        if self.supervisor is None:  # the fold process watches the journal itself
            super()._arm()

    # -- the loop --------------------------------------------------------------------------

    def pump(self) -> None:
        if self.supervisor is not None:
            return
        worker = self.worker
        if worker is None:
            return
        tail = self.tail
        while self._queued < MAX_QUEUED and tail.behind() > 0:
            rows, end, full = tail.read_rows(self.batch_size)
            if worker.threaded:
                self._queued += 1
            worker.submit("rows", rows, end, tail.epoch)
            if not full:
                break

    def flush(self) -> None:
        """Write what the worker folded in (every ``flush_interval``)."""
        if self.supervisor is not None:
            self._advance()
        if self.worker is not None:
            try:
                self.worker.submit("flush")
            except Exception:
                self.internal_error(Failure())

    def reset(self) -> None:
        pass  # the worker drops batches of the failed epoch itself

    def _report(self, what: str, *args: Any) -> None:
        if what == "consumed":
            self._queued = max(0, self._queued - 1)
            self.wake()
        elif what == "flushed":
            mark, epoch, n = args
            self.tail.commit(mark, epoch)
            self.metrics.inc("rollups.readings", n)
            self.delivered(n)
        elif what == "failed":
            if self.running:
                self.internal_error(args[0])
            else:
                _log.failure("rollups {sink}: failed while stopping", args[0], sink=self.sink)

    # -- timers ----------------------------------------------------------------------------

    def prune(self) -> int:
        assert self.store is not None
        return self.store.prune(self.clock.seconds(), self.options.hourly_days,
                                self.options.daily_days)

    def grade(self) -> int:
        """Grade the local days that ended (grades and grade-change events)."""
        from hub.analysis.grading import GradingScheme
        from hub.analysis.schedule import grade_days

        assert self.store is not None
        devices = [d.id for d in self.port.devices()]
        try:
            return grade_days(self.store, self.journal, devices, self.clock.seconds(),
                              GradingScheme.from_mapping(self.options.grading),
                              self.port.record_events)
        except Exception:
            _log.failure("rollups {sink}: grading failed; tried again in "
                         f"{GRADE_CHECK_INTERVAL:g} s", sink=self.sink)
            return 0
