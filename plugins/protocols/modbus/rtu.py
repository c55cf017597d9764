"""Modbus RTU frames: CRC-16/MODBUS, requests, responses and their checks.

Pure functions over bytes, no I/O. An RTU frame is ``slave | function | data | CRC`` with the
CRC-16/MODBUS sent low byte first; a transparent DTU carries these frames unchanged over TCP
(no MBAP header), so the same bytes serve a DTU, a serial line and an MQTT payload.

Builders refuse arguments the protocol cannot carry with :class:`hub.contracts.EncodeError`;
parsers refuse bad frames with :class:`hub.contracts.DecodeError` (excerpt and offset set), and
an exception response (``function | 0x80``) with :class:`ModbusException`, which carries
the exception code.

Stream framing (bytes arriving in pieces, garbage, pushes) is in
:mod:`plugins.protocols.modbus.framer`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from hub.contracts import DecodeError, EncodeError

__all__ = [
    "BIT_READS",
    "EXCEPTION_NAMES",
    "Frame",
    "MAX_READ_BITS",
    "MAX_READ_REGISTERS",
    "MAX_WRITE_REGISTERS",
    "ModbusException",
    "READS",
    "REGISTER_READS",
    "WRITES",
    "add_crc",
    "bits_of",
    "check_write_response",
    "crc16",
    "crc_ok",
    "data_bytes",
    "exception_response",
    "pack_bits",
    "pack_registers",
    "parse_frame",
    "read_data",
    "read_request",
    "read_response",
    "registers_of",
    "response_length",
    "write_coil",
    "write_register",
    "write_registers",
    "write_response",
]

READ_COILS, READ_DISCRETE_INPUTS, READ_HOLDING_REGISTERS, READ_INPUT_REGISTERS = 1, 2, 3, 4
WRITE_SINGLE_COIL, WRITE_SINGLE_REGISTER, WRITE_MULTIPLE_REGISTERS = 5, 6, 16

BIT_READS = (READ_COILS, READ_DISCRETE_INPUTS)
REGISTER_READS = (READ_HOLDING_REGISTERS, READ_INPUT_REGISTERS)
READS = BIT_READS + REGISTER_READS
WRITES = (WRITE_SINGLE_COIL, WRITE_SINGLE_REGISTER, WRITE_MULTIPLE_REGISTERS)

# Limits of the Modbus application protocol (V1.1b3 §6): they keep a response within the
# 256-byte RTU frame.
MAX_READ_BITS = 2000
MAX_READ_REGISTERS = 125
MAX_WRITE_REGISTERS = 123

#: Exception codes of the Modbus application protocol, for messages.
EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}

EXCERPT = 32  # bytes of a bad frame kept for the log line


# ---- CRC-16/MODBUS: poly 0x8005 reflected (0xA001), init 0xFFFF, no final xor ----------


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _crc_table()


def crc16(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/MODBUS of ``data`` (check value: ``crc16(b"123456789") == 0x4B37``)."""
    crc = 0xFFFF
    for b in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ b) & 0xFF]
    return crc


def add_crc(body: bytes) -> bytes:
    """``body`` followed by its CRC, low byte first, as RTU sends it."""
    return body + crc16(body).to_bytes(2, "little")


def crc_ok(frame: bytes | bytearray) -> bool:
    """Whether the last two bytes of ``frame`` are the CRC of the rest."""
    return len(frame) >= 4 and crc16(frame[:-2]) == int.from_bytes(frame[-2:], "little")


# ---- errors -----------------------------------------------------------------------------


class ModbusException(DecodeError):
    """The slave answered with an exception response (function code | 0x80).

    ``function`` is the function code of the request (without the 0x80 bit), ``code`` the
    exception code (2 = illegal data address: the map reads a register the device lacks).
    """

    def __init__(self, slave: int, function: int, code: int, excerpt: bytes = b"") -> None:
        name = EXCEPTION_NAMES.get(code, "unknown exception")
        super().__init__(
            f"slave {slave} answered function {function:02d} with exception {code:02X} ({name})",
            excerpt, 1)
        self.slave = slave
        self.function = function
        self.code = code


# ---- requests ---------------------------------------------------------------------------


def _u16(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF:
        raise EncodeError(f"{what} {value!r} is not an integer in 0..65535")
    return value


def _slave(slave: int) -> int:
    # 0 is broadcast: no slave answers, so the request/response model of the hub cannot use it.
    if isinstance(slave, bool) or not isinstance(slave, int) or not 1 <= slave <= 247:
        raise EncodeError(f"slave address {slave!r} is not in 1..247")
    return slave


def read_request(slave: int, function: int, address: int, count: int) -> bytes:
    """A read request (function 01, 02, 03 or 04) for ``count`` bits or registers."""
    limit = MAX_READ_BITS if function in BIT_READS else MAX_READ_REGISTERS
    if function not in READS:
        raise EncodeError(f"function {function!r} is not a read (01, 02, 03, 04)")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= limit:
        raise EncodeError(f"count {count!r} is not in 1..{limit} for function {function:02d}")
    _u16(address, "address")
    if address + count > 0x10000:
        raise EncodeError(f"address {address} + count {count} runs past 65535")
    return add_crc(struct.pack(">BBHH", _slave(slave), function, address, count))


def write_coil(slave: int, address: int, on: bool) -> bytes:
    """Function 05: ON is sent as FF00, OFF as 0000 (any other value is illegal)."""
    return add_crc(struct.pack(">BBHH", _slave(slave), WRITE_SINGLE_COIL,
                               _u16(address, "address"), 0xFF00 if on else 0x0000))


def write_register(slave: int, address: int, value: int) -> bytes:
    """Function 06: one 16-bit register."""
    return add_crc(struct.pack(">BBHH", _slave(slave), WRITE_SINGLE_REGISTER,
                               _u16(address, "address"), _u16(value, "register value")))


def write_registers(slave: int, address: int, values: Sequence[int]) -> bytes:
    """Function 16: ``len(values)`` registers from ``address`` (quantity and byte count are
    both sent; the slave answers with the first four of them)."""
    n = len(values)
    if not 1 <= n <= MAX_WRITE_REGISTERS:
        raise EncodeError(f"{n} registers is not in 1..{MAX_WRITE_REGISTERS} for function 16")
    _u16(address, "address")
    if address + n > 0x10000:
        raise EncodeError(f"address {address} + {n} registers runs past 65535")
    data = b"".join(_u16(v, "register value").to_bytes(2, "big") for v in values)
    head = struct.pack(">BBHHB", _slave(slave), WRITE_MULTIPLE_REGISTERS, address, n, 2 * n)
    return add_crc(head + data)


def response_length(request: bytes) -> int:
    """The length in bytes (CRC included) of a normal response to ``request``.

    Reads answer ``slave, function, byte count, data, CRC``; writes answer with 8 bytes
    (05 and 06 echo the request, 16 echoes address and quantity). An exception response is
    always 5 bytes.
    """
    function = request[1]
    if function in READS:
        count = int.from_bytes(request[4:6], "big")
        return 5 + (data_bytes(function, count))
    if function in WRITES:
        return 8
    raise EncodeError(f"function {function:02d} is not supported")


def data_bytes(function: int, count: int) -> int:
    """The byte count a read of ``count`` bits or registers answers with."""
    return (count + 7) // 8 if function in BIT_READS else 2 * count


# ---- responses (the device's side: simulators, tests) --------------------------------


def pack_registers(values: Sequence[int]) -> bytes:
    """Registers as big-endian 16-bit words, the order they travel in."""
    return b"".join(_u16(v, "register value").to_bytes(2, "big") for v in values)


def pack_bits(bits: Sequence[bool | int]) -> bytes:
    """Coils or inputs packed eight to a byte, the first bit in the lowest bit."""
    out = bytearray((len(bits) + 7) // 8)
    for i, bit in enumerate(bits):
        if bit:
            out[i // 8] |= 1 << (i % 8)
    return bytes(out)


def read_response(slave: int, function: int, data: bytes) -> bytes:
    """A read response carrying ``data`` (see :func:`pack_registers`, :func:`pack_bits`)."""
    if len(data) > 250:
        raise EncodeError(f"{len(data)} data bytes do not fit in one RTU frame (250 at most)")
    return add_crc(bytes((slave, function, len(data))) + data)


def write_response(request: bytes) -> bytes:
    """The normal answer to a write request."""
    return request if request[1] != WRITE_MULTIPLE_REGISTERS else add_crc(request[:6])


def exception_response(slave: int, function: int, code: int) -> bytes:
    """An exception response to ``function``."""
    return add_crc(bytes((slave, function | 0x80, code)))


# ---- parsing ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    """One complete RTU frame whose CRC was checked.

    ``payload`` is what lies between the function code and the CRC. ``solicited`` is False
    for a frame the framer found while nothing was expected (a pushing detector, or an
    answer that arrived after its poll timed out).
    """

    slave: int
    function: int
    payload: bytes
    raw: bytes
    solicited: bool = True

    @property
    def unit(self) -> int:
        """The slave, by the name :class:`hub.contracts.ResponseFrame` gives a bus address."""
        return self.slave

    @property
    def is_exception(self) -> bool:
        return bool(self.function & 0x80)

    @property
    def exception_code(self) -> int | None:
        return self.payload[0] if self.is_exception and self.payload else None


def _bad(message: str, frame: bytes, offset: int | None = None) -> DecodeError:
    return DecodeError(message, bytes(frame[:EXCERPT]), offset)


def parse_frame(frame: bytes) -> Frame:
    """Check the CRC and the shape common to every frame; raise :class:`ModbusException` for
    an exception response, :class:`DecodeError` for anything malformed."""
    if len(frame) < 5:
        raise _bad(f"frame of {len(frame)} bytes is too short (5 at least)", frame)
    if not crc_ok(frame):
        got = int.from_bytes(frame[-2:], "little")
        raise _bad(f"CRC {got:04X} does not match {crc16(frame[:-2]):04X}", frame,
                   len(frame) - 2)
    f = Frame(frame[0], frame[1], bytes(frame[2:-2]), bytes(frame))
    if f.is_exception:
        if len(frame) != 5:
            raise _bad(f"exception response of {len(frame)} bytes (5 expected)", frame)
        raise ModbusException(f.slave, f.function & 0x7F, frame[2], bytes(frame))
    return f


def read_data(frame: bytes, slave: int, function: int, count: int) -> bytes:
    """The data bytes of the response to a read of ``count`` bits or registers, after every
    check: CRC, slave, exception, function, byte count and length."""
    f = parse_frame(frame)
    if f.slave != slave:
        raise _bad(f"answer from slave {f.slave}, expected slave {slave}", frame, 0)
    if f.function != function:
        raise _bad(f"answer to function {f.function:02d}, expected {function:02d}", frame, 1)
    want = data_bytes(function, count)
    if f.payload[0] != want:
        raise _bad(f"byte count {f.payload[0]}, expected {want} for {count} "
                   f"{'bits' if function in BIT_READS else 'registers'}", frame, 2)
    if len(f.payload) != want + 1:
        raise _bad(f"frame of {len(frame)} bytes, expected {want + 5}", frame)
    return f.payload[1:]


def registers_of(data: bytes) -> tuple[int, ...]:
    """Register values of read data (big-endian words, as the protocol sends them)."""
    return struct.unpack(f">{len(data) // 2}H", data)


def bits_of(data: bytes, count: int) -> tuple[bool, ...]:
    """The first ``count`` bits of read data, the lowest bit of the first byte first."""
    return tuple(bool(data[i // 8] >> (i % 8) & 1) for i in range(count))


def readback_request(write: bytes) -> bytes:
    """The read that fetches what ``write`` (05, 06 or 16) just set: coils with 01, registers
    with 03."""
    slave, function, address = write[0], write[1], int.from_bytes(write[2:4], "big")
    if function == WRITE_SINGLE_COIL:
        return read_request(slave, READ_COILS, address, 1)
    if function == WRITE_SINGLE_REGISTER:
        return read_request(slave, READ_HOLDING_REGISTERS, address, 1)
    if function == WRITE_MULTIPLE_REGISTERS:
        return read_request(slave, READ_HOLDING_REGISTERS, address,
                            int.from_bytes(write[4:6], "big"))
    raise EncodeError(f"{bytes(write[:8]).hex(' ')} is not a write request")


def check_readback(write: bytes, frame: bytes) -> None:
    """Check that ``frame``, the answer to :func:`readback_request` of ``write``, holds what
    was written. Raises :class:`ModbusException` or :class:`DecodeError`."""
    read = readback_request(write)
    function, count = read[1], int.from_bytes(read[4:6], "big")
    data = read_data(frame, write[0], function, count)
    if write[1] == WRITE_SINGLE_COIL:
        wrote: tuple[int | bool, ...] = (write[4] == 0xFF,)
        got: tuple[int | bool, ...] = bits_of(data, 1)
    elif write[1] == WRITE_SINGLE_REGISTER:
        wrote, got = (int.from_bytes(write[4:6], "big"),), registers_of(data)
    else:
        wrote, got = registers_of(write[7:7 + 2 * count]), registers_of(data)
    if wrote != got:
        raise _bad(f"read back {list(got)} after writing {list(wrote)} at address "
                   f"{int.from_bytes(write[2:4], 'big')}", frame)


def check_write_response(request: bytes, frame: bytes) -> None:
    """Check the answer to a write: 05 and 06 echo the request, 16 echoes slave, function,
    address and quantity. Raises :class:`ModbusException` or :class:`DecodeError`."""
    if len(request) < 8 or request[1] not in WRITES:
        raise EncodeError(f"{bytes(request[:8]).hex(' ')} is not a write request")
    parse_frame(frame)  # CRC, shape, exception response
    if len(frame) != 8 or frame[:6] != request[:6]:
        raise _bad(f"{bytes(frame).hex(' ')} does not echo the request "
                   f"{bytes(request[:6]).hex(' ')}", frame)
