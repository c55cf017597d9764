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
  int16; an alarm's own value always travels as type 3 right after its type 2.
"""

from __future__ import annotations

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


def to_label(ts: float, utc_offset: float | None, skew: float = 0.0) -> datetime:
    """A time label (naive local time): UTC + ``utc_offset`` hours, or the host's zone;
    ``skew`` is what a centre's clock sync said our clock is behind."""
    ts += skew
    if utc_offset is None:
        return datetime.fromtimestamp(ts).replace(microsecond=0)
    return (datetime.fromtimestamp(ts, UTC) + timedelta(hours=utc_offset)).replace(
        tzinfo=None, microsecond=0)


class Mapper:
    """Turns journal records into :class:`Upload` s; ``device_info(id)`` gives
    ``(position, name, location, project)`` or ``None`` for a device the registry lacks."""

    def __init__(self, options: GBOptions,
                 device_info: Callable[[str], tuple[int, str, str, str] | None]) -> None:
        self.o = options
        self.device_info = device_info
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

    def component_state(self, device: str, channel: str, ts: float) -> c.ComponentState | None:
        sysref = self.system(device)
        if sysref is None:
            return None
        return c.ComponentState(*sysref, self.comp_type(channel),
                                self.comp_addr(device, channel),
                                self.state_of(device, channel), self.description(device),
                                self.label(ts))

    def analog(self, device: str, channel: str, quantity: str, value: float,
               ts: float) -> c.ComponentAnalog | None:
        sysref = self.system(device)
        if sysref is None or quantity not in self.o.analog_types or value != value:
            return None
        code, res = self.o.analog_types[quantity]
        raw = max(-32768, min(32767, round(value / res)))
        return c.ComponentAnalog(*sysref, self.comp_type(channel),
                                 self.comp_addr(device, channel), code, raw, self.label(ts))

    def label(self, ts: float) -> datetime:
        return to_label(ts, self.o.utc_offset, self.skew)

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
        obj = self.component_state(e.device, e.channel, e.ts)
        assert obj is not None
        fire = e.kind is EventKind.ALARM and e.state is EventState.RAISED
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
