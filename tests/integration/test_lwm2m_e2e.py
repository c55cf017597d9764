"""End to end over NB-IoT: `hub run` with the `coap_lwm2m` transport and the `lwm2m_ipso`
model, and `hub simulate lwm2m` as the detectors (real processes, loopback UDP).

Simulated endpoints register and notify temperature and residual current; the overheat
scenario raises an alarm; a trip command given while the detector sleeps is queued and
delivered when it wakes (its relay opens, so its currents fall to 0); a detector that stops
updating goes offline after its registration lifetime and grace.

The same through object 19 (`lwm2m_binary` with a `json_map` frame model): the detector's
own frames up on /19/0/0, a trip frame down to /19/1/0, which the simulator, like Leshan and
wakaama, takes only as a multiple resource.

Readings are watched through the hub's own `influxdb` sink posting to a small HTTP server in
the test: each wait is on a line arriving, with a deadline, never a sleep.
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

from tests.support.hubcli import CWD, hub_command, journal_records
from tests.support.hubproc import BIN, HubProcess
from tests.support.services import async_wait_until, free_udp_port

IMEI = "861234567890000"  # the simulator's first endpoint


class LineCollector(ThreadingHTTPServer):
    """An InfluxDB v2 write endpoint that keeps every line posted to it."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.changed = threading.Condition()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(handler) -> None:  # noqa: N805 - the server is `self` here
                body = handler.rfile.read(int(handler.headers.get("Content-Length", 0)))
                with self.changed:
                    self.lines += body.decode().splitlines()
                    self.changed.notify_all()
                handler.send_response(204)
                handler.end_headers()

            def log_message(handler, *args) -> None:  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def mark(self) -> int:
        with self.changed:
            return len(self.lines)

    def wait_for(self, pattern: str, since: int = 0, timeout: float = 30.0) -> str:
        """The first line from index ``since`` on matching ``pattern``."""
        found: list[str] = []

        def seen() -> bool:
            found[:] = [line for line in self.lines[since:] if re.search(pattern, line)]
            return bool(found)

        with self.changed:
            if not self.changed.wait_for(seen, timeout):
                raise AssertionError(f"no line matching {pattern!r} within {timeout} s; "
                                     f"last lines: {self.lines[-5:]}")
        return found[0]


def write_config(tmp_path, port: int, sink_url: str, model: dict) -> str:
    config = {
        "hub": {"state_dir": str(tmp_path / "var")},
        "journal": {"commit_interval_ms": 5},
        "alarms": {"warning_ratio": 0, "defaults": {"temperature": {"alarm": 80}}},
        "models": {"nb-efd": model},
        "transports": {"nb": {"type": "coap_lwm2m", "host": "127.0.0.1", "port": port,
                              "queue_window": 0.3, "request_timeout": 1,
                              "lifetime_grace": 1, "lifetime_grace_ratio": 0}},
        "sinks": {"watch": {"type": "influxdb", "url": sink_url, "bucket": "fire",
                            "gzip": False, "flush_interval": 0.05, "kinds": ["reading"]}},
        "devices": [{"id": "efd-1", "model": "nb-efd", "transport": "nb", "address": IMEI}],
    }
    path = tmp_path / "hub.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return str(path)


def start_simulator(port: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "hub"), "simulate", "lwm2m", "--server", f"127.0.0.1:{port}", "--count", "1",
         "--ramp-delay", "0", "--ramp-up", "1", "--ramp-hold", "600", "--ramp-every", "0",
         "--interval", "0.5", "--lifetime", "4", "--queue-mode", "--update-interval", "1.5",
         "--window", "0.3", "--duration", "120", *extra],
        cwd=CWD, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def stop(sim: subprocess.Popen | None) -> None:
    if sim is not None and sim.poll() is None:
        sim.kill()
        sim.wait(timeout=10)


def test_nb_iot_detectors_alarm_queued_trip_and_offline(tmp_path):
    port = free_udp_port()
    watch = LineCollector()
    config = write_config(tmp_path, port, watch.url, {"type": "lwm2m_ipso"})
    hub = HubProcess(config, CWD)
    sim = None
    try:
        hub.wait_for("hub hub started", timeout=30)
        sim = start_simulator(port, "--scenario", "overheat")
        hub.wait_for("alarm temperature raised on efd-1", timeout=30)
        # the detector falls asleep for good (a frozen process answers nothing); once it is
        # offline (lifetime 4 s + grace 1 s without an Update) it is surely past its window
        sim.send_signal(signal.SIGSTOP)
        hub.wait_for("device efd-1 offline", timeout=30)
        queued = hub_command(config, "efd-1", "trip", ttl=60)
        assert (queued["ok"], queued["status"]) == (True, "queued"), queued
        since = watch.mark()
        sim.send_signal(signal.SIGCONT)  # it wakes, registers again: the write goes out
        hub.wait_for(f"command {queued['command_id']} for efd-1: succeeded", timeout=30)
        # after the trip the relay is open: the detector reports its currents at 0
        watch.wait_for(r"^current,.*channel=A.* value=0(\.0)?[ ,i]", since)
        # killed without de-registering: offline after lifetime (4 s) + grace (1 s)
        sim.kill()
        sim.wait(timeout=10)
        hub.drain()
        hub.wait_for("device efd-1 offline", timeout=30)
    finally:
        stop(sim)
        assert hub.stop() == 0
        watch.shutdown()
    readings = journal_records(tmp_path, {"reading"})
    quantities = {(r.quantity, r.channel) for r in readings}
    assert {("temperature", "T1"), ("residual_current", "L1"), ("voltage", "A"),
            ("current", "A")} <= quantities
    assert max(r.value for r in readings if r.quantity == "temperature") > 80
    lifecycle = [r.status.value for r in journal_records(tmp_path, {"command_result"})
                 if r.command_id == queued["command_id"]]
    assert lifecycle == ["pending", "sent", "succeeded"]


FRAMES_MODEL = {
    "type": "lwm2m_binary",
    "frames": {"type": "json_map",
               "points": [{"path": "T[0]", "quantity": "temperature", "channel": "T1"},
                          {"path": "I[0]", "quantity": "current", "channel": "A"},
                          {"path": "leak", "quantity": "residual_current", "channel": "L1"}],
               "commands": {"trip": {"cmd": "trip"}, "close": {"cmd": "close"}}},
}


def test_object_19_frames_up_and_a_trip_frame_down_as_a_multiple_resource(tmp_path):
    """Frames notified on /19/0/0 become readings; `hub command trip` writes the json_map
    model's frame to /19/1/0 as instance 0 of the multiple resource, which the simulator
    accepts (a single-resource TLV gets 4.00 there) and obeys: the frames then carry 0 A."""
    port = free_udp_port()
    watch = LineCollector()
    config = write_config(tmp_path, port, watch.url, FRAMES_MODEL)
    hub = HubProcess(config, CWD)
    sim = None
    try:
        hub.wait_for("hub hub started", timeout=30)
        sim = start_simulator(port)
        hub.wait_for("observing /19/0 on efd-1", timeout=30)
        watch.wait_for(r"^residual_current,.*channel=L1")
        watch.wait_for(r"^current,.*channel=A.* value=(?!0(\.0+)?[ ,i])[0-9]")
        answer = hub_command(config, "efd-1", "trip", ttl=30)
        assert answer["ok"], answer
        if answer["status"] == "queued":  # the detector was asleep: its next Update sends it
            hub.wait_for(f"command {answer['command_id']} for efd-1: succeeded", timeout=30)
        else:
            assert answer["status"] == "succeeded", answer
        since = watch.mark()
        watch.wait_for(r"^current,.*channel=A.* value=0(\.0)?[ ,i]", since)
    finally:
        stop(sim)
        assert hub.stop() == 0
        watch.shutdown()
    lifecycle = [r.status.value for r in journal_records(tmp_path, {"command_result"})
                 if r.command_id == answer["command_id"]]
    assert lifecycle[-2:] == ["sent", "succeeded"]
    assert "bad payload" not in "".join(hub.lines)


def test_every_endpoint_of_a_fleet_gets_its_own_2_01_and_its_own_observations(tmp_path):
    """400 simulated endpoints of one process register with a real hub at once. Each gets
    its 2.01 and is known to the hub at its own port: no two endpoint sockets share a port
    (aiocoap's SO_REUSEPORT let a port-0 bind land on a port another endpoint held, and
    one endpoint of each such pair never heard its 2.01 while the other answered for
    both devices)."""
    import asyncio

    from plugins.simulators.lwm2m.endpoint import EndpointOptions
    from plugins.simulators.lwm2m.fleet import Fleet, imeis
    from plugins.simulators.scenario import Scenario

    count, base = 400, int(IMEI)
    port = free_udp_port()
    config = {
        "hub": {"state_dir": str(tmp_path / "var")},
        "models": {"nb-efd": {"type": "lwm2m_ipso"}},
        # registrations only: the hub's observations would add 6,000 exchanges to wait for
        "transports": {"nb": {"type": "coap_lwm2m", "host": "127.0.0.1", "port": port,
                              "observe": False}},
        "devices": [{"id": f"efd-{i}", "model": "nb-efd", "transport": "nb",
                     "address": str(base + i)} for i in range(count)],
    }
    path = tmp_path / "hub.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    hub = HubProcess(str(path), CWD)

    async def fleet_run() -> dict[str, int]:
        options = EndpointOptions(server=("127.0.0.1", port), lifetime=3600, interval=3600)
        fleet = Fleet(options, imeis(base, count), lambda imei: Scenario("normal", seed=imei),
                      ramp=100_000)
        await fleet.open()
        await fleet.start()
        try:
            # every endpoint sent its Register at once: CoAP retransmits a lost one within
            # 3 s, so a missing 2.01 after 30 s was never coming
            try:
                await async_wait_until(lambda: fleet.stats.registrations >= count, 30,
                                       what="every endpoint's 2.01")
            except TimeoutError:
                raise AssertionError(f"{count - fleet.stats.registrations} endpoints "
                                     "without their 2.01") from None
            assert all(ep.location is not None for ep in fleet.endpoints)
            return {ep.device.endpoint: ep.port for ep in fleet.endpoints}
        finally:
            await fleet.stop(timeout=10)

    try:
        hub.wait_for("hub hub started", timeout=30)
        ports = asyncio.run(fleet_run())
        hub.wait_for_all(*(f"efd-{i} de-registered" for i in range(count)), timeout=30)
    finally:
        assert hub.stop() == 0
    assert len(set(ports.values())) == count
    seen = dict(re.findall(r"registered as '([^']+)' at rd/\S+ from 127\.0\.0\.1:(\d+)",
                           "".join(hub.lines)))
    assert {ep: int(p) for ep, p in seen.items()} == ports
