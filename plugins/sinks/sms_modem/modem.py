"""The ``gsm_modem`` provider: the AT dialogue of :mod:`.at` on a serial port, in Twisted.

One message at a time, in order of ``send`` calls; each phone of a message is one SMS
(possibly of several parts) and gets one :class:`hub.contracts.SendResult`. The port is opened on
the first message and kept open. A timeout, a failed initialisation or a lost port closes it;
the next message reopens it, but not before a backoff (``reopen_initial`` doubling up to
``reopen_max``) has passed, so an unplugged modem is not hammered. Meanwhile ``send``
errbacks with :class:`ModemUnavailable` and the sink retries the message later.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer, task
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from hub.contracts import SendResult, SmsMessage
from plugins.sinks.sms_modem.at import AtSession, Event, Failed, Submitted
from plugins.sinks.sms_modem.pdu import Part, PduError, encode_submit

_log = Logger(namespace="hub.sms.gsm_modem")


@dataclass(frozen=True)
class ModemOptions:
    port: str
    baudrate: int = 115200
    smsc: str | None = None
    pin: str | None = None
    validity: float | None = None
    command_timeout: float = 5.0
    send_timeout: float = 60.0
    max_parts: int = 6
    inter_message_delay: float = 2.0
    reopen_initial: float = 1.0
    reopen_max: float = 60.0

    def __repr__(self) -> str:  # the PIN never reaches a log
        return f"ModemOptions(port={self.port!r}, baudrate={self.baudrate})"


class ModemUnavailable(Exception):
    """The modem cannot take a message now (port missing, no answer, init refused)."""


class _PortProtocol(Protocol):
    def __init__(self, owner: GsmModemProvider) -> None:
        self.owner = owner

    def dataReceived(self, data: bytes) -> None:
        self.owner._received(self, data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.owner._port_lost(self, reason)


def serial_opener(options: ModemOptions, reactor: Any) -> Callable[[Protocol], Any]:
    def open_port(protocol: Protocol) -> Any:
        from twisted.internet.serialport import SerialPort

        return SerialPort(protocol, options.port, reactor, baudrate=options.baudrate)

    return open_port


class GsmModemProvider:
    """An :class:`hub.contracts.SmsProvider` sending through a GSM modem.

    ``open_port(protocol)`` connects ``protocol`` to the modem and returns the transport
    (default: :class:`twisted.internet.serialport.SerialPort` on ``options.port``); tests
    pass their own to run on a memory reactor. ``clock`` (default: ``reactor``) times the
    AT dialogue, the backoff and the pacing, so a test can drive a real pty with a
    :class:`twisted.internet.task.Clock` and never wait for a timeout in real time.
    """

    name = "gsm_modem"

    def __init__(self, options: ModemOptions, reactor: Any,
                 open_port: Callable[[Protocol], Any] | None = None,
                 clock: Any = None) -> None:
        self.options = options
        self.reactor = reactor
        self.clock = clock if clock is not None else reactor
        self._open_port = open_port or serial_opener(options, reactor)
        self._queue: deque[tuple[SmsMessage, defer.Deferred]] = deque()
        self._running = False
        self._proto: _PortProtocol | None = None
        self._transport: Any = None
        self._session: AtSession | None = None
        self._ready = False
        self._waiter: defer.Deferred | None = None
        self._timer: Any = None
        self._timer_gen = -1
        self._retry_at = 0.0
        self._backoff = options.reopen_initial
        self._last_error = ""
        self._last_sent_at: float | None = None
        # three wrong PINs lock the SIM (PUK needed): a refused PIN is never sent again
        self._pin_refused = False
        # a fresh random start: a restarted hub must not reuse the reference of a long
        # message a phone is still reassembling
        self._reference = random.randrange(256)

    # ------------------------------------------------------------------ the provider API

    @property
    def max_parts(self) -> int:
        """The most parts a text may take: the sink cuts its texts to fit, instead of the
        modem refusing a longer one for good."""
        return self.options.max_parts

    @property
    def send_deadline(self) -> float:
        """The longest a message handed over now may take: the ones queued ahead of it
        and its own start-up, prompts and +CMGS waits. The sink waits at least this long;
        giving up earlier would send again a text the modem is still sending."""
        o = self.options
        one = (6 * o.command_timeout + o.max_parts * (o.command_timeout + o.send_timeout)
               + o.inter_message_delay)
        return (len(self._queue) + 1 + (1 if self._running else 0)) * one

    def send(self, message: SmsMessage) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self._queue.append((message, d))
        if not self._running:
            self._run()
        return d

    def close(self) -> None:
        """Close the port (the hub stopping); queued messages fail with ModemUnavailable."""
        while self._queue:
            self._queue.popleft()[1].errback(ModemUnavailable("the provider was closed"))
        self._drop_port()
        self._fire(None, ModemUnavailable("the provider was closed"))

    # ------------------------------------------------------------------ one message at a time

    @defer.inlineCallbacks
    def _run(self) -> Generator[Any, Any, None]:
        self._running = True
        try:
            while self._queue:
                message, d = self._queue.popleft()
                try:
                    results = yield self._deliver(message)
                except Exception:
                    d.errback()
                else:
                    d.callback(results)
        finally:
            self._running = False

    @defer.inlineCallbacks
    def _deliver(self, message: SmsMessage) -> Generator[Any, Any, list[SendResult]]:
        o = self.options
        results: list[SendResult] = []
        for i, phone in enumerate(message.phones):
            try:
                parts = encode_submit(phone, message.text, smsc=o.smsc, validity=o.validity,
                                      reference=self._next_reference(), max_parts=o.max_parts)
            except PduError as e:
                results.append(SendResult(phone, False, permanent=True, error=str(e)))
                continue
            try:
                yield self._ensure_ready()
                yield self._pace()
                event = yield self._job(parts)
            except ModemUnavailable as e:
                if not any(r.ok for r in results):
                    raise
                # some phones already have the text: failing them all would send it twice
                results.extend(SendResult(p, False, error=str(e)) for p in message.phones[i:])
                return results
            self._last_sent_at = self.clock.seconds()
            if isinstance(event, Submitted):
                refs = ",".join(map(str, event.references))
                results.append(SendResult(phone, True, message_id=refs))
                _log.info("SMS {key} to {phone}: {n} part(s), references {refs}",
                          key=message.key, phone=phone, n=len(parts), refs=refs)
            else:
                err = event.error
                results.append(SendResult(phone, False, ",".join(map(str, event.sent)),
                                          permanent=err.permanent, error=str(err)))
                _log.warn("SMS {key} to {phone} refused: {error}", key=message.key,
                          phone=phone, error=str(err))
        return results

    def _next_reference(self) -> int:
        self._reference = (self._reference + 1) % 256
        return self._reference

    def _pace(self) -> defer.Deferred:
        # operators throttle or flag SIMs that send bursts; keep a gap between messages
        if self._last_sent_at is None:
            return defer.succeed(None)
        wait = self._last_sent_at + self.options.inter_message_delay - self.clock.seconds()
        return task.deferLater(self.clock, wait, lambda: None) if wait > 0 else \
            defer.succeed(None)

    # ------------------------------------------------------------------ port and session

    @defer.inlineCallbacks
    def _ensure_ready(self) -> Generator[Any, Any, None]:
        if self._ready:
            return
        now = self.clock.seconds()
        if now < self._retry_at:
            raise ModemUnavailable(f"{self._last_error}; reopening {self.options.port} in "
                                   f"{self._retry_at - now:.1f} s")
        proto = _PortProtocol(self)
        pin = None if self._pin_refused else self.options.pin
        self._session = AtSession(pin, self.options.command_timeout,
                                  self.options.send_timeout)
        self._proto = proto
        self._timer_gen = -1
        try:
            self._transport = self._open_port(proto)
        except Exception as e:  # pyserial's SerialException is an OSError, but not always
            self._proto = None
            self._failed(f"cannot open {self.options.port}: {e}")
            raise ModemUnavailable(self._last_error) from None
        self._session.initialise()
        event = yield self._wait()
        if isinstance(event, Failed):
            if event.error.kind == "pin" and "refused" in event.error.detail:
                self._pin_refused = True
            self._drop_port()
            self._failed(f"modem initialisation failed: {event.error}")
            raise ModemUnavailable(self._last_error)
        self._ready = True
        self._backoff = self.options.reopen_initial
        _log.info("GSM modem on {port} ready", port=self.options.port)

    def _job(self, parts: list[Part]) -> defer.Deferred:
        assert self._session is not None
        self._session.submit(parts)
        return self._wait()

    def _wait(self) -> defer.Deferred:
        self._waiter = defer.Deferred()
        waiter = self._waiter
        self._pump()
        return waiter

    def _received(self, proto: _PortProtocol, data: bytes) -> None:
        if proto is not self._proto or self._session is None:
            return
        self._session.receive_data(data)
        self._pump()

    def _port_lost(self, proto: _PortProtocol, reason: Failure | None) -> None:
        if proto is not self._proto:
            return  # a port we closed ourselves
        self._proto = self._transport = self._session = None
        self._ready = False
        self._cancel_timer()
        msg = reason.getErrorMessage() if reason is not None else "closed"
        self._failed(f"{self.options.port} was lost: {msg}")
        self._fire(None, ModemUnavailable(self._last_error))

    def _pump(self) -> None:
        """Write what the session wants written, keep its timer, hand on its events."""
        s = self._session
        if s is None:
            return
        out = s.data_to_send()
        if out and self._transport is not None:
            self._transport.write(out)
        if s.timer != self._timer_gen:
            self._timer_gen = s.timer
            self._cancel_timer()
            if s.timeout is not None:
                self._timer = self.clock.callLater(s.timeout, self._timed_out, s)
        while (event := s.next_event()) is not None:
            self._event(event)

    def _timed_out(self, session: AtSession) -> None:
        self._timer = None
        if session is self._session:
            session.timed_out()
            self._pump()

    def _event(self, event: Event) -> None:
        if isinstance(event, Failed) and event.error.kind == "timeout":
            # the modem's state is unknown now (half a PDU, a hung prompt): start afresh
            self._drop_port()
            self._failed(f"modem did not answer: {event.error}")
            self._fire(None, ModemUnavailable(self._last_error))
            return
        self._fire(event, None)

    def _fire(self, event: Event | None, error: Exception | None) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is None:
            return
        if error is not None:
            waiter.errback(error)
        else:
            waiter.callback(event)

    def _failed(self, message: str) -> None:
        self._last_error = message
        self._retry_at = self.clock.seconds() + self._backoff
        _log.warn("{message}; next attempt in {delay:.1f} s", message=message,
                  delay=self._backoff)
        self._backoff = min(self._backoff * 2, self.options.reopen_max)

    def _drop_port(self) -> None:
        transport = self._transport
        self._proto = self._transport = self._session = None
        self._ready = False
        self._cancel_timer()
        if transport is not None:
            transport.loseConnection()

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

