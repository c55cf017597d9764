"""A real hub process with its API on a free loopback port, for the API tests.

The hub runs the built-in simulator (devices in projects ``p1`` and ``p2``) and the toy
``cmd_line`` transport of tests/plugins (device ``efd-1`` in ``p1`` takes commands). The
first admin (``root``) is made with ``hub users add`` before the hub starts, as an operator
would. :func:`populate` builds the organisation and users the authorisation tests use.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.distribution import PLUGINS, write_distribution
from tests.support.hubproc import BIN, CLI_TIMEOUT, HubProcess
from tests.support.services import free_port

ROOT_PASSWORD = "Adm1n-pass-0042"
PASSWORD = "Good-pass-1234"


def hub_cli(config: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """``hub ARGS -c config``, with the test plugins of the hub (tmp/site) importable."""
    path = os.pathsep.join(p for p in (str(config.parent / "site"),
                                       os.environ.get("PYTHONPATH")) if p)
    return subprocess.run([str(BIN / "hub"), *args, "-c", str(config)], cwd=config.parent,
                          capture_output=True, text=True, timeout=CLI_TIMEOUT, input=stdin,
                          env={**os.environ, "PYTHONPATH": path})


class CommandDevice(threading.Thread):
    """Plays device EFD0001 of the cmd_line transport: answers every command ``done``."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        # the 30 s bound is for connecting only: a read timeout would end run() silently,
        # and a command sent after 30 s quiet (a loaded machine) would never be answered
        self.sock.settimeout(None)
        self.file = self.sock.makefile("rwb")
        self.file.write(b"EFD0001\n")
        self.file.flush()

    def run(self) -> None:
        try:
            for line in self.file:
                _, command_id, _action = line.decode().split()
                self.file.write(f"done {command_id}\n".encode())
                self.file.flush()
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()


@dataclass
class ApiHub:
    dir: Path
    config: Path
    proc: HubProcess
    url: str
    device: CommandDevice | None = None
    ids: dict[str, Any] = field(default_factory=dict)

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def login(self, name: str, password: str = PASSWORD) -> str:
        with self.client() as c:
            r = c.post("/api/auth/login", json={"username": name, "password": password})
        assert r.status_code == 200, r.text
        return r.json()["access_token"]

    def audit(self, *args: str) -> list[dict[str, Any]]:
        out = hub_cli(self.config, "audit", "list", "--json", *args)
        assert out.returncode == 0, out.stderr
        return [json.loads(line) for line in out.stdout.splitlines()]

    def stop(self) -> None:
        if self.device is not None:
            self.device.close()
        assert self.proc.stop() == 0, "".join(self.proc.lines)
        errors = [line for line in self.proc.lines
                  if "Traceback" in line or "#error]" in line or "#critical]" in line]
        assert not errors, "".join(self.proc.lines)
        log = "".join(self.proc.lines)
        for secret in (PASSWORD, ROOT_PASSWORD, "hubt_", "hubr_", "hubk_"):
            assert secret not in log, f"a secret ({secret[:5]}...) reached the log"


def start_api_hub(tmp: Path, api: dict[str, Any] | None = None,
                  first_admin: bool = True, extra: dict[str, Any] | None = None) -> ApiHub:
    """``extra`` adds ``transports`` and ``models`` sections to the configuration, the
    ``alarms`` section (its ``defaults`` under each device's own set points), and options of
    the ``rollups`` sink (``rollups``)."""
    extra = extra or {}
    site = tmp / "site"
    write_distribution(site, "hubtest-commands", {"hubtest_commands": "hubtest_commands"},
                       {"hubtest_commands": (PLUGINS / "hubtest_commands.py")
                        .read_text()})
    wire = free_port()
    config = tmp / "hub.yaml"
    config.write_text(yaml.safe_dump({
        "hub": {"name": "apitest", "state_dir": str(tmp / "var")},
        "journal": {"commit_interval_ms": 2},
        "api": {"port": 0, "lockout": {"failures": 3, "minutes": 1},
                "address_throttle": {"failures": 12, "minutes": 1}, **(api or {})},
        "transports": {"demo": {"type": "simulator", "interval": 0.2, "period": 30},
                       "wire": {"type": "cmd_line", "port": wire},
                       **extra.get("transports", {})},
        **{k: extra[k] for k in ("models", "alarms") if k in extra},
        "sinks": {"rollups": {"type": "rollups", "flush_interval": 0.1,
                              **extra.get("rollups", {})}},
        "devices": [
            {"id": "d1", "name": "一号箱", "project": "p1", "model": "simulated",
             "transport": "demo", "address": "overheat", "location": "1F",
             "alarms": {"temperature": {"alarm": 45, "delay": 0}}},
            {"id": "d2", "name": "二号箱", "project": "p2", "model": "simulated",
             "transport": "demo", "address": "normal", "location": "2F"},
            {"id": "efd-1", "name": "断路器", "project": "p1", "model": "silent_demo",
             "transport": "wire", "address": "EFD0001"},
        ],
    }, allow_unicode=True), encoding="utf-8")
    if first_admin:
        made = hub_cli(config, "users", "add", "--role", "admin", "root", "--password-stdin",
                       stdin=ROOT_PASSWORD + "\n")
        assert made.returncode == 0, made.stderr
    return _launch(tmp, config, wire)


def _launch(tmp: Path, config: Path, wire: int) -> ApiHub:
    site = tmp / "site"
    env_before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env_before) if p)
    try:
        proc = HubProcess(config, tmp)
    finally:
        if env_before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = env_before
    line, _ = proc.wait_for_all("API listening on", "hub apitest started")
    url = re.search(r"(https?://127\.0\.0\.1:\d+)/", line).group(1)
    hub = ApiHub(tmp, config, proc, url)
    hub.device = CommandDevice(wire)
    hub.device.start()
    proc.wait_for("cmd_line: efd-1 connected")
    return hub


def restart_api_hub(old: ApiHub) -> ApiHub:
    """Stop ``old`` and start the hub again on its configuration and state (a restart)."""
    old.stop()
    wire = yaml.safe_load(old.config.read_text(encoding="utf-8"))["transports"]["wire"]["port"]
    hub = _launch(old.dir, old.config, wire)
    hub.ids = old.ids
    return hub


@contextlib.contextmanager
def populated_hub(tmp: Path, api: dict[str, Any] | None = None,
                  extra: dict[str, Any] | None = None) -> Iterator[ApiHub]:
    """A running API hub with :func:`populate`'s organisation; stopped (and its log
    checked) at the end."""
    hub = start_api_hub(tmp, api, extra=extra)
    try:
        populate(hub)
        yield hub
    finally:
        hub.stop()


def populate(hub: ApiHub) -> dict[str, Any]:
    """unit U1 with projects p1 and p2, and users: op1 (operator, p1), mgr1 (manager, p1),
    view2 (viewer, p2), aud1 (auditor, p1); an API key of p1; a command on efd-1."""
    ids: dict[str, Any] = {}
    with hub.client(hub.login("root", ROOT_PASSWORD)) as c:
        u1 = c.post("/api/units", json={"name": "U1"}).json()
        ids["unit"] = u1["id"]
        for code, region in (("p1", "华东"), ("p2", "华北")):
            r = c.post("/api/projects", json={"name": f"项目 {code}", "code": code,
                                              "unit_id": u1["id"], "region": region,
                                              "leader": "张三"})
            assert r.status_code == 201, r.text
            ids[code] = r.json()["id"]
        for name, role, node in (("op1", "operator", "p1"), ("mgr1", "manager", "p1"),
                                 ("view2", "viewer", "p2"), ("aud1", "auditor", "p1")):
            r = c.post("/api/users", json={"name": name, "password": PASSWORD, "role": role,
                                           "node_id": ids[node]})
            assert r.status_code == 201, r.text
            ids[name] = r.json()["id"]
            ids[f"{name}.grant"] = r.json()["grants"][0]["id"]
        key = c.post("/api/api-keys", json={"name": "upstream", "role": "viewer",
                                            "node_id": ids["p1"]})
        assert key.status_code == 201, key.text
        ids["key"] = key.json()["id"]
        ids["key.secret"] = key.json()["key"]
    hub.ids = ids
    return ids
