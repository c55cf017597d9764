"""The dlt645 device model: data-identifier maps, polling, decoding to canonical readings,
error replies and trip/close commands."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from hub.contracts import DecodeError, EncodeError
from hub.model import Command, Reading
from hub.validate import Checker, ConfigError
from plugins.devices.dlt645 import Dlt645Model, Dlt645Options, load_map
from plugins.devices.dlt645.datamap import check_map
from plugins.protocols.dlt645 import (
    AddressError,
    MeterError,
    ReplyError,
    encode_frame,
    read_reply,
)
from plugins.protocols.dlt645.meter import control_action, reply
from tests.support.dlt645 import EXAMPLE, VALUES, enabled_map
from tests.support.dlt645_values import bcd

METER = "000000000161"
TS = 1_767_225_600.0  # 2026-01-01T00:00:00Z


#: what the simulated meter holds, per data identifier (the data after the identifier)


@pytest.fixture(scope="module")
def model() -> Dlt645Model:
    return Dlt645Model(load_map(EXAMPLE))


def poll_all(model: Dlt645Model, values=VALUES) -> dict[tuple[str, str], float]:
    got = {}
    for poll in model.plan():
        answer = reply(model.request(METER, poll), METER, values)
        assert answer is not None and len(answer) == model.expected_length(poll)
        for r in model.decode_response("m1", METER, poll, answer, TS):
            r.validate()
            got[(r.quantity, r.channel)] = r.value
    return got


# ---- the example map ------------------------------------------------------------------------


def test_example_map_plans_one_read_per_identifier_or_block(model):
    assert [f"{p.di:08X}" for p in model.plan()] == [
        "00010000", "00030000", "02800002", "02800004", "02050000",
        "0201FF00", "0202FF00", "0203FF00", "0204FF00", "0206FF00"]
    assert model.poll_interval == 60 and model.actions == frozenset()
    head = Path(EXAMPLE).read_text(encoding="utf-8").split("\n\n")[0]
    assert "EXAMPLE" in head and "DL/T 645-2007" in head


def test_replies_decode_to_canonical_readings_with_units_and_signs(model):
    assert poll_all(model) == {
        ("active_energy", ""): 12345.67, ("reactive_energy", ""): -12.5,
        ("frequency", ""): 49.98, ("active_demand", ""): 3250.0,  # kW -> W
        ("apparent_power", ""): 4100.0,
        ("voltage", "A"): 230.1, ("voltage", "B"): 229.8, ("voltage", "C"): 231.0,
        ("current", "A"): 5.123, ("current", "B"): -0.5, ("current", "C"): 0.0,
        ("active_power", ""): 1500.0, ("active_power", "A"): 1000.0,
        ("active_power", "B"): -250.0, ("active_power", "C"): 750.0,
        ("reactive_power", ""): -500.0,  # the block's phases are skipped by the map
        ("power_factor", ""): 0.95, ("power_factor", "A"): 0.999,
        ("power_factor", "B"): -0.5, ("power_factor", "C"): 1.0,
    }


def test_a_value_the_meter_lacks_gives_no_reading_and_none_at_all_is_an_error(model):
    block = next(p for p in model.plan() if p.di == 0x0201FF00)
    values = {0x0201FF00: bcd(230.1, "XXX.X") + b"\xff\xff" + b"\xff\xff"}
    records = model.decode_response("m1", METER, block,
                                    reply(model.request(METER, block), METER, values), TS)
    assert records == [Reading("m1", "voltage", 230.1, TS, "A")]
    values = {0x0201FF00: b"\xff" * 6}
    with pytest.raises(DecodeError, match="no value of the reply is BCD"):
        model.decode_response("m1", METER, block,
                              reply(model.request(METER, block), METER, values), TS)


def test_error_replies_raise_meter_error(model):
    poll = model.plan()[0]
    answer = reply(model.request(METER, poll), METER, {})  # the meter lacks every DI
    with pytest.raises(MeterError, match="no requested data") as e:
        model.decode_response("m1", METER, poll, answer, TS)
    assert isinstance(e.value, DecodeError) and e.value.code == 0x02


def test_replies_from_another_meter_or_for_another_poll_are_refused(model):
    energy, reactive = model.plan()[:2]
    answer = reply(model.request(METER, energy), METER, VALUES)
    with pytest.raises(AddressError):
        model.decode_response("m1", "000000000162", energy, answer, TS)
    with pytest.raises(ReplyError, match="data identifier 00010000, asked 00030000"):
        model.decode_response("m1", METER, reactive, answer, TS)
    short = encode_frame(METER, 0x91, bytes.fromhex("00 00 01 00 26 00 00"), wakeup=0)
    with pytest.raises(ReplyError, match="3 data bytes, the map expects 4"):
        model.decode_response("m1", METER, energy, short, TS)


def test_reply_in_several_frames(model):
    block = next(p for p in model.plan() if p.di == 0x0203FF00)
    first = reply(model.request(METER, block), METER, VALUES, frame_data=6)
    assert read_reply(first, METER, block.di).more
    with pytest.raises(ReplyError, match="incomplete"):
        model.decode_response("m1", METER, block, first, TS)
    follow = model.follow_up(METER, block, [first])
    second = reply(follow, METER, VALUES, frame_data=6)
    assert model.follow_up(METER, block, [first, second]) is None
    records = model.decode_response("m1", METER, block, [first, second], TS)
    assert [r.value for r in records] == [1500.0, 1000.0, -250.0, 750.0]


def test_decode_without_a_request_finds_the_poll_by_its_identifier(model):
    poll = next(p for p in model.plan() if p.di == 0x02800002)
    answer = reply(model.request(METER, poll), METER, VALUES)
    assert model.decode("m1", answer, TS) == [Reading("m1", "frequency", 49.98, TS)]
    other = encode_frame(METER, 0x91, bytes.fromhex("02 00 80 03 00"), wakeup=0)
    with pytest.raises(DecodeError, match="03800002 is not in the map"):
        model.decode("m1", other, TS)


# ---- commands ------------------------------------------------------------------------------


def command(action: str) -> Command:
    return Command("c1", "m1", action, TS)


def test_trip_refused_when_the_map_does_not_enable_it(model):
    with pytest.raises(EncodeError, match="trip is not enabled by the map .*enabled: none"):
        model.command_requests(command("trip"), METER)
    with pytest.raises(EncodeError, match="reset is not enabled"):
        model.command_requests(command("reset"), METER)


def test_trip_refused_without_a_password(tmp_path):
    bare = Dlt645Model(enabled_map(tmp_path))
    assert bare.actions == frozenset()
    with pytest.raises(EncodeError, match="needs the meters' password"):
        bare.command_requests(command("trip"), METER)


def test_trip_and_close_become_1ch_with_password_operator_and_deadline(tmp_path):
    m = Dlt645Model(Dlt645Options(enabled_map(tmp_path, "direct"), password="123456",
                                  operator="00000007", command_validity=300))
    assert m.actions == {"trip", "close"}
    (trip,) = m.command_requests(command("trip"), METER)
    assert control_action(trip) == "trip"
    assert control_action(m.encode_command("m1", command("close"), METER)) == "close_direct"
    data = read_frame_data(trip)
    # PA 02, password 56 34 12, operator 07 00 00 00, N1 1A, N2 00, deadline 2026-01-01
    # 08:05:00 in UTC+8 (TS + 300 s), ss mm hh DD MM YY
    assert data == bytes.fromhex("02 56 34 12 07 00 00 00 1A 00 00 05 08 01 01 26")
    assert "123456" not in repr(m.options)
    # the meter's answer
    m.check_write_response(trip, reply(trip, METER, {}, password="123456"))
    with pytest.raises(MeterError, match="password wrong"):
        m.check_write_response(trip, reply(trip, METER, {}, password="000000"))


def read_frame_data(raw: bytes) -> bytes:
    from plugins.protocols.dlt645 import parse_frame
    return parse_frame(raw).data


def test_time_sync_request_is_in_the_meters_local_time(model):
    from plugins.protocols.dlt645 import time_sync
    assert model.time_sync_request(TS) == time_sync(datetime(2026, 1, 1, 8, 0, 0))


# ---- map validation ------------------------------------------------------------------------


def errors_of(text: str) -> list[str]:
    import yaml
    checker = Checker()
    assert check_map(yaml.safe_load(text), "m.yaml", checker) is None
    return checker.errors


def test_map_errors_name_the_file_and_key_path():
    assert errors_of("""
points:
  - {quantity: voltage, channel: A, di: 02010100, format: XXX.X}
  - {quantity: voltag, di: "02010200", format: XX.X.X}
  - {quantity: current, channel: X, di: "0202010", format: XXX.XXX, signed: yes please}
  - {quantity: active_power, di: "02030000", format: XX.XXXX, unit: kWh, colour: red}
blocks:
  - di: "0201FF00"
  - di: "0202FF00"
    points: [{skip: 3}]
commands: {trip: maybe, close: sometimes}
""") == [
        "m.yaml: points[0].di: 528448 is a number: write the data identifier in quotes, e.g. "
        "\"02010100\" (unquoted, YAML reads 02010100 as octal)",
        "m.yaml: points[1].quantity: 'voltag' is not a canonical quantity (one of "
        + __import__("hub.model", fromlist=["x"]).quantity_names() + ")",
        "m.yaml: points[1].format: 'XX.X.X' is not a BCD format such as XXXXXX.XX or XXX.X",
        "m.yaml: points[2].di: '0202010' is not a data identifier of 8 hexadecimal digits "
        "(e.g. \"02010100\")",
        "m.yaml: points[2].channel: channel 'X' is not one of '', A, B, C, N, T<n> "
        "(temperature), L<n> (circuit)",
        "m.yaml: points[2].signed: expected true or false, got 'yes please'",
        "m.yaml: points[3].unit: 'kWh' cannot be converted to 'W', the unit of active_power "
        "(known: 'W', 'kW', 'MW')",
        "m.yaml: points[3].colour: is not a known key here",
        "m.yaml: blocks[0].points: is required (the values of the block, in order)",
        "m.yaml: blocks[1].points: lists no values",
        "m.yaml: commands.trip: expected true or false, got 'maybe'",
        "m.yaml: commands.close: 'sometimes' is not true, false, allow or direct",
    ]


def test_map_errors_for_duplicates_and_sizes():
    assert errors_of("""
points:
  - {quantity: voltage, channel: A, di: "02010100", format: XXX.X}
  - {quantity: frequency, di: "02010100", format: XX.XX}
blocks:
  - di: "0201FF00"
    points:
      - {quantity: voltage, channel: A, format: XXX.X}
      - {skip: 195}
""") == [
        "m.yaml: blocks[0].points: 197 bytes do not fit one reply (at most 196 after the data "
        "identifier)",
        "m.yaml: points[1].di: 02010100 is already read by points[0]",
        "m.yaml: blocks[0]: voltage/A is already read by points[0]",
    ]
    assert errors_of("name: empty") == [
        "m.yaml: points: a map needs at least one point or block"]


def test_load_map_raises_every_error_at_once(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("points: [{quantity: voltage, di: 1, format: X}]", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_map(str(bad))
    assert len(e.value.errors) == 2
    with pytest.raises(ConfigError, match="cannot read"):
        load_map(str(tmp_path / "missing.yaml"))


# ---- through the hub's configuration ------------------------------------------------------


def hub_config(map_path: str, **options) -> dict:
    return {
        "models": {"meter": {"type": "dlt645", "map": map_path, **options}},
        "transports": {"sim": {"type": "simulator", "interval": 3600}},
        "devices": [{"id": "m1", "model": "meter", "transport": "sim", "address": "silent"}],
    }


def check(config: dict):
    from hub.config import check_config
    from hub.pluginmanager import make_plugins
    return check_config(config, "conf/hub.yaml", make_plugins())


def test_hub_config_reads_the_password_from_a_secret_only(tmp_path, monkeypatch):
    path = str(tmp_path / "meter.yaml")
    Path(path).write_text(Path(EXAMPLE).read_text(encoding="utf-8").replace(
        "  trip: false", "  trip: true"), encoding="utf-8")
    monkeypatch.setenv("METER_PASSWORD", "123456")
    cfg = check(hub_config(path, password={"env": "METER_PASSWORD"}, operator="00000001",
                           poll_interval=30))
    options = cfg.models["meter"].options
    assert options.password == "123456" and options.map.poll_interval == 30
    assert Dlt645Model(options).actions == {"trip"}
    with pytest.raises(ConfigError) as e:
        check(hub_config(path, password="123456", operator=1))
    assert e.value.errors == [
        "conf/hub.yaml: models.meter.password: write the password as {env: NAME} or "
        "{file: PATH}, not in the file itself",
        "conf/hub.yaml: models.meter.operator: expected 8 hexadecimal digits in quotes, got 1",
    ]
    with pytest.raises(ConfigError) as e:
        check(hub_config(path))
    assert e.value.errors == [
        "conf/hub.yaml: models.meter.password: is required: the map enables trip (1CH), "
        "which the meters accept only with their password"]
    monkeypatch.setenv("METER_PASSWORD", "12345")
    with pytest.raises(ConfigError, match="not 6 hexadecimal digits"):
        check(hub_config(path, password={"env": "METER_PASSWORD"}))


def test_hub_config_reports_map_errors_with_the_map_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("points: [{quantity: voltage, di: \"02010100\", format: XXX.X, x: 1}]",
                   encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        check(hub_config(str(bad), pol_interval=1))
    assert e.value.errors == ["conf/hub.yaml: models.meter.pol_interval: is not a known key "
                              "here", f"{bad}: points[0].x: is not a known key here"]
    cfg = check(hub_config(EXAMPLE))
    assert cfg.models["meter"].options.map.file == EXAMPLE


def test_the_vendor_harness_accepts_the_model(model):
    from hub.contracts import DeviceModel
    from hub.testing import check_decode

    assert isinstance(model, DeviceModel)
    poll = next(p for p in model.plan() if p.di == 0x0201FF00)
    check_decode(model, "m1", reply(model.request(METER, poll), METER, VALUES, wakeup=2),
                 [Reading("m1", "voltage", v, 0.0, ch)
                  for v, ch in ((230.1, "A"), (229.8, "B"), (231.0, "C"))])
