"""Firmware delivery at scale: the block-wise transfer rate of a pull campaign to 1,000
concurrent endpoints, and what it costs the ingest running at the same time (one run).

One ``hub run`` (API and ``coap_lwm2m``, ``--devices`` detectors) and ``hub simulate
lwm2m`` processes playing them, notifying every ``--interval`` s (the ingest load). Two
windows between the hub's own ``metrics.json`` snapshots (every 10 s):

* **before**: ingest alone: readings committed/s (``ingest.readings``) and the hub's CPU
  seconds per 1,000 readings;
* **during**: a campaign of one wave over every device (pull, an ``--image-kb`` image in
  512-byte blocks) while the same ingest goes on: blocks served/s (``ota.blocks_served``),
  KiB/s, the readings/s and the hub's CPU in that window; and the time until every device
  succeeded.

The CPU is the hub process's own (``/proc``), comparable between the two windows of the
same run; absolute rates depend on what else runs on the machine::

    .venv/bin/python -m scripts.bench_ota                       # 1,000 endpoints, ~3 min
    .venv/bin/python -m scripts.bench_ota --devices 200 --image-kb 16
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import yaml

from plugins.simulators.lwm2m.firmware import make_image
from scripts.bench_lwm2m import (
    BIN,
    OBSERVED_PER_DEVICE,
    ROOT,
    LogCount,
    LogDevices,
    free_udp_port,
    metrics_snapshot,
    sim_observations,
    start_simulators,
    wait_snapshot,
    wait_until,
)
from scripts.bench_mqtt import cpu_seconds

IMEI_BASE = 861234567700000
PASSWORD = "Bench-pass-0042"


def hub_config(tmp: Path, devices: int, port: int, firmware_port: int | None = None) -> Path:
    config = {
        "hub": {"name": "bench-ota", "state_dir": str(tmp / "var"), "log_level": "info"},
        "presence": {"heartbeat_interval": 600, "timeout_count": 3},
        "api": {"port": 0, "ota": {"max_image_kb": 4096}, "max_body_kb": 8192},
        "models": {"nb-efd": {"type": "lwm2m_ipso"}},
        "transports": {"nb": {"type": "coap_lwm2m", "host": "127.0.0.1", "port": port,
                              "firmware_block": 512,
                              # only when asked: a hub without the option refuses the key
                              **({"firmware_port": firmware_port}
                                 if firmware_port is not None else {})}},
        "devices": [{"id": f"efd-{i:05d}", "model": "nb-efd", "transport": "nb",
                     "project": "p1", "address": str(IMEI_BASE + i)} for i in range(devices)],
    }
    path = tmp / "hub.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run(args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-ota-"))
    port = free_udp_port()
    config = hub_config(tmp, args.devices, port, args.firmware_port)
    made = subprocess.run([str(BIN / "hub"), "users", "add", "--role", "admin", "root",
                           "--password-stdin", "-c", str(config)], input=PASSWORD + "\n",
                          text=True, capture_output=True, cwd=ROOT)
    if made.returncode:
        raise RuntimeError(made.stderr)
    log_path = tmp / "hub.log"
    state_dir = tmp / "var"
    hub_log = open(log_path, "w")
    hub = subprocess.Popen([str(BIN / "hub"), "run", "-c", str(config)], cwd=ROOT,
                           stdout=hub_log, stderr=subprocess.STDOUT)
    sims: list[subprocess.Popen] = []
    out: dict = {"devices": args.devices, "interval_s": args.interval,
                 "firmware_port": args.firmware_port,
                 "image_bytes": args.image_kb * 1024, "block": 512, "tmp": str(tmp)}
    try:
        listening = LogCount(log_path, "API listening on")
        wait_until("hub listening", lambda: listening.update() > 0, 120, [hub])
        url = re.search(r"API listening on (http://[^/ ]+)/", log_path.read_text()).group(1)
        registered = LogDevices(log_path, r": (\S+) registered as ")
        sims += start_simulators(tmp, port, args.devices, args.sim_procs, IMEI_BASE, [
            "--interval", f"{args.interval:g}", "--ramp", "500", "--status-interval", "2",
            "--fw-version", "1.0.0"])
        procs = [hub, *sims]
        wait_until("every device registered", lambda: registered.update() >= args.devices,
                   args.devices / 20 + 120, procs)
        # the windows compare ingest with and without the transfer: the observations must
        # be set up (or stop growing: on a loaded machine some take minutes) before them
        want = args.devices * OBSERVED_PER_DEVICE
        seen = {"n": -1, "since": time.monotonic()}
        cap = time.monotonic() + args.setup_cap

        def settled() -> bool:
            n = sum(sim_observations(tmp / f"sim-{k}.log") for k in range(len(sims)))
            if n != seen["n"]:
                seen.update(n=n, since=time.monotonic())
            return n >= want or time.monotonic() > cap or (
                n >= want // 2 and time.monotonic() - seen["since"] > 15)
        wait_until("the observations set up", settled, args.setup_cap + 60, procs)
        out["observations"] = seen["n"]
        time.sleep(args.warmup)
        # before: ingest alone
        ts_a, m_a = wait_snapshot(state_dir, metrics_snapshot(state_dir)[0], 60, procs)
        cpu_a, sim_a = cpu_seconds(hub.pid), _sims_cpu(sims)
        ts_b, m_b = wait_snapshot(state_dir, ts_a + args.window - 1, args.window + 60, procs)
        cpu_b, sim_b = cpu_seconds(hub.pid), _sims_cpu(sims)
        readings = m_b.get("ingest.readings", 0) - m_a.get("ingest.readings", 0)
        out["before"] = {"window_s": round(ts_b - ts_a, 1),
                         "readings_per_s": round(readings / (ts_b - ts_a)),
                         "hub_cpu_share": round((cpu_b - cpu_a) / (ts_b - ts_a), 3),
                         "hub_cpu_ms_per_1k_readings": round(
                             (cpu_b - cpu_a) * 1e6 / max(readings, 1), 1),
                         "sims_cpu_share": round((sim_b - sim_a) / (ts_b - ts_a), 3)}
        # during: the campaign, every device in one wave
        with httpx.Client(base_url=url, timeout=60) as c:
            token = c.post("/api/auth/login", json={"username": "root", "password": PASSWORD}
                           ).json()["access_token"]
            c.headers["Authorization"] = f"Bearer {token}"
            assert c.post("/api/projects", json={"name": "p1", "code": "p1"}).status_code \
                == 201
            image = make_image("2.0.0", args.image_kb * 1024)
            r = c.post("/api/firmware", params={"project": "p1", "version": "2.0.0",
                                                "models": "nb-efd"}, content=image,
                       headers={"Content-Type": "application/octet-stream"})
            assert r.status_code == 201, r.text
            ts_c, m_c = wait_snapshot(state_dir, metrics_snapshot(state_dir)[0], 60, procs)
            cpu_c, sim_c = cpu_seconds(hub.pid), _sims_cpu(sims)
            started = time.time()
            r = c.post("/api/ota/campaigns", json={"project": "p1",
                                                   "firmware_id": r.json()["id"],
                                                   "canary": 0, "batch": args.devices})
            assert r.status_code == 201, r.text
            cid = r.json()["id"]
            done: dict = {}

            def finished() -> bool:
                # once a second: polled every 20 ms (wait_until's pace) the bench's own
                # requests took 9 % of the hub's samples during the transfer window
                time.sleep(args.poll)
                done.update(c.get(f"/api/ota/campaigns/{cid}").json())
                return done["state"] != "running"
            try:
                wait_until("the campaign to end", finished, args.timeout, procs)
            except TimeoutError:  # the figures of the window so far are still worth printing
                done["state"] = f"{done.get('state', '?')} after --timeout"
            out["campaign_s"] = round(time.time() - started, 1)
            out["campaign"] = {"state": done["state"], "progress": done["progress"]}
        ts_d, m_d = wait_snapshot(state_dir, ts_c + 1, 60, procs)
        cpu_d, sim_d = cpu_seconds(hub.pid), _sims_cpu(sims)
        span = ts_d - ts_c
        blocks = m_d.get("ota.blocks_served", 0) - m_c.get("ota.blocks_served", 0)
        readings = m_d.get("ingest.readings", 0) - m_c.get("ingest.readings", 0)
        out["during"] = {"window_s": round(span, 1), "blocks": int(blocks),
                         "blocks_per_s": round(blocks / span),
                         "kib_per_s": round(blocks * 512 / 1024 / span),
                         "readings_per_s": round(readings / span),
                         "hub_cpu_share": round((cpu_d - cpu_c) / span, 3),
                         "hub_cpu_ms_per_block": round((cpu_d - cpu_c) * 1e3 / max(blocks, 1), 2),
                         # the simulators starving would look like a slow hub: measured too
                         "sims_cpu_share": round((sim_d - sim_c) / span, 3)}
        for s in sims:
            s.send_signal(signal.SIGTERM)
        for s in sims:
            s.wait(60)
    finally:
        for p in [*sims, hub]:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in [*sims, hub]:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
        hub_log.close()
    return out


def _sims_cpu(sims: list[subprocess.Popen]) -> float:
    return sum(cpu_seconds(s.pid) for s in sims)


def report(r: dict) -> str:
    b, d = r["before"], r["during"]
    return "\n".join([
        f"OTA bench: {r['devices']} endpoints, notifications every {r['interval_s']:g} s, "
        f"image {r['image_bytes']} bytes in {r['block']}-byte blocks, "
        f"{r['observations']} observations, image served on "
        f"{'its own socket' if r.get('firmware_port') is not None else 'the shared socket'}",
        f"  campaign: {r['campaign']['state']} in {r['campaign_s']} s: "
        + ", ".join(f"{n} {p}" for p, n in sorted(r["campaign"]["progress"].items())),
        f"  transfer (window {d['window_s']} s): {d['blocks_per_s']} blocks/s, "
        f"{d['kib_per_s']} KiB/s ({d['blocks']} blocks), "
        f"hub CPU {d['hub_cpu_ms_per_block']} ms per block",
        f"  ingest before: {b['readings_per_s']} readings/s, hub CPU {b['hub_cpu_share']:.0%}"
        f" ({b['hub_cpu_ms_per_1k_readings']} ms per 1,000 readings), "
        f"simulators' CPU {b['sims_cpu_share']:.0%}",
        f"  ingest during: {d['readings_per_s']} readings/s "
        f"({d['readings_per_s'] / max(b['readings_per_s'], 1):.0%} of before), "
        f"hub CPU {d['hub_cpu_share']:.0%}, simulators' CPU {d['sims_cpu_share']:.0%}",
    ])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", type=int, default=1000)
    p.add_argument("--image-kb", type=int, default=32)
    p.add_argument("--interval", type=float, default=10.0,
                   help="s between each endpoint's notifications (the ingest load)")
    p.add_argument("--sim-procs", type=int, default=2)
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--setup-cap", type=float, default=600.0,
                   help="s to wait for the observations at most, then measure anyway")
    p.add_argument("--window", type=float, default=20.0)
    p.add_argument("--poll", type=float, default=1.0,
                   help="s between the bench's reads of the campaign's progress")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--firmware-port", type=int, default=None,
                   help="serve the image on a socket of its own (0: any free port); "
                        "default: on the transport's port")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    r = run(args)
    print(json.dumps(r) if args.json else report(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
