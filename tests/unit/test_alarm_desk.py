"""The alarm desk's path from a journal record to a stored ladder, on task.Clock with a
real journal and platform store: no failure between the store taking a batch in and the
ladders being armed may lose an alarm's ladder (``bench_alarms --hub`` lost 1,000 of them).
"""

from __future__ import annotations

import pytest

from hub.alarmdesk import desk as desk_module
from hub.alarmdesk.desk import AlarmDesk
from hub.model import Event, EventKind, EventState, Level, event_id
from hub.store import SqliteStore
from tests.support.audit import audit_rows

DEVICES = 6
CONFIG = {
    "models": {"probe": {"type": "json_map",
                         "points": [{"path": "t", "quantity": "temperature"}]}},
    "transports": {"b": {"type": "mqtt", "host": "127.0.0.1", "port": 1883}},
    "devices": [{"id": f"d{i}", "project": "p", "model": "probe", "transport": "b",
                 "address": f"d{i}"} for i in range(DEVICES)],
}
DELAY = 60.0


@pytest.fixture
def rig(make_hub, tmp_path):
    hub = make_hub(CONFIG)
    store = SqliteStore(str(tmp_path / "platform.sqlite"))
    store.open()
    store.set_policy("p", {"steps": [{"delay": DELAY, "channel": "hook",
                                      "recipients": ["duty"]}]}, "test", 0.0)
    desk = AlarmDesk(hub, store)
    desk.startService()
    yield hub, store, desk
    desk.stopService()
    store.close()


def alarms(hub, devices, code="temp"):
    now = hub.clock.seconds()
    return [Event(device=d, kind=EventKind.ALARM, code=code, state=EventState.RAISED, ts=now,
                  level=Level.ALARM, id=event_id(d, code, "", Level.ALARM, now),
                  message="overheat") for d in devices]


def commit(hub, events):
    hub.journal.append(events)
    hub.journal.flush()
    hub.clock.advance(0)


def ladders(store):
    return {row[0] for row in store.esc_load()}


def raised(store):
    return {r.id for r in store.alarms({"p"}, limit=1000)}


def test_records_committed_but_not_landed_are_read_once_landed(rig):
    """The journal's commit thread commits a burst (visible to the desk's read) before its
    landing moves ``last_seq``: the desk read them, the store took them in, then the cursor
    could not move past ``last_seq`` and the batch, read again, was a replay: no ladders."""
    hub, store, desk = rig
    commit(hub, alarms(hub, ["d0"]))
    assert ladders(store) == raised(store) and len(raised(store)) == 1
    journal = hub.journal
    landed = journal._last_seq
    journal.append(alarms(hub, [f"d{i}" for i in range(1, DEVICES)]))
    journal.flush()
    journal._last_seq = landed + 1  # the rest committed by the thread, not landed yet
    desk.wake()
    hub.clock.advance(0)
    journal._last_seq = landed + DEVICES - 1  # landed
    desk.wake()
    for _ in range(10):
        hub.clock.advance(1)
    # read up to last_seq only, so the cursor moves at once: no failure, no backoff
    assert hub.metrics.value("sink.internal_errors", sink="alarmdesk") == 0
    assert len(raised(store)) == DEVICES
    assert ladders(store) == raised(store)
    assert desk.tail.cursor == journal.last_seq()


def test_a_failure_after_the_store_took_a_batch_in_loses_no_ladder(rig, monkeypatch):
    """The cursor cannot be written once: the batch is read again later (a replay, no
    changes), and the changes the first read made are still handled."""
    hub, store, desk = rig
    real = hub.journal.set_cursor
    calls = {"n": 0}

    def flaky(name, seq):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("disk I/O error")
        real(name, seq)

    monkeypatch.setattr(hub.journal, "set_cursor", flaky)
    commit(hub, alarms(hub, [f"d{i}" for i in range(DEVICES)]))
    assert len(raised(store)) == DEVICES
    assert desk.failures == 1 and hub.metrics.value("sink.internal_errors",
                                                    sink="alarmdesk") == 1
    for _ in range(120):
        hub.clock.advance(0.5)
        if ladders(store):
            break
    assert ladders(store) == raised(store)
    assert desk.tail.cursor == hub.journal.last_seq()
    hub.audit.flush()
    audited = [s for _, a, s, d in audit_rows(hub)
               if a == "alarm.raised" and d["project"] == "p"]
    assert len(audited) == DEVICES  # audited once each, not again at the retry


def test_a_change_that_fails_is_retried_not_skipped(rig, monkeypatch):
    """Handling one change fails (the policy look-up): the changes after it wait, and it
    is tried again after the backoff; none is skipped, none audited twice."""
    hub, store, desk = rig
    real = desk.policy_for
    failing = {"left": 2}

    def flaky(project):
        if failing["left"]:
            failing["left"] -= 1
            raise RuntimeError("database is locked")
        return real(project)

    monkeypatch.setattr(desk, "policy_for", flaky)
    desk.escalator.policy_for = flaky
    commit(hub, alarms(hub, [f"d{i}" for i in range(DEVICES)]))
    assert desk.failures == 1 and ladders(store) == set()
    for _ in range(240):
        hub.clock.advance(0.5)
        if len(ladders(store)) == DEVICES:
            break
    assert ladders(store) == raised(store) and len(raised(store)) == DEVICES
    hub.audit.flush()
    audited = [s for _, a, s, d in audit_rows(hub)
               if a == "alarm.raised" and d["project"] == "p"]
    assert len(audited) == DEVICES


def test_a_change_that_always_fails_is_given_up_counted_and_the_rest_go_on(rig,
                                                                          monkeypatch):
    hub, store, desk = rig
    real = desk.policy_for

    def poison(project):  # the first alarm's look-up fails every time it is tried
        if poison.calls < desk_module.HANDLE_ATTEMPTS:
            poison.calls += 1
            raise RuntimeError("policy unreadable")
        return real(project)
    poison.calls = 0

    desk.escalator.policy_for = poison
    commit(hub, alarms(hub, [f"d{i}" for i in range(DEVICES)]))
    for _ in range(600):
        hub.clock.advance(1)
        if len(ladders(store)) == DEVICES - 1:
            break
    ids = sorted(raised(store))
    assert ladders(store) == set(ids[1:])  # the first one given up, the others armed
    assert hub.metrics.value("alarmdesk.changes_given_up") == 1
    assert poison.calls == desk_module.HANDLE_ATTEMPTS


def test_a_change_given_up_raises_a_fault_in_the_journal_cleared_when_the_desk_works_again(
        rig, monkeypatch):
    """Besides the log line and the metric, a given-up change is a fault event of device
    ``hub`` in the journal (what the live stream and the event list show), and the desk's
    own records hold it; the next change handled clears it."""
    hub, store, desk = rig
    real = desk.policy_for
    calls = {"n": 0}

    def poison(project):
        if calls["n"] < desk_module.HANDLE_ATTEMPTS:
            calls["n"] += 1
            raise RuntimeError("policy unreadable")
        return real(project)

    desk.escalator.policy_for = poison
    commit(hub, alarms(hub, ["d0"]))
    for _ in range(600):
        hub.clock.advance(1)
        if calls["n"] >= desk_module.HANDLE_ATTEMPTS:
            break
    hub.journal.flush()
    hub.clock.advance(0)
    faults = [e for e in hub.journal.events("hub") if e.code == desk_module.GIVEN_UP_CODE]
    assert [e.state for e in faults] == [EventState.RAISED]
    assert faults[0].kind is EventKind.FAULT and "alarm" in faults[0].message
    desk.wake()
    hub.clock.advance(0)
    held = [r for r in store.alarms(limit=1000) if r.code == desk_module.GIVEN_UP_CODE]
    assert len(held) == 1 and held[0].device == "hub" and held[0].active
    commit(hub, alarms(hub, ["d1"]))  # handled: the desk works again
    hub.journal.flush()
    hub.clock.advance(0)
    faults = [e for e in hub.journal.events("hub") if e.code == desk_module.GIVEN_UP_CODE]
    assert [e.state for e in faults] == [EventState.RAISED, EventState.CLEARED]
    assert hub.metrics.value("alarmdesk.changes_given_up") == 1
