"""The tcp_dtu session state machine on its own: bytes and times in, writes, timers,
records and command results out. No reactor, no socket, no hub."""

from __future__ import annotations

import pytest

from hub.contracts import PolledDeviceModel
from hub.metrics import Metrics
from hub.model import Command, CommandStatus
from plugins.transports.tcp_dtu.framing import RegistrationRule
from plugins.transports.tcp_dtu.options import DtuOptions
from plugins.transports.tcp_dtu.session import IDLE, RESPONSE, DtuSession
from tests.support.dtu_session import (
    DEVICES,
    IMEI,
    MODEL,
    FakeIO,
    poll_answer,
    poll_request,
)


def session(**opts) -> tuple[DtuSession, FakeIO, Metrics]:
    io, metrics = FakeIO(), Metrics()
    options = DtuOptions(port=0, response_timeout=2.0, retries=1, first_poll_spread=0,
                         heartbeats=(b"\xfe\xfe",), **opts)
    return DtuSession(io, options, "dtu", metrics, rng=lambda: 0.0), io, metrics


def registered(t=0.0):
    s, io, metrics = session()
    s.connected(t)
    s.received(IMEI.encode(), t)
    return s, io, metrics


def test_the_modbus_model_meets_the_polled_contract():
    assert isinstance(MODEL, PolledDeviceModel)


def test_every_accepted_connection_is_counted_even_one_closed_at_once():
    s, io, metrics = session()
    s.connected(0.0)
    s.lost(0.1)
    assert metrics.value("dtu.connections_accepted", transport="dtu") == 1
    assert io.timers == {}


def test_over_the_limit_the_connection_is_counted_refused_and_aborted():
    s, io, metrics = session()
    s.connected(0.0, over_limit=True)
    assert io.closed == "abort"
    assert metrics.value("dtu.connections_accepted", transport="dtu") == 1
    assert metrics.value("dtu.connections_refused", transport="dtu") == 1


def test_registration_sets_the_idle_timeout_and_a_poll_timer_per_slave():
    s, io, _ = session()
    s.connected(0.0)
    assert io.timers == {IDLE: 30.0}
    s.received(IMEI.encode(), 0.5)
    assert s.dtu_id == IMEI
    assert io.timers[IDLE] == 300.0
    assert io.timers[1] == 0.0 and io.timers[2] == pytest.approx(0.01)
    assert io.beats == [("efd-1", 0.5), ("efd-2", 0.5)]  # registering is a sign of life
    assert io.writes == []


def test_unknown_id_is_refused_and_closed():
    s, io, metrics = session()
    s.connected(0.0)
    s.received(b"999", 0.0)
    assert io.closed == "close" and s.closed
    assert metrics.value("dtu.refused", transport="dtu") == 1


def test_one_request_outstanding_and_the_next_only_after_the_commit():
    s, io, _ = registered()
    s.timer_fired(1, 0.0)
    s.timer_fired(2, 0.01)
    assert io.writes == [poll_request(1)]  # slave 2 waits: half duplex
    assert io.timers[RESPONSE] == 2.0
    assert io.timers[1] == MODEL.poll_interval  # next cycle, from when it was due
    s.received(poll_answer(1), 0.05)
    assert io.ingested == [("efd-1", 1)] and RESPONSE not in io.timers
    assert io.writes == [poll_request(1)]  # not before the records are on disk
    s.committed(1, 0.07)
    assert io.writes == [poll_request(1), poll_request(2)]


def test_answer_in_pieces_after_a_heartbeat():
    s, io, _ = registered()
    s.timer_fired(1, 0.0)
    io.beats.clear()
    for b in b"\xfe\xfe" + poll_answer(1):
        s.received(bytes([b]), 0.1)
    assert io.ingested == [("efd-1", 1)]
    assert io.beats == [("efd-1", 0.1), ("efd-2", 0.1)]


def test_a_silent_slave_is_retried_then_skipped_and_tried_once_per_cycle():
    s, io, metrics = registered()
    s.timer_fired(1, 0.0)
    s.timer_fired(2, 0.01)
    s.timer_fired(RESPONSE, 2.0)
    assert io.writes == [poll_request(1)] * 2  # one retry
    s.timer_fired(RESPONSE, 4.0)
    assert io.writes[-1] == poll_request(2)  # its neighbour's turn
    assert s.failing == {1}
    assert metrics.value("dtu.response_timeouts", transport="dtu") == 2
    s.received(poll_answer(2), 4.1)
    s.committed(2, 4.2)
    io.writes.clear()
    s.timer_fired(1, 10.0)
    s.timer_fired(RESPONSE, 12.0)
    assert io.writes == [poll_request(1)]  # no retry while it keeps failing
    io.beats.clear()
    s.received(b"\xfe\xfe", 12.5)
    assert io.beats == [("efd-2", 12.5)]  # no liveness for the silent one


def test_a_late_poll_keeps_its_phase():
    s, io, _ = registered()
    s.timer_fired(1, 0.7, due=0.0)  # a 0.7 s loop stall
    assert io.timers[1] == pytest.approx(MODEL.poll_interval - 0.7)
    s.timer_fired(2, 3 * MODEL.poll_interval + 1, due=0.01)  # missed cycles skipped
    assert io.timers[2] == pytest.approx(MODEL.poll_interval - 1 + 0.01)


def test_a_command_goes_before_the_polls_and_succeeds_on_the_echo():
    s, io, _ = registered()
    s.timer_fired(1, 0.0)
    run = s.enqueue_command(DEVICES[0], Command("c1", "efd-1", "trip", 0.0), 0.01)
    s.timer_fired(2, 0.01)
    write = MODEL.command_requests(run.command, 1)[0]
    s.received(poll_answer(1), 0.05)
    s.committed(1, 0.06)
    assert io.writes[-1] == write  # ahead of slave 2's poll
    assert io.sent == ["c1"]
    s.received(write, 0.1)  # a coil write's normal answer echoes it
    assert [(r.command_id, r.status, r.ts) for r in io.results] == [
        ("c1", CommandStatus.SUCCEEDED, 0.1)]
    assert io.writes[-1] == poll_request(2)


def test_a_command_without_answer_times_out_and_one_pending_fails_on_disconnect():
    s, io, _ = registered()
    s.enqueue_command(DEVICES[0], Command("c1", "efd-1", "trip", 0.0), 0.0)
    s.enqueue_command(DEVICES[1], Command("c2", "efd-2", "trip", 0.0), 0.0)
    s.timer_fired(RESPONSE, 2.0)
    s.timer_fired(RESPONSE, 4.0)
    assert [(r.command_id, r.status) for r in io.results] == [("c1", CommandStatus.TIMED_OUT)]
    s.lost(5.0)
    assert [(r.command_id, r.status, r.ts) for r in io.results][1:] == [
        ("c2", CommandStatus.FAILED, 5.0)]
    assert io.timers == {}


def test_a_reconnecting_dtu_replaces_its_old_session():
    old, io, metrics = registered()
    new = DtuSession(io, old.opts, "dtu", metrics, rng=lambda: 0.0)
    io.sessions[IMEI] = old
    new.connected(1.0)
    new.received(IMEI.encode(), 1.0)
    assert old.closed and io.closed == "abort"
    assert metrics.value("dtu.replaced_sessions", transport="dtu") == 1


def test_prefix_mode_strips_the_id_where_a_read_starts():
    s, io, _ = session(registration=RegistrationRule("prefix", len(IMEI)))
    s.connected(0.0)
    s.received(IMEI.encode(), 0.0)
    s.timer_fired(1, 0.0)
    answer = poll_answer(1)
    s.received(IMEI.encode() + answer[:4], 0.1)
    s.received(IMEI.encode() + answer[4:], 0.1)
    assert io.ingested == [("efd-1", 1)]
