"""Cluster mode's pure parts: subjects and tokens, the server's partition function, the
message codec, the ``cluster:`` section, a partition's configuration, and a partition
worker applying redelivered messages exactly once (a real journal on a task.Clock; the
NATS messages are stand-ins)."""

from __future__ import annotations

import asyncio
import sqlite3
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock

from hub.cluster.core import MARKER, PartitionWorker, partition_config
from hub.cluster.settings import ClusterSettings
from hub.cluster.wire import (
    decode,
    device_token,
    encode_heartbeat,
    encode_offline_after,
    encode_records,
    partition_of,
    token_device,
)
from hub.config import check_config
from hub.core import Hub
from hub.journal.recent import RECENT_ROWS, RECENT_ROWS_HELD
from hub.model import Event, EventKind, EventState, Level, Quality, Reading
from hub.pluginmanager import make_plugins
from hub.testing import build_hub
from hub.validate import ConfigError
from tests.support.dtu_sim import EFD as EFD_MAP


@given(st.text(min_size=1, max_size=40))
def test_device_tokens_are_one_subject_token_and_reversible(device):
    token = device_token(device)
    assert token and not any(c in token for c in ". *>\t\r\n")
    assert token_device(token) == device


def test_plain_ids_are_their_own_token():
    assert device_token("efd-861234500000001") == "efd-861234500000001"
    assert device_token("a.b") == "a~2Eb"


def test_partition_is_fnv1a_like_the_server():
    # FNV-1a 32-bit reference values (the server's partition() hashes the token with it);
    # tests/integration/test_cluster_nats.py checks the server's own mapping
    assert partition_of("", 1 << 32) == 0x811C9DC5
    assert partition_of("a", 1 << 32) == 0xE40C292C
    assert partition_of("foobar", 1 << 32) == 0xBF9CF968
    assert {partition_of(f"d{i}", 8) for i in range(200)} == set(range(8))


def test_records_survive_the_wire_in_order():
    ev = Event("d.1", EventKind.ALARM, "fault_arc", EventState.RAISED, 1.7e9, Level.ALARM,
               source="device", message="故障电弧")
    records = [Reading("d.1", "voltage", 231.5, 1.7e9, "A"), ev,
               Reading("d.1", "temperature", 40.0, 1.7e9 + 1, "T1", Quality.BAD)]
    msg = decode(encode_records("d.1", records, 1.7e9 + 2))
    assert msg["d"] == "d.1" and msg["t"] == 1.7e9 + 2
    assert msg["r"] == records
    assert decode(encode_heartbeat("x", 5.0)) == {"d": "x", "h": 5.0}
    assert decode(encode_offline_after("x", None)) == {"d": "x", "o": None, "x": 1}


def config(extra: dict | None = None, tmp: str = "/tmp") -> dict:
    doc = {
        "hub": {"name": "core-1", "state_dir": tmp},
        "alarms": {"warning_ratio": 0,
                   "defaults": {"overvoltage": {"alarm": 250, "hysteresis": 2, "delay": 0}}},
        "models": {"efd": {"type": "modbus_map", "map": EFD_MAP}},
        "transports": {"dtu": {"type": "tcp_dtu", "port": 0}},
        "devices": [{"id": f"d{i}", "model": "efd", "transport": "dtu",
                     "address": {"dtu": f"86123450000{i:04d}", "slave": 1}}
                    for i in range(20)],
    }
    doc.update(extra or {})
    return doc


def test_cluster_section_defaults_and_errors(tmp_path):
    plugins = make_plugins()
    cfg = check_config(config(tmp=str(tmp_path)), str(tmp_path / "hub.yaml"), plugins)
    assert cfg.cluster is None  # --role all needs none
    cfg = check_config(config({"cluster": {"nats": "nats://10.0.0.5:4222"}}, str(tmp_path)),
                       str(tmp_path / "hub.yaml"), plugins)
    c = cfg.cluster
    assert c.nats == ("nats://10.0.0.5:4222",) and c.node == "core-1" and c.partitions == 8
    assert c.partition_dir == str(tmp_path / "partitions")
    assert c.mapping() == '"hub.in.*": "hub.in.{{partition(8,1)}}.{{wildcard(1)}}"'
    with pytest.raises(ConfigError) as e:
        check_config(config({"cluster": {"nats": 5, "partitions": 0, "lease_ttl_s": 0,
                                         "bogus": 1}}, str(tmp_path)),
                     str(tmp_path / "hub.yaml"), plugins)
    text = str(e.value)
    for key in ("cluster.nats", "cluster.partitions", "cluster.lease_ttl_s", "bogus"):
        assert key in text, text


def test_a_partition_gets_its_devices_and_a_state_dir_of_its_own(tmp_path):
    plugins = make_plugins()
    cfg = check_config(config(tmp=str(tmp_path)), str(tmp_path / "hub.yaml"), plugins)
    s = ClusterSettings(partitions=4, partition_dir=str(tmp_path / "parts"))
    parts = [partition_config(cfg, s, p) for p in range(4)]
    assert sorted(d.id for p in parts for d in p.devices) == sorted(d.id for d in cfg.devices)
    for p, pc in enumerate(parts):
        assert all(partition_of(d.id, 4) == p for d in pc.devices)
        assert pc.journal.path == str(tmp_path / "parts" / f"p{p}" / "journal.sqlite")
        assert pc.audit.path.startswith(str(tmp_path / "parts" / f"p{p}"))
        assert pc.transports == {} and pc.api is None
        # the rows kept in memory for the sinks are shared out: a core owning every
        # partition holds what one hub would
        assert pc.journal.recent_rows == RECENT_ROWS // 4
        assert pc.journal.recent_rows_held == RECENT_ROWS_HELD // 4
    hub = Hub(parts[0], plugins, Clock())
    assert (hub.journal._recent.limit, hub.journal._recent.held) == (
        RECENT_ROWS // 4, RECENT_ROWS_HELD // 4)


class Msg:
    """A fetched JetStream message: its stream sequence, its data, its ack."""

    def __init__(self, seq: int, data: bytes, acks: list[int], delivery: int = 0,
                 times: int = 1) -> None:
        self.metadata = SimpleNamespace(
            sequence=SimpleNamespace(stream=seq, consumer=delivery), num_delivered=times)
        self.data = data
        self._acks = acks

    async def ack(self) -> None:
        self._acks.append(self.metadata.sequence.stream)


def worker_on(hub) -> PartitionWorker:
    w = PartitionWorker(hub, SimpleNamespace(settings=ClusterSettings()), 0)
    w.attach(hub)
    return w


def test_redelivery_after_a_crash_is_applied_once(tmp_path, hub_clock):
    """Messages journaled by a core that died before acknowledging come again to the next
    owner: they are acknowledged without being applied again (no reading twice, no second
    raise), and the clear that follows still clears."""
    doc = config({"journal": {"max_batch": 1}})  # every append commits at once
    acks: list[int] = []
    now = hub_clock.seconds()

    def volts(seq, v, dt):
        return Msg(seq, encode_records("d1", [Reading("d1", "voltage", v, now + dt, "A")],
                                       now + dt), acks)

    first = [volts(1, 230, 0), volts(2, 260, 1), volts(3, 261, 2)]
    hub = build_hub(doc, str(tmp_path / "p0"), clock=hub_clock)
    hub.open()
    asyncio.run(worker_on(hub).apply(first))
    assert acks == [3]
    hub.close()  # the crash came after the commit, before the ack reached the server

    hub = build_hub(doc, str(tmp_path / "p0"), clock=hub_clock)
    hub.open()
    w = worker_on(hub)
    assert w.committed == 3
    asyncio.run(w.apply([*first, volts(4, 230, 3)]))  # redelivered, then a new reading
    assert acks == [3, 4]
    hub.close()
    db = sqlite3.connect(tmp_path / "p0" / "journal.sqlite")
    values = [v for (v,) in db.execute("SELECT value FROM readings ORDER BY seq")]
    states = [s for (s,) in db.execute(
        "SELECT json_extract(data, '$.state') FROM records WHERE kind = 1 ORDER BY seq")]
    marker = db.execute("SELECT last_seen FROM devices WHERE name = ?", (MARKER,)).fetchone()
    assert values == [230, 260, 261, 230]
    assert states == ["raised", "cleared"]
    assert marker == (4.0,)


@pytest.mark.parametrize("role", ["edge", "core"])
def test_a_nodes_own_hub_calls_no_device_offline(role, tmp_path, hub_clock):
    """The node's Hub of an edge or core gets no data (the partitions' Hubs do): its
    presence must not decide that every device went offline. Commands go through NATS."""
    from hub.cluster.node import build_service
    from hub.cluster.remote import RemoteCommandTarget

    hub = build_hub(config({"cluster": {"nats": "nats://127.0.0.1:1"}}),
                    str(tmp_path / "node"), clock=hub_clock)
    service = build_service(role, hub)
    assert isinstance(hub.commands.targets["dtu"], RemoteCommandTarget)
    assert [s.name for s in service][:3] == ["journal-prune", "metrics-snapshot", "cluster"]
    assert not any(s.name.startswith("sinks.") for s in service)
    assert any(s.name.startswith("transports.") for s in service) == (role == "edge")
    hub.open()
    try:
        hub_clock.advance(3600)
        hub.journal.flush()
        assert hub.journal.active_events() == []
    finally:
        hub.close()


def test_only_the_consumers_next_first_deliveries_are_in_order(tmp_path, hub_clock):
    """A delivery lost to a fetch that timed out, or one that comes again, makes the worker
    start over from its journal's position instead of applying past a gap."""
    w = PartitionWorker(None, SimpleNamespace(settings=ClusterSettings()), 0)
    acks: list[int] = []
    assert w.in_order([Msg(10, b"", acks, 1), Msg(12, b"", acks, 2)])
    assert w.delivered == 2
    assert not w.in_order([Msg(20, b"", acks, 4)])  # delivery 3 went missing
    assert not w.in_order([Msg(20, b"", acks, 3, times=2)])  # a redelivery
    assert w.in_order([Msg(20, b"", acks, 3)]) and w.delivered == 3
