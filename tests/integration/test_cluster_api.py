"""The API of any cluster node shows any device: its history and latest readings come from
the core owning the device's partition (a NATS request), its online state from the shared
presence bucket. Every node answers the same as the partition's journal says, owner or
not, edge or core; and a device that goes silent is offline on every node."""

from __future__ import annotations

import time

import pytest
import yaml

from hub.cluster.wire import device_token, partition_of
from tests.support.cluster import ApiClient, Cluster, add_admin, assert_exits, journal_rows
from tests.support.services import wait_until

PASSWORD = "Adm1n-pass-0042"
NODES = ("core1", "core2", "edge1", "edge2")

pytestmark = pytest.mark.cluster


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(str(tmp_path), dtus=6, api=True)
    for path in c.configs.values():  # offline after 2 s of silence, not the default 3 min
        with open(path) as f:
            config = yaml.safe_load(f)
        config["presence"] = {"heartbeat_interval": 1, "timeout_count": 2}
        for d in config["devices"]:
            d["heartbeat"] = {"interval": 1, "timeout_count": 2}
        with open(path, "w") as f:
            yaml.safe_dump(config, f)
    add_admin(c.configs["core1"], PASSWORD)
    try:
        yield c.start()
    finally:
        codes = c.stop()
    assert_exits(c, codes)


def test_every_node_shows_history_latest_and_online_state_of_every_device(cluster):
    c = cluster
    wait_until(lambda: {r[0] for r in journal_rows(c.tmp)[0]} >= set(c.devices), 40,
               what="readings of every device")
    start = time.time()
    until = start + 4
    wait_until(lambda: {r[0] for r in journal_rows(c.tmp)[0] if r[3] > until + 1}
               >= set(c.devices), 40, what="readings of every device past the range")
    owners = c.owners()
    apis = {n: ApiClient(c, n, PASSWORD).http for n in NODES}
    for device in c.devices:
        p = partition_of(device_token(device), c.partitions)
        journal = sorted(r[3] for r in journal_rows(c.tmp)[0]
                         if r[0] == device and r[2] == "voltage" and r[1] == "A"
                         and start <= r[3] <= until)
        assert journal, device
        answers = {}
        for node, h in apis.items():
            r = h.get(f"/api/devices/{device}/history", params={
                "quantity": "voltage", "channel": "A", "since": start, "until": until,
                "points": 5000})
            assert r.status_code == 200, (node, r.text)
            answers[node] = r.json()
        # owner or not, edge or core: the partition's journal, the same on every node
        assert answers[owners[p]]["raw_points"] == len(journal), (device, answers[owners[p]])
        assert all(a == answers[owners[p]] for a in answers.values()), (device, p, owners)
        latest = {n: h.get(f"/api/devices/{device}/readings",
                           params={"quantity": "voltage"}).json() for n, h in apis.items()}
        assert latest["core1"] and all(v for v in latest.values()), latest
        assert {n: {r["channel"] for r in v} for n, v in latest.items()} == \
            {n: {"A", "B", "C"} for n in NODES}
    wait_until(lambda: all(h.get(f"/api/devices/{d}").json()["online"] is True
                           for h in apis.values() for d in c.devices), 15,
               what="every device online on every node")
    listed = apis["edge2"].get("/api/devices", params={"online": True, "limit": 100}).json()
    assert {d["id"] for d in listed["items"]} >= set(c.devices)
    c.stop_sim()
    wait_until(lambda: all(h.get(f"/api/devices/{d}").json()["online"] is False
                           for h in apis.values() for d in c.devices), 30,
               what="every device offline on every node")
    for h in apis.values():
        h.close()
