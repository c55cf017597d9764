"""Built-in plugin: the ``lwm2m_ipso`` device model, IPSO smart objects of an NB-IoT
detector onto the canonical schema. Without options it decodes the layout below; options
(:mod:`plugins.devices.lwm2m_options`) map any other resource and name the writes behind
commands::

    models:
      nb-efd:
        type: lwm2m_ipso
        map:                                   # wins over the defaults below
          /3303/5: {quantity: temperature, channel: T6}      # instance: its value resource
          /3305/0/5810: {quantity: reactive_power, unit: kvar}
          /3200/1: {event: alarm, code: fault_arc}           # a contact as a device alarm
          /3200/2: {quantity: outage}                        # ... or as a reading (0/1)
          /3342/0: ignore
        residual:                              # which 3317 instances are residual current
          instances: [/3317/10]                # explicit; else 5750 or 5701 decides
          application_types: [residual]        # 5750 Application Type, case-insensitive
          units: [mA]                          # 5701 Sensor Units
        relay: /3312/0/5850                    # trip/close; or {L1: /3201/0/5550, ...}; null
        closed_value: true                     # the value that means "closed"
        thresholds:                            # set_threshold {rule|quantity, value}
          residual_current: /26241/0/1
          temperature: {T1: {path: /26241/0/2, unit: °C, type: integer}}
        commands:                              # any other action as LwM2M operations
          reset: {execute: /26241/0/10}
          silence: [{write: /26241/0/11, value: true}]
        defaults: true                         # false: only map and relay decode

Defaults (instance n):

============================  ==============================  ==========================
path                          record                          device unit → canonical
============================  ==============================  ==========================
/3303/n/5700                  temperature, T(n+1)             5701 or °C → °C
/3316/0..2/5700               voltage, A B C                  5701 or V → V
/3317/0..3/5700               current, A B C N                5701 or A → A
/3317/n/5700 (residual)       residual_current, L(n-9) if     5701 or mA → mA
                              n >= 10 else L(n+1)
/3328/n/5700, /3305/n/5800    active_power, "" A B C (n 0..3) 5701 or W → W
/3305/n/5810 5820 5805 5815   reactive_power, power_factor,   var, -, Wh → kWh,
                              active/reactive_energy          varh → kvarh
/3331/n/5700                  active_energy, "" A B C         5701 or Wh → kWh
/4/0/2                        signal_strength                 dBm
/3200/n/5500, /3342/n/5500    alarm vendor_contact_<obj>_<n>  RAISED while true
/3/0/11                       fault self_fault                RAISED while any code ≠ 0
relay (/3312/0/5850)          state relay_closed/relay_open   a notice on each change
============================  ==============================  ==========================

A 3317 instance is residual current when ``residual.instances`` lists it, or its 5750 is
one of ``residual.application_types``, or its 5701 one of ``residual.units``. Notifications
often carry only 5700, so the model remembers per device and instance the 5701, 5750 and
5603/5604 (range) it saw last (for at most :data:`MAX_DEVICES` devices, least recently
heard first out). A value's time is its own ``ts`` (SenML), else its instance's 5518
Timestamp, else ``received_at``. A NaN or infinite value gives no reading (as in
``modbus_map``); a value outside the instance's 5603..5604 range or physically impossible
(a negative RMS, below absolute zero) gives a reading of quality ``bad``.

Commands: ``reboot`` executes /3/0/4; ``trip``/``close`` write ``not closed_value`` /
``closed_value`` to the relay; ``set_threshold`` writes the configured resource;
``commands`` adds or overrides any action.
"""

from __future__ import annotations

import math
import struct
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from hub import hookimpl
from hub.contracts import DecodeError, DeviceModelType, EncodeError
from hub.contracts.lwm2m import Lwm2mOperation, Lwm2mValue, Path, Value
from hub.model import (
    ALARM_RULES,
    COMMAND_ACTIONS,
    QUANTITIES,
    Command,
    Event,
    EventKind,
    EventState,
    Level,
    Quality,
    Reading,
    Record,
)
from hub.validate import Invalid
from plugins.devices.lwm2m_options import (
    IGNORE,
    VALUE_RESOURCE,
    FlagSpec,
    IpsoOptions,
    PointSpec,
    check_options,
    check_time,
    device_unit,
    path_text,
)
from plugins.protocols.modbus.values import conversion, tidy

__all__ = ["MAX_DEVICES", "IpsoModel", "factory"]

#: Devices whose learned 5701/5750/range the model keeps (an NB-IoT hub's whole fleet).
MAX_DEVICES = 100_000
_MAX_INSTANCES = 512  # per device: a device announcing more is not an IPSO detector

_UNITS, _APP_TYPE, _RANGE_MIN, _RANGE_MAX, _TIMESTAMP = 5701, 5750, 5603, 5604, 5518
_ERROR_CODE = (3, 0, 11)
_REBOOT = (3, 0, 4)
_PHASES = ("A", "B", "C", "N")
_INTEGER_RESOURCES = frozenset({(4, 2)})  # (object, resource) typed Integer, not Float
_DEFAULT_OBJECTS = frozenset({3303, 3316, 3317, 3328, 3305, 3331, 3200, 3342})
_TOTAL_AND_PHASES = ("", "A", "B", "C")

#: (object, resource) → (quantity, device unit without 5701) for per-phase power objects
_POWER: dict[tuple[int, int], tuple[str, str]] = {
    (3328, 5700): ("active_power", "W"),
    (3305, 5800): ("active_power", "W"),
    (3305, 5810): ("reactive_power", "var"),
    (3305, 5820): ("power_factor", ""),
    (3305, 5805): ("active_energy", "Wh"),
    (3305, 5815): ("reactive_energy", "varh"),
    (3331, 5700): ("active_energy", "Wh"),
}

#: Values no sensor can measure, in the canonical unit: such a reading is ``bad``.
_PHYSICAL: dict[str, tuple[float, float]] = {
    "temperature": (-273.15, math.inf),
    "power_factor": (-1.0, 1.0),
    **{q: (0.0, math.inf) for q in (
        "residual_current", "resistive_leakage_current", "residual_current_full_wave",
        "voltage", "current", "apparent_power", "frequency", "pyrolytic_particles",
        "smoke_concentration", "gas_concentration", "current_thd", "voltage_thd",
        "voltage_unbalance", "current_unbalance")},
    **{q: (0.0, 1.0) for q, spec in QUANTITIES.items() if spec.kind == "bool"},
}


@dataclass(frozen=True, slots=True)
class _Relay:
    channel: str


@dataclass
class _Instance:
    """What a device said about one object instance, kept between notifications."""

    unit: str | None = None
    app_type: str | None = None
    low: float | None = None
    high: float | None = None


@dataclass
class _DeviceState:
    instances: dict[tuple[int, int], _Instance] = field(default_factory=dict)
    relays: dict[Path, bool] = field(default_factory=dict)


class IpsoModel:
    """The device model of one ``lwm2m_ipso`` configuration; one instance serves every
    device of that model (its learned state is keyed by device)."""

    heartbeat_interval: float | None = None
    timeout_count: int | None = None

    def __init__(self, options: IpsoOptions | None = None, max_devices: int = MAX_DEVICES):
        self.options = options = options or IpsoOptions()
        self.max_devices = max_devices
        self._states: OrderedDict[str, _DeviceState] = OrderedDict()
        self._relays = {path: ch for ch, path in options.relay.items()}
        self._commands: dict[str, Mapping[str, tuple[Lwm2mOperation, ...]]] = {
            "reboot": {"": (Lwm2mOperation("execute", _REBOOT),)}}
        if options.relay:
            closed = options.closed_value
            self._commands["trip"] = {ch: (Lwm2mOperation("write", p, not closed),)
                                      for ch, p in options.relay.items()}
            self._commands["close"] = {ch: (Lwm2mOperation("write", p, closed),)
                                       for ch, p in options.relay.items()}
        self._commands.update(options.commands)

    @property
    def actions(self) -> frozenset[str]:
        """The command actions this model can encode."""
        return frozenset(self._commands) | ({"set_threshold"} if self.options.thresholds
                                            else frozenset())

    # ---- what to observe ----------------------------------------------------------------

    def observe_paths(self, registered: Sequence[Path]) -> list[Path]:
        """The registered instances the model decodes: a notification then carries the
        whole instance, 5701 and 5750 included. (/3/0/11 is decoded when it comes, in a
        read or a notification of /3/0, but not observed: not every device has it.)"""
        wanted = {p[:2] for p in self.options.points} | {p[:2] for p in self._relays}
        defaults = _DEFAULT_OBJECTS if self.options.defaults else frozenset()
        objects = {o for o, _ in wanted} | defaults
        with_instances = {p[0] for p in registered if len(p) >= 2}
        out: list[Path] = []
        for p in registered:
            if len(p) == 2 and (p in wanted or p[0] in defaults):
                out.append(p)
            elif len(p) == 1 and p[0] in objects and p[0] not in with_instances:
                out.append(p)  # an object registered without instances: observe it whole
        return list(dict.fromkeys(out))

    # ---- decoding -----------------------------------------------------------------------

    def decode(self, device: str, payload: bytes, received_at: float) -> list[Record]:
        raise DecodeError("no plain uplink: this model decodes LwM2M values", payload[:64])

    def decode_values(self, device: str, values: Sequence[Lwm2mValue],
                      received_at: float) -> list[Record]:
        """Records from the values of one notification or read response. Resources the
        model does not map are skipped; a mapped value that is not a number (or a boolean
        where one is expected), or a unit it cannot convert, raises :class:`DecodeError`."""
        state = self._state(device)
        times = self._learn(state, values)
        readings: list[Record] = []
        events: list[Record] = []
        errors: list[Lwm2mValue] = []
        for v in values:
            path = v.path
            if path[:3] == _ERROR_CODE and self.options.defaults:
                errors.append(v)
                continue
            if len(path) != 3 or v.value is None:  # None: the payload had no value
                continue
            spec = self._spec(state, path)
            if spec is None:
                continue
            ts = check_time(v.ts, path) or times.get(path[:2], received_at)
            if isinstance(spec, PointSpec):
                reading = self._reading(device, state, v, spec, ts)
                if reading is not None:
                    readings.append(reading)
            elif isinstance(spec, FlagSpec):
                on = _boolean(v) == spec.active
                events.append(Event(device, spec.kind, spec.code,
                                    EventState.RAISED if on else EventState.CLEARED, ts,
                                    spec.level, spec.channel, source="device",
                                    message=spec.message))
            else:
                events += self._relay_change(device, state, v, spec, ts)
        if errors:
            events.append(self._error_codes(device, errors, times, received_at))
        return readings + events

    def _state(self, device: str) -> _DeviceState:
        state = self._states.get(device)
        if state is None:
            state = self._states[device] = _DeviceState()
            while len(self._states) > self.max_devices:
                self._states.popitem(last=False)
        else:
            self._states.move_to_end(device)
        return state

    def _learn(self, state: _DeviceState,
               values: Sequence[Lwm2mValue]) -> dict[tuple[int, int], float]:
        """Keep each instance's 5701, 5750 and 5603/5604 before any value is decoded (they
        may follow 5700 in a payload); return the instances' 5518 timestamps."""
        times: dict[tuple[int, int], float] = {}
        for v in values:
            if len(v.path) != 3 or v.path[2] not in (_UNITS, _APP_TYPE, _RANGE_MIN,
                                                     _RANGE_MAX, _TIMESTAMP):
                continue
            key = (v.path[0], v.path[1])
            res = v.path[2]
            if res == _TIMESTAMP:
                t = check_time(_number(v, integer=True), v.path)
                if t is not None:
                    times[key] = t
                continue
            inst = state.instances.get(key)
            if inst is None:
                if len(state.instances) >= _MAX_INSTANCES:
                    continue
                inst = state.instances[key] = _Instance()
            if res in (_UNITS, _APP_TYPE):
                text = _text(v)
                if res == _UNITS:
                    inst.unit = device_unit(text) if text.strip() else None
                else:
                    inst.app_type = text.strip().lower() or None
            elif res == _RANGE_MIN:
                inst.low = _number(v)
            else:
                inst.high = _number(v)
        return times

    def _spec(self, state: _DeviceState, path: Path) -> PointSpec | FlagSpec | _Relay | None:
        spec = self.options.points.get(path)
        if spec is not None:
            return None if spec == IGNORE else spec  # type: ignore[return-value]
        if path in self._relays:
            return _Relay(self._relays[path])
        return self._default(state, path) if self.options.defaults else None

    def _default(self, state: _DeviceState, path: Path) -> PointSpec | FlagSpec | None:
        obj, n, res = path
        if res == VALUE_RESOURCE.get(obj) and obj in (3200, 3342):
            return FlagSpec(EventKind.ALARM, f"vendor_contact_{obj}_{n}",
                            message=f"digital input {path_text(path[:2])} active")
        if obj == 3303 and res == 5700 and n < 999:
            return PointSpec("temperature", f"T{n + 1}", "°C")
        if obj == 3316 and res == 5700 and n < 3:
            return PointSpec("voltage", _PHASES[n], "V")
        if obj == 3317 and res == 5700:
            if self._residual(state, n):
                return PointSpec("residual_current", f"L{n - 9 if n >= 10 else n + 1}", "mA")
            return PointSpec("current", _PHASES[n], "A") if n < 4 else None
        if (obj, res) in _POWER and n < 4:
            quantity, unit = _POWER[(obj, res)]
            return PointSpec(quantity, _TOTAL_AND_PHASES[n], unit)
        if path == (4, 0, 2):
            return PointSpec("signal_strength", "", "dBm")
        return None

    def _residual(self, state: _DeviceState, n: int) -> bool:
        rule = self.options.residual
        if n in rule.instances:
            return True
        inst = state.instances.get((3317, n))
        return inst is not None and (inst.app_type in rule.application_types
                                     or inst.unit in rule.units)

    def _reading(self, device: str, state: _DeviceState, v: Lwm2mValue, spec: PointSpec,
                 ts: float) -> Reading | None:
        raw = _number(v, integer=(v.path[0], v.path[2]) in _INTEGER_RESOURCES)
        if raw is None or not math.isfinite(raw):
            return None  # a NaN carries no value to store
        inst = state.instances.get((v.path[0], v.path[1])) if v.path[2] == 5700 else None
        # an explicit unit in the options wins; a PointSpec from the defaults has its
        # object's unit, which the device's own 5701 overrides
        explicit = self.options.points.get(v.path) is spec
        unit = spec.unit if explicit and spec.unit else (
            inst.unit if inst is not None and inst.unit else spec.unit)
        try:
            factor, offset = conversion(spec.quantity, unit)
        except Invalid as e:
            raise DecodeError(f"{path_text(v.path)}: {e}; set map.{path_text(v.path)}.unit "
                              "to override the device's 5701") from None
        value = tidy(raw * spec.scale * factor + offset)
        quality = Quality.GOOD
        if inst is not None and (inst.low is not None and raw < inst.low
                                 or inst.high is not None and raw > inst.high):
            quality = Quality.BAD  # outside the sensor's own 5603..5604 range
        low, high = _PHYSICAL.get(spec.quantity, (-math.inf, math.inf))
        if not low <= value <= high:
            quality = Quality.BAD
        return Reading(device, spec.quantity, value, ts, spec.channel, quality)

    def _relay_change(self, device: str, state: _DeviceState, v: Lwm2mValue, relay: _Relay,
                      ts: float) -> list[Record]:
        # a relay has no end state to clear: a notice on each change (and the first seen)
        closed = _boolean(v) == self.options.closed_value
        if state.relays.get(v.path) == closed:
            return []
        state.relays[v.path] = closed
        return [Event(device, EventKind.STATE, "relay_closed" if closed else "relay_open",
                      EventState.NOTICE, ts, Level.INFO, relay.channel, source="device",
                      message="合闸" if closed else "分闸")]

    def _error_codes(self, device: str, values: list[Lwm2mValue],
                     times: Mapping[tuple[int, int], float], received_at: float) -> Event:
        codes = [c for c in (_number(v, integer=True) for v in values) if c]
        ts = next((t for v in values if (t := check_time(v.ts, v.path)) is not None),
                  times.get((3, 0), received_at))
        return Event(device, EventKind.FAULT, "self_fault",
                     EventState.RAISED if codes else EventState.CLEARED, ts, Level.FAULT,
                     source="device",
                     message="LwM2M error code " + ", ".join(f"{c:g}" for c in codes)
                     if codes else "")

    # ---- commands -----------------------------------------------------------------------

    def encode_operations(self, device: str, command: Command) -> list[Lwm2mOperation]:
        """The LwM2M operations that carry out ``command``, performed in order.

        ``set_threshold`` takes ``params={"rule": <alarm rule>, "value": <number>}`` (or
        ``"quantity"`` when one configured rule measures it), the value in the canonical
        unit, and ``command.channel`` for a per-channel set point. Raises
        :class:`EncodeError` for an action the model lacks, a missing or unknown channel,
        or a value out of range.
        """
        action = command.action
        if action not in COMMAND_ACTIONS:
            raise EncodeError(f"unknown command action {action!r}")
        if action not in self.actions:
            has = ", ".join(sorted(self.actions)) or "none"
            raise EncodeError(f"this lwm2m_ipso model has no {action} command (it has: {has})")
        if action == "set_threshold":
            return [self._threshold(command)]
        if command.params:
            raise EncodeError(f"{action} takes no params (got {', '.join(command.params)})")
        by_channel = self._commands[action]
        ops = by_channel.get(command.channel)
        if ops is None:
            raise EncodeError(_channel_problem(action, command.channel, list(by_channel)))
        return list(ops)

    def encode_command(self, device: str, command: Command) -> bytes:
        raise EncodeError("this model sends LwM2M operations: use encode_operations()")

    def _threshold(self, command: Command) -> Lwm2mOperation:
        params = dict(command.params)
        extra = set(params) - {"rule", "quantity", "value"}
        if extra:
            raise EncodeError(f"set_threshold takes params rule (or quantity) and value, "
                              f"not {', '.join(sorted(extra))}")
        thresholds = self.options.thresholds
        rules = sorted({r for r, _ in thresholds})
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
            raise EncodeError(f"rule {rule!r} has no set point here (settable: "
                              f"{', '.join(rules)})")
        elif q is not None and ALARM_RULES[rule].quantity != q:
            raise EncodeError(f"rule {rule!r} is about {ALARM_RULES[rule].quantity}, not {q!r}")
        value = params.get("value")
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise EncodeError(f"set_threshold params.value must be a number, got {value!r}")
        spec = thresholds.get((rule, command.channel))
        if spec is None:
            channels = [ch for r, ch in thresholds if r == rule]
            raise EncodeError(_channel_problem(f"set_threshold {rule}", command.channel,
                                               channels))
        return spec.operation(float(value))


def _channel_problem(action: str, ch: str, channels: list[str]) -> str:
    if "" in channels:
        return f"{action} acts on the whole device and takes no channel (got {ch!r})"
    known = ", ".join(channels)
    if not ch:
        return f"{action} needs a channel: one of {known}"
    return f"{action} has no channel {ch!r}; one of {known}"


# ---- value types: the codecs type what they know; an untyped TLV value stays bytes -------


def _number(v: Lwm2mValue, integer: bool = False) -> float | None:
    """A numeric value (``None`` for an absent one); :class:`DecodeError` otherwise.
    ``integer``: an untyped TLV value is an Integer or Time (1, 2, 4 or 8 bytes), not a
    Float (4 or 8 bytes)."""
    x: Value = v.value
    if x is None:
        return None
    if isinstance(x, bytes):
        if len(x) in (1, 2) or integer and len(x) in (4, 8):
            return float(int.from_bytes(x, "big", signed=True))
        if len(x) in (4, 8):
            return struct.unpack(">f" if len(x) == 4 else ">d", x)[0]
    elif isinstance(x, (bool, int, float)):
        try:
            return float(x)
        except OverflowError:  # a CBOR bignum beyond any float
            pass
    elif isinstance(x, str):
        try:
            return float(x)
        except ValueError:
            pass
    shown = _show(x)
    raise DecodeError(f"{path_text(v.path)}: expected a number, got {shown}",
                      x if isinstance(x, bytes) else shown.encode()[:64])


def _show(x: Value) -> str:
    # repr() of an int of more than 4,300 digits raises ValueError: give its size instead
    if isinstance(x, int) and x.bit_length() > 128:
        return f"an integer of {x.bit_length()} bits"
    return f"{x!r:.40}"


def _boolean(v: Lwm2mValue) -> bool:
    x: Value = v.value
    if isinstance(x, bool):
        return x
    if isinstance(x, int) and x in (0, 1):
        return bool(x)
    if isinstance(x, bytes) and x in (b"\x00", b"\x01"):
        return x == b"\x01"
    if isinstance(x, str) and x.strip().lower() in ("true", "false", "0", "1"):
        return x.strip().lower() in ("true", "1")
    raise DecodeError(f"{path_text(v.path)}: expected a boolean, got {x!r}",
                      x if isinstance(x, bytes) else str(x).encode()[:64])


def _text(v: Lwm2mValue) -> str:
    x: Value = v.value
    if isinstance(x, bytes):
        return x.decode("utf-8", "replace")
    return "" if x is None else str(x)


def factory(options: IpsoOptions | None) -> IpsoModel:
    return IpsoModel(options)


@hookimpl
def hub_register_device_models() -> list[DeviceModelType]:
    return [DeviceModelType("lwm2m_ipso", factory, check_options,
                            "LwM2M IPSO objects (3303 temperature, 3316/3317 voltage and "
                            "current, 3328/3331 power and energy, 3200 inputs, 3312 relay)")]
