"""The DL/T 645-2007 codec (plugins.protocols.dlt645): frames, values, the stream framer and
the meter responder.

Vectors: a published capture of a meter at address 000000000161 ("DLT645-2007 规约 常见报文
解析": 读正向有功总电能, 读反向有功总电能, 读A相电压, 读通信地址), each checksum re-computed
by hand below (CS = sum of the bytes from the first 68H to the last data byte, mod 256).
"""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.contracts import DecodeError, EncodeError
from hub.testing import check_stream
from plugins.protocols.dlt645 import (
    AddressError,
    ChecksumError,
    Dlt645Framer,
    EndError,
    Frame,
    FrameError,
    LengthError,
    MeterError,
    ReplyError,
    control_reply,
    control_request,
    decode_value,
    encode_frame,
    encode_value,
    parse_address_reply,
    parse_format,
    parse_frame,
    read_address_request,
    read_reply,
    read_request,
    read_subsequent_request,
    scan_frames,
    time_sync,
)
from plugins.protocols.dlt645.meter import control_action, reply

METER = "000000000161"
H = bytes.fromhex

# 11H read 00010000 (正向有功总电能). DI 00 01 00 00 goes DI0 first: 00 00 01 00, +33H each:
# 33 33 34 33. CS = 68+61+01+00+00+00+00+68+11+04+33+33+34+33
#    = 68+61 = C9, +01 = CA, +68 = 132, +11 = 143, +04 = 147, +33 = 17A, +33 = 1AD,
#      +34 = 1E1, +33 = 214 -> 14
READ_ENERGY = H("68 61 01 00 00 00 00 68 11 04 33 33 34 33 14 16")
# 91H reply: DI, then 26 00 00 00 (= 000000.26 kWh) +33H = 59 33 33 33.
# CS = CA (68+61+01) + 68 = 132, +91 = 1C3, +08 = 1CB, +33+33+34+33 (= CD) = 298,
#      +59 = 2F1, +33+33+33 (= 99) = 38A -> 8A
ENERGY_REPLY = H("68 61 01 00 00 00 00 68 91 08 33 33 34 33 59 33 33 33 8A 16")
# 91H reply to 00020000 (反向有功总电能): 26 01 00 00 = 1.26 kWh.
# CS = 132 + 91 = 1C3, +08 = 1CB, +33+33+35+33 (= CE) = 299, +59+34+33+33 (= F3) = 38C -> 8C
REVERSE_REPLY = H("68 61 01 00 00 00 00 68 91 08 33 33 35 33 59 34 33 33 8C 16")
# 11H read 02010100 (A相电压): DI0 first 00 01 01 02, +33H: 33 34 34 35.
# CS = 147 (through L=04) + 33+34+34+35 (= D0) = 217 -> 17
READ_VOLTAGE = H("68 61 01 00 00 00 00 68 11 04 33 34 34 35 17 16")
# 91H reply: 01 10 (XXX.X: 100.1 V) +33H = 34 43.
# CS = 132 + 91 = 1C3, +06 = 1C9, +D0 = 299, +34 = 2CD, +43 = 310 -> 10
VOLTAGE_REPLY = H("68 61 01 00 00 00 00 68 91 06 33 34 34 35 34 43 10 16")
# 13H read address: 68 AA*6 68 13 00. CS = 68+68 = D0, +6*AA (= 3FC) = 4CC, +13 = 4DF -> DF
READ_ADDRESS = H("68 AA AA AA AA AA AA 68 13 00 DF 16")
# 93H reply with the address as data (61 01 00 00 00 00, +33H: 94 34 33 33 33 33).
# CS = 132 + 93 = 1C5, +06 = 1CB, +94+34+33*4 (= 194) = 35F -> 5F
ADDRESS_REPLY = H("68 61 01 00 00 00 00 68 93 06 94 34 33 33 33 33 5F 16")
# D1H abnormal reply, ERR = 02H (no requested data) +33H = 35.
# CS = 132 + D1 = 203, +01 = 204, +35 = 239 -> 39
NO_DATA_REPLY = H("68 61 01 00 00 00 00 68 D1 01 35 39 16")


def frame_of(raw: bytes, solicited: bool = False) -> Frame:
    f = parse_frame(raw)
    return Frame(f.address, f.control, f.data, f.raw, solicited)


# ---- frames -----------------------------------------------------------------------------


def test_requests_match_the_capture_byte_for_byte():
    assert read_request(METER, 0x00010000) == b"\xfe" * 4 + READ_ENERGY
    assert read_request(METER, 0x02010100, wakeup=0) == READ_VOLTAGE
    assert read_address_request(wakeup=0) == READ_ADDRESS


def test_replies_of_the_capture_decode_to_its_values():
    energy = read_reply(ENERGY_REPLY, METER, 0x00010000)
    assert (energy.di, energy.data, energy.more) == (0x00010000, H("26 00 00 00"), False)
    assert decode_value(energy.data, parse_format("XXXXXX.XX")) == 0.26
    reverse = read_reply(REVERSE_REPLY, METER, 0x00020000)
    assert decode_value(reverse.data, parse_format("XXXXXX.XX")) == 1.26
    volts = read_reply(VOLTAGE_REPLY, METER, 0x02010100)
    assert decode_value(volts.data, parse_format("XXX.X")) == 100.1
    assert parse_address_reply(ADDRESS_REPLY) == METER


def test_encode_frame_round_trips_and_adds_33h():
    raw = encode_frame("123456789012", 0x91, H("00 01 01 02 01 10"), wakeup=2)
    assert raw[:2] == b"\xfe\xfe"
    # address low byte first, data + 33H
    assert raw[2:14] == H("68 12 90 78 56 34 12 68 91 06 33 34")
    f = parse_frame(raw)
    assert (f.address, f.control, f.data) == ("123456789012", 0x91, H("00 01 01 02 01 10"))
    assert f.is_reply and not f.is_abnormal and not f.more and f.function == 0x11


def test_abnormal_read_reply_raises_meter_error_with_the_error_bits():
    with pytest.raises(MeterError) as e:
        read_reply(NO_DATA_REPLY, METER, 0x02010100)
    assert e.value.code == 0x02 and e.value.reasons == ("no requested data",)
    assert isinstance(e.value, DecodeError) and e.value.reason == "meter_error"
    # several bits at once: other error + password wrong (05H)
    raw = encode_frame(METER, 0xD1, bytes([0x05]), wakeup=0)
    with pytest.raises(MeterError, match="other error, password wrong"):
        read_reply(raw, METER, 0x02010100)


def test_subsequent_frames_b1_then_12h_then_92():
    first = encode_frame(METER, 0xB1, H("00 01 01 02") + H("01 10"), wakeup=0)
    got = read_reply(first, METER, 0x02010100)
    assert got.more and got.seq == 0 and got.data == H("01 10")
    # 12H: DI + SEQ 01. CS = 132 (68 61 01 .. 68) + 12 = 144, +05 = 149,
    # +33+34+34+35 (= D0) = 219, +34 (01 + 33H) = 24D -> 4D
    assert read_subsequent_request(METER, 0x02010100, 1, wakeup=0) == \
        H("68 61 01 00 00 00 00 68 12 05 33 34 34 35 34 4D 16")
    last = encode_frame(METER, 0x92, H("00 01 01 02") + H("02 20") + H("01"), wakeup=0)
    got = read_reply(last, METER, 0x02010100, seq=1)
    assert not got.more and got.seq == 1 and got.data == H("02 20")
    with pytest.raises(ReplyError, match="subsequent frame 1, asked 2"):
        read_reply(last, METER, 0x02010100, seq=2)


def test_time_sync_is_a_broadcast_of_the_date_time_low_byte_first():
    # data ss mm hh DD MM YY = 05 04 03 02 01 26, +33H = 38 37 36 35 34 59.
    # CS = 68+68 (D0) + 6*99 (396) = 466, +08 = 46E, +06 = 474,
    #      +38+37+36+35+34+59 (= 167) = 5DB -> DB
    assert time_sync(datetime(2026, 1, 2, 3, 4, 5), wakeup=0) == \
        H("68 99 99 99 99 99 99 68 08 06 38 37 36 35 34 59 DB 16")
    with pytest.raises(EncodeError):
        time_sync(datetime(1999, 1, 1))


def test_trip_request_carries_level_password_operator_action_and_deadline():
    raw = control_request(METER, "trip", "123456", "00000001", datetime(2026, 1, 2, 3, 4, 5),
                          wakeup=0)
    # data: PA 02, P0..P2 56 34 12, C0..C3 01 00 00 00, N1 1A (trip), N2 00,
    #       N3..N8 05 04 03 02 01 26; +33H each:
    data = H("35 89 67 45  34 33 33 33  4D 33  38 37 36 35 34 59")
    # CS = 132 + 1C = 14E, +10 = 15E, + sum(data):
    #   35+89+67+45 = 16A, +34+33+33+33 = 237, +4D+33 = 2B7, +167 = 41E  -> 15E + 41E = 57C -> 7C
    assert raw == H("68 61 01 00 00 00 00 68 1C 10") + data + H("7C 16")
    assert control_action(raw) == "trip"
    with pytest.raises(EncodeError, match="password"):
        control_request(METER, "trip", "12345", "00000001", datetime(2026, 1, 2))
    with pytest.raises(EncodeError, match="unknown control action"):
        control_request(METER, "explode", "123456", "00000001", datetime(2026, 1, 2))


def test_control_replies_9c_accepted_dc_raises():
    # 9CH, L = 0: CS = 132 + 9C = 1CE -> CE
    control_reply(H("68 61 01 00 00 00 00 68 9C 00 CE 16"), METER)
    # DCH with ERR 04H (password wrong) +33H = 37: CS = 132 + DC = 20E, +01 = 20F, +37 = 246
    with pytest.raises(MeterError) as e:
        control_reply(H("68 61 01 00 00 00 00 68 DC 01 37 46 16"), METER)
    assert e.value.reasons == ("password wrong or not authorised",)


# ---- malformed frames: each raises its own error -------------------------------------------


def test_bad_checksum():
    bad = VOLTAGE_REPLY[:-2] + b"\x11\x16"
    with pytest.raises(ChecksumError, match="checksum 11H, computed 10H") as e:
        parse_frame(bad)
    assert e.value.offset == len(bad) - 2 and e.value.excerpt == bad


def test_bad_length():
    with pytest.raises(LengthError, match="L = 6 makes a frame of 18 bytes, got 17"):
        parse_frame(VOLTAGE_REPLY[:-1])
    with pytest.raises(LengthError):
        parse_frame(VOLTAGE_REPLY + b"\x16")
    with pytest.raises(LengthError, match="shorter than the shortest"):
        parse_frame(H("68 61 01 00"))


def test_missing_end_byte_or_start_bytes():
    with pytest.raises(EndError, match="ends with 17H, not 16H"):
        parse_frame(VOLTAGE_REPLY[:-1] + b"\x17")
    with pytest.raises(EndError, match="no 68H at offset 7"):
        parse_frame(VOLTAGE_REPLY[:7] + b"\x69" + VOLTAGE_REPLY[8:])


def test_wrong_or_invalid_address():
    with pytest.raises(AddressError, match="reply from 000000000161, asked 000000000162"):
        read_reply(VOLTAGE_REPLY, "000000000162", 0x02010100)
    # a wildcard request is answered with the real address
    assert read_reply(VOLTAGE_REPLY, "AAAAAAAAAA61", 0x02010100).address == METER
    raw = encode_frame(METER, 0x91, H("00 01 01 02 01 10"), wakeup=0)
    bad = bytearray(raw)
    bad[1] = 0x6A  # not BCD; fix the checksum so only the address is wrong
    bad[-2] = (bad[-2] + 0x6A - 0x61) & 0xFF
    with pytest.raises(AddressError, match="A0 = 6AH is not BCD"):
        parse_frame(bytes(bad))
    with pytest.raises(EncodeError):
        encode_address_of("12345")


def encode_address_of(address: str) -> bytes:
    return read_request(address, 0x02010100)


def test_reply_for_another_data_identifier_or_function():
    with pytest.raises(ReplyError, match="data identifier 02010100, asked 02010200"):
        read_reply(VOLTAGE_REPLY, METER, 0x02010200)
    with pytest.raises(ReplyError, match="does not answer 11H"):
        read_reply(READ_VOLTAGE, METER, 0x02010100)  # a request is no reply


# ---- values -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt, signed, value, wire", [
    ("XXX.X", False, 231.4, "14 23"),
    ("XXX.XXX", True, 5.123, "23 51 00"),
    ("XXX.XXX", True, -5.123, "23 51 80"),  # sign: top bit of the most significant byte
    ("XX.XXXX", True, -1.2345, "45 23 81"),
    ("X.XXX", True, -0.5, "00 85"),
    ("X.XXX", True, 0.999, "99 09"),
    ("XXXXXX.XX", False, 123456.78, "78 56 34 12"),
    ("XXXXXX.XX", True, -0.01, "01 00 00 80"),
    ("XX.XX", False, 49.98, "98 49"),
])
def test_bcd_values_both_ways(fmt, signed, value, wire):
    f = parse_format(fmt)
    assert encode_value(value, f, signed) == H(wire)
    assert decode_value(H(wire), f, signed) == value


def test_bcd_errors():
    f = parse_format("XXX.X")
    with pytest.raises(DecodeError, match="FFH is not BCD"):
        decode_value(H("FF FF"), f)
    with pytest.raises(DecodeError, match="A0H is not BCD"):
        decode_value(H("00 A0"), f)
    assert decode_value(H("00 80"), f) == 800.0  # unsigned: the top bit is a digit
    assert str(decode_value(H("00 80"), f, signed=True)) == "0.0"  # not -0.0
    with pytest.raises(DecodeError, match="3 bytes for format"):
        decode_value(H("00 00 00"), f)
    with pytest.raises(EncodeError):
        encode_value(1000.0, f)
    with pytest.raises(EncodeError):
        encode_value(-1.0, f)
    with pytest.raises(EncodeError):
        encode_value(80.0, parse_format("XX.XXXX"), signed=True)  # the sign bit is taken
    for bad in ("XX.X.X", "XXX", "YY.YY", ""):
        with pytest.raises(ValueError):
            parse_format(bad)


# ---- the stream framer ---------------------------------------------------------------------


def test_stream_whole_byte_by_byte_and_with_trailing_bytes():
    # what a DTU forwards: wake-up bytes, two replies back to back
    data = b"\xfe\xfe\xfe\xfe" + ENERGY_REPLY + b"\xfe\xfe" + VOLTAGE_REPLY
    expected = [frame_of(ENERGY_REPLY), frame_of(VOLTAGE_REPLY)]
    check_stream(Dlt645Framer, data, expected, trailing=H("68 61 01"))
    check_stream(Dlt645Framer, data, expected, trailing=H("FE FE"))


def test_stream_skips_noise_and_a_false_start():
    # garbage holding a 68 with no second 68 six bytes on, then the frame
    noise = H("00 13 68 01 02 03 04 05 06 07 08 09")
    framer = Dlt645Framer()
    check_stream(Dlt645Framer, noise + VOLTAGE_REPLY, [frame_of(VOLTAGE_REPLY)])
    framer.feed(noise + b"\xfe" + VOLTAGE_REPLY)
    assert framer.next_frame() == frame_of(VOLTAGE_REPLY)
    assert (framer.skipped, framer.wakeups, framer.frames) == (len(noise), 1, 1)


def test_stream_reports_each_malformed_frame_and_resynchronises():
    bad_cs = VOLTAGE_REPLY[:-2] + b"\x11\x16"
    no_end = VOLTAGE_REPLY[:-1] + b"\x17"
    too_long = H("68 61 01 00 00 00 00 68 91 F0")  # L = 240 > 200
    bad_address = bytearray(VOLTAGE_REPLY)
    bad_address[1], bad_address[-2] = 0x6A, (bad_address[-2] + 9) & 0xFF
    framer = Dlt645Framer()
    framer.feed(bad_cs + no_end + too_long + bytes(bad_address) + ENERGY_REPLY)
    items = list(iter(framer.next_frame, None))
    reasons = [i.reason for i in items if isinstance(i, FrameError)]
    assert reasons == ["checksum", "end", "length", "address"]
    assert items[-1] == frame_of(ENERGY_REPLY)
    assert framer.checksum_errors == 1 and framer.buffered == b""


def test_stream_expectation_marks_the_answer_solicited():
    framer = Dlt645Framer()
    framer.expect("AAAAAAAAAA61", 0x11)
    framer.feed(ADDRESS_REPLY + NO_DATA_REPLY + VOLTAGE_REPLY)
    address, error, volts = iter(framer.next_frame, None)
    assert not address.solicited  # 93H is not the answer to 11H
    assert error.solicited  # an abnormal reply answers too
    assert not volts.solicited and framer.expected is None


def test_stream_ignores_heartbeats_and_bounds_its_buffer():
    beat = b"www.usr.cn"
    check_stream(lambda: Dlt645Framer(ignore=[beat]), beat + VOLTAGE_REPLY + beat,
                 [frame_of(VOLTAGE_REPLY)], trailing=beat[:4])
    framer = Dlt645Framer(max_buffer=300)
    framer.feed(b"\x00" * 400)
    first = framer.next_frame()
    assert isinstance(first, FrameError) and first.reason == "overflow"
    assert framer.next_frame() is None and framer.buffered == b""
    with pytest.raises(ValueError):
        Dlt645Framer(max_buffer=100)


def test_scan_frames_finds_frames_between_garbage():
    assert scan_frames(b"junk" + ENERGY_REPLY + b"\x00" + VOLTAGE_REPLY) == \
        [frame_of(ENERGY_REPLY), frame_of(VOLTAGE_REPLY)]


# ---- the meter responder -----------------------------------------------------------------


VALUES = {0x00010000: H("26 00 00 00"), 0x02010100: H("01 10")}


def test_meter_answers_the_capture_requests_as_the_captured_meter_did():
    assert reply(READ_ENERGY, METER, VALUES) == ENERGY_REPLY
    assert reply(READ_VOLTAGE, METER, VALUES) == VOLTAGE_REPLY
    assert reply(READ_ADDRESS, METER, VALUES) == ADDRESS_REPLY
    assert reply(read_request(METER, 0x02020100), METER, VALUES) == NO_DATA_REPLY


def test_meter_stays_silent_for_others_broadcasts_and_garbage():
    assert reply(read_request("000000000162", 0x02010100), METER, VALUES) is None
    assert reply(time_sync(datetime(2026, 1, 2)), METER, VALUES) is None
    assert reply(READ_VOLTAGE[:-2] + b"\x00\x16", METER, VALUES) is None
    assert reply(VOLTAGE_REPLY, METER, VALUES) is None  # a reply is not a request


def test_meter_splits_long_data_into_subsequent_frames():
    values = {0x0201FF00: H("01 10 02 20 03 30")}
    first = reply(read_request(METER, 0x0201FF00), METER, values, frame_data=4)
    got = read_reply(first, METER, 0x0201FF00)
    assert got.more and got.data == H("01 10 02 20")
    second = reply(read_subsequent_request(METER, 0x0201FF00, 1), METER, values, frame_data=4)
    got = read_reply(second, METER, 0x0201FF00, seq=1)
    assert not got.more and got.data == H("03 30")


def test_meter_checks_the_trip_password():
    until = datetime(2026, 1, 2)
    ok = control_request(METER, "trip", "123456", "00000001", until)
    assert reply(ok, METER, VALUES, password="123456") == \
        encode_frame(METER, 0x9C, b"", wakeup=0)
    with pytest.raises(MeterError, match="password wrong"):
        control_reply(reply(ok, METER, VALUES, password="654321"), METER)


# ---- properties ---------------------------------------------------------------------------

_addresses = st.text("0123456789", min_size=12, max_size=12)
_frames = st.builds(lambda a, c, d: encode_frame(a, c, d, wakeup=2), _addresses,
                    st.integers(0, 255), st.binary(max_size=40))
# noise without 68H (a frame start) or FEH (wake-up), so it cannot forge a frame
_noise = st.binary(max_size=8).map(lambda b: bytes(x for x in b if x not in (0x68, 0xFE)))


def _drain(framer: Dlt645Framer) -> list:
    return list(iter(framer.next_frame, None))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_noise, _frames), max_size=5), st.data())
def test_framer_finds_every_frame_whatever_the_noise_and_the_splits(parts, data):
    stream = b"".join(noise + frame for noise, frame in parts)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    framer = Dlt645Framer()
    got = []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        framer.feed(stream[a:b])
        got += _drain(framer)
    assert got == [frame_of(frame[2:]) for _, frame in parts]
    assert framer.buffered == b""


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(1, 50))
def test_framer_never_raises_and_splits_do_not_matter(junk, step):
    whole = Dlt645Framer(max_buffer=600)
    whole.feed(junk)
    expected = _drain(whole)
    pieces = Dlt645Framer(max_buffer=600)
    got = []
    for i in range(0, len(junk), step):
        pieces.feed(junk[i:i + step])
        got += _drain(pieces)
    assert got == expected and pieces.buffered == whole.buffered


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["XXX.X", "XXX.XXX", "XX.XXXX", "X.XXX", "XXXXXX.XX", "XX.XX"]),
       st.booleans(), st.data())
def test_bcd_round_trip(fmt, signed, data):
    f = parse_format(fmt)
    limit = (8 if signed else 10) * 10 ** (f.digits - 1) - 1
    n = data.draw(st.integers(-limit if signed else 0, limit))
    value = n / 10 ** f.decimals
    assert decode_value(encode_value(value, f, signed), f, signed) == value
