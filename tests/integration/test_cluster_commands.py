"""Commands in cluster mode when the device's edge changes while the command is out: a DTU
that hangs up as the trip's write reaches it and dials in again through HAProxy (landing
on the other edge), and an MQTT device holding its answer while the edge that published
the command is killed. Either way the command ends failed or timed out on the node whose
API accepted it, and the device got the command's frame once: a command request is
published once, carried by one edge, and never repeated by another."""

from __future__ import annotations

import time

import pytest

from tests.support.cluster import (
    FIRST_DTU,
    ApiClient,
    Cluster,
    HeldDtu,
    MqttDevices,
    add_admin,
    add_dtu_device,
    add_mqtt,
    assert_exits,
    journal_rows,
    restart_node,
)
from tests.support.services import Mosquitto, wait_until

PASSWORD = "Adm1n-pass-0042"
HELD = str(int(FIRST_DTU) + 100)
MQTT_DEVICES = ["mq-00", "mq-01"]
ENDED = {"succeeded", "failed", "timed_out"}

pytestmark = pytest.mark.cluster


@pytest.fixture
def cluster(tmp_path):
    broker = Mosquitto(str(tmp_path / "mosquitto")).start()
    c = Cluster(str(tmp_path), dtus=2, api=True)
    add_mqtt(c, broker.port, MQTT_DEVICES)
    held = add_dtu_device(c, HELD)
    add_admin(c.configs["core1"], PASSWORD)
    dtu = devices = None
    try:
        c.start()
        dtu = HeldDtu(c.haproxy.port, HELD).start()
        devices = MqttDevices(broker.port, MQTT_DEVICES, rate=10).start()
        yield c, dtu, held, devices
    finally:
        for peer in (dtu, devices):
            if peer is not None:
                peer.stop()
        codes = c.stop()
        broker.stop()
    assert_exits(c, codes)


def api_of(c: Cluster, node: str) -> ApiClient:
    return ApiClient(c, node, PASSWORD)


def test_a_dtu_that_moves_edges_mid_command_ends_it_failed_and_got_it_once(cluster):
    c, dtu, held, _ = cluster
    wait_until(lambda: c.edge_of(HELD) and len(dtu.polls) >= 4, 30,
               what="the held DTU registered and polled")
    first = c.edge_of(HELD)
    dtu.move_on_write = True
    answer = api_of(c, "core1").trip(held, ttl=8, wait=True)
    assert answer["status"] in ("failed", "timed_out"), answer
    wait_until(lambda: c.edge_of(HELD) not in (None, first), 20,
               what="the DTU registered at the other edge")
    # the new edge polls it for a while: time for a second copy of the write, if any
    moved_to = dtu.connections
    wait_until(lambda: dtu.polls.count(moved_to) >= 6, 20, what="polls after the move")
    assert [n for n, _ in dtu.writes] == [1], dtu.writes  # once, on the first connection
    state = api_of(c, "core1").command(answer["id"])
    assert state["status"] == answer["status"], state
    print(f"trip on a DTU moving {first} -> {c.edge_of(HELD)}: {answer['status']} "
          f"({answer.get('detail') or answer})")


def test_an_mqtt_command_whose_edge_is_killed_before_the_answer_times_out_sent_once(cluster):
    c, _, _, devices = cluster
    device = MQTT_DEVICES[0]
    # an edge subscribes to a device's commands once the device's data came through it
    wait_until(lambda: {r[0] for r in journal_rows(c.tmp)[0]} >= set(MQTT_DEVICES), 30,
               what="readings of the MQTT devices journaled")
    api = api_of(c, "core2")
    devices.hold = True
    answer = api.trip(device, ttl=6, wait=False)
    cid = answer["id"]
    wait_until(lambda: devices.commands.get(device), 15, what="the device got the command")
    carrier = wait_until(lambda: next((e for e in ("edge1", "edge2")
                                       if c.nodes[e].logged(f"command {cid}")), None), 10,
                         what="the edge that carried it")
    c.nodes[carrier].kill()
    killed = time.monotonic()
    state = wait_until(lambda: (s := api.command(cid))["status"] in ENDED and s, 20,
                       what="the command ended")
    assert state["status"] == "timed_out", state
    restart_node(c, carrier).wait_for("broker: subscribed to", 60)
    # the restarted edge and the other one: neither sends it again
    devices.hold = False
    again = api.trip(MQTT_DEVICES[1], ttl=10, wait=True)
    assert again["status"] == "succeeded", again
    assert devices.commands[device] == [cid], devices.commands
    print(f"command carried by {carrier}, killed: {state['status']} "
          f"{time.monotonic() - killed:.1f} s later; the device saw it once")


def test_commands_of_a_node_that_died_end_on_the_others(cluster):
    """core1 accepts two trips and is killed before either ends. The one whose device
    answers afterwards shows succeeded on core2 (its edge wrote the result to the command
    ledger). The other's edge is killed too, so nobody is left to end it: a core ends it
    as timed out after its time to live. Neither device got its command twice."""
    c, _, _, devices = cluster
    wait_until(lambda: {r[0] for r in journal_rows(c.tmp)[0]} >= set(MQTT_DEVICES), 30,
               what="readings of the MQTT devices journaled")
    devices.hold = True
    accepted = api_of(c, "core1")
    answered, silent = (accepted.trip(d, ttl=8, wait=False)["id"] for d in MQTT_DEVICES)
    wait_until(lambda: len(devices.held) == 2, 15, what="both devices got their command")
    c.nodes["core1"].kill()
    assert devices.release(MQTT_DEVICES[0]) == 1
    other = api_of(c, "core2")
    state = wait_until(lambda: (s := other.command(answered))["status"] in ENDED and s, 15,
                       what="the answered command ended on core2")
    assert state["status"] == "succeeded", state
    carrier = next(e for e in ("edge1", "edge2") if c.nodes[e].logged(f"command {silent}"))
    c.nodes[carrier].kill()  # before its own timeout (command_timeout 10 s) ends it
    state = wait_until(lambda: (s := other.command(silent))["status"] in ENDED and s, 30,
                       what="the unanswered command ended by a core")
    assert state["status"] == "timed_out" and "went away" in state["detail"], state
    assert devices.commands == {MQTT_DEVICES[0]: [answered], MQTT_DEVICES[1]: [silent]}
