"""One DTU connection as a sans-IO state machine: bytes and times in; writes, timers,
records and command results out.

:class:`DtuSession` never touches a socket, a reactor or the journal. Its caller (the thin
Twisted protocol in :mod:`.protocol`, or a test) feeds it

* ``connected(now)``, ``received(data, now)``, ``lost(now)``;
* ``timer_fired(key, now, due)`` when a timer it asked for is due;
* ``committed(slave, now, error)`` when records it handed out for a poll are on disk (or not);
* ``enqueue_command(device, command, now)`` / ``cancel(run)`` for downlink commands;

and carries out what the session asks of its :class:`SessionIO`: write bytes, close, set
or reset a timer, resolve a registration id, ingest records, report liveness and command
progress. The polled devices' wire protocol is their model's
(:class:`hub.contracts.PolledDeviceModel`): the session only knows that the line is half
duplex. A line may carry several protocols (Modbus slaves and DL/T 645 meters behind one
DTU): each protocol has its framer, the bytes go to the framer of the model whose request is
on the line (the bytes one framer holds pass to the next one's when the protocol changes),
and one request is outstanding whatever the protocol.

Rules of the line (see the package's docstring): one request outstanding; commands before
polls; per-slave poll schedules; a slave that does not answer is retried, then tried once
per cycle; registration first; a repeated id prefix and heartbeats dropped wherever they
arrive.

Timer keys: ``"idle"`` (registration, then idle timeout), ``"response"`` (the outstanding
request), ``(BROADCAST, i)`` (the ``i``-th model's periodic broadcast, if any) and a slave's
unit (its next poll cycle; the unit itself, not a tuple around it:
at 50,000 sessions every object per session counts).

Over 500 lines: the rules of one line are one state machine, read together (devices
added and removed behind a connected DTU change its slaves, framers and timers: they belong
here too); the commands' half is apart already (:mod:`.session_commands`).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from hub.contracts import DecodeError, FrameError
from hub.model import CommandStatus
from plugins.transports.tcp_dtu.framing import RegistrationError, strip_leading
from plugins.transports.tcp_dtu.options import DtuOptions
from plugins.transports.tcp_dtu.session_commands import CommandQueue
from plugins.transports.tcp_dtu.session_io import (
    IDLE,
    RESPONSE,
    Request,
    SessionIO,
    hex_excerpt,
    interval,
)

if TYPE_CHECKING:
    from hub.contracts import ResponseFrame, StreamFramer
    from hub.metrics import Metrics

__all__ = ["BROADCAST", "FRAME_ERROR_LOG_INTERVAL", "IDLE", "RESPONSE", "DtuSession"]

BROADCAST = "broadcast"


def _unit_order(unit: Any) -> tuple[str, Any]:
    """Sort key of units of several protocols (slave numbers and meter addresses)."""
    return type(unit).__name__, unit

_log = Logger(namespace="hub.tcp_dtu")

#: Seconds between two log lines about one session's dropped bytes: a noisy line yields a
#: CRC failure per byte, and a warning each would flood the log (all are counted anyway).
FRAME_ERROR_LOG_INTERVAL = 60.0

class DtuSession(CommandQueue):
    """One DTU's line: registration, then the half-duplex request/response loop."""

    # slots: 50,000 sessions are a normal load; rarely used state is created lazily
    __slots__ = (
        "io", "opts", "name", "metrics", "dtu_id", "slaves", "failing", "_pre", "_reads",
        "framer", "commands", "polls", "outstanding", "_committing", "_status", "closed",
        "_prefix", "_errors_logged_at", "_errors_unlogged", "_now", "_rng", "_framers",
        "_broadcasts",
    )

    def __init__(self, io: SessionIO, options: DtuOptions, name: str, metrics: Metrics,
                 rng: Any = None) -> None:
        self.io = io
        self.opts = options
        self.name = name  # the transport's, for metric labels and logs
        self.metrics = metrics
        self.dtu_id: str | None = None
        self.slaves: dict[int, Any] = {}
        self.failing: set[int] = set()
        self._pre = b""
        self._reads = 0
        self.framer: StreamFramer | None = None
        # created on the first command: most DTUs never get one, and an empty deque is
        # 600+ bytes per session (the polls of one cycle are a few: a list does)
        self.commands: deque[Request] | None = None
        self.polls: list[Request] = []
        self.outstanding: Request | None = None
        self._committing = False
        self._status: dict[int, dict[int, int]] = {}  # slave -> its status words last polled
        self.closed = False
        self._prefix: tuple[bytes, ...] = ()  # the raw id, in prefix registration mode
        self._errors_logged_at: float | None = None  # when dropped bytes were last logged
        self._errors_unlogged = 0  # dropped since, counted but not logged
        self._now = 0.0  # the time of the last input
        self._rng = rng  # None: random.random, looked up when used (tests patch it)
        # per protocol, only on a line of several (most lines have one: self.framer)
        self._framers: dict[str, StreamFramer] | None = None
        self._broadcasts: list[Any] | None = None  # devices whose model broadcasts

    # -- connection lifecycle --------------------------------------------------------------

    def connected(self, now: float, over_limit: bool = False) -> None:
        """A connection was accepted (counted even when it closes at once: quick
        connect/close cycles must leave a trace). ``over_limit``: the listener already holds
        ``max_connections``, and this one goes at once."""
        self._now = now
        self.metrics.inc("dtu.connections_accepted", transport=self.name)
        if over_limit:
            self._over_limit()
            return
        self.io.set_timer(IDLE, self.opts.registration_timeout)

    def _over_limit(self) -> None:
        self.metrics.inc("dtu.connections_refused", transport=self.name)
        _log.warn("{transport}: connection limit {n} reached, refusing {peer}",
                  transport=self.name, n=self.opts.max_connections, peer=self.io.peer())
        self.closed = True
        self.io.close(abort=True)

    def lost(self, now: float) -> None:
        """The connection is gone: fail its commands, forget its timers."""
        self._now = now
        self.closed = True
        self.io.cancel_timers()
        if self.dtu_id is not None:
            self.io.release(self.dtu_id, self)
        pending = list(self.commands or ())
        if self.outstanding is not None and self.outstanding.command is not None:
            pending.insert(0, self.outstanding)
        self.commands = None
        self.polls.clear()
        self.outstanding = None
        for run in {id(r.command): r.command for r in pending}.values():
            assert run is not None
            self._command_done(run, CommandStatus.FAILED, "the DTU disconnected")
        if self._errors_unlogged:
            _log.warn("{transport}: DTU {dtu}: {n} more frame errors before it disconnected",
                      transport=self.name, dtu=self.dtu_id, n=self._errors_unlogged)
        if self.dtu_id is not None:
            _log.info("DTU {dtu} disconnected from {transport}", dtu=self.dtu_id,
                      transport=self.name)

    def replaced(self) -> None:
        """The same DTU dialled again: this (probably half-open) session stops writing."""
        # abort, not close: a close waits to flush, and a half-open old socket (the usual
        # reason a DTU dials again) may never take the bytes
        self.io.close(abort=True)
        self.closed = True

    def timer_fired(self, key: Hashable, now: float, due: float | None = None) -> None:
        """The timer ``key`` is due (``due``: the time it was set for, if not ``now``)."""
        self._now = now
        if key == RESPONSE:
            self._timed_out()
        elif key == IDLE:
            self._idle()
        elif type(key) is tuple and key[0] == BROADCAST:
            self._broadcast_due(key)
        else:
            self._poll_due(key, now if due is None else due)  # type: ignore[arg-type]

    def _idle(self) -> None:
        what = "no registration" if self.dtu_id is None else "idle"
        self.metrics.inc("dtu.timeouts", transport=self.name, reason=what)
        _log.info("{transport}: closing {dtu} ({what})", transport=self.name,
                  dtu=self.dtu_id or self.io.peer(), what=what)
        self.io.close()

    def _touch(self) -> None:
        self.io.reset_timer(IDLE, self.opts.idle_timeout if self.dtu_id else
                            self.opts.registration_timeout)

    # -- bytes in --------------------------------------------------------------------------

    def received(self, data: bytes, now: float) -> None:
        self._now = now
        try:
            self._received(data)
        except Exception:  # a bug here must cost one chunk, not the connection or the hub
            self.metrics.inc("dtu.internal_errors", transport=self.name)
            _log.failure("{transport}: error handling {n} bytes from {dtu}: {hex}",
                         transport=self.name, n=len(data), dtu=self.dtu_id or self.io.peer(),
                         hex=hex_excerpt(data))

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
        self.metrics.inc("dtu.refused", transport=self.name)
        _log.warn("{transport}: refused {peer}: {why}; first bytes {hex}",
                  transport=self.name, peer=self.io.peer(), why=why, hex=hex_excerpt(data))
        self.io.close()
        self.closed = True

    def _register(self, ident: str, raw_id: bytes) -> bool:
        devices = self.io.devices_of(ident)
        if not devices:
            self._refuse(f"unknown DTU id {ident!r}", raw_id)
            return False
        self.dtu_id = ident
        self.slaves = {d.address_key[1]: d for d in devices}
        if self.opts.registration.mode == "prefix":
            self._prefix = (raw_id,)
        self._line_framers()
        old = self.io.claim(ident, self)
        if old is not None and old is not self:
            _log.info("DTU {dtu} reconnected: replacing its old session", dtu=ident)
            self.metrics.inc("dtu.replaced_sessions", transport=self.name)
            old.replaced()
        self._touch()  # from now on idle_timeout: the first poll may be a whole interval away
        units = sorted(self.slaves, key=_unit_order)
        _log.info("DTU {dtu} registered on {transport} from {peer}: slaves {slaves}", dtu=ident,
                  transport=self.name, peer=self.io.peer(), slaves=units)
        self._alive()
        # The first poll comes at a random phase of the interval, so DTUs that dial in
        # together (all of them, after a restart of the hub or of the mobile network) do not
        # poll together for ever; slaves of one DTU follow one another 10 ms apart.
        phase = (self._rng or random.random)() * self.opts.first_poll_spread
        for i, slave in enumerate(units):
            self.io.set_timer(slave, 0.01 * i + phase * interval(self.slaves[slave]))
        for i, _device in enumerate(self._broadcasts or ()):
            self.io.set_timer((BROADCAST, i), 0)  # meters' clocks set as the line comes up
        return True

    def _line_framers(self) -> None:
        """One framer per protocol on the line (by its first unit's model), and the models
        that broadcast."""
        units: dict[str, list[Any]] = {}
        models: dict[int, Any] = {}
        for unit in sorted(self.slaves, key=_unit_order):
            device = self.slaves[unit]
            units.setdefault(device.model.protocol, []).append(unit)
            if getattr(device.model, "broadcast_interval", None):
                models.setdefault(id(device.model), device)
        ignore = self.opts.heartbeats + self._prefix
        framers = {protocol: self.slaves[us[0]].model.response_framer(self.opts.max_buffer,
                                                                       us, ignore)
                   for protocol, us in units.items()}
        self.framer = next(iter(framers.values()))
        if len(framers) > 1:
            self._framers = framers
        if models:
            self._broadcasts = list(models.values())

    @property
    def last_input(self) -> float:
        """The reactor time of the last bytes (or connection) seen."""
        return self._now

    # -- devices changed while connected (the registry told the transport) ------------------

    def add_unit(self, device: Any) -> None:
        """``device`` is now behind this DTU (new, or changed in place): polled from now."""
        if self.closed or self.dtu_id is None:
            return
        unit = device.address_key[1]
        new = unit not in self.slaves
        self.slaves[unit] = device
        self._reframe()
        if new:
            self.io.set_timer(unit, 0.01)
        _log.info("DTU {dtu}: {device} added as unit {unit}", dtu=self.dtu_id,
                  device=device.id, unit=unit)

    def drop_unit(self, unit: Any, device_id: str) -> None:
        """The device ``device_id`` at ``unit`` is gone: no longer polled; the session closes
        when it was the DTU's last device."""
        device = self.slaves.get(unit)
        if self.closed or device is None or device.id != device_id:
            return
        del self.slaves[unit]
        self.failing.discard(unit)
        self._status.pop(unit, None)
        self.io.cancel_timer(unit)
        self.polls = [r for r in self.polls if r.device is not device]
        if not self.slaves:
            _log.info("DTU {dtu}: its last device {device} was deleted; closing its session",
                      dtu=self.dtu_id, device=device_id)
            self.closed = True
            self.io.close()
            return
        self._reframe()
        _log.info("DTU {dtu}: {device} (unit {unit}) deleted; no longer polled",
                  dtu=self.dtu_id, device=device_id, unit=unit)

    def _reframe(self) -> None:
        """Framers for the line's units as they are now; an answer on its way is read by
        the new framer (it takes the bytes the old one held)."""
        old = self.framer
        self._framers = self._broadcasts = None
        self._line_framers()
        req = self.outstanding
        if old is None or req is None:
            return
        framer = (self._framers or {}).get(req.device.model.protocol, self.framer)
        assert framer is not None
        old.expect_nothing()
        framer.feed(old.take_buffered())
        framer.expect_answer(req.frame, req.length)
        self.framer = framer

    def _alive(self) -> None:
        """A DTU heartbeat: liveness for every slave that is answering its polls."""
        now = self._now
        for slave, device in self.slaves.items():
            if slave not in self.failing:
                self.io.heartbeat(device.id, now)

    def _drain(self) -> None:
        framer = self.framer
        assert framer is not None
        beats = framer.ignored
        while not self.closed:
            item = framer.next_frame()
            if item is None:
                if self.framer is not framer:
                    # an answer sent the next request, of another protocol, whose framer
                    # took the bytes left: read on there
                    if framer.ignored != beats:
                        self._alive()
                    framer = self.framer
                    assert framer is not None
                    beats = framer.ignored
                    continue
                break
            if isinstance(item, FrameError):
                self._frame_error(item)
                continue
            if item.solicited and self.outstanding is not None:  # type: ignore[union-attr]
                self._answered(self.outstanding, item)  # type: ignore[arg-type]
            else:
                self._unsolicited(item)  # type: ignore[arg-type]
        if framer.ignored != beats and not self.closed:
            self._alive()

    def _frame_error(self, error: FrameError) -> None:
        """Count every error; log the first, then at most one line (with how many were not
        logged) per FRAME_ERROR_LOG_INTERVAL."""
        self.metrics.inc("dtu.frame_errors", transport=self.name, reason=error.reason)
        now = self._now
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
                  transport=self.name, dtu=self.dtu_id,
                  device=f"awaiting {req.device.id}" if req is not None else "nothing awaited",
                  reason=error.reason, hex=hex_excerpt(error.data), more=more)
        self._errors_logged_at = now
        self._errors_unlogged = 0

    # -- requests out ----------------------------------------------------------------------

    def _poll_due(self, slave: int, due: float) -> None:
        device = self.slaves.get(slave)
        if device is None or self.closed:
            return
        model = device.model
        if not any(r.device is device for r in self.polls):  # a slow slave does not pile up
            for poll in model.plan():
                req = model.request(slave, poll)
                self.polls.append(Request(device, req, model.response_length(req), poll))
        # The next poll is due one interval after this one was *due*, not after the timer
        # fired: a loop stall (a long garbage collection, a burst of registrations) then
        # delays the polls due during it, but they return to their own phase instead of
        # staying bunched and drifting. After a stall longer than the interval the missed
        # cycles are skipped, not caught up in a burst.
        every = interval(device)
        now = self._now
        due += every
        if due <= now:
            due += (int((now - due) / every) + 1) * every
        self.io.set_timer(slave, due - now)
        self._send_next()

    def _broadcast_due(self, key: tuple[str, int]) -> None:
        devices = self._broadcasts
        if self.closed or devices is None:
            return
        device = devices[key[1]]
        model = device.model
        self.io.set_timer(key, model.broadcast_interval)
        frame = model.broadcast_request(self._now)
        if frame:  # next on the line, after the request outstanding (if any); no device's:
            # it must not count as a poll of the device in _poll_due
            self.polls.insert(0, Request(None, frame, 0))
            self._send_next()

    def _send_next(self) -> None:
        if self.closed or self.outstanding is not None or self._committing:
            return
        queue = self.commands if self.commands else self.polls
        if not queue:
            return
        self._write(queue.popleft() if queue is self.commands else queue.pop(0))

    def _write(self, req: Request) -> None:
        if not req.length:  # a broadcast: nobody answers, the line is free again at once
            self.metrics.inc("dtu.broadcasts", transport=self.name)
            self.io.write(req.frame)
            self._send_next()
            return
        req.tries += 1
        req.sent_at = self._now
        self.outstanding = req
        framer = self.framer
        assert framer is not None
        if self._framers is not None:
            wanted = self._framers[req.device.model.protocol]
            if wanted is not framer:
                # the line changes protocol: bytes not framed yet (a late answer, a partial
                # heartbeat) are the new framer's to read, in order
                framer.expect_nothing()
                wanted.feed(framer.take_buffered())
                self.framer = framer = wanted
        framer.expect_answer(req.frame, req.length)
        self.io.write(req.frame)
        if req.command is not None and req.tries == 1:
            self.io.command_sent(req.command.command)
        timeout = req.device.model.response_timeout or self.opts.response_timeout
        self.io.set_timer(RESPONSE, timeout)

    def _timed_out(self) -> None:
        req = self.outstanding
        if req is None or self.closed:  # replaced or refused: its socket must not be written
            return
        self.metrics.inc("dtu.response_timeouts", transport=self.name)
        slave = req.device.address_key[1]
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

    def _answered(self, req: Request, frame: ResponseFrame) -> None:
        self.io.cancel_timer(RESPONSE)
        self.outstanding = None
        self.io.round_trip((self._now - req.sent_at) * 1000)
        device = req.device
        if req.command is not None:
            self._command_step(req, frame)
            self._send_next()
            return
        model = device.model
        slave = device.address_key[1]
        raw = frame.raw
        answer: Any = raw if req.parts is None else [*req.parts, raw]
        try:
            more = model.follow_up(slave, req.poll, [raw] if req.parts is None else answer)
            if more is not None:  # the answer goes on in another frame: ask for it at once
                self._write(Request(device, more, model.response_length(more), req.poll,
                                    parts=[raw] if req.parts is None else answer))
                return
            if model.status_changes_only:
                # flags only when their status word changed: see ModbusMapModel
                status = self._status.get(slave)  # type: ignore[call-overload]
                if status is None:
                    status = self._status[slave] = {}  # type: ignore[index]
                records = model.decode_response(device.id, slave, req.poll, answer,
                                                self._now, status)
            else:
                records = model.decode_response(device.id, slave, req.poll, answer,
                                                self._now)
        except DecodeError as e:
            self._status.pop(slave, None)  # type: ignore[call-overload]
            self._bad_frame(device, e, frame.raw)
            self._send_next()
            return
        self.failing.discard(slave)  # type: ignore[arg-type]
        # the next request waits for the commit: a poll completes only once it is on disk
        self._committing = True
        try:
            self.io.ingest(device.id, records, slave)  # type: ignore[arg-type]
        except BaseException:
            self._status.pop(slave, None)  # type: ignore[call-overload]
            self._committing = False
            raise

    def committed(self, slave: int, now: float, error: Any = None) -> None:
        """The records of ``slave``'s answer are on disk (``error``: they are not)."""
        self._now = now
        if error is not None:
            # the alarm engine may not have seen this poll's flags: report them all next time
            self._status.pop(slave, None)
        self._committing = False
        self._send_next()

    def _unsolicited(self, frame: ResponseFrame) -> None:
        slave = frame.unit
        device = self.slaves.get(slave)  # type: ignore[call-overload]
        if device is None:
            return
        self.metrics.inc("dtu.unsolicited_frames", transport=self.name)
        # its flags reach the engine without the poll's memory of them: the next poll of
        # this slave reports every flag again, so the engine always ends on the polled state
        self._status.pop(slave, None)  # type: ignore[call-overload]
        try:
            records = device.model.decode(device.id, frame.raw, self._now)
        except DecodeError as e:
            self._bad_frame(device, e, frame.raw)
            return
        self.failing.discard(slave)  # type: ignore[arg-type]
        self.io.ingest(device.id, records, None)

    def _bad_frame(self, device: Any, error: DecodeError, raw: bytes) -> None:
        self.metrics.inc("dtu.decode_errors", transport=self.name, model=device.model_name)
        _log.warn("DTU {dtu} device {device}: {error}; frame {hex}", dtu=self.dtu_id,
                  device=device.id, error=error, hex=hex_excerpt(error.excerpt or raw))
