"""The DTU simulator: the pure slave against the real ModbusMapModel (reads decode back to the
scenario's values, writes are echoed and stored, unknown addresses answer exception 02,
scenarios at given times), the Twisted client on a memory reactor, and a loopback run of
`hub run` with `hub simulate dtu` as processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from twisted.internet.testing import MemoryReactorClock, StringTransport

from hub.contracts import EncodeError
from hub.model import Command, Event, EventState, Reading
from plugins.devices.modbus import ModbusMapModel
from plugins.devices.modbus.registermap import Point, load_map
from plugins.protocols.modbus import rtu, values
from plugins.simulators.dtu.cli import Fleet, FleetOptions, dtu_ids
from plugins.simulators.dtu.slave import (
    DEVICE_SET_POINTS,
    DtuLine,
    RequestFramer,
    Scenario,
    SimulatedSlave,
    SlaveLayout,
    point_registers,
)
from tests.support.dtu_sim import EFD, SimProcess, hub_cli
from tests.support.hubproc import BIN, HubProcess
from tests.support.services import free_port

ROOT = Path(__file__).parents[2]
METER = str(ROOT / "conf/devices/meter3p-example.yaml")


def slave_of(path: str = EFD, scenario: str = "normal", period: float = 60.0, address: int = 1,
             seed: int = 0) -> tuple[ModbusMapModel, SimulatedSlave]:
    model = ModbusMapModel.from_file(path)
    return model, SimulatedSlave(SlaveLayout(model.map), address, Scenario(scenario, period),
                                 seed=seed)


def poll_all(model: ModbusMapModel, slave: SimulatedSlave, t: float) -> list:
    """Every planned poll of ``model`` sent to ``slave`` at ``t``, decoded by the model."""
    records = []
    for poll in model.plan():
        answer = slave.handle(model.request(slave.address, poll), t)
        assert answer is not None
        records += model.decode_response("d1", slave.address, poll, answer, t)
    return records


def readings(records: list) -> dict[tuple[str, str], float]:
    return {(r.quantity, r.channel): r.value for r in records if isinstance(r, Reading)}


def raised(records: list) -> set[tuple[str, str]]:
    return {(e.code, e.channel) for e in records
            if isinstance(e, Event) and e.state is EventState.RAISED}


def resolution(point: Point) -> float:
    """Half a step of the register, in the canonical unit (f32 carries 7 digits)."""
    if point.type == "f32":
        return 1e-3
    return abs(point.scale * point.factor) / 2 + 1e-9


# ---- values: canonical → registers → canonical --------------------------------------------


@pytest.mark.parametrize("type_", ["u16", "s16", "u32", "s32", "f32"])
@pytest.mark.parametrize("order", list(values.ORDERS))
@pytest.mark.parametrize("scale, offset, unit", [(1, 0, "V"), (0.1, 0, "V"), (0.01, -5, "kV")])
def test_to_raw_and_encode_invert_decode_and_from_raw(type_, order, scale, offset, unit):
    factor, unit_offset = values.conversion("voltage", unit)
    for canonical in (0.0, 220.5, 231.7, 12.3):
        raw = values.to_raw(canonical, type_, scale, offset, factor, unit_offset)
        regs = values.encode(raw, type_, *values.ORDERS[order])
        back = values.from_raw(values.decode(regs, type_, *values.ORDERS[order])[0], scale,
                               offset, factor, unit_offset)
        step = 1e-3 if type_ == "f32" else abs(scale * factor) / 2 + 1e-9
        assert back == pytest.approx(canonical, abs=step)


@pytest.mark.parametrize("unit, canonical", [("°F", 100.0), ("K", 25.0), ("°C", -12.5)])
def test_to_raw_inverts_unit_offsets(unit, canonical):
    factor, unit_offset = values.conversion("temperature", unit)
    raw = values.to_raw(canonical, "f32", 1, 0, factor, unit_offset)
    assert values.from_raw(raw, 1, 0, factor, unit_offset) == pytest.approx(canonical)


@pytest.mark.parametrize("path", [EFD, METER])
def test_every_point_of_the_example_maps_round_trips(path):
    regmap = load_map(path)
    model = ModbusMapModel(regmap)
    for point in regmap.points:
        for canonical in (25.0, 220.4, 0.5):
            (reading,) = _decode_point(model, point, point_registers(point, canonical))
            assert reading.value == pytest.approx(canonical, abs=resolution(point))


def _decode_point(model: ModbusMapModel, point: Point, regs: tuple[int, ...]) -> list[Reading]:
    """Decode ``regs`` at ``point``'s address through a read of exactly that point."""
    from plugins.devices.modbus.planner import Poll

    poll = Poll(point.function, point.address, point.count)
    frame = rtu.read_response(1, point.function, rtu.pack_registers(regs))
    return [r for r in model.decode_response("d1", 1, poll, frame, 0.0)
            if isinstance(r, Reading)]


def test_values_outside_the_type_saturate():
    point = load_map(EFD).points[0]  # residual current, u16 mA
    assert point_registers(point, -5) == (0,)
    assert point_registers(point, 1e9) == (0xFFFF,)


# ---- reads through the real model ------------------------------------------------------


@pytest.mark.parametrize("path", [EFD, METER])
@pytest.mark.parametrize("t", [0.0, 13.7, 1234.5])
def test_polls_decode_to_the_scenario_values(path, t):
    model, slave = slave_of(path, seed=7)
    got = readings(poll_all(model, slave, t))
    want = slave.values_at(t)
    assert set(got) == set(want)
    for point in model.map.points:
        key = (point.quantity, point.channel)
        assert got[key] == pytest.approx(want[key], abs=resolution(point)), key


def test_normal_values_stay_near_nominal():
    model, slave = slave_of(seed=3)
    for t in range(0, 600, 7):
        got = readings(poll_all(model, slave, float(t)))
        for ch in "ABC":
            assert 218 <= got[("voltage", ch)] <= 222
            assert 9 <= got[("current", ch)] <= 11
        for ch in ("T1", "T2", "T3", "T4"):
            assert 24.4 <= got[("temperature", ch)] <= 25.6
        assert 27 <= got[("residual_current", "L1")] <= 33


def test_the_same_seed_answers_the_same_bytes():
    model, a = slave_of(seed=5)
    _, b = slave_of(seed=5)
    _, c = slave_of(seed=6)
    request = model.request(1, model.plan()[0])
    assert a.handle(request, 42.0) == b.handle(request, 42.0)
    assert a.handle(request, 42.0) != c.handle(request, 42.0)


def test_energy_counters_only_grow():
    model, slave = slave_of(METER)
    first = readings(poll_all(model, slave, 0.0))[("active_energy", "")]
    later = readings(poll_all(model, slave, 3600.0))[("active_energy", "")]
    assert later == pytest.approx(first + 6.4, abs=0.002)


# ---- scenarios at given times ----------------------------------------------------------


def test_overheat_ramps_t1_past_80_and_back_with_the_device_flag():
    model, slave = slave_of(scenario="overheat", period=100)
    at = {t: poll_all(model, slave, t) for t in (0.0, 20.0, 50.0, 80.0, 99.0, 150.0)}
    t1 = {t: readings(r)[("temperature", "T1")] for t, r in at.items()}
    assert t1[0.0] == pytest.approx(30.0)
    assert t1[50.0] == pytest.approx(95.0) and t1[150.0] == pytest.approx(95.0)
    assert t1[20.0] < 80 and t1[80.0] < 80 and t1[99.0] < 35
    assert ("temperature", "T1") in raised(at[50.0])
    assert not raised(at[0.0]) and not raised(at[80.0])
    assert readings(at[50.0])[("temperature", "T2")] == pytest.approx(25.0, abs=0.6)


def test_leakage_spikes_residual_current_for_a_fifth_of_each_period():
    model, slave = slave_of(scenario="leakage", period=50)
    for t in (0.0, 5.0, 9.9, 55.0):
        records = poll_all(model, slave, t)
        assert readings(records)[("residual_current", "L1")] >= 440
        assert ("residual_current", "L1") in raised(records)
    for t in (10.0, 30.0, 49.0):
        records = poll_all(model, slave, t)
        assert readings(records)[("residual_current", "L1")] <= 33
        assert not raised(records)


def test_silent_scenario_silences_slave_1_only():
    model, one = slave_of(scenario="silent", address=1)
    _, two = slave_of(scenario="silent", address=2)
    poll = model.plan()[0]
    assert one.handle(model.request(1, poll), 0.0) is None
    assert readings(poll_all(model, two, 0.0))[("voltage", "A")] == pytest.approx(220, abs=2)


def test_drop_scenario_times():
    assert Scenario("drop", 30).connected_for == 30
    assert Scenario("drop", 30).reconnect_delay == 5.0
    assert Scenario("drop", 2).reconnect_delay == 0.5
    assert Scenario("normal").connected_for is None
    with pytest.raises(ValueError, match="not a scenario"):
        Scenario("flood")


# ---- writes and exceptions -------------------------------------------------------------


def cmd(action: str, channel: str = "", **params) -> Command:
    return Command("c1", "d1", action, 0.0, channel, params)


def test_a_trip_is_echoed_and_stored():
    model, slave = slave_of()
    (request,) = model.command_requests(cmd("trip"), 1)
    answer = slave.handle(request, 0.0)
    model.check_write_response(request, answer)  # the echo the hub expects
    assert slave.tables[1][3] == 1  # coil 0x0003 on
    off = rtu.write_coil(1, 3, False)
    assert slave.handle(off, 1.0) == off and slave.tables[1][3] == 0


@pytest.mark.parametrize("command", [cmd("trip"), cmd("disable_channel", "T2"),
                                     cmd("set_threshold", rule="overcurrent", value=40)])
def test_written_values_read_back(command):
    """What the hub's read-back after a write (maps with ``readback:``) expects to see."""
    model, slave = slave_of()
    for write in model.command_requests(command, 1):
        model.check_write_response(write, slave.handle(write, 0.0))
        model.check_readback(write, slave.handle(model.readback_request(write), 1.0))


def test_set_threshold_is_stored_and_moves_the_device_set_point():
    model, slave = slave_of(scenario="overheat", period=100)
    assert slave.set_point("temperature", "T1") == DEVICE_SET_POINTS["temperature"]
    t = 25.0  # T1 = 30 + 65 sin(pi/4) ≈ 76 °C: below 80, above 70
    assert not raised(poll_all(model, slave, t))
    (request,) = model.command_requests(cmd("set_threshold", "T1", rule="temperature",
                                            value=70), 1)
    model.check_write_response(request, slave.handle(request, t))
    assert slave.tables[3][0x0101] == 700
    assert slave.set_point("temperature", "T1") == 70
    assert ("temperature", "T1") in raised(poll_all(model, slave, t))


def test_a_multi_register_write_is_echoed_and_readable():
    model, slave = slave_of()
    (request,) = model.command_requests(cmd("set_threshold", rule="overcurrent", value=63.5), 1)
    assert request[1] == 16
    answer = slave.handle(request, 0.0)
    model.check_write_response(request, answer)
    read = rtu.read_request(1, 3, 0x0108, 2)
    data = rtu.read_data(slave.handle(read, 0.0), 1, 3, 2)
    assert values.decode(rtu.registers_of(data), "u32")[0] == 6350


@pytest.mark.parametrize("request_, function", [
    (rtu.read_request(1, 4, 0x0050, 2), 4),          # nothing there
    (rtu.read_request(1, 4, 0x0011, 4), 4),          # runs past the last input register
    (rtu.read_request(1, 3, 0x0000, 1), 3),          # holding 0 does not exist
    (rtu.write_register(1, 0x0300, 1), 6),
    (rtu.write_registers(1, 0x0106, [1, 2]), 16),    # 0x0106 exists, 0x0107 does not
    (rtu.write_coil(1, 0x0009, True), 5),
    (rtu.write_register(1, 0x0000, 1), 6),           # an input register, not a holding one
])
def test_unknown_addresses_answer_exception_02(request_, function):
    _, slave = slave_of()
    answer = slave.handle(request_, 0.0)
    assert answer == rtu.exception_response(1, function, 2)
    with pytest.raises(rtu.ModbusException) as e:
        rtu.parse_frame(answer)
    assert e.value.code == 2


def test_a_read_may_span_the_maps_holes_but_not_more():
    _, slave = slave_of()  # max_gap 4: 0x0005..0x0007 lie between points
    frame = slave.handle(rtu.read_request(1, 4, 0x0004, 5), 0.0)
    assert rtu.registers_of(rtu.read_data(frame, 1, 4, 5))[1:4] == (0, 0, 0)


def test_bad_requests():
    _, slave = slave_of()
    good = rtu.read_request(1, 4, 0, 2)
    assert slave.handle(good[:-1] + bytes([good[-1] ^ 1]), 0.0) is None  # bad CRC: silence
    assert slave.handle(rtu.read_request(2, 4, 0, 2), 0.0) is None        # another slave
    assert slave.handle(rtu.add_crc(bytes([1, 4, 0, 0, 0, 0])), 0.0) == \
        rtu.exception_response(1, 4, 3)                                     # count 0
    assert slave.handle(rtu.add_crc(bytes([1, 0x2B, 0x0E, 1, 0])), 0.0) == \
        rtu.exception_response(1, 0x2B, 1)                                  # illegal function
    assert slave.handle(rtu.add_crc(bytes([1, 5, 0, 3, 0x12, 0x34])), 0.0) == \
        rtu.exception_response(1, 5, 3)                                     # coil not FF00/0000
    with pytest.raises(EncodeError):
        rtu.read_request(1, 4, 0, 0)  # the builder would not even make one


# ---- framing and the line --------------------------------------------------------------


def test_requests_are_framed_whole_split_and_after_garbage():
    requests = [rtu.read_request(1, 4, 0, 18), rtu.write_registers(2, 0x108, [0, 6350]),
                rtu.write_coil(1, 3, True)]
    stream = b"\xfe\xfe" + requests[0] + b"\x01\x04\x00" + requests[1] + requests[2]
    for pieces in ([stream], [bytes([b]) for b in stream]):
        framer = RequestFramer()
        got = []
        for piece in pieces:
            framer.feed(piece)
            while (r := framer.next_request()) is not None:
                got.append(r)
        assert got == requests
        assert framer.dropped == 5


def test_the_line_routes_requests_to_their_slave():
    model = ModbusMapModel.from_file(EFD)
    layout = SlaveLayout(model.map)
    line = DtuLine([SimulatedSlave(layout, 1, Scenario()), SimulatedSlave(layout, 2, Scenario())])
    poll = model.plan()[0]
    answers = line.receive(model.request(2, poll) + model.request(3, poll), 0.0)
    assert [a[0] for a in answers] == [2]
    assert (line.requests, line.answered) == (2, 1)


def test_dtu_ids_count_up_the_trailing_digits():
    assert dtu_ids("861234567890000", 1) == ["861234567890000"]
    ids = dtu_ids("861234567890000", 100)
    assert ids[0] == "861234567890000" and ids[-1] == "861234567890099" and len(set(ids)) == 100
    assert dtu_ids("DTU-0098", 3) == ["DTU-0098", "DTU-0099", "DTU-0100"]
    with pytest.raises(ValueError, match="overflow"):
        dtu_ids("DTU-98", 3)
    with pytest.raises(ValueError, match="no trailing digits"):
        dtu_ids("DTU-A", 2)


@pytest.mark.parametrize("argv, message", [
    (["--map", "nope.yaml"], "cannot read nope.yaml"),
    (["--map", EFD, "--id", "中文"], "printable ASCII"),
    (["--map", EFD, "--count", "2", "--id", "DTU-A"], "no trailing digits"),
])
def test_the_command_refuses_bad_arguments(argv, message, capsys):
    from hub.cli import main

    base = ["simulate", "dtu", "--connect", "127.0.0.1:9", "--id", "861234567890000"]
    assert main(base + argv) == 2
    assert message in capsys.readouterr().err


def test_the_command_is_listed_under_simulate(capsys):
    from hub.cli import main

    with pytest.raises(SystemExit):
        main(["simulate", "dtu", "--help"])
    assert "--scenario {normal,overheat,leakage,silent,drop}" in capsys.readouterr().out


# ---- the Twisted client on a memory reactor --------------------------------------------


def fleet_of(scenario: Scenario = Scenario(), heartbeat: bytes = b"",
             count: int = 2) -> tuple[Fleet, MemoryReactorClock, list[str]]:
    clock = MemoryReactorClock()
    lines: list[str] = []
    options = FleetOptions("127.0.0.1", 9000, tuple(dtu_ids("861234567890000", count)),
                           SlaveLayout(load_map(EFD)), (1,), scenario, heartbeat, 10.0,
                           ramp=100.0)
    fleet = Fleet(options, clock, lines.append)
    fleet.start()
    return fleet, clock, lines


def connect(clock: MemoryReactorClock, index: int) -> tuple[object, StringTransport]:
    host, port, factory, timeout, bind = clock.tcpClients[index]
    assert (host, port) == ("127.0.0.1", 9000)
    proto = factory.buildProtocol(None)
    tr = StringTransport()
    proto.makeConnection(tr)
    return proto, tr


def test_the_client_registers_answers_and_sends_heartbeats_when_idle():
    fleet, clock, _ = fleet_of(heartbeat=b"\xfe\xfe")
    clock.advance(0.005)
    assert len(clock.tcpClients) == 1  # ramped: 100 per second
    clock.advance(0.01)
    assert len(clock.tcpClients) == 2
    proto, tr = connect(clock, 0)
    assert tr.value() == b"861234567890000"  # the id, alone, first
    tr.clear()
    model = ModbusMapModel.from_file(EFD)
    request = model.request(1, model.plan()[0])
    clock.advance(6)
    proto.dataReceived(request[:3])
    proto.dataReceived(request[3:])
    records = model.decode_response("d1", 1, model.plan()[0], tr.value(), 0.0)
    assert readings(records)[("voltage", "A")] == pytest.approx(220, abs=2)
    tr.clear()
    clock.advance(9)  # 15 s after connecting, 9 s after the answer: not idle long enough
    assert tr.value() == b""
    clock.advance(1)
    assert tr.value() == b"\xfe\xfe"
    assert fleet.status_line().startswith("dtu-sim: 1/2 connected, 1 requests answered")


def test_the_drop_scenario_disconnects_and_dials_again():
    fleet, clock, _ = fleet_of(Scenario("drop", 20), count=1)
    clock.advance(0)
    proto, tr = connect(clock, 0)
    clock.advance(19.9)
    assert not tr.disconnecting
    clock.advance(0.2)
    assert tr.disconnecting
    proto.connectionLost(None)
    connector = fleet.dtus[0].connector
    assert connector is not None and fleet.drops == 1
    clock.advance(5)  # reconnect_delay
    assert fleet.dtus[0].retry is None  # it dialled again


def test_stop_closes_every_connection():
    fleet, clock, _ = fleet_of(count=2)
    clock.advance(1)
    protos = [connect(clock, i) for i in range(2)]
    d = fleet.stop()
    assert not d.called and all(tr.disconnecting for _, tr in protos)
    for proto, _ in protos:
        proto.connectionLost(None)
    assert d.called
    clock.advance(60)
    assert len(clock.tcpClients) == 2  # nothing dialled after the stop


# ---- loopback: `hub run` and `hub simulate dtu` as processes ----------------------------


def simulate(port: int, imei: str, scenario: str) -> SimProcess:
    return SimProcess(
        [str(BIN / "hub"), "simulate", "dtu", "--connect", f"127.0.0.1:{port}", "--id", imei,
         "--map", EFD, "--slaves", "1,2", "--scenario", scenario, "--period", "6",
         "--heartbeat", "FEFE", "--heartbeat-interval", "1", "--status-interval", "0.5"], ROOT)


def test_hub_and_simulated_dtus_end_to_end(tmp_path):
    """`hub run` and two `hub simulate dtu` processes over real sockets: the hub polls two
    slaves behind each DTU. Behind the overheating one it journals readings (seen by `hub
    readings`), raises the temperature alarm and clears it, and a `hub command` trip is
    written and confirmed by the slave's echo; behind the other, slave 1 is silent: it goes
    offline (the DTU's heartbeats give it no liveness) while slave 2 stays online. Both
    simulators stop cleanly on SIGTERM."""
    port = free_port()
    hot, quiet = "861234567890000", "861234567890500"
    slaves = {"efd-1": (hot, 1), "efd-2": (hot, 2), "efd-3": (quiet, 1), "efd-4": (quiet, 2)}
    config = {
        "hub": {"state_dir": str(tmp_path / "var")},
        "journal": {"commit_interval_ms": 5},
        "alarms": {"warning_ratio": 0,
                   "defaults": {"temperature": {"alarm": 80, "hysteresis": 2, "delay": 0}}},
        "models": {"efd": {"type": "modbus_map", "map": EFD}},
        "transports": {"dtu": {"type": "tcp_dtu", "host": "127.0.0.1", "port": port,
                               "heartbeat": "hex:FE FE", "response_timeout": 2.0}},
        "devices": [{"id": d, "model": "efd", "transport": "dtu",
                     "address": {"dtu": dtu, "slave": s, "poll_interval": 0.3},
                     "heartbeat": {"interval": 2, "timeout_count": 4}}
                    for d, (dtu, s) in slaves.items()],
    }
    # On a loaded machine a simulator process may take many seconds to start and may not
    # run for a second or more: the DTUs then registered after the 15 s the test allowed,
    # a 0.5 s response timeout made the overheating DTU's slaves "not answer", and a 3 s
    # liveness bound could take efd-4 offline. A 2 s answer and 8 s of liveness leave room
    # for that; the bounds of the waits are only upper limits (a passing run does not
    # wait them out).
    path = tmp_path / "hub.yaml"
    path.write_text(yaml.safe_dump(config))
    hub = HubProcess(path, ROOT)
    sims: list[SimProcess] = []
    try:
        hub.wait_for("listening for DTUs", timeout=30)
        # devices never heard of go offline 8 s after the start: the simulators start after
        # those lines, so whatever their speed, each later offline line is about them
        hub.wait_for_all(*(f"device {d} offline" for d in slaves))
        sims = [simulate(port, hot, "overheat"), simulate(port, quiet, "silent")]
        hub.wait_for_all(f"DTU {hot} registered", f"DTU {quiet} registered", timeout=60)
        hub.wait_for_all("alarm temperature raised on efd-1",
                         f"DTU {quiet} slave 1 (efd-3) does not answer", timeout=60)
        hub.wait_for("device efd-3 offline", timeout=60)
        hub.wait_for("alarm temperature cleared on efd-1", timeout=60)
        trip = hub_cli(path, "command", "--device", "efd-2", "trip", "--json", "--ttl", "20",
                       "--by", "tester")
        assert trip.returncode == 0, trip.stdout + trip.stderr
        answer = json.loads(trip.stdout)
        assert answer["status"] == "succeeded", answer
        for sim in sims:
            sim.wait_for("requests answered", timeout=30)
    finally:
        codes = [sim.stop() for sim in sims]
        code = hub.stop()
    assert codes == [0, 0] and code == 0
    for sim, held in zip(sims, ("0/1 connected", "0/1 connected"), strict=True):
        assert sim.lines[-1].startswith(f"dtu-sim: {held}"), sim.lines[-1]
    answered = int(sims[0].lines[-1].split(", ")[1].split()[0])
    assert answered >= 10
    assert any("alarm temperature raised on efd-2" in line for line in hub.lines)
    assert not any(f"DTU {hot} slave" in line and "does not answer" in line
                   for line in hub.lines)
    registered = next(i for i, line in enumerate(hub.lines) if f"DTU {quiet} registered" in line)
    stopped = next(i for i, line in enumerate(hub.lines) if "disconnected from" in line)
    assert not any("device efd-4 offline" in line for line in hub.lines[registered:stopped])

    latest = hub_cli(path, "readings", "--device", "efd-1", "--latest", "--json")
    assert latest.returncode == 0, latest.stderr
    got = {(r["quantity"], r["channel"]): r["value"]
           for r in map(json.loads, latest.stdout.splitlines())}
    assert got[("voltage", "A")] == pytest.approx(220, abs=3)
    assert ("temperature", "T1") in got and ("residual_current", "L1") in got
    history = hub_cli(path, "readings", "--device", "efd-1", "--quantity", "temperature",
                      "--channel", "T1", "--json")
    assert max(json.loads(line)["value"] for line in history.stdout.splitlines()) > 80
    silent = hub_cli(path, "readings", "--device", "efd-3", "--latest", "--json")
    assert silent.returncode == 0 and silent.stdout == ""
    # (whether it also went offline before its DTU dialled in depends on the start's timing)
    events = [json.loads(line) for line in
              hub_cli(path, "events", "--device", "efd-3", "--json").stdout.splitlines()]
    assert (events[-1]["code"], events[-1]["state"]) == ("offline", "raised"), events
    # sent, then confirmed by the echo
    assert any(f"command {answer['command_id']} for efd-2: succeeded" in line
               for line in hub.lines)

    # the hub's round-trip histogram counted the answers it framed (written on stop)
    doc = json.loads(hub_cli(path, "metrics", "--json").stdout)
    counted = sum(m["value"] for m in doc["metrics"] if m["name"] == "dtu.round_trip_ms")
    assert 0 < counted
