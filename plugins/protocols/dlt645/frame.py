"""DL/T 645-2007 frames: addresses, checksum, the requests a master sends and the replies
it accepts. Pure functions over bytes, no I/O.

A frame is (DL/T 645-2007, data link layer, 帧格式)::

    FE…FE  68  A0 A1 A2 A3 A4 A5  68  C  L  DATA(L bytes)  CS  16

* ``FE`` wake-up bytes (前导字节, usually four) may precede a frame in either direction;
  they are not part of it and not in the checksum.
* ``A0..A5``: the 12-digit address as BCD, low byte first (地址域): meter ``000000000161``
  is ``61 01 00 00 00 00`` on the wire. ``999999999999`` is the broadcast address (time
  sync, no reply); ``AA`` bytes are wildcards (缩位寻址), ``AAAAAAAAAAAA`` reads the address
  of the one meter on a line (control 13H), and the reply carries the real address.
* ``C`` (控制码): D7 direction (1 = reply), D6 abnormal reply, D5 a subsequent frame follows,
  D4..D0 the function: 08H broadcast time sync, 11H read data, 12H read subsequent data,
  13H read address, 1CH trip/close/alarm/keep-power (跳合闸、报警、保电).
* ``DATA`` is sent with 33H added to every byte (数据域, "发送方按字节进行加33H处理"),
  so ``CS`` and the data field rarely look like ``68``/``16``.
* ``CS`` (校验码): the sum modulo 256 of every byte from the first ``68`` to the last data
  byte; ``16`` ends the frame.

Everything here works on the data field *without* the 33H offset (:class:`Frame.data`);
the offset is applied in :func:`encode_frame` and removed in :func:`parse_frame` only.

Builders refuse arguments the protocol cannot carry with :class:`hub.contracts.EncodeError`;
parsers refuse bad frames with a :class:`Dlt645DecodeError` subclass (a
:class:`hub.contracts.DecodeError`, excerpt and offset set) that names what was wrong, and an
abnormal reply (D6 set) with :class:`MeterError`, which carries the error word.

References: DL/T 645-2007 《多功能电能表通信协议》: the data link layer (frame, address,
control code, 33H offset, checksum) and the application layer (read data, read subsequent
data, read address, broadcast time sync, trip/close 1CH, the error word ERR). The test
vectors are a published capture of a meter at address 000000000161 (读正向有功总电能,
读A相电压, …), re-computed by hand in the tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from hub.contracts import DecodeError, EncodeError

__all__ = [
    "ADDRESS_WILDCARD",
    "BROADCAST",
    "CONTROL_ACTIONS",
    "ERROR_BITS",
    "EXCERPT",
    "AddressError",
    "ChecksumError",
    "Dlt645DecodeError",
    "EndError",
    "Frame",
    "LengthError",
    "MeterError",
    "ReadReply",
    "ReplyError",
    "address_matches",
    "checksum",
    "control_reply",
    "control_request",
    "decode_address",
    "encode_address",
    "encode_frame",
    "is_address",
    "parse_address_reply",
    "parse_frame",
    "read_address_request",
    "read_reply",
    "read_request",
    "read_subsequent_request",
    "time_sync",
]

START, END, WAKEUP, OFFSET = 0x68, 0x16, 0xFE, 0x33

# Function codes (C & 1FH) and the control bytes built from them (控制码 C)
BROADCAST_TIME = 0x08
READ_DATA = 0x11
READ_SUBSEQUENT = 0x12
READ_ADDRESS = 0x13
REMOTE_CONTROL = 0x1C
REPLY, ABNORMAL, MORE = 0x80, 0x40, 0x20

BROADCAST = "999999999999"
ADDRESS_WILDCARD = "AAAAAAAAAAAA"
EXCERPT = 48  # bytes of a bad frame kept for the log
HEADER = 10  # 68 A0..A5 68 C L
OVERHEAD = 12  # HEADER + CS + 16

#: The error word ERR of an abnormal reply (错误信息字 ERR), bit → meaning (bit 7 reserved).
#: Several bits may be set at once.
ERROR_BITS = {
    0: "other error",  # 其他错误
    1: "no requested data",  # 无请求数据 (the meter lacks this data identifier)
    2: "password wrong or not authorised",  # 密码错/未授权
    3: "baud rate cannot be changed",  # 通信速率不能更改
    4: "too many year time zones",  # 年时区数超
    5: "too many day periods",  # 日时段数超
    6: "too many tariffs",  # 费率数超
}

#: Command byte N1 of a 1CH request per action (DL/T 645-2007, control code 1CH 跳合闸、报警、保电:
#: 1AH trip 跳闸, 1BH close allowed 合闸允许, 2AH alarm, 2BH alarm released, 3AH keep power
#: 保电, 3BH keep power released; 1CH close directly 直接合闸 is a later addition that not
#: every meter knows).
CONTROL_ACTIONS = {
    "trip": 0x1A,
    "close": 0x1B,
    "close_direct": 0x1C,
    "alarm": 0x2A,
    "alarm_release": 0x2B,
    "keep_power": 0x3A,
    "keep_power_release": 0x3B,
}

_ADDRESS = re.compile(r"(?:[0-9]{2}|AA){6}")


# ---- errors -------------------------------------------------------------------------------


class Dlt645DecodeError(DecodeError):
    """A frame or reply that is not what DL/T 645-2007 or the request allows. ``reason``
    names the kind for metrics (``dtu.frame_errors{reason=…}``)."""

    reason = "decode"


class ChecksumError(Dlt645DecodeError):
    reason = "checksum"


class LengthError(Dlt645DecodeError):
    """The frame is shorter or longer than its L field says (or shorter than a header)."""

    reason = "length"


class EndError(Dlt645DecodeError):
    """No ``16`` where the frame ends (or no ``68`` where it starts or at offset 7)."""

    reason = "end"


class AddressError(Dlt645DecodeError):
    """The address is not BCD, or a reply comes from another meter than the one asked."""

    reason = "address"


class ReplyError(Dlt645DecodeError):
    """A well-formed frame that does not answer the request (control code, data
    identifier, data length)."""

    reason = "reply"


class MeterError(Dlt645DecodeError):
    """The meter answered with an abnormal reply (D6 of the control code set, e.g. D1H to
    a read): ``code`` is the error word ERR, ``reasons`` its bits in words."""

    reason = "meter_error"

    def __init__(self, address: str, control: int, code: int, excerpt: bytes = b"") -> None:
        self.address = address
        self.control = control
        self.code = code
        self.reasons = tuple(text for bit, text in ERROR_BITS.items() if code >> bit & 1) or (
            f"unknown error word {code:02X}H",)
        super().__init__(f"meter {address} answered {control:02X}H: {', '.join(self.reasons)} "
                         f"(ERR={code:02X}H)", excerpt[:EXCERPT], 10)


# ---- addresses ----------------------------------------------------------------------------


def encode_address(address: str) -> bytes:
    """The 6 wire bytes of a 12-character address (digits, with ``AA`` wildcard bytes),
    low byte first: ``"000000000161"`` → ``61 01 00 00 00 00``."""
    if not isinstance(address, str) or not _ADDRESS.fullmatch(address.upper()):
        raise EncodeError(f"address {address!r} is not 12 BCD digits (AA for a wildcard byte)")
    return bytes.fromhex(address)[::-1]


def is_address(address: str) -> bool:
    """Whether ``address`` is 12 BCD digits (``AA`` allowed for a wildcard byte)."""
    return bool(_ADDRESS.fullmatch(address.upper()))


def decode_address(wire: bytes, excerpt: bytes = b"", offset: int = 1) -> str:
    """The 12-character address of 6 wire bytes; :class:`AddressError` if a byte is
    neither two BCD digits nor the ``AA`` wildcard."""
    for i, b in enumerate(wire):
        if b != 0xAA and (b >> 4 > 9 or b & 0xF > 9):
            raise AddressError(f"address byte A{i} = {b:02X}H is not BCD",
                               (excerpt or wire)[:EXCERPT], offset + i)
    return wire[::-1].hex().upper()


def address_matches(asked: str, answered: str) -> bool:
    """Whether a reply from ``answered`` answers a request to ``asked`` (``AA`` bytes of
    ``asked`` match any byte)."""
    return len(asked) == len(answered) and all(
        a == b or a == "AA" for a, b in zip(re.findall("..", asked.upper()),
                                            re.findall("..", answered), strict=True))


# ---- frames -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame: ``data`` without the 33H offset; ``raw`` from the first ``68`` to ``16``
    (wake-up bytes dropped). ``solicited``: the stream framer took it as the answer to the
    request in hand."""

    address: str
    control: int
    data: bytes
    raw: bytes
    solicited: bool = False

    @property
    def unit(self) -> str:
        """The meter's address (:class:`hub.contracts.ResponseFrame`)."""
        return self.address

    @property
    def function(self) -> int:
        return self.control & 0x1F

    @property
    def is_reply(self) -> bool:
        return bool(self.control & REPLY)

    @property
    def is_abnormal(self) -> bool:
        return bool(self.control & ABNORMAL)

    @property
    def more(self) -> bool:
        """A subsequent frame follows (D5, 后续帧标志)."""
        return bool(self.control & MORE)


def checksum(body: bytes) -> int:
    """CS: the sum modulo 256 of the bytes from the first ``68`` to the last data byte."""
    return sum(body) & 0xFF


def encode_frame(address: str, control: int, data: bytes = b"", wakeup: int = 4) -> bytes:
    """A whole frame: ``wakeup`` FE bytes, then ``68 A 68 C L DATA+33H CS 16``."""
    if not 0 <= control <= 0xFF:
        raise EncodeError(f"control code {control} is not a byte")
    if len(data) > 0xFF:
        raise EncodeError(f"{len(data)} data bytes do not fit the L field (at most 255)")
    body = (bytes([START]) + encode_address(address) + bytes([START, control, len(data)])
            + bytes((b + OFFSET) & 0xFF for b in data))
    return b"\xfe" * wakeup + body + bytes([checksum(body), END])


def parse_frame(raw: bytes) -> Frame:
    """One complete frame (leading FE bytes allowed), or a :class:`Dlt645DecodeError`:
    :class:`LengthError`, :class:`EndError`, :class:`ChecksumError` or
    :class:`AddressError`. Offsets count from the first ``68``."""
    raw = bytes(raw)
    skip = len(raw) - len(raw.lstrip(b"\xfe"))
    frame = raw[skip:]
    if len(frame) < OVERHEAD:
        raise LengthError(f"{len(frame)} bytes are shorter than the shortest frame "
                          f"({OVERHEAD})", frame[:EXCERPT], len(frame))
    if frame[0] != START or frame[7] != START:
        at = 0 if frame[0] != START else 7
        raise EndError(f"no 68H at offset {at}", frame[:EXCERPT], at)
    n = OVERHEAD + frame[9]
    if len(frame) != n:
        raise LengthError(f"L = {frame[9]} makes a frame of {n} bytes, got {len(frame)}",
                          frame[:EXCERPT], 9)
    cs = checksum(frame[:n - 2])
    if frame[n - 2] != cs:
        raise ChecksumError(f"checksum {frame[n - 2]:02X}H, computed {cs:02X}H",
                            frame[:EXCERPT], n - 2)
    if frame[n - 1] != END:
        raise EndError(f"frame ends with {frame[n - 1]:02X}H, not 16H", frame[:EXCERPT], n - 1)
    address = decode_address(frame[1:7], frame)
    data = bytes((b - OFFSET) & 0xFF for b in frame[HEADER:n - 2])
    return Frame(address, frame[8], data, frame)


def _frame(frame: bytes | Frame) -> Frame:
    return frame if isinstance(frame, Frame) else parse_frame(frame)


def _di_bytes(di: int) -> bytes:
    if not 0 <= di <= 0xFFFFFFFF:
        raise EncodeError(f"data identifier {di:#x} is not 4 bytes")
    return di.to_bytes(4, "little")  # DI0 first (the data field of 11H: DI0 DI1 DI2 DI3)


def _check_reply(f: Frame, address: str, function: int) -> None:
    if not address_matches(address, f.address):
        raise AddressError(f"reply from {f.address}, asked {address.upper()}",
                           f.raw[:EXCERPT], 1)
    if not f.is_reply or f.function != function:
        raise ReplyError(f"control {f.control:02X}H does not answer {function:02X}H",
                         f.raw[:EXCERPT], 8)
    if f.is_abnormal:
        if len(f.data) != 1:
            raise ReplyError(f"abnormal reply with {len(f.data)} data bytes, not 1 (ERR)",
                             f.raw[:EXCERPT], 9)
        raise MeterError(f.address, f.control, f.data[0], f.raw)


# ---- read data (11H/91H/B1H/D1H) and read subsequent data (12H/92H/B2H/D2H) ----------------


@dataclass(frozen=True, slots=True)
class ReadReply:
    """The normal reply to a read: ``data`` after the data identifier (and before SEQ);
    ``more``: a subsequent frame follows (B1H/B2H), to fetch with
    :func:`read_subsequent_request` and sequence number ``seq + 1`` (``seq`` 0 for the
    first frame)."""

    address: str
    di: int
    data: bytes
    more: bool
    seq: int = 0


def read_request(address: str, di: int, wakeup: int = 4) -> bytes:
    """11H: read data identifier ``di`` (e.g. ``0x02010100``, phase A voltage)."""
    return encode_frame(address, READ_DATA, _di_bytes(di), wakeup)


def read_subsequent_request(address: str, di: int, seq: int, wakeup: int = 4) -> bytes:
    """12H: the subsequent frame ``seq`` (1, 2, …) of a read whose reply had D5 set."""
    if not 1 <= seq <= 0xFF:
        raise EncodeError(f"subsequent frame number {seq} is outside 1..255")
    return encode_frame(address, READ_SUBSEQUENT, _di_bytes(di) + bytes([seq]), wakeup)


def read_reply(frame: bytes | Frame, address: str, di: int, seq: int = 0) -> ReadReply:
    """The data of the reply of ``address`` to a read of ``di`` (``seq`` > 0: to read
    subsequent frame ``seq``). :class:`MeterError` for an abnormal reply (D1H/D2H);
    :class:`AddressError`, :class:`ReplyError` (another control code, data identifier or
    sequence number) or a framing error otherwise."""
    f = _frame(frame)
    function = READ_SUBSEQUENT if seq else READ_DATA
    _check_reply(f, address, function)
    data = f.data
    need = 5 if seq else 4
    if len(data) < need:
        raise ReplyError(f"reply with {len(data)} data bytes has no data identifier"
                         + (" and SEQ" if seq else ""), f.raw[:EXCERPT], 9)
    got = int.from_bytes(data[:4], "little")
    if got != di:
        raise ReplyError(f"reply for data identifier {got:08X}, asked {di:08X}",
                         f.raw[:EXCERPT], HEADER)
    if seq:
        if data[-1] != seq:
            raise ReplyError(f"subsequent frame {data[-1]}, asked {seq}", f.raw[:EXCERPT],
                             HEADER + len(data) - 1)
        return ReadReply(f.address, got, data[4:-1], f.more, seq)
    return ReadReply(f.address, got, data[4:], f.more, 0)


# ---- read address (13H/93H) ---------------------------------------------------------------


def read_address_request(wakeup: int = 4) -> bytes:
    """13H to ``AAAAAAAAAAAA``: the one meter on the line answers with its address (only
    meaningful point to point: several meters would answer at once)."""
    return encode_frame(ADDRESS_WILDCARD, READ_ADDRESS, b"", wakeup)


def parse_address_reply(frame: bytes | Frame) -> str:
    """The address a 93H reply carries (in its data field, and as its address)."""
    f = _frame(frame)
    _check_reply(f, ADDRESS_WILDCARD, READ_ADDRESS)
    if len(f.data) != 6:
        raise ReplyError(f"93H reply with {len(f.data)} data bytes, not 6", f.raw[:EXCERPT], 9)
    address = decode_address(f.data, f.raw, HEADER)
    if address != f.address:
        raise AddressError(f"93H reply from {f.address} carries address {address}",
                           f.raw[:EXCERPT], HEADER)
    return address


# ---- broadcast time sync (08H) ------------------------------------------------------------


def _bcd(n: int) -> int:
    return (n // 10) << 4 | n % 10


def _datetime_bcd(when: datetime) -> bytes:
    """ss mm hh DD MM YY, lowest first (the date-time YYMMDDhhmmss of 08H and 1CH)."""
    if not 2000 <= when.year <= 2099:
        raise EncodeError(f"year {when.year} is outside 2000..2099 (two BCD digits)")
    return bytes(_bcd(v) for v in (when.second, when.minute, when.hour, when.day,
                                   when.month, when.year % 100))


def time_sync(when: datetime, wakeup: int = 4) -> bytes:
    """08H to the broadcast address: every meter on the line sets its clock to ``when``
    (the meter's local time: pass a naive or local datetime). Meters do not reply to a
    broadcast; many refuse a sync that moves their clock too far (their manual says how
    far and how often)."""
    return encode_frame(BROADCAST, BROADCAST_TIME, _datetime_bcd(when), wakeup)


# ---- trip / close (1CH/9CH/DCH) -----------------------------------------------------------


def _hex_digits(value: str, digits: int, what: str) -> bytes:
    if not isinstance(value, str) or not re.fullmatch(f"[0-9A-Fa-f]{{{digits}}}", value):
        raise EncodeError(f"{what} must be {digits} hexadecimal digits")
    return bytes.fromhex(value)[::-1]  # written high digits first, sent low byte first


def control_request(address: str, action: str, password: str, operator: str,
                    valid_until: datetime, level: int = 2, wakeup: int = 4) -> bytes:
    """1CH: trip, close, alarm or keep-power (:data:`CONTROL_ACTIONS`).

    Data field (16 bytes): PA P0 P1 P2 (password level and 6-digit password), C0..C3
    (8-digit operator code, recorded by the meter), N1 (the action), N2 (00H), N3..N8 (the
    command's deadline, ss mm hh DD MM YY: the meter refuses it afterwards). ``password``
    and ``operator`` are written as printed on the meter's documentation, high digits
    first; the wire carries them low byte first. The message never contains them."""
    if action not in CONTROL_ACTIONS:
        raise EncodeError(f"unknown control action {action!r} (one of "
                          f"{', '.join(CONTROL_ACTIONS)})")
    if not 0 <= level <= 0xFF:
        raise EncodeError(f"password level {level} is not a byte")
    data = (bytes([level]) + _hex_digits(password, 6, "the password")
            + _hex_digits(operator, 8, "the operator code")
            + bytes([CONTROL_ACTIONS[action], 0]) + _datetime_bcd(valid_until))
    return encode_frame(address, REMOTE_CONTROL, data, wakeup)


def control_reply(frame: bytes | Frame, address: str) -> None:
    """Accept the 9CH reply of ``address`` to a 1CH request; :class:`MeterError` for a DCH
    (abnormal) reply, e.g. bit 2: password wrong."""
    f = _frame(frame)
    _check_reply(f, address, REMOTE_CONTROL)
    if f.data:
        raise ReplyError(f"9CH reply with {len(f.data)} data bytes, not 0", f.raw[:EXCERPT], 9)
