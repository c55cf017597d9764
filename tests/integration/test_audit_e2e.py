"""End to end: `hub run` as a process, `hub command` through the admin socket to a device on
a real loopback socket, the audit entry on disk before the device hears the command,
`hub audit verify` and `list` against the live file, then a tampered file."""

from __future__ import annotations

import importlib
import json
import socket
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

from tests.support.distribution import PLUGINS, write_distribution
from tests.support.hubproc import BIN, HubProcess
from tests.support.services import free_port


@pytest.fixture
def commands_dist(site_dir):
    write_distribution(site_dir, "hubtest-commands", {"hubtest_commands": "hubtest_commands"},
                       {"hubtest_commands": (PLUGINS / "hubtest_commands.py")
                        .read_text()})
    importlib.invalidate_caches()
    return site_dir


def hub_cli(config: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "hub"), *args, "-c", str(config)], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


class Device(threading.Thread):
    """Answers every command line with `done`, after looking (as another process would)
    whether the audit file already holds the command's entry."""

    def __init__(self, port: int, ident: str, audit_path: Path):
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.file = self.sock.makefile("rwb")
        self.file.write(ident.encode() + b"\n")
        self.file.flush()
        self.audit_path = audit_path
        self.audited_before: dict[str, bool] = {}

    def run(self) -> None:
        for line in self.file:
            _, command_id, action = line.decode().split()
            db = sqlite3.connect(f"file:{self.audit_path}?mode=ro", uri=True)
            self.audited_before[command_id] = db.execute(
                "SELECT count(*) FROM entries WHERE action = 'command.requested' AND "
                "json_extract(body, '$.details.command_id') = ?", (command_id,)).fetchone()[0] == 1
            db.close()
            self.file.write(f"done {command_id}\n".encode())
            self.file.flush()

    def close(self) -> None:
        self.sock.close()


def test_command_through_a_running_hub_is_audited_signed_and_tamper_evident(commands_dist,
                                                                           tmp_path):
    port = free_port()
    config = tmp_path / "hub.yaml"
    config.write_text(yaml.safe_dump({
        "hub": {"state_dir": str(tmp_path / "var")},
        "journal": {"commit_interval_ms": 2},
        "transports": {"wire": {"type": "cmd_line", "port": port}},
        "devices": [{"id": "efd-1", "model": "silent_demo", "transport": "wire",
                     "address": "EFD0001"}],
    }))
    audit_path = tmp_path / "var" / "audit.sqlite"
    hub = HubProcess(config, tmp_path)
    try:
        opened, _ = hub.wait_for_all("checkpoints signed by SHA256:", "hub hub started")
        assert "new key" in opened
        device = Device(port, "EFD0001", audit_path)
        hub.wait_for("cmd_line: efd-1 connected")
        device.start()
        out = hub_cli(config, tmp_path, "command", "--device", "efd-1", "trip", "--by", "alice",
                      "--json")
        assert out.returncode == 0, out.stderr
        answer = json.loads(out.stdout)
        assert answer["status"] == "succeeded"
        assert device.audited_before == {answer["command_id"]: True}

        live = hub_cli(config, tmp_path, "audit", "verify")
        assert live.returncode == 0, live.stdout + live.stderr
        assert "warning: entries 1..3 are not yet signed" in live.stdout
        listed = hub_cli(config, tmp_path, "audit", "list", "--device", "efd-1", "--json")
        trail = [json.loads(line) for line in listed.stdout.splitlines()]
        assert [(e["actor"], e["action"], e["details"]["action"]) for e in trail] == [
            ("alice", "command.requested", "trip"), ("alice", "command.finished", "trip")]
        assert trail[1]["details"]["status"] == "succeeded"
        device.close()
    finally:
        assert hub.stop() == 0, "".join(hub.lines)

    signed = hub_cli(config, tmp_path, "audit", "verify")
    assert signed.returncode == 0, signed.stdout
    assert "OK: the chain is intact and signed up to seq 3" in signed.stdout  # at shutdown

    db = sqlite3.connect(audit_path)
    db.execute("UPDATE entries SET body = replace(body, '\"trip\"', '\"close\"') WHERE seq = 2")
    db.commit()
    db.close()
    tampered = hub_cli(config, tmp_path, "audit", "verify")
    assert tampered.returncode == 1
    assert "BROKEN at seq 2: entry edited" in tampered.stdout
