"""A device change made through the API reaching a running transport, end to end: a real
hub (``hub run``) with ``tcp_dtu`` and ``coap_lwm2m`` transports, a simulated DTU
(``hub simulate dtu``) and a simulated LwM2M detector (``hub simulate lwm2m``), on loopback.

- A DTU whose id the hub does not know is refused; once a device behind it is created
  through the API the DTU is accepted at its next connect (no restart) and polled; when that
  device (its last one) is deleted, its session is closed and the DTU refused again.
- An LwM2M endpoint created through the API registers and reports; deleting its device ends
  the registration, and its next request is refused as an unknown endpoint's.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.support.api_hub import ROOT_PASSWORD, populated_hub
from tests.support.dtu_sim import EFD, ROOT, SimProcess
from tests.support.hubproc import BIN
from tests.support.services import free_port, free_udp_port, wait_until

DTU = "861234567890555"
IMEI = "861234567890000"  # `hub simulate lwm2m`'s first endpoint ...
ENDPOINT = f"urn:imei:{IMEI}"  # ... by the name it registers with


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    dtu_port, coap_port = free_port(), free_udp_port()
    extra = {
        "models": {"efd": {"type": "modbus_map", "map": EFD},
                   "nb-efd": {"type": "lwm2m_ipso"}},
        "transports": {
            "dtu": {"type": "tcp_dtu", "host": "127.0.0.1", "port": dtu_port,
                    "heartbeat": "hex:FE FE", "response_timeout": 0.5},
            "nb": {"type": "coap_lwm2m", "host": "127.0.0.1", "port": coap_port,
                   "queue_window": 0.3, "request_timeout": 1, "lifetime_grace": 1,
                   "lifetime_grace_ratio": 0}},
    }
    with populated_hub(tmp_path_factory.mktemp("live"), extra=extra) as hub:
        hub.dtu_port, hub.coap_port = dtu_port, coap_port
        with hub.client(hub.login("root", ROOT_PASSWORD)) as root:
            hub.root = root
            yield hub


def has_readings(root, device: str) -> bool:
    r = root.get(f"/api/devices/{device}")
    return r.status_code == 200 and bool(r.json()["readings"])


def test_a_new_dtu_id_is_accepted_at_its_next_connect_and_closed_when_deleted(live):
    hub, root = live, live.root
    sim = SimProcess([str(BIN / "hub"), "simulate", "dtu", "--connect",
                      f"127.0.0.1:{hub.dtu_port}", "--id", DTU, "--map", EFD, "--slaves", "1",
                      "--status-interval", "0.5"], ROOT)
    try:
        hub.proc.wait_for(f"unknown DTU id '{DTU}'", timeout=30)  # not a device yet
        made = root.post("/api/devices", json={
            "id": "api-efd-1", "name": "新配电箱", "project": "p1", "model": "efd",
            "transport": "dtu", "address": {"dtu": DTU, "slave": 1, "poll_interval": 0.5}})
        assert made.status_code == 201, made.text
        # the simulator dials again after its back-off: the hub knows the id now
        hub.proc.wait_for(f"DTU {DTU} registered on dtu", timeout=30)
        wait_until(lambda: has_readings(root, "api-efd-1"), 30, 0.1, "readings of api-efd-1")
        gateways = root.get("/api/gateways", params={"transport": "dtu"}).json()
        assert [(g["id"], g["connected"], g["devices"]) for g in gateways] == \
            [(DTU, True, ["api-efd-1"])]
        assert root.delete("/api/devices/api-efd-1").status_code == 204
        hub.proc.wait_for(f"DTU {DTU}: its last device api-efd-1 was deleted; closing its "
                          "session", timeout=10)
        hub.proc.wait_for(f"DTU {DTU} disconnected from dtu", timeout=10)
        # and when it dials again it is a stranger once more
        hub.proc.wait_for(f"unknown DTU id '{DTU}'", timeout=30)
        assert root.get("/api/gateways", params={"transport": "dtu"}).json() == []
    finally:
        sim.stop()


def test_an_lwm2m_endpoint_created_through_the_api_registers_and_ends_when_deleted(live):
    hub, root = live, live.root
    made = root.post("/api/devices", json={
        "id": "api-nb-1", "name": "NB 探测器", "project": "p2", "model": "nb-efd",
        "transport": "nb", "address": IMEI})
    assert made.status_code == 201, made.text
    sim = subprocess.Popen(
        [str(BIN / "hub"), "simulate", "lwm2m", "--server", f"127.0.0.1:{hub.coap_port}",
         "--count", "1", "--ramp-delay", "0", "--ramp-up", "1", "--ramp-hold", "600",
         "--ramp-every", "0", "--interval", "0.5", "--lifetime", "4", "--update-interval",
         "1", "--duration", "60"], cwd=ROOT, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        hub.proc.wait_for(f"nb: api-nb-1 registered as '{ENDPOINT}'", timeout=30)
        wait_until(lambda: has_readings(root, "api-nb-1"), 30, 0.1, "readings of api-nb-1")
        gateways = root.get("/api/gateways", params={"transport": "nb"}).json()
        assert [(g["connected"], g["devices"]) for g in gateways] == [(True, ["api-nb-1"])]
        assert root.delete("/api/devices/api-nb-1").status_code == 204
        hub.proc.wait_for(f"nb: registration of api-nb-1 ({ENDPOINT}) ended: the device was "
                          "deleted", timeout=10)
        # its next Update (or registration) names an endpoint the hub no longer has
        hub.proc.wait_for(f"refused unknown endpoint '{ENDPOINT}'", timeout=30)
    finally:
        sim.terminate()
        sim.wait(timeout=30)
