"""End to end: `hub run` as a process, a device on a real loopback socket through the test
vendor's transport, the CLI reading the live journal, SIGTERM, and a restart."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from tests.support.hubcli import cli
from tests.support.hubproc import BIN, CLI_TIMEOUT, HubProcess
from tests.support.line_device import Device
from tests.support.services import free_port


@pytest.fixture
def setup(vendor_dist, tmp_path):
    port = free_port()
    config = {
        "hub": {"state_dir": str(tmp_path / "var")},
        "journal": {"commit_interval_ms": 2},
        "alarms": {"defaults": {"temperature": {"alarm": 80, "hysteresis": 2}}},
        "transports": {"lines": {"type": "line_tcp", "port": port}},
        # presence's default bound (3 × 60 s) is shorter than this test on a loaded machine
        # (each `hub` command there took 20 s and more): efd-1 then went offline between its
        # frames, or at the restart, and that fault is not what the test counts
        "devices": [{"id": "efd-1", "model": "json_demo", "transport": "lines",
                     "address": "EFD0001", "name": "1号配电箱",
                     "heartbeat": {"interval": 3600, "timeout_count": 3}}],
    }
    path = tmp_path / "hub.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    return path, port


def test_device_to_journal_to_cli_and_restart(setup, tmp_path):
    """Frames are acked after commit, bad frames are counted without dropping the
    connection, the CLI reads the live journal, SIGTERM commits, and a restart neither
    raises the active alarm again nor loses its clear."""
    config, port = setup
    hub = HubProcess(config, tmp_path)
    try:
        started = hub.wait_for("hub hub started")
        assert "AsyncioSelectorReactor" in started  # aiocoap will share this loop
        stranger = socket.create_connection(("127.0.0.1", port), timeout=60)
        stranger.sendall(b"NOT-REGISTERED\n")
        assert stranger.recv(100) == b""  # refused: connection closed
        stranger.close()

        dev = Device(port, "EFD0001")
        assert dev.send({"temperature/T1": 25.0, "voltage/A": 220.0}).startswith("ok ")
        assert dev.send({"temperature/T1": 91.5}).startswith("ok ")
        dev.send_raw(b"{not json")
        assert dev.file.readline().startswith(b"error not JSON")
        assert dev.send({"alarm/fault_arc": 1}).startswith("ok ")  # device-reported flag
        assert dev.send({"alarm/fault_arc": 1}).startswith("ok ")  # repeated: one raise

        readings = cli(config, tmp_path, "readings", "--device", "efd-1")
        assert [(r["quantity"], r["channel"], r["value"], r["unit"]) for r in readings] == [
            ("temperature", "T1", 25.0, "°C"), ("voltage", "A", 220.0, "V"),
            ("temperature", "T1", 91.5, "°C")]
        events = cli(config, tmp_path, "events")
        assert sorted((e["code"], e["level"], e["state"], e["source"]) for e in events) == [
            ("fault_arc", "alarm", "raised", "device"),
            ("temperature", "alarm", "raised", "hub"),
            ("temperature", "warning", "raised", "hub")]
        devices = cli(config, tmp_path, "devices")
        assert devices[0]["id"] == "efd-1" and devices[0]["online"] is True
        assert devices[0]["active_events"] == 3
        dev.close()
    finally:
        code = hub.stop()
    log = "".join(hub.lines)
    assert code == 0, log
    assert "journal committed at seq" in log
    assert "refused unknown device 'NOT-REGISTERED'" in log
    out = subprocess.run([str(BIN / "hub"), "metrics", "-c", str(config), "--json"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=CLI_TIMEOUT, check=True).stdout
    metrics = {(m["name"], tuple(sorted(m["labels"].items()))): m["value"]
               for m in json.loads(out)["metrics"]}
    assert json.loads(out)["running"] is False  # the last snapshot, and said so
    stopped = subprocess.run([str(BIN / "hub"), "devices", "-c", str(config), "--json"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=CLI_TIMEOUT,
                             check=True)
    assert "the hub is not running (since " in stopped.stderr
    assert [json.loads(line)["online"] for line in stopped.stdout.splitlines()] == [None]
    assert metrics[("registry.refused", (("transport", "lines"),))] == 1
    assert metrics[("transport.decode_errors", (("transport", "lines"),))] == 1
    assert metrics[("ingest.readings", ())] == 3

    hub = HubProcess(config, tmp_path)
    try:
        hub.wait_for("3 active alarms/faults restored")
        hub.wait_for("hub hub started")
        dev = Device(port, "EFD0001")
        assert dev.send({"temperature/T1": 95.0}).startswith("ok ")  # still raised
        assert dev.send({"temperature/T1": 30.0, "alarm/fault_arc": 0}).startswith("ok ")
        dev.close()
        events = cli(config, tmp_path, "events")
        recent = cli(config, tmp_path, "readings", "--device", "efd-1", "--since", "10m")
        assert [r["value"] for r in recent][-2:] == [95.0, 30.0]
        future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        assert cli(config, tmp_path, "readings", "--device", "efd-1", "--since", future) == []
    finally:
        assert hub.stop(signal.SIGINT) == 0  # Ctrl-C: the same clean shutdown as SIGTERM
    assert "journal committed at seq" in "".join(hub.lines)
    raised = [e for e in events if e["state"] == "raised"]
    cleared = [e for e in events if e["state"] == "cleared"]
    assert len(raised) == 3
    assert {e["id"] for e in cleared} == {e["id"] for e in raised}
    temp_alarm = next(e for e in cleared if e["code"] == "temperature" and e["level"] == "alarm")
    assert temp_alarm["peak"] == 95.0


def test_cursor_of_a_removed_sink_is_reported_and_dropped(setup, tmp_path):
    """A cursor no configured sink sets (a sink removed from the config) would hold every
    later record back from retention for ever: the hub says so, `hub cursors` shows it, and
    `hub cursors --drop` forgets it through the running hub, which refuses names it does not
    know."""
    from twisted.internet.task import Clock

    from hub.journal import Journal

    config, _ = setup
    data = yaml.safe_load(config.read_text())
    data["journal"]["prune_interval"] = 1
    # rollups run by default, with a cursor of their own: not the subject here
    data["sinks"] = {**(data.get("sinks") or {}), "rollups": {"type": "rollups",
                                                              "enabled": False}}
    config.write_text(yaml.safe_dump(data, allow_unicode=True))
    (tmp_path / "var").mkdir()
    j = Journal(str(tmp_path / "var" / "journal.sqlite"), clock=Clock())
    j.open()
    j.set_cursor("old-influx", 0)
    j.close()

    hub = HubProcess(config, tmp_path)
    try:
        hub.wait_for("journal cursor 'old-influx' belongs to no configured sink")
        assert cli(config, tmp_path, "cursors") == [{"name": "old-influx", "seq": 0,
                                                      "behind": 0}]
        run = [str(BIN / "hub"), "cursors", "-c", str(config), "--drop"]
        out = subprocess.run(run + ["nope"], cwd=tmp_path, capture_output=True, text=True,
                             timeout=CLI_TIMEOUT)
        assert out.returncode == 2 and "no cursor named 'nope'" in out.stderr
        out = subprocess.run(run + ["old-influx"], cwd=tmp_path, capture_output=True,
                             text=True, timeout=CLI_TIMEOUT)
        assert out.returncode == 0, out.stderr
        assert cli(config, tmp_path, "cursors") == []
    finally:
        assert hub.stop() == 0
    assert "journal cursor 'old-influx' dropped by" in "".join(hub.lines)


def test_parse_time_takes_durations_and_iso_times():
    from argparse import ArgumentTypeError

    from hub.cli import parse_time

    assert parse_time("15m", now=10_000.0) == 10_000.0 - 900
    assert parse_time("2h", now=10_000.0) == 10_000.0 - 7200
    assert parse_time("1.5d", now=200_000.0) == 200_000.0 - 129_600
    assert parse_time("2026-12-04T08:00:00Z") == 1796371200.0
    assert parse_time("2026-12-04T16:00:00+08:00") == 1796371200.0
    with pytest.raises(ArgumentTypeError, match="neither a duration"):
        parse_time("yesterday")
