"""From the hub's canonical records to GB/T 26875.3 objects (sans-IO, no clock).

The 2011 tables have no electrical-fire system code, so every choice is an option
(:class:`~plugins.sinks.gb26875.options.GBOptions`):

* system: ``system_type`` (default 129, user-defined), system address per project
  (``system_addresses``) or ``system_address``;
* component type by channel: ``T<n>`` → 18 (temperature), ``L<n>`` → 17 (residual
  current), anything else → 16 (the monitoring host);
* component address (4 bytes, sent low byte first): the device's 1-based position in the
  registry in the high 16 bits (a "loop", as vendors split the field) and the channel in the
  low 16 bits (``""`` 0, ``A``-``N`` 0x301-0x304, ``T<n>`` 0x100+n, ``L<n>`` 0x200+n);
  ``component_addresses`` overrides it by ``device`` or ``device/channel``;
* description: GB 18030 of "location name", cut at a character boundary to 31 bytes;
* alarms and faults → type 2 with the fire-alarm or fault bit over bit 0 "normal"; the
  state is recomputed from every active event of the component, so a clear gives "normal"
  only when nothing else is active there; device offline is a fault;
* values → type 3 with ``analog_types`` codes, raw = round(value / resolution), clamped to
  int16; an alarm's own value always travels as type 3 right after its type 2; a value
  that is not finite is not mapped;
* time labels: the record's time in local time (``utc_offset``), years 2000-2099 only; a
  time outside that (a device clock at 1970) gets the hub's clock instead, and the sink is
  told (``clamped``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hub.model import Event, EventKind, EventState, Level, Reading
from plugins.sinks.gb26875 import codec as c
from plugins.sinks.gb26875.options import GBOptions

#: alarm rule -> the quantity whose value it carries
RULE_QUANTITY = {"overvoltage": "voltage", "undervoltage": "voltage",
                 "overcurrent": "current"}
_PHASES = {"A": 0x301, "B": 0x302, "C": 0x303, "N": 0x304}


@dataclass(frozen=True)
class Upload:
    """One upload frame's application data, the journal seqs it carries, its priority."""

    app: c.AppData
    seqs: tuple[int, ...]
    fire: bool = False


#: the range a 6-byte time label can carry (the year is sent as year - 2000, §8.2.2)
LABEL_MIN = datetime(2000, 1, 1)
LABEL_MAX = datetime(2099, 12, 31, 23, 59, 59)


def label_or_none(ts: float, utc_offset: float | None, skew: float = 0.0) -> datetime | None:
    """A time label (naive local time): UTC + ``utc_offset`` hours, or the host's zone;
    ``skew`` is what a centre's clock sync said our clock is behind. ``None`` when ``ts`` is
    not finite or its label falls outside 2000-2099, which no frame can carry."""
    ts += skew
    if not math.isfinite(ts):
        return None
    try:
        if utc_offset is None:
            t = datetime.fromtimestamp(ts).replace(microsecond=0)
        else:
            t = (datetime.fromtimestamp(ts, UTC) + timedelta(hours=utc_offset)).replace(
                tzinfo=None, microsecond=0)
    except (OverflowError, OSError, ValueError):
        return None
    return t if LABEL_MIN <= t <= LABEL_MAX else None


def to_label(ts: float, utc_offset: float | None, skew: float = 0.0) -> datetime:
    """:func:`label_or_none`, pinned to the nearest end of 2000-2099 when out of range (the
    label of our own clock: a frame must still go out when the host's clock is wrong)."""
    t = label_or_none(ts, utc_offset, skew)
    if t is not None:
        return t
    return LABEL_MAX if ts + skew > 0 else LABEL_MIN


class Mapper:
    """Turns journal records into :class:`Upload` s; ``device_info(id)`` gives
    ``(position, name, location, project)`` or ``None`` for a device the registry lacks."""

    def __init__(self, options: GBOptions,
                 device_info: Callable[[str], tuple[int, str, str, str] | None],
                 now: Callable[[], float] | None = None,
                 clamped: Callable[[str, float], None] | None = None) -> None:
        self.o = options
        self.device_info = device_info
        #: the hub's clock, which stands in for a record's time that no label can carry
        self.now = now
        #: told ``(device, ts)`` whenever that happens (the sink counts and logs it)
        self.clamped = clamped
        #: seconds a centre's clock sync (type 90) said our clock is behind
        self.skew = 0.0
        #: component key -> ids of its active alarms and faults
        self.active: dict[tuple[str, str], dict[str, Event]] = {}

    # -- addressing ----------------------------------------------------------------------

    def system(self, device: str) -> tuple[int, int] | None:
        info = self.device_info(device)
        if info is None:
            return None
        return self.o.system_type, self.o.system_addresses.get(info[3], self.o.system_address)

    def comp_type(self, channel: str) -> int:
        if channel.startswith("T"):
            return self.o.temperature_component_type
        if channel.startswith("L"):
            return self.o.residual_component_type
        return self.o.host_component_type

    def comp_addr(self, device: str, channel: str) -> int:
        o = self.o.component_addresses
        if f"{device}/{channel}" in o:
            return o[f"{device}/{channel}"]
        info = self.device_info(device)
        base = o.get(device, (info[0] if info else 0) << 16)
        if channel in _PHASES:
            point = _PHASES[channel]
        elif channel[:1] == "T":
            point = 0x100 + int(channel[1:])
        elif channel[:1] == "L":
            point = 0x200 + int(channel[1:])
        else:
            point = 0
        return (base + point) & 0xFFFFFFFF

    def description(self, device: str) -> str:
        info = self.device_info(device)
        if info is None:
            return c.fit_text(device)
        _, name, location, _ = info
        return c.fit_text(f"{location} {name}".strip() if location else name)

    # -- records -------------------------------------------------------------------------

    def state_of(self, device: str, channel: str) -> int:
        state = c.STATE_NORMAL
        for e in self.active.get((device, channel), {}).values():
            state |= c.STATE_FIRE if e.kind is EventKind.ALARM else c.STATE_FAULT
        return state

    def component_state(self, device: str, channel: str, ts: float,
                        state: int | None = None) -> c.ComponentState | None:
        sysref = self.system(device)
        if sysref is None:
            return None
        if state is None:
            state = self.state_of(device, channel)
        return c.ComponentState(*sysref, self.comp_type(channel),
                                self.comp_addr(device, channel), state,
                                self.description(device), self.label(ts, device))

    def analog(self, device: str, channel: str, quantity: str, value: float,
               ts: float) -> c.ComponentAnalog | None:
        sysref = self.system(device)
        # infinity too: round(inf / res) raises instead of giving a value to clamp
        if sysref is None or quantity not in self.o.analog_types or not math.isfinite(value):
            return None
        code, res = self.o.analog_types[quantity]
        raw = max(-32768, min(32767, round(value / res)))
        return c.ComponentAnalog(*sysref, self.comp_type(channel),
                                 self.comp_addr(device, channel), code, raw,
                                 self.label(ts, device))

    def label(self, ts: float, device: str = "") -> datetime:
        """The time label of ``ts``; a time no label can carry (a device clock at 1970, past
        2099, not finite) gets the hub's clock instead, so the record still goes out."""
        t = label_or_none(ts, self.o.utc_offset, self.skew)
        if t is not None:
            return t
        if self.clamped is not None:
            self.clamped(device, ts)
        return to_label(self.now() if self.now is not None else ts, self.o.utc_offset,
                        self.skew)

    def restore(self, events: list[Event]) -> None:
        """Active events from before a restart (``journal.active_events()``)."""
        for e in events:
            if self._tracked(e):
                self.active.setdefault((e.device, e.channel), {})[e.id] = e

    @staticmethod
    def _tracked(e: Event) -> bool:
        # warnings (预警) are not fire alarms; state notices have no component state
        return (e.kind is EventKind.ALARM and e.level is Level.ALARM) or \
            e.kind is EventKind.FAULT

    def event(self, seq: int, e: Event) -> list[Upload]:
        if not self._tracked(e) or self.system(e.device) is None:
            return []
        key = (e.device, e.channel)
        if e.state is EventState.RAISED:
            self.active.setdefault(key, {})[e.id] = e
        elif e.state is EventState.CLEARED:
            self.active.get(key, {}).pop(e.id, None)
        else:
            return []
        fire = e.kind is EventKind.ALARM and e.state is EventState.RAISED
        return self._uploads(seq, e, self.state_of(e.device, e.channel), fire)

    def overtaking(self, seq: int, e: Event) -> list[Upload]:
        """The uploads of a raised fire alarm sent ahead of journal order (read from the
        journal's active events past the read position): the component's state as known so
        far plus the fire-alarm bit; :attr:`active` is left alone, the alarm reaches it when
        read in order."""
        if not (self._tracked(e) and e.kind is EventKind.ALARM
                and e.state is EventState.RAISED) or self.system(e.device) is None:
            return []
        return self._uploads(seq, e, self.state_of(e.device, e.channel) | c.STATE_FIRE, True)

    def _uploads(self, seq: int, e: Event, state: int, fire: bool) -> list[Upload]:
        obj = self.component_state(e.device, e.channel, e.ts, state)
        assert obj is not None
        out = [Upload(c.AppData(2, (obj,)), (seq,), fire)]
        quantity = RULE_QUANTITY.get(e.code, e.code)
        if e.value is not None and e.state is EventState.RAISED:
            a = self.analog(e.device, e.channel, quantity, e.value, e.ts)
            if a is not None:
                out.append(Upload(c.AppData(3, (a,)), (seq,), fire))
        return out

    def readings(self, rows: list[tuple[int, Reading]]) -> list[Upload]:
        """Mapped readings, up to 63 per type 3 upload (the standard's count limit)."""
        if not self.o.readings:
            return []
        objs: list[tuple[int, c.ComponentAnalog]] = []
        for seq, r in rows:
            a = self.analog(r.device, r.channel, r.quantity, r.value, r.ts)
            if a is not None:
                objs.append((seq, a))
        limit = c.LAYOUTS[3][1]
        return [Upload(c.AppData(3, tuple(a for _, a in objs[i:i + limit])),
                       tuple(s for s, _ in objs[i:i + limit]))
                for i in range(0, len(objs), limit)]
