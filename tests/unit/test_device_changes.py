"""Devices added, changed and removed while the hub runs: the registry tells the port's
watchers, and each transport's own index and sessions follow at once (no restart)."""

from __future__ import annotations

import pytest
from twisted.internet import defer
from twisted.internet.testing import StringTransport

from hub.api.live import DeviceRefused, registry_device
from hub.contracts import Gateway
from hub.model import Command, CommandStatus
from hub.store import Device as StoredDevice
from plugins.simulators.demo import SimulatorOptions, SimulatorService
from plugins.transports.coap_lwm2m import options as coap_options
from plugins.transports.coap_lwm2m.registration import parse_query
from plugins.transports.coap_lwm2m.service import Lwm2mService
from plugins.transports.mqtt.service import MqttService, _Pending
from plugins.transports.tcp_dtu import DtuFactory, DtuService

DTU = "861234567890123"
NEW_DTU = "861234567890999"

CONFIG = {
    "alarms": {"defaults": {"temperature": {"alarm": 80}}},
    "models": {"efd": {"type": "modbus_map", "map": "conf/devices/efd-example.yaml",
                       "poll_interval": 10}},
    "transports": {
        "dtu": {"type": "tcp_dtu", "port": 0, "response_timeout": 2, "retries": 1,
                "first_poll_spread": 0},
        "dtu2": {"type": "tcp_dtu", "port": 0},
        "nb": {"type": "coap_lwm2m"},
        "demo": {"type": "simulator", "interval": 5, "period": 100},
        "mq": {"type": "mqtt", "host": "127.0.0.1"},
    },
    "devices": [
        {"id": "efd-1", "model": "efd", "transport": "dtu", "address": {"dtu": DTU, "slave": 1}},
        {"id": "nb-1", "model": "simulated", "transport": "nb", "address": "ep-1"},
        {"id": "sim-1", "model": "simulated", "transport": "demo", "address": "normal"},
        {"id": "mq-1", "model": "simulated", "transport": "mq", "address": "m1"},
    ],
}


@pytest.fixture
def hub(make_hub):
    return make_hub(CONFIG)


def device(hub, id, transport, address, model="efd", **settings):
    return registry_device(hub, StoredDevice(id, id, "", model, transport, address,
                                             settings=settings))


def test_the_port_tells_each_transport_of_its_own_changes(hub):
    seen: dict[str, list[tuple[str, str]]] = {"dtu": [], "dtu2": []}
    stops = [hub.watch_devices(t, lambda c, t=t: seen[t].append((c.kind, c.device.id)))
             for t in seen]
    hub.registry.add(device(hub, "efd-2", "dtu", {"dtu": DTU, "slave": 2}))
    hub.registry.replace(device(hub, "efd-2", "dtu", {"dtu": DTU, "slave": 3}))
    # moved to another transport: gone from one, new on the other
    hub.registry.replace(device(hub, "efd-2", "dtu2", {"dtu": DTU, "slave": 3}))
    hub.registry.remove("efd-2")
    assert seen == {"dtu": [("added", "efd-2"), ("changed", "efd-2"), ("removed", "efd-2")],
                    "dtu2": [("added", "efd-2"), ("removed", "efd-2")]}
    for stop in stops:
        stop()
    hub.registry.add(device(hub, "efd-3", "dtu", {"dtu": DTU, "slave": 4}))
    assert len(seen["dtu"]) == 3


def test_a_failing_watcher_does_not_stop_the_change_or_the_others(hub):
    told = []
    hub.registry.watch(lambda c: 1 / 0)
    hub.registry.watch(told.append)
    hub.registry.add(device(hub, "efd-2", "dtu", {"dtu": DTU, "slave": 2}))
    assert "efd-2" in hub.registry and [c.kind for c in told] == ["added"]


def test_replacing_an_unknown_device_fails(hub):
    with pytest.raises(KeyError):
        hub.registry.replace(device(hub, "nobody", "dtu", {"dtu": DTU, "slave": 9}))
    assert "nobody" not in hub.registry


def test_api_device_settings_are_checked_like_yaml(hub):
    d = device(hub, "efd-2", "dtu", {"dtu": DTU, "slave": 2},
               alarms={"temperature": {"alarm": 70}}, heartbeat={"interval": 20,
                                                                  "timeout_count": 2})
    assert d.alarms["temperature"].alarm == 70 and d.offline_after == 40
    plain = device(hub, "efd-3", "dtu", {"dtu": DTU, "slave": 3})
    assert plain.alarms["temperature"].alarm == 80  # the hub-wide default
    for bad, words in [({"alarms": {"smoke_level": {"alarm": 1}}}, "not an alarm type"),
                       ({"alarms": {"temperature": {"alarm": "hot"}}}, "alarm"),
                       ({"heartbeat": {"interval": 0}}, "interval"),
                       ({"heartbeat": {"every": 5}}, "every")]:
        with pytest.raises(DeviceRefused, match=words) as e:
            device(hub, "efd-4", "dtu", {"dtu": DTU, "slave": 4}, **bad)
        assert e.value.field == "settings"


# ------------------------------------------------------------------------------- tcp_dtu

class Link:
    def __init__(self, factory):
        self.proto = factory.buildProtocol(None)
        self.tr = StringTransport()
        self.proto.makeConnection(self.tr)

    def written(self) -> bytes:
        out = self.tr.value()
        self.tr.clear()
        return out


def poll(hub, slave, device_id):
    model = hub.registry.get(device_id).model
    return model.request(slave, model.plan()[0])


def run(hub, seconds):
    hub.clock.advance(seconds)
    hub.clock.advance(hub.config.journal.commit_interval)


@pytest.fixture
def dtu(hub):
    factory = DtuFactory(hub, "dtu", hub.config.transports["dtu"].options)
    stop = hub.watch_devices("dtu", factory.device_changed)
    yield factory
    stop()


def test_a_connected_dtu_polls_a_new_slave_and_stops_polling_a_deleted_one(hub, dtu):
    link = Link(dtu)
    link.proto.dataReceived(DTU.encode())
    run(hub, 0.02)
    assert link.written() == poll(hub, 1, "efd-1")
    link.proto.session.timer_fired("response", hub.clock.seconds())  # unanswered: retried
    link.written()
    new = device(hub, "efd-7", "dtu", {"dtu": DTU, "slave": 7})
    hub.registry.add(new)
    assert 7 in link.proto.session.slaves
    hub.registry.remove("efd-1")
    assert list(link.proto.session.slaves) == [7] and not link.tr.disconnecting
    run(hub, 5)
    assert poll(hub, 7, "efd-7") in link.written()
    link.written()
    run(hub, 30)
    assert poll(hub, 1, "efd-7") not in link.written()  # slave 1 is never polled again
    hub.registry.remove("efd-7")  # the DTU's last device: its session goes
    assert link.tr.disconnecting and link.proto.session.closed


def test_a_new_dtu_id_is_accepted_at_its_next_connect(hub, dtu):
    first = Link(dtu)
    first.proto.dataReceived(DTU.encode())  # the index is built now
    refused = Link(dtu)
    refused.proto.dataReceived(NEW_DTU.encode())
    assert refused.tr.disconnecting
    hub.registry.add(device(hub, "efd-9", "dtu", {"dtu": NEW_DTU, "slave": 1}))
    again = Link(dtu)
    again.proto.dataReceived(NEW_DTU.encode())
    assert not again.tr.disconnecting
    run(hub, 0.02)
    assert again.written() == poll(hub, 1, "efd-9")


def test_dtu_gateways_list_declared_and_connected_dtus(hub):
    svc = DtuService(hub, "dtu", hub.config.transports["dtu"].options)
    link = Link(svc.factory)
    link.proto.dataReceived(DTU.encode())
    hub.registry.add(device(hub, "efd-9", "dtu", {"dtu": NEW_DTU, "slave": 1}))
    gws = {g.id: g for g in svc.gateways()}
    assert gws[DTU].connected and gws[DTU].devices == ("efd-1",) and gws[DTU].address
    assert gws[DTU].last_seen == hub.clock.seconds() and gws[DTU].kind == "dtu"
    assert not gws[NEW_DTU].connected and gws[NEW_DTU].last_seen is None
    assert gws[NEW_DTU].devices == ("efd-9",)


# ------------------------------------------------------------------------------- coap_lwm2m

def test_lwm2m_endpoint_index_follows_and_a_deleted_device_registration_ends(hub):
    svc = Lwm2mService(hub, "nb", coap_options.CoapOptions())
    svc._index = {d.address_key: d for d in hub.devices("nb")}  # what startService does
    stop = hub.watch_devices("nb", svc.device_changed)
    svc.table.register("nb-1", parse_query(["ep=ep-1", "lt=600"]), [], "10.0.0.9:5683")
    assert svc.gateways()[0].connected and svc.gateways()[0].address == "10.0.0.9:5683"
    hub.registry.add(device(hub, "nb-2", "nb", "ep-2", model="simulated"))
    assert svc.resolve("ep-2").id == "nb-2"
    hub.registry.remove("nb-1")
    assert svc.table.get("nb-1") is None
    assert [g.devices for g in svc.gateways()] == [("nb-2",)]
    assert not svc.gateways()[0].connected
    assert svc.resolve("ep-1") is None  # refused: the index no longer has it
    assert hub.metrics.value("coap.registrations_ended", transport="nb") == 1
    stop()


# ------------------------------------------------------------------------------- mqtt, demo

def test_mqtt_fails_a_deleted_device_commands_and_lists_its_clients(hub):
    svc = MqttService(hub, "mq", hub.config.transports["mq"].options)
    stop = hub.watch_devices("mq", svc.device_changed)
    d: defer.Deferred = defer.Deferred()
    cmd = Command("c-1", "mq-1", "reset", hub.clock.seconds(), ttl=10)
    svc.pending["c-1"] = _Pending(cmd, hub.registry.get("mq-1"), b"", d)
    assert [g.devices for g in svc.gateways()] == [("mq-1",)]
    assert isinstance(svc.gateways()[0], Gateway) and not svc.gateways()[0].connected
    hub.registry.remove("mq-1")
    result = d.result
    assert result.status is CommandStatus.FAILED and "deleted" in result.detail
    assert svc.pending == {} and svc.gateways() == []
    stop()


def test_the_simulator_forgets_a_deleted_device_and_reports_a_new_one(hub):
    svc = SimulatorService(hub, "demo", SimulatorOptions(5, 100))
    svc.startService()
    hub.clock.advance(5)
    assert "sim-1" in svc.devices and svc.gateways()[0].last_seen == hub.clock.seconds()
    hub.registry.remove("sim-1")
    assert "sim-1" not in svc.devices
    hub.registry.add(device(hub, "sim-2", "demo", "overheat", model="simulated"))
    hub.clock.advance(5)
    assert list(svc.devices) == ["sim-2"]
    assert [g.id for g in svc.gateways()] == ["sim-2"]
    svc.stopService()
    hub.registry.remove("sim-2")  # no longer watched: nothing to tell
    assert "sim-2" in svc.devices

