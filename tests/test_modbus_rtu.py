"""Modbus RTU codec and stream framer, tested with byte vectors (and against pymodbus)."""

from __future__ import annotations

import random

import pytest

from hub.contracts import DecodeError, EncodeError
from hub.testing import check_stream
from plugins.protocols.modbus import rtu
from plugins.protocols.modbus.framer import NEED_DATA, FrameError, ResponseFramer, scan_frames
from plugins.protocols.modbus.rtu import Frame, ModbusException


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# A response to the classic request `11 03 00 6B 00 03`: three registers.
RESPONSE = rtu.read_response(0x11, 3, rtu.pack_registers([0xAE41, 0x5652, 0x4340]))


# ---- CRC ---------------------------------------------------------------------------------


def test_crc16_check_value():
    """CRC-16/MODBUS of "123456789" is the catalogue's check value 0x4B37."""
    assert rtu.crc16(b"123456789") == 0x4B37


def test_crc_is_appended_low_byte_first():
    assert rtu.add_crc(h("11 03 00 6B 00 03")) == h("11 03 00 6B 00 03 76 87")
    assert rtu.crc_ok(h("11 03 00 6B 00 03 76 87"))
    assert not rtu.crc_ok(h("11 03 00 6B 00 03 87 76"))
    assert not rtu.crc_ok(h("76 87"))


# ---- requests ----------------------------------------------------------------------------


@pytest.mark.parametrize("function, address, count, expected", [
    (3, 0x006B, 3, "11 03 00 6B 00 03 76 87"),    # the classic FC03 example
    (1, 0x0013, 0x25, "11 01 00 13 00 25 0E 84"),
    (2, 0x00C4, 0x16, "11 02 00 C4 00 16 BA A9"),
    (4, 0x0008, 1, "11 04 00 08 00 01 B2 98"),
])
def test_read_requests(function, address, count, expected):
    assert rtu.read_request(0x11, function, address, count) == h(expected)


def test_write_requests():
    assert rtu.write_coil(1, 0, True) == h("01 05 00 00 FF 00 8C 3A")
    assert rtu.write_coil(1, 0, False) == h("01 05 00 00 00 00 CD CA")
    assert rtu.write_register(1, 1, 3) == h("01 06 00 01 00 03 98 0B")
    # FC16: address, quantity, byte count, then the registers
    assert rtu.write_registers(0x11, 1, [0x000A, 0x0102]) == h(
        "11 10 00 01 00 02 04 00 0A 01 02 C6 F0")


@pytest.mark.parametrize("build, message", [
    (lambda: rtu.read_request(1, 3, 0, 126), "count 126 is not in 1..125"),
    (lambda: rtu.read_request(1, 1, 0, 2001), "count 2001 is not in 1..2000"),
    (lambda: rtu.read_request(1, 7, 0, 1), "function 7 is not a read"),
    (lambda: rtu.read_request(0, 3, 0, 1), "slave address 0 is not in 1..247"),
    (lambda: rtu.read_request(248, 3, 0, 1), "slave address 248 is not in 1..247"),
    (lambda: rtu.read_request(1, 3, 65535, 2), r"address 65535 \+ count 2 runs past 65535"),
    (lambda: rtu.write_register(1, 0, 65536), "register value 65536 is not an integer"),
    (lambda: rtu.write_registers(1, 0, []), "0 registers is not in 1..123"),
    (lambda: rtu.write_registers(1, 0, [0] * 124), "124 registers is not in 1..123"),
])
def test_requests_refuse_what_the_protocol_cannot_carry(build, message):
    with pytest.raises(EncodeError, match=message):
        build()


def test_response_length_from_the_request():
    assert rtu.response_length(h("11 03 00 6B 00 03 76 87")) == 11
    assert rtu.response_length(rtu.read_request(1, 1, 0, 9)) == 7       # 9 bits: 2 bytes
    assert rtu.response_length(rtu.write_registers(1, 0, [1, 2, 3])) == 8
    assert rtu.response_length(rtu.write_coil(1, 0, True)) == 8


# ---- responses ---------------------------------------------------------------------------


def test_read_response_is_parsed():
    assert RESPONSE == h("11 03 06 AE 41 56 52 43 40 49 AD")
    data = rtu.read_data(RESPONSE, 0x11, 3, 3)
    assert rtu.registers_of(data) == (0xAE41, 0x5652, 0x4340)


def test_bits_are_packed_lowest_first():
    # The specification's Read Coils example: coils 20..38 → CD 6B 05.
    bits = [1, 0, 1, 1, 0, 0, 1, 1,  1, 1, 0, 1, 0, 1, 1, 0,  1, 0, 1]
    assert rtu.pack_bits(bits) == h("CD 6B 05")
    assert rtu.bits_of(h("CD 6B 05"), 19) == tuple(bool(b) for b in bits)


def test_exception_response_raises_with_its_code():
    frame = rtu.exception_response(0x11, 3, 2)
    assert frame == h("11 83 02 C1 34")
    with pytest.raises(ModbusException) as e:
        rtu.read_data(frame, 0x11, 3, 3)
    assert (e.value.slave, e.value.function, e.value.code) == (0x11, 3, 2)
    assert str(e.value) == "slave 17 answered function 03 with exception 02 (illegal data address)"
    assert isinstance(e.value, DecodeError) and e.value.excerpt == frame


@pytest.mark.parametrize("frame, args, message", [
    (RESPONSE[:-1] + b"\x00", (0x11, 3, 3), "CRC 0049 does not match AD49"),
    (RESPONSE, (0x12, 3, 3), "answer from slave 17, expected slave 18"),
    (RESPONSE, (0x11, 4, 3), "answer to function 03, expected 04"),
    (RESPONSE, (0x11, 3, 4), "byte count 6, expected 8 for 4 registers"),
    (h("11 03"), (0x11, 3, 3), "frame of 2 bytes is too short"),
    (rtu.add_crc(h("11 03 06 00 01")), (0x11, 3, 3), "frame of 7 bytes, expected 11"),
])
def test_bad_responses_are_refused_with_an_excerpt(frame, args, message):
    with pytest.raises(DecodeError, match=message) as e:
        rtu.read_data(frame, *args)
    assert not isinstance(e.value, ModbusException)
    assert e.value.excerpt == frame[:32]


def test_write_echo_is_checked():
    req = rtu.write_registers(1, 0x0108, [0, 7500])
    rtu.check_write_response(req, rtu.write_response(req))
    coil = rtu.write_coil(1, 3, True)
    rtu.check_write_response(coil, coil)
    with pytest.raises(DecodeError, match="does not echo the request"):
        rtu.check_write_response(coil, rtu.write_coil(1, 4, True))
    with pytest.raises(ModbusException, match="exception 03"):
        rtu.check_write_response(coil, rtu.exception_response(1, 5, 3))
    with pytest.raises(EncodeError, match="is not a write request"):
        rtu.check_write_response(h("11 03 00 6B 00 03 76 87"), coil)


# ---- the stream framer -------------------------------------------------------------------


def expecting(slave=0x11, function=3, length=11, **kw):
    def make():
        framer = ResponseFramer(**kw)
        framer.expect(slave, function, length)
        return framer
    return make


def frame(raw: bytes, solicited: bool = True) -> Frame:
    return Frame(raw[0], raw[1], raw[2:-2], raw, solicited)


def test_expected_answer_whole_byte_by_byte_and_with_trailing_bytes():
    """The answer is found however the stream is split; the next frame's start stays."""
    check_stream(expecting(), RESPONSE, [frame(RESPONSE)], trailing=h("11 03"))


def test_heartbeat_and_noise_before_the_answer_are_skipped():
    noise = b"HB\x00\x11\x04\x11\x03\x08"  # includes the slave address, a wrong function
    check_stream(expecting(), noise + RESPONSE, [frame(RESPONSE)])  # and a wrong byte count
    framer = expecting()()
    framer.feed(noise + RESPONSE)
    assert framer.next_frame() == frame(RESPONSE)
    assert (framer.skipped, framer.frames, framer.expected) == (len(noise), 1, None)


def test_ignored_patterns_are_dropped_whole_however_split():
    """Heartbeats between frames are recognised at the front of the buffer (split across
    reads, after noise, or shaped like the expected answer's start), dropped whole and
    counted apart from garbage; a partial one waits for the rest."""
    beat = b"\xfe\xfe"
    lookalike = h("11 03 06 41 42")  # the expected slave, function and byte count
    data = beat + b"\x00" + beat + lookalike + RESPONSE + beat
    make = expecting(ignore=(beat, lookalike))
    check_stream(make, data, [frame(RESPONSE)], trailing=b"\xfe")
    for pieces in ([data], [bytes([b]) for b in data]):
        framer = make()
        for piece in pieces:
            framer.feed(piece)
            while framer.next_frame() is not NEED_DATA:
                pass
        assert (framer.ignored, framer.skipped, framer.crc_errors) == (4, 1, 0)
    framer = ResponseFramer(ignore=(beat,))
    framer.feed(b"\xfe")
    assert framer.next_frame() is NEED_DATA and framer.buffered == b"\xfe"
    framer.feed(b"\x00")  # not a heartbeat after all: both bytes are garbage
    assert framer.next_frame() is NEED_DATA
    assert (framer.ignored, framer.skipped, framer.buffered) == (0, 2, b"")


def test_corrupted_frame_is_reported_and_the_framer_resynchronises():
    bad = RESPONSE[:4] + b"\xff" + RESPONSE[5:]
    check_stream(expecting(), bad + RESPONSE, [FrameError("crc", bad), frame(RESPONSE)])


def test_exception_answer_is_a_frame_and_ends_the_wait():
    exc = rtu.exception_response(0x11, 3, 2)
    framer = expecting()()
    framer.feed(exc)
    got = framer.next_frame()
    assert got.is_exception and got.exception_code == 2 and got.solicited
    assert framer.expected is None
    check_stream(expecting(), exc, [frame(exc)])


def test_write_echo_is_framed_by_the_expected_length():
    req = rtu.write_registers(1, 0x0108, [0, 7500])
    echo = rtu.write_response(req)
    check_stream(expecting(1, 16, rtu.response_length(req)), echo, [frame(echo)])


def test_idle_framer_finds_pushed_frames_by_their_byte_count():
    """With nothing expected, read responses (a pushing detector), exception answers and
    late write echoes are framed from their own content and marked unsolicited."""
    push = rtu.read_response(1, 4, rtu.pack_registers([1, 2, 3, 4]))
    echo = rtu.write_coil(1, 0, True)
    exc = rtu.exception_response(1, 4, 4)
    data = b"\x00\xff" + push + b"\xfe" + echo + exc
    check_stream(ResponseFramer, data,
                 [frame(push, False), frame(echo, False), frame(exc, False)],
                 trailing=push[:5])


def test_idle_framer_ignores_other_slaves():
    other = rtu.read_response(2, 3, rtu.pack_registers([9]))
    mine = rtu.read_response(1, 3, rtu.pack_registers([9]))
    check_stream(lambda: ResponseFramer(slaves={1}), other + mine, [frame(mine, False)])


def test_buffer_is_bounded_and_overflow_is_a_value():
    framer = ResponseFramer(max_buffer=256)
    framer.expect(0x11, 3, 11)
    framer.feed(b"\x11\x03\x06" + bytes(300))   # a candidate that never completes...
    err = framer.next_frame()
    assert isinstance(err, FrameError) and err.reason == "overflow"
    assert framer.overflows == 1 and len(framer.buffered) <= 256
    while framer.next_frame() is not NEED_DATA:
        pass
    framer.feed(RESPONSE)                        # ...does not stop the answer from being found
    assert framer.next_frame() == frame(RESPONSE)
    with pytest.raises(ValueError, match="shorter than a frame"):
        ResponseFramer(max_buffer=100)


def test_clear_and_expect_nothing():
    framer = expecting()()
    framer.feed(RESPONSE[:5])
    assert framer.next_frame() is NEED_DATA
    framer.expect_nothing()                    # the poll timed out
    assert framer.clear() == RESPONSE[:5] and framer.buffered == b""


def test_scan_frames_in_a_payload_with_a_prefix():
    """An MQTT payload or a DATA-prefixed DTU packet: an id string, then frames."""
    a = rtu.read_response(1, 3, rtu.pack_registers([220]))
    b = rtu.read_response(1, 1, rtu.pack_bits([1, 0, 1]))
    assert scan_frames(b"861234567890123" + a + b) == [frame(a, False), frame(b, False)]
    assert scan_frames(a, slaves={2}) == []


def test_random_garbage_never_raises():
    rng = random.Random(7)
    framer = ResponseFramer(max_buffer=300)
    for _ in range(200):
        framer.feed(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))))
        if rng.random() < 0.3:
            framer.expect(rng.randrange(1, 248), rng.choice([1, 2, 3, 4]), rng.randrange(6, 40))
        while framer.next_frame() is not NEED_DATA:
            pass
        assert len(framer.buffered) <= 300


# ---- cross-check against an independent implementation -----------------------------------


def test_frames_agree_with_pymodbus():
    pytest.importorskip("pymodbus")
    from pymodbus.framer import FramerRTU
    from pymodbus.pdu import DecodePDU
    from pymodbus.pdu import bit_message as bm
    from pymodbus.pdu import register_message as rm

    framer = FramerRTU(DecodePDU(False))
    cases = [
        (bm.ReadCoilsRequest(address=19, count=19, dev_id=17), rtu.read_request(17, 1, 19, 19)),
        (bm.ReadDiscreteInputsRequest(address=196, count=22, dev_id=17),
         rtu.read_request(17, 2, 196, 22)),
        (rm.ReadHoldingRegistersRequest(address=107, count=3, dev_id=17),
         rtu.read_request(17, 3, 107, 3)),
        (rm.ReadInputRegistersRequest(address=8, count=125, dev_id=247),
         rtu.read_request(247, 4, 8, 125)),
        (bm.WriteSingleCoilRequest(address=3, bits=[True], dev_id=1), rtu.write_coil(1, 3, True)),
        (rm.WriteSingleRegisterRequest(address=0x101, registers=[750], dev_id=1),
         rtu.write_register(1, 0x101, 750)),
        (rm.WriteMultipleRegistersRequest(address=0x108, registers=[0, 7500], dev_id=1),
         rtu.write_registers(1, 0x108, [0, 7500])),
        (rm.ReadHoldingRegistersResponse(registers=[0xAE41, 0x5652, 0x4340], dev_id=17),
         RESPONSE),
    ]
    for message, ours in cases:
        assert framer.buildFrame(message) == ours, type(message).__name__
    rng = random.Random(1)
    for _ in range(50):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 60)))
        assert FramerRTU.compute_CRC(data) == int.from_bytes(
            rtu.crc16(data).to_bytes(2, "little"), "big")


def test_readback_of_each_write_function():
    """A write is read back with 01 (coil) or 03 (registers) and compared with what was
    written."""
    from plugins.protocols.modbus.rtu import check_readback, readback_request

    coil = rtu.write_coil(1, 3, True)
    assert readback_request(coil) == rtu.read_request(1, 1, 3, 1)
    check_readback(coil, rtu.read_response(1, 1, rtu.pack_bits([True])))
    reg = rtu.write_register(2, 0x101, 700)
    assert readback_request(reg) == rtu.read_request(2, 3, 0x101, 1)
    check_readback(reg, rtu.read_response(2, 3, rtu.pack_registers([700])))
    regs = rtu.write_registers(1, 0x108, [0, 6300])
    assert readback_request(regs) == rtu.read_request(1, 3, 0x108, 2)
    check_readback(regs, rtu.read_response(1, 3, rtu.pack_registers([0, 6300])))
    with pytest.raises(DecodeError, match=r"read back \[0, 6000\] after writing \[0, 6300\]"):
        check_readback(regs, rtu.read_response(1, 3, rtu.pack_registers([0, 6000])))
