"""The demo transport (``type: simulator``) takes commands: the simulated detector alone (trip,
close, reset of its latched alarms, silence, self-test), the transport on a task.Clock
through the hub's command lifecycle (`hub run` with `hub command`:
tests/integration/test_demo_hub_command.py)."""

from __future__ import annotations

import pytest

from hub.model import Command, CommandResult, Event, EventKind, EventState, Reading
from plugins.simulators.demo import SimulatedModel, SimulatorOptions, SimulatorService
from plugins.simulators.demo.device import DemoDevice, Refused

MODEL = SimulatedModel()


def decode(device: DemoDevice, t: float) -> list[Reading | Event]:
    data = device.frame(t)
    assert data is not None
    return list(MODEL.decode("d", data, t))


def values(records) -> dict[tuple[str, str], float]:
    return {(r.quantity, r.channel): r.value for r in records if isinstance(r, Reading)}


def events(records) -> list[tuple[str, str, str]]:
    return [(e.kind.value, e.code, e.state.value) for e in records if isinstance(e, Event)]


# ---------------------------------------------------------------------------- the detector


def test_trip_drops_currents_and_power_to_zero_and_close_restores_them():
    dev = DemoDevice("normal", 300, "d")
    before = values(decode(dev, 0))
    assert before[("current", "A")] == pytest.approx(10, abs=1)
    assert before[("active_power", "")] == pytest.approx(6400, abs=700)
    assert dev.receive(MODEL.encode_command("d", Command("c", "d", "trip", 0))) == \
        "breaker opened"
    tripped = decode(dev, 5)
    v = values(tripped)
    assert [v[("current", p)] for p in "ABC"] == [0, 0, 0]
    assert v[("active_power", "")] == 0 and v[("residual_current", "L1")] == 0
    assert v[("voltage", "A")] == pytest.approx(220, abs=2)  # the line side stays live
    assert events(tripped) == [("state", "relay_open", "notice")]
    assert events(decode(dev, 10)) == []  # a notice once, not on every frame
    assert dev.receive(b"cmd:trip") == "breaker already opened"
    assert dev.receive(b"cmd:close") == "breaker closed"
    again = decode(dev, 15)
    assert values(again)[("current", "B")] == pytest.approx(10, abs=1)
    assert events(again) == [("state", "relay_closed", "notice")]


def test_latched_alarm_stays_after_the_value_falls_until_reset():
    dev = DemoDevice("overheat", 100, "d", latching=True)
    assert ("alarm", "temperature", "cleared") in events(decode(dev, 0))  # 30 °C
    assert ("alarm", "temperature", "raised") in events(decode(dev, 50))  # 95 °C
    cool = decode(dev, 99)
    assert values(cool)[("temperature", "T1")] < 40
    assert ("alarm", "temperature", "raised") in events(cool)  # latched
    assert dev.receive(b"cmd:reset") == "reset: 1 latched alarm(s) cleared"
    after = events(decode(dev, 100))
    assert ("alarm", "temperature", "cleared") in after
    assert ("state", "reset", "notice") in after


def test_silence_and_self_test_are_acknowledged_with_a_notice():
    dev = DemoDevice("normal", 300, "d")
    assert dev.receive(b"cmd:silence") == "buzzer silenced"
    assert dev.receive(b"cmd:self_test") == "self-test passed"
    notices = [e for e in decode(dev, 0) if isinstance(e, Event)]
    assert [(e.code, e.message, e.source, e.level.value) for e in notices] == [
        ("silenced", "buzzer silenced", "device", "info"),
        ("self_test", "self-test passed", "device", "info")]
    with pytest.raises(Refused):
        dev.receive(b"cmd:reboot")


def test_without_latching_no_device_alarms_and_flaky_goes_silent():
    dev = DemoDevice("overheat", 100, "d")
    assert events(decode(dev, 50)) == []
    flaky = DemoDevice("flaky", 100, "f")
    assert flaky.frame(10) is not None and flaky.frame(60) is None


# ---------------------------------------------------------------------------- the transport

CONFIG = {
    "journal": {"commit_interval_ms": 20},
    "transports": {"demo": {"type": "simulator", "interval": 5, "period": 100,
                            "latching": True, "response_delay": 0.2}},
    "devices": [
        {"id": "hot", "model": "simulated", "transport": "demo", "address": "overheat"},
        {"id": "gone", "model": "simulated", "transport": "demo", "address": "silent"},
    ],
}


@pytest.fixture
def demo(make_hub):
    hub = make_hub(CONFIG)
    service = SimulatorService(hub, "demo", SimulatorOptions(5, 100, latching=True,
                                                             response_delay=0.2))
    service.startService()
    yield hub, service
    service.stopService()


def run(hub, action: str, device: str = "hot") -> list[CommandResult]:
    results: list[CommandResult] = []
    cmd = Command(f"c-{action}", device, action, hub.clock.seconds(), ttl=10)
    hub.commands.execute(cmd).addCallback(results.append)
    hub.clock.advance(0.2)
    hub.clock.advance(hub.config.journal.commit_interval)
    return results


def test_a_command_is_sent_acknowledged_and_shows_in_the_values_at_once(demo):
    hub, _ = demo
    results = run(hub, "trip")
    assert [(r.status.value, r.detail) for r in results] == [("succeeded", "breaker opened")]
    steps = [r.status.value if isinstance(r, CommandResult) else "accepted"
             for _, r in hub.journal.read(0, 100, {"command", "command_result"})]
    assert steps == ["accepted", "sent", "succeeded"]
    latest = {(r.quantity, r.channel): r.value for r in hub.journal.latest("hot")}
    assert latest[("current", "A")] == 0 and latest[("active_power", "")] == 0
    assert [e.code for e in hub.journal.events("hot") if e.kind is EventKind.STATE] == \
        ["relay_open"]
    assert run(hub, "close")[0].detail == "breaker closed"
    assert {(r.quantity, r.channel): r.value
            for r in hub.journal.latest("hot")}[("current", "A")] > 5


def test_reset_clears_the_latched_device_alarm(demo):
    hub, _ = demo
    hub.clock.advance(50 - hub.clock.seconds() % 100)  # the peak of the overheat
    hub.clock.advance(45)  # cooled down again, the alarm latched
    hub.clock.advance(hub.config.journal.commit_interval)
    active = [e for e in hub.journal.active_events() if e.source == "device"]
    assert [(e.code, e.channel) for e in active] == [("temperature", "T1")]
    assert run(hub, "reset")[0].detail == "reset: 1 latched alarm(s) cleared"
    assert [e for e in hub.journal.active_events() if e.source == "device"] == []
    cleared = [e for e in hub.journal.events("hot")
               if e.source == "device" and e.state is EventState.CLEARED]
    assert [e.id for e in cleared] == [active[0].id]


def test_commands_the_detector_cannot_take_or_hear_fail(demo):
    hub, _ = demo
    failed = run(hub, "set_threshold")
    assert failed[0].status.value == "failed" and "takes reset, silence" in failed[0].detail
    unreachable = run(hub, "trip", device="gone")
    assert unreachable[0].status.value == "failed"
    assert "not reachable" in unreachable[0].detail
