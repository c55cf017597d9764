"""Cluster mode's edge and API side, pure parts: the MQTT subscriptions of an edge behind a
shared broker, the shared presence view, the command ledger (what another node's API
reads, what a core ends) and the journal view's merge of local and ledger commands."""

from __future__ import annotations

import re

import orjson
from hypothesis import given
from hypothesis import strategies as st

from hub.cluster.reads import JournalView, PresenceView, presence_key
from hub.cluster.remote import GRACE, CommandLedger
from hub.journal import command_to_dict, result_to_dict
from hub.model import (
    Command,
    CommandResult,
    CommandStatus,
    Event,
    EventKind,
    EventState,
    Level,
)
from plugins.transports.mqtt.options import MqttOptions


def test_an_edge_shares_uplinks_and_status_but_not_results():
    shared = MqttOptions(shared_group="edges", shared_results=False)
    assert shared.subscriptions() == ["$share/edges/esm/+/up", "$share/edges/esm/+/status",
                                      "esm/+/ack"]
    # the single process's several connections keep sharing everything, as before
    assert MqttOptions(shared_group="hubs").subscriptions()[-1] == "$share/hubs/esm/+/ack"
    assert MqttOptions().subscriptions() == ["esm/+/up", "esm/+/status", "esm/+/ack"]


@given(st.text(min_size=1, max_size=30))
def test_presence_keys_are_valid_kv_keys(device):
    assert re.fullmatch(r"[-/_=.A-Za-z0-9]+", presence_key(device))


class _LocalPresence:
    stopped = False

    def stop(self) -> None:
        self.stopped = True


def test_the_presence_view_answers_from_the_bucket_and_passes_the_rest_on():
    local = _LocalPresence()
    view = PresenceView(local)
    assert view.is_online("efd-1") is None and view.last_seen("efd-1") is None
    offline = Event("efd-2", EventKind.FAULT, "offline", EventState.RAISED, 50.0, Level.FAULT)
    view.apply(orjson.dumps({"d": "efd-1", "on": True, "seen": 100.0, "ev": None}), "efd-1")
    view.apply(orjson.dumps({"d": "efd-2", "on": False, "seen": 40.0,
                             "ev": offline.to_dict()}), "efd-2")
    assert (view.is_online("efd-1"), view.last_seen("efd-1")) == (True, 100.0)
    assert view.is_online("efd-2") is False
    assert [e.device for e in view.offline()] == ["efd-2"]
    view.apply(None, presence_key("efd-2"))  # deleted
    assert view.is_online("efd-2") is None and view.offline() == []
    view.stop()
    assert local.stopped


def _entry(command: Command, result: CommandResult | None = None) -> bytes:
    return orjson.dumps({"c": command_to_dict(command), "node": "core1",
                         "state": "ended" if result else "pending",
                         "r": result_to_dict(result) if result else None})


def test_the_ledger_gives_a_devices_commands_and_what_is_overdue():
    ledger = CommandLedger()
    a = Command("a1", "efd-1", "trip", 100.0, ttl=10)
    b = Command("b1", "efd-1", "reset", 200.0, ttl=10)
    other = Command("c1", "efd-2", "trip", 100.0, ttl=10)
    done = CommandResult("a1", "efd-1", CommandStatus.SUCCEEDED, 103.0)
    ledger.apply("a1", _entry(a, done), 1)
    ledger.apply("b1", _entry(b), 2)
    ledger.apply("c1", _entry(other), 3)
    records = ledger.records("efd-1", 50.0, 1000.0)
    assert [(type(r).__name__, getattr(r, "id", None) or r.command_id) for _, r in records] \
        == [("Command", "a1"), ("CommandResult", "a1"), ("Command", "b1")]
    assert ledger.records("efd-1", 150.0, 1000.0)[0][1].id == "b1"
    # unended and past their time to live plus the grace: b1 and c1, not the ended a1
    assert ledger.overdue(200.0 + 10 + GRACE - 1) == [("c1", orjson.loads(_entry(other)), 3)]
    assert sorted(k for k, _, _ in ledger.overdue(200.0 + 10 + GRACE + 1)) == ["b1", "c1"]
    ledger.apply("c1", None, 4)
    assert "c1" not in ledger.entries


class _LocalJournal:
    def __init__(self, records):
        self.records = records

    def command_records(self, device, since, until):
        return list(self.records)

    def last_seq(self):
        return 42


def test_the_journal_view_adds_the_commands_other_nodes_accepted():
    mine = Command("m1", "efd-1", "trip", 100.0, ttl=10)
    theirs = Command("t1", "efd-1", "trip", 110.0, ttl=10)
    ledger = CommandLedger()
    ledger.apply("m1", _entry(mine), 1)  # this node's: its journal has it already
    ledger.apply("t1", _entry(theirs, CommandResult("t1", "efd-1", CommandStatus.TIMED_OUT,
                                                    125.0, "ended by core2")), 2)
    view = JournalView(_LocalJournal([(7, mine)]), link=None, loop=None, ledger=ledger)
    got = view.command_records("efd-1", 0.0, 1000.0)
    assert [(seq, type(r).__name__) for seq, r in got] == [
        (7, "Command"), (0, "Command"), (0, "CommandResult")]
    assert got[2][1].detail == "ended by core2"
    assert view.last_seq() == 42  # everything else is the local reader's
