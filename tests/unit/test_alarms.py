"""The alarm engine: set points, levels, hysteresis, delays, device edges, restore."""

from __future__ import annotations

from dataclasses import replace

import pytest
from twisted.internet.task import Clock

from hub.alarms import AlarmEngine, Threshold
from hub.model import Event, EventKind, EventState, Level, Quality, Reading, event_id

T0 = 1_700_000_000.0  # a realistic UTC epoch, so ts arithmetic is not hidden by zeros


class Harness:
    """An engine on a task.Clock with a mutable threshold table and a list of emits."""

    def __init__(self, **thresholds: Threshold) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.table: dict[str, dict[str, Threshold]] = {"d1": dict(thresholds)}
        self.emitted: list[Event] = []
        self.lookups = 0
        self.engine = AlarmEngine(self.clock, self._lookup, self.emitted.extend)

    def _lookup(self, device: str) -> dict[str, Threshold]:
        self.lookups += 1
        return self.table.get(device, {})

    def read(
        self,
        value: float,
        channel: str = "T1",
        quantity: str = "temperature",
        device: str = "d1",
        quality: Quality = Quality.GOOD,
        ts: float | None = None,
    ) -> list[Event]:
        ts = self.clock.seconds() if ts is None else ts
        r = Reading(device, quantity, value, ts, channel, quality)
        return self.engine.process([r])


def temp(**kw: float | bool | None) -> Threshold:
    args: dict = {"alarm": 80.0, "warning": None}
    args.update(kw)
    return Threshold("temperature", **args)


def states(events: list[Event]) -> list[tuple[str, Level, EventState]]:
    return [(e.code, e.level, e.state) for e in events]


def test_raises_at_set_point_not_below() -> None:
    """A high rule raises when the value reaches the set point (>=), not just below it."""
    h = Harness(temperature=temp())
    assert h.read(79.9) == []
    [ev] = h.read(80.0)
    assert ev.kind is EventKind.ALARM and ev.state is EventState.RAISED
    assert (ev.code, ev.level, ev.channel, ev.source) == ("temperature", Level.ALARM, "T1", "hub")
    assert ev.value == 80.0 and ev.set_point == 80.0
    assert ev.ts == ev.raised_ts == T0
    assert ev.id == event_id("d1", "temperature", "T1", Level.ALARM, T0)
    assert ev.message == "温度报警 T1 80.0 °C ≥ 80 °C"
    assert h.read(85.0) == []  # still raised: no second event


def test_warning_and_alarm_are_independent() -> None:
    """Warning and alarm levels raise and clear independently, each with hysteresis."""
    h = Harness(temperature=temp(warning=72.0, hysteresis=2.0))
    raised = h.read(85.0)
    assert states(raised) == [
        ("temperature", Level.WARNING, EventState.RAISED),
        ("temperature", Level.ALARM, EventState.RAISED),
    ]
    assert raised[0].set_point == 72.0 and raised[1].set_point == 80.0
    assert raised[0].id != raised[1].id
    assert raised[0].message.startswith("温度预警 T1")
    [cleared] = h.read(75.0)
    assert (cleared.level, cleared.state) == (Level.ALARM, EventState.CLEARED)
    assert [e.level for e in h.engine.active()] == [Level.WARNING]
    [cleared] = h.read(69.0)
    assert (cleared.level, cleared.state) == (Level.WARNING, EventState.CLEARED)
    assert h.engine.active() == []


def test_hysteresis_band_holds_alarm() -> None:
    """Inside the hysteresis band the alarm stays; it clears strictly below set point - hyst."""
    h = Harness(temperature=temp(hysteresis=5.0))
    h.read(85.0)
    assert h.read(79.0) == []
    assert h.read(75.0) == []  # exactly at the band edge: still raised
    [ev] = h.read(74.9)
    assert ev.state is EventState.CLEARED and ev.value == 74.9
    assert ev.message == "温度报警恢复 T1 74.9 °C, 峰值 85.0 °C"


def test_short_spike_is_cancelled_by_delay() -> None:
    """A condition that ends before the delay expires raises nothing and leaves no timer."""
    h = Harness(temperature=temp(delay=10.0))
    assert h.read(90.0) == []
    assert len(h.clock.getDelayedCalls()) == 1
    h.clock.advance(5)
    assert h.read(70.0) == []
    assert h.clock.getDelayedCalls() == []
    h.clock.advance(20)
    assert h.emitted == [] and h.engine.active() == []


def test_sustained_condition_raised_after_delay_via_emit() -> None:
    """A condition that holds for the delay is raised by the timer, stamped start + delay."""
    h = Harness(temperature=temp(delay=10.0))
    h.read(85.0)
    h.clock.advance(4)
    assert h.read(92.0) == []
    h.clock.advance(5.9)
    assert h.emitted == []
    h.clock.advance(0.1)
    [ev] = h.emitted
    assert ev.state is EventState.RAISED and ev.ts == ev.raised_ts == T0 + 10
    assert ev.id == event_id("d1", "temperature", "T1", Level.ALARM, T0 + 10)
    assert ev.value == 92.0 and ev.peak == 92.0
    assert h.clock.getDelayedCalls() == []


def test_later_reading_confirms_delay_without_timer() -> None:
    """A buffered reading stamped past the delay raises at once, with the same ts as the timer."""
    h = Harness(temperature=temp(delay=10.0))
    h.read(85.0, ts=T0 - 100)
    [ev] = h.read(86.0, ts=T0 - 85)
    assert ev.raised_ts == T0 - 90
    assert h.clock.getDelayedCalls() == []
    h.clock.advance(60)
    assert h.emitted == []


def test_clear_delay() -> None:
    """The clear waits for clear_delay of normal readings; a relapse restarts the wait."""
    h = Harness(temperature=temp(clear_delay=30.0))
    h.read(85.0)
    h.clock.advance(10)
    assert h.read(70.0) == []
    h.clock.advance(20)
    assert h.read(81.0) == []  # relapse cancels the pending clear
    assert h.clock.getDelayedCalls() == []
    h.clock.advance(10)
    start = h.clock.seconds()
    h.read(60.0)
    h.clock.advance(29)
    assert h.emitted == []
    h.clock.advance(1)
    [ev] = h.emitted
    assert ev.state is EventState.CLEARED and ev.ts == start + 30 and ev.value == 60.0


def test_clear_carries_peak_raised_ts_duration_and_id() -> None:
    """The clear repeats the raise's id and raised_ts and carries the peak and duration."""
    h = Harness(temperature=temp())
    [raised] = h.read(85.0)
    h.clock.advance(5)
    h.read(96.5)
    h.clock.advance(5)
    h.read(88.0)
    h.clock.advance(5)
    [cleared] = h.read(70.0)
    assert cleared.id == raised.id
    assert cleared.raised_ts == raised.raised_ts == T0
    assert cleared.ts == T0 + 15 and cleared.duration == 15
    assert cleared.peak == 96.5 and cleared.value == 70.0
    assert cleared.set_point == 80.0 and cleared.level is Level.ALARM


def test_over_and_undervoltage_on_same_readings() -> None:
    """overvoltage (high) and undervoltage (low, <= set point) both watch voltage."""
    h = Harness(
        overvoltage=Threshold("overvoltage", 264.0, None),
        undervoltage=Threshold("undervoltage", 180.0, 190.0),
    )
    assert h.read(230.0, "A", "voltage") == []
    assert states(h.read(270.0, "A", "voltage")) == [
        ("overvoltage", Level.ALARM, EventState.RAISED)
    ]
    assert states(h.read(185.0, "A", "voltage")) == [
        ("overvoltage", Level.ALARM, EventState.CLEARED),
        ("undervoltage", Level.WARNING, EventState.RAISED),
    ]
    [ev] = h.read(180.0, "A", "voltage")
    assert (ev.code, ev.level) == ("undervoltage", Level.ALARM)
    assert ev.message == "欠压报警 A 180.0 V ≤ 180 V"
    h.read(150.0, "A", "voltage")
    out = h.read(230.0, "A", "voltage")
    assert states(out) == [
        ("undervoltage", Level.WARNING, EventState.CLEARED),
        ("undervoltage", Level.ALARM, EventState.CLEARED),
    ]
    assert out[1].peak == 150.0  # low rules track the minimum


def test_channels_are_independent() -> None:
    """Each channel has its own condition: T2 neither clears nor shares T1's alarm."""
    h = Harness(temperature=temp())
    [t1] = h.read(85.0, "T1")
    assert h.read(60.0, "T2") == []
    [t2] = h.read(85.0, "T2")
    assert t1.id != t2.id and t2.channel == "T2"
    [cleared] = h.read(60.0, "T1")
    assert cleared.id == t1.id
    assert [e.channel for e in h.engine.active()] == ["T2"]


def test_bad_quality_is_not_evaluated() -> None:
    """A BAD reading neither clears (open sensor reads 0 °C) nor raises."""
    h = Harness(temperature=temp())
    h.read(85.0)
    assert h.read(0.0, quality=Quality.BAD) == []
    assert h.read(200.0, "T2", quality=Quality.BAD) == []
    assert len(h.engine.active()) == 1
    assert len(h.read(0.0, quality=Quality.UNCERTAIN)) == 1  # uncertain still counts


def test_device_flag_repeated_every_poll_gives_one_edge_each_way() -> None:
    """A device alarm reported on every poll is raised once and cleared once, one stable id."""
    h = Harness()

    def flag(state: EventState, ts: float) -> Event:
        return Event("d1", EventKind.ALARM, "fault_arc", state, ts, channel="L1", source="device")

    [raised] = h.engine.process([flag(EventState.RAISED, T0)])
    assert raised.id == event_id("d1", "fault_arc", "L1", Level.ALARM, T0)
    assert raised.raised_ts == T0
    for i in range(1, 4):
        assert h.engine.process([flag(EventState.RAISED, T0 + i)]) == []
    assert h.engine.active() == [raised]
    [cleared] = h.engine.process([flag(EventState.CLEARED, T0 + 5)])
    assert cleared.id == raised.id and cleared.raised_ts == T0 and cleared.duration == 5
    assert h.engine.process([flag(EventState.CLEARED, T0 + 6)]) == []
    assert h.engine.active() == []


def test_device_fault_edges_and_passthrough() -> None:
    """Device faults get edges too; notices and hub events pass through unchanged."""
    h = Harness()
    fault = Event("d1", EventKind.FAULT, "channel_open", EventState.RAISED, T0,
                  level=Level.FAULT, channel="T2", source="device")
    [ev] = h.engine.process([fault, fault])
    assert ev.id == event_id("d1", "channel_open", "T2", Level.FAULT, T0)
    notice = Event("d1", EventKind.STATE, "reset", EventState.NOTICE, T0, source="device")
    offline = Event("d1", EventKind.FAULT, "offline", EventState.RAISED, T0, Level.FAULT,
                    id="abc", source="hub")
    assert h.engine.process([notice, offline]) == [notice, offline]
    orphan = Event("d2", EventKind.ALARM, "fault_arc", EventState.CLEARED, T0, source="device")
    assert h.engine.process([orphan]) == []


def test_restore_prevents_second_raise_and_clears_with_old_id() -> None:
    """After restore an exceeding reading raises nothing; a normal one clears the old alarm."""
    old = Event("d1", EventKind.ALARM, "temperature", EventState.RAISED, T0 - 3600,
                channel="T1", id="old-id", value=91.0, set_point=80.0, peak=93.0,
                raised_ts=T0 - 3600)
    offline = Event("d1", EventKind.FAULT, "offline", EventState.RAISED, T0, Level.FAULT)
    h = Harness(temperature=temp())
    h.engine.restore([old, offline])
    assert h.engine.active() == [old]
    assert h.read(88.0) == []
    [cleared] = h.read(60.0)
    assert cleared.id == "old-id" and cleared.raised_ts == T0 - 3600
    assert cleared.state is EventState.CLEARED and cleared.peak == 93.0
    assert cleared.duration == 3600


def test_restore_peak_grows_past_restored_value() -> None:
    """A restored alarm's peak keeps growing with new readings."""
    old = Event("d1", EventKind.ALARM, "temperature", EventState.RAISED, T0 - 10,
                channel="T1", id="x", value=91.0, set_point=80.0, raised_ts=T0 - 10)
    h = Harness(temperature=temp())
    h.engine.restore([old])
    h.read(99.0)
    [cleared] = h.read(60.0)
    assert cleared.peak == 99.0


def test_restore_device_edge() -> None:
    """A restored device-reported alarm swallows the next report and clears with its id."""
    old = Event("d1", EventKind.ALARM, "fault_arc", EventState.RAISED, T0 - 60, id="dev-id",
                raised_ts=T0 - 60, source="device")
    h = Harness()
    h.engine.restore([old])
    again = Event("d1", EventKind.ALARM, "fault_arc", EventState.RAISED, T0, source="device")
    assert h.engine.process([again]) == []
    [cleared] = h.engine.process([replace(again, state=EventState.CLEARED)])
    assert cleared.id == "dev-id" and cleared.raised_ts == T0 - 60


def test_thresholds_are_looked_up_live() -> None:
    """Changing, adding or disabling a device's thresholds takes effect at the next reading."""
    h = Harness()
    assert h.read(85.0) == []  # no rule yet
    h.table["d1"]["temperature"] = temp(alarm=90.0)
    assert h.read(85.0) == []
    h.table["d1"]["temperature"] = temp(alarm=80.0)
    [raised] = h.read(85.0)
    h.table["d1"]["temperature"] = temp(enabled=False)
    [cleared] = h.read(85.0)  # a disabled rule must not leave its alarm raised forever
    assert cleared.id == raised.id and cleared.state is EventState.CLEARED
    assert "阈值已停用" in cleared.message
    assert h.read(95.0) == [] and h.engine.active() == []


def test_removing_warning_retires_pending_delay() -> None:
    """A pending delayed raise whose level disappears is dropped with its timer."""
    h = Harness(temperature=temp(warning=70.0, delay=10.0))
    h.read(75.0)
    assert len(h.clock.getDelayedCalls()) == 1
    h.table["d1"]["temperature"] = temp(delay=10.0)
    h.read(75.0)
    assert h.clock.getDelayedCalls() == []
    h.clock.advance(20)
    assert h.emitted == []


def test_stable_ids_for_same_inputs() -> None:
    """Two engines fed the same readings produce identical events and ids."""
    runs = []
    for _ in range(2):
        h = Harness(temperature=temp(warning=70.0, delay=5.0))
        for i, v in enumerate([60.0, 75.0, 85.0, 90.0, 86.0, 40.0]):
            h.clock.advance(3)
            h.emitted.extend(h.read(v, ts=T0 + 3 * i))  # one log in decision order
        runs.append([e.to_dict() for e in h.emitted])
    assert runs[0] == runs[1]
    assert [(e["level"], e["state"]) for e in runs[0]] == [
        ("warning", "raised"), ("alarm", "raised"), ("warning", "cleared"), ("alarm", "cleared")
    ]
    assert all(e["id"] for e in runs[0])


def test_quantity_without_rule_is_cheap() -> None:
    """Readings of quantities no rule watches do not even consult the threshold table."""
    h = Harness(temperature=temp())
    r = [Reading("d1", "active_power", 1e6, T0, "A"), Reading("d1", "frequency", 49.0, T0)]
    assert h.engine.process(r) == []
    assert h.lookups == 0
    assert h.read(85.0, device="unknown") == []


def test_stop_cancels_timers() -> None:
    """stop() leaves no pending delayed call behind."""
    h = Harness(temperature=temp(delay=10.0, clear_delay=10.0))
    h.read(85.0)
    h.read(85.0, "T2")
    assert len(h.clock.getDelayedCalls()) == 2
    h.engine.stop()
    assert h.clock.getDelayedCalls() == []
    h.read(85.0, "T3")
    assert h.clock.getDelayedCalls() == []


@pytest.mark.parametrize(("value", "expect"), [(0.05, "0.05"), (85.25, "85.25")])
def test_message_keeps_significant_digits(value: float, expect: str) -> None:
    """Messages show small set points and values without rounding them away."""
    h = Harness()
    h.table["d1"]["smoke_concentration"] = Threshold("smoke_concentration", 0.05, None)
    h.table["d1"]["temperature"] = temp()
    quantity = "smoke_concentration" if value < 1 else "temperature"
    [ev] = h.read(value, "", quantity)
    assert expect in ev.message


def test_device_warning_and_alarm_bits_of_one_code_are_separate_conditions():
    """A detector's pre-alarm bit and alarm bit for the same code raise and clear
    independently: clearing the alarm leaves the warning raised."""
    clock = Clock()
    engine = AlarmEngine(clock, lambda device: {}, lambda events: None)

    def flag(level, state):
        return Event("d", EventKind.ALARM, "temperature", state, clock.seconds(), level, "T1",
                     source="device")

    raised = engine.process([flag(Level.WARNING, EventState.RAISED),
                             flag(Level.ALARM, EventState.RAISED)])
    assert [e.level for e in raised] == [Level.WARNING, Level.ALARM]
    cleared = engine.process([flag(Level.WARNING, EventState.RAISED),
                              flag(Level.ALARM, EventState.CLEARED)])
    assert [(e.level, e.state) for e in cleared] == [(Level.ALARM, EventState.CLEARED)]
    assert cleared[0].id == raised[1].id
    assert [e.level for e in engine.active()] == [Level.WARNING]
