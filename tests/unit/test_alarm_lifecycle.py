"""The alarm lifecycle (sans-IO) and its records in the platform store."""

from __future__ import annotations

import pytest

from hub.alarmdesk.lifecycle import IllegalAct, apply_act, apply_event, severity_of
from hub.model import Acknowledgement, Event, EventKind, EventState, Level
from hub.store import NotFound


def ev(state, ts, level=Level.ALARM, id="e1", kind=EventKind.ALARM, code="temperature",
       device="d1", channel="T1"):
    return Event(device, kind, code, state, ts, level, channel=channel, id=id)


R, C = EventState.RAISED, EventState.CLEARED


@pytest.fixture
def store(make_store):
    """The platform store on each backend (SQLite, PostgreSQL: tests/support/postgres.py)."""
    return make_store()


def project(_device):
    return "p1"


def test_severity_maps_the_standards_levels():
    assert severity_of(ev(R, 1, Level.WARNING)) == "pre-alarm"
    assert severity_of(ev(R, 1, Level.ALARM)) == "alarm"
    assert severity_of(ev(R, 1, Level.FAULT, kind=EventKind.FAULT, code="offline")) == "fault"


def test_the_four_states_with_who_and_when(store):
    [(r, c)] = store.ingest([(1, ev(R, 100))], project)
    assert (r.state, c.action, c.by, r.severity, r.project) == (
        "active-unacknowledged", "raised", "hub", "alarm", "p1")
    r, c = store.alarm_act(r.id, "acknowledge", "alice", 110, note="on my way")
    assert (r.state, r.acked_by, r.acked_ts, c.note) == ("active-acknowledged", "alice", 110,
                                                          "on my way")
    [(r, c)] = store.ingest([(2, ev(C, 120))], project)
    assert (r.state, r.cleared_ts, r.open) == ("cleared-acknowledged", 120, False)
    history = store.alarm_history(r.id)
    assert [(h["action"], h["by"], h["ts"]) for h in history] == [
        ("raised", "hub", 100), ("acknowledged", "alice", 110), ("cleared", "hub", 120)]


def test_cleared_before_anyone_acknowledged_stays_open(store):
    [(r, _)] = store.ingest([(1, ev(R, 100))], project)
    [(r, _)] = store.ingest([(2, ev(C, 120))], project)
    assert (r.state, r.open) == ("cleared-unacknowledged", True)
    r, _ = store.alarm_act(r.id, "acknowledge", "bob", 130)
    assert (r.state, r.open) == ("cleared-acknowledged", False)


def test_a_retrigger_updates_the_open_record(store):
    store.ingest([(1, ev(R, 100, id="a")), (2, ev(C, 101, id="a")),
                  (3, ev(R, 102, id="b")), (4, ev(R, 103, Level.WARNING, id="w"))], project)
    [r] = store.alarms()
    assert (r.count, r.first_ts, r.last_ts, r.active_events) == (3, 100, 103, ("b", "w"))
    assert r.state == "active-unacknowledged"
    # another channel, another rule: their own records
    store.ingest([(5, ev(R, 104, id="c", channel="T2")),
                  (6, ev(R, 104, id="d", code="leakage_current"))], project)
    assert len(store.alarms()) == 3
    # a closed record is not reopened: the next raise opens a new one
    store.alarm_act(r.id, "acknowledge", "x", 105)
    store.ingest([(7, ev(C, 106, id="b")), (8, ev(C, 106, id="w")), (9, ev(R, 107, id="e"))],
                 project)
    assert [a.state for a in store.alarms(device="d1", kind="alarm")][0] == \
        "cleared-acknowledged"
    assert len(store.alarms(open_only=True)) == 3


def test_a_worse_retrigger_withdraws_the_acknowledgement():
    r, _ = apply_event(None, ev(R, 1, Level.WARNING, id="w"), "p", 1)
    r, _ = apply_act(r, "acknowledge", "a", 2)
    same, _ = apply_event(r, ev(R, 3, Level.WARNING, id="w2"), "p", 2)
    assert same.acked
    worse, change = apply_event(r, ev(R, 3, Level.ALARM, id="a"), "p", 3)
    assert (worse.acked, worse.severity, change.action) == (False, "alarm", "retriggered")


def test_replays_change_nothing(store):
    items = [(1, ev(R, 100)), (2, Acknowledgement("e1", "op", 101, "d1"))]
    assert len(store.ingest(items, project)) == 2
    assert store.ingest(items, project) == []
    assert len(store.alarm_history(store.alarms()[0].id)) == 2


def test_journal_acknowledgements_reach_the_record(store):
    store.ingest([(1, ev(R, 100)), (2, Acknowledgement("e1", "op", 101, "d1", "seen"))],
                 project)
    [r] = store.alarms()
    assert (r.acked_by, r.state) == ("op", "active-acknowledged")
    # unknown event ids and state events are ignored
    assert store.ingest([(3, Acknowledgement("zz", "op", 1, "d1")),
                         (4, ev(EventState.NOTICE, 1, kind=EventKind.STATE, id="s"))],
                        project) == []


def test_assign_comment_handle_and_illegal_acts(store):
    [(r, _)] = store.ingest([(1, ev(R, 100))], project)
    r, c = store.alarm_act(r.id, "assign", "mgr", 101, assignee="bob")
    assert (r.assignee, c.details) == ("bob", {"assignee": "bob"})
    r, c = store.alarm_act(r.id, "comment", "bob", 102, note="ladder needed")
    assert c.action == "commented"
    with pytest.raises(IllegalAct):
        store.alarm_act(r.id, "handle", "bob", 103, cause="loose terminal")
    r, c = store.alarm_act(r.id, "handle", "bob", 103, cause="loose terminal",
                           action_taken="tightened")
    assert (r.acked, r.acked_by, r.cause, r.action_taken) == (True, "bob", "loose terminal",
                                                              "tightened")
    # acknowledging twice is no change (a batch may hold it twice)
    assert store.alarm_act(r.id, "acknowledge", "x", 104)[1] is None
    store.ingest([(2, ev(C, 105))], project)
    with pytest.raises(IllegalAct):
        store.alarm_act(r.id, "assign", "mgr", 106, assignee="eve")
    with pytest.raises(IllegalAct):
        store.alarm_act(r.id, "comment", "mgr", 106)
    with pytest.raises(NotFound):
        store.alarm_act(999, "acknowledge", "x", 1)


def test_changes_are_ordered_and_scoped(store):
    store.ingest([(1, ev(R, 100)), (2, ev(R, 100, id="x", device="d9"))],
                 lambda d: "p1" if d == "d1" else "p2")
    all_changes = store.alarm_changes(0)
    assert [c["project"] for c in all_changes] == ["p1", "p2"]
    assert [c["project"] for c in store.alarm_changes(0, {"p2"})] == ["p2"]
    assert store.alarm_changes(all_changes[-1]["seq"]) == []
    assert store.alarms(set()) == [] and len(store.alarms({"p1"})) == 1
    assert len(store.alarms(state="active-unacknowledged")) == 2
    assert store.alarms(state="active-acknowledged") == []
