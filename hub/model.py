"""The canonical schema: every detector, whatever its wire format, ends up as these records.

The quantities, units and alarm ranges come from T/CFPA 023-2023 (table 1: alarm information,
table 2: full electrical information, table 3: fault information). Device models convert
vendor units into the canonical unit of each quantity before they build a :class:`Reading`,
so a reading never carries its own unit: ``QUANTITIES[reading.quantity].unit`` is the unit.

Time is UTC seconds since the epoch as a float (``ts``); it is what the journal stores and
what sinks turn into nanoseconds, so the same record always yields the same timestamp.

Records are frozen, slotted dataclasses: cheap to build at 100,000 a second and safe to hand
to any number of observers.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Union

__all__ = [
    "ALARM_RULES",
    "Acknowledgement",
    "AlarmRule",
    "Command",
    "CommandResult",
    "CommandStatus",
    "Delivery",
    "DeliveryStatus",
    "Event",
    "EventKind",
    "EventState",
    "FAULT_CODES",
    "Level",
    "QUANTITIES",
    "Quality",
    "Quantity",
    "Reading",
    "Record",
    "SchemaError",
    "check_channel",
    "event_id",
    "utc",
]


class SchemaError(ValueError):
    """A record does not fit the canonical schema (unknown quantity, bad channel, ...)."""


@dataclass(frozen=True, slots=True)
class Quantity:
    """One measured quantity of the canonical schema."""

    name: str
    unit: str
    label: str  # Chinese label used in messages and exports
    table: str  # where T/CFPA 023-2023 lists it
    kind: str = "analog"  # "analog" or "bool"


def _q(name: str, unit: str, label: str, table: str, kind: str = "analog") -> tuple[str, Quantity]:
    return name, Quantity(name, unit, label, table, kind)


#: Every quantity the hub knows, keyed by name. Vendors map their points onto these names.
QUANTITIES: dict[str, Quantity] = dict(
    [
        # Table 1: alarm information
        _q("residual_current", "mA", "剩余电流", "table 1"),
        _q("resistive_leakage_current", "mA", "阻性漏电流", "table 1"),
        _q("temperature", "°C", "温度", "table 1"),
        _q("voltage", "V", "电压", "table 1"),
        _q("current", "A", "电流", "table 1"),
        _q("pyrolytic_particles", "", "热解粒子", "table 1"),
        _q("smoke_concentration", "%obs/m", "烟雾浓度", "table 1"),
        _q("gas_concentration", "ppm", "可燃气体浓度", "table 1"),
        _q("fault_arc", "", "故障电弧", "table 1", "bool"),
        _q("arc_flash", "", "弧光", "table 1", "bool"),
        # Table 2: full electrical information
        _q("active_power", "W", "有功功率", "table 2"),
        _q("reactive_power", "var", "无功功率", "table 2"),
        _q("apparent_power", "VA", "视在功率", "table 2"),
        _q("power_factor", "", "功率因数", "table 2"),
        _q("active_energy", "kWh", "有功电能", "table 2"),
        _q("reactive_energy", "kvarh", "无功电能", "table 2"),
        _q("frequency", "Hz", "频率", "table 2"),
        _q("voltage_unbalance", "%", "三相电压不平衡度", "table 2"),
        _q("current_unbalance", "%", "三相电流不平衡度", "table 2"),
        _q("residual_current_full_wave", "mA", "全波剩余电流", "table 2"),
        _q("current_thd", "%", "电流谐波畸变率", "table 2"),
        _q("voltage_thd", "%", "电压谐波畸变率", "table 2"),
        _q("outage", "", "停电", "table 2", "bool"),
        # harmonic content of order n (谐波含有率, % of the fundamental), orders 2..31 as
        # power-quality meters report them (GB/T 14549)
        *(_q(f"current_harmonic_{n}", "%", f"{n}次电流谐波含有率", "table 2")
          for n in range(2, 32)),
        *(_q(f"voltage_harmonic_{n}", "%", f"{n}次电压谐波含有率", "table 2")
          for n in range(2, 32)),
        # Not in the tables but reported by nearly every DTU and NB-IoT module
        _q("signal_strength", "dBm", "信号强度", "device"),
        _q("battery_voltage", "V", "电池电压", "device"),
        # Not in the tables but read from every multi-function energy meter (DL/T 645-2007
        # 02800004 当前有功需量: the average active power over the demand period)
        _q("active_demand", "W", "有功需量", "meter"),
    ]
)


def quantity_names() -> str:
    """Every quantity name for an error message, the harmonic orders folded
    (``current_harmonic_2..31``) so the list stays readable."""
    names = [q for q in QUANTITIES if not re.fullmatch(r"\w+_harmonic_\d+", q)]
    names += [f"{k}_harmonic_2..31" for k in ("current", "voltage")]
    return ", ".join(names)


class Level(StrEnum):
    """How serious an event is; ordered from least to most serious."""

    INFO = "info"
    WARNING = "warning"  # pre-alarm (预警): a share of the set point was passed
    ALARM = "alarm"  # the set point was passed (报警)
    FAULT = "fault"  # the monitoring itself is impaired (故障)

    @property
    def rank(self) -> int:
        return _LEVEL_RANK[self]


_LEVEL_RANK = {Level.INFO: 0, Level.WARNING: 1, Level.ALARM: 2, Level.FAULT: 2}


@dataclass(frozen=True, slots=True)
class AlarmRule:
    """An alarm the hub evaluates itself from readings, with the range the standard allows
    for its set point."""

    name: str
    quantity: str
    direction: str  # "high": alarm above the set point; "low": below it
    low: float  # lowest set point the standard allows
    high: float  # highest set point the standard allows
    label: str
    table: str = "T/CFPA 023-2023 table 1"


#: Alarm types of T/CFPA 023-2023 table 1 that are evaluated against set points.
ALARM_RULES: dict[str, AlarmRule] = {
    r.name: r
    for r in (
        AlarmRule("residual_current", "residual_current", "high", 20, 1000, "剩余电流报警"),
        AlarmRule("resistive_leakage_current", "resistive_leakage_current", "high", 20, 1000,
                  "阻性漏电流报警"),
        AlarmRule("temperature", "temperature", "high", 45, 140, "温度报警"),
        AlarmRule("overvoltage", "voltage", "high", 221, 300, "过压报警"),
        AlarmRule("undervoltage", "voltage", "low", 0, 220, "欠压报警"),
        AlarmRule("overcurrent", "current", "high", 0, 9999, "过流报警"),
        AlarmRule("pyrolytic_particles", "pyrolytic_particles", "high", 0, 2000, "热解粒子报警"),
        AlarmRule("smoke_concentration", "smoke_concentration", "high", 0.05, 3, "烟雾报警"),
        AlarmRule("gas_concentration", "gas_concentration", "high", 20, 500, "可燃气体报警"),
    )
}

#: Fault codes of T/CFPA 023-2023 table 3 and the hub's own faults.
FAULT_CODES: dict[str, str] = {
    "offline": "设备离线",
    "channel_open": "通道开路",
    "channel_short": "通道短路",
    "self_fault": "设备自身故障",
    "journal_near_full": "日志存储接近上限",
    "sink_lagging": "数据转发滞后",
    "sms_delivery_failed": "短信发送失败",
}


class Quality(StrEnum):
    GOOD = "good"
    UNCERTAIN = "uncertain"  # e.g. the device flagged the channel but still sent a value
    BAD = "bad"  # the value is known to be wrong (open sensor, out of the device's range)


class EventKind(StrEnum):
    ALARM = "alarm"  # a hazard: threshold crossed or the device reported an alarm
    FAULT = "fault"  # monitoring impaired: offline, open or shorted channel, self-fault
    STATE = "state"  # something happened that has no end: reset done, power restored, ...


class EventState(StrEnum):
    RAISED = "raised"
    CLEARED = "cleared"
    #: a one-off event with no clear (kind STATE)
    NOTICE = "notice"


_CHANNEL = re.compile(r"^(?:|[ABCN]|T[1-9][0-9]{0,2}|L[1-9][0-9]{0,2})$")


def check_channel(channel: str) -> str:
    """Return ``channel`` if it is canonical, else raise :class:`SchemaError`.

    Channels: ``""`` (the device as a whole), ``A``/``B``/``C``/``N`` (phases and neutral),
    ``T1``.. (temperature channel n), ``L1``.. (circuit or residual-current loop n).
    """
    if not _CHANNEL.match(channel):
        raise SchemaError(
            f"channel {channel!r} is not one of '', A, B, C, N, T<n> (temperature), L<n> (circuit)"
        )
    return channel


#: Timestamps the schema accepts: the Unix epoch up to 2100-01-01 UTC. Beyond that a device
#: clock or a decoder is wrong, and sinks cannot represent the time (GB/T 26875's time label
#: ends in 2099; datetime overflows long before a float does).
TS_MIN = 0.0
TS_MAX = 4102444800.0


def check_ts(ts: float) -> float:
    """Return ``ts`` if it is a finite Unix time in ``TS_MIN..TS_MAX``, else raise."""
    if not (TS_MIN <= ts < TS_MAX):  # also false for NaN
        raise SchemaError(f"timestamp {ts!r} is not a Unix time between 1970 and 2100")
    return ts


@dataclass(frozen=True, slots=True)
class Reading:
    """One measured value: ``(device, channel, quantity, value, time, quality)``.

    ``value`` is in the canonical unit of ``quantity``; booleans are 0.0 / 1.0.
    """

    device: str
    quantity: str
    value: float
    ts: float
    channel: str = ""
    quality: Quality = Quality.GOOD

    @property
    def unit(self) -> str:
        return QUANTITIES[self.quantity].unit

    @property
    def time(self) -> datetime:
        return utc(self.ts)

    def validate(self) -> Reading:
        """Raise :class:`SchemaError` unless the record fits the schema; return it."""
        if self.quantity not in QUANTITIES:
            raise SchemaError(f"unknown quantity {self.quantity!r}")
        check_channel(self.channel)
        if self.value - self.value != 0:  # NaN or infinite: no information, breaks sinks
            raise SchemaError(f"{self.quantity} value is {self.value}")
        check_ts(self.ts)
        return self


@dataclass(frozen=True, slots=True)
class Event:
    """An alarm, a fault or a state change.

    An alarm or fault is recorded twice under one stable ``id``: once ``RAISED`` and once
    ``CLEARED`` (the clear carries ``peak`` and ``raised_ts``, so the duration is known).

    ``code`` names what happened: an :data:`ALARM_RULES` name (``temperature``,
    ``overvoltage``, ...), a :data:`FAULT_CODES` name, ``fault_arc`` or a vendor code.
    ``source`` is ``"hub"`` when the hub decided (threshold, presence) and ``"device"`` when
    the device reported it.

    Device models may build events with ``id=""``: the alarm engine assigns the stable id
    when it turns the device's report into an edge.
    """

    device: str
    kind: EventKind
    code: str
    state: EventState
    ts: float
    level: Level = Level.ALARM
    channel: str = ""
    id: str = ""
    value: float | None = None
    set_point: float | None = None
    peak: float | None = None
    raised_ts: float | None = None
    source: str = "hub"
    message: str = ""

    @property
    def duration(self) -> float | None:
        """Seconds between raise and clear, for a cleared event."""
        if self.state is EventState.CLEARED and self.raised_ts is not None:
            return self.ts - self.raised_ts
        return None

    @property
    def time(self) -> datetime:
        return utc(self.ts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "device": self.device,
            "kind": self.kind.value,
            "code": self.code,
            "state": self.state.value,
            "ts": self.ts,
            "level": self.level.value,
            "channel": self.channel,
            "value": self.value,
            "set_point": self.set_point,
            "peak": self.peak,
            "raised_ts": self.raised_ts,
            "source": self.source,
            "message": self.message,
        }

    def validate(self) -> Event:
        """Raise :class:`SchemaError` unless the event fits the schema; return it."""
        if not isinstance(self.kind, EventKind) or not isinstance(self.state, EventState):
            raise SchemaError(f"event {self.code!r}: kind and state must be EventKind and "
                              f"EventState, got {self.kind!r}, {self.state!r}")
        if not isinstance(self.level, Level):
            raise SchemaError(f"event {self.code!r}: level must be a Level, got {self.level!r}")
        check_channel(self.channel)
        check_ts(self.ts)
        for name in ("value", "set_point", "peak"):
            v = getattr(self, name)
            if v is not None and v - v != 0:
                raise SchemaError(f"event {self.code!r}: {name} is {v}")
        return self

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Event:
        return cls(
            id=d["id"],
            device=d["device"],
            kind=EventKind(d["kind"]),
            code=d["code"],
            state=EventState(d["state"]),
            ts=d["ts"],
            level=Level(d["level"]),
            channel=d.get("channel", ""),
            value=d.get("value"),
            set_point=d.get("set_point"),
            peak=d.get("peak"),
            raised_ts=d.get("raised_ts"),
            source=d.get("source", "hub"),
            message=d.get("message", ""),
        )


def event_id(device: str, code: str, channel: str, level: Level | str, raised_ts: float) -> str:
    """The stable id of an alarm or fault: the same inputs give the same id on every hub.

    Millisecond resolution of the raise time keeps ids equal across a float round trip
    through JSON or SQLite.
    """
    lvl = level.value if isinstance(level, Level) else level
    key = f"{device}\x1f{code}\x1f{channel}\x1f{lvl}\x1f{round(raised_ts * 1000)}"
    return hashlib.blake2b(key.encode(), digest_size=8).hexdigest()


#: What device models return and the journal stores.
Record = Union[Reading, Event]


#: Actions a command may ask for. Device models say which ones they can encode.
COMMAND_ACTIONS = (
    "reset",
    "silence",
    "self_test",
    "trip",
    "close",
    "set_threshold",
    "enable_channel",
    "disable_channel",
    "reboot",
)


class CommandStatus(StrEnum):
    PENDING = "pending"  # accepted, waiting for the device (or its queue window)
    SENT = "sent"  # on the wire, no answer yet
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the device refused or answered with an error
    TIMED_OUT = "timed_out"  # no answer in time, or its time to live ran out in a queue

    @property
    def final(self) -> bool:
        return self in (CommandStatus.SUCCEEDED, CommandStatus.FAILED, CommandStatus.TIMED_OUT)


@dataclass(frozen=True, slots=True)
class Command:
    """A remote-control request for one device."""

    id: str
    device: str
    action: str
    ts: float
    channel: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    requested_by: str = ""
    ttl: float = 60.0

    def validate(self) -> Command:
        if self.action not in COMMAND_ACTIONS:
            raise SchemaError(
                f"unknown command action {self.action!r}; one of {', '.join(COMMAND_ACTIONS)}")
        check_channel(self.channel)
        return self


@dataclass(frozen=True, slots=True)
class CommandResult:
    """The end (or a step) of a command's life."""

    command_id: str
    device: str
    status: CommandStatus
    ts: float
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """Someone has taken note of an alarm or fault (``hub events ack``, later the API).

    A record of its own rather than an Event: it is not a state of the device, must not be
    mistaken for one by sinks that forward events, and it stops escalation.
    ``device`` is the acknowledged event's device, so history queries by device find it.
    """

    event_id: str
    by: str
    ts: float
    device: str
    note: str = ""


class DeliveryStatus(StrEnum):
    SENT = "sent"  # the far side accepted it (``message_id`` is its id)
    RETRY = "retry"  # a transient failure: it will be sent again
    FAILED = "failed"  # a permanent failure (invalid number, rejected template)
    SUPPRESSED = "suppressed"  # deliberately not sent (the same alarm within the window)


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a notifying sink did at one destination (a phone) about one or more events.

    Kept in the journal so "was the safety officer told, when, and by which message id" has
    an auditable answer. A record kind of its own (not an Event) so that forwarding sinks
    never send notifications about notifications. ``items`` are the sink's keys for what
    the message covered; the sink reads them back after a restart to avoid sending again.
    """

    sink: str
    target: str
    status: DeliveryStatus
    ts: float
    device: str = "hub"
    event_ids: tuple[str, ...] = ()
    items: tuple[str, ...] = ()
    message_id: str = ""
    detail: str = ""
    key: str = ""


def utc(ts: float) -> datetime:
    """The aware UTC datetime of an epoch timestamp."""
    return datetime.fromtimestamp(ts, tz=UTC)
