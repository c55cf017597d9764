"""End to end over NB-IoT: `hub run` with the `coap_lwm2m` transport and the `lwm2m_ipso`
model, and `hub simulate lwm2m` as the detectors (real processes, loopback UDP).

Simulated endpoints register and notify temperature and residual current; the overheat
scenario raises an alarm; a trip command given while the detector sleeps is queued and
delivered when it wakes (its relay opens, so its currents fall to 0); a detector that stops
updating goes offline after its registration lifetime and grace."""

from __future__ import annotations

import signal
import subprocess
import time

import yaml

from tests.hubproc import BIN, HubProcess
from tests.test_coap_lwm2m import CWD, free_udp_port, hub_command, journal_records

IMEI = "861234567890000"  # the simulator's first endpoint


def write_config(tmp_path, port: int) -> str:
    config = {
        "hub": {"state_dir": str(tmp_path / "var")},
        "journal": {"commit_interval_ms": 5},
        "alarms": {"warning_ratio": 0, "defaults": {"temperature": {"alarm": 80}}},
        "models": {"nb-efd": {"type": "lwm2m_ipso"}},
        "transports": {"nb": {"type": "coap_lwm2m", "host": "127.0.0.1", "port": port,
                              "queue_window": 0.3, "request_timeout": 1,
                              "lifetime_grace": 1, "lifetime_grace_ratio": 0}},
        "devices": [{"id": "efd-1", "model": "nb-efd", "transport": "nb", "address": IMEI}],
    }
    path = tmp_path / "hub.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return str(path)


def start_simulator(port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "hub"), "simulate", "lwm2m", "--server", f"127.0.0.1:{port}", "--count", "1",
         "--scenario", "overheat", "--ramp-delay", "0", "--ramp-up", "1", "--ramp-hold", "600",
         "--ramp-every", "0",
         "--interval", "0.5", "--lifetime", "4", "--queue-mode", "--update-interval", "1.5",
         "--window", "0.3", "--duration", "120"],
        cwd=CWD, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def test_nb_iot_detectors_alarm_queued_trip_and_offline(tmp_path):
    port = free_udp_port()
    config = write_config(tmp_path, port)
    hub = HubProcess(config, CWD)
    sim = None
    try:
        hub.wait_for("hub hub started", timeout=30)
        sim = start_simulator(port)
        hub.wait_for("alarm temperature raised on efd-1", timeout=30)
        # the detector falls asleep for good (a frozen process answers nothing); once the
        # hub's queue window (0.3 s) has passed since it last spoke, a command must wait
        sim.send_signal(signal.SIGSTOP)
        time.sleep(0.6)  # the window of a real process's wall clock, bounded
        queued = hub_command(config, "efd-1", "trip", ttl=60)
        assert (queued["ok"], queued["status"]) == (True, "queued"), queued
        sim.send_signal(signal.SIGCONT)  # it wakes, sends an Update: the write goes out
        hub.wait_for(f"command {queued['command_id']} for efd-1: succeeded", timeout=30)
        # after the trip the relay is open: the detector reports its currents at 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            after = [r for r in journal_records(tmp_path, {"reading"})
                     if r.quantity == "current" and r.channel == "A" and r.value == 0]
            if after:
                break
            time.sleep(0.2)
        assert after, "no current of 0 A after the trip"
        # killed without de-registering: offline after lifetime (4 s) + grace (1 s)
        sim.kill()
        sim.wait(timeout=10)
        hub.wait_for("device efd-1 offline", timeout=30)
    finally:
        if sim is not None and sim.poll() is None:
            sim.kill()
            sim.wait(timeout=10)
        assert hub.stop() == 0
    readings = journal_records(tmp_path, {"reading"})
    quantities = {(r.quantity, r.channel) for r in readings}
    assert {("temperature", "T1"), ("residual_current", "L1"), ("voltage", "A"),
            ("current", "A")} <= quantities
    assert max(r.value for r in readings if r.quantity == "temperature") > 80
    lifecycle = [r.status.value for r in journal_records(tmp_path, {"command_result"})
                 if r.command_id == queued["command_id"]]
    assert lifecycle == ["pending", "sent", "succeeded"]
