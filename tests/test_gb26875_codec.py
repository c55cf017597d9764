"""GB/T 26875.3 codec: the public frame, round trips of every type, errors, fuzzing."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.contracts import EncodeError
from plugins.sinks.gb26875 import codec as c

# The public 78-byte upload frame (shootingfans/codec_gb26875_3_2011, codec/codec_test.go,
# case "test success"), as quoted in shared/research/protocols.md §1.8 (a).
PUBLIC = bytes.fromhex(
    "40 40 00 00 01 01 18 0d 11 16 0a 14 00 00 00 00 00 00 06 05 04 03 02 01 30 00 02"
    "02 01 01 03 00 d9 00 06 00 02 00 a3 c1 c7 f8 a3 b1 b2 e3 df c8 b2 b8 d7 df c0 c8"
    "00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 30 12 13 01 08 14 68 23 23")
# §1.8 (b): its confirm, built by the rule of the public example server.
PUBLIC_CONFIRM = bytes.fromhex(
    "40 40 00 00 01 01 18 0d 11 16 0a 14 06 05 04 03 02 01 00 00 00 00 00 00 00 00 03 84 23 23")

T = datetime(2021, 3, 4, 5, 6, 7)


def test_public_frame_decodes_to_the_listed_values():
    assert len(PUBLIC) == 78
    f = c.decode_frame(PUBLIC)
    assert (f.serial, f.version, f.user_version) == (0, 1, 1)
    assert f.time == datetime(2020, 10, 22, 17, 13, 24)
    assert f.source == 0
    assert f.destination == 0x010203040506
    assert len(f.data) == 48
    assert f.command == c.CMD_SEND
    app = f.app_data()
    assert app.type == 2 and len(app.objects) == 1
    assert app.objects[0] == c.ComponentState(
        sys_type=1, sys_addr=3, comp_type=0, comp_addr=0x000600D9, state=0x0002,
        description="Ａ区１层呷哺走廊", time=datetime(2020, 8, 1, 19, 18, 48))
    # The research note glosses 0x0002 as "fault"; by the bit table it cites (Fig. 7: bit0
    # normal/test, bit1 fire alarm, bit2 fault) 0x0002 is bit 1, a fire alarm in test mode.
    assert list(c.bits(app.objects[0].state, c.COMPONENT_STATE_BITS)) == ["火警"]
    assert PUBLIC[-3] == 0x68


def test_encoding_the_listed_values_gives_the_public_bytes():
    obj = c.ComponentState(1, 3, 0, 0x000600D9, 0x0002, "Ａ区１层呷哺走廊",
                           datetime(2020, 8, 1, 19, 18, 48))
    data = c.encode_app_data(2, [obj])
    frame = c.Frame(serial=0, command=2, time=datetime(2020, 10, 22, 17, 13, 24), source=0,
                    destination=0x010203040506, data=data, version=1, user_version=1)
    assert frame.encode() == PUBLIC


def test_confirm_of_the_public_frame():
    f = c.decode_frame(PUBLIC)
    confirm = f.reply(c.CMD_CONFIRM, f.time)
    assert confirm.encode() == PUBLIC_CONFIRM
    assert c.decode_frame(PUBLIC_CONFIRM) == confirm


EXAMPLES: dict[int, list[c.Obj]] = {
    1: [c.SystemState(1, 3, 0x2003, T), c.SystemState(129, 255, 0xFFFF, T)],
    2: [c.ComponentState(129, 1, 17, 0xFFFFFFFF, 0x0103, "配电房 1号柜 剩余电流", T)],
    3: [c.ComponentAnalog(129, 1, 18, 7, 3, 655, T), c.ComponentAnalog(129, 1, 17, 7, 200,
                                                                       -32768, T)],
    4: [c.FacilityOperation(1, 2, 0x7F, 9, T)],
    5: [c.FacilitySoftwareVersion(1, 2, 3, 4)],
    6: [c.FacilityConfig(1, 2, "电气火灾监控系统"), c.FacilityConfig(1, 3, "")],
    7: [c.ComponentConfig(1, 2, 18, 300, "温度探测器")],
    8: [c.FacilityTime(1, 2, T)],
    21: [c.UitdState(0x03, T)],
    24: [c.UitdOperation(c.UITD_DUTY_ANSWERED, 0, T)],
    25: [c.UitdSoftwareVersion(1, 0)],
    26: [c.UitdConfig("hub 0.1 网关")],
    28: [c.UitdTime(T)],
    61: [c.SystemRef(1, 2)],
    62: [c.ComponentRef(1, 2, 99)],
    63: [c.ComponentRef(1, 2, 99), c.ComponentRef(1, 2, 100)],
    64: [c.RecordQuery(1, 2, 102, T)],
    65: [c.SystemRef(1, 2)],
    66: [c.SystemRef(1, 2)],
    67: [c.ComponentRef(1, 2, 3)],
    68: [c.SystemRef(1, 2)],
    81: [c.Reserved()], 84: [c.UitdRecordQuery(10, T)], 85: [c.Reserved()],
    86: [c.Reserved()], 88: [c.Reserved()], 89: [c.Reserved()],
    90: [c.ClockSync(T)],
    91: [c.DutyCheck(10)],
}


def test_every_type_has_an_example():
    assert set(EXAMPLES) == set(c.LAYOUTS)
    assert set(c.LAYOUTS) == set(range(1, 9)) | {21, 24, 25, 26, 28} | set(range(61, 69)) | {
        81, 84, 85, 86, 88, 89, 90, 91}


@pytest.mark.parametrize("type_flag", sorted(EXAMPLES))
def test_every_type_round_trips(type_flag):
    objs = EXAMPLES[type_flag]
    data = c.encode_app_data(type_flag, objs)
    assert c.decode_app_data(data) == c.AppData(type_flag, tuple(objs))
    frame = c.Frame(7, c.CMD_SEND, T, 1, 2, data)
    assert c.decode_frame(frame.encode()) == frame


@pytest.mark.parametrize("type_flag", sorted(EXAMPLES))
def test_count_limits(type_flag):
    cls, limit = c.LAYOUTS[type_flag]
    one = EXAMPLES[type_flag][0]
    data = c.encode_app_data(type_flag, [one] * limit)  # the limit itself is fine
    assert len(data) <= c.MAX_DATA
    with pytest.raises(EncodeError, match="objects"):
        c.encode_app_data(type_flag, [one] * (limit + 1))
    with pytest.raises(EncodeError, match="objects"):
        c.encode_app_data(type_flag, [])
    # a count over the limit on the wire is a decode error, not a crash
    bad = bytes((type_flag, limit + 1)) + data[2:] + data[2:2 + (len(data) - 2) // limit]
    with pytest.raises(c.AppDataError, match="objects"):
        c.decode_app_data(bad)


def test_fixed_sizes_match_the_standard():
    sizes = {1: 10, 2: 46, 3: 16, 4: 10, 5: 4, 7: 38, 8: 8, 21: 7, 24: 8, 25: 2, 28: 6,
             61: 2, 62: 6, 63: 6, 81: 1, 84: 7, 90: 6, 91: 1}
    for t, size in sizes.items():
        assert len(c.encode_app_data(t, EXAMPLES[t][:1])) == 2 + size, t


def test_strings_are_gb18030_padded_and_checked():
    assert c.encode_text("Ａ", 31) == b"\xa3\xc1" + b"\0" * 29
    with pytest.raises(EncodeError, match="over 31"):
        c.encode_text("长" * 16, 31)
    assert c.fit_text("长" * 20) == "长" * 15
    assert c.decode_text(b"\xa3\xc1\0\0") == "Ａ"
    assert "\ufffd" in c.decode_text(b"\xff\xff\0")  # garbled bytes do not fail the frame


def test_encode_refuses_out_of_range_fields():
    with pytest.raises(EncodeError, match="sys_type"):
        c.encode_app_data(1, [c.SystemState(256, 0, 0, T)])
    with pytest.raises(EncodeError, match="value"):
        c.encode_app_data(3, [c.ComponentAnalog(1, 1, 1, 1, 3, 40000, T)])
    with pytest.raises(EncodeError, match="carries"):
        c.encode_app_data(1, [c.UitdTime(T)])
    with pytest.raises(EncodeError, match="records"):
        c.encode_app_data(84, [c.UitdRecordQuery(103, T)])
    with pytest.raises(EncodeError, match="year"):
        c.encode_time(datetime(1999, 1, 1))
    with pytest.raises(EncodeError, match="over 1024"):
        c.Frame(0, 2, T, data=bytes(1025)).encode()


def _corrupt(i: int, value: int) -> bytes:
    b = bytearray(PUBLIC)
    b[i] = value
    return bytes(b)


@pytest.mark.parametrize(("raw", "kind", "has_header"), [
    (_corrupt(-3, 0x69), "checksum", True),
    (_corrupt(40, 0x00), "checksum", True),
    (_corrupt(0, 0x41), "marker", False),
    (_corrupt(-1, 0x24), "marker", True),
    (PUBLIC[:-1], "length", True),
    (PUBLIC[:24] + b"\x01\x04" + PUBLIC[26:], "length", True),  # 1025 bytes of data
    (PUBLIC[:8], "marker", False),
])
def test_frame_errors_are_clear(raw, kind, has_header):
    with pytest.raises(c.FrameError) as e:
        c.decode_frame(raw)
    assert e.value.kind == kind
    assert (e.value.header is not None) is has_header
    if has_header:  # enough to build a deny
        assert e.value.header.serial == 0 and e.value.header.destination == 0x010203040506


def test_reserved_command_byte_is_a_check_error():
    f = c.Frame(1, 7, T).encode()
    with pytest.raises(c.FrameError) as e:
        c.decode_frame(f)
    assert e.value.kind == "command"
    assert c.decode_frame(c.Frame(1, 200, T).encode()).command == 200  # user-defined


def test_app_data_errors_are_clear():
    with pytest.raises(c.AppDataError, match="reserved or user-defined"):
        c.decode_app_data(b"\x09\x01")
    with pytest.raises(c.AppDataError, match="needs"):
        c.decode_app_data(c.decode_frame(PUBLIC).data[:-1])
    with pytest.raises(c.AppDataError, match="the data is"):
        c.decode_app_data(c.decode_frame(PUBLIC).data + b"\0")
    with pytest.raises(c.AppDataError, match="no type"):
        c.decode_app_data(b"\x02")
    with pytest.raises(c.GBDecodeError, match="time label"):
        c.decode_app_data(b"\x1c\x01" + bytes(6))  # day 0, month 0


def test_stream_whole_split_and_with_garbage():
    two = PUBLIC + PUBLIC_CONFIRM
    d = c.StreamDecoder()
    assert [f.command for f in d.feed(two)] == [2, 3]
    d = c.StreamDecoder()
    out = []
    for b in two:
        out += d.feed(bytes([b]))
    assert [f.command for f in out] == [2, 3]
    d = c.StreamDecoder()
    out = d.feed(b"xx@" + PUBLIC + b"garbage#" + PUBLIC_CONFIRM)
    # "@@@": the first "@@" is tried first and fails its checks; the real frame still comes
    assert [f.command for f in out if isinstance(f, c.Frame)] == [2, 3]
    assert d.buffered == 0


def test_stream_resynchronises_after_bad_frames():
    d = c.StreamDecoder()
    bad_sum = _corrupt(-3, 0x00)
    bad_end = _corrupt(-1, 0x00)
    out = d.feed(bad_sum + bad_end + PUBLIC + b"@@" + b"\xff" * 30 + PUBLIC_CONFIRM)
    kinds = [e.kind if isinstance(e, c.FrameError) else e.command for e in out]
    assert kinds[0] == "checksum"
    assert "marker" in kinds
    assert "length" in kinds  # the 0xffff length of the noise after the good frame
    assert [k for k in kinds if isinstance(k, int)] == [2, 3]
    assert d.buffered == 0


def test_stream_buffer_is_bounded():
    d = c.StreamDecoder()
    d.feed(b"@@" + bytes(22) + b"\x00\x04")  # a header promising 1024 bytes
    assert d.feed(bytes(500)) == []
    assert d.buffered <= c.MAX_FRAME
    d.feed(b"\x00" * 10000)
    assert d.buffered <= c.MAX_FRAME


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=1200))
def test_fuzz_decoders_raise_only_their_own_error(data):
    for fn in (c.decode_frame, c.decode_app_data):
        try:
            fn(data)
        except c.GBDecodeError:
            pass
    d = c.StreamDecoder()
    for i in range(0, len(data), 37):
        for item in d.feed(data[i:i + 37]):
            assert isinstance(item, (c.Frame, c.FrameError))
    assert d.buffered <= c.MAX_FRAME


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzz_mutated_public_frame(data):
    b = bytearray(PUBLIC)
    for _ in range(data.draw(st.integers(1, 4))):
        b[data.draw(st.integers(0, len(b) - 1))] = data.draw(st.integers(0, 255))
    try:
        f = c.decode_frame(bytes(b))
        f.app_data()
    except c.GBDecodeError:
        pass
    # a corrupted length may hold back up to one maximal frame; good frames follow it
    out = c.StreamDecoder().feed(bytes(b) + PUBLIC * 15)
    assert out[-1] == c.decode_frame(PUBLIC)
    assert sum(isinstance(f, c.Frame) for f in out) >= 14


_times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)).map(
    lambda t: t.replace(microsecond=0))


@settings(max_examples=200, deadline=None)
@given(serial=st.integers(0, 0xFFFF), cmd=st.sampled_from(sorted(c.KNOWN_COMMANDS)),
       src=st.integers(0, 2**48 - 1), dst=st.integers(0, 2**48 - 1), t=_times,
       data=st.binary(max_size=1024), uv=st.integers(0, 255))
def test_fuzz_frame_round_trip(serial, cmd, src, dst, t, data, uv):
    f = c.Frame(serial, cmd, t, src, dst, data, 1, uv)
    assert c.decode_frame(f.encode()) == f


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255),
                          st.integers(0, 2**32 - 1), st.integers(-32768, 32767), _times),
                min_size=1, max_size=63))
def test_fuzz_analog_round_trip(rows):
    objs = tuple(c.ComponentAnalog(a, b, ct, ca, 3, v, t) for a, b, ct, ca, v, t in rows)
    assert c.decode_app_data(c.encode_app_data(3, objs)).objects == objs
