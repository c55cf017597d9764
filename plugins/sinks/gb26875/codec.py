"""GB/T 26875.3-2011 frames and application data, sans-IO.

Everything here is pure: bytes in, frozen dataclasses out, and back. No sockets, no clock
(the caller passes every time label). The facts come from the standard's text as summarised
in ``shared/research/protocols.md`` §1; section numbers below are the standard's.

Frame (Table 1), byte numbers 1-based::

    1-2  "@@" | 3-4 serial (LE) | 5 main version (1) | 6 user version | 7-12 time label
    13-18 source address (LE) | 19-24 destination (LE) | 25-26 data length (LE, <= 1024)
    27 command | 28.. application data | checksum (sum of bytes 3..27+data, mod 256) | "##"

Application data (§7, §8.1): ``type | count n | n objects`` where each object has the
layout of its type (:data:`LAYOUTS`), most ending with a 6-byte time label.

Errors are values of one small hierarchy rooted at :class:`GBDecodeError` (a
:class:`hub.contracts.DecodeError`), so a caller catches one class. A :class:`FrameError` carries
the header when it could be read, because the standard wants a *deny* (否认) for a frame that
fails its checks, and a deny needs the serial number and the addresses.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, ClassVar

from hub.contracts import DecodeError, EncodeError

START = b"@@"
END = b"##"
#: bytes before the application data: markers(2) + control unit(25)
HEADER_SIZE = 27
#: header + checksum + end marker
OVERHEAD = 30
MAX_DATA = 1024
MAX_FRAME = OVERHEAD + MAX_DATA
MAIN_VERSION = 1
#: Width of the fixed description fields of types 2 and 7 (GB 18030, NUL padded).
DESCRIPTION_WIDTH = 31

# Command bytes (Table 2).
CMD_CONTROL = 1
CMD_SEND = 2
CMD_CONFIRM = 3
CMD_REQUEST = 4
CMD_ANSWER = 5
CMD_DENY = 6
#: 0 and 7-127 are reserved: a frame carrying one fails the checks (§6.5); 128-255 are
#: user-defined and pass them.
KNOWN_COMMANDS = frozenset({1, 2, 3, 4, 5, 6}) | frozenset(range(128, 256))


# ---------------------------------------------------------------------------- errors


class GBDecodeError(DecodeError):
    """Bytes that are not valid GB/T 26875.3 (the root of this module's errors)."""


class FrameError(GBDecodeError):
    """A frame failed the checks of §6.5 (marker, length, checksum, command byte).

    ``header`` is the decoded header when the first 27 bytes could be read (so the caller
    can answer with a deny), else ``None``. ``kind`` is a short machine-readable reason:
    ``marker``, ``length``, ``checksum``, ``command``, ``time``.
    """

    def __init__(self, message: str, kind: str, excerpt: bytes = b"",
                 header: Frame | None = None) -> None:
        super().__init__(message, excerpt)
        self.kind = kind
        self.header = header


class AppDataError(GBDecodeError):
    """Application data that does not match its type's layout or count limit."""


# ---------------------------------------------------------------------------- time label


def decode_time(b: bytes) -> datetime:
    """Six bytes second, minute, hour, day, month, year-2000, each plain binary (§8.2.2)."""
    if len(b) != 6:
        raise GBDecodeError(f"time label needs 6 bytes, got {len(b)}", bytes(b))
    s, mi, h, d, mo, y = b
    try:
        return datetime(2000 + y, mo, d, h, mi, s)
    except ValueError as e:
        raise GBDecodeError(f"bad time label {bytes(b).hex(' ')}: {e}", bytes(b)) from None


def encode_time(t: datetime) -> bytes:
    """The 6-byte time label of ``t`` (naive, in the sender's local time; years 2000-2099)."""
    if not 2000 <= t.year <= 2099:
        raise EncodeError(f"time label year {t.year} is outside 2000-2099")
    return bytes((t.second, t.minute, t.hour, t.day, t.month, t.year - 2000))


# ---------------------------------------------------------------------------- strings


def encode_text(text: str, width: int | None = None) -> bytes:
    """``text`` in GB 18030; with ``width``, NUL padded to exactly that many bytes."""
    raw = text.encode("gb18030")
    if width is not None:
        if len(raw) > width:
            raise EncodeError(f"{text!r} is {len(raw)} bytes in GB 18030, over {width}")
        raw = raw.ljust(width, b"\0")
    return raw


def fit_text(text: str, width: int = DESCRIPTION_WIDTH) -> str:
    """``text`` shortened at a character boundary until its GB 18030 form fits ``width``."""
    while len(text.encode("gb18030")) > width:
        text = text[:-1]
    return text


def decode_text(raw: bytes) -> str:
    """A GB 18030 field without its NUL (and space) padding. Undecodable bytes become U+FFFD:
    a garbled description must not make an alarm unreadable."""
    return bytes(raw).rstrip(b"\0 ").decode("gb18030", errors="replace")


# ---------------------------------------------------------------------------- frame


@dataclass(frozen=True)
class Frame:
    """One frame. ``data`` is the application data unit, raw (see :func:`decode_app_data`).

    Addresses are 48-bit integers (sent low byte first); ``time`` is the send time label.
    """

    serial: int
    command: int
    time: datetime
    source: int = 0
    destination: int = 0
    data: bytes = b""
    version: int = MAIN_VERSION
    user_version: int = 0

    def encode(self) -> bytes:
        """The frame's bytes, checksum and markers included."""
        if len(self.data) > MAX_DATA:
            raise EncodeError(f"application data is {len(self.data)} bytes, over {MAX_DATA}")
        try:
            control = (struct.pack("<HBB", self.serial, self.version, self.user_version)
                       + encode_time(self.time)
                       + self.source.to_bytes(6, "little")
                       + self.destination.to_bytes(6, "little")
                       + struct.pack("<HB", len(self.data), self.command))
        except (struct.error, OverflowError) as e:
            raise EncodeError(f"frame header out of range: {e}") from None
        body = control + self.data
        return START + body + bytes((sum(body) & 0xFF,)) + END

    def reply(self, command: int, time: datetime, data: bytes = b"") -> Frame:
        """The answer to this frame: same serial and versions, addresses swapped (§6.2;
        as the public example server does)."""
        return Frame(self.serial, command, time, self.destination, self.source, data,
                     self.version, self.user_version)

    def app_data(self) -> AppData:
        """The decoded application data (raises :class:`AppDataError`)."""
        return decode_app_data(self.data)


def _header(buf: bytes) -> Frame:
    """The header fields of the 27 bytes at the start of ``buf`` (data left empty)."""
    serial, version, user = struct.unpack_from("<HBB", buf, 2)
    length, command = struct.unpack_from("<HB", buf, 24)
    try:
        t = decode_time(buf[6:12])
    except GBDecodeError:
        t = datetime(2000, 1, 1)  # reported by the caller; a deny can still be built
    return Frame(serial, command, t, int.from_bytes(buf[12:18], "little"),
                 int.from_bytes(buf[18:24], "little"), b"", version, user)


def decode_frame(buf: bytes) -> Frame:
    """Exactly one complete frame; any check that fails raises :class:`FrameError`."""
    buf = bytes(buf)
    if len(buf) < OVERHEAD or buf[:2] != START:
        raise FrameError("frame does not start with '@@' or is shorter than 30 bytes",
                         "marker", buf[:32])
    header = _header(buf)
    length = struct.unpack_from("<H", buf, 24)[0]
    if length > MAX_DATA:
        raise FrameError(f"application data length {length} is over {MAX_DATA}", "length",
                         buf[:HEADER_SIZE], header)
    if len(buf) != OVERHEAD + length:
        raise FrameError(f"frame is {len(buf)} bytes, its length field says "
                         f"{OVERHEAD + length}", "length", buf[:HEADER_SIZE], header)
    if buf[-2:] != END:
        raise FrameError("frame does not end with '##'", "marker", buf[-8:], header)
    check = sum(buf[2:HEADER_SIZE + length]) & 0xFF
    if buf[HEADER_SIZE + length] != check:
        raise FrameError(f"checksum {buf[HEADER_SIZE + length]:#04x}, computed {check:#04x}",
                         "checksum", buf[:HEADER_SIZE], header)
    if header.command not in KNOWN_COMMANDS:
        raise FrameError(f"command byte {header.command} is reserved", "command",
                         buf[26:27], header)
    try:
        t = decode_time(buf[6:12])
    except GBDecodeError as e:
        raise FrameError(str(e), "time", buf[6:12], header) from None
    return Frame(header.serial, header.command, t, header.source, header.destination,
                 buf[HEADER_SIZE:HEADER_SIZE + length], header.version, header.user_version)


class StreamDecoder:
    """Frames out of a TCP byte stream, resynchronising after bad bytes (h11 style).

    ``feed(data)`` returns, in stream order, every :class:`Frame` now complete and a
    :class:`FrameError` (as a value, not raised) for each bad frame, so the caller can deny
    it and go on. Bytes before a start marker are skipped and counted in ``skipped``. After
    any bad frame the decoder searches for the next ``@@`` one byte past the bad one's start:
    a corrupted length field may have swallowed the good frame that followed.
    The buffer never holds more than one maximal frame (1054 bytes).
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.skipped = 0

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        self._buf += data
        out: list[Frame | FrameError] = []
        buf = self._buf
        while True:
            i = buf.find(START)
            if i < 0:
                keep = 1 if buf.endswith(b"@") else 0  # half a marker may follow
                self.skipped += len(buf) - keep
                del buf[:len(buf) - keep]
                return out
            if i:
                self.skipped += i
                del buf[:i]
            if len(buf) < HEADER_SIZE:
                return out
            length = buf[24] | buf[25] << 8
            if length > MAX_DATA:
                out.append(FrameError(f"application data length {length} is over {MAX_DATA}",
                                      "length", bytes(buf[:HEADER_SIZE]), _header(buf)))
                self._drop(1)
                continue
            size = OVERHEAD + length
            if len(buf) < size:
                return out
            chunk = bytes(buf[:size])
            try:
                out.append(decode_frame(chunk))
                del buf[:size]
            except FrameError as e:
                out.append(e)
                # one byte only: a bad length may have swallowed the next good frame, and
                # a good frame is never lost by searching again just past this "@@"
                self._drop(1)

    def _drop(self, n: int) -> None:
        self.skipped += n
        del self._buf[:n]

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self._buf)


# ---------------------------------------------------------------------------- app data
#
# Each object type is a frozen dataclass whose fields, in order, are the bytes on the wire.
# ``_codes`` says each field's encoding: B uint8, H uint16 LE, h int16 LE, I uint32 LE,
# T time label, S fixed 31-byte GB 18030 text, L a length byte then that much text.


@dataclass(frozen=True)
class Obj:
    """Base of the object types (one information object of an application data unit)."""

    _codes: ClassVar[str] = ""


@dataclass(frozen=True)
class SystemState(Obj):
    """Type 1: a building fire facility system's state (bits: :data:`SYSTEM_STATE_BITS`)."""

    sys_type: int
    sys_addr: int
    state: int
    time: datetime
    _codes: ClassVar[str] = "BBHT"


@dataclass(frozen=True)
class ComponentState(Obj):
    """Type 2: a component's running state (bits: :data:`COMPONENT_STATE_BITS`)."""

    sys_type: int
    sys_addr: int
    comp_type: int
    comp_addr: int
    state: int
    description: str
    time: datetime
    _codes: ClassVar[str] = "BBBIHST"


@dataclass(frozen=True)
class ComponentAnalog(Obj):
    """Type 3: an analog value, ``value`` raw (int16); the unit and scale come from
    ``analog_type`` (:data:`ANALOG_TYPES`)."""

    sys_type: int
    sys_addr: int
    comp_type: int
    comp_addr: int
    analog_type: int
    value: int
    time: datetime
    _codes: ClassVar[str] = "BBBIBhT"


@dataclass(frozen=True)
class FacilityOperation(Obj):
    """Type 4: an operation on a facility (bits: :data:`OPERATION_BITS`)."""

    sys_type: int
    sys_addr: int
    flags: int
    operator: int
    time: datetime
    _codes: ClassVar[str] = "BBBBT"


@dataclass(frozen=True)
class FacilitySoftwareVersion(Obj):
    """Type 5."""

    sys_type: int
    sys_addr: int
    major: int
    minor: int
    _codes: ClassVar[str] = "BBBB"


@dataclass(frozen=True)
class FacilityConfig(Obj):
    """Type 6: a system's configuration description (length-prefixed GB 18030)."""

    sys_type: int
    sys_addr: int
    description: str
    _codes: ClassVar[str] = "BBL"


@dataclass(frozen=True)
class ComponentConfig(Obj):
    """Type 7."""

    sys_type: int
    sys_addr: int
    comp_type: int
    comp_addr: int
    description: str
    _codes: ClassVar[str] = "BBBIS"


@dataclass(frozen=True)
class FacilityTime(Obj):
    """Type 8: a facility's system clock."""

    sys_type: int
    sys_addr: int
    time: datetime
    _codes: ClassVar[str] = "BBT"


@dataclass(frozen=True)
class UitdState(Obj):
    """Type 21: the UITD's own running state (bits: :data:`UITD_STATE_BITS`)."""

    state: int
    time: datetime
    _codes: ClassVar[str] = "BT"


@dataclass(frozen=True)
class UitdOperation(Obj):
    """Type 24: an operation on the UITD (bits: :data:`UITD_OPERATION_BITS`; bit 5 is
    "duty check answered")."""

    flags: int
    operator: int
    time: datetime
    _codes: ClassVar[str] = "BBT"


@dataclass(frozen=True)
class UitdSoftwareVersion(Obj):
    """Type 25."""

    major: int
    minor: int
    _codes: ClassVar[str] = "BB"


@dataclass(frozen=True)
class UitdConfig(Obj):
    """Type 26."""

    description: str
    _codes: ClassVar[str] = "L"


@dataclass(frozen=True)
class UitdTime(Obj):
    """Type 28: the UITD's clock (also the usual liveness upload)."""

    time: datetime
    _codes: ClassVar[str] = "T"


@dataclass(frozen=True)
class SystemRef(Obj):
    """Reads 61, 65, 66, 68: which system."""

    sys_type: int
    sys_addr: int
    _codes: ClassVar[str] = "BB"


@dataclass(frozen=True)
class ComponentRef(Obj):
    """Reads 62, 63, 67: which component (the standard gives no component type here)."""

    sys_type: int
    sys_addr: int
    comp_addr: int
    _codes: ClassVar[str] = "BBI"


@dataclass(frozen=True)
class RecordQuery(Obj):
    """Read 64: ``count`` (<= 102) facility operation records from ``start``."""

    sys_type: int
    sys_addr: int
    count: int
    start: datetime
    _codes: ClassVar[str] = "BBBT"


@dataclass(frozen=True)
class UitdRecordQuery(Obj):
    """Read 84: ``count`` (<= 102) UITD operation records from ``start``."""

    count: int
    start: datetime
    _codes: ClassVar[str] = "BT"


@dataclass(frozen=True)
class Reserved(Obj):
    """Reads 81, 85, 86, 88 and control 89: one reserved byte, 0."""

    reserved: int = 0
    _codes: ClassVar[str] = "B"


@dataclass(frozen=True)
class ClockSync(Obj):
    """Control 90: the centre's clock, for the UITD to set its own."""

    time: datetime
    _codes: ClassVar[str] = "T"


@dataclass(frozen=True)
class DutyCheck(Obj):
    """Control 91 (查岗): the operator must answer within ``timeout_minutes``."""

    timeout_minutes: int
    _codes: ClassVar[str] = "B"


#: type flag -> (object class, maximum object count), from §8.3.
LAYOUTS: dict[int, tuple[type[Obj], int]] = {
    1: (SystemState, 102), 2: (ComponentState, 22), 3: (ComponentAnalog, 63),
    4: (FacilityOperation, 102), 5: (FacilitySoftwareVersion, 1), 6: (FacilityConfig, 3),
    7: (ComponentConfig, 26), 8: (FacilityTime, 1),
    21: (UitdState, 1), 24: (UitdOperation, 127), 25: (UitdSoftwareVersion, 1),
    26: (UitdConfig, 1), 28: (UitdTime, 1),
    61: (SystemRef, 102), 62: (ComponentRef, 22), 63: (ComponentRef, 63),
    64: (RecordQuery, 1), 65: (SystemRef, 1), 66: (SystemRef, 3), 67: (ComponentRef, 26),
    68: (SystemRef, 1),
    81: (Reserved, 1), 84: (UitdRecordQuery, 1), 85: (Reserved, 1), 86: (Reserved, 1),
    88: (Reserved, 1), 89: (Reserved, 1), 90: (ClockSync, 1), 91: (DutyCheck, 1),
}
#: read type -> the upload type that answers it (61 -> 1 ... 88 -> 28).
READ_ANSWERS = {t: t - 60 for t in range(61, 69)} | {t: t - 60 for t in (81, 84, 85, 86, 88)}
#: the largest record count a read 64/84 may ask for
MAX_RECORDS = 102


@dataclass(frozen=True)
class AppData:
    """An application data unit: a type flag and its objects (all of the type's class)."""

    type: int
    objects: tuple[Obj, ...] = field(default_factory=tuple)

    def encode(self) -> bytes:
        return encode_app_data(self.type, self.objects)


def _fields(cls: type[Obj]) -> list[tuple[str, str]]:
    names = [f.name for f in fields(cls)]
    return list(zip(names, cls._codes, strict=True))


_INTS = {"B": ("<B", 1), "H": ("<H", 2), "h": ("<h", 2), "I": ("<I", 4)}


def encode_app_data(type_flag: int, objects: tuple[Obj, ...] | list[Obj]) -> bytes:
    """``type | n | objects``; checks the class, the count limit and every field's range."""
    if type_flag not in LAYOUTS:
        raise EncodeError(f"application data type {type_flag} is not one this codec knows")
    cls, limit = LAYOUTS[type_flag]
    if not 1 <= len(objects) <= limit:
        raise EncodeError(f"type {type_flag} carries 1 to {limit} objects, got {len(objects)}")
    out = bytearray((type_flag, len(objects)))
    for obj in objects:
        if type(obj) is not cls:
            raise EncodeError(f"type {type_flag} carries {cls.__name__}, got "
                              f"{type(obj).__name__}")
        for name, code in _fields(cls):
            v = getattr(obj, name)
            try:
                if code in _INTS:
                    out += struct.pack(_INTS[code][0], v)
                elif code == "T":
                    out += encode_time(v)
                elif code == "S":
                    out += encode_text(v, DESCRIPTION_WIDTH)
                else:  # L
                    raw = encode_text(v)
                    out += struct.pack("<B", len(raw)) + raw
            except struct.error as e:
                raise EncodeError(f"type {type_flag} field {name}={v!r}: {e}") from None
        if isinstance(obj, (RecordQuery, UitdRecordQuery)) and obj.count > MAX_RECORDS:
            raise EncodeError(f"type {type_flag} asks for {obj.count} records, over "
                              f"{MAX_RECORDS}")
    if len(out) > MAX_DATA:
        raise EncodeError(f"type {type_flag}: {len(out)} bytes of data, over {MAX_DATA}")
    return bytes(out)


def decode_app_data(data: bytes) -> AppData:
    """The application data unit of a frame; raises :class:`AppDataError` on an unknown
    type, a count over the type's limit, or a length that does not match the layout."""
    data = bytes(data)
    if len(data) < 2:
        raise AppDataError(f"application data of {len(data)} bytes has no type and count",
                           data)
    type_flag, n = data[0], data[1]
    if type_flag not in LAYOUTS:
        raise AppDataError(f"application data type {type_flag} is reserved or user-defined",
                           data[:2], 0)
    cls, limit = LAYOUTS[type_flag]
    if not 1 <= n <= limit:
        raise AppDataError(f"type {type_flag} carries 1 to {limit} objects, count says {n}",
                           data[:2], 1)
    pos = 2
    objs = []
    for _ in range(n):
        values: dict[str, Any] = {}
        for name, code in _fields(cls):
            if code in _INTS:
                fmt, size = _INTS[code]
                chunk = _take(data, pos, size, type_flag)
                values[name] = struct.unpack(fmt, chunk)[0]
            elif code == "T":
                size = 6
                values[name] = decode_time(_take(data, pos, 6, type_flag))
            elif code == "S":
                size = DESCRIPTION_WIDTH
                values[name] = decode_text(_take(data, pos, size, type_flag))
            else:  # L
                size = 1 + _take(data, pos, 1, type_flag)[0]
                values[name] = decode_text(_take(data, pos + 1, size - 1, type_flag))
            pos += size
        objs.append(cls(**values))
    if pos != len(data):
        raise AppDataError(f"type {type_flag} with {n} objects is {pos} bytes, the data is "
                           f"{len(data)}", data[pos:pos + 16], pos)
    for o in objs:
        if isinstance(o, (RecordQuery, UitdRecordQuery)) and o.count > MAX_RECORDS:
            raise AppDataError(f"type {type_flag} asks for {o.count} records, over "
                               f"{MAX_RECORDS}", data[:16])
    return AppData(type_flag, tuple(objs))


def _take(data: bytes, pos: int, size: int, type_flag: int) -> bytes:
    if pos + size > len(data):
        raise AppDataError(f"type {type_flag}: data ends at byte {len(data)}, the layout "
                           f"needs {pos + size}", data[pos:pos + 16], pos)
    return data[pos:pos + size]


# ---------------------------------------------------------------------------- code tables


def bits(value: int, names: dict[int, str]) -> Iterator[str]:
    """The names of the set bits of ``value`` (bit 0 of states is "normal", not an alarm,
    so :func:`describe_state` handles it)."""
    for bit, name in names.items():
        if value >> bit & 1:
            yield name


#: §8.2.1 Fig. 6 (system state) bits 1-13; bit 0 is 1 = normal running, 0 = test.
SYSTEM_STATE_BITS = {1: "火警", 2: "故障", 3: "屏蔽", 4: "监管", 5: "启动", 6: "反馈",
                     7: "延时", 8: "主电故障", 9: "备电故障", 10: "总线故障", 11: "手动",
                     12: "配置改变", 13: "复位"}
#: Fig. 7 (component state) bits 1-8.
COMPONENT_STATE_BITS = {1: "火警", 2: "故障", 3: "屏蔽", 4: "监管", 5: "启动", 6: "反馈",
                        7: "延时", 8: "电源故障"}
#: Fig. 9 (facility operation flags).
OPERATION_BITS = {0: "复位", 1: "消音", 2: "手动报警", 3: "警情消除", 4: "自检", 5: "确认",
                  6: "测试"}
#: Fig. 13 (UITD running state) bits 1-6; bit 0 is 1 = monitoring, 0 = test.
UITD_STATE_BITS = {1: "火警", 2: "故障", 3: "主电故障", 4: "备电故障", 5: "与监控中心通信信道故障",
                   6: "监测连接线路故障"}
#: Fig. 14 (UITD operation flags): bit 5 is 查岗应答.
UITD_OPERATION_BITS = {0: "复位", 1: "消音", 2: "手动报警", 3: "警情消除", 4: "自检",
                       5: "查岗应答", 6: "测试"}

# Component state bits the sink uses.
STATE_NORMAL = 1 << 0
STATE_FIRE = 1 << 1
STATE_FAULT = 1 << 2
UITD_DUTY_ANSWERED = 1 << 5

COMMAND_NAMES = {1: "控制命令", 2: "发送数据", 3: "确认", 4: "请求", 5: "应答", 6: "否认"}
TYPE_NAMES = {
    1: "上传建筑消防设施系统状态", 2: "上传建筑消防设施部件运行状态",
    3: "上传建筑消防设施部件模拟量值", 4: "上传建筑消防设施操作信息",
    5: "上传建筑消防设施软件版本", 6: "上传建筑消防设施系统配置情况",
    7: "上传建筑消防设施部件配置情况", 8: "上传建筑消防设施系统时间",
    21: "上传用户信息传输装置运行状态", 24: "上传用户信息传输装置操作信息",
    25: "上传用户信息传输装置软件版本", 26: "上传用户信息传输装置配置情况",
    28: "上传用户信息传输装置系统时间",
    61: "读建筑消防设施系统状态", 62: "读建筑消防设施部件运行状态",
    63: "读建筑消防设施部件模拟量值", 64: "读建筑消防设施操作信息",
    65: "读建筑消防设施软件版本", 66: "读建筑消防设施系统配置情况",
    67: "读建筑消防设施部件配置情况", 68: "读建筑消防设施系统时间",
    81: "读用户信息传输装置运行状态", 84: "读用户信息传输装置操作信息记录",
    85: "读用户信息传输装置软件版本", 86: "读用户信息传输装置配置情况",
    88: "读用户信息传输装置系统时间", 89: "初始化用户信息传输装置",
    90: "同步用户信息传输装置时钟", 91: "查岗命令",
}
#: Table 6: code -> (name, unit, resolution).
ANALOG_TYPES = {1: ("事件计数", "件", 1), 2: ("高度", "m", 0.01), 3: ("温度", "℃", 0.1),
                4: ("压力", "MPa", 0.1), 5: ("压力", "kPa", 0.1), 6: ("气体浓度", "%LEL", 0.1),
                7: ("时间", "s", 1), 8: ("电压", "V", 0.1), 9: ("电流", "A", 0.1),
                10: ("流量", "L/s", 0.1), 11: ("风量", "m³/min", 0.1), 12: ("风速", "m/s", 1)}
#: Table 4 (the codes a centre prints by name; others print as numbers).
SYSTEM_TYPES = {0: "通用", 1: "火灾报警系统", 10: "消防联动控制器", 11: "消火栓系统",
                12: "自动喷水灭火系统", 13: "气体灭火系统", 18: "防烟排烟系统",
                23: "消防电源", 24: "消防电话"}
#: Table 5 (those this hub uses and a few common ones).
COMPONENT_TYPES = {0: "通用", 1: "火灾报警控制器", 16: "电气火灾监控报警器",
                   17: "剩余电流式电气火灾监控探测器", 18: "测温式电气火灾监控探测器",
                   23: "手动火灾报警按钮", 25: "火灾探测器"}
