"""Interop on loopback: `hub run` polls a Modbus stack we did not write (pymodbus, RTU framed)
through a relay that plays the 4G DTU: registration bytes, then bytes copied both ways.

An over-temperature is raised and cleared (the test rewrites the slave's register), then the
slave goes silent and the device goes offline while the DTU stays connected."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
import yaml
from twisted.internet.task import Clock

from hub.journal import Journal
from plugins.protocols.modbus import rtu
from tests.support.dtu_relay import DtuRelay
from tests.support.hubproc import BIN, HubProcess
from tests.support.services import free_port

IMEI = "861234567890123"


@pytest.fixture
def slave(tmp_path):
    port = free_port()
    regs = {0x0000: 35, 0x0001: 900, 0x0002: 0x7FFF, 0x0003: 240, 0x0004: 251,
            0x0008: 2205, 0x0009: 2210, 0x000A: 2199}
    args = [f"{a}={v}" for a, v in regs.items()]
    log = open(tmp_path / "pymodbus.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.peers.modbus_slave", str(port),
                             *args], stdout=subprocess.PIPE, stderr=log, text=True)
    assert proc.stdout.readline().strip() == "ready"
    yield port, proc
    proc.kill()
    proc.wait(timeout=10)
    log.close()


def write_register(port: int, address: int, value: int) -> None:
    """Change a measurement of the slave, as its sensor would, with a write on a second
    connection (pymodbus serves several)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        req = rtu.write_register(1, address, value)
        s.sendall(req)
        assert s.recv(64) == req


def read_coil(port: int, address: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(rtu.read_request(1, 1, address, 1))
        return rtu.bits_of(rtu.read_data(s.recv(64), 1, 1, 1), 1)[0]


def hub_command(config, cwd, action: str, *args: str) -> dict:
    """`hub command` against the running hub, as an operator would type it."""
    out = subprocess.run([str(BIN / "hub"), "command", "-c", str(config), "--device", "efd-1",
                          action, "--json", "--ttl", "10", *args], cwd=cwd,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode in (0, 1), out.stderr
    return json.loads(out.stdout)


def holding_register_map(tmp_path) -> str:
    """The example map with its measurements read as holding registers (FC03), which a test
    can change; pymodbus keeps input registers read-only."""
    data = yaml.safe_load(open("conf/devices/efd-example.yaml", encoding="utf-8"))
    for item in data["points"] + data["status"]:
        item["function"] = 3
    path = tmp_path / "efd-hr.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return str(path)


def test_hub_polls_pymodbus_behind_a_relay_dtu(slave, tmp_path):
    """Readings from pymodbus reach the journal; the alarm is raised and cleared; a silent
    slave goes offline."""
    slave_port, slave_proc = slave
    hub_port = free_port()
    config = {
        "hub": {"state_dir": str(tmp_path / "var")},
        "alarms": {"warning_ratio": 0, "defaults": {"temperature": {"alarm": 80}}},
        "models": {"efd": {"type": "modbus_map", "map": holding_register_map(tmp_path)}},
        "transports": {"dtu": {"type": "tcp_dtu", "host": "127.0.0.1", "port": hub_port,
                               "response_timeout": 0.5, "retries": 1}},
        "devices": [{"id": "efd-1", "model": "efd", "transport": "dtu",
                     "address": {"dtu": IMEI, "slave": 1, "poll_interval": 0.5},
                     "heartbeat": {"interval": 1, "timeout_count": 3}}],
    }
    path = tmp_path / "hub.yaml"
    path.write_text(yaml.safe_dump(config))
    cwd = str(BIN.parent.parent)  # the checkout: the map path is relative to it
    hub = HubProcess(path, cwd)
    relay = None
    try:
        hub.wait_for("listening for DTUs")
        relay = DtuRelay(hub_port, slave_port, IMEI)
        hub.wait_for(f"DTU {IMEI} registered")
        hub.wait_for("alarm temperature raised on efd-1")
        trip = hub_command(path, cwd, "trip", "--by", "tester")
        assert (trip["ok"], trip["status"]) == (True, "succeeded")
        assert read_coil(slave_port, 0x0003) is True  # the slave really has it
        refused = hub_command(path, cwd, "set_threshold", "--channel", "T1", "--param",
                              "rule=temperature", "--param", "value=500")
        assert refused["status"] == "failed" and "500" in refused["detail"]
        write_register(slave_port, 0x0001, 253)  # 25.3 °C
        hub.wait_for("alarm temperature cleared on efd-1")
        slave_proc.kill()  # the slave falls silent; the DTU link stays
        hub.wait_for("device efd-1 offline")
        assert any("slave 1 (efd-1) does not answer" in line for line in hub.lines)
    finally:
        if relay is not None:
            relay.close()
        assert hub.stop() == 0
    out = subprocess.run([str(BIN / "hub"), "events", "-c", str(path), "--json"], cwd=cwd,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    events = [json.loads(line) for line in out.splitlines()]
    temp = [(e["state"], e["source"]) for e in events if e["code"] == "temperature"]
    assert temp == [("raised", "hub"), ("cleared", "hub")]
    cleared = next(e for e in events if e["code"] == "temperature" and e["state"] == "cleared")
    assert cleared["peak"] == 90.0
    assert [e["state"] for e in events if e["code"] == "offline"] == ["raised"]
    out = subprocess.run([str(BIN / "hub"), "readings", "-c", str(path), "--device", "efd-1",
                          "--latest", "--json"], cwd=cwd, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    latest = {(r["quantity"], r["channel"]): r["value"] for r in map(json.loads,
                                                                      out.splitlines())}
    assert latest[("voltage", "A")] == pytest.approx(220.5)
    assert latest[("temperature", "T1")] == pytest.approx(25.3)
    assert ("temperature", "T2") not in latest  # 0x7FFF: probe not fitted
    journal = Journal(str(tmp_path / "var" / "journal.sqlite"), clock=Clock(), readonly=True)
    journal.open()
    lifecycle = [r for _, r in journal.read(0, 100_000, {"command", "command_result"})]
    journal.close()
    trip_cmd = next(r for r in lifecycle if getattr(r, "action", None) == "trip")
    assert trip_cmd.requested_by == "tester"
    assert [r.status.value for r in lifecycle
            if getattr(r, "command_id", None) == trip_cmd.id] == ["sent", "succeeded"]
