"""The ``gb26875`` sink service: the journal, uploaded to monitoring centres, never dropped.

(Longer than 500 lines on purpose: :class:`CentreLink`'s journal reading, the overtaking of
fire alarms and send/confirm share one state — the queues, the pending seqs, the upload in
flight — that the cursor rule depends on; kept in one file, that rule reads in one place.
The centre's reads and controls are in :mod:`.reads`.)

One :class:`CentreLink` per configured centre, each with its own durable journal cursor
(the sink's name, or ``<name>/<centre>`` when there are several centres):

* TCP client; on a lost or refused connection it reconnects after ``reconnect_initial ×
  2^n`` s (capped at ``reconnect_max``, jitter ×[0.5, 1)). The UITD's serial number starts
  at 0 on every connection (the standard's serial rules).
* Send/confirm, one upload in flight: a deny or no confirm within ``timeout`` → the same
  frame again (same serial), up to ``retries`` times; then the exchange has failed, the
  connection is dropped and, after reconnecting, everything not confirmed is read again
  from the cursor. The cursor moves only past records whose every upload was confirmed, so
  a record is never dropped (a crash means it is sent again: at least once).
* Fire alarms first: uploads carrying a raised fire alarm wait in their own queue, which is
  always emptied before the other one (faults, clears, values, liveness). Before anything
  is sent from the other queue, raised fire alarms past the read position are looked up
  in the journal's active events and queued too, so a backlog (500 offline faults after a
  power cut) does not hold a new alarm back; see :meth:`CentreLink.overtake`.
* A record that cannot be encoded never stalls the link: a time no label carries (before
  2000, after 2099, not finite) gets the hub's clock (counted in
  ``gb26875.time_labels_clamped``, logged once per device); what still cannot be encoded
  is a dead letter: counted (``gb26875.dead_letters``), logged, noted in the journal as a
  fault-level ``gb26875_dead_letter`` state event, and passed over; the rest of its upload
  still goes.
* Liveness: a type 21 (or 28) upload every ``liveness_interval`` s. A fire alarm never
  waits on it: a liveness exchange in flight (perhaps being retried) is given up when one
  is queued (``gb26875.liveness_preempted``) and goes again after it.
* Protocol version bytes: ``protocol_version`` (default 1.1: ``01 01``, as the standard's
  sample frames).
* The centre's traffic: reads (command 4; 61-68, 81-88) are answered (command 5) with the
  matching upload type, or denied when there is nothing to give (a system or component
  not ours, no records); 89 initialise, 90 clock sync and 91 duty check are confirmed
  (command 3), whichever command byte they came with. Initialise starts our serial again
  from 0. A clock sync sets the skew applied to our time labels (the host clock itself
  belongs to NTP). Read 64 (facility operations, type 4) answers from the reset, silence
  and self-test commands the devices carried out and the acknowledgements that this link
  has read from the journal since the sink started (the newest 1024), as read 84 answers
  from the duty checks since then. A duty check is answered at once
  with a type 24 upload, operation flag bit 5 (查岗应答), queued behind fire alarms, and
  recorded in the journal as the state event ``gb26875_duty_check``.

Metrics (label ``sink``, ``centre``): ``gb26875.uploads_confirmed``,
``gb26875.retransmissions``, ``gb26875.denied``, ``gb26875.exchanges_failed``,
``gb26875.connected`` (0/1), ``gb26875.alarm_latency_seconds`` (reading to confirm of the
last fire alarm), ``gb26875.alarm_latency_ms`` (histogram of the same, label ``le``, see
:data:`LATENCY_BUCKETS_MS`), ``gb26875.time_labels_clamped``, ``gb26875.dead_letters``,
``sink.lag_records``.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet import protocol, task
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from hub.contracts import EncodeError
from hub.metrics import Histogram
from hub.model import (
    Acknowledgement,
    Command,
    CommandResult,
    CommandStatus,
    Event,
    EventKind,
    EventState,
    Level,
    Reading,
)
from hub.sinks import Backoff, CursorSink
from plugins.sinks.gb26875 import codec as c
from plugins.sinks.gb26875.mapping import Mapper, Upload, to_label
from plugins.sinks.gb26875.options import Centre, GBOptions
from plugins.sinks.gb26875.reads import ENCODE_ERRORS, CentreReads

_log = Logger(namespace="hub.sinks.gb26875")

DEAD_LETTER_CODE = "gb26875_dead_letter"
#: hub command actions that are facility operations of Fig. 8 (bits of type 4), done when
#: the device confirmed them; an operator's acknowledgement is 确认 (bit 5)
OPERATION_FLAGS = {"reset": 1 << 0, "silence": 1 << 1, "self_test": 1 << 4}
ACK_FLAG = 1 << 5
#: facility operations kept for read 64 (per link, newest last)
OPERATIONS_KEPT = 1024
#: uploads read ahead into the queues; past this, records wait in the journal
QUEUE_LIMIT = 64
#: raised fire alarms taken per look past the read position (each look is one query)
OVERTAKE_LIMIT = 16
#: Upper bounds (ms) of the ``gb26875.alarm_latency_ms`` buckets, as ``dtu.round_trip_ms``:
#: each fire alarm counts once, in the first bucket whose bound it does not exceed (label
#: ``le``, ``+Inf`` beyond the last); per-bucket counts, not cumulative. 10 s is the limit
#: of GB 26875.1.
LATENCY_BUCKETS_MS = (5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000)


class _Proto(protocol.Protocol):
    def __init__(self, link: CentreLink) -> None:
        self.link = link
        self.decoder = c.StreamDecoder()

    def connectionMade(self) -> None:
        self.link.connected(self)

    def dataReceived(self, data: bytes) -> None:
        for item in self.decoder.feed(data):
            if isinstance(item, c.FrameError):
                _log.warn("centre {centre}: bad frame ({error})", centre=self.link.centre.name,
                          error=item)
                if item.header is not None and item.kind in ("checksum", "command"):
                    self.transport.write(item.header.reply(c.CMD_DENY, self.link.now()).encode())
                continue
            self.link.frame(item)

    def connectionLost(self, reason: Any = None) -> None:
        self.link.lost(self, reason)


class _Factory(protocol.ClientFactory):
    def __init__(self, link: CentreLink) -> None:
        self.link = link

    def buildProtocol(self, addr: Any) -> _Proto:
        return _Proto(self.link)

    def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
        self.link.lost(None, reason)


@dataclass
class _Overtaking:
    """A raised fire alarm queued ahead of the journal order (see :meth:`CentreLink.overtake`);
    ``confirmed``: the centre has it."""

    event: Event
    components: set[tuple[int, int, int]]
    confirmed: bool = False


class CentreLink(CentreReads):
    """Delivery to one centre: cursor, queues, the upload in flight, the connection."""

    def __init__(self, sink: GBSink, centre: Centre, cursor_name: str) -> None:
        self.sink = sink
        self.port = sink.port  # journal, metrics, record_events, devices
        self.o: GBOptions = sink.options
        self.centre = centre
        self.cursor_name = cursor_name
        self.clock = sink.clock
        self.mapper = Mapper(self.o, sink.device_info, self.clock.seconds, self._clamped)
        self._clamped_devices: set[str] = set()
        self.labels = {"sink": sink.name, "centre": centre.name}
        self.latency = Histogram(self.port.metrics, "gb26875.alarm_latency_ms",
                                 LATENCY_BUCKETS_MS, {0.5: "gb26875.alarm_latency_p50_ms",
                                                      0.99: "gb26875.alarm_latency_p99_ms"},
                                 **self.labels)
        kinds = {"event", "command", "command_result", "acknowledgement"}
        if self.o.readings:
            kinds.add("reading")
        #: the cursor (``tail.cursor``: confirmed) and the read position (``tail.position``)
        self.tail = sink.add_tail(cursor_name, kinds)
        self.proto: _Proto | None = None
        self.serial = 0
        self.fire: deque[Upload] = deque()
        self.other: deque[Upload] = deque()
        self.pending: dict[int, int] = {}  # seq -> uploads of it not yet confirmed
        self.inflight: tuple[Upload, int, bytes] | None = None  # upload, serial, bytes
        self.attempts = 0
        self._timer: IDelayedCall | None = None
        self._reconnect: IDelayedCall | None = None
        self.failures = 0
        self.skew = 0.0
        self.duty_records: deque[c.UitdOperation] = deque(maxlen=102)
        #: journal seq -> (device, flags, ts) of facility operations seen in the stream,
        #: for read 64; keyed by seq so a re-read from the cursor does not count twice
        self.operations: dict[int, tuple[str, int, float]] = {}
        self._commands: dict[str, tuple[str, int]] = {}  # id -> (device, flags), not final
        self.stopping = False
        self.alarm_ts: dict[int, float] = {}  # seq -> event ts of fire alarms, for latency
        #: seq -> fire alarms queued past the read position; ``looked``: the highest seq
        #: the look ahead has seen, so an idle look costs one comparison
        self.early: dict[int, _Overtaking] = {}
        self.looked = 0

    @property
    def cursor(self) -> int:
        return self.tail.cursor

    @property
    def read_upto(self) -> int:
        return self.tail.position

    # -- time ----------------------------------------------------------------------------

    def now(self):
        return to_label(self.clock.seconds(), self.o.utc_offset, self.skew)

    # -- connection ----------------------------------------------------------------------

    def start(self) -> None:
        self.stopping = False  # the tail was claimed by the sink: retention waits for us
        self.mapper.restore(self.port.journal.active_events())
        self.connect()

    def stop(self) -> None:
        self.stopping = True
        self._cancel()
        if self._reconnect is not None and self._reconnect.active():
            self._reconnect.cancel()
        self._reconnect = None
        if self.proto is not None and self.proto.transport is not None:
            self.proto.transport.loseConnection()

    def connect(self) -> None:
        self._reconnect = None
        if not self.stopping:
            self.sink.connect(self.centre.host, self.centre.port, _Factory(self))

    def connected(self, proto: _Proto) -> None:
        if self.stopping:  # the connection attempt outlived the service
            proto.transport.loseConnection()
            return
        self.proto = proto
        self.failures = 0
        self.serial = 0  # the serial rules: 0 when the two sides connect
        self._restart_from_cursor()
        self.port.metrics.set("gb26875.connected", 1, **self.labels)
        _log.info("sink {sink}: connected to centre {centre}; sending from seq {seq}",
                  sink=self.sink.name, centre=self.centre.name, seq=self.cursor)
        self.pump()

    def lost(self, proto: _Proto | None, reason: Any) -> None:
        if proto is not None and proto is not self.proto:
            return
        was = self.proto is not None
        self.proto = None
        self._cancel()
        self.inflight = None
        self.port.metrics.set("gb26875.connected", 0, **self.labels)
        if self.stopping:
            return
        self.failures += 1
        delay = self.backoff(self.failures)
        msg = reason.getErrorMessage() if hasattr(reason, "getErrorMessage") else str(reason)
        _log.warn("sink {sink}: {what} centre {centre} ({reason}); again in {delay:.1f} s",
                  sink=self.sink.name, what="lost" if was else "cannot reach",
                  centre=self.centre.name, reason=msg, delay=delay)
        self._reconnect = self.clock.callLater(delay, self.connect)

    def backoff(self, n: int) -> float:
        return self.sink.backoff.delay(n)

    def _restart_from_cursor(self) -> None:
        """Forget what was read but not confirmed: it is read again from the cursor.

        Fire alarms that overtook the backlog and were confirmed stay known (the centre has
        them: they are not sent again unless an older state of their component goes after
        them); unconfirmed ones are looked up again."""
        self.fire.clear()
        self.other.clear()
        self.pending.clear()
        self.alarm_ts.clear()
        self.inflight = None
        self.tail.restart()
        self.looked = self.tail.cursor
        self.early = {s: e for s, e in self.early.items() if e.confirmed and s > self.cursor}

    # -- reading the journal -------------------------------------------------------------

    def fill(self) -> None:
        while len(self.fire) + len(self.other) < QUEUE_LIMIT:
            if self.tail.behind() <= 0:
                return
            rows, _, full = self.tail.read(self.o.read_ahead)
            readings: list[tuple[int, Reading]] = []
            for seq, rec in rows:
                if isinstance(rec, Reading):
                    readings.append((seq, rec))
                elif isinstance(rec, Event):
                    if readings:
                        self._queue(self._map_readings(readings))
                        readings = []
                    self._queue(self._map_event(seq, rec))
                else:
                    self._operation(seq, rec)
            self._queue(self._map_readings(readings))
            self._advance()
            if not full:
                return

    def _map_event(self, seq: int, e: Event) -> list[Upload]:
        """The uploads of an event read in journal order ([] for one that overtook and
        needs no second sending)."""
        try:
            ups = self.mapper.event(seq, e)
        except Exception as err:  # a record the mapper chokes on must not stall the link
            self._dead_letter((seq,), err, repr(e))
            return []
        if self.early.pop(seq, None) is not None:
            return []  # the centre has it, or it is on its way (see overtake)
        if ups and ups[0].fire:
            self.alarm_ts[seq] = e.ts
        return ups

    def _operation(self, seq: int, rec: object) -> None:
        """Keep the facility operations (type 4) a read 64 asks for: reset, silence and
        self-test commands the device carried out, and acknowledgements."""
        if isinstance(rec, Command):
            flags = OPERATION_FLAGS.get(rec.action)
            if flags is not None:
                self._commands[rec.id] = (rec.device, flags)
            return
        if isinstance(rec, CommandResult):
            if not rec.status.final:
                return
            cmd = self._commands.pop(rec.command_id, None)
            if cmd is None or rec.status is not CommandStatus.SUCCEEDED:
                return
            self.operations[seq] = (cmd[0], cmd[1], rec.ts)
        elif isinstance(rec, Acknowledgement):
            self.operations[seq] = (rec.device, ACK_FLAG, rec.ts)
        else:
            return
        while len(self.operations) > OPERATIONS_KEPT:
            del self.operations[next(iter(self.operations))]

    def _map_readings(self, rows: list[tuple[int, Reading]]) -> list[Upload]:
        try:
            return self.mapper.readings(rows)
        except Exception:  # find the culprit(s) one by one; the rest still go
            out: list[Upload] = []
            for seq, r in rows:
                try:
                    out += self.mapper.readings([(seq, r)])
                except Exception as err:
                    self._dead_letter((seq,), err, repr(r))
            return out

    def overtake(self) -> None:
        """Queue the raised fire alarms the journal holds past the read position, ahead of
        the backlog (offline faults after a power cut, readings after an outage) so that
        they do not wait behind it (GB 26875.1: 10 s to the centre).

        They are found through the journal's active events (live alarms only: a cheap,
        bounded query however long the backlog). Cursor: such an upload carries its seq
        like any other, so the cursor, which never passes the read position nor an
        unconfirmed seq, still moves only past confirmed records. When the journal order
        reaches the alarm it is not queued again (``early``). An older state of its
        component read later from the backlog (the clear of the previous alarm, a fault) is
        followed at once by the alarm's state again (:meth:`_restate`), so a centre that
        keeps the last state it received shows the fire alarm all along, except for one
        upload's time. An alarm raised and cleared before a look finds it goes in order.
        """
        journal = self.port.journal
        after = max(self.read_upto, self.looked)
        top = journal.last_seq()
        if top <= after:
            return
        rows = journal.active_after(after, OVERTAKE_LIMIT, kind=EventKind.ALARM.value)
        self.looked = rows[-1][0] if len(rows) >= OVERTAKE_LIMIT else top
        for seq, e in rows:
            if seq in self.early:
                continue
            try:
                ups = self.mapper.overtaking(seq, e)
            except Exception:  # it is read in order later, with the error handling there
                continue
            if not ups:
                continue
            self.early[seq] = _Overtaking(e, _components(ups[0]))
            self.alarm_ts[seq] = e.ts
            self._queue(ups, overtaking=True)

    def _queue(self, uploads: list[Upload], overtaking: bool = False) -> None:
        for u in uploads:
            for s in u.seqs:
                self.pending[s] = self.pending.get(s, 0) + 1
            if u.fire:
                # the component's earlier states (a clear, a fault) go with it, still
                # before it: a centre must never end with an older state of a component.
                # Values (type 3) keep their place: with readings on, nearly every queued
                # upload holds one of the component's, and the alarm would wait for them all
                keys = _components(u)
                if keys:
                    earlier = [o for o in self.other if o.app.type == 2
                               and _components(o) & keys]
                    for o in earlier:
                        self.other.remove(o)
                    self.fire.extend(earlier)
                self.fire.append(u)
            else:
                self.other.append(u)
            if self.early and not overtaking and u.app.type == 2 and u.seqs:
                self._restate(u, self.fire if u.fire else self.other)

    def _restate(self, stale: Upload, queue: deque[Upload]) -> None:
        """``stale``, a component state older than a fire alarm of that component which
        overtook it, was just queued in ``queue``: queue the alarm's state right behind it
        (the state as known now, with the fire-alarm bit), so that the centre does not end
        on the older one."""
        keys = _components(stale)
        newest = max((s for s, e in self.early.items()
                      if s > max(stale.seqs) and e.components & keys), default=None)
        if newest is None:
            return
        for u in self.mapper.overtaking(newest, self.early[newest].event)[:1]:  # the state
            self.pending[newest] = self.pending.get(newest, 0) + 1
            queue.append(u)

    def _advance(self) -> None:
        # an overtaking alarm is pending past the read position: never beyond the latter
        upto = min(min(self.pending) - 1, self.read_upto) if self.pending else self.read_upto
        self.tail.commit(upto)
        self.port.metrics.set("sink.lag_records", self.port.journal.last_seq() - self.cursor,
                             sink=self.cursor_name)

    # -- send/confirm --------------------------------------------------------------------

    def pump(self) -> None:
        if self.proto is None:
            return
        if self.inflight is not None:
            if self._liveness_inflight():
                self.fill()  # a fire alarm may be waiting in the journal: it must not wait
                if self.fire:
                    self._preempt_liveness()
            if self.inflight is not None:
                return
        self.fill()
        if not self.fire and self.other:
            self.overtake()
        while self.fire or self.other:
            up = (self.fire or self.other).popleft()
            sendable = self._encodable(up)
            if sendable is None:
                continue
            up, data = sendable
            frame = c.Frame(self.serial, c.CMD_SEND, self.now(), self.o.source_address,
                            self.o.destination_address, data, self.o.main_version,
                            self.o.user_version)
            try:
                raw = frame.encode()
            except EncodeError as e:  # the header is ours and checked: should not happen
                self._dead_letter(up.seqs, e, data.hex(" ")[:96])
                self._done(up, confirmed=False)
                continue
            self.serial = (self.serial + 1) & 0xFFFF
            self.inflight = (up, frame.serial, raw)
            self.attempts = 0
            self._send(raw)
            return

    def _liveness_inflight(self) -> bool:
        return self.inflight is not None and not self.inflight[0].seqs \
            and self.inflight[0].app.type in (21, 28)

    def _preempt_liveness(self) -> None:
        """A fire alarm never waits on a liveness exchange (which may be retried for
        ``timeout × (retries + 1)`` s): the liveness frame is given up (a late confirm of
        its serial is ignored) and goes again after what the fire queue holds."""
        up = self.inflight[0]
        self._cancel()
        self.inflight = None
        self.other.appendleft(up)
        self.port.metrics.inc("gb26875.liveness_preempted", **self.labels)

    def _encodable(self, up: Upload) -> tuple[Upload, bytes] | None:
        """``up`` and its application data, or, when some of its objects cannot be encoded,
        the upload of the others (the rest are dead letters); None if nothing is left."""
        try:
            return up, up.app.encode()
        except ENCODE_ERRORS:
            pass
        objs = up.app.objects
        paired = len(up.seqs) == len(objs)  # readings: one seq per object
        keep: list[int] = []
        for i, obj in enumerate(objs):
            try:
                c.AppData(up.app.type, (obj,)).encode()
            except ENCODE_ERRORS as e:
                if paired or len(objs) == 1:
                    self._dead_letter((up.seqs[i],) if paired else up.seqs, e, repr(obj))
                continue
            keep.append(i)
        if not keep:
            if not (paired or len(objs) == 1):
                self._dead_letter(up.seqs, EncodeError("no object encodes"), repr(objs[0]))
            self._done(up, confirmed=False)
            return None
        kept_seqs = tuple(up.seqs[i] for i in keep) if paired else up.seqs
        lost = tuple(s for s in up.seqs if s not in kept_seqs)
        if lost:
            self._done(Upload(up.app, lost), confirmed=False)
        new = Upload(c.AppData(up.app.type, tuple(objs[i] for i in keep)), kept_seqs, up.fire)
        try:
            return new, new.app.encode()
        except ENCODE_ERRORS as e:  # each encodes alone, together too long: cannot be
            self._dead_letter(new.seqs, e, repr(objs[keep[0]]))
            self._done(new, confirmed=False)
            return None

    def _dead_letter(self, seqs: tuple[int, ...], error: Exception, excerpt: str) -> None:
        """Records that can never be sent to this centre: counted, logged and noted in the
        journal as a fault-level event, then passed over so the link does not stall."""
        self.port.metrics.inc("gb26875.dead_letters", len(seqs) or 1, **self.labels)
        _log.error("sink {sink}: records {seqs} cannot be encoded for centre {centre} "
                   "({error}): {excerpt}; not sent, the journal keeps them",
                   sink=self.sink.name, seqs=list(seqs), centre=self.centre.name,
                   error=error, excerpt=excerpt[:200])
        self.port.record_events([Event(
            device="hub", kind=EventKind.STATE, code=DEAD_LETTER_CODE,
            state=EventState.NOTICE, ts=self.clock.seconds(), level=Level.FAULT,
            source="hub", message=f"centre {self.centre.name}: journal records "
                                  f"{', '.join(map(str, seqs))} cannot be encoded ({error})")])

    def _clamped(self, device: str, ts: float) -> None:
        self.port.metrics.inc("gb26875.time_labels_clamped", **self.labels)
        if device not in self._clamped_devices:  # once per device: its clock stays wrong
            self._clamped_devices.add(device)
            _log.warn("sink {sink}: device {device} time {ts!r} is outside what a time "
                      "label carries (2000-2099); the hub's clock stands in (logged once "
                      "per device, counted in gb26875.time_labels_clamped)",
                      sink=self.sink.name, device=device or "?", ts=ts)

    def _send(self, raw: bytes) -> None:
        assert self.proto is not None
        self.proto.transport.write(raw)
        self._cancel()
        self._timer = self.clock.callLater(self.o.timeout, self._no_answer)

    def _cancel(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _no_answer(self) -> None:
        self._timer = None
        self._retry(f"no confirm within {self.o.timeout:g} s")

    def _retry(self, why: str) -> None:
        if self.inflight is None or self.proto is None:
            return
        self.attempts += 1
        up, serial, raw = self.inflight
        if self.attempts > self.o.retries:
            self.port.metrics.inc("gb26875.exchanges_failed", **self.labels)
            _log.warn("sink {sink}: upload {serial} to {centre} failed after {n} retries "
                      "({why}); reconnecting, it stays in the journal", sink=self.sink.name,
                      serial=serial, centre=self.centre.name, n=self.o.retries, why=why)
            self._cancel()
            self.proto.transport.loseConnection()
            return
        self.port.metrics.inc("gb26875.retransmissions", **self.labels)
        _log.info("sink {sink}: {why}; upload {serial} again ({n}/{m})", sink=self.sink.name,
                  why=why, serial=serial, n=self.attempts, m=self.o.retries)
        self._send(raw)

    def _done(self, up: Upload, confirmed: bool = True) -> None:
        now = self.clock.seconds()
        for s in up.seqs:
            left = self.pending.get(s, 0) - 1
            if left <= 0:
                self.pending.pop(s, None)
                early = self.early.get(s)
                if early is not None:
                    early.confirmed = confirmed
                ts = self.alarm_ts.pop(s, None)
                if ts is not None and confirmed:
                    self._latency(s, now - ts)
            else:
                self.pending[s] = left
        self._advance()

    def _latency(self, seq: int, latency: float) -> None:
        labels = self.labels
        self.port.metrics.set("gb26875.alarm_latency_seconds", round(latency, 3), **labels)
        self.latency.observe(latency * 1000)
        _log.info("sink {sink}: fire alarm (seq {seq}) confirmed by {centre} "
                  "latency={latency:.3f} s after the reading", sink=self.sink.name,
                  seq=seq, centre=self.centre.name, latency=latency)

    # -- frames from the centre ----------------------------------------------------------

    def frame(self, f: c.Frame) -> None:
        if f.command in (c.CMD_CONFIRM, c.CMD_DENY):
            if self.inflight is None or f.serial != self.inflight[1]:
                return  # a late answer to a frame already given up on
            if f.command == c.CMD_DENY:
                self.port.metrics.inc("gb26875.denied", **self.labels)
                self._retry("denied")
                return
            self._cancel()
            up = self.inflight[0]
            self.inflight = None
            self.port.metrics.inc("gb26875.uploads_confirmed", **self.labels)
            self._done(up)
            self.pump()
            return
        if f.command in (c.CMD_REQUEST, c.CMD_CONTROL):
            self._request(f)


def _components(u: Upload) -> set[tuple[int, int, int]]:
    return {(o.sys_type, o.sys_addr, o.comp_addr) for o in u.app.objects
            if isinstance(o, (c.ComponentState, c.ComponentAnalog))}


class GBSink(CursorSink):
    """The ``gb26875`` sink: one :class:`CentreLink` (and journal tail) per centre.

    Built on :class:`hub.sinks.CursorSink`: cursors, wake-ups on the journal's commits, the
    reconnect backoff, lag metrics and the supervisor are the framework's.

    ``connect(host, port, factory)`` and ``rng`` are injectable for tests; by default the
    reactor's ``connectTCP``.
    """

    def __init__(self, hub: Any, name: str, options: GBOptions, *,
                 connect: Callable[[str, int, protocol.ClientFactory], Any] | None = None,
                 rng: random.Random | None = None) -> None:
        super().__init__(hub, name, options, rng=rng)
        self.name = name
        self.backoff = Backoff(options.reconnect_initial, options.reconnect_max, self.rng)
        self._connect = connect
        several = len(options.centres) > 1
        self.links = [CentreLink(self, ctr, f"{name}/{ctr.name}" if several else name)
                      for ctr in options.centres]
        self._liveness: task.LoopingCall | None = None

    def connect(self, host: str, port: int, factory: protocol.ClientFactory) -> Any:
        if self._connect is None:
            from twisted.internet import reactor

            return reactor.connectTCP(host, port, factory, timeout=self.options.timeout)
        return self._connect(host, port, factory)

    # -- registry ------------------------------------------------------------------------

    def device_info(self, device: str) -> tuple[int, str, str, str] | None:
        d = self.port.device(device)
        return None if d is None else (d.position, d.name, d.location, d.project)

    def systems(self) -> set[tuple[int, int]]:
        o = self.options
        addrs = {o.system_addresses.get(d.project, o.system_address) for d in self.port.devices()}
        return {(o.system_type, a) for a in addrs | {o.system_address}}

    def find(self, comp_addr: int) -> tuple[str, str] | None:
        """(device, channel) of a component address: the configured overrides, else the
        default scheme (registry position << 16 | channel point)."""
        for k, v in self.options.component_addresses.items():
            if v == comp_addr:
                dev, _, ch = k.partition("/")
                return dev, ch
        pos, point = comp_addr >> 16, comp_addr & 0xFFFF
        devices = list(self.port.devices())
        if not 1 <= pos <= len(devices):
            return None
        kinds = {0x100: "T", 0x200: "L"}
        phases = {0x301: "A", 0x302: "B", 0x303: "C", 0x304: "N"}
        if point == 0:
            ch = ""
        elif point in phases:
            ch = phases[point]
        elif point & 0xFF00 in kinds and point & 0xFF:
            ch = f"{kinds[point & 0xFF00]}{point & 0xFF}"
        else:
            return None
        return devices[pos - 1].id, ch

    # -- lifecycle -----------------------------------------------------------------------

    def started(self) -> None:
        for link in self.links:
            link.start()
        self._liveness = task.LoopingCall(self._live)
        self._liveness.clock = self.clock
        self._liveness.start(self.options.liveness_interval, now=False)

    def stopped(self) -> None:
        if self._liveness is not None and self._liveness.running:
            self._liveness.stop()
        for link in self.links:
            link.stop()

    def pump(self) -> None:
        """New records (or a start): each link reads and sends what it can. A fire alarm's
        latency owes nothing to polling: the journal's commit wakes the sink."""
        for link in self.links:
            link.pump()

    def reset(self) -> None:
        for link in self.links:
            link._restart_from_cursor()

    def _live(self) -> None:
        for link in self.links:
            if link.proto is None:
                continue
            queued = [u for u in link.other if u.app.type in (21, 28) and not u.seqs]
            if queued:
                continue  # one liveness upload waiting is enough
            if self.options.liveness_type == 21:
                app = c.AppData(21, (c.UitdState(link.uitd_state(), link.now()),))
            else:
                app = c.AppData(28, (c.UitdTime(link.now()),))
            link.other.append(Upload(app, ()))
            link.pump()
