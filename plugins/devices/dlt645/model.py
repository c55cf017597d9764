"""``Dlt645Model``: a data-identifier map put to work, with no I/O.

It implements :class:`hub.contracts.PolledDeviceModel`, like
:class:`plugins.devices.modbus.model.ModbusMapModel`, so the DTU transport drives both alike,
even on one line: it asks what to read (:meth:`~Dlt645Model.plan`,
:meth:`~Dlt645Model.request`, :meth:`~Dlt645Model.response_length`), sends one request at a
time to the meter's 12-digit address (where Modbus passes a slave number), frames the replies
(:meth:`~Dlt645Model.response_framer`, a :class:`plugins.protocols.dlt645.Dlt645Framer`) and
hands each back with the poll it answers (:meth:`~Dlt645Model.decode_response`). Two things
Modbus lacks:

* **Subsequent frames.** A meter whose reply does not fit one frame sets D5 (B1H) and the
  master fetches the rest with 12H: :meth:`~Dlt645Model.follow_up` gives the next request
  (``None`` once complete) and :meth:`~Dlt645Model.decode_response` takes every frame of the
  reply, in order.
* **Broadcast time sync** (08H), every ``time_sync_interval`` seconds when the options set
  it (:meth:`~Dlt645Model.broadcast_request`); no meter answers it.
* **Abnormal replies** (D1H: no such data identifier, password wrong, …) raise
  :class:`plugins.protocols.dlt645.MeterError`, a :class:`hub.contracts.DecodeError`, so the
  transport counts and logs them like any bad frame, naming the error bits.

Commands: ``trip`` and ``close`` become one 1CH request, only where the map enables them
and with the password and operator code of the model's options (secrets); anything else is
refused with :class:`hub.contracts.EncodeError`. The command's deadline (N3..N8) is its
timestamp plus ``command_validity``, in the meters' local time (``utc_offset``).

The model keeps no state between calls, so one instance serves every meter of the map.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from hub.contracts import DecodeError, EncodeError
from hub.model import Command, Reading, Record
from plugins.devices.dlt645.datamap import DataMap, Group, di_text
from plugins.protocols.dlt645 import frame as wire
from plugins.protocols.dlt645.frame import OFFSET, OVERHEAD, START, Frame, ReplyError
from plugins.protocols.dlt645.framer import MAX_DATA, Dlt645Framer
from plugins.protocols.dlt645.values import decode_value
from plugins.protocols.modbus.values import tidy

__all__ = ["Dlt645Model", "Dlt645Options", "Poll"]

#: A poll is one read: a data identifier and the points of its reply.
Poll = Group


@dataclass(frozen=True)
class Dlt645Options:
    """The checked options of one ``dlt645`` model (``models.<name>`` in ``hub.yaml``)."""

    map: DataMap
    password: str | None = None  # 6 hex digits, a Secret read from {env:}/{file:}
    password_level: int = 2  # PA
    operator: str = "00000000"  # C0..C3, recorded by the meter
    command_validity: float = 300.0  # s: the meter refuses the command afterwards
    utc_offset: float = 8.0  # h: the meters' clocks (China Standard Time)
    wakeup: int = 4  # FE bytes before each request
    response_timeout: float | None = None  # s; None: the transport's
    time_sync_interval: float | None = None  # s between broadcast time syncs; None: never

    def __repr__(self) -> str:  # the password never reaches a log
        return (f"Dlt645Options(map={self.map.file!r}, password={'***' if self.password else None}"
                f", commands={sorted(self.map.commands)})")


class Dlt645Model:
    """The device model of one data-identifier map (type ``dlt645``)."""

    #: no status words: nothing for the transport to remember between polls
    status_changes_only = False
    #: devices of this protocol on one line share one framer
    protocol = "dlt645"

    def __init__(self, options: Dlt645Options | DataMap) -> None:
        if isinstance(options, DataMap):
            options = Dlt645Options(options)
        self.options = options
        self.map = options.map
        self.heartbeat_interval: float | None = self.map.heartbeat_interval
        self.timeout_count: int | None = self.map.timeout_count
        self.poll_interval: float = self.map.poll_interval
        self._plan = self.map.groups
        self._by_di = {g.di: g for g in self._plan}
        self._tz = timezone(timedelta(hours=options.utc_offset))
        self.response_timeout: float | None = options.response_timeout
        self.broadcast_interval: float | None = options.time_sync_interval
        #: normal reply length by the request's data identifier, as it is on the wire
        self._lengths = {bytes((b + OFFSET) & 0xFF for b in g.di.to_bytes(4, "little")):
                         OVERHEAD + 4 + g.size for g in self._plan}

    @property
    def actions(self) -> frozenset[str]:
        """The command actions this map enables (and the options can sign)."""
        return frozenset(self.map.commands) if self.options.password else frozenset()

    # ---- polling ------------------------------------------------------------------------

    def plan(self) -> list[Poll]:
        """The reads of one poll cycle: one per data identifier or block, in map order."""
        return list(self._plan)

    def request(self, address: str, poll: Poll) -> bytes:
        """The 11H frame that asks meter ``address`` for ``poll``."""
        return wire.read_request(address, poll.di, self.options.wakeup)

    @staticmethod
    def check_unit(unit: object) -> str:
        """A meter address: 12 digits, in quotes (unquoted, YAML may read it as an octal
        number); :class:`ValueError` otherwise."""
        if not isinstance(unit, str) or not wire.is_address(unit):
            raise ValueError(f"slave: {unit!r} is not a DL/T 645 meter address (12 digits, "
                             "in quotes)")
        return unit.upper()

    def response_framer(self, max_buffer: int, units: Collection[str],
                        ignore: Collection[bytes]) -> Dlt645Framer:
        """A DL/T 645 framer for one line (it needs no list of the meters on it)."""
        return Dlt645Framer(max(max_buffer, OVERHEAD + MAX_DATA), MAX_DATA, ignore)

    def response_length(self, request: bytes) -> int:
        """The bytes of a normal reply to ``request`` from ``68`` to ``16``: a planned read's
        from the map; a 12H read's at least a data identifier and its number; 1CH's, no
        data; 0 for a broadcast (no reply)."""
        i = request.find(START)
        control = request[i + 8]
        if control == wire.READ_DATA:
            return self._lengths.get(request[i + 10:i + 14], OVERHEAD + 4)
        if control == wire.READ_SUBSEQUENT:
            return OVERHEAD + 5
        if request[i + 1:i + 7] == b"\x99" * 6:
            return 0
        return OVERHEAD

    def broadcast_request(self, now: float) -> bytes | None:
        """The broadcast time sync, if the options ask for one."""
        return self.time_sync_request(now) if self.broadcast_interval else None

    def readback_request(self, write: bytes) -> bytes:
        raise EncodeError("DL/T 645 commands are not read back (the 9CH reply confirms them)")

    def check_readback(self, write: bytes, frame: bytes) -> None:
        raise DecodeError("DL/T 645 commands are not read back")

    def expected_length(self, poll: Poll) -> int:
        """The bytes of a normal one-frame reply to ``poll``, from ``68`` to ``16`` (a meter
        may send FE bytes before it; an abnormal reply is 13 bytes)."""
        return OVERHEAD + 4 + poll.size

    def follow_up(self, address: str, poll: Poll, frames: Sequence[bytes | Frame]
                  ) -> bytes | None:
        """The 12H request for the next frame of a reply whose last frame so far has D5 set,
        or ``None`` when ``frames`` hold the whole reply. Raises like
        :meth:`decode_response` for a frame that is not the reply."""
        last_raw = frames[-1]
        if isinstance(last_raw, bytes) and len(last_raw) > 8 and last_raw[0] == START \
                and not last_raw[8] & wire.MORE:
            return None  # the common case, decided without parsing the frame again
        last = wire.read_reply(frames[-1], address, poll.di, len(frames) - 1)
        if not last.more:
            return None
        return wire.read_subsequent_request(address, poll.di, len(frames), self.options.wakeup)

    # ---- decoding -----------------------------------------------------------------------

    def decode_response(self, device: str, address: str, poll: Poll,
                        frame: bytes | Frame | Sequence[bytes | Frame], received_at: float,
                        status: dict[int, int] | None = None) -> list[Record]:
        """Readings from the reply of meter ``address`` to ``poll``: one frame, or every
        frame of a reply in several (the first answering 11H, the others 12H).

        Raises :class:`plugins.protocols.dlt645.MeterError` for an abnormal reply and
        another :class:`hub.contracts.DecodeError` for a frame from another meter, for another
        data identifier, of the wrong length or incomplete. A value that is not BCD (some
        meters send FFH for a value they lack) gives no reading; when no value of the reply
        is readable, :class:`DecodeError`. ``status`` is accepted for the transport's sake
        and unused."""
        frames = [frame] if isinstance(frame, (bytes, bytearray, Frame)) else list(frame)
        data = b""
        more = False
        for seq, f in enumerate(frames):
            if seq and not more:
                raise ReplyError(f"{str(poll)}: frame {seq} follows a final frame", b"", None)
            reply = wire.read_reply(f, address, poll.di, seq)
            data += reply.data
            more = reply.more
        if more:
            raise ReplyError(f"{poll}: the reply is incomplete (a subsequent frame follows)",
                             b"", None)
        return self._records(device, poll, data, received_at)

    def decode(self, device: str, payload: bytes, received_at: float) -> list[Record]:
        """Readings from one complete 91H frame with no request in hand (a reply after its
        poll timed out, DL/T 645 carried in MQTT): the planned poll is found by its data
        identifier. :class:`DecodeError` when no poll has it."""
        f = wire.parse_frame(payload)
        if len(f.data) < 4:
            raise ReplyError(f"frame {f.control:02X}H has no data identifier",
                             f.raw[:wire.EXCERPT], 9)
        poll = self.match_poll(int.from_bytes(f.data[:4], "little"), f.raw)
        return self.decode_response(device, f.address, poll, f, received_at)

    def match_poll(self, di: int, excerpt: bytes = b"") -> Poll:
        """The planned poll of data identifier ``di``; :class:`DecodeError` if none."""
        poll = self._by_di.get(di)
        if poll is None:
            planned = ", ".join(di_text(g.di) for g in self._plan)
            raise ReplyError(f"data identifier {di_text(di)} is not in the map (planned: "
                             f"{planned})", excerpt[:wire.EXCERPT], 10)
        return poll

    def _records(self, device: str, poll: Poll, data: bytes, ts: float) -> list[Record]:
        if len(data) != poll.size:
            raise ReplyError(f"{poll}: {len(data)} data bytes, the map expects {poll.size}",
                             data[:wire.EXCERPT], wire.HEADER + 4)
        out: list[Record] = []
        for p in poll.points:
            try:
                value = decode_value(data[p.start:p.start + p.format.size], p.format,
                                     p.signed, wire.HEADER + 4 + p.start)
            except DecodeError:
                continue  # a value the meter does not have (FFH): no reading
            out.append(Reading(device, p.quantity,
                               tidy(value * p.scale * p.factor + p.unit_offset), ts, p.channel))
        if not out:
            raise DecodeError(f"{poll}: no value of the reply is BCD", data[:wire.EXCERPT],
                              wire.HEADER + 4)
        return out

    # ---- commands -----------------------------------------------------------------------

    def command_requests(self, command: Command, address: str) -> list[bytes]:
        """The 1CH request that carries out ``command`` (``trip`` or ``close``), as a list
        of one, like the Modbus model's writes. :class:`EncodeError` when the map does not
        enable the action or the options lack the password."""
        action = self.map.commands.get(command.action)
        if action is None:
            enabled = ", ".join(sorted(self.map.commands)) or "none"
            raise EncodeError(f"{command.action} is not enabled by the map {self.map.file} "
                              f"(enabled: {enabled}; trip and close need commands: "
                              "{trip: true, close: true} in the map)")
        if not self.options.password:
            raise EncodeError(f"{command.action} needs the meters' password: set password: "
                              "{env: NAME} in the model's options")
        until = datetime.fromtimestamp(command.ts + self.options.command_validity, UTC)
        return [wire.control_request(address, action, self.options.password,
                                     self.options.operator, until.astimezone(self._tz),
                                     self.options.password_level, self.options.wakeup)]

    def encode_command(self, device: str, command: Command, address: str = "") -> bytes:
        """The 1CH request for ``command`` (:class:`hub.contracts.DeviceModel`)."""
        if not address:
            raise EncodeError("a DL/T 645 command needs the meter's address")
        return self.command_requests(command, address)[0]

    def needs_readback(self, command: Command) -> bool:
        """Never: the 9CH reply is the meter's confirmation."""
        return False

    def check_write_response(self, request: bytes, frame: bytes | Frame) -> None:
        """Accept the meter's 9CH reply to the 1CH ``request``, or raise
        :class:`plugins.protocols.dlt645.MeterError` (DCH: e.g. password wrong) /
        :class:`hub.contracts.DecodeError`."""
        wire.control_reply(frame, wire.parse_frame(request).address)

    def time_sync_request(self, now: float) -> bytes:
        """The 08H broadcast that sets every meter's clock on a line to ``now`` (UTC
        seconds), in the meters' local time."""
        return wire.time_sync(datetime.fromtimestamp(now, UTC).astimezone(self._tz),
                              self.options.wakeup)
