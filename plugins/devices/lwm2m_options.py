"""The options of the ``lwm2m_ipso`` model, checked into frozen dataclasses, and the LwM2M
path syntax both LwM2M models accept in their options (``/3303/0``, ``/3312/0/5850``).

Every error names its key path, e.g.
``conf/hub.yaml: models.nb-efd.map./3303/5.channel: channel 'X1' is not one of ...``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hub.contracts import DecodeError, EncodeError
from hub.contracts.lwm2m import Lwm2mOperation, Path
from hub.model import (
    ALARM_RULES,
    COMMAND_ACTIONS,
    FAULT_CODES,
    QUANTITIES,
    EventKind,
    Level,
    SchemaError,
    check_channel,
    quantity_names,
)
from hub.validate import Checker, Invalid, Section, boolean, choice, describe, number, string
from plugins.protocols.modbus.values import conversion, tidy

__all__ = [
    "VALUE_RESOURCE",
    "FlagSpec",
    "IGNORE",
    "IpsoOptions",
    "PointSpec",
    "ResidualRule",
    "ThresholdSpec",
    "check_options",
    "check_time",
    "device_unit",
    "parse_path",
    "path_text",
]

#: The resource an instance path (``/3303/0``) stands for in the options.
VALUE_RESOURCE: dict[int, int] = {
    3303: 5700, 3316: 5700, 3317: 5700, 3328: 5700, 3331: 5700, 3305: 5800,
    3200: 5500, 3342: 5500, 3312: 5850, 3201: 5550,
}

_PATH = re.compile(r"/?(\d{1,5})(?:/(\d{1,5}))?(?:/(\d{1,5}))?(?:/(\d{1,5}))?")

#: Spellings devices put in 5701 Sensor Units (UCUM among them) → the hub's unit names.
_UNIT_ALIASES = {
    "Cel": "°C", "cel": "°C", "C": "°C", "degC": "°C", "[degF]": "°F", "degF": "°F",
    "W.h": "Wh", "W*h": "Wh", "kW.h": "kWh", "kW*h": "kWh", "V.A": "VA", "kV.A": "kVA",
    "var.h": "varh", "kvar.h": "kvarh", "dB[mW]": "dBm", "uA": "µA",
}


def device_unit(unit: str) -> str:
    """A device's unit name as the hub spells it (``Cel`` → ``°C``)."""
    unit = unit.strip()
    return _UNIT_ALIASES.get(unit, unit)


def parse_path(v: Any, lengths: tuple[int, ...] = (2, 3)) -> Path:
    """``"/3312/0/5850"`` → ``(3312, 0, 5850)``; raises :class:`Invalid` unless the path has
    one of ``lengths`` parts (object, instance, resource, resource instance)."""
    names = {2: "/object/instance", 3: "/object/instance/resource",
             4: "/object/instance/resource/instance"}
    want = " or ".join(names[n] for n in lengths)
    m = _PATH.fullmatch(v.strip()) if isinstance(v, str) else None
    if m is None:
        raise Invalid(f"expected an LwM2M path ({want}, e.g. /3303/0), got {describe(v)}")
    path = tuple(int(p) for p in m.groups() if p is not None)
    if len(path) not in lengths:
        raise Invalid(f"{v!r} is not a {want} path")
    if any(p > 65535 for p in path):
        raise Invalid(f"{v!r}: LwM2M ids are 0..65535")
    return path


def path_text(path: Path) -> str:
    return "/" + "/".join(str(p) for p in path)


#: The latest time a device may claim (2100-01-01 UTC): beyond it a Time value is garbage,
#: and a record dated there would outlive every retention and sort after all real data.
LATEST_TIME = 4_102_444_800.0


def check_time(t: float | None, path: Path) -> float | None:
    """A Time value (epoch seconds) a device sent, as a record's ``ts``: ``None`` stays
    ``None`` (the caller falls back to another time), and so does 0 (a module whose clock
    was never set sends it); a time that is not finite, before 1970 or after
    :data:`LATEST_TIME` raises :class:`DecodeError` naming ``path``."""
    if t is None or t == 0:
        return None
    if not math.isfinite(t) or not 0 < t <= LATEST_TIME:
        raise DecodeError(f"{path_text(path)}: time {t!r:.30} is not a date between 1970 and "
                          "2100", str(t).encode()[:32])
    return t


# ---------------------------------------------------------------------------- the specs


@dataclass(frozen=True, slots=True)
class PointSpec:
    """A resource decoded into a reading; ``unit`` (the device's unit) wins over 5701."""

    quantity: str
    channel: str = ""
    unit: str | None = None
    scale: float = 1.0


@dataclass(frozen=True, slots=True)
class FlagSpec:
    """A boolean resource decoded into a level-style event: RAISED while it equals
    ``active``, CLEARED otherwise (the alarm engine keeps the edges)."""

    kind: EventKind
    code: str
    channel: str = ""
    level: Level = Level.ALARM
    active: bool = True
    message: str = ""


#: ``map`` value that drops a resource the defaults would decode.
IGNORE = "ignore"


@dataclass(frozen=True, slots=True)
class ResidualRule:
    """Which 3317 Current instances carry residual current: listed ``instances``, or a
    5750 Application Type in ``application_types`` (case-insensitive), or a 5701 unit in
    ``units``."""

    instances: frozenset[int] = frozenset()
    application_types: frozenset[str] = frozenset({"residual"})
    units: frozenset[str] = frozenset({"mA"})


@dataclass(frozen=True, slots=True)
class ThresholdSpec:
    """The write that sets the set point of ``rule`` (for ``channel``)."""

    rule: str
    channel: str
    path: Path
    factor: float = 1.0  # device unit → canonical unit
    offset: float = 0.0
    low: float = -math.inf  # allowed set points, canonical unit
    high: float = math.inf
    integer: bool = False

    def operation(self, value: float) -> Lwm2mOperation:
        """The write of ``value`` (canonical unit) in the device's unit; raises
        :class:`EncodeError` outside ``low..high``."""
        if not self.low <= value <= self.high:
            unit = QUANTITIES[ALARM_RULES[self.rule].quantity].unit
            raise EncodeError(f"{self.rule} set point {value:g} is outside "
                              f"{self.low:g}..{self.high:g}{' ' + unit if unit else ''}")
        raw = tidy((value - self.offset) / self.factor)
        return Lwm2mOperation("write", self.path, round(raw) if self.integer else raw)


@dataclass(frozen=True)
class IpsoOptions:
    """A checked ``lwm2m_ipso`` section; ``IpsoOptions()`` is what an empty one gives."""

    points: Mapping[Path, PointSpec | FlagSpec | str] = field(default_factory=dict)
    residual: ResidualRule = field(default_factory=ResidualRule)
    relay: Mapping[str, Path] = field(default_factory=lambda: {"": (3312, 0, 5850)})
    closed_value: bool = True
    thresholds: Mapping[tuple[str, str], ThresholdSpec] = field(default_factory=dict)
    commands: Mapping[str, Mapping[str, tuple[Lwm2mOperation, ...]]] = field(
        default_factory=dict)
    defaults: bool = True


# ---------------------------------------------------------------------------- checking


def _channel(v: Any) -> str:
    v = string()(v)
    try:
        return check_channel(v)
    except SchemaError as e:
        raise Invalid(str(e)) from None


def _quantity(v: Any) -> str:
    if v not in QUANTITIES:
        raise Invalid(f"{describe(v)} is not a canonical quantity (one of "
                      f"{quantity_names()})")
    return v


def _unit_for(quantity: str) -> Any:
    def check(v: Any) -> str:
        unit = device_unit(string()(v))
        conversion(quantity, unit)  # raises Invalid naming the known units
        return unit
    return check


def _value_path(v: Any) -> Path:
    """An instance path stands for its object's value resource (:data:`VALUE_RESOURCE`)."""
    path = parse_path(v)
    if len(path) == 2:
        resource = VALUE_RESOURCE.get(path[0])
        if resource is None:
            raise Invalid(f"object {path[0]} has no default value resource: give "
                          f"{path_text(path)}/<resource>")
        path += (resource,)
    return path


def _point(s: Section) -> PointSpec | None:
    quantity = s.get("quantity", _quantity)
    channel = s.get("channel", _channel, "")
    unit = s.get("unit", _unit_for(quantity), None) if quantity else s.raw("unit", None)
    scale = s.get("scale", number(), 1.0)
    s.finish(allowed_extra=("comment",))
    if quantity is None or channel is None or scale is None:
        return None
    return PointSpec(quantity, channel, unit, scale)


def _flag(s: Section) -> FlagSpec | None:
    kind = s.get("event", choice("alarm", "fault"))
    if kind == "alarm":
        codes, levels = set(ALARM_RULES) | {"fault_arc", "arc_flash"}, ("alarm", "warning")
    else:
        codes, levels = set(FAULT_CODES) - {"offline", "journal_near_full", "sink_lagging"}, (
            "fault",)
    code = s.get("code", string(r"[a-z][a-z0-9_]{0,63}", "a code such as fault_arc"))
    if kind is not None and code is not None and code not in codes \
            and not code.startswith("vendor_"):
        s.checker.error(s.path / "code", f"{code!r} is not one of {', '.join(sorted(codes))} "
                        "(or a vendor_... code)")
        code = None
    channel = s.get("channel", _channel, "")
    level = s.get("level", choice(*levels), levels[0])
    active = s.get("active", boolean, True)
    message = s.get("message", string(), "")
    s.finish(allowed_extra=("comment",))
    if None in (kind, code, channel, level, active, message):
        return None
    return FlagSpec(EventKind(kind), code, channel, Level(level), active, message)


def _map(section: Section) -> dict[Path, PointSpec | FlagSpec | str]:
    s = section.section("map")
    out: dict[Path, PointSpec | FlagSpec | str] = {}
    for key, raw in s.items():
        where = s.path / key
        path = s.checker.check(where, _value_path, key)
        if raw == IGNORE:
            spec: PointSpec | FlagSpec | str | None = IGNORE
        elif isinstance(raw, Mapping) and "quantity" in raw:
            spec = _point(Section(s.checker, where, raw))
        elif isinstance(raw, Mapping) and "event" in raw:
            spec = _flag(Section(s.checker, where, raw))
        else:
            s.checker.error(where, "expected {quantity: ..., channel: ...} (a reading), "
                            "{event: alarm|fault, code: ...} (an event) or ignore; got "
                            f"{describe(raw)}")
            continue
        if path is None or spec is None:
            continue
        if path in out:
            s.checker.error(where, f"{path_text(path)} is already mapped")
        out[path] = spec
    return out


def _string_set(v: Any) -> frozenset[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise Invalid(f"expected a list of strings, got {describe(v)}")
    return frozenset(v)


def _residual(section: Section) -> ResidualRule:
    if "residual" not in section:
        return ResidualRule()
    s = section.section("residual")
    d = ResidualRule()
    instances: set[int] = set()
    raw = s.raw("instances", [])
    if not isinstance(raw, list):
        s.checker.error(s.path / "instances", f"expected a list of /3317/<instance> paths, got "
                        f"{describe(raw)}")
        raw = []
    for i, item in enumerate(raw):
        path = s.checker.check(s.path / "instances" / i, parse_path, item, (2,))
        if path is not None and path[0] != 3317:
            s.checker.error(s.path / "instances" / i, f"{item!r} is not a 3317 Current "
                            "instance (map other objects with map:)")
        elif path is not None:
            instances.add(path[1])
    app_types = s.get("application_types", _string_set, d.application_types)
    units = s.get("units", _string_set, d.units)
    s.finish()
    return ResidualRule(frozenset(instances),
                        frozenset(a.strip().lower() for a in app_types or ()),
                        frozenset(device_unit(u) for u in units or ()))


def _per_channel(checker: Checker, where: Any, raw: Any, is_spec: Any,
                 what: str) -> list[tuple[str, Any, Any]]:
    """``[(channel, key path, spec)]``: one spec for the whole device, or a mapping of
    channel → spec."""
    if is_spec(raw):
        return [("", where, raw)]
    if not isinstance(raw, Mapping) or not raw:
        checker.error(where, f"expected {what}, or a mapping of channel → that; got "
                      f"{describe(raw)}")
        return []
    out = []
    for ch, spec in raw.items():
        if checker.check(where / str(ch), _channel, ch) is not None:
            out.append((str(ch), where / str(ch), spec))
    return out


def _relay(section: Section) -> dict[str, Path]:
    if "relay" not in section:
        return {"": (3312, 0, 5850)}
    raw = section.raw("relay")
    if raw is None:
        return {}
    out = {}
    for ch, where, spec in _per_channel(section.checker, section.path / "relay", raw,
                                        lambda r: isinstance(r, str),
                                        "a resource path such as /3312/0/5850"):
        path = section.checker.check(where, _value_path, spec)
        if path is not None:
            out[ch] = path
    return out


def _threshold(s: Section, rule: str, ch: str) -> ThresholdSpec | None:
    r = ALARM_RULES[rule]
    path = s.get("path", lambda v: parse_path(v, (3,)))
    unit = s.get("unit", _unit_for(r.quantity), None)
    factor, offset = conversion(r.quantity, unit)
    low = s.get("min", number(), float(r.low))
    high = s.get("max", number(), float(r.high))
    if low is not None and high is not None and low > high:
        s.checker.error(s.path / "min", f"{low:g} is above max {high:g}")
    type_ = s.get("type", choice("float", "integer"), "float")
    s.finish(allowed_extra=("comment",))
    if None in (path, low, high, type_):
        return None
    return ThresholdSpec(rule, ch, path, factor, offset, low, high, type_ == "integer")


def _thresholds(section: Section) -> dict[tuple[str, str], ThresholdSpec]:
    s = section.section("thresholds")
    out: dict[tuple[str, str], ThresholdSpec] = {}
    for rule, raw in s.items():
        if rule not in ALARM_RULES:
            s.checker.error(s.path / rule, f"is not an alarm rule; one of {', '.join(ALARM_RULES)}")
            continue
        for ch, where, spec in _per_channel(
                s.checker, s.path / rule, raw,
                lambda r: isinstance(r, str) or isinstance(r, Mapping) and "path" in r,
                "a resource path, or {path, unit, min, max, type}"):
            spec = {"path": spec} if isinstance(spec, str) else spec
            t = _threshold(Section(s.checker, where, spec), rule, ch)
            if t is not None:
                out[(rule, ch)] = t
    return out


def _scalar(v: Any) -> Any:
    if v is not None and not isinstance(v, (bool, int, float, str)):
        raise Invalid(f"expected a number, a string or true/false, got {describe(v)}")
    return v


def _operation(s: Section) -> Lwm2mOperation | None:
    kinds = [k for k in ("write", "execute") if k in s]
    if len(kinds) != 1:
        s.checker.error(s.path, "expected {write: /o/i/r, value: ...} or "
                        "{execute: /o/i/r, args: ...}")
        for k in s.data:
            s.raw(k, None)
        return None
    path = s.get(kinds[0], lambda v: parse_path(v, (3,)))
    if kinds[0] == "write":
        value = s.get("value", _scalar)
        s.finish(allowed_extra=("comment",))
        return Lwm2mOperation("write", path, value) if path and value is not None else None
    args = s.get("args", string(), None)
    s.finish(allowed_extra=("comment",))
    return Lwm2mOperation("execute", path, args) if path else None


def _commands(section: Section) -> dict[str, dict[str, tuple[Lwm2mOperation, ...]]]:
    s = section.section("commands")
    out: dict[str, dict[str, tuple[Lwm2mOperation, ...]]] = {}
    for action, raw in s.items():
        where = s.path / action
        if action == "set_threshold":
            s.checker.error(where, "set points are written through thresholds:")
            continue
        if action not in COMMAND_ACTIONS:
            s.checker.error(where, f"is not a command action; one of {', '.join(COMMAND_ACTIONS)}")
            continue
        per: dict[str, tuple[Lwm2mOperation, ...]] = {}
        for ch, at, spec in _per_channel(
                s.checker, where, raw,
                lambda r: isinstance(r, list) or isinstance(r, Mapping)
                and bool({"write", "execute"} & set(r)),
                "an operation ({write: /o/i/r, value: ...} or {execute: /o/i/r}) or a list"):
            items = list(enumerate(spec)) if isinstance(spec, list) else [(None, spec)]
            ops = [_operation(Section(s.checker, at / i if i is not None else at, op))
                   for i, op in items]
            if ops and None not in ops:
                per[ch] = tuple(ops)  # type: ignore[arg-type]
            elif not ops:
                s.checker.error(at, "expected at least one operation")
        out[action] = per
    return out


def check_options(section: Section) -> IpsoOptions:
    """Check ``models.<name>`` of type ``lwm2m_ipso``; every option is optional."""
    opts = IpsoOptions(
        points=_map(section),
        residual=_residual(section),
        relay=_relay(section),
        closed_value=section.get("closed_value", boolean, True),
        thresholds=_thresholds(section),
        commands=_commands(section),
        defaults=section.get("defaults", boolean, True),
    )
    section.finish(allowed_extra=("comment",))
    return opts
