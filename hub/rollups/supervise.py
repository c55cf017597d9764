"""The hub's side of the fold process (:mod:`hub.rollups.child`): start it, read its
reports, start it again with backoff when it dies, stop it with the hub.

What it costs the hub: one short JSON line read every ``flush_interval`` and a cursor
update. The readings are read from the journal and folded by the child alone.

A child that exits without being asked (a crash, an OOM kill, ``kill -9``) is counted in
``rollups.fold_restarts``, raises the fault event ``rollups_fold_failed`` (device
``hub``) once, and is started again after ``retry_initial × 2^n`` seconds (capped at
``retry_max``, with jitter: :class:`hub.sinks.Backoff`); its first write after that clears
the fault. ``rollups.fold_running`` is 1 while a child runs, ``rollups.fold_cpu_seconds``
the CPU time the children spent past their start-up, as they last said.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from twisted.internet import defer, error
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from hub.model import Event, EventKind, EventState, Level, event_id
from hub.sinks import Backoff

_log = Logger(namespace="hub.rollups")

FOLD_FAILED_CODE = "rollups_fold_failed"
#: a child's stderr kept for the fault event's message
_TAIL_BYTES = 2000


class _ChildProtocol(ProcessProtocol):
    def __init__(self, owner: FoldSupervisor) -> None:
        self.owner = owner
        self.ended: defer.Deferred[None] = defer.Deferred()
        self._out = b""
        self._err = b""
        self.stderr_tail = b""

    def outReceived(self, data: bytes) -> None:
        self._out += data
        *lines, self._out = self._out.split(b"\n")
        for line in lines:
            try:
                msg = json.loads(line)
            except ValueError:
                _log.warn("rollups fold: {line}", line=line.decode(errors="replace"))
                continue
            self.owner._said(self, msg)

    def errReceived(self, data: bytes) -> None:
        self.stderr_tail = (self.stderr_tail + data)[-_TAIL_BYTES:]
        self._err += data
        *lines, self._err = self._err.split(b"\n")
        for line in lines:
            _log.warn("rollups fold: {line}", line=line.decode(errors="replace"))

    def processEnded(self, reason: Failure) -> None:
        self.owner._ended(self, reason)
        self.ended.callback(None)


class FoldSupervisor:
    """Keeps one fold process running. ``flushed(seq, readings)`` is called (on the
    reactor) after each of the child's writes."""

    def __init__(self, reactor: Any, argv: Sequence[str], *, metrics: Any,
                 record_events: Callable[[list[Event]], Any], backoff: Backoff,
                 flushed: Callable[[int, int], None], active_events: Sequence[Event] = (),
                 stop_timeout: float = 30.0, name: str = "rollups") -> None:
        self.reactor = reactor
        self.argv = list(argv)
        self.metrics = metrics
        self.record_events = record_events
        self.backoff = backoff
        self.flushed = flushed
        self.stop_timeout = stop_timeout
        self.name = name
        self.child: _ChildProtocol | None = None
        self.pid: int | None = None
        self.restarts = 0  # unexpected exits in a row
        self.cpu_seconds = 0.0  # the fold processes' CPU time folding and writing
        self._cpu_base = 0.0
        self.running = False
        self._respawn: IDelayedCall | None = None
        self._fault: Event | None = None
        for e in active_events:  # raised before the hub's restart: cleared by our first write
            if e.code == FOLD_FAILED_CODE and e.id == self._fault_id(e.ts):
                self._fault = e

    def _fault_id(self, ts: float) -> str:
        return event_id("hub", f"{FOLD_FAILED_CODE}/{self.name}", "", Level.FAULT, ts)

    def start(self) -> None:
        self.running = True
        self._spawn()

    def _spawn(self) -> None:
        self._respawn = None
        if not self.running:
            return
        import hub

        env = dict(os.environ)
        # the child imports this very hub package, wherever it was imported from
        root = os.path.dirname(os.path.dirname(os.path.abspath(hub.__file__)))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        child = self.child = _ChildProtocol(self)
        try:
            transport = self.reactor.spawnProcess(child, sys.executable, self.argv, env=env,
                                                  childFDs={0: "w", 1: "r", 2: "r"})
        except Exception as e:  # no process table room, no memory: as if it died at once
            child.stderr_tail = str(e).encode()
            self._ended(child, Failure(error.ProcessTerminated(-1)))
            return
        self.pid = transport.pid
        self.metrics.set("rollups.fold_running", 1, sink=self.name)
        _log.info("rollups {sink}: fold process {pid} started", sink=self.name, pid=self.pid)

    def _said(self, child: _ChildProtocol, msg: dict[str, Any]) -> None:
        if child is not self.child:
            return
        if "ready" in msg:
            self._cpu_base = self.cpu_seconds - float(msg.get("cpu", 0.0))
            _log.info("rollups {sink}: fold process {pid} ready, from seq {seq}",
                      sink=self.name, pid=self.pid, seq=msg.get("ready"))
        if "flushed" in msg:
            if "cpu" in msg:
                # summed over the children this sink started, their start-up not counted
                self.cpu_seconds = self._cpu_base + float(msg["cpu"])
                self.metrics.set("rollups.fold_cpu_seconds", round(self.cpu_seconds, 3),
                                 sink=self.name)
            self.restarts = 0
            self._clear_fault()
            self.flushed(int(msg["flushed"]), int(msg.get("readings", 0)))

    def _ended(self, child: _ChildProtocol, reason: Failure) -> None:
        if child is not self.child:
            return
        self.child = None
        self.metrics.set("rollups.fold_running", 0, sink=self.name)
        if not self.running:
            return
        how = reason.value
        if isinstance(how, error.ProcessTerminated) and how.signal is not None:
            what = f"killed by signal {how.signal}"
        else:
            what = f"exited with status {getattr(how, 'exitCode', '?')}"
        self.restarts += 1
        self.metrics.inc("rollups.fold_restarts", sink=self.name)
        delay = self.backoff.delay(self.restarts)
        err = child.stderr_tail.decode(errors="replace").strip().splitlines()
        _log.error("rollups {sink}: fold process {pid} {what}; started again in {delay:.1f} s",
                   sink=self.name, pid=self.pid, what=what, delay=delay)
        if self._fault is None:
            now = self.reactor.seconds()
            self._fault = Event(
                device="hub", kind=EventKind.FAULT, code=FOLD_FAILED_CODE,
                state=EventState.RAISED, ts=now, level=Level.FAULT, id=self._fault_id(now),
                message=f"rollups {self.name}: the fold process {what}"
                        + (f": {err[-1][:200]}" if err else ""))
            self.record_events([self._fault])
        self._respawn = self.reactor.callLater(delay, self._spawn)

    def _clear_fault(self) -> None:
        if self._fault is None:
            return
        raised, self._fault = self._fault, None
        self.record_events([replace(
            raised, state=EventState.CLEARED, ts=self.reactor.seconds(), raised_ts=raised.ts,
            message=f"rollups {self.name}: the fold process writes again")])

    def stop(self) -> defer.Deferred[None]:
        """Ask the child to write what it holds and exit; kill it after
        ``stop_timeout`` seconds. Fires when it is gone."""
        self.running = False
        if self._respawn is not None and self._respawn.active():
            self._respawn.cancel()
        self._respawn = None
        child = self.child
        if child is None or child.transport is None:
            return defer.succeed(None)
        try:
            child.transport.write(b"stop\n")
            child.transport.closeStdin()
        except Exception:  # already going
            pass

        def kill() -> None:
            _log.warn("rollups {sink}: fold process {pid} did not stop in {t:g} s; killed",
                      sink=self.name, pid=self.pid, t=self.stop_timeout)
            try:
                child.transport.signalProcess("KILL")
            except error.ProcessExitedAlready:
                pass
        timer = self.reactor.callLater(self.stop_timeout, kill)

        def done(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            return result
        return child.ended.addBoth(done)
