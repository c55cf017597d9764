"""Built-in plugin: the ``json_map`` device model, vendors' JSON payloads mapped by
configuration onto the canonical schema (no code per vendor).

::

    models:
      acme:
        type: json_map
        timestamp: {path: ts, format: epoch_ms}        # epoch_s | epoch_ms | iso8601 | strptime
        points:
          - {path: data.temp[0], quantity: temperature, channel: T1, scale: 0.1}
          - {path: data.ia, quantity: current, channel: A, unit: mA}
          - {path: data.leak, quantity: residual_current, channel: L1}
        alarms:
          - {path: alarm.temp1, code: temperature, channel: T1}
          - {path: state, equals: "ARC", code: fault_arc, level: alarm}
        faults:
          - {path: fault.probe1, code: channel_open, channel: T1}
        commands:                                      # action → JSON template sent down
          reset: {cmd: "reset"}
          set_threshold: {cmd: "set", item: "{rule}", value: "{value}"}
        command_id: id                                 # field carrying the correlation id
        result: {id: id, status: code, ok: [0, "ok"], detail: msg}

Paths are dotted keys with ``[n]`` list indices. A point missing from a payload is simply
not reported (vendors send partial messages); a point present with a value that is not a
number is an error for the whole payload. ``value = raw × scale + offset``, then converted
from ``unit`` to the quantity's canonical unit.

Alarm and fault fields are level-style, as the alarm engine expects: a field that is present
yields an event RAISED when it is set (truthy, or equal to ``equals``) and CLEARED when it is
not; the engine keeps only the edges. A fault on a channel marks that channel's readings in
the same payload ``bad``.

A payload may be one object or a list of objects (a batch); each is decoded alike. The
model is pure and keeps no state: one instance serves every device that uses it.

(Slightly over 500 lines: the map's validation and the decoder it compiles to are kept
together, so each option's check sits beside the code that applies it.)
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson

from hub import hookimpl
from hub.contracts import DecodeError, DeviceModelType, EncodeError
from hub.model import (
    ALARM_RULES,
    FAULT_CODES,
    QUANTITIES,
    Command,
    Event,
    EventKind,
    EventState,
    Level,
    Quality,
    Reading,
    Record,
    SchemaError,
    check_channel,
    quantity_names,
)
from hub.validate import Invalid, Section, choice, describe, integer, number, string
from plugins.devices.json_map_block import BlockDecoder

__all__ = [
    "CommandOutcome",
    "JsonMapModel",
    "JsonMapOptions",
    "check_options",
    "parse_path",
]

EXCERPT = 64  # bytes of a bad payload kept for the log line
_SEGMENT = re.compile(r"([^.\[\]]+)((?:\[\d+\])*)")


def parse_path(text: Any) -> tuple[str | int, ...]:
    """``"data.temp[0].v"`` → ``("data", "temp", 0, "v")``; raises :class:`Invalid`."""
    if not isinstance(text, str) or not text:
        raise Invalid(f"expected a path such as data.temp[0], got {describe(text)}")
    parts: list[str | int] = []
    for segment in text.split("."):
        m = _SEGMENT.fullmatch(segment)
        if m is None:
            raise Invalid(f"{text!r} is not a path (dotted keys with [n] indices, "
                          "e.g. data.temp[0])")
        parts.append(m.group(1))
        parts += [int(i) for i in re.findall(r"\[(\d+)\]", m.group(2))]
    return tuple(parts)


_MISSING = object()


def _lookup(obj: Any, path: tuple[str | int, ...]) -> Any:
    for key in path:
        if isinstance(key, int):
            if not isinstance(obj, list) or key >= len(obj):
                return _MISSING
        elif not isinstance(obj, dict) or key not in obj:
            return _MISSING
        obj = obj[key]
    return obj


def _reading_constructor() -> Any:
    """``Reading(device, quantity, value, ts, channel, quality)`` at half the cost: a frozen
    dataclass' ``__init__`` goes through ``object.__setattr__`` per field, and nine readings
    a message made it a third of this model's decode time. Reading has no
    ``__post_init__``, so setting its slots directly builds the same, equal object."""
    new = object.__new__
    sd, sq, sv, st, sc, sy = (Reading.__dict__[k].__set__ for k in
                              ("device", "quantity", "value", "ts", "channel", "quality"))

    def reading(device: str, quantity: str, value: float, ts: float, channel: str,
                quality: Quality) -> Reading:
        r = new(Reading)
        sd(r, device)
        sq(r, quantity)
        sv(r, value)
        st(r, ts)
        sc(r, channel)
        sy(r, quality)
        return r

    return reading


_reading = _reading_constructor()


def _path_text(path: tuple[str | int, ...]) -> str:
    return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in path).lstrip(".")


# ---------------------------------------------------------------------------- options


@dataclass(frozen=True)
class PointSpec:
    path: tuple[str | int, ...]
    quantity: str
    channel: str = ""
    scale: float = 1.0
    offset: float = 0.0
    factor: float = 1.0  # vendor unit → canonical unit
    unit_offset: float = 0.0


@dataclass(frozen=True)
class FlagSpec:
    path: tuple[str | int, ...]
    kind: EventKind
    code: str
    channel: str = ""
    level: Level = Level.ALARM
    equals: Any = _MISSING  # set when the field equals this; else when it is truthy
    message: str = ""


@dataclass(frozen=True)
class TimestampSpec:
    path: tuple[str | int, ...]
    format: str = "epoch_s"  # epoch_s | epoch_ms | iso8601 | a strptime format
    tz: timezone = UTC  # for times that carry no offset


@dataclass(frozen=True)
class ResultSpec:
    """Where a command result (on the ack topic) keeps its fields."""

    id: tuple[str | int, ...] = ("id",)
    status: tuple[str | int, ...] = ("status",)
    ok: tuple[Any, ...] = ("ok", "success", "succeeded", 0, True)
    detail: tuple[str | int, ...] = ("detail",)


@dataclass(frozen=True)
class JsonMapOptions:
    points: tuple[PointSpec, ...] = ()
    flags: tuple[FlagSpec, ...] = ()
    timestamp: TimestampSpec | None = None
    commands: Mapping[str, Any] = field(default_factory=dict)
    command_id: tuple[str | int, ...] = ("id",)
    result: ResultSpec = field(default_factory=ResultSpec)
    max_payload: int = 65536
    heartbeat_interval: float | None = None
    timeout_count: int | None = None


def _quantity(v: Any) -> str:
    if v not in QUANTITIES:
        raise Invalid(f"{describe(v)} is not a canonical quantity (one of "
                      f"{quantity_names()})")
    return v


def _channel(v: Any) -> str:
    v = string()(v)
    try:
        return check_channel(v)
    except SchemaError as e:
        raise Invalid(str(e)) from None


def _utc_offset(v: Any) -> timezone:
    m = re.fullmatch(r"([+-])(\d\d):?(\d\d)", v) if isinstance(v, str) else None
    if m is None:
        raise Invalid(f"expected an offset such as +08:00, got {describe(v)}")
    delta = timedelta(hours=int(m.group(2)), minutes=int(m.group(3)))
    return timezone(-delta if m.group(1) == "-" else delta)


def _points(section: Section) -> tuple[PointSpec, ...]:
    from plugins.protocols.modbus.values import conversion

    raw = section.raw("points", [])
    if not isinstance(raw, list):
        section.checker.error(section.path / "points", f"expected a list, got {describe(raw)}")
        return ()
    out = []
    for i, item in enumerate(raw):
        s = Section(section.checker, section.path / "points" / i, item)
        path = s.get("path", parse_path)
        quantity = s.get("quantity", _quantity)
        channel = s.get("channel", _channel, "")
        scale = s.get("scale", number(), 1.0)
        offset = s.get("offset", number(), 0.0)
        unit = s.get("unit", string(), None)
        s.finish()
        factor, unit_offset = 1.0, 0.0
        if quantity is not None and unit is not None:
            factor, unit_offset = s.checker.check(s.path / "unit", conversion, quantity, unit,
                                                  default=(1.0, 0.0))
        if path is not None and quantity is not None and channel is not None:
            out.append(PointSpec(path, quantity, channel, scale, offset, factor, unit_offset))
    return tuple(out)


def _flags(section: Section, key: str, kind: EventKind) -> tuple[FlagSpec, ...]:
    raw = section.raw(key, [])
    if not isinstance(raw, list):
        section.checker.error(section.path / key, f"expected a list, got {describe(raw)}")
        return ()
    levels = ("alarm", "warning") if kind is EventKind.ALARM else ("fault",)
    codes = (set(ALARM_RULES) | {"fault_arc", "arc_flash"} if kind is EventKind.ALARM
             else set(FAULT_CODES) - {"offline", "journal_near_full", "sink_lagging"})
    out = []
    for i, item in enumerate(raw):
        s = Section(section.checker, section.path / key / i, item)
        path = s.get("path", parse_path)
        code = s.get("code", string(r"[a-z][a-z0-9_]{0,63}", "a code such as temperature"))
        if code is not None and code not in codes and not code.startswith("vendor_"):
            s.checker.error(s.path / "code", f"{code!r} is not one of "
                            f"{', '.join(sorted(codes))} (or a vendor_... code)")
            code = None
        channel = s.get("channel", _channel, "")
        level = s.get("level", choice(*levels), levels[0])
        equals = s.raw("equals", _MISSING)
        message = s.get("message", string(), "")
        s.finish()
        if path is not None and code is not None and channel is not None:
            out.append(FlagSpec(path, kind, code, channel, Level(level), equals, message))
    return tuple(out)


def _timestamp(section: Section) -> TimestampSpec | None:
    if "timestamp" not in section:
        return None
    s = section.section("timestamp")
    path = s.get("path", parse_path)
    fmt = s.get("format", string(), "epoch_s")
    if fmt is not None and fmt not in ("epoch_s", "epoch_ms", "iso8601") and "%" not in fmt:
        s.checker.error(s.path / "format", f"{fmt!r} is not epoch_s, epoch_ms, iso8601 or a "
                        "strptime format such as %Y-%m-%d %H:%M:%S")
    tz = s.get("utc_offset", _utc_offset, UTC)
    s.finish()
    return TimestampSpec(path, fmt, tz) if path is not None and fmt is not None else None


def _commands(section: Section) -> dict[str, Any]:
    from hub.model import COMMAND_ACTIONS

    s = section.section("commands")
    out = {}
    for action, template in s.items():
        if action not in COMMAND_ACTIONS:
            s.checker.error(s.path / action, f"{action!r} is not a command action (one of "
                            f"{', '.join(COMMAND_ACTIONS)})")
        elif not isinstance(template, dict):
            s.checker.error(s.path / action, "expected a JSON object template, got "
                            f"{describe(template)}")
        else:
            out[action] = template
    return out


def _result(section: Section) -> ResultSpec:
    if "result" not in section:
        return ResultSpec()
    s = section.section("result")
    d = ResultSpec()
    ok = s.raw("ok", list(d.ok))
    spec = ResultSpec(
        id=s.get("id", parse_path, d.id), status=s.get("status", parse_path, d.status),
        ok=tuple(ok) if isinstance(ok, list) else (ok,),
        detail=s.get("detail", parse_path, d.detail))
    s.finish()
    return spec


def check_options(section: Section) -> JsonMapOptions:
    """Check ``models.<name>`` of type ``json_map``; every error names its key path."""
    opts = JsonMapOptions(
        points=_points(section),
        flags=_flags(section, "alarms", EventKind.ALARM) + _flags(section, "faults",
                                                                  EventKind.FAULT),
        timestamp=_timestamp(section),
        commands=_commands(section),
        command_id=section.get("command_id", parse_path, ("id",)),
        result=_result(section),
        max_payload=section.get("max_payload", integer(16, 16 << 20), 65536),
        heartbeat_interval=section.get("heartbeat_interval", number(1, 86400, "s"), None),
        timeout_count=section.get("timeout_count", integer(1, 100), None),
    )
    section.finish()
    if not opts.points and not opts.flags:
        section.checker.error(section.path, "a json_map model needs points, alarms or faults")
    return opts


# ---------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class CommandOutcome:
    """What a device said about a command: its correlation id (``None`` if the result
    carries none), success, and the device's words."""

    command_id: str | None
    ok: bool
    detail: str = ""


class JsonMapModel:
    """The device model of one JSON mapping (type ``json_map``)."""

    def __init__(self, options: JsonMapOptions) -> None:
        self.options = options
        self.heartbeat_interval = options.heartbeat_interval
        self.timeout_count = options.timeout_count
        # Per point, worked out once per model instead of per reading: the top-level key
        # (None: a nested path, looked up in full) and whether the value is taken as sent.
        self._points = tuple(
            (p, p.path[0] if len(p.path) == 1 and isinstance(p.path[0], str) else None,
             p.scale == 1.0 and p.offset == 0.0 and p.factor == 1.0 and p.unit_offset == 0.0)
            for p in options.points)
        self._block = BlockDecoder(self)  # decode_block's compiled form
        # called once per message on the ingest path: the bound method, not a hop through it
        self.decode_block = self._block.decode  # type: ignore[method-assign]

    def decode_block(self, device: str, payload: bytes, received_at: float
                     ) -> Sequence[Record]:
        """:meth:`decode` for the hub's ingest path: the same records, as one
        :class:`hub.blocks.ReadingBlock` when the payload is one object with readings only
        (no alarm or fault field present, every value a finite number taken as sent), else
        :meth:`decode`'s list (:mod:`plugins.devices.json_map_block`). Raises as
        :meth:`decode` does."""
        return self._block.decode(device, payload, received_at)

    def decode(self, device: str, payload: bytes, received_at: float) -> list[Record]:
        """Records from one JSON payload (an object, or a list of objects); raises
        :class:`DecodeError` for bad JSON, a value that is not a number, or a bad time."""
        if len(payload) > self.options.max_payload:
            raise DecodeError(f"payload of {len(payload)} bytes exceeds max_payload "
                              f"{self.options.max_payload}", payload[:EXCERPT])
        try:
            # orjson is 4-5 times faster on a device's message; it is stricter (NaN literals,
            # integers past 64 bits, lone surrogates), so what it refuses goes through json,
            # whose verdict and results stay the model's behaviour
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError:
            doc = _MISSING
        try:
            if doc is _MISSING:
                # decoding first skips json's encoding detection on bytes (UTF-8, RFC 8259)
                doc = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise DecodeError(f"not JSON: {e}", payload[:EXCERPT]) from None
        except RecursionError:  # json recurses per nesting level: "[[[[..." in a 64 KiB payload
            raise DecodeError("JSON nested too deeply", payload[:EXCERPT]) from None
        items = doc if isinstance(doc, list) else [doc]
        out: list[Record] = []
        for item in items:
            if not isinstance(item, dict):
                raise DecodeError(f"expected a JSON object, got {type(item).__name__}",
                                  payload[:EXCERPT])
            out += self._decode_one(device, item, received_at, payload)
        return out

    def _decode_one(self, device: str, doc: dict, received_at: float,
                    payload: bytes) -> list[Record]:
        ts = self._time(doc, received_at, payload)
        events: list[Record] = []
        bad_channels: set[str] = set()
        for flag in self.options.flags:
            raw = _lookup(doc, flag.path)
            if raw is _MISSING or raw is None:
                continue
            on = raw == flag.equals if flag.equals is not _MISSING else bool(raw) and raw != "0"
            events.append(Event(device, flag.kind, flag.code,
                                EventState.RAISED if on else EventState.CLEARED, ts,
                                flag.level if flag.kind is EventKind.ALARM else Level.FAULT,
                                flag.channel, source="device", message=flag.message))
            if on and flag.kind is EventKind.FAULT and flag.channel:
                bad_channels.add(flag.channel)
        readings: list[Record] = []
        good = Quality.GOOD
        for p, key, plain in self._points:
            raw = _lookup(doc, p.path) if key is None else doc.get(key, _MISSING)
            if raw is _MISSING or raw is None:
                continue
            if plain and type(raw) is float and raw - raw == 0.0:
                # the common case: a finite float taken as sent (what the general path
                # below gives it, without its checks)
                readings.append(_reading(device, p.quantity, raw, ts, p.channel,
                                        Quality.BAD if bad_channels and p.channel in
                                        bad_channels else good))
                continue
            if isinstance(raw, bool):
                raw = float(raw)
            elif isinstance(raw, str):
                try:
                    raw = float(raw)  # some vendors quote their numbers
                except ValueError:
                    raw = None
            try:
                # an int of hundreds of digits is valid JSON; float() of it overflows
                if not isinstance(raw, (int, float)) or not math.isfinite(raw):
                    raise ValueError
                if p.scale == 1.0 and p.offset == 0.0 and p.factor == 1.0 \
                        and p.unit_offset == 0.0:
                    value = float(raw)  # the common case: no arithmetic, so no float noise
                else:
                    value = float(f"{(raw * p.scale + p.offset) * p.factor + p.unit_offset:.12g}")
                if not math.isfinite(value):
                    raise ValueError  # scaled out of range
            except (ValueError, OverflowError):
                raise DecodeError(f"{_path_text(p.path)}: expected a number for {p.quantity}, "
                                  f"got {_excerpt_value(_lookup(doc, p.path))}",
                                  payload[:EXCERPT]) from None
            quality = Quality.BAD if p.channel and p.channel in bad_channels else Quality.GOOD
            readings.append(Reading(device, p.quantity, value, ts, p.channel, quality))
        return readings + events

    def _time(self, doc: dict, received_at: float, payload: bytes) -> float:
        spec = self.options.timestamp
        if spec is None:
            return received_at
        raw = _lookup(doc, spec.path)
        if raw is _MISSING or raw is None:
            return received_at
        try:
            if spec.format in ("epoch_s", "epoch_ms"):
                if isinstance(raw, bool):
                    raise ValueError("a boolean is not a time")
                value = float(raw)
                if not math.isfinite(value):
                    raise ValueError("not finite")
                return value / 1000 if spec.format == "epoch_ms" else value
            if not isinstance(raw, str):
                raise ValueError(f"expected a string, got {describe(raw)}")
            if spec.format == "iso8601":
                t = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            else:
                t = datetime.strptime(raw, spec.format)
            if t.tzinfo is None:
                t = t.replace(tzinfo=spec.tz)
            return t.timestamp()
        except (TypeError, ValueError, OverflowError) as e:
            raise DecodeError(f"{_path_text(spec.path)}: {_excerpt_value(raw)} is not a "
                              f"{spec.format} time ({e})", payload[:EXCERPT]) from None

    # ---- commands -----------------------------------------------------------------------

    @property
    def actions(self) -> frozenset[str]:
        return frozenset(self.options.commands)

    def encode_command(self, device: str, command: Command) -> bytes:
        """The JSON the device expects for ``command``: the action's template with
        ``{name}`` placeholders filled from ``command.params`` (and ``{channel}``,
        ``{device}``), plus the correlation id at ``command_id``."""
        template = self.options.commands.get(command.action)
        if template is None:
            raise EncodeError(f"{command.action} is not supported by this json_map model "
                              f"(it has: {', '.join(sorted(self.options.commands)) or 'none'})")
        values = {"channel": command.channel, "device": device, "action": command.action,
                  **command.params}
        body = _fill(template, values)
        _set_path(body, self.options.command_id, command.id)
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()

    def decode_command_result(self, payload: bytes, sent: bytes | None = None) -> CommandOutcome:
        """The outcome a device published on its ack topic; raises :class:`DecodeError`.
        ``sent`` (the published command) is not needed: the result names its command."""
        try:
            doc = json.loads(payload)
        except (UnicodeDecodeError, ValueError) as e:
            raise DecodeError(f"command result is not JSON: {e}", payload[:EXCERPT]) from None
        except RecursionError:
            raise DecodeError("command result: JSON nested too deeply",
                              payload[:EXCERPT]) from None
        if not isinstance(doc, dict):
            raise DecodeError("command result is not a JSON object", payload[:EXCERPT])
        spec = self.options.result
        cid = _lookup(doc, spec.id)
        status = _lookup(doc, spec.status)
        detail = _lookup(doc, spec.detail)
        return CommandOutcome(None if cid is _MISSING else str(cid),
                              status is not _MISSING and status in spec.ok,
                              "" if detail is _MISSING else str(detail))


def _excerpt_value(v: Any) -> str:
    """A JSON value for an error message, cut short (a 4,000-digit number stays readable)."""
    text = describe(v)
    return text if len(text) <= 40 else text[:40] + " …"


def _fill(template: Any, values: Mapping[str, Any]) -> Any:
    """``template`` with ``"{name}"`` strings replaced: a string that is exactly one
    placeholder takes the value itself (a number stays a number)."""
    if isinstance(template, dict):
        return {k: _fill(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill(v, values) for v in template]
    if isinstance(template, str) and "{" in template:
        m = re.fullmatch(r"\{(\w+)\}", template)
        try:
            if m:
                return values[m.group(1)]
            return template.format_map(values)
        except KeyError as e:
            raise EncodeError(f"the command needs the parameter {e.args[0]}") from None
    return template


def _set_path(doc: dict, path: tuple[str | int, ...], value: Any) -> None:
    for key in path[:-1]:
        doc = doc.setdefault(key, {})
    doc[path[-1]] = value


def factory(options: JsonMapOptions | None) -> JsonMapModel:
    if options is None:
        raise ValueError("the json_map model needs its mapping: declare it under models: "
                         "with type: json_map and points/alarms/faults")
    return JsonMapModel(options)


@hookimpl
def hub_register_device_models() -> list[DeviceModelType]:
    return [DeviceModelType("json_map", factory, check_options,
                            "JSON payloads mapped onto the canonical schema by configuration")]
