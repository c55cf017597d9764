"""Benchmark of the ``gb26875`` sink: how long a fire alarm takes from the device's reading to
a monitoring centre, on an idle link and behind a backlog of other traffic.

    .venv/bin/python scripts/bench_gb26875.py                   # 200 alarms per case, ~7 min
    .venv/bin/python scripts/bench_gb26875.py --alarms 50 --rtt 0.1

Each case runs one ``hub run`` process on a configuration written to a temporary directory,
with the journal's default commit interval:

* a ``simulator`` transport with one detector on the ``leakage`` profile: its residual
  current jumps to 450 mA for a fifth of every ``--period`` seconds, over the 300 mA set
  point, so it raises a fire alarm every period (and clears it), one report every
  ``--period / 10`` seconds;
* a ``gb26875`` sink to a monitoring centre played by this script: the in-tree
  :class:`~plugins.sinks.gb26875.centre.CentreSession` on a plain socket, which confirms each
  upload ``--rtt`` seconds after it arrived (a centre across a WAN; on bare loopback the link
  is so fast that no backlog forms).

The cases:

* **idle**: nothing else is uploaded (``readings: false``);
* **backlog**: ``readings: true`` and ``--load-devices`` more detectors (simulator
  transports of their own) reporting 9 values every 0.05 s: 1,800 readings/s with the
  default 10, more than the link carries at one upload of 63 values per ``--rtt`` (1,260/s
  at 50 ms), so the journal holds an ever growing backlog of readings in front of every
  alarm (the case of a link catching up after an outage).

What it reports, per case:

* **reading → centre receipt**: for each of the ``--alarms`` fire alarms (type 2 uploads
  with the fire-alarm bit, the first ``--skip`` left out as warm-up), the centre's clock at
  the frame's arrival minus the reading's time as the hub journaled it (the alarm event's
  ``ts``); both processes on one host share the clock. p50, p99, max;
* **reading → confirm**, as the hub measured it: the ``gb26875.alarm_latency_ms``
  histogram from ``<state_dir>/metrics.json`` (bucket upper bounds, so "p99 ≤ 100" means
  the 99th percentile lies in the bucket ending at 100 ms); it includes the centre's ``--rtt``;
* the backlog at the end: journal records the centre's cursor has not passed.

GB 26875.1 asks for 10 s from the alarm to the centre.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hub.metrics import bucket_quantile  # noqa: E402
from plugins.sinks.gb26875 import codec as c  # noqa: E402
from plugins.sinks.gb26875.centre import CentreOptions, CentreSession  # noqa: E402

BIN = Path(sys.executable).parent
SINK = "centre"
ALARM_DEVICE = "efd-alarm"
#: s between two reports of a load detector (9 readings each)
LOAD_INTERVAL = 0.05


class _WallClock:
    """What :class:`CentreSession` needs of a clock."""

    @staticmethod
    def seconds() -> float:
        return time.time()


class Centre:
    """A monitoring centre on a socket: confirms every upload ``rtt`` s after it arrived and
    notes when each fire alarm arrived."""

    def __init__(self, rtt: float) -> None:
        self.rtt = rtt
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        #: time label of a fire alarm's state -> when it first arrived (an alarm that
        #: overtook a backlog arrives again behind an older state of its component)
        self.fire_arrivals: dict[str, float] = {}
        self.uploads = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        def emit(d: dict[str, Any]) -> None:
            if d.get("方向") != "收" or d.get("命令") != c.CMD_SEND:
                return
            arrived = time.time()
            with self.lock:
                self.uploads += 1
                objs = d.get("信息对象") or [{}]
                if d.get("类型标志") == 2 and "火警" in objs[0].get("状态位", []):
                    self.fire_arrivals.setdefault(objs[0]["时间标签"], arrived)

        session = CentreSession(CentreOptions(), _WallClock(), emit, "hub")
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                reply = session.receive(data)
                if reply:
                    time.sleep(self.rtt)  # one upload in flight: the sender waits for this
                    try:
                        conn.sendall(reply)
                    except OSError:
                        return

    def close(self) -> None:
        self.sock.close()


def write_config(tmp: Path, centre_port: int, backlog: bool, args: argparse.Namespace) -> Path:
    devices: list[dict[str, Any]] = [{"id": ALARM_DEVICE, "model": "simulated",
                                      "transport": "alarm", "address": "leakage",
                                      "name": "漏电报警", "location": "A栋1层"}]
    transports: dict[str, Any] = {"alarm": {"type": "simulator", "interval": args.period / 10,
                                            "period": args.period}}
    if backlog:  # a profile is a device's address: one transport per load detector
        for i in range(args.load_devices):
            transports[f"load{i}"] = {"type": "simulator", "interval": LOAD_INTERVAL}
            devices.append({"id": f"efd-{i:03d}", "model": "simulated",
                            "transport": f"load{i}", "address": "normal"})
    config = {
        "hub": {"state_dir": str(tmp / "var")},
        "alarms": {"defaults": {"residual_current": {"alarm": 300, "hysteresis": 10}}},
        "transports": transports,
        "devices": devices,
        "sinks": {SINK: {
            "type": "gb26875", "readings": backlog, "timeout": 10, "retries": 3,
            "liveness_interval": 3600, "source_address": 0x010203,
            "centres": [{"host": "127.0.0.1", "port": centre_port}]}},
    }
    path = tmp / "hub.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    return path


def quantile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))] if s else math.nan


def alarm_times(journal: Path) -> tuple[list[float], int, int]:
    """The reading times of the raised fire alarms; the journal's last seq and the sink's
    cursor."""
    from twisted.internet.task import Clock

    from hub.journal import Journal
    from hub.model import EventKind, EventState, Level

    j = Journal(str(journal), clock=Clock(), readonly=True)
    j.open()
    try:
        events = j.events(device=ALARM_DEVICE, limit=1_000_000)
        ts = [e.ts for e in events if e.kind is EventKind.ALARM and e.level is Level.ALARM
              and e.state is EventState.RAISED]
        return ts, j.last_seq(), j.get_cursor(SINK)
    finally:
        j.close()


def wait_for_metrics(path: Path, after: float, timeout: float = 15) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_mtime > after:
            try:
                return json.loads(path.read_text())
            except ValueError:  # caught mid-write
                pass
        time.sleep(0.2)
    return json.loads(path.read_text()) if path.exists() else {"metrics": []}


def run_case(name: str, backlog: bool, args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-gb26875-{name}-"))
    centre = Centre(args.rtt)
    config = write_config(tmp, centre.port, backlog, args)
    log = open(tmp / "hub.log", "w")  # noqa: SIM115 - open for the process's lifetime
    hub = subprocess.Popen([str(BIN / "hub"), "run", "-c", str(config)], cwd=tmp,
                           stdout=log, stderr=subprocess.STDOUT)
    want = args.alarms + args.skip
    deadline = time.monotonic() + want * args.period * 3 + 60
    try:
        while len(centre.fire_arrivals) < want:
            if hub.poll() is not None:
                raise SystemExit(f"hub exited with {hub.returncode}; see {tmp / 'hub.log'}")
            if time.monotonic() > deadline:
                raise SystemExit(f"only {len(centre.fire_arrivals)} of {want} alarms arrived "
                                 f"in time; see {tmp / 'hub.log'}")
            time.sleep(0.2)
        done = time.time()
        metrics = wait_for_metrics(tmp / "var" / "metrics.json", done)
    finally:
        hub.send_signal(signal.SIGTERM)
        try:
            hub.wait(timeout=30)
        except subprocess.TimeoutExpired:
            hub.kill()
            hub.wait()
        log.close()
        centre.close()
    raised, last_seq, cursor = alarm_times(tmp / "var" / "journal.sqlite")
    with centre.lock:
        arrivals = dict(centre.fire_arrivals)
        uploads = centre.uploads
    # matched by time label (whole seconds: one alarm per period of 1 s or more); the
    # sink's labels are the host's local time, as here
    latencies, unmatched = [], 0
    for ts in sorted(raised)[args.skip:]:
        arrived = arrivals.get(datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S"))
        if arrived is not None and arrived <= done:
            latencies.append((arrived - ts) * 1000)
        elif ts < done - 10:  # raised well before the end and never arrived
            unmatched += 1
    counts: dict[float, float] = {}
    for m in metrics["metrics"]:
        if m["name"] == "gb26875.alarm_latency_ms":
            le = math.inf if m["labels"]["le"] == "+Inf" else float(m["labels"]["le"])
            counts[le] = counts.get(le, 0) + m["value"]
    lag = next((m["value"] for m in metrics["metrics"] if m["name"] == "sink.lag_records"),
               math.nan)
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"case": name, "alarms": len(latencies), "uploads": uploads,
            "p50": statistics.median(latencies) if latencies else math.nan,
            "p99": quantile(latencies, 0.99), "max": max(latencies, default=math.nan),
            "hub_p50": bucket_quantile(counts, 0.5), "hub_p99": bucket_quantile(counts, 0.99),
            "hub_count": sum(counts.values()), "lag_metric": lag,
            "backlog_end": last_seq - cursor, "unmatched": unmatched, "dir": str(tmp)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--alarms", type=int, default=200, help="fire alarms measured per case")
    p.add_argument("--skip", type=int, default=3, help="first alarms left out (warm-up)")
    p.add_argument("--period", type=float, default=1.0,
                   help="s between two alarms (the simulator allows 1 s or more)")
    p.add_argument("--rtt", type=float, default=0.05,
                   help="s the centre takes to confirm an upload")
    p.add_argument("--load-devices", type=int, default=10,
                   help="detectors whose readings make the backlog")
    p.add_argument("--case", choices=("idle", "backlog", "both"), default="both")
    p.add_argument("--keep", action="store_true", help="keep the temporary directories")
    args = p.parse_args()
    cases = [("idle", False), ("backlog", True)]
    if args.case != "both":
        cases = [x for x in cases if x[0] == args.case]
    print(f"gb26875 bench: {args.alarms} alarms per case, one every {args.period:g} s; "
          f"centre confirms after {args.rtt * 1000:g} ms; journal commit interval: default; "
          f"backlog case: {args.load_devices} more detectors x 9 readings every "
          f"{LOAD_INTERVAL:g} s (readings: true)", flush=True)
    rows = []
    for name, backlog in cases:
        r = run_case(name, backlog, args)
        rows.append(r)
        print(f"  {name:8s} reading -> centre receipt over {r['alarms']} alarms: "
              f"p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, max {r['max']:.1f} ms "
              f"({r['unmatched']} raised, never arrived) | "
              f"hub's reading -> confirm histogram ({r['hub_count']:g} alarms): "
              f"p50 <= {r['hub_p50']:g} ms, p99 <= {r['hub_p99']:g} ms | uploads "
              f"{r['uploads']}, backlog at end {r['backlog_end']} records "
              f"(sink.lag_records {r['lag_metric']:g})", flush=True)
    worst = max((r["max"] for r in rows), default=math.nan)
    print(f"  worst alarm: {worst / 1000:.3f} s (GB 26875.1: 10 s)")


if __name__ == "__main__":
    main()
