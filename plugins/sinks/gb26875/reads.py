"""What a monitoring centre asks of the UITD: reads (command 4; 61-68, 81-88) answered with
the matching upload, initialise / clock sync / duty check (89-91) confirmed.

A mixin of :class:`plugins.sinks.gb26875.sink.CentreLink`, which holds the state it uses
(the connection, the mapper, the operations and duty checks seen).
"""

from __future__ import annotations

import abc
import struct
from typing import Any

from twisted.logger import Logger

import hub as hub_pkg
from hub.contracts import EncodeError
from hub.model import Event, EventKind, EventState, Level
from plugins.sinks.gb26875 import codec as c
from plugins.sinks.gb26875.mapping import Upload, to_label

_log = Logger(namespace="hub.sinks.gb26875")

DUTY_CODE = "gb26875_duty_check"
#: what encoding a mapped object can raise besides EncodeError (struct, int.to_bytes)
ENCODE_ERRORS = (EncodeError, struct.error, OverflowError, ValueError, TypeError)


class CentreReads(abc.ABC):
    """The centre's requests; needs the link's ``proto``, ``o``, ``port``, ``sink``,
    ``centre``, ``clock``, ``mapper``, ``serial``, ``skew``, ``fire``, ``duty_records``,
    ``operations`` and its ``now()`` and ``pump()``."""

    proto: Any
    o: Any
    port: Any
    sink: Any
    centre: Any
    clock: Any
    mapper: Any
    serial: int
    skew: float
    fire: Any
    duty_records: Any
    operations: dict[int, tuple[str, int, float]]

    @abc.abstractmethod
    def now(self) -> Any:
        """The centre's clock reading (the link's own)."""

    @abc.abstractmethod
    def pump(self) -> None:
        """Send what is due (the link's own)."""

    def _reply(self, f: c.Frame, command: int, app: c.AppData | None = None) -> None:
        assert self.proto is not None
        data = app.encode() if app is not None else b""
        reply = c.Frame(f.serial, command, self.now(), self.o.source_address, f.source,
                        data, self.o.main_version, self.o.user_version)
        self.proto.transport.write(reply.encode())

    def _request(self, f: c.Frame) -> None:
        try:
            app = f.app_data()
        except c.GBDecodeError as e:
            _log.warn("sink {sink}: centre sent bad data ({error}); denied",
                      sink=self.sink.name, error=e)
            self._reply(f, c.CMD_DENY)
            return
        t = app.type
        if t in (89, 90, 91):
            self._reply(f, c.CMD_CONFIRM)
            if t == 90:
                obj = app.objects[0]
                assert isinstance(obj, c.ClockSync)
                self.skew = self.mapper.skew = (
                    obj.time - to_label(self.clock.seconds(), self.o.utc_offset)
                ).total_seconds()
                _log.info("sink {sink}: centre {centre} clock sync; our labels now shift "
                          "{skew:+.0f} s", sink=self.sink.name, centre=self.centre.name,
                          skew=self.skew)
            elif t == 91:
                self._duty_check(app.objects[0])
            else:
                # our next frame starts the serial again from 0, as after a connect; an
                # upload in flight keeps its serial, its confirm still matches it
                self.serial = 0
                _log.info("sink {sink}: centre {centre} asked to initialise; serial reset",
                          sink=self.sink.name, centre=self.centre.name)
            return
        try:
            answer = self._answer(app) if t in c.READ_ANSWERS else None
            if answer is not None:
                self._reply(f, c.CMD_ANSWER, answer)
        except ENCODE_ERRORS as e:  # an answer we cannot build is denied, not a crash
            _log.error("sink {sink}: cannot answer read {type} from centre {centre} "
                       "({error}); denied", sink=self.sink.name, type=t,
                       centre=self.centre.name, error=e)
            answer = None
        if answer is None:
            self._reply(f, c.CMD_DENY)
        self.pump()

    def _duty_check(self, obj: Any) -> None:
        ts = self.clock.seconds()
        op = c.UitdOperation(c.UITD_DUTY_ANSWERED, 0, self.now())
        self.duty_records.append(op)
        self.fire.append(Upload(c.AppData(24, (op,)), ()))  # behind fire alarms only
        self.port.record_events([Event(
            device="hub", kind=EventKind.STATE, code=DUTY_CODE, state=EventState.NOTICE,
            ts=ts, level=Level.INFO, source="hub",
            message=f"duty check from centre {self.centre.name} answered "
                    f"(timeout {getattr(obj, 'timeout_minutes', '?')} min)")])
        self.pump()

    def uitd_state(self) -> int:
        state = c.STATE_NORMAL
        for events in self.mapper.active.values():
            for e in events.values():
                state |= c.STATE_FIRE if e.kind is EventKind.ALARM else c.STATE_FAULT
        return state

    def _answer(self, app: c.AppData) -> c.AppData | None:
        """The upload answering a read, or None (→ deny) when there is nothing to give."""
        t, now = app.type, self.now()
        version = [int(x) for x in (hub_pkg.__version__.split(".") + ["0", "0"])[:2]]
        if t == 81:
            return c.AppData(21, (c.UitdState(self.uitd_state(), now),))
        if t == 84:
            if not self.duty_records:
                return None
            q = app.objects[0]
            recs = [r for r in self.duty_records if r.time >= q.start][:max(1, q.count)]
            return c.AppData(24, tuple(recs)) if recs else None
        if t == 85:
            return c.AppData(25, (c.UitdSoftwareVersion(*version),))
        if t == 86:
            return c.AppData(26, (c.UitdConfig(c.fit_text(
                f"hub {hub_pkg.__version__} {len(self.port.devices())} devices", 255)),))
        if t == 88:
            return c.AppData(28, (c.UitdTime(now),))
        objs = []
        for q in app.objects:
            if (q.sys_type, getattr(q, "sys_addr", None)) not in self.sink.systems():
                return None
            if t == 61:
                objs.append(c.SystemState(q.sys_type, q.sys_addr, self.uitd_state() & 0b111,
                                          now))
            elif t == 65:
                objs.append(c.FacilitySoftwareVersion(q.sys_type, q.sys_addr, *version))
            elif t == 66:
                objs.append(c.FacilityConfig(q.sys_type, q.sys_addr, "电气火灾监控系统"))
            elif t == 68:
                objs.append(c.FacilityTime(q.sys_type, q.sys_addr, now))
            elif t == 64:
                objs += self._operations(q)
            elif t in (62, 63, 67):
                where = self.sink.find(q.comp_addr)
                if where is None:
                    return None
                dev, ch = where
                m = self.mapper
                if t == 62:
                    objs.append(m.component_state(dev, ch, self.clock.seconds()))
                elif t == 67:
                    objs.append(c.ComponentConfig(q.sys_type, q.sys_addr, m.comp_type(ch),
                                                  q.comp_addr, m.description(dev)))
                else:
                    for r in self.port.journal.latest(dev):
                        a = m.analog(dev, r.channel, r.quantity, r.value, r.ts)
                        if r.channel == ch and a is not None:
                            objs.append(a)
        objs = [o for o in objs if o is not None]
        if not objs:
            return None
        limit = c.LAYOUTS[c.READ_ANSWERS[t]][1]
        return c.AppData(c.READ_ANSWERS[t], tuple(objs[:limit]))


    def _operations(self, q: c.RecordQuery) -> list[c.FacilityOperation]:
        """Up to ``q.count`` facility operations of the system ``q`` asks for, from
        ``q.start`` on, oldest first."""
        m = self.mapper
        out = []
        for device, flags, ts in self.operations.values():
            if m.system(device) != (q.sys_type, q.sys_addr):
                continue
            label = m.label(ts, device)
            if label >= q.start:
                out.append(c.FacilityOperation(q.sys_type, q.sys_addr, flags, 0, label))
        return out[:max(1, q.count)]
