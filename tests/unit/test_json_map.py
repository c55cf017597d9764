"""The ``json_map`` and ``modbus_payload`` device models: byte vectors in, canonical records
out, and configuration errors with their key paths."""

from __future__ import annotations

import base64
import json

import pytest

from hub.config import check_config
from hub.contracts import DecodeError, EncodeError
from hub.model import Command, Event, EventKind, EventState, Level, Quality, Reading
from hub.pluginmanager import make_plugins
from hub.testing import check_decode
from hub.validate import ConfigError
from plugins.devices.binary_modbus import ModbusPayloadModel
from plugins.devices.json_map import JsonMapModel, parse_path
from plugins.protocols.modbus import rtu

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z

MAPPING = {
    "type": "json_map",
    "timestamp": {"path": "ts", "format": "epoch_ms"},
    "points": [
        {"path": "data.temp[0]", "quantity": "temperature", "channel": "T1", "scale": 0.1},
        {"path": "data.temp[1]", "quantity": "temperature", "channel": "T2", "scale": 0.1},
        {"path": "data.ia", "quantity": "current", "channel": "A", "unit": "mA"},
        {"path": "data.leak", "quantity": "residual_current", "channel": "L1"},
        {"path": "data.kw", "quantity": "active_power", "unit": "kW"},
    ],
    "alarms": [
        {"path": "alarm.t1", "code": "temperature", "channel": "T1", "message": "温度报警"},
        {"path": "state", "equals": "ARC", "code": "fault_arc"},
    ],
    "faults": [{"path": "fault.probe2", "code": "channel_open", "channel": "T2"}],
    "commands": {"reset": {"cmd": "reset"},
                 "set_threshold": {"cmd": "set", "item": "{rule}", "value": "{value}",
                                   "ch": "{channel}"}},
    "result": {"id": "cid", "status": "code", "ok": [0], "detail": "msg"},
}


def model(mapping=None, **extra) -> JsonMapModel:
    plugins = make_plugins()
    cfg = check_config({"hub": {"state_dir": "/tmp/unused"},
                        "models": {"m": {**(mapping or MAPPING), **extra}}}, "hub.yaml",
                       plugins)
    section = cfg.models["m"]
    return plugins.models[section.type].factory(section.options)


def errors(mapping) -> list[str]:
    with pytest.raises(ConfigError) as e:
        model(mapping)
    return e.value.errors


def payload(**doc) -> bytes:
    return json.dumps(doc).encode()


def test_paths():
    assert parse_path("data.temp[0].v") == ("data", "temp", 0, "v")
    assert parse_path("a[1][2]") == ("a", 1, 2)
    for bad in ("", "a..b", "[0]", "a.[1]", "a[x]"):
        with pytest.raises(Exception, match="path"):
            parse_path(bad)


def test_points_scale_units_channels_and_device_time():
    m = model()
    doc = payload(ts=1_767_225_660_500, data={"temp": [253, 301], "ia": 1500, "leak": "45",
                                              "kw": 1.25})
    ts = 1_767_225_660.5
    check_decode(m, "d1", doc, [
        Reading("d1", "temperature", 25.3, ts, "T1"),
        Reading("d1", "temperature", 30.1, ts, "T2"),
        Reading("d1", "current", 1.5, ts, "A"),  # mA → A
        Reading("d1", "residual_current", 45.0, ts, "L1"),  # a quoted number
        Reading("d1", "active_power", 1250.0, ts, ""),  # kW → W
    ])


def test_missing_points_are_skipped_and_the_receipt_time_is_used_without_a_timestamp():
    m = model()
    assert m.decode("d1", payload(data={"leak": 30}), T0) == [
        Reading("d1", "residual_current", 30.0, T0, "L1")]


def test_alarm_and_fault_fields_become_level_style_device_events():
    m = model()
    recs = m.decode("d1", payload(data={"temp": [900, 250]}, alarm={"t1": 1}, state="ARC",
                                  fault={"probe2": True}), T0)
    events = [r for r in recs if isinstance(r, Event)]
    assert [(e.kind, e.code, e.state, e.channel, e.level, e.source) for e in events] == [
        (EventKind.ALARM, "temperature", EventState.RAISED, "T1", Level.ALARM, "device"),
        (EventKind.ALARM, "fault_arc", EventState.RAISED, "", Level.ALARM, "device"),
        (EventKind.FAULT, "channel_open", EventState.RAISED, "T2", Level.FAULT, "device"),
    ]
    assert events[0].message == "温度报警"
    t2 = next(r for r in recs if isinstance(r, Reading) and r.channel == "T2")
    assert t2.quality is Quality.BAD  # the probe is open: its reading cannot be trusted
    cleared = m.decode("d1", payload(alarm={"t1": 0}, state="OK", fault={"probe2": False}), T0)
    assert [e.state for e in cleared] == [EventState.CLEARED] * 3


def test_a_batch_of_objects():
    m = model()
    recs = m.decode("d1", json.dumps([{"ts": 1000, "data": {"leak": 1}},
                                      {"ts": 2000, "data": {"leak": 2}}]).encode(), T0)
    assert [(r.value, r.ts) for r in recs] == [(1.0, 1.0), (2.0, 2.0)]


@pytest.mark.parametrize("fmt,raw,expected", [
    ("epoch_s", 1767225600, T0),
    ("epoch_ms", 1767225600123, T0 + 0.123),
    ("iso8601", "2026-01-01T08:00:00+08:00", T0),
    ("iso8601", "2026-01-01T00:00:00Z", T0),
    ("%Y-%m-%d %H:%M:%S", "2026-01-01 08:00:00", T0),  # local time of utc_offset
])
def test_timestamp_formats(fmt, raw, expected):
    m = model({"type": "json_map", "timestamp": {"path": "t", "format": fmt,
                                                 "utc_offset": "+08:00"},
               "points": [{"path": "v", "quantity": "temperature"}]})
    assert m.decode("d1", payload(t=raw, v=20), 0.0)[0].ts == pytest.approx(expected)


@pytest.mark.parametrize("data,message", [
    (b"{not json", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (b"42", "expected a JSON object"),
    (json.dumps({"data": {"leak": "high"}}).encode(), "data.leak: expected a number"),
    (json.dumps({"data": {"leak": [1]}}).encode(), "data.leak: expected a number"),
    (json.dumps({"ts": "yesterday", "data": {"leak": 1}}).encode(), "is not a epoch_ms time"),
    # valid JSON that Python cannot take: nesting past the recursion limit, and integers
    # that overflow a float (json.loads takes up to 4,300 digits)
    (b"[" * 30_000 + b"]" * 30_000, "JSON nested too deeply"),  # within max_payload
    (b'{"data": {"leak": ' + b"9" * 4000 + b"}}", r"data.leak: expected a number .* 99999"),
    (b'{"data": {"kw": ' + b"9" * 400 + b"}}", "data.kw: expected a number"),  # scaled
    (b'{"data": {"kw": 1e308}}', "data.kw: expected a number"),  # kW -> W: infinite
    (b'{"ts": ' + b"9" * 400 + b', "data": {"leak": 1}}', "is not a epoch_ms time"),
])
def test_bad_payloads_raise_decode_errors_with_an_excerpt(data, message):
    with pytest.raises(DecodeError, match=message) as e:
        model().decode("d1", data, T0)
    assert e.value.excerpt == data[:64]


def test_a_deeply_nested_command_result_is_a_decode_error():
    with pytest.raises(DecodeError, match="nested too deeply"):
        model().decode_command_result(b"[" * 50_000 + b"]" * 50_000)


def test_oversized_payload():
    with pytest.raises(DecodeError, match="exceeds max_payload 100"):
        model(max_payload=100).decode("d1", b"{" + b" " * 200 + b"}", T0)


def test_commands_fill_templates_and_carry_the_correlation_id():
    m = model()
    cmd = Command("c-1", "d1", "set_threshold", T0, "T1", {"rule": "temperature", "value": 70})
    assert json.loads(m.encode_command("d1", cmd)) == {
        "cmd": "set", "item": "temperature", "value": 70, "ch": "T1", "id": "c-1"}
    assert json.loads(m.encode_command("d1", Command("c-2", "d1", "reset", T0))) == {
        "cmd": "reset", "id": "c-2"}
    with pytest.raises(EncodeError, match="trip is not supported"):
        m.encode_command("d1", Command("c-3", "d1", "trip", T0))
    with pytest.raises(EncodeError, match="parameter value"):
        m.encode_command("d1", Command("c-4", "d1", "set_threshold", T0, "T1",
                                       {"rule": "temperature"}))
    ok = m.decode_command_result(b'{"cid": "c-1", "code": 0}')
    assert (ok.command_id, ok.ok) == ("c-1", True)
    bad = m.decode_command_result(b'{"cid": "c-2", "code": 3, "msg": "locked"}')
    assert (bad.command_id, bad.ok, bad.detail) == ("c-2", False, "locked")


def test_configuration_errors_name_their_key_paths():
    errs = errors({"type": "json_map",
                   "timestamp": {"path": "t", "format": "julian"},
                   "points": [{"path": "a..b", "quantity": "temprature"},
                              {"path": "v", "quantity": "current", "unit": "°C",
                               "channel": "X9", "scal": 2}],
                   "alarms": [{"path": "x", "code": "nonsense", "level": "fault"}],
                   "commands": {"explode": {"cmd": 1}, "reset": "now"}})
    text = "\n".join(errs)
    for expected in (
        "models.m.timestamp.format: 'julian' is not epoch_s, epoch_ms, iso8601",
        "models.m.points[0].path: 'a..b' is not a path",
        "models.m.points[0].quantity: 'temprature' is not a canonical quantity",
        "models.m.points[1].unit: '°C' cannot be converted to 'A'",
        "models.m.points[1].channel: channel 'X9'",
        "models.m.points[1].scal: is not a known key here",
        "models.m.alarms[0].code: 'nonsense' is not one of",
        "models.m.alarms[0].level: 'fault' is not one of alarm, warning",
        "models.m.commands.explode: 'explode' is not a command action",
        "models.m.commands.reset: expected a JSON object template",
    ):
        assert expected in text, text
    assert "needs points, alarms or faults" in "\n".join(errors({"type": "json_map"}))


# ---------------------------------------------------------------------------- modbus_payload

MAP = "conf/devices/efd-example.yaml"
REGS = [35, 253, 0x7FFF, 240, 251, 0, 0, 0, 2205, 2210, 2199, 1050, 990, 1010, 0, 0, 0, 0]


def binary(**opts) -> ModbusPayloadModel:
    return model({"type": "modbus_payload", "map": MAP, **opts})


def first_answer(m: ModbusPayloadModel, regs=REGS) -> bytes:
    poll = m.inner.plan()[0]
    values = (list(regs) + [0] * poll.count)[:poll.count]
    return rtu.read_response(1, poll.function, rtu.pack_registers(values))


def test_modbus_payload_decodes_like_modbus_map_in_every_encoding():
    raw_model = binary()
    frame = first_answer(raw_model)
    expected = raw_model.inner.decode("d1", frame, T0)
    assert any(r.quantity == "temperature" and r.value == 25.3 for r in expected)
    assert raw_model.decode("d1", frame, T0) == expected
    assert binary(encoding="hex").decode("d1", frame.hex(" ").encode(), T0) == expected
    assert binary(encoding="base64").decode("d1", base64.b64encode(frame), T0) == expected


def test_modbus_payload_with_several_frames_and_bad_bytes():
    m = binary()
    frames = [first_answer(m, [10] + REGS[1:]), first_answer(m, [20] + REGS[1:])]
    recs = m.decode("d1", b"".join(frames), T0)
    assert [r.value for r in recs if getattr(r, "quantity", "") == "residual_current"] == [10, 20]
    broken = bytearray(frames[0])
    broken[-1] ^= 0xFF
    with pytest.raises(DecodeError, match="CRC"):
        m.decode("d1", bytes(broken), T0)
    with pytest.raises(DecodeError, match="not hex"):
        binary(encoding="hex").decode("d1", b"zz", T0)
    with pytest.raises(DecodeError, match="too short"):
        m.decode("d1", b"\x01\x04", T0)


def test_modbus_payload_commands_and_their_echo():
    m = binary(slave=3)
    cmd = Command("c-1", "d1", "trip", T0)
    sent = m.encode_command("d1", cmd)
    assert sent[0] == 3 and rtu.crc_ok(sent)
    assert m.decode_command_result(rtu.write_response(sent), sent).ok
    exc = rtu.exception_response(3, sent[1], 2)
    outcome = m.decode_command_result(exc, sent)
    assert not outcome.ok and "exception 02" in outcome.detail


def test_top_level_floats_decode_to_the_same_readings_as_the_general_path():
    # top-level keys and plain floats take json_map's fast path: orjson and slot-set
    # Readings; what comes out must equal what Reading() builds, bad quality included
    m = model({"type": "json_map",
               "points": [{"path": "t1", "quantity": "temperature", "channel": "T1"},
                          {"path": "t2", "quantity": "temperature", "channel": "T2"},
                          {"path": "n", "quantity": "voltage", "channel": "A"}],
               "faults": [{"path": "f2", "code": "channel_open", "channel": "T2"}]})
    got = m.decode("d1", b'{"t1": 21.5, "t2": 22.25, "n": 230, "f2": 1}', T0)
    readings = [r for r in got if type(r) is Reading]
    assert readings == [Reading("d1", "temperature", 21.5, T0, "T1"),
                        Reading("d1", "temperature", 22.25, T0, "T2", Quality.BAD),
                        Reading("d1", "voltage", 230.0, T0, "A")]
    assert [hash(r) for r in readings] == [hash(Reading(r.device, r.quantity, r.value, r.ts,
                                                        r.channel, r.quality))
                                           for r in readings]


@pytest.mark.parametrize("data", [b'{"t1": NaN}', b'{"t1": Infinity}', b'{"t1": -Infinity}'])
def test_what_orjson_refuses_is_judged_by_json(data):
    # json reads NaN and Infinity literals (orjson does not): they reach the number check
    m = model({"type": "json_map", "points": [{"path": "t1", "quantity": "temperature"}]})
    with pytest.raises(DecodeError, match="t1: expected a number"):
        m.decode("d1", data, T0)
