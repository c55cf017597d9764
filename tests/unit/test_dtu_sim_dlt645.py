"""``hub simulate dtu`` playing DL/T 645 meters, alone and on a line with Modbus slaves:
the meter and the line as pure code (frames in, frames out)."""

from __future__ import annotations

import pytest

from hub.model import Command
from plugins.devices.dlt645 import Dlt645Model, Dlt645Options, load_map
from plugins.devices.modbus import ModbusMapModel
from plugins.protocols.dlt645 import MeterError, parse_frame
from plugins.simulators.dtu.meter import LineRequestFramer, MeterLayout, SimulatedMeter
from plugins.simulators.dtu.slave import DtuLine, Scenario, SimulatedSlave, SlaveLayout
from tests.support.dlt645 import EXAMPLE, enabled_map

METER = "000000000161"
MODEL = Dlt645Model(load_map(EXAMPLE))
EFD = ModbusMapModel.from_file("conf/devices/efd-example.yaml")


def read_all(meter: SimulatedMeter, t: float, model: Dlt645Model = MODEL) -> dict:
    got = {}
    for poll in model.plan():
        answer = meter.handle(model.request(METER, poll), t)
        assert answer is not None
        for r in model.decode_response("m1", METER, poll, answer, t):
            got[(r.quantity, r.channel)] = r.value
    return got


def test_a_meter_answers_every_read_of_its_map_with_the_scenarios_values():
    meter = SimulatedMeter(MeterLayout(MODEL.map), METER, Scenario(), seed="s")
    got = read_all(meter, 10.0)
    assert len(got) == sum(len(g.points) for g in MODEL.map.groups)
    assert 215 <= got[("voltage", "A")] <= 225 and 9 <= got[("current", "B")] <= 11
    assert 49.9 < got[("frequency", "")] < 50.1
    assert got[("active_energy", "")] >= 12000
    assert meter.requests == meter.answered == len(MODEL.plan())
    # another meter's request, a broadcast time sync: silence (the sync is counted)
    assert meter.handle(MODEL.request("000000000162", MODEL.plan()[0]), 1) is None
    assert meter.handle(MODEL.time_sync_request(1_767_225_600), 1) is None
    assert meter.time_syncs == 1


def test_the_overvoltage_episode_raises_the_voltages_at_mid_period():
    meter = SimulatedMeter(MeterLayout(MODEL.map), METER,
                           Scenario("normal", 100.0, "overvoltage"))
    assert read_all(meter, 0.0)[("voltage", "A")] < 225
    peak = read_all(meter, 50.0)
    assert all(275 <= peak[("voltage", c)] <= 285 for c in "ABC")
    with pytest.raises(ValueError, match="not an episode"):
        Scenario("normal", 10.0, "undervoltage")


def test_trip_with_the_password_opens_the_relay_and_a_wrong_one_is_refused(tmp_path):
    armed = Dlt645Model(Dlt645Options(enabled_map(tmp_path), password="123456"))
    meter = SimulatedMeter(MeterLayout(armed.map), METER, Scenario(), password="123456")
    (trip,) = armed.command_requests(Command("c1", "m1", "trip", 1_767_225_600), METER)
    armed.check_write_response(trip, meter.handle(trip, 1.0))
    assert meter.relay == "open" and meter.controls == ["trip"]
    assert read_all(meter, 2.0, armed)[("current", "A")] == 0
    other = SimulatedMeter(MeterLayout(armed.map), METER, Scenario(), password="654321")
    with pytest.raises(MeterError, match="password wrong"):
        armed.check_write_response(trip, other.handle(trip, 1.0))
    assert other.relay == "closed"


def test_long_replies_go_out_in_subsequent_frames():
    meter = SimulatedMeter(MeterLayout(MODEL.map), METER, Scenario(), frame_data=5)
    poll = next(p for p in MODEL.plan() if p.size == 12)
    frames = [meter.handle(MODEL.request(METER, poll), 1.0)]
    while (more := MODEL.follow_up(METER, poll, frames)) is not None:
        frames.append(meter.handle(more, 1.5))  # the values of the first frame's time
    assert len(frames) == 3
    assert len(MODEL.decode_response("m1", METER, poll, frames, 1.0)) == 4


def test_a_mixed_line_answers_both_protocols_from_one_stream_in_any_pieces():
    scenario = Scenario()
    line = DtuLine([SimulatedSlave(SlaveLayout(EFD.map), 1, scenario)],
                   [SimulatedMeter(MeterLayout(MODEL.map), METER, scenario)])
    modbus = EFD.request(1, EFD.plan()[0])
    dlt = MODEL.request(METER, MODEL.plan()[0])
    stream = b"\x00" + modbus + dlt + EFD.request(2, EFD.plan()[0]) + dlt
    answers = []
    for i in range(0, len(stream), 3):
        answers += line.receive(stream[i:i + 3], 1.0)
    assert len(answers) == 3 and line.requests == 4  # slave 2 is not on the line
    EFD.decode_response("efd-1", 1, EFD.plan()[0], answers[0], 1.0)
    assert parse_frame(answers[1]).control == 0x91 and answers[1] == answers[2]


def test_the_line_framer_tells_a_meter_frame_from_a_request_to_slave_104():
    framer = LineRequestFramer()
    to_104 = EFD.request(104, EFD.plan()[0])  # starts with 68H too
    dlt = MODEL.request(METER, MODEL.plan()[0])
    framer.feed(to_104 + dlt)
    assert framer.next_request() == to_104
    assert framer.next_request() == dlt.lstrip(b"\xfe")
    assert framer.next_request() is None
