"""The tcp_dtu session with DL/T 645 meters, alone and on a line shared with Modbus slaves:
bytes and times in, writes, timers, records and command results out (no reactor, no hub)."""

from __future__ import annotations

import pytest

from hub.contracts import EncodeError, PolledDeviceModel
from hub.model import Command, CommandStatus
from hub.validate import Invalid
from plugins.devices.dlt645 import Dlt645Model, Dlt645Options, load_map
from plugins.protocols.dlt645 import parse_frame
from plugins.protocols.dlt645.meter import reply
from plugins.transports.tcp_dtu.options import DtuOptions, check_address
from plugins.transports.tcp_dtu.session import BROADCAST, IDLE, RESPONSE, DtuSession
from tests.support.dlt645 import EXAMPLE, VALUES, enabled_map
from tests.support.dtu_session import IMEI, MODEL, Device, FakeIO, poll_answer, poll_request

METER = "000000000161"
METER_MODEL = Dlt645Model(load_map(EXAMPLE))
T0 = 1_767_225_600.0


def line(*devices: Device, **opts):
    io = FakeIO(devices={IMEI: list(devices)})
    from hub.metrics import Metrics
    metrics = Metrics()
    options = DtuOptions(port=0, response_timeout=2.0, retries=1, first_poll_spread=0,
                         heartbeats=(b"\xfe\xfe",), **opts)
    s = DtuSession(io, options, "dtu", metrics, rng=lambda: 0.0)
    s.connected(T0)
    s.received(IMEI.encode(), T0)
    return s, io, metrics


def meter(model: Dlt645Model = METER_MODEL, address: str = METER, dev: str = "m1") -> Device:
    return Device(dev, (IMEI, address), model, "meter")


def answer(request: bytes, values=VALUES, **kw) -> bytes:
    out = reply(request, METER, values, wakeup=2, **kw)
    assert out is not None
    return out


def test_the_dlt645_model_meets_the_polled_contract():
    assert isinstance(METER_MODEL, PolledDeviceModel)
    assert METER_MODEL.protocol != MODEL.protocol


def test_a_meter_is_polled_by_its_address_and_each_reply_framed_even_byte_by_byte():
    s, io, _ = line(meter())
    assert io.timers[METER] == 0.0 and (BROADCAST, 0) not in io.timers  # sync: off
    s.timer_fired(METER, T0)
    first = METER_MODEL.plan()[0]
    assert io.writes == [METER_MODEL.request(METER, first)]
    assert io.writes[0].startswith(b"\xfe" * 4 + b"\x68\x61\x01\x00\x00\x00\x00\x68\x11")
    for b in answer(io.writes[0]):  # FE wake-up bytes, then the 91H reply, a byte a read
        s.received(bytes([b]), T0 + 0.3)
    assert io.ingested == [("m1", METER)] and s.outstanding is None
    assert len(io.writes) == 1  # the next read waits for the commit
    s.committed(METER, T0 + 0.31)
    assert len(io.writes) == 2 and s.outstanding.poll == METER_MODEL.plan()[1]


def test_readings_reach_the_journal_with_the_meters_values():
    s, io, _ = line(meter())
    got = []
    io.ingest = lambda device, records, slave: got.extend(records)
    s.timer_fired(METER, T0)
    for _ in METER_MODEL.plan():
        s.received(answer(io.writes[-1]), T0 + 1)
        s.committed(METER, T0 + 1)
    values = {(r.quantity, r.channel): r.value for r in got}
    assert values[("voltage", "A")] == 230.1 and values[("active_energy", "")] == 12345.67
    assert len(io.writes) == len(METER_MODEL.plan())


def test_a_reply_in_several_frames_is_fetched_with_12h_and_decoded_whole():
    s, io, metrics = line(meter())
    s.timer_fired(METER, T0)
    got = []
    io.ingest = lambda device, records, slave: got.append((records, slave))
    block = next(i for i, p in enumerate(METER_MODEL.plan()) if p.di == 0x0203FF00)
    for _ in range(block):
        s.received(answer(io.writes[-1]), T0)
        s.committed(METER, T0)
    got.clear()
    request = io.writes[-1]
    s.received(answer(request, frame_data=5), T0 + 0.5)  # B1H: 5 of 12 bytes, more follow
    follow = parse_frame(io.writes[-1])
    assert follow.function == 0x12 and follow.data == parse_frame(request).data + b"\x01"
    assert not got
    assert s.outstanding is not None and io.timers[RESPONSE] == 2.0
    s.received(answer(io.writes[-1], frame_data=5), T0 + 0.8)  # B2H, seq 1
    assert parse_frame(io.writes[-1]).data[4] == 2
    s.received(answer(io.writes[-1], frame_data=5), T0 + 1.1)  # 92H, seq 2: the last
    (records, slave), = got
    assert slave == METER
    assert [(r.channel, r.value) for r in records] == [
        ("", 1500.0), ("A", 1000.0), ("B", -250.0), ("C", 750.0)]  # W
    assert metrics.value("dtu.decode_errors", transport="dtu", model="meter") == 0


def test_an_abnormal_reply_is_a_counted_decode_error_and_the_line_goes_on():
    s, io, metrics = line(meter())
    s.timer_fired(METER, T0)
    s.received(answer(io.writes[-1], values={}), T0 + 0.2)  # D1H: no such data
    assert metrics.value("dtu.decode_errors", transport="dtu", model="meter") == 1
    assert io.ingested == [] and len(io.writes) == 2


def test_the_response_timeout_is_the_models_per_request():
    slow = Dlt645Model(Dlt645Options(load_map(EXAMPLE), response_timeout=5.0))
    s, io, _ = line(Device("efd-1", (IMEI, 1)), meter(slow))
    s.timer_fired(1, T0)
    assert io.timers[RESPONSE] == 2.0  # the Modbus slave: the transport's option
    s.received(poll_answer(1), T0 + 0.1)
    s.committed(1, T0 + 0.1)
    s.timer_fired(METER, T0 + 0.2)
    assert io.timers[RESPONSE] == 5.0


def test_a_mixed_line_keeps_one_request_outstanding_and_frames_by_the_senders_protocol():
    s, io, metrics = line(Device("efd-1", (IMEI, 1)), meter(), Device("efd-2", (IMEI, 2)))
    assert io.timers[1] == 0.0 and io.timers[2] == pytest.approx(0.01)
    assert io.timers[METER] == pytest.approx(0.02)  # numbers, then addresses
    s.timer_fired(1, T0)
    s.timer_fired(METER, T0 + 0.02)
    assert io.writes == [poll_request(1)]  # the meter waits: half duplex
    # the slave's answer with a DTU heartbeat in the middle and split anywhere
    data = b"\xfe\xfe" + poll_answer(1)
    s.received(data[:5], T0 + 0.1)
    s.received(data[5:], T0 + 0.15)
    assert io.ingested == [("efd-1", 1)]
    s.committed(1, T0 + 0.2)
    assert io.writes[-1] == METER_MODEL.request(METER, METER_MODEL.plan()[0])
    # a late Modbus answer on the line is not the meter's reply: the DL/T 645 framer
    # skips it, then takes the meter's reply, sent in two pieces
    late = poll_answer(2)
    reply_bytes = answer(io.writes[-1])
    s.received(late + reply_bytes[:7], T0 + 0.3)
    assert s.outstanding is not None and s.outstanding.device.id == "m1"
    s.received(reply_bytes[7:], T0 + 0.4)
    assert io.ingested[-1] == ("m1", METER)
    assert metrics.value("dtu.decode_errors", transport="dtu", model="meter") == 0
    s.committed(METER, T0 + 0.4)
    # back to Modbus when slave 2 is due: its request goes out after the meter's cycle
    s.timer_fired(2, T0 + 0.5)
    for _ in METER_MODEL.plan()[1:]:
        s.received(answer(io.writes[-1]), T0 + 0.6)
        s.committed(METER, T0 + 0.6)
    assert io.writes[-1] == poll_request(2)
    s.received(poll_answer(2)[:3], T0 + 0.7)  # bytes buffered by the Modbus framer
    s.received(poll_answer(2)[3:], T0 + 0.8)
    assert io.ingested[-1] == ("efd-2", 2)


def test_bytes_held_by_one_framer_pass_to_the_next_protocols():
    s, io, _ = line(Device("efd-1", (IMEI, 1)), meter())
    s.timer_fired(1, T0)
    s.timer_fired(METER, T0)
    s.received(poll_answer(1), T0 + 0.1)
    s.received(b"\xfe", T0 + 0.15)  # half a heartbeat: the Modbus framer holds it
    s.committed(1, T0 + 0.2)  # the meter's request goes out: the DL/T 645 framer reads on
    beats = len(io.beats)
    s.received(b"\xfe", T0 + 0.3)  # the heartbeat is whole in the framer that now reads
    assert io.beats[beats:] == [("efd-1", T0 + 0.3), ("m1", T0 + 0.3)]
    s.received(answer(io.writes[-1]), T0 + 0.4)
    assert io.ingested[-1] == ("m1", METER)


def test_a_silent_meter_times_out_and_the_modbus_slave_goes_on():
    s, io, metrics = line(Device("efd-1", (IMEI, 1)), meter())
    s.timer_fired(METER, T0)
    s.timer_fired(1, T0)
    s.timer_fired(RESPONSE, T0 + 2)
    s.timer_fired(RESPONSE, T0 + 4)  # one retry, then the slave
    assert io.writes[-1] == poll_request(1)
    assert METER in s.failing
    assert metrics.value("dtu.response_timeouts", transport="dtu") == 2


def test_broadcast_time_sync_is_periodic_when_configured_and_answered_by_nobody():
    synced = Dlt645Model(Dlt645Options(load_map(EXAMPLE), time_sync_interval=3600))
    s, io, metrics = line(Device("efd-1", (IMEI, 1)), meter(synced),
                          meter(synced, "000000000162", "m2"))
    assert io.timers[(BROADCAST, 0)] == 0  # once as the line comes up
    assert (BROADCAST, 1) not in io.timers  # one broadcast for the model's two meters
    s.timer_fired(1, T0)
    s.timer_fired((BROADCAST, 0), T0 + 0.1)
    assert len(io.writes) == 1  # the broadcast waits for the answer outstanding
    assert io.timers[(BROADCAST, 0)] == 3600
    s.received(poll_answer(1), T0 + 0.2)
    s.committed(1, T0 + 0.2)
    sync = parse_frame(io.writes[-1])
    assert sync.address == "999999999999" and sync.function == 0x08
    # 2026-01-01 08:00:00 in UTC+8 (when the timer fired), ss mm hh DD MM YY
    assert sync.data == bytes.fromhex("00 00 08 01 01 26")
    assert s.outstanding is None and metrics.value("dtu.broadcasts", transport="dtu") == 1
    s.timer_fired(METER, T0 + 0.3)  # nothing to wait for: the next request goes at once
    assert parse_frame(io.writes[-1]).function == 0x11


def test_trip_of_a_meter_is_refused_unless_the_map_enables_it(tmp_path):
    s, io, _ = line(meter())
    with pytest.raises(EncodeError, match="trip is not enabled"):
        s.enqueue_command(meter(), Command("c1", "m1", "trip", T0), T0)
    assert io.writes == []
    armed = Dlt645Model(Dlt645Options(enabled_map(tmp_path), password="123456"))
    s, io, _ = line(meter(armed))
    run = s.enqueue_command(meter(armed), Command("c2", "m1", "trip", T0), T0)
    assert parse_frame(io.writes[-1]).function == 0x1C and io.sent == ["c2"]
    s.received(answer(io.writes[-1], password="123456"), T0 + 0.5)
    assert io.results[-1].status is CommandStatus.SUCCEEDED and run.writes == []
    s.enqueue_command(meter(armed), Command("c3", "m1", "trip", T0), T0 + 1)
    s.received(answer(io.writes[-1], password="654321"), T0 + 1.5)  # DCH: password wrong
    assert io.results[-1].status is CommandStatus.FAILED
    assert "password wrong" in io.results[-1].detail


def test_a_dtu_address_takes_a_slave_number_or_a_meter_address():
    assert check_address({"dtu": IMEI, "slave": 3}) == (IMEI, 3)
    assert check_address({"dtu": IMEI, "slave": "00000000016a".upper().replace("A", "1")}) \
        == (IMEI, "000000000161")
    with pytest.raises(Invalid, match="slave: 300 is not a Modbus slave address 1..247"):
        check_address({"dtu": IMEI, "slave": 300})
    with pytest.raises(Invalid, match="slave: '12345' is not a DL/T 645 meter address"):
        check_address({"dtu": IMEI, "slave": "12345"})
    with pytest.raises(Invalid, match="slave: 1.5 is not a bus address"):
        check_address({"dtu": IMEI, "slave": 1.5})
    with pytest.raises(ValueError, match="not a DL/T 645 meter address"):
        METER_MODEL.check_unit(161)  # a meter address YAML read as a number
    assert IDLE != METER  # timer keys of a session cannot collide with meter addresses


def test_the_transport_start_checks_each_unit_against_its_own_model():
    from hub.metrics import Metrics
    from plugins.transports.tcp_dtu import DtuService

    class Hub:
        metrics = Metrics()

        def __init__(self, devices):
            self._devices = devices

        def devices(self, transport):
            return self._devices

    options = DtuOptions(port=0)
    DtuService(Hub([Device("efd-1", (IMEI, 1)), meter()]), "dtu", options).check_units()
    wrong = [Device("efd-1", (IMEI, METER)), meter(address=METER)]
    wrong[1].address_key = (IMEI, 7)
    with pytest.raises(ValueError) as e:
        DtuService(Hub(wrong), "dtu", options).check_units()
    assert str(e.value) == (
        "dtu: device efd-1 (model efd): slave: '000000000161' is not a Modbus slave address "
        "1..247; device m1 (model meter): slave: 7 is not a DL/T 645 meter address "
        "(12 digits, in quotes)")


def test_bytes_after_an_answer_are_read_by_the_next_requests_framer_at_once(tmp_path):
    armed = Dlt645Model(Dlt645Options(enabled_map(tmp_path), password="123456"))
    s, io, _ = line(Device("efd-1", (IMEI, 1)), meter(armed))
    s.enqueue_command(meter(armed), Command("c1", "m1", "trip", T0), T0)
    trip = io.writes[-1]
    s.timer_fired(1, T0)  # the slave's poll waits for the trip's answer
    # the meter's 9CH and, in the same read, the slave's answer: the 9CH sends the slave's
    # poll, whose framer (Modbus) takes the bytes left and frames them at once
    s.received(answer(trip, password="123456") + poll_answer(1), T0 + 0.2)
    assert io.results[-1].status is CommandStatus.SUCCEEDED
    assert io.writes[-1] == poll_request(1) and io.ingested == [("efd-1", 1)]
