"""Simulated DL/T 645-2007 meters behind a simulated DTU, and the request framer of a line
that carries Modbus RTU and DL/T 645 together: pure code, no sockets, no clock.

* :class:`MeterLayout`: what a data-identifier map says about a meter's replies (which
  identifiers it answers and how each point's canonical value becomes BCD: the inverse of
  the map's decoding).
* :class:`SimulatedMeter`: one meter at a 12-digit address, answering with the values of
  the DTU scenario (the one engine of :mod:`plugins.simulators.scenario`) through the
  sans-IO meter of :mod:`plugins.protocols.dlt645.meter`: 11H/12H reads (long replies in
  subsequent frames), 13H read address, 1CH trip/close with the password (the relay state
  is kept in :attr:`SimulatedMeter.relay`, its commands in :attr:`SimulatedMeter.controls`),
  08H time sync recorded and never answered.
* :class:`LineRequestFramer`: requests of both protocols cut out of the TCP stream.
"""

from __future__ import annotations

from hub.contracts import EncodeError
from plugins.devices.dlt645.datamap import DataMap, Group, MapPoint
from plugins.protocols.dlt645 import frame as wire
from plugins.protocols.dlt645.meter import control_action, reply
from plugins.protocols.dlt645.values import encode_value
from plugins.simulators import scenario as engine
from plugins.simulators.dtu.slave import RequestFramer, request_length

__all__ = ["LineRequestFramer", "MeterLayout", "SimulatedMeter", "point_bcd"]


def point_bcd(point: MapPoint, value: float) -> bytes:
    """The BCD bytes that decode to the canonical ``value`` under ``point``; a value out of
    the format's range saturates at its largest (a meter's display does too)."""
    raw = (value - point.unit_offset) / (point.scale * point.factor)
    if raw < 0 and not point.signed:
        raw = 0.0
    try:
        return encode_value(raw, point.format, point.signed)
    except EncodeError:
        top = 10 ** point.format.digits - 1 if not point.signed \
            else 8 * 10 ** (point.format.digits - 1) - 1
        top /= 10 ** point.format.decimals
        return encode_value(top if raw > 0 else -top, point.format, point.signed)


class MeterLayout:
    """The replies of a meter of ``datamap``, shared by every simulated meter of it."""

    def __init__(self, datamap: DataMap) -> None:
        self.map = datamap
        self.groups: dict[int, Group] = {g.di: g for g in datamap.groups}
        #: each point's index, for its wobble
        self.index = {id(p): i for i, p in enumerate(p for g in datamap.groups
                                                     for p in g.points)}


class SimulatedMeter:
    """One DL/T 645 meter at ``address`` with the identifiers of ``layout``, reporting what
    ``scenario`` (a DTU :class:`plugins.simulators.dtu.slave.Scenario`) says."""

    def __init__(self, layout: MeterLayout, address: str, scenario: object,
                 seed: int | str = 0, password: str = "000000", frame_data: int = 196) -> None:
        if not wire.is_address(address) or "AA" in address.upper():
            raise ValueError(f"meter address {address!r} is not 12 digits")
        self.layout = layout
        self.address = address.upper()
        self.scenario = scenario
        self.password = password
        self.frame_data = frame_data
        self._value = scenario.values.value  # type: ignore[attr-defined]
        self._phases = tuple(engine.wobble_phase(f"{seed}/{address}/{i}")
                             for i in range(len(layout.index)))
        self._last: dict[int, bytes] = {}  # a reply's data, kept for its 12H frames
        self.relay = "closed"
        self.controls: list[str] = []
        self.time_syncs = 0
        self.requests = 0
        self.answered = 0

    def data(self, group: Group, t: float) -> bytes:
        """The data of the reply to ``group`` at ``t`` (after the data identifier)."""
        out = bytearray(group.size)
        for p in group.points:
            jitter = engine.wobble(self._phases[self.layout.index[id(p)]], t)
            value = self._value(p.quantity, p.channel, t, jitter)
            if self.relay == "open" and p.quantity in ("current", "active_power",
                                                       "reactive_power", "apparent_power"):
                value = 0.0  # tripped: nothing flows
            out[p.start:p.start + p.format.size] = point_bcd(p, value)
        return bytes(out)

    def handle(self, request: bytes, t: float) -> bytes | None:
        """The reply to one complete frame at ``t``, or ``None`` where a meter stays silent
        (another meter's frame, a broadcast, a frame that does not parse)."""
        try:
            f = wire.parse_frame(request)
        except wire.Dlt645DecodeError:
            return None
        if f.address == wire.BROADCAST and f.function == wire.BROADCAST_TIME:
            self.time_syncs += 1
            return None
        if not wire.address_matches(f.address, self.address):
            return None
        if not self.scenario.answers(self.address):  # type: ignore[attr-defined]
            return None
        self.requests += 1
        values: dict[int, bytes] = {}
        if f.function in (wire.READ_DATA, wire.READ_SUBSEQUENT) and len(f.data) >= 4:
            di = int.from_bytes(f.data[:4], "little")
            group = self.layout.groups.get(di)
            if group is not None:
                if f.function == wire.READ_DATA or di not in self._last:
                    self._last[di] = self.data(group, t)
                values[di] = self._last[di]
        answer = reply(f, self.address, values, password=self.password,
                       frame_data=self.frame_data)
        if answer is not None and f.function == wire.REMOTE_CONTROL \
                and answer[8] == wire.REPLY | wire.REMOTE_CONTROL:
            action = control_action(f)
            self.controls.append(action)
            self.relay = "open" if action == "trip" else "closed"
        if answer is not None:
            self.answered += 1
        return answer


class LineRequestFramer(RequestFramer):
    """Requests cut out of the stream of a line with Modbus RTU slaves, DL/T 645 meters
    or both. A DL/T 645 frame is recognised by its ``68 … 68 … CS 16`` structure (FE
    wake-up bytes before it are dropped); anything else is read as Modbus RTU, whose
    length follows from its function code. A byte that starts neither is dropped."""

    def __init__(self, max_buffer: int = 4096, modbus: bool = True, dlt645: bool = True
                 ) -> None:
        super().__init__(max_buffer)
        self.modbus, self.dlt645 = modbus, dlt645

    def _dlt645(self) -> int:
        """The length of the DL/T 645 frame at the front, 0 if none starts there, -1 if
        more bytes are needed to tell."""
        buf = self._buf
        if buf[0] != wire.START:
            return 0
        if len(buf) < 8:
            return -1
        if buf[7] != wire.START:
            return 0
        if len(buf) < 10:
            return -1
        n = wire.OVERHEAD + buf[9]
        if len(buf) < n:
            return -1
        ok = buf[n - 2] == wire.checksum(buf[:n - 2]) and buf[n - 1] == wire.END
        return n if ok else 0

    def _length(self, buf: bytearray) -> int:
        if self.dlt645 and buf[0] == wire.WAKEUP:
            return 0  # dropped: wake-up bytes announce a frame, they are not part of it
        n = self._dlt645() if self.dlt645 else 0
        if n == 0 and self.modbus:
            n = request_length(buf)
        return n
