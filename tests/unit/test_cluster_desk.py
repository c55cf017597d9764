"""The cluster's alarm desks (hub.cluster.desk) on task.Clock with real journals and a real
platform store (SQLite, and PostgreSQL under the ``postgresql`` marker): two "cores" whose
partition journals hold the same alarm edges (a takeover replays what the dead owner's desk
had applied) and a node journal with acknowledgements numbered on its own."""

from __future__ import annotations

import pytest

from hub.cluster.desk import ClusterDesk, Scope, edge_of, ingest_once
from hub.cluster.wire import device_token, partition_of
from hub.model import Acknowledgement, Event, EventKind, EventState, Level, event_id
from hub.testing import build_hub

PARTITIONS = 2
DEVICES = [f"d{i}" for i in range(8)]
CONFIG = {
    "models": {"probe": {"type": "json_map",
                         "points": [{"path": "t", "quantity": "temperature"}]}},
    "transports": {"b": {"type": "mqtt", "host": "127.0.0.1", "port": 1883}},
    "devices": [{"id": d, "project": "p", "model": "probe", "transport": "b", "address": d}
                for d in DEVICES],
}


def part(device: str) -> int:
    return partition_of(device_token(device), PARTITIONS)


def raise_(device: str, ts: float) -> Event:
    return Event(device=device, kind=EventKind.ALARM, code="temp", state=EventState.RAISED,
                 ts=ts, level=Level.ALARM, id=event_id(device, "temp", "", Level.ALARM, ts),
                 message="overheat")


def clear(raised: Event, ts: float) -> Event:
    return Event(device=raised.device, kind=EventKind.ALARM, code="temp",
                 state=EventState.CLEARED, ts=ts, level=Level.ALARM, id=raised.id,
                 raised_ts=raised.ts, message="back to normal")


@pytest.fixture
def store(make_store):
    s = make_store()
    s.set_policy("p", {"steps": [{"delay": 60, "channel": "hook", "recipients": ["duty"]}]},
                 "test", 0.0)
    return s


@pytest.fixture
def hubs(tmp_path, hub_clock):
    made = []

    def make(name: str):
        hub = build_hub(CONFIG, str(tmp_path / name), clock=hub_clock)
        hub.open()
        made.append(hub)
        return hub
    yield make
    for hub in made:
        hub.close()


def feed(hub, records) -> None:
    hub.journal.append(records)
    hub.journal.flush()
    hub.clock.advance(0)


def test_edges_are_applied_once_by_identity_whatever_journal_and_seq_bring_them(store):
    t = 1_767_225_600.0
    r1 = raise_("d0", t)
    # core A's partition journal: raise at seq 7
    changes = ingest_once(store, [(7, r1)], lambda d: "p")
    assert [c.action for _, c in changes] == ["raised"]
    # core B took the partition over: the same raise again (its own seq 1), then the clear
    changes = ingest_once(store, [(1, r1), (2, clear(r1, t + 5))], lambda d: "p")
    assert [c.action for _, c in changes] == ["cleared"]
    # an acknowledgement from a node's own journal, numbered far below the partition's
    ack = Acknowledgement(r1.id, "alice", t + 6, "d0")
    changes = ingest_once(store, [(3, ack), (3, ack)], lambda d: "p")
    assert [c.action for _, c in changes] == ["acknowledged"]
    (record,) = store.alarms({"p"}, limit=10)
    assert (record.count, record.state, record.acked_by) == (1, "cleared-acknowledged", "alice")
    assert [h["action"] for h in store.alarm_history(record.id)] == [
        "raised", "cleared", "acknowledged"]
    # a new raise of the same key is a new record; its replay is nothing
    r2 = raise_("d0", t + 10)
    assert len(ingest_once(store, [(9, r2)], lambda d: "p")) == 1
    assert ingest_once(store, [(9, r2)], lambda d: "p") == []
    assert len(store.alarms({"p"}, limit=10)) == 2


def test_the_single_process_guard_would_drop_the_node_journals_ack(store):
    """Why identity: the store's own ingest compares journal sequence numbers, and an
    acknowledgement from another journal, numbered below the raise, is taken for a replay."""
    t = 1_767_225_600.0
    r1 = raise_("d1", t)
    store.ingest([(500, r1)], lambda d: "p")
    assert store.ingest([(3, Acknowledgement(r1.id, "bob", t + 1, "d1"))],
                        lambda d: "p") == []
    assert edge_of(Acknowledgement(r1.id, "bob", t + 1, "d1")) is not None


def test_only_the_partition_owner_escalates_and_a_takeover_doubles_nothing(store, hubs):
    a, b = hubs("coreA"), hubs("coreB")
    mine = [d for d in DEVICES if part(d) == 0]
    theirs = [d for d in DEVICES if part(d) == 1]
    assert mine and theirs
    owner = ClusterDesk(a, store, None, escalates=lambda d: part(d) == 0)
    other = ClusterDesk(b, store, None, escalates=lambda d: part(d) == 1)
    owner.startService()
    other.startService()
    try:
        t = a.clock.seconds()
        events = [raise_(d, t) for d in mine]
        feed(a, events)
        a.clock.advance(0)
        records = {r.device: r for r in store.alarms({"p"}, limit=100)}
        assert set(records) == set(mine)
        ladders = {row[0] for row in store.esc_load()}
        assert ladders == {records[d].id for d in mine}
        assert set(owner.escalator.timers) == ladders and not other.escalator.timers
        # core B is told the same edges (as a takeover replays them): no change, no ladder
        feed(b, events + [clear(e, t + 1) for e in events[:1]])
        b.clock.advance(0)
        history = store.alarm_history(records[mine[0]].id)
        assert [h["action"] for h in history] == ["raised", "cleared"]
        assert not other.escalator.timers
        assert len(store.alarms({"p"}, limit=100)) == len(mine)
        # the scope each desk loads at its start: its own partition's ladders only
        assert {r[0] for r in Scope(store, lambda r: part(r.device) == 1, False).esc_load()} \
            == set()
        assert {r[0] for r in Scope(store, lambda r: part(r.device) == 0, False).esc_load()} \
            == ladders
        # the ladders' first step: the owner sends once per open alarm; the alarm cleared
        # through core B's journal ends its ladder unsent (the step reads the record first)
        a.clock.advance(61)
        sent = {d: len(store.notifications(records[d].id)) for d in mine}
        assert sent == {d: 0 if d == mine[0] else 1 for d in mine}
        assert {row[0] for row in store.esc_load()} == set()
    finally:
        owner.stopService()
        other.stopService()


def test_pending_notifications_resume_on_their_partitions_desk_hazards_on_partition_0(store):
    t = 1_767_225_600.0
    recs = {}
    for d in DEVICES[:4]:
        ((record, _),) = ingest_once(store, [(1, raise_(d, t))], lambda d: "p")
        recs[d] = record
    notes = [(r.id, 0, "hook", "duty", {"alarm_id": r.id, "step": 0}) for r in recs.values()]
    notes.append((-7, -1, "hook", "duty", {"alarm_id": -7, "step": -1}))
    store.notify_claim(notes, t)
    for p in range(PARTITIONS):
        scope = Scope(store, lambda r, p=p: part(r.device) == p, p == 0)
        got = {body["alarm_id"] for _, _, body in scope.notify_pending()}
        want = {r.id for d, r in recs.items() if part(d) == p} | ({-7} if p == 0 else set())
        assert got == want


def test_notification_results_refused_by_the_store_are_written_when_it_is_back(hub_clock):
    """A notification answered while PostgreSQL is away: its end is kept and written after
    a backoff (latest end per row, attempts in order), not left "pending" (which the next
    owner would send again)."""

    class Store:
        up = False
        done: dict = {}
        attempts: list = []

        def notify_done(self, row, *args):
            if not self.up:
                raise ConnectionError("away")
            self.done[row] = args

        def notify_attempt(self, *args):
            if not self.up:
                raise ConnectionError("away")
            self.attempts.append(args)

    store = Store()
    scope = Scope(store, lambda r: True, False, hub_clock)
    scope.notify_done(1, "pending", "#1 503", 1, 10.0)
    scope.notify_attempt(1, 1, 10.0, "error", "503", 11.0)
    scope.notify_done(1, "sent", "#1 503; #2 200", 2, 11.0)
    scope.notify_attempt(1, 2, 11.0, "sent", "200", None)
    hub_clock.advance(1)
    assert store.done == {} and store.attempts == []
    store.up = True
    hub_clock.advance(10)
    assert store.done == {1: ("sent", "#1 503; #2 200", 2, 11.0)}
    assert [a[1] for a in store.attempts] == [1, 2]
