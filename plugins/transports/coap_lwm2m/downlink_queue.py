"""Commands for devices that sleep: a per-device queue, sent in order while the device
listens, without I/O.

An NB-IoT device in PSM or eDRX hears the network only for a short window after it sent
something. :class:`DownlinkQueue` holds each device's commands (first in, first out) until
:meth:`DownlinkQueue.wake` says the device is listening; then they go out one at a time, in
order, each waiting for the device's answer. A command that gets no answer goes back to the
head of its queue for the next window (up to ``attempts`` sends); one whose time to live ran
out ends as timed out without being sent.

Durability is the journal's: every command was journaled when accepted and every final
result is journaled when it ends, so after a restart the transport hands the unfinished
ones back through :meth:`hub.contracts.TransportPort.resume_commands`, and they land here
again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from hub.model import Command, CommandResult, CommandStatus

_log = Logger(namespace="hub.coap_lwm2m")


class QueueFull(Exception):
    """The device already has ``max_queue`` commands waiting."""


class NoAnswer(Exception):
    """The device did not answer a request: it is asleep; try again in its next window."""


@dataclass
class Queued:
    """One command waiting for (or in) its device's window.

    ``work`` is what the glue sends: encoded when the command was accepted, so a command
    the model cannot express fails at once rather than hours later.
    """

    device: str
    command: Command
    work: Any
    deferred: defer.Deferred
    expires_at: float
    attempts: int = 0


class DownlinkQueue:
    """Per-device FIFO queues and the one-at-a-time sending of their heads.

    :param reachable: ``reachable(device)`` → whether a request may go out now.
    :param send: ``send(item)`` → a Deferred firing with the :class:`CommandResult`, or
        failing with :class:`NoAnswer` (or any other error, which fails the command).
    :param on_silent: told that ``device`` ignored a request (it is asleep).
    :param on_requeued: told that a sent command got no answer and waits again for the
        device's next window (the core records it as queued, not as on the wire).
    """

    def __init__(self, clock: IReactorTime, reachable: Callable[[str], bool],
                 send: Callable[[Queued], defer.Deferred], on_silent: Callable[[str], None],
                 attempts: int = 3, max_queue: int = 100,
                 on_requeued: Callable[[Queued], None] | None = None) -> None:
        self._clock = clock
        self._reachable = reachable
        self._send = send
        self._on_silent = on_silent
        self._on_requeued = on_requeued
        self._attempts = attempts
        self._max_queue = max_queue
        self._queues: dict[str, deque[Queued]] = {}
        self._in_flight: dict[str, Queued] = {}

    # -- inspection ------------------------------------------------------------------------

    def waiting(self, device: str | None = None) -> int:
        """Commands waiting (not in flight), for one device or all."""
        if device is not None:
            return len(self._queues.get(device, ()))
        return sum(len(q) for q in self._queues.values())

    def in_flight(self, device: str) -> Queued | None:
        return self._in_flight.get(device)

    def items(self) -> list[Queued]:
        """Everything not finished: in flight first, then the queues in order."""
        return list(self._in_flight.values()) + [i for q in self._queues.values() for i in q]

    # -- the life of a command -------------------------------------------------------------

    def submit(self, device: str, command: Command, work: Any) -> tuple[defer.Deferred, bool]:
        """Queue ``command`` for ``device``; returns the Deferred of its
        :class:`CommandResult` and whether it waits (for the device's next window, or behind
        another command). Raises :class:`QueueFull`.

        Cancelling the Deferred (the core does so when the time to live runs out) takes a
        waiting command out of the queue.
        """
        queue = self._queues.setdefault(device, deque())
        if len(queue) >= self._max_queue:
            raise QueueFull(f"{device} already has {len(queue)} commands waiting")

        def cancel(_: defer.Deferred) -> None:
            q = self._queues.get(device)
            if q is not None and item in q:
                q.remove(item)
                self._tidy(device)

        item = Queued(device, command, work, defer.Deferred(cancel),
                      command.ts + command.ttl)
        queue.append(item)
        self.wake(device)
        return item.deferred, item in self._queues.get(device, ())

    def wake(self, device: str) -> None:
        """``device`` may be listening: send the head of its queue if it is reachable."""
        if device in self._in_flight:
            return
        queue = self._queues.get(device)
        while queue:
            item = queue[0]
            if self._clock.seconds() >= item.expires_at:
                queue.popleft()
                self._end(item, CommandStatus.TIMED_OUT, "its time to live ran out while the "
                          "device slept")
                continue
            if not self._reachable(device):
                return
            queue.popleft()
            self._start(item)
            return
        self._tidy(device)

    def expire(self) -> list[Queued]:
        """End waiting commands whose time to live ran out (a periodic sweep)."""
        now = self._clock.seconds()
        out = []
        for device, queue in list(self._queues.items()):
            for item in [i for i in queue if now >= i.expires_at]:
                queue.remove(item)
                self._end(item, CommandStatus.TIMED_OUT, "its time to live ran out while the "
                          "device slept")
                out.append(item)
            self._tidy(device)
        return out

    def drop_all(self) -> list[Queued]:
        """Forget everything without ending it (the hub is stopping: the journal keeps the
        commands unfinished, and the next start takes them up again)."""
        items = self.items()
        self._queues.clear()
        self._in_flight.clear()
        return items

    # -- internals -------------------------------------------------------------------------

    def _start(self, item: Queued) -> None:
        item.attempts += 1
        self._in_flight[item.device] = item
        try:
            d = self._send(item)
        except Exception as e:  # noqa: BLE001 - a failure of the glue fails one command
            d = defer.fail(e)
        d.addCallbacks(self._answered, self._failed, callbackArgs=(item,),
                       errbackArgs=(item,))

    def _answered(self, result: CommandResult, item: Queued) -> None:
        self._done(item)
        if not item.deferred.called:
            item.deferred.callback(result)
        self.wake(item.device)

    def _failed(self, failure: Any, item: Queued) -> None:
        self._done(item)
        if failure.check(NoAnswer):
            self._on_silent(item.device)
            now = self._clock.seconds()
            if item.deferred.called:
                return  # cancelled meanwhile: its time to live ran out
            if item.attempts < self._attempts and now < item.expires_at:
                self._queues.setdefault(item.device, deque()).appendleft(item)
                if self._on_requeued is not None:
                    self._on_requeued(item)
                return  # the next window sends it again, first
            self._end(item, CommandStatus.TIMED_OUT, f"no answer to {item.attempts} attempts")
            return
        self._end(item, CommandStatus.FAILED,
                  f"{failure.type.__name__}: {failure.getErrorMessage()}")
        self.wake(item.device)

    def _done(self, item: Queued) -> None:
        if self._in_flight.get(item.device) is item:
            del self._in_flight[item.device]
        self._tidy(item.device)

    def _end(self, item: Queued, status: CommandStatus, detail: str) -> None:
        if not item.deferred.called:
            item.deferred.callback(CommandResult(item.command.id, item.command.device, status,
                                                 self._clock.seconds(), detail))

    def _tidy(self, device: str) -> None:
        if not self._queues.get(device, True):
            del self._queues[device]
