"""The modbus_map device model: values, poll planning, decoding, commands, map validation."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import yaml

from hub import hookimpl
from hub.contracts import DecodeError, EncodeError
from hub.model import Command, Event, EventKind, EventState, Level, Quality, Reading
from hub.testing import check_decode
from hub.validate import ConfigError
from plugins.devices.modbus import ModbusMapModel, Poll
from plugins.devices.modbus.planner import plan_polls
from plugins.devices.modbus.registermap import load_map
from plugins.protocols.modbus import rtu, values

ROOT = Path(__file__).parent.parent
EFD = str(ROOT / "conf/devices/efd-example.yaml")
METER = str(ROOT / "conf/devices/meter3p-example.yaml")


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def write_map(tmp_path: Path, text: str, name: str = "m.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def model_of(tmp_path: Path, text: str) -> ModbusMapModel:
    return ModbusMapModel.from_file(write_map(tmp_path, text))


def answer(model: ModbusMapModel, poll: Poll, words: list[int], slave: int = 1) -> bytes:
    """The device's answer to ``poll``: register values (or bits for 01/02)."""
    data = rtu.pack_bits(words) if poll.function in (1, 2) else rtu.pack_registers(words)
    return rtu.read_response(slave, poll.function, data)


def cmd(action: str, channel: str = "", **params) -> Command:
    return Command("c1", "d1", action, 0.0, channel, params)


# ---- values: types, byte and word order, units -------------------------------------------


@pytest.mark.parametrize("type_, order, registers, value", [
    ("f32", "ABCD", [0x435C, 0x8000], 220.5),
    ("f32", "CDAB", [0x8000, 0x435C], 220.5),
    ("f32", "BADC", [0x5C43, 0x0080], 220.5),
    ("f32", "DCBA", [0x0080, 0x5C43], 220.5),
    ("f32", "ABCD", [0x4247, 0xF5C3], 49.99),      # 7 digits, not 49.9900016784668
    ("u32", "ABCD", [0x1234, 0x5678], 0x12345678),
    ("u32", "CDAB", [0x5678, 0x1234], 0x12345678),
    ("u32", "BADC", [0x3412, 0x7856], 0x12345678),
    ("u32", "DCBA", [0x7856, 0x3412], 0x12345678),
    ("s32", "ABCD", [0xFFFF, 0xFFFE], -2),
    ("s32", "CDAB", [0xFFFE, 0xFFFF], -2),
    ("u16", "ABCD", [0x1234], 0x1234),
    ("u16", "BADC", [0x3412], 0x1234),             # 16 bits: only the byte order matters
    ("u16", "CDAB", [0x1234], 0x1234),
    ("s16", "ABCD", [0xFF9C], -100),
    ("s16", "DCBA", [0x9CFF], -100),
])
def test_types_and_orders(type_, order, registers, value):
    orders = values.ORDERS[order]
    assert values.decode(registers, type_, *orders)[0] == value
    assert values.encode(value, type_, *orders) == tuple(registers)


def test_decode_also_gives_the_raw_bits_for_sentinels():
    assert values.decode([0xFFFF], "s16") == (-1, 0xFFFF)
    assert values.decode([0x0000, 0x7FC0], "f32", "big", "little")[1] == 0x7FC00000


def test_encode_refuses_values_that_do_not_fit():
    with pytest.raises(EncodeError, match="70000 does not fit in u16"):
        values.encode(70000, "u16")
    with pytest.raises(EncodeError, match="does not fit in f32"):
        values.encode(1e39, "f32")


def test_values_agree_with_pymodbus():
    pytest.importorskip("pymodbus")
    from pymodbus.client.mixin import ModbusClientMixin as M

    regs = M.convert_to_registers(220.5, M.DATATYPE.FLOAT32, word_order="little")
    assert values.decode(regs, "f32", "big", "little")[0] == 220.5
    regs = M.convert_to_registers(-123456, M.DATATYPE.INT32, word_order="big")
    assert values.decode(regs, "s32")[0] == -123456


@pytest.mark.parametrize("quantity, unit, raw, canonical", [
    ("residual_current", "A", 0.35, 350.0),
    ("residual_current", "mA", 350, 350.0),
    ("current", "mA", 1500, 1.5),
    ("active_power", "kW", 2.5, 2500.0),
    ("active_energy", "Wh", 1234567, 1234.567),
    ("temperature", "℃", 25, 25.0),
    ("temperature", "°F", 212, 100.0),
])
def test_unit_conversions(quantity, unit, raw, canonical):
    factor, offset = values.conversion(quantity, unit)
    assert values.tidy(raw * factor + offset) == canonical


# ---- poll planning -----------------------------------------------------------------------


def test_adjacent_registers_merge_into_one_read():
    assert plan_polls([(3, 0, 1), (3, 1, 2), (3, 3, 1)]) == [Poll(3, 0, 4)]


def test_gaps_merge_up_to_max_gap():
    spans = [(3, 0, 1), (3, 3, 1), (3, 10, 2)]
    assert plan_polls(spans, max_gap=0) == [Poll(3, 0, 1), Poll(3, 3, 1), Poll(3, 10, 2)]
    assert plan_polls(spans, max_gap=2) == [Poll(3, 0, 4), Poll(3, 10, 2)]
    assert plan_polls(spans, max_gap=6) == [Poll(3, 0, 12)]


def test_reads_never_exceed_the_protocol_or_map_limits():
    spans = [(4, a, 2) for a in range(0, 300, 2)]
    polls = plan_polls(spans)
    assert polls == [Poll(4, 0, 124), Poll(4, 124, 124), Poll(4, 248, 52)]
    assert all(p.count <= 64 for p in plan_polls(spans, max_registers=64))
    bits = plan_polls([(1, a, 1) for a in range(4500)])
    assert [p.count for p in bits] == [2000, 2000, 500]


def test_functions_are_planned_apart_in_a_fixed_order():
    spans = [(4, 0, 1), (3, 5, 2), (1, 0, 1), (3, 0, 1), (3, 0, 1), (2, 7, 1)]
    expected = [Poll(1, 0, 1), Poll(2, 7, 1), Poll(3, 0, 1), Poll(3, 5, 2), Poll(4, 0, 1)]
    assert plan_polls(spans) == expected
    assert plan_polls(reversed(spans)) == expected
    assert plan_polls([(3, 0, 2), (3, 1, 1)]) == [Poll(3, 0, 2)]    # overlapping spans


def test_request_and_expected_length_of_a_poll(tmp_path):
    model = ModbusMapModel.from_file(EFD)
    poll = model.plan()[0]
    assert model.request(0x11, poll) == rtu.read_request(0x11, 4, 0, 18)
    assert model.expected_length(poll) == 5 + 36
    assert model.expected_length(Poll(1, 0, 9)) == 7


# ---- decoding ----------------------------------------------------------------------------

SMALL = """\
    poll_interval: 5
    points:
      - {quantity: temperature, channel: T1, function: 3, address: 0, type: s16, scale: 0.1,
         sentinel: [0x7FFF, 0x8000]}
      - {quantity: temperature, channel: T2, function: 3, address: 1, type: s16, scale: 0.1,
         sentinel: 0x7FFF, on_sentinel: bad}
      - {quantity: residual_current, channel: L1, function: 3, address: 2, unit: A, scale: 0.001}
      - {quantity: fault_arc, function: 3, address: 3, type: bit, bit: 2}
      - {quantity: outage, function: 2, address: 0}
    status:
      - function: 3
        address: 4
        bits:
          - {bit: 0, kind: alarm, code: temperature, channel: T1, message: 温度报警}
          - {bit: 3, kind: fault, code: channel_open, channel: T2}
          - {bit: 4, kind: fault, code: channel_short, channel: T1, quality: uncertain}
      - function: 1
        address: 0
        bits:
          - {bit: 1, kind: fault, code: self_fault}
"""


def test_points_are_decoded_into_canonical_readings(tmp_path):
    model = model_of(tmp_path, SMALL)
    assert model.plan() == [Poll(1, 0, 2), Poll(2, 0, 1), Poll(3, 0, 5)]
    poll = Poll(3, 0, 5)
    frame = answer(model, poll, [253, 0xFF38, 350, 0b100, 0])
    records = model.decode_response("d1", 1, poll, frame, 100.0)
    assert records[:4] == [
        Reading("d1", "temperature", 25.3, 100.0, "T1"),
        Reading("d1", "temperature", -20.0, 100.0, "T2"),
        Reading("d1", "residual_current", 350.0, 100.0, "L1"),    # 0.350 A → mA
        Reading("d1", "fault_arc", 1.0, 100.0),
    ]
    assert model.decode_response("d1", 1, Poll(2, 0, 1), answer(model, Poll(2, 0, 1), [1]),
                                 5.0) == [Reading("d1", "outage", 1.0, 5.0)]


def test_status_bits_are_reported_on_every_poll_level_style(tmp_path):
    """Each flag gives RAISED while its bit is set and CLEARED when not, every poll; a
    channel flagged open or short marks the readings of that response."""
    model = model_of(tmp_path, SMALL)
    poll = Poll(3, 0, 5)

    def events(word):
        frame = answer(model, poll, [250, 260, 0, 0, word])
        return model.decode_response("d1", 1, poll, frame, 7.0)

    recs = events(0b01001)
    assert recs[4:] == [
        Event("d1", EventKind.ALARM, "temperature", EventState.RAISED, 7.0, Level.ALARM, "T1",
              source="device", message="温度报警"),
        Event("d1", EventKind.FAULT, "channel_open", EventState.RAISED, 7.0, Level.FAULT, "T2",
              source="device"),
        Event("d1", EventKind.FAULT, "channel_short", EventState.CLEARED, 7.0, Level.FAULT, "T1",
              source="device"),
    ]
    assert [r.quality for r in recs[:2]] == [Quality.GOOD, Quality.BAD]   # T2 open
    recs = events(0b10000)
    assert [e.state for e in recs[4:]] == [EventState.CLEARED] * 2 + [EventState.RAISED]
    assert [r.quality for r in recs[:2]] == [Quality.UNCERTAIN, Quality.GOOD]
    coils = model.decode_response("d1", 1, Poll(1, 0, 2), answer(model, Poll(1, 0, 2), [0, 1]), 1)
    assert coils == [Event("d1", EventKind.FAULT, "self_fault", EventState.RAISED, 1, Level.FAULT,
                           source="device")]


def test_sentinels_skip_a_reading_or_mark_it_bad(tmp_path):
    model = model_of(tmp_path, SMALL)
    poll = Poll(3, 0, 5)
    recs = model.decode_response("d1", 1, poll, answer(model, poll, [0x8000, 0x7FFF, 0, 0, 0]), 0)
    readings = [r for r in recs if isinstance(r, Reading)]
    assert [(r.channel, r.quality) for r in readings if r.quantity == "temperature"] == [
        ("T2", Quality.BAD)]


def test_nan_float_is_skipped(tmp_path):
    model = model_of(tmp_path, """\
        points: [{quantity: voltage, channel: A, function: 4, address: 0, type: f32}]
    """)
    assert model.decode_response("d", 1, Poll(4, 0, 2),
                                 answer(model, Poll(4, 0, 2), [0x7FC0, 0]), 0) == []


def test_bad_answers_raise_decode_errors(tmp_path):
    model = model_of(tmp_path, SMALL)
    poll = Poll(3, 0, 5)
    good = answer(model, poll, [0] * 5)
    with pytest.raises(rtu.ModbusException) as e:
        model.decode_response("d1", 1, poll, rtu.exception_response(1, 3, 2), 0)
    assert e.value.code == 2
    with pytest.raises(DecodeError, match="CRC") as e:
        model.decode_response("d1", 1, poll, good[:-1] + b"\x00", 0)
    assert e.value.excerpt == good[:-1] + b"\x00"
    with pytest.raises(DecodeError, match="byte count 10, expected 8"):
        model.decode_response("d1", 1, Poll(3, 0, 4), good, 0)
    with pytest.raises(DecodeError, match="answer from slave 1, expected slave 2"):
        model.decode_response("d1", 2, poll, good, 0)


def test_decode_matches_a_frame_to_its_poll_by_function_and_byte_count(tmp_path):
    """A complete frame without its request (MQTT payload, pushing detector)."""
    model = model_of(tmp_path, SMALL)
    frame = answer(model, Poll(3, 0, 5), [253, 200, 1000, 0, 1], slave=7)
    records = check_decode(model, "d1", frame, model.decode_response(
        "d1", 7, Poll(3, 0, 5), frame, 0.0))
    assert records[0] == Reading("d1", "temperature", 25.3, 0.0, "T1")
    with pytest.raises(DecodeError, match=re.escape(
            "a function 03 answer of 6 data bytes fits no planned poll (planned: fc01 0..1 "
            "(1 bytes), fc02 0..0 (1 bytes), fc03 0..4 (10 bytes))")):
        model.decode("d1", rtu.read_response(1, 3, bytes(6)), 0)
    twins = model_of(tmp_path, """\
        points: [{quantity: voltage, channel: A, function: 3, address: 0},
                 {quantity: voltage, channel: B, function: 3, address: 10}]
    """)
    with pytest.raises(DecodeError, match="fits several planned polls"):
        twins.decode("d1", rtu.read_response(1, 3, bytes(2)), 0)
    with pytest.raises(rtu.ModbusException):
        model.decode("d1", rtu.exception_response(1, 3, 4), 0)
    with pytest.raises(DecodeError, match="function 05 is not a read response"):
        model.decode("d1", rtu.write_coil(1, 0, True), 0)


# ---- commands ----------------------------------------------------------------------------


def test_efd_example_commands_give_exact_requests():
    model = ModbusMapModel.from_file(EFD)
    assert model.encode_command("d1", cmd("reset")) == h("01 05 00 00 FF 00 8C 3A")
    assert model.encode_command("d1", cmd("trip"), slave=0x11) == rtu.write_coil(0x11, 3, True)
    # 75.0 °C at 0.1 °C per count → 750 = 0x02EE in register 0x0101
    assert model.encode_command("d1", cmd("set_threshold", "T1", rule="temperature", value=75),
                                slave=1) == rtu.add_crc(h("01 06 01 01 02 EE"))
    assert model.encode_command("d1", cmd("set_threshold", quantity="residual_current",
                                          value=300)) == rtu.write_register(1, 0x100, 300)
    # 80 A at 0.01 A per count, u32 over two registers with function 16
    assert model.encode_command("d1", cmd("set_threshold", rule="overcurrent", value=80)) == \
        rtu.add_crc(h("01 10 01 08 00 02 04 00 00 1F 40"))
    assert model.encode_command("d1", cmd("disable_channel", "T3")) == \
        rtu.add_crc(h("01 06 01 12 00 00"))
    assert model.actions == {"reset", "silence", "self_test", "trip", "close", "set_threshold",
                             "enable_channel", "disable_channel"}


@pytest.mark.parametrize("command, message", [
    (cmd("reboot"), "efd-example.yaml has no reboot command (it has: close, disable_channel"),
    (cmd("reset", "L1"), "reset acts on the whole device and takes no channel (got 'L1')"),
    (cmd("reset", delay=1), "reset takes no params (got delay)"),
    (cmd("disable_channel"), "disable_channel needs a channel: one of T1, T2, T3, T4"),
    (cmd("enable_channel", "T9"), "enable_channel has no channel 'T9'; one of T1, T2, T3, T4"),
    (cmd("set_threshold", "T1", rule="temperature", value=200),
     "temperature set point 200 is outside 45..140 °C"),
    (cmd("set_threshold", rule="residual_current", value=5),
     "residual_current set point 5 is outside 20..1000 mA"),
    (cmd("set_threshold", rule="temperature", value=70),
     "set_threshold temperature needs a channel: one of T1, T2, T3, T4"),
    (cmd("set_threshold", quantity="voltage", value=250),
     "quantity 'voltage' is ambiguous (overvoltage, undervoltage); give params.rule"),
    (cmd("set_threshold", rule="gas_concentration", value=50),
     "rule 'gas_concentration' has no set point in"),
    (cmd("set_threshold", "T1", rule="temperature", value="hot"),
     "params.value must be a number, got 'hot'"),
    (cmd("set_threshold", "T1", rule="temperature"), "params.value must be a number, got None"),
    (cmd("set_threshold", value=70), "set_threshold needs params.rule (one of overcurrent"),
    (cmd("set_threshold", "T1", rule="temperature", value=70, level="warning"),
     "set_threshold takes params rule (or quantity) and value, not level"),
    (cmd("explode"), "unknown command action 'explode'"),
])
def test_commands_that_cannot_be_encoded_are_refused(command, message):
    model = ModbusMapModel.from_file(EFD)
    with pytest.raises(EncodeError, match=re.escape(message)):
        model.encode_command("d1", command)


def test_a_map_without_commands_refuses_every_action():
    with pytest.raises(EncodeError, match=re.escape("has no reset command (it has: none)")):
        ModbusMapModel.from_file(METER).encode_command("m1", cmd("reset"))


def test_multi_write_and_per_channel_commands(tmp_path):
    model = model_of(tmp_path, """\
        points: [{quantity: current, channel: A, function: 3, address: 0}]
        commands:
          trip:
            L1: [{function: 6, address: 0x10, value: 0x5A5A}, {function: 5, address: 1}]
            L2: {function: 5, address: 2, value: off}
          self_test: {function: 16, address: 0x20, values: [1, -1]}
          silence: {function: 16, address: 0x30, value: 1.5, type: f32, order: CDAB}
          set_threshold:
            temperature: {function: 16, address: 0x40, type: f32, unit: °C, min: 0, max: 150}
    """)
    reqs = model.command_requests(cmd("trip", "L1"), slave=3)
    assert reqs == [rtu.add_crc(h("03 06 00 10 5A 5A")), rtu.add_crc(h("03 05 00 01 FF 00"))]
    with pytest.raises(EncodeError, match="trip takes 2 writes"):
        model.encode_command("d1", cmd("trip", "L1"))
    assert model.encode_command("d1", cmd("trip", "L2")) == rtu.write_coil(1, 2, False)
    assert model.encode_command("d1", cmd("self_test")) == rtu.write_registers(1, 0x20, [1, 0xFFFF])
    assert model.encode_command("d1", cmd("silence")) == rtu.write_registers(
        1, 0x30, [0x0000, 0x3FC0])
    assert model.encode_command("d1", cmd("set_threshold", rule="temperature", value=10.5)) == \
        rtu.write_registers(1, 0x40, [0x4128, 0x0000])
    for req in reqs:
        model.check_write_response(req, rtu.write_response(req))
    with pytest.raises(rtu.ModbusException, match="exception 01"):
        model.check_write_response(reqs[0], rtu.exception_response(3, 6, 1))


# ---- map validation ----------------------------------------------------------------------


def errors_of(tmp_path: Path, text: str) -> list[str]:
    path = write_map(tmp_path, text, "bad.yaml")
    with pytest.raises(ConfigError) as e:
        load_map(path)
    prefix = path + ": "
    assert all(line.startswith(prefix) for line in e.value.errors), e.value.errors
    return [line[len(prefix):] for line in e.value.errors]


POINT = "{quantity: voltage, channel: A, function: 3, address: 0}"


@pytest.mark.parametrize("text, expected", [
    (f"points: [{POINT}, {{quantity: voltage, channel: B, function: 3, address: 1, type: u17}}]",
     ["points[1].type: 'u17' is not one of u16, s16, u32, s32, f32, bit"]),
    ("points: [{quantity: temp, function: 3, address: 0}]",
     ["points[0].quantity: 'temp' is not a canonical quantity (one of residual_current, "]),
    ("points: [{quantity: residual_current, function: 3, address: 0, unit: kg}]",
     ["points[0].unit: 'kg' cannot be converted to 'mA', the unit of residual_current "
      "(known: 'mA', 'A', 'uA', 'µA')"]),
    ("points: [{quantity: voltage, channel: D, function: 3, address: 0}]",
     ["points[0].channel: channel 'D' is not one of '', A, B, C, N, T<n> (temperature), "
      "L<n> (circuit)"]),
    ("points: [{quantity: voltage, function: 5, address: 0}]",
     ["points[0].function: 5 is not a read function (1, 2, 3 or 4)"]),
    ("points: [{quantity: outage, function: 1, address: 0, type: u16}]",
     ["points[0].type: 'u16': function 01 reads single bits, so the type is bit"]),
    ("points: [{quantity: outage, function: 3, address: 0, type: bit}]",
     ["points[0].bit: is required for type bit of a register (0..15)"]),
    ("points: [{quantity: voltage, function: 3, address: 65535, type: u32}]",
     ["points[0].address: 65535 + 2 runs past 65535"]),
    ("points: [{quantity: voltage, function: 3, address: 0, scale: 0}]",
     ["points[0].scale: 0 would turn every value into the offset"]),
    ("points: [{quantity: voltage, function: 3, address: 0, order: ABCD, word_order: big}]",
     ["points[0].order: give either order or byte_order/word_order"]),
    (f"points: [{POINT}, {POINT}]", ["points[1]: voltage/A is already read by points[0]"]),
    ("points: [{quantity: voltage, function: 3, adress: 0}]",
     ["points[0].address: is required", "points[0].adress: is not a known key here"]),
    ("points: []", ["points: a map needs at least one point or status word"]),
    ("- just a list", ["(top level): expected a mapping, got a list",
                       "points: a map needs at least one point or status word"]),
    ("status: [{function: 3, address: 0, bits: [{bit: 16, kind: alarm, code: x}]}]",
     ["status[0].bits[0].bit: 16 is outside 0..15"]),
    ("status: [{function: 3, address: 0, bits: [{bit: 1, kind: alarm, code: a},"
     " {bit: 1, kind: alarm, code: b}]}]",
     ["status[0].bits[1].bit: bit 1 is already bits[0]"]),
    ("status: [{function: 3, address: 0, bits: [{bit: 1, kind: alarm, code: temperature}]},"
     " {function: 3, address: 1, bits: [{bit: 2, kind: alarm, code: temperature}]}]",
     ["status[1].bits[0]: alarm temperature is already reported by status[0].bits[0] "
      "(give the flag its own code)"]),
    ("status: [{function: 3, address: 0, bits: [{bit: 1, kind: fault, code: x, level: alarm}]}]",
     ["status[0].bits[0].level: 'alarm' is not one of fault"]),
    ("status: [{function: 3, address: 0, bits: [{bit: 1, kind: warn, code: Bad-Code}]}]",
     ["status[0].bits[0].kind: 'warn' is not one of alarm, fault",
      "status[0].bits[0].code: 'Bad-Code' is not a code in snake_case (temperature, "
      "channel_open)"]),
    ("status: [{function: 3, address: 0}]", ["status[0].bits: is required"]),
    ("status: [{function: 2, address: 0, type: u16, bits: [{bit: 0, kind: alarm, code: a}]}]",
     ["status[0].type: 'u16': function 2 needs bit"]),
    (f"points: [{POINT}]\ncommands: {{explode: {{function: 5, address: 0}}}}",
     ["commands.explode: is not a command action; one of reset, silence, self_test, trip, "
      "close, set_threshold, enable_channel, disable_channel, reboot"]),
    (f"points: [{POINT}]\ncommands: {{reset: {{function: 5, address: 0, value: 7}}}}",
     ["commands.reset.value: expected on or off (true/false), got 7"]),
    (f"points: [{POINT}]\ncommands: {{reset: {{function: 3, address: 0}}}}",
     ["commands.reset.function: 3 is not a write function (5, 6, 16)"]),
    (f"points: [{POINT}]\ncommands: {{reset: {{function: 6, address: 0}}}}",
     ["commands.reset.value: is required"]),
    (f"points: [{POINT}]\ncommands: {{reset: {{address: 0}}}}",
     ["commands.reset.function: is required"]),
    (f"points: [{POINT}]\ncommands: {{reset: 5}}",
     ["commands.reset: expected a write, a list of writes (with function and address), or a "
      "mapping of channel → write; got 5"]),
    (f"points: [{POINT}]\ncommands: {{disable_channel: {{X1: {{function: 5, address: 0}}}}}}",
     ["commands.disable_channel.X1: channel 'X1' is not one of '', A, B, C, N, T<n> "
      "(temperature), L<n> (circuit)"]),
    (f"points: [{POINT}]\ncommands: {{set_threshold: {{heat: {{function: 6, address: 0}}}}}}",
     ["commands.set_threshold.heat: is not an alarm rule; one of residual_current, "]),
    (f"points: [{POINT}]\ncommands: {{set_threshold: {{temperature: "
     "{function: 6, address: 0, type: u32}}}",
     ["commands.set_threshold.temperature.type: u32 takes two registers: use function 16"]),
    (f"points: [{POINT}]\ncommands: {{set_threshold: {{temperature: "
     "{function: 6, address: 0, unit: V, min: 90, max: 50}}}",
     ["commands.set_threshold.temperature.unit: 'V' cannot be converted to '°C', the unit of "
      "temperature (known: '°C', '℃', 'degC', 'K', '°F')",
      "commands.set_threshold.temperature.min: 90 is above max 50"]),
    (f"points: [{POINT}]\ncommands: {{self_test: {{function: 16, address: 0, values: [1],"
     " type: u16}}",
     ["commands.self_test.values: give either values or value with type"]),
    (f"points: [{POINT}]\nmax_registers: 1\npoll_interval: 0",
     ["poll_interval: 0 is outside 0.1..86400 s", "max_registers: 1 is outside 2..125"]),
])
def test_bad_maps_are_reported_with_file_and_key_path(tmp_path, text, expected):
    got = errors_of(tmp_path, text)
    assert len(got) == len(expected), got
    for line, want in zip(got, expected, strict=True):
        assert line.startswith(want), f"{line!r} does not start with {want!r}"


def test_every_error_of_a_map_is_reported_at_once(tmp_path):
    got = errors_of(tmp_path, """\
        poll_interval: fast
        points:
          - {quantity: voltage, channel: A, function: 3, address: 0, type: u17}
          - {quantity: current, channel: Z, function: 3, address: 1}
        status:
          - {function: 3, address: 9, bits: [{bit: 40, kind: alarm, code: x}]}
    """)
    assert [line.split(":")[0] for line in got] == [
        "poll_interval", "points[0].type", "points[1].channel", "status[0].bits[0].bit"]


def test_unreadable_and_invalid_yaml_maps(tmp_path):
    with pytest.raises(ConfigError, match=re.escape(
            "nope.yaml: cannot read nope.yaml: No such file or directory")):
        load_map("nope.yaml")
    path = write_map(tmp_path, "points: [\n  {a: 1\n", "broken.yaml")
    with pytest.raises(ConfigError, match=re.escape(f"{path}: line 3 column 1: not valid YAML")):
        load_map(path)


# ---- the example maps --------------------------------------------------------------------


def test_efd_example_decodes_a_synthetic_answer():
    model = ModbusMapModel.from_file(EFD)
    assert (model.poll_interval, model.heartbeat_interval, model.timeout_count) == (10, 30, 3)
    [poll] = model.plan()
    assert poll == Poll(4, 0, 18)
    regs = [0] * 18
    regs[0:5] = [125, 253, 0xFF9C, 0x7FFF, 801]      # mA; 0.1 °C; T3 absent (0x7FFF)
    regs[8:14] = [2201, 2195, 2210, 1050, 998, 1002]  # 0.1 V; 0.01 A
    regs[16] = 0b0000_0000_0001_0010                  # T1 and T4 temperature alarms
    regs[17] = 0b1000_0000_0000_0100                  # T2 open, self fault
    frame = rtu.read_response(1, 4, rtu.pack_registers(regs))
    records = model.decode_response("efd-1", 1, poll, frame, 1000.0)
    readings = {(r.quantity, r.channel): (r.value, r.quality) for r in records
                if isinstance(r, Reading)}
    good, bad = Quality.GOOD, Quality.BAD
    assert readings == {
        ("residual_current", "L1"): (125.0, good),
        ("temperature", "T1"): (25.3, good),
        ("temperature", "T2"): (-10.0, bad),          # channel_open T2 in the same answer
        ("temperature", "T4"): (80.1, good),
        ("voltage", "A"): (220.1, good), ("voltage", "B"): (219.5, good),
        ("voltage", "C"): (221.0, good),
        ("current", "A"): (10.5, good), ("current", "B"): (9.98, good),
        ("current", "C"): (10.02, good),
    }
    raised = [(e.kind.value, e.code, e.channel) for e in records
              if isinstance(e, Event) and e.state is EventState.RAISED]
    assert raised == [("alarm", "temperature", "T1"), ("alarm", "temperature", "T4"),
                      ("fault", "channel_open", "T2"), ("fault", "self_fault", "")]
    events = [r for r in records if isinstance(r, Event)]
    assert len(events) == 20 and all(e.source == "device" and e.id == "" for e in events)
    assert model.decode("efd-1", frame, 1000.0) == records
    for r in records:
        if isinstance(r, Reading):
            r.validate()


def test_meter_example_decodes_a_synthetic_answer():
    model = ModbusMapModel.from_file(METER)
    assert model.plan() == [Poll(3, 0, 28), Poll(3, 0x100, 4)]
    cdab = ("big", "little")
    inst = [0] * 28
    for address, value in [(0, 230.2), (2, 229.8), (4, 231.0), (6, 5.5), (8, 6.25), (10, 4.75),
                           (16, 3.75), (18, 0.5), (20, 3.8), (22, 0.98), (24, 50.0), (26, 1.5)]:
        inst[address:address + 2] = values.encode(value, "f32", *cdab)
    energy = [*values.encode(12_345_678, "u32", *cdab), *values.encode(2_000, "u32", *cdab)]
    got = {}
    for poll, regs in zip(model.plan(), [inst, energy], strict=True):
        frame = rtu.read_response(5, 3, rtu.pack_registers(regs))
        assert len(frame) == model.expected_length(poll)
        for r in model.decode_response("m1", 5, poll, frame, 0.0):
            got[(r.quantity, r.channel)] = r.value
    assert got == {
        ("voltage", "A"): 230.2, ("voltage", "B"): 229.8, ("voltage", "C"): 231.0,
        ("current", "A"): 5.5, ("current", "B"): 6.25, ("current", "C"): 4.75,
        ("active_power", ""): 3750.0, ("reactive_power", ""): 500.0,
        ("apparent_power", ""): 3800.0, ("power_factor", ""): 0.98, ("frequency", ""): 50.0,
        ("voltage_unbalance", ""): 1.5,
        ("active_energy", ""): 12345.678, ("reactive_energy", ""): 2.0,
    }


def test_example_maps_say_they_are_examples():
    for path in (EFD, METER):
        head = Path(path).read_text(encoding="utf-8").split("\n\n")[0]
        assert "EXAMPLE" in head and "NOT the register map of any real" in head
        assert yaml.safe_load(Path(path).read_text(encoding="utf-8"))["name"].endswith("example")


# ---- through the hub: configuration and the alarm engine ---------------------------------


def hub_config(map_path: str, **options) -> dict:
    return {
        "models": {"efd": {"type": "modbus_map", "map": map_path, **options}},
        "transports": {"sim": {"type": "simulator", "interval": 3600}},
        "devices": [{"id": "efd-1", "model": "efd", "transport": "sim", "address": "silent"}],
    }


def test_hub_config_loads_the_map_and_applies_overrides():
    from hub.config import check_config
    from hub.pluginmanager import make_plugins

    cfg = check_config(hub_config(EFD, poll_interval=2.5, heartbeat={"interval": 20}),
                       "hub.yaml", make_plugins())
    options = cfg.models["efd"].options
    assert options.file == EFD and options.poll_interval == 2.5
    assert cfg.models["efd"].heartbeat_interval == 20


def test_hub_check_reports_map_errors_with_the_map_file_and_key_path(tmp_path):
    from hub.config import check_config
    from hub.pluginmanager import make_plugins

    bad = write_map(tmp_path, "points: [{quantity: voltage, function: 3, address: 0, type: u17}]")
    with pytest.raises(ConfigError) as e:
        check_config(hub_config(bad, pol_interval=1), "conf/hub.yaml", make_plugins())
    assert e.value.errors == [
        "conf/hub.yaml: models.efd.pol_interval: is not a known key here",
        f"{bad}: points[0].type: 'u17' is not one of u16, s16, u32, s32, f32, bit",
    ]
    with pytest.raises(ConfigError) as e:
        check_config(hub_config("conf/devices/missing.yaml"), "conf/hub.yaml", make_plugins())
    assert e.value.errors == ["conf/hub.yaml: models.efd.map: cannot read "
                              "conf/devices/missing.yaml: No such file or directory"]


def test_relative_map_path_falls_back_to_the_config_directory(tmp_path, monkeypatch):
    from hub.validate import Checker, Section
    from hub.validate import Path as KeyPath
    from plugins.devices.modbus import check_options

    (tmp_path / "conf" / "devices").mkdir(parents=True)
    write_map(tmp_path / "conf" / "devices", f"points: [{POINT}]", "x.yaml")
    monkeypatch.chdir(ROOT)
    checker = Checker()
    section = Section(checker, KeyPath(str(tmp_path / "conf" / "hub.yaml"), ("models", "x")),
                      {"map": "devices/x.yaml"})
    assert check_options(section).file == "devices/x.yaml" and not checker.errors


class EventLog:
    """An observer plugin that writes down the events the hub committed."""

    def __init__(self):
        self.events = []

    @hookimpl
    def hub_event_recorded(self, event):
        self.events.append(event)


def test_device_flags_become_alarm_edges_in_the_hub(make_hub):
    """A status bit reported on three polls gives one raise; its clear gives one clear,
    under the same id. Flags never set give nothing."""
    log = EventLog()
    hub = make_hub(hub_config(EFD), extra_plugins=[("log", log)])
    model = hub.models["efd"]
    [poll] = model.plan()
    t0 = hub.clock.seconds()
    for i, word in enumerate([0, 0b10, 0b10, 0b10, 0, 0]):
        regs = [100, 250, 250, 250, 250] + [0] * 3 + [2200] * 3 + [1000] * 3 + [0, 0, word, 0]
        frame = rtu.read_response(1, 4, rtu.pack_registers(regs))
        hub.ingest("efd-1", model.decode_response("efd-1", 1, poll, frame, t0 + 10 * i))
        hub.clock.advance(hub.config.journal.commit_interval)
    device = [(e.code, e.channel, e.state.value, e.ts - t0) for e in log.events
              if e.source == "device"]
    assert device == [("temperature", "T1", "raised", 10), ("temperature", "T1", "cleared", 40)]
    raised, cleared = [e for e in log.events if e.source == "device"]
    assert raised.id and raised.id == cleared.id and cleared.raised_ts == raised.ts


def test_the_model_meets_the_device_model_contract():
    from hub.contracts import DeviceModel
    from plugins.devices.modbus import factory

    model = ModbusMapModel.from_file(EFD)
    assert isinstance(model, DeviceModel)
    assert model.match_poll(4, 36) == Poll(4, 0, 18)
    with pytest.raises(ValueError, match="needs a register map"):
        factory(None)


def test_readback_names_actions_of_the_map(tmp_path):
    """`readback` lists actions the map has; an unknown one is named; `true` means all."""
    got = errors_of(tmp_path, f"""\
        points: [{POINT}]
        commands: {{reset: {{function: 5, address: 0}}}}
        readback: [reset, trip]
    """)
    assert got == ["readback: 'trip' not among this map's commands (reset)"]
    path = write_map(tmp_path, f"""\
        points: [{POINT}]
        commands: {{reset: {{function: 5, address: 0}}, trip: {{function: 5, address: 3}}}}
        readback: true
    """, "ok.yaml")
    assert load_map(path).readback == {"reset", "trip"}


def test_status_flags_only_on_change_with_a_status_dict(tmp_path):
    """With the caller's ``status`` dict a word's flags come on the first poll and then only
    when the word changes (all flags of that word, so the engine sees the clears); readings
    and the qualities the flags give them are the same either way."""
    model = model_of(tmp_path, SMALL)
    poll = Poll(3, 0, 5)
    status: dict[int, int] = {}

    def events(word):
        frame = answer(model, poll, [250, 260, 0, 0, word])
        recs = model.decode_response("d1", 1, poll, frame, 7.0, status)
        assert [r.quality for r in recs[:2]] == [Quality.GOOD,
                                                 Quality.BAD if word & 0b1000 else Quality.GOOD]
        return [(e.code, e.state) for e in recs if isinstance(e, Event)]

    assert events(0) == [("temperature", EventState.CLEARED), ("channel_open", EventState.CLEARED),
                         ("channel_short", EventState.CLEARED)]  # first poll: everything
    assert events(0) == []
    assert events(0b1000) == [("temperature", EventState.CLEARED),
                              ("channel_open", EventState.RAISED),
                              ("channel_short", EventState.CLEARED)]
    assert events(0b1000) == []  # still open: quality BAD, no event
    assert events(0) == [("temperature", EventState.CLEARED), ("channel_open", EventState.CLEARED),
                         ("channel_short", EventState.CLEARED)]
    assert status == {0: 0}
    frame = answer(model, poll, [250, 260, 0, 0, 0])
    assert len(model.decode_response("d1", 1, poll, frame, 8.0)) == 7  # no dict: every poll
