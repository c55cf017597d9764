"""Commands of a register map: the ``commands`` section, and a Command → request frames.

In the map, each action is one write, a list of writes (sent one after the other, each
waiting for its echo), or the same per channel::

    commands:
      reset: {function: 5, address: 0x0000}                      # coil ON (FF00)
      silence: {function: 6, address: 0x0100, value: 1}
      trip: [{function: 6, address: 0x0110, value: 0x5A5A}, {function: 5, address: 3}]
      disable_channel: {T1: {function: 6, address: 0x0120, value: 0}, T2: ...}
      set_threshold:
        residual_current: {function: 6, address: 0x0200, unit: mA}
        temperature: {T1: {function: 6, address: 0x0201, type: s16, scale: 0.1}, T2: ...}

``set_threshold`` is keyed by alarm rule (:data:`hub.model.ALARM_RULES`); its write turns
the value (in the canonical unit) into the register value with ``unit``, ``scale``,
``offset`` and ``type``, and refuses values outside ``min``..``max`` (by default the range
T/CFPA 023-2023 allows for that rule).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from hub.contracts import EncodeError
from hub.model import ALARM_RULES, COMMAND_ACTIONS, QUANTITIES, Command
from hub.validate import (
    Checker,
    Invalid,
    Path,
    Section,
    choice,
    describe,
    integer,
    number,
    string,
)
from plugins.devices.modbus.registermap import channel, nonzero, orders_of
from plugins.protocols.modbus import rtu
from plugins.protocols.modbus.values import TYPES, conversion, encode, tidy

if TYPE_CHECKING:
    from plugins.devices.modbus.registermap import RegisterMap

__all__ = ["ThresholdWrite", "Write", "check_commands", "command_requests", "supported_actions"]

_WORD_TYPES = ("u16", "s16", "u32", "s32", "f32")
_WRITE_KEYS = {"function", "address", "value", "values"}


@dataclass(frozen=True, slots=True)
class Write:
    """A fixed write: function 05 (``values`` is ``(0xFF00,)`` for ON or ``(0,)``), 06 (one
    register) or 16 (several registers)."""

    function: int
    address: int
    values: tuple[int, ...]

    def request(self, slave: int) -> bytes:
        if self.function == rtu.WRITE_SINGLE_COIL:
            return rtu.write_coil(slave, self.address, self.values[0] == 0xFF00)
        if self.function == rtu.WRITE_SINGLE_REGISTER:
            return rtu.write_register(slave, self.address, self.values[0])
        return rtu.write_registers(slave, self.address, self.values)


@dataclass(frozen=True, slots=True)
class ThresholdWrite:
    """The write that sets the set point of ``rule`` (for ``channel``)."""

    rule: str
    channel: str
    function: int
    address: int
    type: str = "u16"
    byte_order: str = "big"
    word_order: str = "big"
    scale: float = 1.0
    offset: float = 0.0
    factor: float = 1.0  # device unit → canonical unit, as for points
    unit_offset: float = 0.0
    low: float = -math.inf  # allowed values, canonical unit
    high: float = math.inf

    def registers(self, value: float) -> tuple[int, ...]:
        """The register contents for ``value`` (canonical unit), rounded to the register's
        resolution; raises :class:`EncodeError` outside ``low..high`` or the type."""
        if not self.low <= value <= self.high:
            unit = QUANTITIES[ALARM_RULES[self.rule].quantity].unit
            raise EncodeError(f"{self.rule} set point {value:g} is outside "
                              f"{self.low:g}..{self.high:g}{' ' + unit if unit else ''}")
        raw = ((value - self.unit_offset) / self.factor - self.offset) / self.scale
        return encode(tidy(raw) if self.type == "f32" else round(raw), self.type,
                      self.byte_order, self.word_order)

    def request(self, slave: int, value: float) -> bytes:
        regs = self.registers(value)
        if self.function == rtu.WRITE_SINGLE_REGISTER:
            return rtu.write_register(slave, self.address, regs[0])
        return rtu.write_registers(slave, self.address, regs)


# ---- the map's `commands` section -------------------------------------------------------


def check_commands(s: Section, orders: tuple[str, str]) -> tuple[
        dict[str, Mapping[str, tuple[Write, ...]]], dict[tuple[str, str], ThresholdWrite]]:
    """Parse ``commands``: ``({action: {channel: writes}}, {(rule, channel): write})``."""
    commands: dict[str, Mapping[str, tuple[Write, ...]]] = {}
    thresholds: dict[tuple[str, str], ThresholdWrite] = {}
    for action, raw in s.items():
        path = s.path / action
        if action == "set_threshold":
            _thresholds(Section(s.checker, path, raw), orders, thresholds)
        elif action not in COMMAND_ACTIONS:
            s.checker.error(path, f"is not a command action; one of {', '.join(COMMAND_ACTIONS)}")
        else:
            per_channel = {ch: tuple(_write(Section(s.checker, p, w), orders) for p, w in writes)
                           for ch, writes in _per_channel(s.checker, path, raw, list_ok=True)}
            commands[action] = MappingProxyType(per_channel)
    return commands, thresholds


def _per_channel(checker: Checker, path: Path, raw: Any,
                 list_ok: bool) -> list[tuple[str, list[tuple[Path, Any]]]]:
    """``[(channel, [(path, write spec), ...]), ...]``: a write (a mapping with
    ``function``), a list of writes, or a mapping of channel → either."""
    def writes(p: Path, spec: Any) -> list[tuple[Path, Any]]:
        if list_ok and isinstance(spec, list) and spec:
            return [(p / i, w) for i, w in enumerate(spec)]
        return [(p, spec)]

    # A mapping with write keys is one write (even with function missing, which _write reports).
    if isinstance(raw, list) and list_ok or isinstance(raw, Mapping) and _WRITE_KEYS & set(raw):
        return [("", writes(path, raw))]
    if not isinstance(raw, Mapping) or not raw:
        what = "a write, a list of writes" if list_ok else "a write"
        checker.error(path, f"expected {what} (with function and address), or a mapping of "
                      f"channel → write; got {describe(raw)}")
        return []
    out = []
    for ch, spec in raw.items():
        if checker.check(path / str(ch), channel, ch) is not None:
            out.append((ch, writes(path / str(ch), spec)))
    return out


def _write_function(*allowed: int) -> Any:
    def check(v: Any) -> int:
        if isinstance(v, bool) or v not in allowed:
            names = ", ".join(str(f) for f in allowed)
            raise Invalid(f"{describe(v)} is not a write function ({names})")
        return v
    return check


def _coil(v: Any) -> bool:
    if v in (True, False, 0xFF00):  # True/False also match 1/0
        return bool(v)
    raise Invalid(f"expected on or off (true/false), got {describe(v)}")


def _register_list(v: Any) -> tuple[int, ...]:
    if not isinstance(v, list) or not 1 <= len(v) <= rtu.MAX_WRITE_REGISTERS:
        raise Invalid(f"expected a list of 1..{rtu.MAX_WRITE_REGISTERS} register values")
    return tuple(integer(-32768, 65535)(x) & 0xFFFF for x in v)


def _typed(value: Any, type_: str, orders: tuple[str, str]) -> tuple[int, ...]:
    try:
        return encode(value, type_, *orders)
    except EncodeError as e:
        raise Invalid(str(e)) from None


def _write(s: Section, orders: tuple[str, str]) -> Write:
    function = s.get("function", _write_function(5, 6, 16))
    address = s.get("address", integer(0, 65535))
    values: tuple[int, ...] = ()
    if function == rtu.WRITE_SINGLE_COIL:
        values = (0xFF00 if s.get("value", _coil, True) else 0,)
    elif function == rtu.WRITE_SINGLE_REGISTER:
        v = s.get("value", integer(-32768, 65535))
        values = (v & 0xFFFF,) if v is not None else ()
    elif function == rtu.WRITE_MULTIPLE_REGISTERS:
        if "values" in s:
            if "value" in s or "type" in s:
                s.checker.error(s.path / "values", "give either values or value with type")
                s.raw("value", None), s.raw("type", None)  # reported once, here
            values = s.get("values", _register_list) or ()
        else:
            value = s.get("value", number())
            type_ = s.get("type", choice(*_WORD_TYPES))
            typed_orders = orders_of(s, orders)
            if value is not None and type_ is not None:
                if type_ != "f32" and value == int(value):
                    value = int(value)
                values = s.checker.check(s.path / "value", _typed, value, type_, typed_orders,
                                         default=())
    s.finish(allowed_extra=("comment",))
    return Write(function, address, values)


def _thresholds(s: Section, orders: tuple[str, str],
                out: dict[tuple[str, str], ThresholdWrite]) -> None:
    for rule, raw in s.items():
        path = s.path / rule
        if rule not in ALARM_RULES:
            s.checker.error(path, f"is not an alarm rule; one of {', '.join(ALARM_RULES)}")
            continue
        for ch, writes in _per_channel(s.checker, path, raw, list_ok=False):
            for p, spec in writes:
                out[(rule, ch)] = _threshold(Section(s.checker, p, spec), rule, ch, orders)


def _threshold(s: Section, rule: str, ch: str, orders: tuple[str, str]) -> ThresholdWrite:
    r = ALARM_RULES[rule]
    function = s.get("function", _write_function(6, 16))
    address = s.get("address", integer(0, 65535))
    type_ = s.get("type", choice(*_WORD_TYPES), "u16")
    if function == rtu.WRITE_SINGLE_REGISTER and TYPES.get(type_, 1) > 1:
        s.checker.error(s.path / "type", f"{type_} takes two registers: use function 16")
    byte_order, word_order = orders_of(s, orders)
    factor, unit_offset = s.checker.check(s.path / "unit", conversion, r.quantity,
                                          s.get("unit", string(), None), default=(1.0, 0.0))
    low = s.get("min", number(), float(r.low))
    high = s.get("max", number(), float(r.high))
    if low is not None and high is not None and low > high:
        s.checker.error(s.path / "min", f"{low:g} is above max {high:g}")
    scale = s.get("scale", nonzero, 1.0)
    offset = s.get("offset", number(), 0.0)
    s.finish(allowed_extra=("comment",))
    return ThresholdWrite(rule, ch, function, address, type_, byte_order, word_order,
                          scale, offset, factor, unit_offset, low, high)


# ---- Command → requests -----------------------------------------------------------------


def supported_actions(regmap: RegisterMap) -> frozenset[str]:
    """The command actions the map can encode."""
    return frozenset(regmap.commands) | ({"set_threshold"} if regmap.thresholds else set())


def command_requests(regmap: RegisterMap, command: Command, slave: int) -> list[bytes]:
    """The write requests that carry out ``command``, in the order to send them."""
    action = command.action
    if action not in COMMAND_ACTIONS:
        raise EncodeError(f"unknown command action {action!r}")
    if action not in supported_actions(regmap):
        has = ", ".join(sorted(supported_actions(regmap))) or "none"
        raise EncodeError(f"{regmap.file} has no {action} command (it has: {has})")
    if action == "set_threshold":
        return [_threshold_request(regmap, command, slave)]
    if command.params:
        raise EncodeError(f"{action} takes no params (got {', '.join(command.params)})")
    by_channel = regmap.commands[action]
    writes = by_channel.get(command.channel)
    if writes is None:
        raise EncodeError(_channel_problem(action, command.channel, list(by_channel)))
    return [w.request(slave) for w in writes]


def _channel_problem(action: str, ch: str, channels: list[str]) -> str:
    if "" in channels:
        return f"{action} acts on the whole device and takes no channel (got {ch!r})"
    known = ", ".join(channels)
    if not ch:
        return f"{action} needs a channel: one of {known}"
    return f"{action} has no channel {ch!r}; one of {known}"


def _threshold_request(regmap: RegisterMap, command: Command, slave: int) -> bytes:
    params = dict(command.params)
    extra = set(params) - {"rule", "quantity", "value"}
    if extra:
        raise EncodeError(f"set_threshold takes params rule (or quantity) and value, "
                          f"not {', '.join(sorted(extra))}")
    rules = sorted({r for r, _ in regmap.thresholds})
    rule, q = params.get("rule"), params.get("quantity")
    if rule is None:
        if q is None:
            raise EncodeError(f"set_threshold needs params.rule (one of {', '.join(rules)}) "
                              "and params.value")
        matches = [r for r in rules if ALARM_RULES[r].quantity == q]
        if len(matches) != 1:
            which = f"is ambiguous ({', '.join(matches)})" if matches else "has no set point"
            raise EncodeError(f"quantity {q!r} {which}; give params.rule")
        rule = matches[0]
    elif rule not in rules:
        raise EncodeError(f"rule {rule!r} has no set point in {regmap.file} "
                          f"(settable: {', '.join(rules)})")
    elif q is not None and ALARM_RULES[rule].quantity != q:
        raise EncodeError(f"rule {rule!r} is about {ALARM_RULES[rule].quantity}, not {q!r}")
    value = params.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise EncodeError(f"set_threshold params.value must be a number, got {value!r}")
    tw = regmap.thresholds.get((rule, command.channel))
    if tw is None:
        channels = [ch for r, ch in regmap.thresholds if r == rule]
        raise EncodeError(_channel_problem(f"set_threshold {rule}", command.channel, channels))
    return tw.request(slave, float(value))
