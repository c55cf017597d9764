"""What an engine and the ``mqtt`` service exchange: the interface of one broker connection
(:class:`Engine`, offered by the paho and the native engine alike), one received PUBLISH
(:class:`Received`), and how a payload or topic is shown in a log line.

The engines import this module and the service imports the engines; nothing here imports
either, so there is no import cycle."""

from __future__ import annotations

import abc
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet import defer

EXCERPT = 64  # bytes of a bad payload shown in the log


def excerpt(data: bytes) -> str:
    """A payload for a log line: text if it is printable UTF-8, else hex."""
    cut = data[:EXCERPT]
    more = " …" if len(data) > EXCERPT else ""
    try:
        text = cut.decode("utf-8")
        if text.isprintable():
            return repr(text) + more
    except UnicodeDecodeError:
        pass
    return cut.hex(" ") + more


@dataclass(slots=True)
class Received:
    """One PUBLISH on its way to the reactor, then waiting for its turn to be acked."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    correlation: bytes | None
    session: int = 0  # the link it came on: its mid means nothing on the next one
    done: bool = False
    oversized: int = 0  # a packet of this many bytes was skipped; payload is its start
    #: the topic as it came if it is not UTF-8 (``topic`` shows it with escapes): such a
    #: message is counted, logged and acknowledged, never handled
    bad_topic: bytes | None = None


class Engine(Protocol):
    """One broker connection, as the service drives it (in the reactor thread).

    The engine calls back the service's ``link_up``, ``link_down``, ``link_error``,
    ``subscribed`` and ``deliver`` (always in the reactor thread), and the service answers
    with ``finished`` once a message may be acknowledged."""

    name: str  # for log lines: the transport's name, with #index if there are several
    index: int
    client_id: str
    link_number: int  # bumped when a link drops: a message id is only valid on its link
    acks: deque  # received QoS 1 messages not acknowledged yet, in arrival order
    connected: bool
    ever_connected: bool

    def start(self) -> None: ...

    def stop(self) -> defer.Deferred: ...

    def finished(self, item: Received) -> None: ...

    def finished_all(self, items: list[Received]) -> None: ...

    def drop(self, reason: str, delay: float) -> None: ...

    def publish(self, topic: str, payload: bytes, correlation: bytes | None,
                response_topic: str | None) -> None: ...


class EngineBase(abc.ABC):
    """What both engines' connections hold alike; each engine subclasses it."""

    def __init__(self, service: Any, index: int) -> None:
        self.service = service
        self.index = index
        opts = service.options
        self.name, self.client_id = opts.connection_names(service.transport_name, index)
        self.v5 = opts.protocol == "5"
        # bumped when a link drops: a message id of an old link must never ack a message
        # of the new one
        self.link_number = 0
        self.acks: deque[Received] = deque()  # reactor thread only
        self.connected = False
        self.ever_connected = False

    @abc.abstractmethod
    def finished(self, item: Received) -> None:
        """Acknowledge one message now that it is committed (each engine's own)."""

    def finished_all(self, items: list[Received]) -> None:
        """The messages of one commit may be acknowledged."""
        for item in items:
            item.done = True
        self.finished(items[-1])
