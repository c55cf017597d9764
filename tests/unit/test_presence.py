"""Presence: offline by heartbeat interval × timeout count, online again, restore."""

from __future__ import annotations

from twisted.internet.task import Clock

from hub.model import Event, EventKind, EventState, Level, event_id
from hub.presence import Presence

T0 = 1_700_000_000.0


class Harness:
    """A Presence on a task.Clock with per-device timeouts and a list of emitted events."""

    def __init__(self, default: float = 30.0, **timeouts: float) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.timeouts = dict(timeouts)
        self.default = default
        self.emitted: list[Event] = []
        self.presence = Presence(self.clock, self._timeout, self.emitted.extend)

    def _timeout(self, device: str) -> float:
        return self.timeouts.get(device, self.default)

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)


def offline_event(device: str, raised_ts: float, timeout: float = 30.0) -> Event:
    return Event(device, EventKind.FAULT, "offline", EventState.RAISED, raised_ts, Level.FAULT,
                 id=event_id(device, "offline", "", Level.FAULT, raised_ts), set_point=timeout,
                 raised_ts=raised_ts)


def test_offline_after_timeout_not_before() -> None:
    """A tracked, silent device goes offline exactly at interval × count, not a moment before."""
    h = Harness()
    h.presence.track(["d1"])
    assert h.presence.is_online("d1") is None
    h.advance(29.9)
    assert h.emitted == []
    h.advance(0.1)
    [ev] = h.emitted
    assert (ev.kind, ev.code, ev.state, ev.level) == (
        EventKind.FAULT, "offline", EventState.RAISED, Level.FAULT)
    assert ev.ts == ev.raised_ts == T0 + 30
    assert ev.id == event_id("d1", "offline", "", Level.FAULT, T0 + 30)
    assert ev.value is None and ev.set_point == 30.0 and ev.source == "hub"
    assert ev.message == "设备离线: 超过 30 s 未收到数据或心跳"
    assert h.presence.is_online("d1") is False
    h.advance(300)
    assert len(h.emitted) == 1  # offline is reported once, not every period


def test_data_resets_deadline() -> None:
    """Each frame pushes the deadline to last_seen + timeout."""
    h = Harness()
    h.presence.track(["d1"])
    h.advance(20)
    assert h.presence.seen("d1") == []
    assert h.presence.is_online("d1") is True
    assert h.presence.last_seen("d1") == T0 + 20
    h.advance(29)
    assert h.emitted == []
    h.advance(1)
    [ev] = h.emitted
    assert ev.raised_ts == T0 + 50 and ev.value == T0 + 20


def test_online_event_carries_offline_id() -> None:
    """The first frame after offline clears the fault under the offline event's id."""
    h = Harness()
    h.presence.track(["d1"])
    h.advance(45)
    [off] = h.emitted
    [on] = h.presence.seen("d1")
    assert (on.kind, on.code, on.state, on.level) == (
        EventKind.FAULT, "offline", EventState.CLEARED, Level.FAULT)
    assert on.id == off.id and on.raised_ts == off.raised_ts and on.source == "hub"
    assert on.ts == T0 + 45 and on.duration == 15
    assert h.presence.is_online("d1") is True
    assert h.presence.seen("d1") == []


def test_goes_offline_again_after_return() -> None:
    """A device back online is watched again and a second silence gives a new offline id."""
    h = Harness()
    h.presence.track(["d1"])
    h.advance(30)
    h.presence.seen("d1")
    h.advance(30)
    first, second = h.emitted
    assert second.raised_ts == T0 + 60 and second.id != first.id


def test_different_timeouts_per_device() -> None:
    """Each device goes offline after its own timeout."""
    h = Harness(fast=10.0, slow=100.0)
    h.presence.track(["slow", "fast"])
    h.advance(10)
    assert [(e.device, e.raised_ts) for e in h.emitted] == [("fast", T0 + 10)]
    h.advance(89)
    assert len(h.emitted) == 1
    h.advance(1)
    assert [(e.device, e.set_point) for e in h.emitted] == [("fast", 10.0), ("slow", 100.0)]


def test_new_short_deadline_rearms_timer() -> None:
    """Tracking a device with a shorter timeout moves the single timer earlier."""
    h = Harness(slow=100.0, fast=5.0)
    h.presence.track(["slow"])
    h.advance(50)
    h.presence.track(["fast"])
    assert len(h.clock.getDelayedCalls()) == 1
    h.advance(5)
    assert [(e.device, e.raised_ts) for e in h.emitted] == [("fast", T0 + 55)]


def test_restore_already_past_goes_offline_now() -> None:
    """A device whose last_seen + timeout passed while the hub was down is offline at once."""
    h = Harness()
    h.presence.restore({"d1": T0 - 100}, [])
    [ev] = h.emitted
    assert ev.device == "d1" and ev.raised_ts == T0 and ev.value == T0 - 100
    assert h.presence.is_online("d1") is False


def test_restore_active_offline_no_duplicate() -> None:
    """A device restored with an active offline event stays offline without a second event."""
    h = Harness()
    old = offline_event("d1", T0 - 500)
    h.presence.restore({"d1": T0 - 530}, [old])
    h.presence.track(["d1"])
    h.advance(1000)
    assert h.emitted == []
    assert h.presence.is_online("d1") is False
    [on] = h.presence.seen("d1")
    assert on.id == old.id and on.raised_ts == T0 - 500 and on.duration == 1500


def test_restore_recent_keeps_deadline_from_last_seen() -> None:
    """A device seen shortly before the restart gets its deadline from last_seen, no grace."""
    h = Harness()
    h.presence.track(["d1"])  # tracked before restore: restore still wins
    h.presence.restore({"d1": T0 - 20}, [])
    assert h.emitted == [] and h.presence.last_seen("d1") == T0 - 20
    h.advance(9.9)
    assert h.emitted == []
    h.advance(0.1)
    [ev] = h.emitted
    assert ev.raised_ts == T0 + 10
    h.presence.track(["d1"])
    h.advance(100)
    assert len(h.emitted) == 1


def test_many_devices_share_one_timer() -> None:
    """Thousands of devices and frames never need more than one pending timer."""
    h = Harness()
    devices = [f"d{i}" for i in range(2000)]
    h.presence.track(devices)
    assert len(h.clock.getDelayedCalls()) <= 1
    for step in range(10):
        h.advance(10)
        for d in devices[: 1500 if step < 5 else 1000]:  # 500 go quiet, then 500 more
            h.presence.seen(d)
        assert len(h.clock.getDelayedCalls()) <= 1
    offline = {e.device for e in h.emitted}
    assert offline == set(devices[1000:])
    assert len(h.emitted) == 1000
    # seen() never touches the heap: one live entry per online device at most.
    assert len(h.presence._heap) <= len(devices)


def test_untrack_stops_watching() -> None:
    """An untracked device never goes offline; a late frame still clears an old fault."""
    h = Harness()
    h.presence.track(["d1", "d2"])
    h.presence.untrack("d1")
    h.advance(60)
    assert [e.device for e in h.emitted] == ["d2"]
    h.presence.untrack("d2")
    assert len(h.presence.seen("d2")) == 1
    h.advance(60)
    assert len(h.emitted) == 1


def test_track_twice_does_not_extend_deadline() -> None:
    """Tracking an already tracked device keeps its original deadline."""
    h = Harness()
    h.presence.track(["d1"])
    h.advance(20)
    h.presence.track(["d1"])
    h.advance(10)
    assert [e.raised_ts for e in h.emitted] == [T0 + 30]


def test_old_timestamp_does_not_move_last_seen_back() -> None:
    """A buffered frame stamped in the past neither rewinds last_seen nor gives a negative
    offline duration."""
    h = Harness()
    h.presence.track(["d1"])
    h.presence.seen("d1", T0 + 5)
    h.presence.seen("d1", T0 + 1)
    assert h.presence.last_seen("d1") == T0 + 5
    h.advance(40)
    [on] = h.presence.seen("d1", T0 + 2)
    assert on.duration == 0 and on.ts == on.raised_ts == T0 + 35


def test_stop_cancels_timer() -> None:
    """stop() leaves no pending delayed call, even if frames keep arriving."""
    h = Harness()
    h.presence.track(["d1", "d2"])
    h.advance(40)
    h.presence.stop()
    assert h.clock.getDelayedCalls() == []
    h.presence.seen("d1")
    assert h.clock.getDelayedCalls() == []
