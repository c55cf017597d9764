"""The gb26875 sink on a task.Clock and a StringTransport: the centre's side is played with
frames built here from the standard's rules (confirm = same serial, addresses swapped)."""

from __future__ import annotations

import random

import pytest
from twisted.internet.testing import StringTransport

from hub.model import Event, EventKind, EventState, Level, Reading
from hub.validate import ConfigError
from plugins.sinks.gb26875 import codec as c
from plugins.sinks.gb26875.sink import GBSink

CENTRE = 0x0A0B0C0D0E0F
UITD = 0x000000010203


def config(**options):
    sink = {"type": "gb26875", "centres": [{"host": "127.0.0.1", "port": 9}],
            "source_address": UITD, "destination_address": CENTRE, **options}
    return {"sinks": {"gc": sink},
            "devices": [{"id": "efd-1", "model": "simulated", "project": "campus-a",
                         "name": "1号配电箱", "location": "A栋1层"},
                        {"id": "efd-2", "model": "simulated", "name": "2号配电箱"}]}


class Centre:
    """Stands in for the connection: each connect gives a fresh StringTransport."""

    def __init__(self):
        self.factories = []
        self.transports: list[StringTransport] = []
        self.refuse = False

    def __call__(self, host, port, factory):
        self.factories.append(factory)
        return None

    def accept(self):
        tr = StringTransport()
        proto = self.factories[-1].buildProtocol(None)
        proto.makeConnection(tr)
        self.proto, self.tr = proto, tr
        self.transports.append(tr)
        self.decoder = c.StreamDecoder()
        return proto

    def frames(self) -> list[c.Frame]:
        out = self.decoder.feed(self.tr.value())
        self.tr.clear()
        assert all(isinstance(f, c.Frame) for f in out), out
        return out

    def answer(self, f: c.Frame, command=c.CMD_CONFIRM):
        self.proto.dataReceived(f.reply(command, f.time).encode())

    def send(self, command, type_flag, objs, serial=0):
        data = c.encode_app_data(type_flag, objs)
        f = c.Frame(serial, command, c.decode_frame(c.Frame(0, 2, _T).encode()).time, CENTRE,
                    UITD, data)
        self.proto.dataReceived(f.encode())


_T = __import__("datetime").datetime(2026, 1, 1)


@pytest.fixture
def start(make_hub):
    def start(**options):
        hub = make_hub(config(**options))
        centre = Centre()
        sink = GBSink(hub, "gc", hub.config.sinks["gc"].options, connect=centre,
                      rng=random.Random(3))
        sink.startService()
        return hub, sink, centre

    return start


def alarm(hub, state=EventState.RAISED, code="temperature", channel="T1", value=72.5,
          kind=EventKind.ALARM, level=Level.ALARM, eid="a1", device="efd-1"):
    e = Event(device=device, kind=kind, code=code, state=state, ts=hub.clock.seconds(),
              level=level, channel=channel, id=eid, value=value)
    hub.journal.append([e])
    hub.journal.flush()
    return hub.journal.last_seq()


def test_options_errors_name_the_key_path(make_hub):
    with pytest.raises(ConfigError) as e:
        make_hub(config(timeout=30, liveness_type=5, centres=[{"host": "x"}],
                        analog_types={"residual_current": {"code": 999}}))
    text = str(e.value)
    assert "sinks.gc.timeout" in text and "sinks.gc.liveness_type" in text
    assert "sinks.gc.centres[0].port" in text or "sinks.gc.centres.0.port" in text
    assert "sinks.gc.analog_types" in text


def test_fire_alarm_goes_as_type_2_then_3_and_cursor_moves_on_confirm(start):
    hub, sink, centre = start()
    centre.accept()
    seq = alarm(hub)
    hub.clock.advance(0.05)
    [f] = centre.frames()
    assert (f.serial, f.command, f.source, f.destination) == (0, 2, UITD, CENTRE)
    [obj] = f.app_data().objects
    assert isinstance(obj, c.ComponentState)
    assert (obj.sys_type, obj.sys_addr, obj.comp_type) == (129, 1, 18)
    assert obj.comp_addr == (1 << 16) | 0x101
    assert obj.state == c.STATE_NORMAL | c.STATE_FIRE
    assert obj.description == "A栋1层 1号配电箱"
    assert hub.journal.get_cursor("gc") == seq - 1
    centre.answer(f)
    [g] = centre.frames()
    assert g.serial == 1
    [a] = g.app_data().objects
    assert (a.analog_type, a.value, a.comp_addr) == (3, 725, obj.comp_addr)
    assert hub.journal.get_cursor("gc") == seq - 1  # the type 3 is not confirmed yet
    centre.answer(g)
    assert hub.journal.get_cursor("gc") == seq
    assert hub.metrics.value("gb26875.alarm_latency_seconds", sink="gc",
                           centre="127.0.0.1:9") >= 0


def test_clear_gives_normal_and_fault_gives_fault_bit(start):
    hub, sink, centre = start()
    centre.accept()
    alarm(hub, kind=EventKind.FAULT, code="offline", channel="", level=Level.FAULT,
          eid="f1", value=None)
    hub.clock.advance(0.05)
    [f] = centre.frames()
    assert f.app_data().objects[0].state == c.STATE_NORMAL | c.STATE_FAULT
    assert f.app_data().objects[0].comp_type == 16
    centre.answer(f)
    alarm(hub, state=EventState.CLEARED, kind=EventKind.FAULT, code="offline", channel="",
          level=Level.FAULT, eid="f1", value=None)
    hub.clock.advance(0.05)
    [g] = centre.frames()
    assert g.app_data().objects[0].state == c.STATE_NORMAL


def test_withheld_confirm_retransmits_then_reconnects_and_resends(start):
    hub, sink, centre = start(timeout=2, retries=3, reconnect_initial=1, reconnect_max=1)
    centre.accept()
    seq = alarm(hub, value=None)
    hub.clock.advance(0.05)
    [f] = centre.frames()
    for _ in range(3):  # the same frame, same serial, every timeout
        hub.clock.advance(2)
        assert centre.frames() == [f]
    hub.clock.advance(2)  # the retries are spent: the connection goes, nothing is lost
    assert centre.tr.disconnecting
    centre.proto.connectionLost(None)
    assert hub.journal.get_cursor("gc") == seq - 1
    hub.clock.advance(1)
    assert len(centre.factories) == 2
    centre.accept()
    hub.clock.advance(0.05)
    [g] = centre.frames()
    assert g.serial == 0 and g.app_data() == f.app_data()
    centre.answer(g)
    assert hub.journal.get_cursor("gc") == seq
    assert hub.metrics.value("gb26875.retransmissions", sink="gc", centre="127.0.0.1:9") == 3


def test_deny_retransmits_at_once(start):
    hub, sink, centre = start()
    centre.accept()
    alarm(hub, value=None)
    hub.clock.advance(0.05)
    [f] = centre.frames()
    centre.answer(f, c.CMD_DENY)
    assert centre.frames() == [f]
    centre.answer(f)
    assert centre.frames() == []


def test_fire_alarms_go_before_other_traffic(start):
    hub, sink, centre = start(readings=True)
    centre.accept()
    hub.journal.append([Reading("efd-1", "voltage", 230.0 + i, hub.clock.seconds(), "A")
                        for i in range(3)])
    alarm(hub, kind=EventKind.FAULT, code="open_circuit", level=Level.FAULT, eid="f2",
          channel="L1", value=None)
    alarm(hub, eid="a9", value=None)
    hub.clock.advance(0.05)
    [first] = centre.frames()
    # read together: the fire alarm jumps the queue... unless the first frame was already
    # out; here all three records were read at once, so the fire alarm goes first
    assert first.app_data().objects[0].state & c.STATE_FIRE
    centre.answer(first)
    [second] = centre.frames()
    assert second.app_data().type == 3 and len(second.app_data().objects) == 3
    assert second.app_data().objects[0].value == 2300
    centre.answer(second)
    [third] = centre.frames()
    assert third.app_data().objects[0].state == c.STATE_NORMAL | c.STATE_FAULT
    assert third.app_data().objects[0].comp_type == 17


def test_refused_connection_backs_off(start):
    hub, sink, centre = start(reconnect_initial=1, reconnect_max=4)
    for _ in range(4):
        centre.factories[-1].clientConnectionFailed(None, None)
        hub.clock.advance(4)
    assert len(centre.factories) == 5


def test_centre_reads_controls_and_duty_check(start):
    hub, sink, centre = start()
    centre.accept()
    centre.send(c.CMD_REQUEST, 81, [c.Reserved()], serial=7)
    [f] = centre.frames()
    assert (f.command, f.serial, f.destination) == (c.CMD_ANSWER, 7, CENTRE)
    assert f.app_data().type == 21
    centre.send(c.CMD_REQUEST, 85, [c.Reserved()], serial=8)
    assert centre.frames()[0].app_data().type == 25
    centre.send(c.CMD_REQUEST, 88, [c.Reserved()], serial=9)
    assert centre.frames()[0].app_data().type == 28
    centre.send(c.CMD_REQUEST, 62, [c.ComponentRef(129, 1, (2 << 16) | 0x201)], serial=10)
    [g] = centre.frames()
    assert g.app_data().objects[0].comp_type == 17
    centre.send(c.CMD_REQUEST, 62, [c.ComponentRef(1, 9, 5)], serial=11)
    assert centre.frames()[0].command == c.CMD_DENY  # not one of our systems
    centre.send(c.CMD_CONTROL, 90, [c.ClockSync(_T)], serial=12)
    assert centre.frames()[0].command == c.CMD_CONFIRM
    centre.send(c.CMD_REQUEST, 89, [c.Reserved()], serial=13)  # 89 also comes with cmd 4
    assert centre.frames()[0].command == c.CMD_CONFIRM
    centre.send(c.CMD_CONTROL, 91, [c.DutyCheck(5)], serial=14)
    confirm, duty = centre.frames()
    assert confirm.command == c.CMD_CONFIRM and confirm.serial == 14
    assert duty.command == c.CMD_SEND and duty.app_data().type == 24
    assert duty.app_data().objects[0].flags & c.UITD_DUTY_ANSWERED
    centre.answer(duty)
    hub.journal.flush()
    notes = [r for _, r in hub.journal.read(0, 100) if getattr(r, "code", "") ==
             "gb26875_duty_check"]
    assert len(notes) == 1
    centre.send(c.CMD_REQUEST, 84, [c.UitdRecordQuery(10, _T)], serial=15)
    [ans] = centre.frames()
    assert ans.app_data().type == 24


def test_liveness_uploads(start):
    hub, sink, centre = start(liveness_interval=30)
    centre.accept()
    hub.clock.advance(30)
    [f] = centre.frames()
    assert f.app_data().type == 21 and f.app_data().objects[0].state == c.STATE_NORMAL
    centre.answer(f)
    hub.clock.advance(30)
    assert centre.frames()[0].serial == 1


def test_bad_frame_from_centre_is_denied(start):
    hub, sink, centre = start()
    centre.accept()
    bad = bytearray(c.Frame(3, c.CMD_REQUEST, _T, CENTRE, UITD,
                            c.encode_app_data(81, [c.Reserved()])).encode())
    bad[-3] ^= 1
    centre.proto.dataReceived(bytes(bad))
    [f] = centre.frames()
    assert f.command == c.CMD_DENY and f.serial == 3


def test_restart_resends_unconfirmed(start, make_hub):
    hub, sink, centre = start()
    centre.accept()
    seq = alarm(hub, value=None)
    hub.clock.advance(0.05)
    [f] = centre.frames()
    sink.stopService()
    sink2 = GBSink(hub, "gc", hub.config.sinks["gc"].options, connect=centre)
    sink2.startService()
    centre.accept()
    hub.clock.advance(0.05)
    [g] = centre.frames()
    assert g.app_data() == f.app_data()
    centre.answer(g)
    assert hub.journal.get_cursor("gc") == seq
    sink2.stopService()


def test_fire_alarm_takes_its_components_earlier_state_along(start):
    hub, sink, centre = start()
    centre.accept()
    alarm(hub, eid="a1", value=None)
    hub.clock.advance(0.05)
    [f] = centre.frames()  # in flight; meanwhile a clear, another fault, and a new alarm
    alarm(hub, state=EventState.CLEARED, eid="a1", value=None)
    alarm(hub, kind=EventKind.FAULT, code="open_circuit", level=Level.FAULT, eid="f2",
          channel="L1", value=None, device="efd-2")
    alarm(hub, eid="a2", value=None)
    hub.clock.advance(0.05)
    centre.answer(f)
    sent = []
    for _ in range(3):
        [g] = centre.frames()
        sent.append((g.app_data().objects[0].comp_addr, g.app_data().objects[0].state))
        centre.answer(g)
    t1 = (1 << 16) | 0x101
    assert sent == [(t1, c.STATE_NORMAL), (t1, c.STATE_NORMAL | c.STATE_FIRE),
                    ((2 << 16) | 0x201, c.STATE_NORMAL | c.STATE_FAULT)]


def test_clock_sync_shifts_time_labels(start):
    hub, sink, centre = start()
    centre.accept()
    centre.send(c.CMD_REQUEST, 88, [c.Reserved()], serial=1)
    before = centre.frames()[0].app_data().objects[0].time
    ahead = before.replace(year=before.year + 1)
    centre.send(c.CMD_CONTROL, 90, [c.ClockSync(ahead)], serial=2)
    assert centre.frames()[0].command == c.CMD_CONFIRM
    alarm(hub, value=None)
    hub.clock.advance(0.05)
    [f] = centre.frames()
    assert f.time == ahead and f.app_data().objects[0].time == ahead


def test_several_centres_have_their_own_cursors(start):
    hub, sink, centre = start(centres=[{"host": "a", "port": 1, "name": "city"},
                                       {"host": "b", "port": 2, "name": "district"}])
    assert [link.cursor_name for link in sink.links] == ["gc/city", "gc/district"]
    assert set(hub.journal.cursors()) >= {"gc/city", "gc/district"}
