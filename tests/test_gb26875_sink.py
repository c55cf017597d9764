"""The gb26875 sink on a task.Clock and a StringTransport: the centre's side is played with
frames built here from the standard's rules (confirm = same serial, addresses swapped)."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from twisted.internet.testing import StringTransport

import hub as hub_pkg
from hub.model import (
    Acknowledgement,
    Command,
    CommandResult,
    CommandStatus,
    Event,
    EventKind,
    EventState,
    Level,
    Reading,
)
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
    hub.clock.advance(0.25)  # the centre takes its time with the second confirm
    centre.answer(g)
    assert hub.journal.get_cursor("gc") == seq
    # from the reading (the event's ts) to the confirm of its last upload
    labels = {"sink": "gc", "centre": "127.0.0.1:9"}
    assert hub.metrics.value("gb26875.alarm_latency_seconds", **labels) == 0.3
    assert hub.metrics.value("gb26875.alarm_latency_ms", **labels, le="500") == 1
    assert hub.metrics.value("gb26875.alarm_latency_ms") == 1  # in that bucket only


def test_alarm_latency_histogram_buckets(start):
    hub, sink, centre = start()
    centre.accept()
    for i, wait in enumerate((0.01, 0.02, 0.1, 12.0)):
        alarm(hub, eid=f"a{i}", value=None)
        hub.clock.advance(0.05)  # the poll sends it
        [f] = centre.frames()
        hub.clock.advance(wait)
        centre.answer(f)
        alarm(hub, eid=f"a{i}", state=EventState.CLEARED, value=None)
        hub.clock.advance(0.05)
        centre.answer(centre.frames()[0])
    got = {m["labels"]["le"]: m["value"] for m in hub.metrics.snapshot()
           if m["name"] == "gb26875.alarm_latency_ms"}
    assert got == {"100": 2, "200": 1, "30000": 1}  # 60, 70, 150 ms and 12.05 s


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


class _Rng(random.Random):
    """random() is always ``x``: the jitter factor is then 0.5 + 0.5 x."""

    def __init__(self, x):
        super().__init__(0)
        self.x = x

    def random(self):
        return self.x


@pytest.mark.parametrize("x", [0.0, 0.999])
def test_refused_connection_backs_off_doubling_up_to_the_cap(make_hub, x):
    hub = make_hub(config(reconnect_initial=1, reconnect_max=8))
    centre = Centre()
    sink = GBSink(hub, "gc", hub.config.sinks["gc"].options, connect=centre, rng=_Rng(x))
    sink.startService()
    jitter = 0.5 + 0.5 * x
    delays = []
    for _ in range(6):
        attempts = len(centre.factories)
        centre.factories[-1].clientConnectionFailed(None, None)
        t0 = hub.clock.seconds()
        while len(centre.factories) == attempts:  # step 10 ms until the next attempt
            hub.clock.advance(0.01)
            assert hub.clock.seconds() - t0 < 60
        delays.append(hub.clock.seconds() - t0)
    want = [b * jitter for b in (1, 2, 4, 8, 8, 8)]
    assert delays == pytest.approx(want, abs=0.011)
    # a connection that succeeds starts the doubling again
    centre.accept()
    centre.proto.connectionLost(None)
    t0, attempts = hub.clock.seconds(), len(centre.factories)
    hub.clock.advance(jitter - 0.02)
    assert len(centre.factories) == attempts
    hub.clock.advance(0.03)
    assert len(centre.factories) == attempts + 1
    sink.stopService()


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


class Centres:
    """Several centres: the connection attempts by host, each accepted on its own transport."""

    def __init__(self):
        self.factories = {}
        self.centres = {}

    def __call__(self, host, port, factory):
        self.factories[host] = factory

    def accept(self, host) -> Centre:
        one = Centre()
        one.factories = [self.factories[host]]
        one.accept()
        self.centres[host] = one
        return one


def test_several_centres_each_get_every_upload_on_their_own_cursor(make_hub):
    hub = make_hub(config(centres=[{"host": "a", "port": 1, "name": "city"},
                                   {"host": "b", "port": 2, "name": "district"}]))
    conn = Centres()
    sink = GBSink(hub, "gc", hub.config.sinks["gc"].options, connect=conn)
    sink.startService()
    assert [link.cursor_name for link in sink.links] == ["gc/city", "gc/district"]
    city, district = conn.accept("a"), conn.accept("b")
    s1 = alarm(hub, eid="a1", value=None)
    hub.clock.advance(0.05)
    [f1], [g1] = city.frames(), district.frames()  # each on its own connection
    assert f1.app_data() == g1.app_data() and f1.serial == g1.serial == 0
    city.answer(f1)  # only the city confirms
    assert hub.journal.get_cursor("gc/city") == s1
    assert hub.journal.get_cursor("gc/district") == s1 - 1
    s2 = alarm(hub, eid="a2", channel="T2", value=None)
    hub.clock.advance(0.05)
    [f2] = city.frames()
    assert f2.app_data().objects[0].comp_addr == (1 << 16) | 0x102
    assert district.frames() == []  # still waiting for its first confirm
    city.answer(f2)
    assert hub.journal.get_cursor("gc/city") == s2
    district.answer(g1)  # the district catches up on its own
    [g2] = district.frames()
    assert g2.app_data() == f2.app_data()
    district.answer(g2)
    assert hub.journal.get_cursor("gc/district") == s2
    for name in ("city", "district"):
        assert hub.metrics.value("gb26875.uploads_confirmed", sink="gc", centre=name) == 2
    sink.stopService()


def backlog(hub, n, device="efd-2", channel="", start=0):
    """``n`` offline-style faults (each its own upload), as after a power cut."""
    hub.journal.append([Event(device=device, kind=EventKind.FAULT, code=f"fault{i}",
                              state=EventState.RAISED, ts=hub.clock.seconds(),
                              level=Level.FAULT, channel=channel, id=f"f{i}")
                        for i in range(start, start + n)])
    hub.journal.flush()
    return hub.journal.last_seq()


def drain(hub, centre, limit=2000):
    """Confirm every upload until the link is idle; the uploads' objects, in order."""
    sent = []
    for _ in range(limit):
        frames = centre.frames()
        if not frames:
            hub.clock.advance(0.05)
            frames = centre.frames()
            if not frames:
                return sent
        [f] = frames
        sent.append(f)
        centre.answer(f)
    raise AssertionError("the link never went idle")


def test_late_fire_alarm_overtakes_a_long_backlog_and_nothing_is_lost(start):
    hub, sink, centre = start()
    link = sink.links[0]
    centre.accept()
    last_fault = backlog(hub, 300)
    hub.clock.advance(0.05)
    for _ in range(3):  # the backlog is being sent, well over the 64 queued uploads
        [f] = centre.frames()
        centre.answer(f)
    assert len(link.other) > 64 and link.read_upto < last_fault
    alarm_seq = alarm(hub, value=None)
    [in_flight] = centre.frames()  # sent before the alarm was committed
    centre.answer(in_flight)
    [g] = centre.frames()  # the very next upload is the fire alarm
    assert g.app_data().objects[0].state & c.STATE_FIRE
    assert g.app_data().objects[0].comp_addr == (1 << 16) | 0x101
    hub.clock.advance(0.5)
    centre.answer(g)
    latency = hub.metrics.value("gb26875.alarm_latency_seconds", sink="gc",
                                centre="127.0.0.1:9")
    assert latency == pytest.approx(0.5)
    # the cursor has not jumped over the unsent backlog with it: the four confirmed faults
    assert hub.journal.get_cursor("gc") == 4
    rest = drain(hub, centre)
    states = [f.app_data().objects[0] for f in rest]
    faults = [o for o in states if o.state == c.STATE_NORMAL | c.STATE_FAULT]
    assert len(faults) == 300 - 4  # every fault of the backlog: none lost...
    assert not [o for o in states if o.state & c.STATE_FIRE]  # ...and the alarm once only
    assert hub.journal.get_cursor("gc") == alarm_seq


def test_overtaking_alarm_goes_again_right_behind_an_older_state_of_its_component(start):
    hub, sink, centre = start()
    centre.accept()
    backlog(hub, 250)
    # the alarm's own component has an older record in the backlog, not read yet (past
    # read_ahead): a fault
    backlog(hub, 1, device="efd-1", channel="T1", start=250)
    backlog(hub, 50, start=251)
    hub.clock.advance(0.05)
    [f] = centre.frames()
    alarm_seq = alarm(hub, value=None)
    centre.answer(f)
    t1 = (1 << 16) | 0x101
    sent = [(o.comp_addr, o.state) for fr in drain(hub, centre)
            for o in fr.app_data().objects]
    mine = [s for a, s in sent if a == t1]
    fire, fault, normal = c.STATE_FIRE, c.STATE_FAULT, c.STATE_NORMAL
    # first the alarm (overtaking), then the older fault, then the alarm again on top of it,
    # right behind the fault (not 50 uploads later, where the journal order has it)
    assert mine == [normal | fire, normal | fault, normal | fire | fault]
    assert sent[0] == (t1, normal | fire)
    i = sent.index((t1, normal | fault))
    assert sent[i + 1] == (t1, normal | fire | fault)
    assert len(sent) == 1 + 249 + 1 + 1 + 50  # (one fault was in flight) nothing else twice
    assert hub.journal.get_cursor("gc") == alarm_seq


@pytest.mark.parametrize("confirmed", [True, False])
def test_overtaking_alarm_and_a_reconnect(start, confirmed):
    """An alarm that overtook the backlog and was confirmed before the link dropped is not
    sent again; one lost before its confirm overtakes again, once."""
    hub, sink, centre = start(reconnect_initial=1, reconnect_max=1)
    centre.accept()
    backlog(hub, 100)
    hub.clock.advance(0.05)
    [f] = centre.frames()
    alarm_seq = alarm(hub, value=None)
    centre.answer(f)
    [g] = centre.frames()
    assert g.app_data().objects[0].state & c.STATE_FIRE
    if confirmed:
        centre.answer(g)
    centre.proto.connectionLost(None)  # the backlog is still unconfirmed
    hub.clock.advance(1)
    centre.accept()
    rest = drain(hub, centre)
    fires = [f for f in rest if f.app_data().objects[0].state & c.STATE_FIRE]
    if confirmed:
        assert len(rest) == 99 and not fires
    else:
        assert rest[0].app_data().objects[0].state & c.STATE_FIRE  # overtakes again
        assert len(fires) == 1 and len(rest) == 1 + 99
    assert hub.journal.get_cursor("gc") == alarm_seq


def test_time_outside_2000_2099_gets_the_hubs_clock_and_the_alarm_goes(start):
    hub, sink, centre = start()
    centre.accept()
    e = Event(device="efd-1", kind=EventKind.ALARM, code="temperature",
              state=EventState.RAISED, ts=0.0, level=Level.ALARM, channel="T1", id="a70",
              value=float("inf"))  # a 1970 device clock, and a value no int16 holds
    hub.journal.append([e, replace(e, id="a71", channel="T2", ts=5e9)])  # 2128
    hub.journal.flush()
    hub.clock.advance(0.05)
    labels = []
    for _ in range(2):
        [f] = centre.frames()
        [obj] = f.app_data().objects
        assert obj.state & c.STATE_FIRE
        labels.append(obj.time)
        centre.answer(f)
    assert centre.frames() == []  # the infinite value is not sent as type 3
    assert labels == [f.time, f.time]  # the hub's clock stood in for both
    assert hub.metrics.value("gb26875.time_labels_clamped", sink="gc",
                             centre="127.0.0.1:9") == 2
    assert hub.journal.get_cursor("gc") == hub.journal.last_seq()


def test_record_that_cannot_be_encoded_is_a_dead_letter_and_the_rest_goes(start, monkeypatch):
    hub, sink, centre = start(readings=True)
    link = sink.links[0]
    real = link.mapper.comp_addr
    # an address no 4-byte field holds (a mapping bug, say), for efd-2 only
    monkeypatch.setattr(link.mapper, "comp_addr",
                        lambda d, ch: -1 if d == "efd-2" else real(d, ch))
    centre.accept()
    t = hub.clock.seconds()
    hub.journal.append([Reading("efd-1", "voltage", 230.0, t, "A"),
                        Reading("efd-2", "voltage", 231.0, t, "A"),
                        Reading("efd-1", "voltage", 232.0, t, "B")])
    hub.journal.flush()
    alarm(hub, device="efd-2", value=None)
    hub.clock.advance(0.05)
    # the efd-2 alarm cannot be encoded: it is not skipped silently, and nothing stalls
    [f] = centre.frames()
    assert [o.value for o in f.app_data().objects] == [2300, 2320]
    centre.answer(f)
    assert centre.frames() == []
    assert hub.metrics.value("gb26875.dead_letters", sink="gc", centre="127.0.0.1:9") == 2
    hub.journal.flush()
    notes = [r for _, r in hub.journal.read(0, 100, {"event"}) if r.code == "gb26875_dead_letter"]
    assert len(notes) == 2 and all(n.level is Level.FAULT for n in notes)
    assert "2" in notes[0].message  # names the journal record
    hub.clock.advance(0.05)
    assert hub.journal.get_cursor("gc") == hub.journal.last_seq()


def test_record_the_mapper_chokes_on_does_not_stall_the_link(start, monkeypatch):
    hub, sink, centre = start()
    link = sink.links[0]
    real = link.mapper.event

    def event(seq, e):
        if e.id == "bad":
            raise OverflowError("cannot convert float infinity to integer")
        return real(seq, e)

    monkeypatch.setattr(link.mapper, "event", event)
    centre.accept()
    alarm(hub, eid="bad", value=None)
    seq = alarm(hub, eid="good", channel="T2", value=None)
    for _ in range(3):  # polls: before the fix each one started again from the cursor
        hub.clock.advance(0.05)
    [f] = centre.frames()
    assert f.app_data().objects[0].comp_addr == (1 << 16) | 0x102
    centre.answer(f)
    assert hub.journal.get_cursor("gc") >= seq  # past the bad one too (and its note)
    assert hub.metrics.value("gb26875.dead_letters", sink="gc", centre="127.0.0.1:9") == 1


# -- the centre's reads, built byte by byte from §8.3's layouts (not through our encoder) --

def _time(t):
    return bytes((t.second, t.minute, t.hour, t.day, t.month, t.year - 2000))


def _read(centre, serial, type_flag, *objects: bytes) -> c.Frame:
    data = bytes((type_flag, len(objects))) + b"".join(objects)
    centre.proto.dataReceived(c.Frame(serial, c.CMD_REQUEST, _T, CENTRE, UITD, data).encode())
    [f] = centre.frames()
    assert f.serial == serial and f.destination == CENTRE
    return f


def _system(sys_type=129, sys_addr=1) -> bytes:
    return bytes((sys_type, sys_addr))


def _component(comp_addr, sys_type=129, sys_addr=1) -> bytes:
    return bytes((sys_type, sys_addr)) + comp_addr.to_bytes(4, "little")


def test_centre_reads_every_system_and_component_type(start):
    hub, sink, centre = start()
    centre.accept()
    now = hub.clock.seconds()
    t1 = (1 << 16) | 0x101
    hub.journal.append([Reading("efd-1", "temperature", 65.5, now, "T1")])
    alarm(hub, value=None)
    hub.journal.append([
        Command("c1", "efd-1", "reset", now), CommandResult("c1", "efd-1",
                                                            CommandStatus.SUCCEEDED, now + 1),
        Command("c2", "efd-1", "silence", now), CommandResult("c2", "efd-1",
                                                              CommandStatus.FAILED, now + 2),
        Acknowledgement("a1", "duty officer", now + 3, "efd-1")])
    hub.journal.flush()
    hub.clock.advance(0.05)
    centre.answer(centre.frames()[0])  # the alarm's upload

    f = _read(centre, 1, 61, _system())  # system state: the fire alarm shows
    assert f.command == c.CMD_ANSWER and f.data[:4] == bytes((1, 1, 129, 1))
    assert int.from_bytes(f.data[4:6], "little") & c.STATE_FIRE
    f = _read(centre, 2, 63, _component(t1))  # the component's latest analog value
    assert f.data[:2] == bytes((3, 1))
    [a] = f.app_data().objects
    assert (a.comp_addr, a.analog_type, a.value) == (t1, 3, 655)
    query = bytes((129, 1, 10)) + _time(_T.replace(year=2001))
    f = _read(centre, 3, 64, query)  # operations: the reset that succeeded, the ack
    assert f.command == c.CMD_ANSWER and f.data[:2] == bytes((4, 2))
    assert [o.flags for o in f.app_data().objects] == [1 << 0, 1 << 5]
    assert all((o.sys_type, o.sys_addr) == (129, 1) for o in f.app_data().objects)
    f = _read(centre, 4, 64, bytes((129, 1, 1)) + _time(_T.replace(year=2001)))
    assert [o.flags for o in f.app_data().objects] == [1 << 0]  # the count is honoured
    later = _time(f.app_data().objects[0].time.replace(year=2090))
    assert _read(centre, 5, 64, bytes((129, 1, 10)) + later).command == c.CMD_DENY
    f = _read(centre, 6, 65, _system())
    major, minor = (int(x) for x in hub_pkg.__version__.split(".")[:2])
    assert f.data == bytes((5, 1, 129, 1, major, minor))
    f = _read(centre, 7, 66, _system())
    assert f.data[:5] == bytes((6, 1, 129, 1, len("电气火灾监控系统".encode("gb18030"))))
    assert f.app_data().objects[0].description == "电气火灾监控系统"
    f = _read(centre, 8, 67, _component(t1))
    assert f.data[:5] == bytes((7, 1, 129, 1, 18))
    assert int.from_bytes(f.data[5:9], "little") == t1
    assert f.app_data().objects[0].description == "A栋1层 1号配电箱"
    f = _read(centre, 9, 68, _system())
    assert f.data[:4] == bytes((8, 1, 129, 1)) and len(f.data) == 4 + 6
    assert f.app_data().objects[0].time == f.time
    f = _read(centre, 10, 86, b"\x00")
    assert f.data[0] == 26
    assert f.app_data().objects[0].description == f"hub {hub_pkg.__version__} 2 devices"
    for t, obj in ((61, _system(1, 9)), (65, _system(1, 9)), (66, _system(129, 7)),
                   (67, _component(t1, 1, 9)), (68, _system(3, 1)), (63, _component(99)),
                   (64, bytes((1, 9, 10)) + _time(_T))):
        assert _read(centre, 20 + t, t, obj).command == c.CMD_DENY, t  # not ours


def test_initialise_resets_our_serial(start):
    hub, sink, centre = start()
    centre.accept()
    for i in range(3):
        alarm(hub, eid=f"a{i}", value=None)
        hub.clock.advance(0.05)
        [f] = centre.frames()
        assert f.serial == i
        centre.answer(f)
    centre.send(c.CMD_CONTROL, 89, [c.Reserved()], serial=40)
    assert centre.frames()[0].command == c.CMD_CONFIRM
    alarm(hub, eid="a9", value=None)
    hub.clock.advance(0.05)
    assert centre.frames()[0].serial == 0


def test_fire_alarm_does_not_wait_for_queued_values_of_its_component(start):
    hub, sink, centre = start(readings=True)
    centre.accept()
    t = hub.clock.seconds()
    hub.journal.append([Reading("efd-1", "temperature", 30.0 + i / 100, t, "T1")
                        for i in range(63 * 10)])  # ten type 3 uploads of that component
    hub.journal.flush()
    hub.clock.advance(0.05)
    [f] = centre.frames()
    alarm(hub, value=None)
    centre.answer(f)
    [g] = centre.frames()
    assert g.app_data().type == 2 and g.app_data().objects[0].state & c.STATE_FIRE
    centre.answer(g)
    rest = drain(hub, centre)
    assert {r.app_data().type for r in rest} == {3}
    values = [o.value for r in rest for o in r.app_data().objects]
    assert len(values) == 63 * 9 and values == sorted(values)  # all, in their order


def test_frames_carry_protocol_version_1_1_by_default_and_as_configured(start, make_hub):
    hub, sink, centre = start(liveness_interval=30)
    centre.accept()
    hub.clock.advance(30)
    [f] = centre.frames()
    assert (f.version, f.user_version) == (1, 1)  # bytes 5-6: 01 01, as the standard's samples
    assert c.Frame(0, 2, _T).encode()[4:6] == b"\x01\x00"  # the codec's own default differs
    raw = f.encode()
    assert raw[4:6] == b"\x01\x01"
    hub2, sink2, centre2 = start(liveness_interval=30, protocol_version="1.0")
    centre2.accept()
    hub2.clock.advance(30)
    [g] = centre2.frames()
    assert (g.version, g.user_version) == (1, 0)
    for bad in ("1", "1.256", "one.one", True, [1, 1]):
        with pytest.raises(ConfigError, match="sinks.gc.protocol_version"):
            make_hub(config(protocol_version=bad))
    with pytest.raises(ConfigError, match="sinks.gc.user_version"):
        make_hub(config(protocol_version="1.1", user_version=0))


def test_a_fire_alarm_never_waits_behind_a_liveness_exchange_being_retried(start):
    hub, sink, centre = start(liveness_interval=30, timeout=10, retries=3)
    centre.accept()
    hub.clock.advance(30)
    [live] = centre.frames()
    assert live.app_data().type == 21
    hub.clock.advance(10)  # no confirm: the liveness frame goes again ...
    [again] = centre.frames()
    assert again.serial == live.serial
    hub.clock.advance(2)  # ... and, while it waits for its confirm, a fire alarm comes
    seq = alarm(hub)
    hub.clock.advance(0)
    [fire] = centre.frames()  # at once, not after the liveness exchange's 20 s left
    assert fire.app_data().type == 2 and fire.serial != live.serial
    assert fire.app_data().objects[0].state & c.STATE_FIRE
    centre.answer(live)  # a late confirm of the given-up liveness frame changes nothing
    assert centre.frames() == []
    centre.answer(fire)
    [value, live2] = [centre.frames()[0], None]
    centre.answer(value)
    [live2] = centre.frames()  # the liveness upload goes after the alarm
    assert live2.app_data().type == 21
    assert hub.journal.get_cursor("gc") == seq
