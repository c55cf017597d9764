"""Built-in plugin: the ``tcp_dtu`` transport — 4G/GPRS transparent DTUs over TCP, with the
hub polling the Modbus RTU slaves behind each one.

A DTU dials in, says who it is (a registration packet, see :mod:`dtu_framing`), and from then
on the socket is its RS-485 line: the hub writes RTU requests and reads RTU answers. Rules the
line imposes, and how this module keeps them:

* **Half duplex.** Exactly one request is outstanding per DTU. The next is written only once
  the answer arrived (and its records were committed to the journal) or the response timeout
  ran out (after ``retries`` resends).
* **Commands before polls.** Downlink commands wait in their own queue, which is always served
  first; polls wait behind them.
* **A dead slave costs only its own timeouts.** Each slave has its own poll schedule; one that
  does not answer is retried, counted and skipped until its next cycle, and gets no liveness
  credit from the DTU's heartbeats, so presence marks it offline while its neighbours go on.
  While it keeps failing it is tried once per cycle, without retries, until it answers.
* **Untrusted bytes.** An unknown registration id closes the connection (counted, logged with a
  hex excerpt). Heartbeats and a repeated id prefix are recognised by the framer wherever they
  arrive between frames, even split across reads, and dropped (a repeated id prefix is also
  dropped at the start of each read, where the DTU puts it); garbage and CRC failures are
  skipped by the framer and counted; the receive buffer is bounded. Nothing a device sends can
  raise out of ``dataReceived``.
* **Sessions.** A DTU that reconnects replaces its old session (the old socket is aborted and
  nothing more is written to it);
  a session with no traffic for ``idle_timeout`` is closed; at most ``max_connections`` sockets
  per listener.

Devices name their DTU and slave: ``address: {dtu: "861234567890123", slave: 1}``, optionally
``poll_interval`` (seconds; default the model's).
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, endpoints
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from hub import hookimpl
from hub.contracts import DecodeError, TransportType
from hub.metrics import Histogram
from hub.model import Command, CommandResult, CommandStatus
from hub.validate import Invalid, Section, describe, integer, number, string
from plugins.protocols.modbus import rtu
from plugins.protocols.modbus.framer import FrameError, ResponseFramer
from plugins.protocols.modbus.rtu import Frame
from plugins.transports.dtu_framing import (
    RegistrationError,
    RegistrationRule,
    check_registration,
    parse_bytes,
    strip_leading,
)

_log = Logger(namespace="hub.tcp_dtu")


#: Upper bounds (ms) of the ``dtu.round_trip_ms`` buckets: request written → answer framed.
#: Each answer counts once, in the first bucket whose bound it does not exceed (label
#: ``le``; ``+Inf`` beyond the last), so the counts are per bucket, not cumulative.
ROUND_TRIP_BUCKETS_MS = (1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 200, 500, 1000, 2000,
                         5000)

#: Seconds between two log lines about one session's dropped bytes: a noisy line yields a
#: CRC failure per byte, and a warning each would flood the log (all are counted anyway).
FRAME_ERROR_LOG_INTERVAL = 60.0


def _interval(device: Any) -> float:
    """Seconds between two polls of ``device``: its address's ``poll_interval``, or its
    model's."""
    address = device.address if isinstance(device.address, dict) else {}
    return address.get("poll_interval") or device.model.poll_interval


def _hex(data: bytes, limit: int = 48) -> str:
    return data[:limit].hex(" ") + (" …" if len(data) > limit else "")


# ---------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class DtuOptions:
    port: int
    host: str = "0.0.0.0"
    registration: RegistrationRule = field(default_factory=RegistrationRule)
    heartbeats: tuple[bytes, ...] = ()
    response_timeout: float = 3.0
    retries: int = 1
    registration_timeout: float = 30.0
    idle_timeout: float = 300.0
    max_connections: int = 1000
    max_buffer: int = 4096
    backlog: int = 1024
    first_poll_spread: float = 1.0


def check_options(section: Section) -> DtuOptions:
    beats = section.raw("heartbeat", [])
    beats = [beats] if isinstance(beats, str) else beats
    if not isinstance(beats, list):
        section.checker.error(section.path / "heartbeat",
                              f"expected a byte string or a list of them, got {describe(beats)}")
        beats = []
    heartbeats = tuple(
        b for i, raw in enumerate(beats)
        if (b := section.checker.check(section.path / "heartbeat" / i, parse_bytes, raw))
    )
    opts = DtuOptions(
        port=section.get("port", integer(0, 65535)),
        host=section.get("host", string(), "0.0.0.0"),
        registration=check_registration(section.section("registration")),
        heartbeats=heartbeats,
        response_timeout=section.get("response_timeout", number(0.05, 60, "s"), 3.0),
        retries=section.get("retries", integer(0, 10), 1),
        registration_timeout=section.get("registration_timeout", number(1, 600, "s"), 30.0),
        idle_timeout=section.get("idle_timeout", number(1, 86400, "s"), 300.0),
        max_connections=section.get("max_connections", integer(1, 100_000), 1000),
        max_buffer=section.get("max_buffer", integer(256, 1 << 20), 4096),
        backlog=section.get("backlog", integer(1, 65535), 1024),
        first_poll_spread=section.get("first_poll_spread", number(0, 1), 1.0),
    )
    section.finish()
    return opts


def check_address(address: Any) -> tuple[str, int]:
    """``{dtu: ID, slave: 1..247[, poll_interval: s]}`` → the key ``(ID, slave)``."""
    if not isinstance(address, dict):
        raise Invalid(f"expected {{dtu: ID, slave: N}}, got {describe(address)}")
    unknown = set(address) - {"dtu", "slave", "poll_interval"}
    if unknown:
        raise Invalid(f"unknown keys {', '.join(sorted(map(str, unknown)))} (dtu, slave, "
                      "poll_interval)")
    dtu = address.get("dtu")
    if isinstance(dtu, int) and not isinstance(dtu, bool):
        dtu = str(dtu)  # an IMEI written without quotes
    if not isinstance(dtu, str) or not dtu:
        raise Invalid(f"dtu: expected the DTU's registration id, got {describe(dtu)}")
    slave = address.get("slave", 1)
    if isinstance(slave, bool) or not isinstance(slave, int) or not 1 <= slave <= 247:
        raise Invalid(f"slave: {describe(slave)} is not a Modbus slave address 1..247")
    interval = address.get("poll_interval")
    bad_type = isinstance(interval, bool) or not isinstance(interval, (int, float))
    if interval is not None and (bad_type or not 0.1 <= interval <= 86400):
        raise Invalid(f"poll_interval: {describe(interval)} is outside 0.1..86400 s")
    return (dtu, slave)


# ---------------------------------------------------------------------------- one DTU session


@dataclass
class _Request:
    """One request on the line: a poll of a slave, or one write of a command."""

    device: Any  # hub.registry.Device
    frame: bytes
    function: int
    length: int
    poll: Any = None  # a Poll, or None for a command write
    command: Any = None  # the _CommandRun this write belongs to
    readback_of: bytes | None = None  # for a read-back: the write it confirms
    tries: int = 0
    sent_at: float = 0.0  # when the last try was written


@dataclass
class _CommandRun:
    command: Command
    device: Any
    writes: list[bytes]
    deferred: defer.Deferred = field(default_factory=defer.Deferred)
    #: its time to live ran out (``Commands`` cancelled the Deferred): a write already on the
    #: wire may finish, but nothing more of it is written, so a trip journaled as timed out
    #: cannot happen later
    cancelled: bool = False


class DtuProtocol(Protocol):
    """One DTU's socket: registration, then the half-duplex request/response loop."""

    # Rarely set, so class defaults: an instance holds them only once it needs them, which
    # matters at 50,000 sessions.
    _prefix: tuple[bytes, ...] = ()  # the raw id, in prefix registration mode
    _errors_logged_at: float | None = None  # when dropped bytes were last logged
    _errors_unlogged = 0  # dropped since, counted but not logged

    def __init__(self, factory: DtuFactory) -> None:
        self.f = factory
        self.hub = factory.hub
        self.clock = factory.hub.clock
        self.opts = factory.options
        self.dtu_id: str | None = None
        self.slaves: dict[int, Any] = {}
        self.failing: set[int] = set()
        self._pre = b""
        self._reads = 0
        self.framer: ResponseFramer | None = None
        # created on the first command: most DTUs never get one, and an empty deque is
        # 600+ bytes per session (the polls of one cycle are a few: a list does)
        self.commands: deque[_Request] | None = None
        self.polls: list[_Request] = []
        self.outstanding: _Request | None = None
        self._committing = False
        self._response_timer: IDelayedCall | None = None
        self._idle_timer: IDelayedCall | None = None
        self._poll_timers: dict[int, IDelayedCall] = {}
        self._status: dict[int, dict[int, int]] = {}  # slave -> its status words last polled
        self.closed = False

    # -- connection lifecycle --------------------------------------------------------------

    def connectionMade(self) -> None:
        self.f.connections.add(self)
        if len(self.f.connections) > self.opts.max_connections:
            self.hub.metrics.inc("dtu.connections_refused", transport=self.f.name)
            _log.warn("{transport}: connection limit {n} reached, refusing {peer}",
                      transport=self.f.name, n=self.opts.max_connections, peer=self._peer())
            self.transport.abortConnection()
            return
        self._idle_timer = self.clock.callLater(self.opts.registration_timeout, self._idle)

    def connectionLost(self, reason: Any = None) -> None:
        self.closed = True
        self.f.connections.discard(self)
        for t in [self._response_timer, self._idle_timer, *self._poll_timers.values()]:
            if t is not None and t.active():
                t.cancel()
        self._poll_timers.clear()
        if self.f.sessions.get(self.dtu_id) is self:
            del self.f.sessions[self.dtu_id]
        pending = list(self.commands or ())
        if self.outstanding is not None and self.outstanding.command is not None:
            pending.insert(0, self.outstanding)
        self.commands = None
        self.polls.clear()
        self.outstanding = None
        for run in {id(r.command): r.command for r in pending}.values():
            self._command_done(run, CommandStatus.FAILED, "the DTU disconnected")
        if self._errors_unlogged:
            _log.warn("{transport}: DTU {dtu}: {n} more frame errors before it disconnected",
                      transport=self.f.name, dtu=self.dtu_id, n=self._errors_unlogged)
        if self.dtu_id is not None:
            _log.info("DTU {dtu} disconnected from {transport}", dtu=self.dtu_id,
                      transport=self.f.name)

    def _peer(self) -> str:
        peer = self.transport.getPeer() if self.transport else None
        return f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"

    def _idle(self) -> None:
        self._idle_timer = None
        what = "no registration" if self.dtu_id is None else "idle"
        self.hub.metrics.inc("dtu.timeouts", transport=self.f.name, reason=what)
        _log.info("{transport}: closing {dtu} ({what})", transport=self.f.name,
                  dtu=self.dtu_id or self._peer(), what=what)
        self.transport.loseConnection()

    def _touch(self) -> None:
        if self._idle_timer is not None and self._idle_timer.active():
            self._idle_timer.reset(self.opts.idle_timeout if self.dtu_id else
                                   self.opts.registration_timeout)

    # -- bytes in --------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        try:
            self._received(data)
        except Exception:  # a bug here must cost one chunk, not the connection or the hub
            self.hub.metrics.inc("dtu.internal_errors", transport=self.f.name)
            _log.failure("{transport}: error handling {n} bytes from {dtu}: {hex}",
                         transport=self.f.name, n=len(data), dtu=self.dtu_id or self._peer(),
                         hex=_hex(data))

    def _received(self, data: bytes) -> None:
        if self.closed:
            return
        self._touch()
        if self.dtu_id is None:
            self._reads += 1
            self._pre += data
            try:
                got = self.opts.registration.extract(self._pre, self._reads == 1)
            except RegistrationError as e:
                self._refuse(f"bad registration ({e})", self._pre)
                return
            if got is None:
                if len(self._pre) > 256:
                    self._refuse("no registration id in the first 256 bytes", self._pre)
                return
            ident, raw_id, data = got
            self._pre = b""
            if not self._register(ident, raw_id):
                return
            if not data:
                return
        if self._prefix:
            # the DTU puts its id in front of each packet, which may split a frame: strip it
            # here too, where a read starts, not only where the framer finds it between frames
            data, beats = strip_leading(data, self._prefix)
            if beats:
                self._alive()
        assert self.framer is not None
        self.framer.feed(data)
        self._drain()

    def _refuse(self, why: str, data: bytes) -> None:
        self.hub.metrics.inc("dtu.refused", transport=self.f.name)
        _log.warn("{transport}: refused {peer}: {why}; first bytes {hex}",
                  transport=self.f.name, peer=self._peer(), why=why, hex=_hex(data))
        self.transport.loseConnection()
        self.closed = True

    def _register(self, ident: str, raw_id: bytes) -> bool:
        devices = self.f.devices_of(ident)
        if not devices:
            # not declared: the registry refuses and counts it, or provisions slave 1
            device = self.hub.resolve(self.f.name, (ident, 1), identity=ident)
            if device is None:
                self._refuse(f"unknown DTU id {ident!r}", raw_id)
                return False
            self.f.provisioned(device)
            devices = [device]
        self.dtu_id = ident
        self.slaves = {d.address_key[1]: d for d in devices}
        if self.opts.registration.mode == "prefix":
            self._prefix = (raw_id,)
        self.framer = ResponseFramer(self.opts.max_buffer, self.slaves,
                                     self.opts.heartbeats + self._prefix)
        old = self.f.sessions.get(ident)
        if old is not None and old is not self:
            _log.info("DTU {dtu} reconnected: replacing its old session", dtu=ident)
            self.hub.metrics.inc("dtu.replaced_sessions", transport=self.f.name)
            # abort, not close: loseConnection waits to flush, and a half-open old socket
            # (the usual reason a DTU dials again) may never take the bytes
            old.transport.abortConnection()
            old.closed = True
        self.f.sessions[ident] = self
        self._touch()  # from now on idle_timeout: the first poll may be a whole interval away
        _log.info("DTU {dtu} registered on {transport} from {peer}: slaves {slaves}", dtu=ident,
                  transport=self.f.name, peer=self._peer(), slaves=sorted(self.slaves))
        self._alive()
        # The first poll comes at a random phase of the interval, so DTUs that dial in
        # together (all of them, after a restart of the hub or of the mobile network) do not
        # poll together for ever; slaves of one DTU follow one another 10 ms apart.
        phase = random.random() * self.opts.first_poll_spread
        for i, slave in enumerate(sorted(self.slaves)):
            delay = 0.01 * i + phase * _interval(self.slaves[slave])
            self._poll_timers[slave] = self.clock.callLater(delay, self._poll_due, slave)
        return True

    def _alive(self) -> None:
        """A DTU heartbeat: liveness for every slave that is answering its polls."""
        now = self.clock.seconds()
        for slave, device in self.slaves.items():
            if slave not in self.failing:
                self.hub.heartbeat(device.id, now)

    def _drain(self) -> None:
        framer = self.framer
        assert framer is not None
        beats = framer.ignored
        while not self.closed:
            item = framer.next_frame()
            if item is None:
                break
            if isinstance(item, FrameError):
                self._frame_error(item)
                continue
            if item.solicited and self.outstanding is not None:
                self._answered(self.outstanding, item)
            else:
                self._unsolicited(item)
        if framer.ignored != beats and not self.closed:
            self._alive()

    def _frame_error(self, error: FrameError) -> None:
        """Count every error; log the first, then at most one line (with how many were not
        logged) per FRAME_ERROR_LOG_INTERVAL."""
        self.hub.metrics.inc("dtu.frame_errors", transport=self.f.name, reason=error.reason)
        now = self.clock.seconds()
        if self._errors_logged_at is not None \
                and now - self._errors_logged_at < FRAME_ERROR_LOG_INTERVAL:
            self._errors_unlogged += 1
            return
        req = self.outstanding
        more = ""
        if self._errors_unlogged and self._errors_logged_at is not None:
            more = (f"; {self._errors_unlogged} more not logged in the last "
                    f"{now - self._errors_logged_at:.0f} s")
        _log.warn("{transport}: DTU {dtu} ({device}): dropped bytes ({reason}): {hex}{more}",
                  transport=self.f.name, dtu=self.dtu_id,
                  device=f"awaiting {req.device.id}" if req is not None else "nothing awaited",
                  reason=error.reason, hex=_hex(error.data), more=more)
        self._errors_logged_at = now
        self._errors_unlogged = 0

    # -- requests out ----------------------------------------------------------------------

    def _poll_due(self, slave: int) -> None:
        timer = self._poll_timers.pop(slave, None)
        device = self.slaves.get(slave)
        if device is None or self.closed:
            return
        model = device.model
        if not any(r.device is device for r in self.polls):  # a slow slave does not pile up
            for poll in model.plan():
                req = model.request(slave, poll)
                self.polls.append(_Request(device, req, req[1], model.expected_length(poll),
                                           poll=poll))
        # The next poll is due one interval after this one was *due*, not after the timer
        # fired: a loop stall (a long garbage collection, a burst of registrations) then
        # delays the polls due during it, but they return to their own phase instead of
        # staying bunched and drifting. After a stall longer than the interval the missed
        # cycles are skipped, not caught up in a burst.
        interval = _interval(device)
        now = self.clock.seconds()
        # the timer that fired knows when it was due (no per-slave field to keep)
        due = (timer.getTime() if timer is not None else now) + interval
        if due <= now:
            due += (int((now - due) / interval) + 1) * interval
        self._poll_timers[slave] = self.clock.callLater(due - now, self._poll_due, slave)
        self._send_next()

    def _send_next(self) -> None:
        if self.closed or self.outstanding is not None or self._committing:
            return
        queue = self.commands if self.commands else self.polls
        if not queue:
            return
        self._write(queue.popleft() if queue is self.commands else queue.pop(0))

    def _write(self, req: _Request) -> None:
        req.tries += 1
        req.sent_at = self.clock.seconds()
        self.outstanding = req
        assert self.framer is not None
        self.framer.expect(req.frame[0], req.function, req.length)
        self.transport.write(req.frame)
        if req.command is not None and req.tries == 1:
            self.hub.command_sent(req.command.command)
        self._response_timer = self.clock.callLater(self.opts.response_timeout, self._timed_out)

    def _timed_out(self) -> None:
        self._response_timer = None
        req = self.outstanding
        if req is None or self.closed:  # replaced or refused: its socket must not be written
            return
        self.hub.metrics.inc("dtu.response_timeouts", transport=self.f.name)
        slave = req.frame[0]
        if req.command is not None:
            retries = 0 if req.command.cancelled else self.opts.retries
        else:
            # a slave already known not to answer gets one try per cycle: its retries would
            # only hold the line (and its neighbours' polls) for nothing, cycle after cycle
            retries = 0 if slave in self.failing else self.opts.retries
        if req.tries <= retries:
            self._write(req)
            return
        self.outstanding = None
        assert self.framer is not None
        self.framer.expect_nothing()
        if req.command is not None:
            self._command_done(req.command, CommandStatus.TIMED_OUT,
                               f"no answer from slave {slave} after {req.tries} tries")
        else:
            if slave not in self.failing:
                _log.warn("DTU {dtu} slave {slave} ({device}) does not answer", dtu=self.dtu_id,
                          slave=slave, device=req.device.id)
            self.failing.add(slave)
            # the rest of this slave's cycle would time out too: skip it
            self.polls = [r for r in self.polls if r.device is not req.device]
        self._send_next()

    def _answered(self, req: _Request, frame: Frame) -> None:
        if self._response_timer is not None and self._response_timer.active():
            self._response_timer.cancel()
        self._response_timer = None
        self.outstanding = None
        self.f.round_trip.observe((self.clock.seconds() - req.sent_at) * 1000)
        device = req.device
        if req.command is not None:
            self._command_step(req, frame)
            self._send_next()
            return
        model = device.model
        slave = frame.slave
        try:
            if getattr(model, "status_changes_only", False):
                # flags only when their status word changed: see ModbusMapModel
                status = self._status.get(slave)
                if status is None:
                    status = self._status[slave] = {}
                records = model.decode_response(device.id, slave, req.poll, frame.raw,
                                                self.clock.seconds(), status)
            else:
                records = model.decode_response(device.id, slave, req.poll, frame.raw,
                                                self.clock.seconds())
        except DecodeError as e:
            self._status.pop(slave, None)
            self._bad_frame(device, e, frame.raw)
            self._send_next()
            return
        self.failing.discard(slave)
        # the next request waits for the commit: a poll completes only once it is on disk
        self._committing = True
        try:
            d = self.hub.ingest(device.id, records)
        except BaseException:
            self._status.pop(slave, None)
            self._committing = False
            raise
        d.addErrback(self._refused, slave, device.id)
        d.addBoth(self._committed)

    def _refused(self, failure: Any, slave: int, device: str) -> None:
        # the alarm engine may not have seen this poll's flags: report them all next time
        self._status.pop(slave, None)
        _log.failure("journal refused a poll of {device}", failure, device=device)

    def _committed(self, _: Any) -> None:
        self._committing = False
        self._send_next()

    def _unsolicited(self, frame: Frame) -> None:
        device = self.slaves.get(frame.slave)
        if device is None:
            return
        self.hub.metrics.inc("dtu.unsolicited_frames", transport=self.f.name)
        # its flags reach the engine without the poll's memory of them: the next poll of
        # this slave reports every flag again, so the engine always ends on the polled state
        self._status.pop(frame.slave, None)
        try:
            records = device.model.decode(device.id, frame.raw, self.clock.seconds())
        except DecodeError as e:
            self._bad_frame(device, e, frame.raw)
            return
        self.failing.discard(frame.slave)
        self.hub.ingest(device.id, records).addErrback(
            lambda f: _log.failure("journal refused a frame of {device}", f, device=device.id))

    def _bad_frame(self, device: Any, error: DecodeError, raw: bytes) -> None:
        self.hub.metrics.inc("dtu.decode_errors", transport=self.f.name, model=device.model_name)
        _log.warn("DTU {dtu} device {device}: {error}; frame {hex}", dtu=self.dtu_id,
                  device=device.id, error=error, hex=_hex(error.excerpt or raw))

    # -- commands --------------------------------------------------------------------------

    def enqueue_command(self, device: Any, command: Command) -> defer.Deferred:
        slave = device.address_key[1]
        writes = device.model.command_requests(command, slave)  # may raise EncodeError
        run = _CommandRun(command, device, list(writes))
        run.deferred = defer.Deferred(lambda _: self._cancel(run))
        self._queue_write(run)
        self._send_next()
        return run.deferred

    def _cancel(self, run: _CommandRun) -> None:
        """The Deferred's canceller: drop the run's writes not yet sent. A write on the wire
        is left to its answer or timeout (the line is half duplex: the next request must not
        overlap it), but is not retried and starts no read-back or further write."""
        run.cancelled = True
        run.writes.clear()
        if self.commands:
            self.commands = deque(r for r in self.commands if r.command is not run)
        # not called back here: the Deferred errbacks with CancelledError by itself

    def _queue_write(self, run: _CommandRun) -> None:
        frame = run.writes.pop(0)
        if self.commands is None:
            self.commands = deque()
        # a write's normal answer echoes 8 bytes for 05/06/16
        self.commands.append(_Request(run.device, frame, frame[1], 8, command=run))

    def _command_step(self, req: _Request, frame: Frame) -> None:
        run = req.command
        if run.cancelled:
            return
        assert self.commands is not None  # req came from it
        model = req.device.model
        try:
            if req.readback_of is not None:
                model.check_readback(req.readback_of, frame.raw)
            else:
                model.check_write_response(req.frame, frame.raw)
        except DecodeError as e:
            self._command_done(run, CommandStatus.FAILED, str(e))
            return
        if req.readback_of is None and getattr(model, "needs_readback", None) \
                and model.needs_readback(run.command):
            # the echo says the slave received the write; reading it back says it took it
            read = model.readback_request(req.frame)
            self.commands.appendleft(_Request(run.device, read, read[1],
                                              rtu.response_length(read), command=run,
                                              readback_of=req.frame))
            return
        if run.writes:
            self._queue_write(run)
            # keep the command's writes together, ahead of other commands
            self.commands.rotate(1)
        else:
            self._command_done(run, CommandStatus.SUCCEEDED, "")

    def _command_done(self, run: _CommandRun, status: CommandStatus, detail: str) -> None:
        if not run.deferred.called:
            run.deferred.callback(CommandResult(run.command.id, run.command.device, status,
                                                self.clock.seconds(), detail))


class DtuFactory(Factory):
    def __init__(self, hub: Any, name: str, options: DtuOptions) -> None:
        self.hub = hub
        self.name = name
        self.options = options
        self.sessions: dict[str, DtuProtocol] = {}
        self.connections: set[DtuProtocol] = set()
        self._by_dtu: dict[str, list[Any]] | None = None
        self.round_trip = Histogram(hub.metrics, "dtu.round_trip_ms", ROUND_TRIP_BUCKETS_MS,
                                    transport=name)

    def buildProtocol(self, addr: Any) -> DtuProtocol:
        p = DtuProtocol(self)
        p.factory = self
        return p

    def devices_of(self, dtu_id: str) -> list[Any]:
        """The slaves declared behind ``dtu_id``. Indexed once: a scan of the registry per
        registration made 20,000 DTUs dialling in quadratic."""
        if self._by_dtu is None:
            self._by_dtu = {}
            for d in self.hub.devices(self.name):
                self._by_dtu.setdefault(d.address_key[0], []).append(d)
        return self._by_dtu.get(dtu_id, [])

    def provisioned(self, device: Any) -> None:
        assert self._by_dtu is not None
        self._by_dtu.setdefault(device.address_key[0], []).append(device)


class DtuService(Service):
    """Listens for DTUs; carries commands to their slaves."""

    def __init__(self, hub: Any, name: str, options: DtuOptions, reactor: Any = None) -> None:
        self.hub = hub
        self.transport_name = name
        self.options = options
        self.factory = DtuFactory(hub, name, options)
        self._reactor = reactor
        self.port: Any = None

    @defer.inlineCallbacks
    def startService(self):
        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor
        ep = endpoints.TCP4ServerEndpoint(reactor, self.options.port,
                                          backlog=self.options.backlog,
                                          interface=self.options.host)
        self.port = yield ep.listen(self.factory)  # a port in use fails the hub's start
        super().startService()
        self.hub.register_command_target(self.transport_name, self)
        _log.info("{transport}: listening for DTUs on {host}:{port}", transport=self.transport_name,
                  host=self.options.host, port=self.port.getHost().port)

    @defer.inlineCallbacks
    def stopService(self):
        super().stopService()
        self.hub.unregister_command_target(self.transport_name)
        if self.port is not None:
            yield self.port.stopListening()
        for p in list(self.factory.connections):
            p.transport.loseConnection()

    def send_command(self, device: Any, command: Command) -> defer.Deferred:
        session = self.factory.sessions.get(device.address_key[0])
        if session is None or session.closed:
            return defer.fail(ConnectionError(f"DTU {device.address_key[0]} is not connected"))
        return session.enqueue_command(device, command)


@hookimpl
def hub_register_transport_types() -> list[TransportType]:
    return [TransportType("tcp_dtu", DtuService, check_options,
                          "4G/GPRS transparent DTUs over TCP, polling Modbus RTU slaves",
                          check_address=check_address)]
