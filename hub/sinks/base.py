"""The cursor-sink base service: what every sink needs and none should write again.

A sink built on :class:`CursorSink` gets, without a line of its own:

* **cursors**: one :class:`hub.sinks.JournalTail` per cursor (``add_tail``), claimed when
  the service starts (so retention waits for it from then on), released when it stops;
* **wake-ups**: :meth:`CursorSink.pump` runs when the journal commits records past what the
  sink has read (the journal's commit notification: no polling, no module globals; an
  operator's ``hub events ack`` is a commit like any other), and whenever the sink calls
  :meth:`CursorSink.wake` itself (after a delivery freed room, say);
* **backoff with jitter** (:class:`Backoff`, rng injectable): ``retry_initial × 2^n``
  capped at ``retry_max``, times a random factor in [0.5, 1), or the far side's
  ``Retry-After``;
* **lag**: every second ``sink.lag_records`` and ``sink.lag_seconds`` (label ``sink``: the
  cursor's name) and ``sink.write_rate``; the seconds are counted from when the hub
  *committed* the oldest record not yet delivered, never from a device's timestamp. With
  ``max_lag_seconds`` in the options, the fault event ``sink_lagging`` (device ``hub``)
  is raised above it and cleared, with the peak, once back under; a restart takes a raised
  one over instead of raising it twice;
* **a supervisor**: any exception escaping the sink's code (:meth:`pump`, or a Deferred
  chain ended with ``addErrback(self.internal_error)``) is logged with its traceback,
  counted in ``sink.internal_errors``, and the sink starts again from its durable cursor
  after a backoff delay, forever: a bug never leaves a silently dead loop. When it fails
  :data:`FAULT_AFTER` times in a row the fault event ``sink_failed`` is raised; the next
  delivery (:meth:`delivered`) clears it.

What is left to the sink: reading its tails in :meth:`pump` and delivering, calling
:meth:`JournalTail.commit` once the far side accepted, and :meth:`reset` (forget what was
read but not delivered). A sink that delivers whole batches should use
:class:`hub.sinks.BatchSink`, which also owns that loop.
"""

from __future__ import annotations

import abc
import random
from dataclasses import replace
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from hub.contracts.sink import SinkPort, as_port
from hub.model import Event, EventKind, EventState, Level, event_id
from hub.sinks.tail import JournalTail

_log = Logger(namespace="hub.sinks")

LAG_CODE = "sink_lagging"
FAILED_CODE = "sink_failed"
#: seconds between lag checks (metrics, sink_lagging)
LAG_CHECK_INTERVAL = 1.0
#: unexpected failures in a row before ``sink_failed`` is raised (one is logged and counted)
FAULT_AFTER = 2


class Backoff:
    """Delays before retry ``attempt`` (1, 2, ...): exponential from ``initial``, capped at
    ``maximum``, each multiplied by a random factor in [0.5, 1) so that many sinks (or
    hubs) do not retry in step. ``retry_after`` (the far side asked) wins, within bounds."""

    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None) -> None:
        self.initial = initial
        self.maximum = maximum
        self.rng = rng or random.Random()

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(max(retry_after, self.initial), self.maximum)
        base = min(self.maximum, self.initial * 2.0 ** min(attempt - 1, 60))
        return base * (0.5 + 0.5 * self.rng.random())


class CursorSink(Service, abc.ABC):
    """Base of a sink reading the journal from its own cursor(s). Subclasses call
    ``super().__init__(hub, name, options, rng=rng)``, add their tails, and implement
    :meth:`pump` (and :meth:`reset` if they keep read-ahead state).

    ``hub`` is the hub or a :class:`hub.sinks.SinkPort`; only the port is kept
    (``self.port``). ``options`` may carry ``retry_initial``, ``retry_max`` and
    ``max_lag_seconds``.
    """

    def __init__(self, hub: Any, name: str, options: Any, *,
                 rng: random.Random | None = None) -> None:
        self.port: SinkPort = as_port(hub)
        self.sink = name  # not `name`: the service tree renames services ("sinks.<name>")
        self.options = options
        self.clock = self.port.clock
        self.metrics = self.port.metrics
        self.journal = self.port.journal
        self.rng = rng or random.Random()
        self.backoff = Backoff(getattr(options, "retry_initial", 1.0),
                               getattr(options, "retry_max", 60.0), self.rng)
        self.max_lag: float | None = getattr(options, "max_lag_seconds", None)
        self.tails: list[JournalTail] = []
        self.labels = {"sink": name}
        self.failures = 0  # unexpected failures in a row
        self._wake_call: IDelayedCall | None = None
        self._paused: IDelayedCall | None = None
        self._lag_loop: task.LoopingCall | None = None
        self._lag_faults: dict[str, Event] = {}
        self._lag_peaks: dict[str, float] = {}
        self._failed_fault: Event | None = None
        self._delivered = 0
        self._rate_mark: tuple[float, int] | None = None

    def add_tail(self, cursor: str, kinds: set[str] | None = None) -> JournalTail:
        """A tail on cursor ``cursor`` (the sink's name, or ``<name>/<part>`` when it has
        several); claimed at start. An operator's rewind of it restarts the sink."""
        tail = JournalTail(self.journal, cursor, kinds, on_rewind=self._rewound)
        self.tails.append(tail)
        return tail

    # -- for subclasses ------------------------------------------------------------------

    @abc.abstractmethod
    def pump(self) -> None:
        """Read what is new and deliver; called on every wake-up. Must not block."""

    def reset(self) -> None:
        """Forget what was read and not delivered (the tails restart from their cursors
        right after). Called after an unexpected failure and after a rewind."""

    def started(self) -> None:
        """Called at start, after the tails were claimed, before the first pump."""

    def stopped(self) -> Any:
        """Called at stop; may return a Deferred (the stop waits for it)."""

    def delivered(self, n: int = 0) -> None:
        """Say that a delivery succeeded (``n`` items, for ``sink.write_rate``): the
        failure count starts again and a raised ``sink_failed`` is cleared."""
        self._delivered += n
        self.failures = 0
        if self._failed_fault is not None:
            raised, self._failed_fault = self._failed_fault, None
            self.port.record_events([replace(
                raised, state=EventState.CLEARED, ts=self.clock.seconds(), raised_ts=raised.ts,
                message=f"sink {self.sink} delivers again")])

    # -- lifecycle -----------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self.failures = 0
        for tail in self.tails:
            tail.claim()
        self._restore_faults()
        self.started()
        now = self.clock.seconds()
        self._rate_mark = (now, self._delivered)
        self._lag_loop = task.LoopingCall(self._check_lag)
        self._lag_loop.clock = self.clock
        self._lag_loop.start(LAG_CHECK_INTERVAL, now=True)
        self.wake()

    def stopService(self) -> defer.Deferred:
        super().stopService()
        for call in (self._wake_call, self._paused):
            if call is not None and call.active():
                call.cancel()
        self._wake_call = self._paused = None
        if self._lag_loop is not None and self._lag_loop.running:
            self._lag_loop.stop()
        for tail in self.tails:
            tail.release()
        d = defer.maybeDeferred(self.stopped)
        d.addBoth(self._after_stop)
        return d

    def _after_stop(self, result: Any) -> Any:
        self._update_metrics()
        return result

    # -- the loop ------------------------------------------------------------------------

    def wake(self) -> None:
        """Run :meth:`pump` soon (in this reactor turn's wake), once however often called;
        nothing while stopped or pausing after a failure."""
        if not self.running or self._paused is not None:
            return
        if self._wake_call is None or not self._wake_call.active():
            self._wake_call = self.clock.callLater(0, self._run)

    def _run(self) -> None:
        self._wake_call = None
        if not self.running or self._paused is not None:
            return
        try:
            self.pump()
        except Exception:
            self.internal_error(Failure())
            return
        self._arm()

    def _arm(self) -> None:
        """Wake at the next commit. Every run re-arms, so the chain never breaks; a sink
        that left records unread (queue full, a partial batch waiting for its flush time)
        is woken by the next commit too, and reads when it has room."""
        for tail in self.tails:
            tail.wait().addCallbacks(self._committed, lambda f: None)

    def _committed(self, _: int) -> None:
        self.wake()

    def internal_error(self, failure: Failure) -> None:
        """The supervisor: an unexpected exception from the sink's own code. Logged with
        its traceback, counted, ``sink_failed`` after :data:`FAULT_AFTER` in a row; the
        sink forgets what it read and starts again from its cursors after a backoff."""
        self.failures += 1
        delay = self.backoff.delay(self.failures)
        self.metrics.inc("sink.internal_errors", **self.labels)
        _log.failure("sink {sink}: unexpected error ({n} in a row); starting again from its "
                     "cursor in {delay:.1f} s", failure, sink=self.sink, n=self.failures,
                     delay=delay)
        if self.failures >= FAULT_AFTER and self._failed_fault is None:
            now = self.clock.seconds()
            self._failed_fault = Event(
                device="hub", kind=EventKind.FAULT, code=FAILED_CODE, state=EventState.RAISED,
                ts=now, level=Level.FAULT,
                id=event_id("hub", f"{FAILED_CODE}/{self.sink}", "", Level.FAULT, now),
                message=f"sink {self.sink} fails: {failure.getErrorMessage()[:200]}")
            self.port.record_events([self._failed_fault])
        self._restart()
        self.pause(delay)

    def pause(self, delay: float) -> None:
        """No pumping for ``delay`` seconds (a backoff), then a wake-up."""
        if self._paused is not None and self._paused.active():
            self._paused.cancel()
        if self.running:
            self._paused = self.clock.callLater(delay, self._resume)

    def _resume(self) -> None:
        self._paused = None
        if self.running:
            self.resumed()

    def resumed(self) -> None:
        """The pause after a failure is over; by default, a wake-up."""
        self.wake()

    def _restart(self) -> None:
        try:
            self.reset()
        except Exception:
            _log.failure("sink {sink}: reset failed", sink=self.sink)
        for tail in self.tails:
            tail.restart()

    def _rewound(self, seq: int) -> None:
        _log.info("sink {sink}: cursor rewound to seq {seq}; delivering again from there",
                  sink=self.sink, seq=seq)
        self._restart()
        self.wake()

    # -- lag -----------------------------------------------------------------------------

    def _update_metrics(self) -> list[tuple[JournalTail, int, float]]:
        now = self.clock.seconds()
        out = []
        for tail in self.tails:
            records, seconds = tail.lag(now)
            self.metrics.set("sink.lag_records", records, sink=tail.name)
            self.metrics.set("sink.lag_seconds", round(seconds, 3), sink=tail.name)
            out.append((tail, records, seconds))
        if self._rate_mark is not None and now > self._rate_mark[0]:
            t0, n0 = self._rate_mark
            self.metrics.set("sink.write_rate", round((self._delivered - n0) / (now - t0), 1),
                             **self.labels)
        self._rate_mark = (now, self._delivered)
        return out

    def _check_lag(self) -> None:
        now = self.clock.seconds()
        bound = self.max_lag
        for tail, records, seconds in self._update_metrics():
            if bound is None:
                continue
            fault = self._lag_faults.get(tail.name)
            if seconds > bound and fault is None:
                self._lag_peaks[tail.name] = seconds
                self._lag_faults[tail.name] = fault = Event(
                    device="hub", kind=EventKind.FAULT, code=LAG_CODE, state=EventState.RAISED,
                    ts=now, level=Level.FAULT, id=self._lag_id(tail.name, now), value=seconds,
                    set_point=bound, message=f"sink {tail.name} is {seconds:.0f} s "
                    f"({records} records) behind the journal (bound {bound:g} s)")
                self.port.record_events([fault])
            elif fault is not None:
                peak = self._lag_peaks[tail.name] = max(self._lag_peaks.get(tail.name, 0.0),
                                                        seconds)
                if seconds <= bound:
                    del self._lag_faults[tail.name]
                    self.port.record_events([replace(
                        fault, state=EventState.CLEARED, ts=now, value=seconds,
                        raised_ts=fault.ts, peak=max(peak, fault.value or 0.0),
                        message=f"sink {tail.name} caught up ({records} records behind)")])

    @staticmethod
    def _lag_id(cursor: str, raised_ts: float) -> str:
        # the cursor's name is part of the id: two sinks may lag at the same instant
        return event_id("hub", f"{LAG_CODE}/{cursor}", "", Level.FAULT, raised_ts)

    def _restore_faults(self) -> None:
        names = {t.name for t in self.tails}
        failed_id = f"{FAILED_CODE}/{self.sink}"
        for e in self.journal.active_events():
            if e.code == LAG_CODE:
                for name in names:
                    if e.id == self._lag_id(name, e.ts):
                        self._lag_faults[name] = e
                        self._lag_peaks[name] = e.value or 0.0
            elif e.code == FAILED_CODE and e.id == event_id("hub", failed_id, "", Level.FAULT,
                                                            e.ts):
                self._failed_fault = e

    @property
    def lag_fault(self) -> Event | None:
        """The raised ``sink_lagging`` of the first tail, if any."""
        return self._lag_faults.get(self.tails[0].name) if self.tails else None
