"""The tcp_dtu transport on a StringTransport and a task.Clock: registration, the half-duplex
poll loop, heartbeats, timeouts and dead slaves, commands ahead of polls, sessions."""

from __future__ import annotations

import pytest
from twisted.internet.testing import StringTransport
from twisted.logger import formatEvent, globalLogPublisher

from hub.config import check_config
from hub.model import Command, EventState, Quality
from hub.pluginmanager import make_plugins
from hub.validate import ConfigError
from plugins.protocols.modbus import rtu
from plugins.transports.tcp_dtu import DtuFactory

IMEI = "861234567890123"
MAP = "conf/devices/efd-example.yaml"


def config(**dtu):
    return {
        "presence": {"heartbeat_interval": 10, "timeout_count": 3},
        "alarms": {"defaults": {"temperature": {"alarm": 80}}},
        "models": {"efd": {"type": "modbus_map", "map": MAP, "poll_interval": 10}},
        "transports": {"dtu": {"type": "tcp_dtu", "port": 0, "response_timeout": 2,
                               "retries": 1, "heartbeat": ["hex:FE FE"],
                               "first_poll_spread": 0, **dtu}},
        "devices": [
            {"id": "efd-1", "model": "efd", "transport": "dtu",
             "address": {"dtu": IMEI, "slave": 1}},
            {"id": "efd-2", "model": "efd", "transport": "dtu",
             "address": {"dtu": IMEI, "slave": 2}},
        ],
    }


REGISTERS = {0x0000: 35, 0x0001: 253, 0x0002: 0x7FFF, 0x0003: 240, 0x0004: 251,
             0x0008: 2205, 0x0009: 2210, 0x000A: 2199, 0x000B: 1050, 0x000C: 990,
             0x000D: 1010, 0x0010: 0, 0x0011: 0}


def answer(hub, slave, registers=None, device="efd-1"):
    """The slave's answer to the first poll of the map, from a register dict."""
    regs = {**REGISTERS, **(registers or {})}
    poll = hub.registry.get(device).model.plan()[0]
    values = [regs.get(a, 0) for a in range(poll.address, poll.address + poll.count)]
    return rtu.read_response(slave, poll.function, rtu.pack_registers(values))


def request(hub, slave, device="efd-1"):
    model = hub.registry.get(device).model
    return model.request(slave, model.plan()[0])


class Link:
    """One DTU connection: the protocol, its transport, and the bytes written to it."""

    def __init__(self, hub, name="dtu"):
        self.hub = hub
        self.factory = getattr(hub, "_dtu_factory", None) or DtuFactory(
            hub, name, hub.config.transports[name].options)
        hub._dtu_factory = self.factory
        self.proto = self.factory.buildProtocol(None)
        self.tr = StringTransport()
        self.proto.makeConnection(self.tr)

    def send(self, data: bytes):
        self.proto.dataReceived(data)

    def written(self) -> bytes:
        out = self.tr.value()
        self.tr.clear()
        return out


def settle(hub, seconds=0.0):
    hub.clock.advance(seconds)
    hub.clock.advance(hub.config.journal.commit_interval)


@pytest.fixture
def hub(make_hub):
    return make_hub(config())


@pytest.fixture
def logged():
    """The transport's log lines, formatted."""
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    yield lambda: [formatEvent(e) for e in events
                   if e.get("log_namespace") == "hub.tcp_dtu"]
    globalLogPublisher.removeObserver(events.append)


def test_unknown_dtu_is_refused_and_counted(hub, logged):
    """A registration id nobody declared closes the connection, is counted and logged with
    a hex excerpt."""
    link = Link(hub)
    link.send(b"999999999999999")
    assert link.tr.disconnecting
    assert hub.metrics.value("registry.refused", transport="dtu") == 1
    assert hub.metrics.value("dtu.refused", transport="dtu") == 1
    assert link.written() == b""
    assert [line for line in logged() if "refused" in line] == [
        "dtu: refused 192.168.1.1:54321: unknown DTU id '999999999999999'; first bytes "
        + b"999999999999999".hex(" ")]


def no_frame_errors(hub, link, skipped=0):
    """Nothing was thrown away as garbage but ``skipped`` bytes: the patterns were
    recognised, not skipped past byte by byte."""
    assert link.proto.session.framer.skipped == skipped
    assert hub.metrics.value("dtu.frame_errors") == 0


def test_polls_one_request_at_a_time_and_commits_before_the_next(hub):
    """After registration slave 1 is polled; slave 2 only after slave 1's answer is on disk."""
    link = Link(hub)
    link.send(IMEI.encode())
    settle(hub, 0.02)
    assert link.written() == request(hub, 1)  # slave 2 is due too, but waits
    link.send(answer(hub, 1))
    assert link.written() == b""  # the commit has not happened yet
    settle(hub)
    assert link.written() == request(hub, 2)
    latest = {(r.quantity, r.channel): r for r in hub.journal.latest("efd-1")}
    assert latest[("temperature", "T1")].value == pytest.approx(25.3)
    assert latest[("voltage", "A")].value == pytest.approx(220.5)
    assert ("temperature", "T2") not in latest  # 0x7FFF: probe not fitted


def test_answer_split_with_heartbeats_and_garbage(hub):
    """An answer in single bytes, after a heartbeat and line noise, is still decoded."""
    link = Link(hub)
    link.send(IMEI.encode())
    settle(hub, 0.02)
    link.written()
    link.send(b"\xfe\xfe")  # heartbeat: dropped, counts as liveness
    for b in b"\x00\x13\xfe\xfe" + answer(hub, 1, {0x0000: 120}):
        link.send(bytes([b]))
    settle(hub)
    assert [r.value for r in hub.journal.latest("efd-1", "residual_current")] == [120.0]
    no_frame_errors(hub, link, skipped=2)  # the noise only, not the heartbeats
    assert link.proto.session.framer.ignored == 2


def test_a_heartbeat_split_across_reads_or_after_garbage_keeps_the_dtu_online(make_hub):
    """Between two polls far apart only heartbeats arrive, in pieces and after noise: each
    is recognised (not skipped as garbage) and keeps the answering slave online."""
    cfg = config()
    cfg["devices"] = cfg["devices"][:1]
    cfg["devices"][0]["address"]["poll_interval"] = 1000
    hub = make_hub(cfg)
    link = Link(hub)
    link.send(IMEI.encode())
    settle(hub, 0.02)
    assert link.written() == request(hub, 1)
    link.send(answer(hub, 1))
    settle(hub)
    window = hub.registry.get("efd-1").offline_after
    for i in range(int(window * 3 / 5)):
        settle(hub, 5)
        if i % 2:
            link.send(b"\xfe")
            link.send(b"\xfe")
        else:
            link.send(b"\x00\x13\xfe")
            link.send(b"\xfe")
    assert hub.presence.is_online("efd-1") is True
    assert not [e for e in hub.journal.events("efd-1") if e.code == "offline"]
    no_frame_errors(hub, link, skipped=2 * int(window * 3 / 10))


def test_dead_slave_times_out_without_stalling_the_other(hub):
    """A silent slave is retried, then skipped; its neighbour keeps being polled, and the
    silent one goes offline by presence while heartbeats keep the healthy one online. While
    it stays silent it is asked once per cycle, without retries; once it answers again, a
    later failure is retried again."""
    link = Link(hub)
    link.send(IMEI.encode())
    settle(hub, 0.02)
    assert link.written() == request(hub, 1)
    settle(hub, 2.0)  # response timeout: one retry
    assert link.written() == request(hub, 1)
    settle(hub, 2.0)  # retries exhausted: slave 2's turn
    assert link.written() == request(hub, 2)
    assert hub.metrics.value("dtu.response_timeouts", transport="dtu") == 2
    asked = {1: 0, 2: 1}
    link.send(answer(hub, 2))
    window = hub.registry.get("efd-1").offline_after + 10  # the map's 30 s × 3, and some
    for step in range(int(window * 2)):  # slave 2 answers, slave 1 never does
        settle(hub, 0.5)
        if step % 10 == 0:
            link.send(b"\xfe\xfe")  # the DTU's heartbeat
        sent = link.written()
        for slave in (1, 2):
            asked[slave] += sent.count(request(hub, slave))
        if request(hub, 2) in sent:
            link.send(answer(hub, 2))
    cycles = int(window // 10)
    assert asked[2] >= cycles  # every 10 s, not held up by slave 1's timeouts
    # still asked every cycle, but once: retries were for its first failure only
    assert cycles <= asked[1] <= cycles + 1
    offline = [e for e in hub.journal.active_events() if e.code == "offline"]
    assert [e.device for e in offline] == ["efd-1"]
    assert hub.presence.is_online("efd-2") is True
    # slave 1 answers once: it is back, and its next silence is retried again
    sent = b""
    while request(hub, 1) not in sent:
        settle(hub, 0.5)
        sent = link.written()
        if request(hub, 2) in sent:
            link.send(answer(hub, 2))
    link.send(answer(hub, 1))
    settle(hub)
    assert hub.presence.is_online("efd-1") is True
    link.written()
    sent = b""
    for _ in range(2 * 13):  # the next cycle (10 s), its 2 s response timeout, not the next
        settle(hub, 0.5)
        sent += link.written()
        if request(hub, 2) in sent:
            link.send(answer(hub, 2))
            sent = sent.replace(request(hub, 2), b"")
    assert sent == request(hub, 1) * 2


def test_status_bits_raise_and_clear_device_alarms(hub):
    """A status bit set on every poll raises one alarm; cleared bit clears it; an open channel
    marks its reading bad."""
    link = Link(hub)
    link.send(IMEI.encode())
    settle(hub, 0.02)
    link.written()
    link.send(answer(hub, 1, {0x0010: 0b10, 0x0011: 0b1}))  # T1 alarm, L1 open
    settle(hub)
    link.send(answer(hub, 2))
    settle(hub, 10)
    link.send(answer(hub, 1, {0x0010: 0b10, 0x0011: 0b1}))
    settle(hub)
    events = hub.journal.events("efd-1")
    assert sorted((e.code, e.channel, e.state.value) for e in events) == [
        ("channel_open", "L1", "raised"), ("temperature", "T1", "raised")]
    assert hub.journal.latest("efd-1", "residual_current")[0].quality is Quality.BAD
    link.send(answer(hub, 2))
    settle(hub, 10)
    link.send(answer(hub, 1))
    settle(hub)
    cleared = [e for e in hub.journal.events("efd-1") if e.state is EventState.CLEARED]
    assert {(e.code, e.channel) for e in cleared} == {("channel_open", "L1"),
                                                       ("temperature", "T1")}


def run_command(hub, link, action, **kw):
    results = []
    device = hub.registry.get("efd-1")
    d = link.proto.enqueue_command(device, Command("c1", "efd-1", action, 0.0, **kw))
    d.addCallback(results.append)
    return results


def test_command_goes_ahead_of_queued_polls_and_is_confirmed_by_echo(hub):
    """A command queued while a poll is outstanding is written right after that answer,
    before the next poll, and succeeds on the slave's echo."""
    link = Link(hub)
    link.send(IMEI.encode())
    settle(hub, 0.02)
    link.written()
    results = run_command(hub, link, "trip")
    assert link.written() == b""  # half duplex: the poll is still outstanding
    link.send(answer(hub, 1))
    settle(hub)
    trip = rtu.write_coil(1, 0x0003, True)
    assert link.written() == trip
    link.send(rtu.write_response(trip))
    settle(hub)
    assert [r.status.value for r in results] == ["succeeded"]
    assert link.written() == request(hub, 2)


def test_exception_response_fails_the_command_with_its_code(hub):
    """A Modbus exception answer to a write ends the command as failed, naming the code."""
    link = Link(hub)
    link.send(IMEI.encode())
    settle(hub, 0.02)
    link.send(answer(hub, 1))
    settle(hub)
    link.written()
    link.send(answer(hub, 2))
    settle(hub)
    results = run_command(hub, link, "set_threshold",
                          params={"rule": "temperature", "value": 70}, channel="T1")
    sent = link.written()
    assert sent == rtu.write_register(1, 0x0101, 700)
    link.send(rtu.exception_response(1, 6, 2))
    settle(hub)
    assert results[0].status.value == "failed"
    assert results[0].detail == ("slave 1 answered function 06 with exception 02 "
                                 "(illegal data address)")


def test_reconnect_replaces_the_old_session(hub):
    """A DTU that connects again takes over; the old socket is aborted (not left to flush)
    and its outstanding poll is not retried on it, while the new session polls."""
    first = Link(hub)
    first.send(IMEI.encode())
    settle(hub, 0.02)
    assert first.written() == request(hub, 1)
    second = Link(hub)
    second.send(IMEI.encode())
    assert first.tr.disconnected and not second.tr.disconnecting
    assert second.factory.sessions[IMEI] is second.proto
    assert hub.metrics.value("dtu.replaced_sessions", transport="dtu") == 1
    settle(hub, 2.0)  # the old poll's response timeout: retries=1 would resend it
    assert first.written() == b""
    assert second.written() == request(hub, 1)  # the new session polls


def test_idle_and_unregistered_sessions_time_out(hub):
    """A socket that never registers, or goes quiet, is closed by the clock."""
    silent = Link(hub)
    settle(hub, 31)
    assert silent.tr.disconnecting
    link = Link(hub)
    link.send(IMEI.encode())
    settle(hub, 0.02)
    assert not link.tr.disconnecting
    settle(hub, 301)
    assert link.tr.disconnecting


def test_garbage_flood_is_bounded_and_counted(hub, logged):
    """Megabytes of noise neither grow memory past the bound nor close the connection; every
    error is counted, but the log gets one line per minute per session, naming the device
    awaited and with a hex excerpt."""
    link = Link(hub)
    link.send(IMEI.encode())
    settle(hub, 0.02)
    link.written()
    for _ in range(100):
        link.send(bytes([1, 4, 36]) + b"\x00" * 4000)
    assert len(link.proto.session.framer.buffered) <= 4096
    assert not link.tr.disconnecting
    errors = hub.metrics.value("dtu.frame_errors")
    assert errors >= 100
    lines = [line for line in logged() if "dropped bytes" in line]
    assert lines == ["dtu: DTU 861234567890123 (awaiting efd-1): dropped bytes (crc): "
                     "01 04 24" + " 00" * 29]  # the framer's 32-byte excerpt
    settle(hub, 59)
    link.send(bytes([1, 4, 36]) + b"\x00" * 60)
    assert len([line for line in logged() if "dropped bytes" in line]) == 1
    settle(hub, 1)
    link.send(bytes([1, 4, 36]) + b"\x00" * 60)
    lines = [line for line in logged() if "dropped bytes" in line]
    unlogged = int(hub.metrics.value("dtu.frame_errors") - 2)
    assert len(lines) == 2
    assert lines[1].endswith(f"; {unlogged} more not logged in the last 60 s")
    link.proto.session.framer.clear()
    link.send(answer(hub, 1))
    settle(hub)
    assert hub.journal.latest("efd-1", "voltage")


def test_prefix_mode_strips_the_id_from_every_packet(make_hub):
    """With the id prefixed to every packet, it is removed before the frame is parsed."""
    hub = make_hub(config(registration={"mode": "prefix", "length": 15}))
    link = Link(hub)
    link.send(IMEI.encode())
    settle(hub, 0.02)
    link.written()
    link.send(IMEI.encode() + answer(hub, 1, {0x0000: 77}))
    settle(hub)
    assert [r.value for r in hub.journal.latest("efd-1", "residual_current")] == [77.0]
    no_frame_errors(hub, link)


def test_prefix_mode_with_hex_ids_strips_the_raw_id(make_hub):
    """With ``encoding: hex`` the id is the hex text of the raw bytes; the DTU repeats the
    raw bytes, and those are what is stripped (also where a frame is split between two
    packets)."""
    raw = bytes.fromhex("8612345678901231")
    cfg = config(registration={"mode": "prefix", "length": 8, "encoding": "hex"})
    for d in cfg["devices"]:
        d["address"]["dtu"] = raw.hex().upper()
    hub = make_hub(cfg)
    link = Link(hub)
    link.send(raw)
    settle(hub, 0.02)
    assert link.written() == request(hub, 1)
    frame = answer(hub, 1, {0x0000: 77})
    link.send(raw + frame[:7])
    link.send(raw + frame[7:])
    settle(hub)
    assert [r.value for r in hub.journal.latest("efd-1", "residual_current")] == [77.0]
    no_frame_errors(hub, link)


def test_unsolicited_frame_from_a_pushing_detector(hub):
    """A frame nobody asked for is decoded by the slave's model."""
    link = Link(hub)
    link.send(IMEI.encode())
    settle(hub, 0.02)
    link.send(answer(hub, 1))
    settle(hub)
    link.send(answer(hub, 2))
    settle(hub)
    link.send(answer(hub, 2, {0x0000: 500}))  # pushed between cycles
    settle(hub)
    assert [r.value for r in hub.journal.latest("efd-2", "residual_current")] == [500.0]
    assert hub.metrics.value("dtu.unsolicited_frames", transport="dtu") == 1


def test_connection_limit(make_hub):
    """Past max_connections a new socket is refused at once."""
    hub = make_hub(config(max_connections=1))
    first, second = Link(hub), Link(hub)
    assert not first.tr.disconnecting and second.tr.disconnected
    assert hub.metrics.value("dtu.connections_refused", transport="dtu") == 1


def test_bad_addresses_and_options_are_named():
    """Config errors name the key path: a slave outside 1..247, bad hex heartbeats."""
    data = config(heartbeat=["hex:ZZ"])
    data["devices"][1]["address"] = {"dtu": IMEI, "slave": 300}
    with pytest.raises(ConfigError) as e:
        check_config(data, "hub.yaml", make_plugins())
    assert e.value.errors == [
        "hub.yaml: transports.dtu.heartbeat[0]: 'hex:ZZ' is not valid hex",
        "hub.yaml: devices[1].address: slave: 300 is not a Modbus slave address 1..247",
    ]


def readback_hub(make_hub, tmp_path):
    """A hub whose map asks for a read-back after a trip."""
    import yaml

    with open(MAP, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    data["readback"] = ["trip"]
    path = tmp_path / "efd-readback.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    cfg = config()
    cfg["models"]["efd"]["map"] = str(path)
    return make_hub(cfg)


def through_first_cycle(hub) -> Link:
    """A DTU that registered and answered both slaves' first polls; its output drained."""
    link = Link(hub)
    link.send(IMEI.encode())
    settle(hub, 0.02)
    link.send(answer(hub, 1))
    settle(hub)
    link.send(answer(hub, 2))
    settle(hub)
    link.written()
    return link


@pytest.mark.parametrize("coil,status", [(True, "succeeded"), (False, "failed")])
def test_readback_confirms_a_write_where_the_map_asks(make_hub, tmp_path, coil, status):
    """With `readback: [trip]` the echo is followed by a read of the coil; a slave that
    echoed but did not take the write fails the command."""
    hub = readback_hub(make_hub, tmp_path)
    link = through_first_cycle(hub)
    results = run_command(hub, link, "trip")
    trip = rtu.write_coil(1, 0x0003, True)
    assert link.written() == trip
    link.send(rtu.write_response(trip))
    settle(hub)
    assert results == []  # the echo alone does not confirm it
    assert link.written() == rtu.read_request(1, 1, 0x0003, 1)
    link.send(rtu.read_response(1, 1, rtu.pack_bits([coil])))
    settle(hub)
    assert [r.status.value for r in results] == [status]
    if not coil:
        assert results[0].detail.startswith("read back [False] after writing [True]")


def test_auto_provisioned_dtu_is_polled_and_found_again(make_hub):
    """With a provisioning rule, an unknown DTU id becomes slave 1 of a new device, is
    polled, and its reconnection finds the same device."""
    cfg = config()
    cfg["provisioning"] = {"enabled": True, "rules": [
        {"transport": "dtu", "match": "8699[0-9]{11}", "model": "efd"}]}
    hub = make_hub(cfg)
    new_id = "869900000000001"
    link = Link(hub)
    link.send(new_id.encode())
    settle(hub, 0.02)
    assert link.written() == request(hub, 1)
    assert hub.registry.get(new_id).provisioned
    again = Link(hub)
    again.send(new_id.encode())
    assert link.tr.disconnecting and not again.tr.disconnecting
    assert hub.metrics.value("registry.provisioned") == 1


def one_slave(make_hub, **dtu):
    cfg = config(**dtu)
    cfg["devices"] = cfg["devices"][:1]
    return make_hub(cfg)


def test_polls_keep_their_phase_after_a_stall(make_hub):
    """A poll timer that fires late (a loop stall) does not move the next polls: they stay
    due every interval from the first one, and a stall longer than the interval skips the
    missed cycles instead of catching up in a burst."""
    hub = one_slave(make_hub)
    link = Link(hub)
    t0 = hub.clock.seconds()
    link.send(IMEI.encode())
    settle(hub)
    assert link.written() == request(hub, 1)  # due at t0

    def until(t):  # settle to just before t0 + t, then check that the poll comes at it
        settle(hub, t0 + t - hub.clock.seconds() - 0.05)
        assert link.written() == b""
        settle(hub, 0.05)
        assert link.written() == request(hub, 1)

    link.send(answer(hub, 1))
    settle(hub, 13.0)  # the poll due at 10 fires at 13
    assert link.written() == request(hub, 1)
    link.send(answer(hub, 1))
    until(20)  # not 23
    link.send(answer(hub, 1))
    settle(hub, 25.0)  # stalled past 30 and 40: one poll, and the next is due at 50
    assert link.written() == request(hub, 1)
    link.send(answer(hub, 1))
    until(50)


def test_first_poll_comes_at_a_random_phase_of_the_interval(make_hub, monkeypatch):
    """DTUs that dial in together spread their polls over the interval."""
    import plugins.transports.tcp_dtu.session as tcp_dtu

    monkeypatch.setattr(tcp_dtu.random, "random", lambda: 0.25)
    hub = one_slave(make_hub, first_poll_spread=1.0)
    link = Link(hub)
    link.send(IMEI.encode())
    settle(hub, 2.4)  # 0.25 of the map's 10 s interval
    assert link.written() == b""
    settle(hub, 0.1)
    assert link.written() == request(hub, 1)


def test_a_registered_dtu_waits_for_its_first_poll_under_idle_timeout(make_hub, monkeypatch):
    """Registration switches the session from registration_timeout to idle_timeout: with a
    first poll late in a long interval, a quiet DTU must not be closed before it."""
    import plugins.transports.tcp_dtu.session as tcp_dtu

    monkeypatch.setattr(tcp_dtu.random, "random", lambda: 0.99)
    cfg = config(first_poll_spread=1.0, registration_timeout=5, idle_timeout=300)
    cfg["devices"] = cfg["devices"][:1]
    cfg["devices"][0]["address"]["poll_interval"] = 120
    hub = make_hub(cfg)
    link = Link(hub)
    link.send(IMEI.encode())
    settle(hub, 118.7)  # 0.99 × 120 s
    assert not link.tr.disconnecting and link.written() == b""
    settle(hub, 0.1)
    assert not link.tr.disconnecting and link.written() == request(hub, 1)


def test_status_flags_go_to_the_engine_on_change_and_after_a_push(make_hub):
    """Polls report the status word's flags only when it changed; a frame the detector
    pushed in between makes the next poll report them all again, so the engine follows the
    polled state (here: the pushed alarm is cleared by the next poll)."""
    hub = one_slave(make_hub)
    link = Link(hub)
    link.send(IMEI.encode())
    settle(hub)
    link.written()
    ingested = []
    ingest = hub.ingest
    hub.ingest = lambda device, records, *a: ingested.append(len(records)) or ingest(
        device, records, *a)
    link.send(answer(hub, 1))
    settle(hub)
    settle(hub, 10)
    link.written()
    link.send(answer(hub, 1))
    settle(hub)
    assert ingested == [10 + 20, 10]  # readings and every flag, then the readings alone
    link.send(answer(hub, 1, {0x0010: 0b10}))  # pushed: T1 alarm
    settle(hub)
    assert [(e.code, e.state) for e in hub.alarms.active()] == [
        ("temperature", EventState.RAISED)]
    settle(hub, 10)
    assert link.written() == request(hub, 1)
    link.send(answer(hub, 1))
    settle(hub)
    assert hub.alarms.active() == []
    assert hub.metrics.value("dtu.unsolicited_frames", transport="dtu") == 1


def test_listener_and_gc_options_are_checked(make_hub):
    """``backlog`` and ``first_poll_spread`` have sane defaults and bounds; ``hub.gc`` (the
    collector tuning `hub run` applies for many sessions) is checked like any section."""
    hub = make_hub(config())
    opts = hub.config.transports["dtu"].options
    assert (opts.backlog, opts.first_poll_spread) == (1024, 0)
    assert hub.config.gc.freeze is True and hub.config.gc.threshold == (50_000, 20, 100)
    plugins = make_plugins()
    bad = config(backlog=0, first_poll_spread=2)
    bad["hub"] = {"gc": {"freeze": "yes", "threshold": [700, 10]}}
    with pytest.raises(ConfigError) as e:
        check_config(bad, "hub.yaml", plugins)
    text = str(e.value)
    for key in ("transports.dtu.backlog", "transports.dtu.first_poll_spread", "hub.gc.freeze",
                "hub.gc.threshold"):
        assert key in text


class SessionTarget:
    """Carries commands to one test link's session, as DtuService does to the live one."""

    def __init__(self, link):
        self.link = link

    def send_command(self, device, command):
        return self.link.proto.enqueue_command(device, command)


def execute(hub, link, action, ttl):
    """Run a command through ``Commands.execute`` (its TTL cancels the Deferred)."""
    hub.commands.register_target("dtu", SessionTarget(link))
    results = []
    hub.commands.execute(Command("c1", "efd-1", action, hub.clock.seconds(), ttl=ttl)) \
        .addCallback(results.append)
    return results


def test_a_command_that_timed_out_in_the_queue_is_never_written(hub):
    """A trip still queued behind an outstanding poll when its TTL runs out ends timed out
    and is dropped from the queue: the line goes on with the polls, the trip is never sent."""
    link = Link(hub)
    link.send(IMEI.encode())
    settle(hub, 0.02)
    assert link.written() == request(hub, 1)
    results = execute(hub, link, "trip", ttl=1)
    settle(hub, 1.0)  # TTL over; the poll (response_timeout 2) is still outstanding
    assert [r.status.value for r in results] == ["timed_out"]
    link.send(answer(hub, 1))
    settle(hub)
    assert link.written() == request(hub, 2)
    link.send(answer(hub, 2))
    settle(hub, 30)
    assert rtu.write_coil(1, 0x0003, True) not in link.written()


def test_a_command_that_timed_out_on_the_wire_is_not_retried(hub):
    """A write on the wire when the TTL runs out is left to its own response timeout (half
    duplex), but is not resent."""
    link = through_first_cycle(hub)
    results = execute(hub, link, "trip", ttl=1)
    trip = rtu.write_coil(1, 0x0003, True)
    assert link.written() == trip
    settle(hub, 1.0)
    assert [r.status.value for r in results] == ["timed_out"]
    settle(hub, 1.0)  # the write's response timeout: retries=1 would resend it
    assert link.written() == b""
    settle(hub, 8.0)  # the next cycle's polls still run
    assert link.written() == request(hub, 1)


def test_a_timed_out_write_starts_no_readback(make_hub, tmp_path):
    """With `readback: [trip]`, an echo arriving after the TTL ran out does not start the
    read-back: the command stays timed out and the next poll follows."""
    hub = readback_hub(make_hub, tmp_path)
    link = through_first_cycle(hub)
    results = execute(hub, link, "trip", ttl=1)
    trip = rtu.write_coil(1, 0x0003, True)
    assert link.written() == trip
    settle(hub, 1.0)
    link.send(rtu.write_response(trip))
    settle(hub)
    assert link.written() == b""  # no read of the coil
    settle(hub, 9.0)
    assert link.written() == request(hub, 1)  # the line is free for the next cycle
    assert [r.status.value for r in results] == ["timed_out"]


def test_quick_connect_close_cycles_leave_a_trace_in_metrics(hub):
    """A peer that connects and closes at once (a port scanner, a DTU in a reboot loop)
    never registers, but each connection is counted."""
    for _ in range(3):
        link = Link(hub)
        link.proto.connectionLost(None)
    assert hub.metrics.value("dtu.connections_accepted", transport="dtu") == 3
    assert hub.metrics.value("dtu.refused", transport="dtu") == 0
