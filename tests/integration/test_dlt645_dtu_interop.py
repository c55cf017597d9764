"""Interop on loopback: `hub run` polls a DL/T 645 meter we did not write (the PyPI ``dlt645``
package's ``MeterServerService`` on its own TCP server) through a relay that plays the 4G
DTU (registration id, then bytes copied both ways), as tests/test_dtu_interop.py does for
pymodbus. The meter's voltage then goes over the limit and back: the overvoltage alarm is
raised and cleared from its replies."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from tests.support.dlt645 import MAP, fill
from tests.support.dtu_relay import DtuRelay
from tests.support.hubproc import BIN, HubProcess
from tests.support.services import free_port

dlt645 = pytest.importorskip("dlt645")
from dlt645.service.serversvc.server_service import MeterServerService  # noqa: E402

IMEI = "861234567890645"
METER = "000000000161"  # fill()'s


@pytest.fixture
def their_meter():
    meter = fill(MeterServerService.new_tcp_server("127.0.0.1", 0, timeout=5.0))
    assert meter.server.start()
    yield meter
    meter.server.stop()


def test_hub_polls_their_meter_behind_a_relay_dtu(their_meter, tmp_path):
    hub_port = free_port()
    (tmp_path / "interop.yaml").write_text(MAP)
    config = {
        "hub": {"state_dir": str(tmp_path / "var")},
        "journal": {"commit_interval_ms": 5},
        "alarms": {"warning_ratio": 0,
                   "defaults": {"overvoltage": {"alarm": 250, "hysteresis": 2, "delay": 0}}},
        "models": {"meter": {"type": "dlt645", "map": str(tmp_path / "interop.yaml")}},
        "transports": {"dtu": {"type": "tcp_dtu", "host": "127.0.0.1", "port": hub_port,
                               "response_timeout": 1.0, "retries": 1}},
        "devices": [{"id": "meter-1", "model": "meter", "transport": "dtu",
                     "address": {"dtu": IMEI, "slave": METER, "poll_interval": 0.5}}],
    }
    path = tmp_path / "hub.yaml"
    path.write_text(yaml.safe_dump(config))
    cwd = str(BIN.parent.parent)
    hub = HubProcess(path, cwd)
    relay = None
    try:
        hub.wait_for("listening for DTUs")
        relay = DtuRelay(hub_port, their_meter.server.port, IMEI)
        hub.wait_for(f"DTU {IMEI} registered")
        assert their_meter.set_02(0x02010100, 262.5)  # the supply goes over
        hub.wait_for("alarm overvoltage raised on meter-1", timeout=20)
        assert their_meter.set_02(0x02010100, 229.9)
        hub.wait_for("alarm overvoltage cleared on meter-1", timeout=20)
    finally:
        if relay is not None:
            relay.close()
        assert hub.stop() == 0, "".join(hub.lines)
    assert not any("decode" in line.lower() or "does not answer" in line
                   for line in hub.lines), "".join(hub.lines)

    latest = subprocess.run([str(BIN / "hub"), "readings", "-c", str(path), "--device",
                             "meter-1", "--latest", "--json"], cwd=cwd, capture_output=True,
                            text=True, timeout=60)
    got = {(r["quantity"], r["channel"]): r["value"]
           for r in map(json.loads, latest.stdout.splitlines())}
    assert got == {("active_energy", ""): 12345.67, ("voltage", "A"): 229.9,
                   ("current", "A"): -5.123, ("active_power", ""): -1234.5,
                   ("reactive_power", ""): 500.0, ("power_factor", ""): -0.5,
                   ("frequency", ""): 49.98, ("active_demand", ""): 3250.0}, got
