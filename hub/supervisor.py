"""A supervisor for the long-running jobs of transports and sinks: a thread (paho's network
loop) or a loop on the reactor (a protocol with its reconnect timer). Without one, a bug that
kills such a job stops ingest for good while the process looks healthy.

For plugin authors::

    from hub.supervisor import Supervisor, run_in_thread

    self.supervisor = Supervisor(
        hub, "mqtt", "broker", lambda: run_in_thread(reactor, self._loop, "mqtt-broker"),
        labels={"transport": "broker"}, on_crash=self._crashed)
    self.supervisor.start()
    ...
    d = self.supervisor.stop()   # first, so the end that follows is not taken for a crash
    self._ask_the_loop_to_end()
    yield d                      # fires when the job has ended

The job is any callable that starts the work and returns a Deferred firing when the work
ends: :func:`run_in_thread` makes one of a function that runs a thread's loop; a reactor
loop returns a Deferred it errbacks from its own ``except`` clauses (its callbacks run in
the reactor, which would log an exception and carry on without the loop).

A job is supposed to run until :meth:`Supervisor.stop`; if it ends before that, with a
failure or not, the supervisor

1. logs it with its traceback (``<name>: crashed ...``),
2. counts it in ``<component>.crashes`` (with ``labels``),
3. raises a fault event (device ``hub``, code ``component_crashed`` unless ``fault`` says
   otherwise, the component and error in its message) unless one is raised already,
4. calls ``on_crash(failure)``, where the owner puts right what the job left (closes its
   socket, sets its ``connected`` gauge to 0, forgets unacknowledged messages),
5. starts the job again after a backoff with jitter: ``initial`` doubling up to ``maximum``,
   each wait drawn from [50 %, 100 %] of that (``rng``), so hubs that crash together do not
   restart together.

A job that then stays up ``stable_after`` seconds is healthy again: the backoff starts from
``initial`` at the next crash, and the fault is cleared. Time comes from ``host.clock``, so
tests drive it with ``task.Clock``.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from hub.model import Event, EventKind, EventState, Level, event_id

__all__ = ["Supervisor", "SupervisorHost", "run_in_thread"]

_log = Logger(namespace="hub.supervisor")


class SupervisorHost(Protocol):
    """What a supervisor needs of the hub (:class:`hub.core.Hub` offers it)."""

    clock: IReactorTime
    metrics: Any  # hub.metrics.Metrics: inc(name, amount, **labels)

    def record_events(self, events: list[Event]) -> Any: ...


def run_in_thread(reactor: Any, target: Callable[[], object], name: str) -> defer.Deferred:
    """Run ``target`` in a new daemon thread; the Deferred fires in the reactor thread with
    what it returned, or with the exception (and its traceback) that ended it."""
    d: defer.Deferred = defer.Deferred()

    def main() -> None:
        try:
            result = target()
        except BaseException:  # noqa: BLE001 - whatever ends the thread is the supervisor's
            reactor.callFromThread(d.errback, Failure())
        else:
            reactor.callFromThread(d.callback, result)

    threading.Thread(target=main, name=name, daemon=True).start()
    return d


class Supervisor:
    """Runs ``run()`` and starts it again when it ends before :meth:`stop`; see the module
    docstring. ``component`` names the metric (``<component>.crashes``), ``name`` the job in
    log lines and in the fault's message."""

    def __init__(self, host: SupervisorHost, component: str, name: str,
                 run: Callable[[], defer.Deferred], *, labels: dict[str, str] | None = None,
                 on_crash: Callable[[Failure], object] | None = None, initial: float = 1.0,
                 maximum: float = 60.0, stable_after: float = 30.0,
                 rng: Callable[[], float] = random.random,
                 fault: str = "component_crashed") -> None:
        self.host = host
        self.component = component
        self.name = name
        self.labels = dict(labels or {})
        self.initial = initial
        self.maximum = maximum
        self.stable_after = stable_after
        self.fault = fault
        self.crashes = 0  # in this process, for tests and status lines
        self._run = run
        self._on_crash = on_crash
        self._rng = rng
        self._failures = 0  # crashes since the job was last healthy: the backoff's exponent
        self._running = False
        self._current: defer.Deferred | None = None
        self._restart: Any = None  # IDelayedCall of the next start
        self._stable: Any = None  # IDelayedCall that declares the job healthy
        self._event: Event | None = None  # the raised fault, until it clears
        self._waiting: list[defer.Deferred] = []

    @property
    def running(self) -> bool:
        """Whether the job is supervised (between :meth:`start` and :meth:`stop`)."""
        return self._running

    @property
    def faulted(self) -> bool:
        return self._event is not None

    def start(self) -> None:
        """Start the job now and supervise it until :meth:`stop`."""
        if self._running:
            return
        self._running = True
        self._launch()

    def stop(self) -> defer.Deferred:
        """Stop supervising: what the job does from now on is not a crash. Call it before
        asking the job to end. The Deferred fires when the current run has ended (at once
        if none is running); a failure it ends with is logged, never raised."""
        self._running = False
        for call in (self._restart, self._stable):
            if call is not None and call.active():
                call.cancel()
        self._restart = self._stable = None
        if self._current is None:
            return defer.succeed(None)
        d: defer.Deferred = defer.Deferred()
        self._waiting.append(d)
        return d

    # -- the job ---------------------------------------------------------------------------

    def _launch(self) -> None:
        self._restart = None
        try:
            d = self._run()
        except Exception:  # noqa: BLE001 - failing to start is a crash like any other
            d = defer.fail()
        self._current = d
        self._stable = self.host.clock.callLater(self.stable_after, self._healthy)
        d.addBoth(self._ended, d)

    def _ended(self, result: Any, run: defer.Deferred) -> None:
        if run is not self._current:
            return None
        self._current = None
        if self._stable is not None and self._stable.active():
            self._stable.cancel()
        self._stable = None
        waiting, self._waiting = self._waiting, []
        if not self._running:
            if isinstance(result, Failure):
                _log.failure("{name}: failed while stopping", result, name=self.name)
            for d in waiting:
                d.callback(None)
            return None
        if not isinstance(result, Failure):
            try:
                raise RuntimeError(f"the job ended by itself (returned {result!r})")
            except RuntimeError:
                result = Failure()
        self._crashed(result)
        return None

    def _crashed(self, failure: Failure) -> None:
        self.crashes += 1
        self._failures += 1
        base = min(self.initial * 2 ** (self._failures - 1), self.maximum)
        delay = base * (0.5 + self._rng() / 2)
        self.host.metrics.inc(f"{self.component}.crashes", **self.labels)
        _log.failure("{name}: crashed ({error}); restarting in {delay:.2f} s (crash {n})",
                     failure, level=LogLevel.error, name=self.name,
                     error=_describe(failure), delay=delay, n=self.crashes)
        if self._event is None:
            now = self.host.clock.seconds()
            self._event = Event(
                "hub", EventKind.FAULT, self.fault, EventState.RAISED, now, Level.FAULT,
                id=event_id("hub", self.fault, "", Level.FAULT, now), source="hub",
                message=f"{self.name}: crashed ({_describe(failure)}); restarting")
            self._record(self._event)
        if self._on_crash is not None:
            try:
                self._on_crash(failure)
            except Exception:  # noqa: BLE001 - the restart must happen all the same
                _log.failure("{name}: error cleaning up after the crash", name=self.name)
        if self._running:  # on_crash may have stopped us
            self._restart = self.host.clock.callLater(delay, self._launch)

    def _healthy(self) -> None:
        self._stable = None
        self._failures = 0
        raised, self._event = self._event, None
        if raised is not None:
            _log.info("{name}: running again since {s:g} s", name=self.name,
                      s=self.stable_after)
            self._record(Event(
                "hub", EventKind.FAULT, self.fault, EventState.CLEARED,
                self.host.clock.seconds(), Level.FAULT, id=raised.id, raised_ts=raised.ts,
                source="hub", message=f"{self.name}: running again"))

    def _record(self, event: Event) -> None:
        try:
            d = self.host.record_events([event])
        except Exception:  # noqa: BLE001 - a fault we cannot record must not stop a restart
            _log.failure("{name}: could not record the fault event", name=self.name)
            return
        if isinstance(d, defer.Deferred):
            d.addErrback(lambda f: None)  # the hub retries events it could not journal


def _describe(failure: Failure) -> str:
    return f"{failure.type.__name__}: {failure.getErrorMessage()}"
