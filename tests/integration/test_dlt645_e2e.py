"""End to end: `hub run` and `hub simulate dtu` as processes over loopback, with a Modbus
detector and two DL/T 645 meters on one simulated RS-485 line behind one DTU: readings of
both protocols in `hub readings`, an overvoltage alarm from a meter's voltages, a trip
refused where the map does not enable it and carried out where it does (the password from
`{env: ...}`), every command in the audit trail."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.support.dtu_sim import EFD, ROOT, SimProcess, hub_cli
from tests.support.hubproc import BIN, HubProcess
from tests.support.services import free_port

METER_MAP = ROOT / "conf/devices/dlt645-meter-example.yaml"
DTU = "861234567890777"
PASSWORD = "9F3E7D"  # appears in no id or hash (upper-case hex)


def armed_map(tmp_path: Path) -> Path:
    text = METER_MAP.read_text(encoding="utf-8").replace("  trip: false", "  trip: true")
    path = tmp_path / "meter-armed.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_modbus_and_dlt645_on_one_line_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("METER_PASSWORD", PASSWORD)  # the hub process inherits it
    port = free_port()
    devices = {"efd-1": ("efd", 1), "meter-1": ("meter", "000000000161"),
               "meter-2": ("meter_armed", "000000000162")}
    config = {
        "hub": {"state_dir": str(tmp_path / "var")},
        "journal": {"commit_interval_ms": 5},
        "alarms": {"warning_ratio": 0,
                   "defaults": {"overvoltage": {"alarm": 250, "hysteresis": 2, "delay": 0}}},
        "models": {
            "efd": {"type": "modbus_map", "map": EFD},
            "meter": {"type": "dlt645", "map": str(METER_MAP), "response_timeout": 1.0},
            "meter_armed": {"type": "dlt645", "map": str(armed_map(tmp_path)),
                            "password": {"env": "METER_PASSWORD"}, "operator": "00000042",
                            "time_sync_interval": 3600},
        },
        "transports": {"dtu": {"type": "tcp_dtu", "host": "127.0.0.1", "port": port,
                               "heartbeat": "hex:FE FE", "response_timeout": 0.5}},
        "devices": [{"id": d, "model": m, "transport": "dtu",
                     "address": {"dtu": DTU, "slave": s, "poll_interval": 0.5}}
                    for d, (m, s) in devices.items()],
    }
    path = tmp_path / "hub.yaml"
    path.write_text(yaml.safe_dump(config))
    hub = HubProcess(path, ROOT)
    sim = None
    try:
        hub.wait_for("listening for DTUs", timeout=30)
        sim = SimProcess(
            [str(BIN / "hub"), "simulate", "dtu", "--connect",
             f"127.0.0.1:{port}", "--id", DTU, "--map", EFD, "--slaves", "1",
             "--meter-map", str(METER_MAP), "--meters", "000000000161,000000000162",
             "--meter-password", PASSWORD, "--episode", "overvoltage", "--period", "8",
             "--status-interval", "0.5"], ROOT)
        hub.wait_for(f"DTU {DTU} registered", timeout=15)
        hub.wait_for("alarm overvoltage raised on meter-1", timeout=20)
        refused = hub_cli(path, "command", "--device", "meter-1", "trip", "--json", "--ttl",
                          "10", "--by", "tester")
        refused_answer = json.loads(refused.stdout)
        assert refused_answer["status"] == "failed", refused.stdout + refused.stderr
        assert "trip is not enabled by the map" in refused_answer["detail"]
        trip = hub_cli(path, "command", "--device", "meter-2", "trip", "--json", "--ttl",
                       "10", "--by", "tester")
        assert trip.returncode == 0, trip.stdout + trip.stderr
        answer = json.loads(trip.stdout)
        assert answer["status"] == "succeeded", answer
        sim.wait_for("requests answered", timeout=10)
    finally:
        code_sim = sim.stop() if sim is not None else 0
        code = hub.stop()
    assert code_sim == 0 and code == 0, "".join(hub.lines)
    assert not any("does not answer" in line for line in hub.lines), "".join(hub.lines)

    for device in ("efd-1", "meter-1", "meter-2"):
        latest = hub_cli(path, "readings", "--device", device, "--latest", "--json")
        assert latest.returncode == 0, latest.stderr
        got = {(r["quantity"], r["channel"]): r["value"]
               for r in map(json.loads, latest.stdout.splitlines())}
        assert 200 <= got[("voltage", "A")] <= 290, (device, got)
        if device != "efd-1":
            assert got[("frequency", "")] == pytest.approx(50, abs=0.1)
            assert got[("active_energy", "")] >= 12000
    history = hub_cli(path, "readings", "--device", "meter-1", "--quantity", "voltage",
                      "--channel", "A", "--json")
    assert max(json.loads(line)["value"] for line in history.stdout.splitlines()) > 250

    listed = hub_cli(path, "audit", "list", "--json")
    trail = [json.loads(line) for line in listed.stdout.splitlines()]
    commands = [(e["subject"], e["action"], e["details"].get("status"))
                for e in trail if e["action"].startswith("command.")]
    assert commands == [("meter-1", "command.requested", None),
                        ("meter-1", "command.finished", "failed"),
                        ("meter-2", "command.requested", None),
                        ("meter-2", "command.finished", "succeeded")], trail
    assert PASSWORD not in listed.stdout and PASSWORD not in "".join(hub.lines)
    doc = json.loads(hub_cli(path, "metrics", "--json").stdout)
    syncs = sum(m["value"] for m in doc["metrics"] if m["name"] == "dtu.broadcasts")
    assert syncs >= 1  # meter_armed's time sync, as the line came up
