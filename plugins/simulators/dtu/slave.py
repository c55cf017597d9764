"""Simulated Modbus RTU slaves behind a simulated DTU: pure code, no sockets, no clock.

What ``hub simulate dtu`` (:mod:`plugins.simulators.dtu.cli`) puts behind each
simulated DTU, kept apart so it can be tested frame by frame:

* :class:`Scenario`: the canonical values a detector reports at a time ``t`` (seconds since
  the simulation started; the caller passes it, nothing here reads a clock).
* :class:`SlaveLayout`: what a register map says about a device's registers: which
  addresses exist in each table, which can be written, and how each point's canonical value
  becomes register contents (the inverse of the map's decoding: unit conversion, scale,
  offset, type, byte and word order).
* :class:`SimulatedSlave`: one slave answering RTU requests from its register store, which
  it refreshes from the scenario before each read. Writes (05, 06, 16) are echoed and stored,
  and a written address keeps the written value (the scenario no longer touches it), so a
  ``trip`` or ``set_threshold`` sent by the hub is visible in :attr:`SimulatedSlave.tables`.
  A request for an address the map does not know answers exception 02.
* :class:`RequestFramer` and :class:`DtuLine`: requests cut out of the TCP stream, and the
  RS-485 line that hands each to the addressed slave (or DL/T 645 meter:
  :mod:`plugins.simulators.dtu.meter`).

Scenarios (``period`` in seconds, ``phase`` = ``(t % period) / period``):

* ``normal``: values near nominal (:data:`plugins.simulators.scenario.NOMINAL`: 220 V,
  10 A, 25 °C, 30 mA residual current), each wobbling slowly within its swing.
* ``overheat``: temperature T1 follows ``30 + 65 sin(π phase)`` °C: past 80 °C from phase
  0.29 to 0.71, peak 95 °C at mid-period, back to 30 °C at its end.
* ``leakage``: residual current (every channel) at 450 ± 10 mA for the first fifth of each
  period (above the 300 mA the hub alarms on by default), normal otherwise.
* ``silent``: slave 1 never answers; the others answer normal values.
* ``drop``: normal values; the DTU disconnects ``period`` seconds after each connect and
  dials again :attr:`Scenario.reconnect_delay` seconds later (the Twisted client does that).

The simulated detector also raises its own status flags as a real one does: an alarm bit
whose code is an alarm rule (``temperature``, ``residual_current``, ...) is set while the
value of its channel is past the device's own set point, which is the threshold register a
``set_threshold`` command writes (initially :data:`DEVICE_SET_POINTS`). Fault bits stay
clear.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from hub.contracts import EncodeError
from hub.model import ALARM_RULES, EventKind
from plugins.devices.modbus.registermap import Point, RegisterMap, StatusWord
from plugins.protocols.modbus import rtu
from plugins.protocols.modbus.values import TYPES, decode, encode, from_raw, to_raw
from plugins.simulators import scenario as engine
from plugins.simulators.scenario import DEVICE_SET_POINTS, NOMINAL

__all__ = [
    "DEVICE_SET_POINTS",
    "NOMINAL",
    "SCENARIOS",
    "DtuLine",
    "RequestFramer",
    "Scenario",
    "SimulatedSlave",
    "SlaveLayout",
    "point_registers",
    "request_length",
]

SCENARIOS = ("normal", "overheat", "leakage", "silent", "drop")
#: Episodes that go on top of any scenario (``--episode``): ``overvoltage``, every phase
#: voltage along a half sine from normal up to :data:`OVERVOLTAGE_PEAK` (past the hub's
#: overvoltage alarm) at mid-period and back (a DL/T 645 meter's voltages, or a detector's).
EPISODES = ("overvoltage",)
OVERVOLTAGE_PEAK = 280.0  # V

_READ_TABLE = {1: 1, 2: 2, 3: 3, 4: 4}  # read function → table (coils, inputs, holding, input)
_WRITE_TABLE = {rtu.WRITE_SINGLE_COIL: 1, rtu.WRITE_SINGLE_REGISTER: 3,
                rtu.WRITE_MULTIPLE_REGISTERS: 3}


# ---------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Scenario:
    """A DTU scenario (see the module docstring): the values of
    :class:`plugins.simulators.scenario.Scenario` over ``period``, and what the DTU and its
    line do (``silent``, ``drop``)."""

    name: str = "normal"
    period: float = 60.0
    episode: str = ""  # one of EPISODES, on top of the scenario's values

    def __post_init__(self) -> None:
        if self.name not in SCENARIOS:
            raise ValueError(f"{self.name!r} is not a scenario; one of {', '.join(SCENARIOS)}")
        if self.episode and self.episode not in EPISODES:
            raise ValueError(f"{self.episode!r} is not an episode; one of {', '.join(EPISODES)}")
        values = "normal" if self.name in ("silent", "drop") else self.name
        # validates the period too
        scenario = engine.Scenario.periodic(values, self.period)
        if self.episode == "overvoltage":
            scenario = engine.Scenario(scenario.name, scenario.shape, episodes=(
                *(scenario.episodes or ()),
                engine.Episode("voltage", engine.HalfSine(self.period), OVERVOLTAGE_PEAK,
                               swing=1.0)), outage=scenario.outage)
        object.__setattr__(self, "values", scenario)

    def phase(self, t: float) -> float:
        """Where ``t`` falls in the current period, 0 ≤ phase < 1."""
        return (t % self.period) / self.period

    def value(self, quantity: str, channel: str, t: float, jitter: float = 0.0) -> float:
        """The canonical value of ``quantity``/``channel`` at ``t``; ``jitter`` in -1..1
        picks a value within the quantity's normal swing."""
        return self.values.value(quantity, channel, t, jitter)  # type: ignore[attr-defined]

    def answers(self, slave: int | str) -> bool:
        """Whether ``slave`` answers at all (``silent``: slave 1 never does)."""
        return not (self.name == "silent" and slave == 1)

    @property
    def connected_for(self) -> float | None:
        """Seconds a connection lasts before the DTU drops it (``drop``), else ``None``."""
        return self.period if self.name == "drop" else None

    @property
    def reconnect_delay(self) -> float:
        """Seconds a dropped DTU waits before dialling again: a few seconds, and at most a
        quarter of the period so short test periods still see it come back."""
        return max(0.5, min(5.0, self.period / 4))


# ---------------------------------------------------------------------------- the register map


@dataclass(frozen=True)
class _Flag:
    bit: int
    rule: str  # the alarm rule the device applies to its own value
    quantity: str
    channel: str


class SlaveLayout:
    """The registers of a device of ``regmap``, shared by every simulated slave of it.

    Tables are keyed by read function: 1 coils, 2 discrete inputs, 3 holding registers,
    4 input registers. An address exists when a point, status word, command or set-point
    write uses it; a read may also span holes of at most the map's ``max_gap`` between
    existing addresses (the map says the device answers those, with 0). Coils and holding
    registers that points, status words, commands or set points use can be written.
    """

    def __init__(self, regmap: RegisterMap) -> None:
        self.map = regmap
        defined: dict[int, set[int]] = {1: set(), 2: set(), 3: set(), 4: set()}
        writable: dict[int, set[int]] = {1: set(), 3: set()}
        for item in (*regmap.points, *regmap.status):
            defined[item.function].update(range(item.address, item.address + item.count))
            if item.function in writable:
                writable[item.function].update(range(item.address, item.address + item.count))
        for by_channel in regmap.commands.values():
            for writes in by_channel.values():
                for w in writes:
                    writable[_WRITE_TABLE[w.function]].update(
                        range(w.address, w.address + len(w.values)))
        for tw in regmap.thresholds.values():
            writable[3].update(range(tw.address, tw.address + TYPES[tw.type]))
        for table, addresses in writable.items():
            defined[table] |= addresses
        self.writable = {t: frozenset(a) for t, a in writable.items()}
        self.readable = {t: frozenset(_with_holes(a, regmap.max_gap)) for t, a in defined.items()}
        #: (point, its index for the wobble) per table
        self.points: dict[int, tuple[tuple[Point, int], ...]] = {
            t: tuple((p, i) for i, p in enumerate(regmap.points) if p.function == t)
            for t in defined}
        self.words: dict[int, tuple[tuple[StatusWord, tuple[_Flag, ...]], ...]] = {
            t: tuple((w, self._flags(w)) for w in regmap.status if w.function == t)
            for t in defined}
        #: register contents before any scenario value: the device's own set points
        self.initial: dict[int, dict[int, int]] = {t: {} for t in defined}
        for (rule, _channel), tw in regmap.thresholds.items():
            low, high = tw.low, tw.high
            value = min(max(DEVICE_SET_POINTS.get(rule, low), low), high)
            try:
                regs = tw.registers(value)
            except EncodeError:  # a map whose range does not fit its type: leave it 0
                continue
            for i, r in enumerate(regs):
                self.initial[3][tw.address + i] = r

    def _flags(self, word: StatusWord) -> tuple[_Flag, ...]:
        # Only alarm bits whose value the map reads can be decided by the device itself.
        read = {(p.quantity, p.channel) for p in self.map.points}
        out = []
        for b in word.bits:
            rule = ALARM_RULES.get(b.code)
            if (b.kind is EventKind.ALARM and rule is not None
                    and (rule.quantity, b.channel) in read):
                out.append(_Flag(b.bit, rule.name, rule.quantity, b.channel))
        return tuple(out)


def _with_holes(addresses: Iterable[int], max_gap: int) -> set[int]:
    """``addresses`` plus every hole of at most ``max_gap`` between two of them."""
    ordered = sorted(addresses)
    out = set(ordered)
    for a, b in zip(ordered, ordered[1:], strict=False):
        if 1 < b - a <= max_gap + 1:
            out.update(range(a + 1, b))
    return out


def point_registers(point: Point, value: float) -> tuple[int, ...]:
    """The register contents (address order) that decode to the canonical ``value`` under
    ``point``: the inverse of the map's decoding. A value outside the type is clamped to the
    type's range, as a detector saturates. Bit points give ``(0,)`` or ``(1,)``."""
    if point.type == "bit" or point.function in rtu.BIT_READS:
        return (1 if value else 0,)
    raw = to_raw(value, point.type, point.scale, point.offset, point.factor, point.unit_offset)
    lo, hi = _RANGE.get(point.type, (-math.inf, math.inf))
    raw = min(max(raw, lo), hi)
    return encode(raw, point.type, point.byte_order, point.word_order)


_RANGE = {"u16": (0, 0xFFFF), "s16": (-0x8000, 0x7FFF), "u32": (0, 0xFFFFFFFF),
          "s32": (-0x80000000, 0x7FFFFFFF)}


# ---------------------------------------------------------------------------- one slave


class SimulatedSlave:
    """One Modbus RTU slave at ``address`` with the registers of ``layout``, reporting what
    ``scenario`` says. ``seed`` fixes each value's wobble, so two runs with the same seed
    answer the same bytes at the same ``t``."""

    def __init__(self, layout: SlaveLayout, address: int, scenario: Scenario,
                 seed: int | str = 0) -> None:
        if not 1 <= address <= 247:
            raise ValueError(f"slave address {address} is not in 1..247")
        self.layout = layout
        self.address = address
        self.scenario = scenario
        #: register (or bit) values per table, as last refreshed or written
        self.tables: dict[int, dict[int, int]] = {t: dict(v) for t, v in layout.initial.items()}
        #: (table, address) the hub wrote: the scenario leaves them alone from then on
        self.pinned: set[tuple[int, int]] = set()
        #: each point's wobble phase, by its index in the map
        self._phases = tuple(engine.wobble_phase(f"{seed}/{address}/{i}")
                             for i in range(len(layout.map.points)))
        self._value = scenario.values.value  # type: ignore[attr-defined]
        self.requests = 0
        self.answered = 0

    # -- what the scenario says ----------------------------------------------------------

    def jitter(self, index: int, t: float) -> float:
        """A slow, seeded wobble in -1..1 for the point at ``index`` of the map."""
        return engine.wobble(self._phases[index], t)

    def values_at(self, t: float) -> dict[tuple[str, str], float]:
        """The canonical value of every point of the map at ``t``: what a poll at ``t``
        decodes to (to the registers' resolution), unless the hub wrote a point's register."""
        return {(p.quantity, p.channel): self._value(p.quantity, p.channel, t, self.jitter(i, t))
                for i, p in enumerate(self.layout.map.points)}

    def set_point(self, rule: str, channel: str) -> float:
        """The device's own set point of ``rule`` on ``channel``: from the threshold
        register the hub writes with ``set_threshold``, else :data:`DEVICE_SET_POINTS`."""
        tw = self.layout.map.thresholds.get((rule, channel)) or \
            self.layout.map.thresholds.get((rule, ""))
        if tw is None:
            return DEVICE_SET_POINTS.get(rule, math.inf)
        holding = self.tables[3]
        regs = [holding.get(tw.address + i, 0) for i in range(TYPES[tw.type])]
        raw = decode(regs, tw.type, tw.byte_order, tw.word_order)[0]
        return from_raw(raw, tw.scale, tw.offset, tw.factor, tw.unit_offset)

    def flags_at(self, t: float) -> set[tuple[str, str]]:
        """``(code, channel)`` of every alarm bit the device sets at ``t``."""
        values = self.values_at(t)
        return {(f.rule, f.channel) for words in self.layout.words.values()
                for _, flags in words for f in flags if self._tripped(f, values)}

    def _tripped(self, flag: _Flag, values: Mapping[tuple[str, str], float]) -> bool:
        value = values.get((flag.quantity, flag.channel))
        if value is None:
            return False
        set_point = self.set_point(flag.rule, flag.channel)
        if ALARM_RULES[flag.rule].direction == "high":
            return value >= set_point
        return value <= set_point

    def refresh(self, table: int, t: float) -> None:
        """Put the scenario's values at ``t`` into ``table`` (points, then status words),
        except where the hub wrote."""
        store = self.tables[table]
        pinned = self.pinned
        values: dict[tuple[str, str], float] = {}
        for point, index in self.layout.points[table]:
            value = self._value(point.quantity, point.channel, t, self.jitter(index, t))
            values[(point.quantity, point.channel)] = value
            if pinned and any((table, point.address + i) in pinned for i in range(point.count)):
                continue
            if point.type == "bit" and point.function in rtu.REGISTER_READS:
                mask = 1 << (point.bit or 0)
                old = store.get(point.address, 0)
                store[point.address] = old | mask if value else old & ~mask
            else:
                for i, r in enumerate(point_registers(point, value)):
                    store[point.address + i] = r
        if not self.layout.words[table]:
            return
        if len(values) < len(self.layout.map.points):  # flags may read another table's points
            values = self.values_at(t)
        for word, flags in self.layout.words[table]:
            if pinned and any((table, word.address + i) in pinned for i in range(word.count)):
                continue
            bits = sum(1 << f.bit for f in flags if self._tripped(f, values))
            if word.function in rtu.BIT_READS:
                for b in word.bits:
                    store[word.address + b.bit] = bits >> b.bit & 1
            else:
                for i, r in enumerate(encode(bits, word.type, word.byte_order, word.word_order)):
                    store[word.address + i] = r

    # -- requests ------------------------------------------------------------------------

    def handle(self, request: bytes, t: float) -> bytes | None:
        """The answer to one complete RTU ``request`` at ``t``, or ``None`` when this slave
        stays silent: another slave's request, a bad CRC (a real slave ignores a corrupted
        frame), or the scenario silences it."""
        if len(request) < 4 or request[0] != self.address or not rtu.crc_ok(request):
            return None
        if not self.scenario.answers(self.address):
            return None
        self.requests += 1
        function = request[1]
        if function in rtu.READS and len(request) == 8:
            answer = self._read(function, request, t)
        elif function in rtu.WRITES:
            answer = self._write(function, request)
        else:
            answer = rtu.exception_response(self.address, function, 1)  # illegal function
        self.answered += 1
        return answer

    def _read(self, function: int, request: bytes, t: float) -> bytes:
        address = int.from_bytes(request[2:4], "big")
        count = int.from_bytes(request[4:6], "big")
        bits = function in rtu.BIT_READS
        limit = rtu.MAX_READ_BITS if bits else rtu.MAX_READ_REGISTERS
        if not 1 <= count <= limit:
            return rtu.exception_response(self.address, function, 3)  # illegal data value
        table = _READ_TABLE[function]
        readable = self.layout.readable[table]
        if any(a not in readable for a in range(address, address + count)):
            return rtu.exception_response(self.address, function, 2)  # illegal data address
        self.refresh(table, t)
        store = self.tables[table]
        words = [store.get(a, 0) for a in range(address, address + count)]
        data = rtu.pack_bits(words) if bits else rtu.pack_registers(words)
        return rtu.read_response(self.address, function, data)

    def _write(self, function: int, request: bytes) -> bytes:
        table = _WRITE_TABLE[function]
        address = int.from_bytes(request[2:4], "big")
        writable = self.layout.writable[table]
        if function == rtu.WRITE_MULTIPLE_REGISTERS:
            count = int.from_bytes(request[4:6], "big")
            if (not 1 <= count <= rtu.MAX_WRITE_REGISTERS or len(request) != 9 + 2 * count
                    or request[6] != 2 * count):
                return rtu.exception_response(self.address, function, 3)
            values = list(rtu.registers_of(request[7:7 + 2 * count]))
        else:
            if len(request) != 8:
                return rtu.exception_response(self.address, function, 3)
            value = int.from_bytes(request[4:6], "big")
            if function == rtu.WRITE_SINGLE_COIL:
                if value not in (0xFF00, 0x0000):
                    return rtu.exception_response(self.address, function, 3)
                value = 1 if value else 0
            values = [value]
        if any(address + i not in writable for i in range(len(values))):
            return rtu.exception_response(self.address, function, 2)
        store = self.tables[table]
        for i, v in enumerate(values):
            store[address + i] = v
            self.pinned.add((table, address + i))
        return rtu.write_response(request)


# ---------------------------------------------------------------------------- the line


class RequestFramer:
    """RTU requests cut out of a byte stream that may split or join them.

    The length of a request follows from its function code (8 bytes for 01..06, ``9 +
    byte count`` for 15 and 16); a candidate whose CRC fails, or an unknown function, costs
    one byte and the framer tries again one byte further on. The buffer is bounded.
    """

    def __init__(self, max_buffer: int = 4096) -> None:
        self._buf = bytearray()
        self.max_buffer = max_buffer
        #: bytes skipped while resynchronising
        self.dropped = 0

    def feed(self, data: bytes) -> None:
        self._buf += data
        if len(self._buf) > self.max_buffer:
            self.dropped += len(self._buf)
            self._buf.clear()

    def next_request(self) -> bytes | None:
        """The next complete request, or ``None`` until more bytes arrive."""
        buf = self._buf
        while len(buf) >= 2:
            n = self._length(buf)
            if n == -1:
                return None
            if n == 0:
                del buf[0]
                self.dropped += 1
                continue
            frame = bytes(buf[:n])
            del buf[:n]
            return frame
        return None

    def _length(self, buf: bytearray) -> int:
        """The length of the request at the front of ``buf`` (see :func:`request_length`)."""
        return request_length(buf)


def request_length(buf: bytes | bytearray) -> int:
    """The length of the RTU request (CRC checked) at the front of ``buf``; 0 if none
    starts there, -1 if more bytes are needed to tell."""
    if len(buf) < 2:
        return -1
    function = buf[1]
    if 1 <= function <= 6:
        n = 8
    elif function in (15, 16):
        if len(buf) < 7:
            return -1
        n = 9 + buf[6]
    else:
        return 0
    if len(buf) < n:
        return -1
    return n if rtu.crc_ok(buf[:n]) else 0


class DtuLine:
    """The RS-485 line behind one DTU: requests in, in any pieces; answers out. Its
    devices are Modbus RTU slaves, DL/T 645 meters
    (:class:`plugins.simulators.dtu.meter.SimulatedMeter`) or both."""

    def __init__(self, slaves: Iterable[SimulatedSlave], meters: Iterable[Any] = ()) -> None:
        self.slaves = {s.address: s for s in slaves}
        self.meters = tuple(meters)
        self.framer: Any = RequestFramer()
        if self.meters:
            from plugins.simulators.dtu.meter import LineRequestFramer
            self.framer = LineRequestFramer(modbus=bool(self.slaves))
        self.requests = 0
        self.answered = 0

    def receive(self, data: bytes, t: float) -> list[bytes]:
        """Feed bytes the hub sent; the answers of the addressed slaves at ``t``."""
        self.framer.feed(data)
        out = []
        while (request := self.framer.next_request()) is not None:
            self.requests += 1
            slave = self.slaves.get(request[0])
            answer = slave.handle(request, t) if slave is not None else None
            if answer is None and self.meters and request[0] == 0x68:
                for meter in self.meters:  # each stays silent unless addressed
                    answer = meter.handle(request, t)
                    if answer is not None:
                        break
            if answer is not None:
                self.answered += 1
                out.append(answer)
        return out
