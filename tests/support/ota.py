"""A hub with the API and a ``coap_lwm2m`` transport of queue-mode detectors, and the LwM2M
simulator's fleet in a thread of this process (so a test reads each simulated device's
firmware history directly), for the OTA tests."""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import httpx
import yaml

from plugins.simulators.lwm2m.endpoint import EndpointOptions
from plugins.simulators.lwm2m.firmware import Behaviour
from plugins.simulators.lwm2m.fleet import Fleet, imeis
from plugins.simulators.scenario import Ramp, Scenario
from tests.support.api_hub import ROOT_PASSWORD, hub_cli
from tests.support.hubproc import HubProcess
from tests.support.services import free_udp_port

IMEI_BASE = 861234567800000

#: short phases, so that a test ends in seconds; a sleepy device still wakes within them
LIMITS = {"check": 150, "reset": 150, "deliver": 240, "download": 240, "update": 150,
          "verify": 150, "poll_after": 4, "tries": 5, "attempts": 3}


class OtaHub:
    def __init__(self, tmp: Path, count: int, api: dict[str, Any] | None = None,
                 block: int = 512, limits: dict[str, float] | None = None,
                 queue_window: float = 1.0) -> None:
        self.port = free_udp_port()
        self.ids = imeis(IMEI_BASE, count)
        self.devices = [f"nb-{i:04d}" for i in range(count)]
        config = tmp / "hub.yaml"
        config.write_text(yaml.safe_dump({
            "hub": {"name": "otatest", "state_dir": str(tmp / "var")},
            "journal": {"commit_interval_ms": 5},
            "api": {"port": 0, "ota": {"limits": {**LIMITS, **(limits or {})}, **(api or {})}},
            "transports": {"nb": {"type": "coap_lwm2m", "host": "127.0.0.1",
                                  "port": self.port, "queue_window": queue_window,
                                  "request_timeout": 2.0, "attempts": 6,
                                  "firmware_block": block}},
            "models": {"nb-efd": {"type": "lwm2m_ipso"}},
            "devices": [{"id": d, "name": d, "project": "p1", "model": "nb-efd",
                         "transport": "nb", "address": imei}
                        for d, imei in zip(self.devices, self.ids, strict=True)],
        }), encoding="utf-8")
        made = hub_cli(config, "users", "add", "--role", "admin", "root", "--password-stdin",
                       stdin=ROOT_PASSWORD + "\n")
        assert made.returncode == 0, made.stderr
        self.config = config
        self.proc = HubProcess(config, tmp)
        line, _ = self.proc.wait_for_all("API listening on", "hub otatest started")
        self.url = re.search(r"(https?://127\.0\.0\.1:\d+)/", line).group(1)
        with httpx.Client(base_url=self.url, timeout=30) as c:
            r = c.post("/api/auth/login", json={"username": "root", "password": ROOT_PASSWORD})
            assert r.status_code == 200, r.text
            self.token = r.json()["access_token"]
        with self.client() as c:
            r = c.post("/api/projects", json={"name": "项目 p1", "code": "p1"})
            assert r.status_code == 201, r.text

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30,
                            headers={"Authorization": f"Bearer {self.token}"})

    def publish(self, image: bytes, version: str = "2.0.0") -> str:
        """Upload ``image`` to p1 and start a campaign of it (its device need not be
        there: the campaign publishes the image); the image's CoAP URI."""
        sha = hashlib.sha256(image).hexdigest()
        with self.client() as c:
            r = c.post("/api/firmware", params={"project": "p1", "version": version,
                                                "models": "nb-efd"},
                       content=image, headers={"Content-Type": "application/octet-stream"})
            assert r.status_code == 201, r.text
            assert r.json()["sha256"] == sha
            r = c.post("/api/ota/campaigns", json={"project": "p1",
                                                   "firmware_id": r.json()["id"]})
            assert r.status_code == 201, r.text
        return f"coap://127.0.0.1:{self.port}/fw/{sha[:16]}"

    def stop(self) -> str:
        rc = self.proc.stop()
        log = "".join(self.proc.lines)
        assert rc == 0, log
        return log


class SimFleet:
    """The simulator's endpoints on an event loop of their own thread."""

    def __init__(self, hub: OtaHub, behaviours: list[Behaviour], version: str = "1.1.1",
                 update_interval: float = 2.0, window: float = 1.5) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        options = EndpointOptions(server=("127.0.0.1", hub.port), lifetime=120, interval=30,
                                  queue=True, update_interval=update_interval, window=window)

        async def make() -> Fleet:
            fleet = Fleet(options, hub.ids, lambda imei: Scenario("normal", Ramp(), imei),
                          ramp=500, concurrency=64)
            fleet.set_firmware(version, behaviours)
            await fleet.open()
            await fleet.start()
            return fleet
        self.fleet: Fleet = self.call(make())

    def call(self, coro: Any, timeout: float = 60.0) -> Any:
        f: Future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return f.result(timeout)

    def firmware(self) -> list[Any]:
        """Each endpoint's firmware object, read on the fleet's loop."""
        async def read() -> list[Any]:
            return [ep.device.firmware for ep in self.fleet.endpoints]
        return self.call(read())

    def stop(self) -> None:
        try:
            self.call(self.fleet.stop(timeout=5), timeout=30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
