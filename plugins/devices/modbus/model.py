"""``ModbusMapModel``: a register map put to work, with no I/O.

It implements :class:`hub.contracts.PolledDeviceModel`: the transport asks the model what
to read (:meth:`~ModbusMapModel.plan`, :meth:`~ModbusMapModel.request`,
:meth:`~ModbusMapModel.response_length`), sends the requests one at a time, frames the
answers (:meth:`~ModbusMapModel.response_framer`, a
:class:`plugins.protocols.modbus.framer.ResponseFramer`) and hands each back with the poll
it answers (:meth:`~ModbusMapModel.decode_response`).
Frames that arrive without a request in hand (a detector that pushes, an MQTT payload)
go through :meth:`~ModbusMapModel.decode`, which finds the planned poll they answer.

Status flags are reported level-style, as the alarm engine expects (see :mod:`hub.alarms`):
for every flag of the map, an event RAISED when the bit is set and CLEARED when it is not;
the engine keeps only the edges and gives them stable ids. By default every poll reports
every flag. A caller that polls a device over and over (the ``tcp_dtu`` transport) may pass
a ``status`` dict it keeps for that device: then a status word's flags are reported only
when the word differs from the value in the dict (always on the first poll), which is all
the engine needs, and a poll of an unchanged word creates no events at all (most of a
typical map's records, and all of them the engine would drop).

The model keeps no state between calls (the ``status`` dict belongs to the caller), so one
instance serves every device of the map, and a flag only changes the quality of readings
decoded from the same response (place a map's status words in the block of the readings
they qualify).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

from hub.contracts import DecodeError, EncodeError
from hub.model import Command, Event, EventState, Quality, Reading, Record
from plugins.devices.modbus.commands import command_requests, supported_actions
from plugins.devices.modbus.planner import Poll, plan_polls
from plugins.devices.modbus.registermap import Point, RegisterMap, StatusWord, load_map
from plugins.protocols.modbus import rtu
from plugins.protocols.modbus.framer import ResponseFramer
from plugins.protocols.modbus.values import decode, tidy

__all__ = ["ModbusMapModel", "Poll"]

# (point, offset) per point; (word, offset, index in map.status) per status word
_Layout = tuple[tuple[tuple[Point, int], ...], tuple[tuple[StatusWord, int, int], ...]]


class ModbusMapModel:
    """The device model of one register map (type ``modbus_map``)."""

    #: :meth:`decode_response` takes a ``status`` dict and then reports flags on change
    status_changes_only = True
    #: the transport's ``response_timeout`` applies
    response_timeout: float | None = None
    #: devices of this protocol on one line share one framer
    protocol = "modbus_rtu"
    #: Modbus has no broadcast the hub needs
    broadcast_interval: float | None = None

    def __init__(self, regmap: RegisterMap) -> None:
        self.map = regmap
        #: presence defaults from the map (``None``: the hub's defaults apply)
        self.heartbeat_interval: float | None = regmap.heartbeat_interval
        self.timeout_count: int | None = regmap.timeout_count
        #: seconds between two polls of a device
        self.poll_interval: float = regmap.poll_interval
        spans = [(p.function, p.address, p.count) for p in regmap.points]
        spans += [(w.function, w.address, w.count) for w in regmap.status]
        self._plan = tuple(plan_polls(spans, regmap.max_gap, regmap.max_registers,
                                      regmap.max_bits))
        self._layouts = {poll: self._layout(poll) for poll in self._plan}

    @classmethod
    def from_file(cls, path: str) -> ModbusMapModel:
        """The model of the map at ``path``; raises :class:`hub.validate.ConfigError`."""
        regmap = load_map(path)
        assert regmap is not None  # load_map raises instead of returning None here
        return cls(regmap)

    @property
    def actions(self) -> frozenset[str]:
        """The command actions this map can encode."""
        return supported_actions(self.map)

    # ---- polling ------------------------------------------------------------------------

    def plan(self) -> list[Poll]:
        """The reads of one poll cycle, merged and in a fixed order."""
        return list(self._plan)

    @staticmethod
    def check_unit(unit: object) -> int:
        """A slave number, 1..247; :class:`ValueError` otherwise."""
        if isinstance(unit, bool) or not isinstance(unit, int) or not 1 <= unit <= 247:
            raise ValueError(f"slave: {unit!r} is not a Modbus slave address 1..247")
        return unit

    @staticmethod
    def follow_up(slave: int, poll: Poll, frames: Sequence[bytes]) -> None:
        """Never: a Modbus answer is one frame."""
        return None

    @staticmethod
    def broadcast_request(now: float) -> None:
        return None

    def request(self, slave: int, poll: Poll) -> bytes:
        """The RTU frame that asks ``slave`` for ``poll``."""
        return rtu.read_request(slave, poll.function, poll.address, poll.count)

    def expected_length(self, poll: Poll) -> int:
        """The length in bytes of a normal answer to ``poll``, CRC included (an exception
        answer is 5 bytes)."""
        return 5 + rtu.data_bytes(poll.function, poll.count)

    def response_length(self, request: bytes) -> int:
        """The length in bytes of a normal answer to ``request`` (a read, a write or a
        read-back), CRC included."""
        return rtu.response_length(request)

    def response_framer(self, max_buffer: int, units: Collection[int],
                        ignore: Collection[bytes]) -> ResponseFramer:
        """An RTU framer for one line with ``units`` (slave addresses) on it."""
        return ResponseFramer(max_buffer, units, ignore)

    # ---- decoding -----------------------------------------------------------------------

    def decode_response(self, device: str, slave: int, poll: Poll, frame: bytes,
                        received_at: float, status: dict[int, int] | None = None
                        ) -> list[Record]:
        """Records from ``frame``, the complete answer of ``slave`` to ``poll``.

        ``status``: the caller's memory of this device's status words (``{}`` at first);
        when given, a word's flags are reported only when its value changed since the last
        call with this dict (see the module's docstring), and the dict is updated. The
        caller must start again from ``{}`` whenever the alarm engine may have missed a
        report (records not ingested, a frame decoded without it).

        Raises :class:`rtu.ModbusException` for an exception response and
        :class:`hub.contracts.DecodeError` for a bad CRC, another slave or function, or a wrong
        length. ``poll`` is normally one of :meth:`plan`; any other read is decoded too
        (the points it covers whole).
        """
        data = rtu.read_data(frame, slave, poll.function, poll.count)
        layout = self._layouts.get(poll) or self._layout(poll)
        return self._records(device, poll, data, layout, received_at, status)

    def decode(self, device: str, payload: bytes, received_at: float) -> list[Record]:
        """Records from one complete response frame with no request in hand (a pushing
        detector, Modbus RTU carried in MQTT): the planned poll it answers is the one with
        its function and byte count. Best effort: a frame that fits no planned poll, or
        several, is refused with :class:`hub.contracts.DecodeError`."""
        frame = rtu.parse_frame(payload)
        if frame.function not in rtu.READS:
            raise DecodeError(f"function {frame.function:02d} is not a read response",
                              payload[:rtu.EXCERPT], 1)
        poll = self.match_poll(frame.function, frame.payload[0], payload)
        return self.decode_response(device, frame.slave, poll, payload, received_at)

    def match_poll(self, function: int, byte_count: int, excerpt: bytes = b"") -> Poll:
        """The planned poll whose answer has ``function`` and ``byte_count`` data bytes;
        :class:`hub.contracts.DecodeError` when none or several do."""
        polls = [p for p in self._plan if p.function == function
                 and rtu.data_bytes(p.function, p.count) == byte_count]
        if len(polls) != 1:
            planned = ", ".join(f"{p} ({rtu.data_bytes(p.function, p.count)} bytes)"
                                for p in self._plan) or "none"
            fits = "several planned polls" if polls else "no planned poll"
            raise DecodeError(f"a function {function:02d} answer of {byte_count} data bytes "
                              f"fits {fits} (planned: {planned})", excerpt[:rtu.EXCERPT], 2)
        return polls[0]

    def _layout(self, poll: Poll) -> _Layout:
        points = tuple((p, p.address - poll.address) for p in self.map.points
                       if poll.covers(p.function, p.address, p.count))
        words = tuple((w, w.address - poll.address, i) for i, w in enumerate(self.map.status)
                      if poll.covers(w.function, w.address, w.count))
        return points, words

    def _records(self, device: str, poll: Poll, data: bytes, layout: _Layout,
                 ts: float, status: dict[int, int] | None = None) -> list[Record]:
        bits = poll.function in rtu.BIT_READS
        values = rtu.bits_of(data, poll.count) if bits else rtu.registers_of(data)
        points, words = layout
        events: list[Record] = []
        flagged: dict[str, Quality] = {}
        for word, off, index in words:
            if bits:
                word_value = sum(1 << b.bit for b in word.bits if values[off + b.bit])
            else:
                word_value = decode(values[off:off + word.count], word.type, word.byte_order,
                                    word.word_order)[1]
            report = True
            if status is not None:
                report = status.get(index) != word_value
                status[index] = word_value
            if not word_value and not report:
                continue  # nothing raised, nothing to report: the common case
            for flag in word.bits:
                on = bool(word_value >> flag.bit & 1)
                if report:
                    events.append(Event(device, flag.kind, flag.code,
                                        EventState.RAISED if on else EventState.CLEARED, ts,
                                        flag.level, flag.channel, source="device",
                                        message=flag.message))
                if on and flag.quality is not None and flagged.get(flag.channel) != Quality.BAD:
                    flagged[flag.channel] = flag.quality
        out: list[Record] = []
        for point, off in points:
            reading = _reading(device, point, values, off, ts)
            if reading is not None:
                quality = flagged.get(point.channel)
                if quality is not None and reading.quality is Quality.GOOD:
                    reading = Reading(device, point.quantity, reading.value, ts, point.channel,
                                      quality)
                out.append(reading)
        return out + events

    # ---- commands -----------------------------------------------------------------------

    def command_requests(self, command: Command, slave: int) -> list[bytes]:
        """The write requests that carry out ``command``, to be sent one at a time, each
        after the echo of the previous one (:meth:`check_write_response`).

        ``set_threshold`` takes ``params={"rule": <alarm rule>, "value": <number>}`` (or
        ``"quantity"`` instead of ``"rule"`` when only one settable rule measures it), the
        value in the canonical unit and ``command.channel`` for a per-channel set point;
        ``enable_channel``/``disable_channel`` and per-channel actions take
        ``command.channel``. Raises :class:`hub.contracts.EncodeError` for an action the map
        lacks, a missing or unknown channel, or a value out of range.
        """
        return command_requests(self.map, command, slave)

    def encode_command(self, device: str, command: Command, slave: int = 1) -> bytes:
        """The single write request for ``command`` (:class:`hub.contracts.DeviceModel`);
        raises :class:`EncodeError` when the command needs several writes (use
        :meth:`command_requests`)."""
        requests = self.command_requests(command, slave)
        if len(requests) != 1:
            raise EncodeError(f"{command.action} takes {len(requests)} writes, sent one at a "
                              "time: use command_requests()")
        return requests[0]

    def needs_readback(self, command: Command) -> bool:
        """Whether the map asks for ``command``'s writes to be read back after their echo."""
        return command.action in self.map.readback

    def readback_request(self, write: bytes) -> bytes:
        """The read that fetches what ``write`` set (01 for a coil, 03 for registers)."""
        return rtu.readback_request(write)

    def check_readback(self, write: bytes, frame: bytes) -> None:
        """Accept ``frame`` if it reads back what ``write`` set; else raise
        :class:`hub.contracts.DecodeError` (or :class:`rtu.ModbusException`)."""
        rtu.check_readback(write, frame)

    def check_write_response(self, request: bytes, frame: bytes) -> None:
        """Accept the slave's echo of a write, or raise :class:`rtu.ModbusException` /
        :class:`hub.contracts.DecodeError`."""
        rtu.check_write_response(request, frame)


def _reading(device: str, point: Point, values: Sequence[int | bool], off: int,
             ts: float) -> Reading | None:
    if point.function in rtu.BIT_READS:
        typed, raw = int(values[off]), int(values[off])
    elif point.type == "bit":
        typed = raw = values[off] >> point.bit & 1  # type: ignore[operator]
    else:
        typed, raw = decode(values[off:off + point.count], point.type,  # type: ignore[arg-type]
                            point.byte_order, point.word_order)
    quality = Quality.GOOD
    if point.sentinels and (typed in point.sentinels or raw in point.sentinels):
        if point.on_sentinel == "skip":
            return None
        quality = Quality.BAD
    if not math.isfinite(typed):  # a NaN or infinite f32 carries no value to store
        return None
    value = tidy((typed * point.scale + point.offset) * point.factor + point.unit_offset)
    return Reading(device, point.quantity, value, ts, point.channel, quality)
