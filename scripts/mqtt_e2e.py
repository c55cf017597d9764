"""The end-to-end half of ``bench_mqtt.py --payload realistic`` (issue 15): devices → Mosquitto
→ a pipeline → a real VictoriaMetrics (InfluxDB line protocol), counted in the database.

Two pipelines run in the same invocation, one after the other, on the same broker:

* ``hub``: ``hub run`` with the native MQTT engine, a ``json_map`` model of the nine values,
  the journal (PUBACK after commit) and the ``influxdb`` sink (lossless, at-least-once);
* ``bridge``: a bare paho → influxdb-client bridge (:func:`bridge_main`, a few lines: paho
  acknowledges each message once ``on_message`` returns, influxdb-client's batching
  ``WriteApi`` writes in the background; nothing is kept, a crash loses what is buffered).

For each pipeline, paced rates are tried in ascending order (a fresh pipeline process and a
fresh VictoriaMetrics per trial) until one is not kept up. A rate is **kept up** when the
publishers offered it, every reading of every message is in VictoriaMetrics (distinct
series × millisecond, counted by ``/api/v1/export`` after a restart flushed VM's buffers)
and the last one arrived within ``--max-drain`` seconds of the last publish. Reported per
trial: the end-to-end rate (messages / first due time → last point in the database), the
pipeline's CPU µs per message (user + system from /proc over the trial) and its peak RSS
(``VmHWM``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

from tests.support.hubproc import HubProcess
from tests.support.services import Mosquitto, VictoriaMetrics

#: payload key -> (quantity, channel): the nine values of the realistic payload.
POINTS = {
    "i0": ("residual_current", ""), "t1": ("temperature", "T1"),
    "ua": ("voltage", "A"), "ub": ("voltage", "B"), "uc": ("voltage", "C"),
    "ia": ("current", "A"), "ib": ("current", "B"), "ic": ("current", "C"),
    "pf": ("power_factor", ""),
}
READINGS_MATCH = '{__name__=~"(residual_current|temperature|voltage|current|power_factor)_value"}'
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bridge_main(port: int, url: str) -> None:
    """The bare bridge: a few lines of paho and influxdb-client (not the product)."""
    import paho.mqtt.client as mqtt
    from influxdb_client import InfluxDBClient, WriteOptions

    write = InfluxDBClient(url=url, token="bench", org="bench").write_api(
        write_options=WriteOptions(batch_size=5000, flush_interval=200))
    keys = [(k, f"{q},{'channel=' + c + ',' if c else ''}device=") for k, (q, c) in POINTS.items()]

    def on_message(client, userdata, msg) -> None:
        d = json.loads(msg.payload)
        dev, ns = msg.topic.split("/")[1], int(d["ts"]) * 1_000_000
        write.write("bench", "bench", "\n".join(f"{p}{dev} value={d[k]} {ns}" for k, p in keys))

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-bridge",
                         protocol=mqtt.MQTTv311, clean_session=True)
    client.username_pw_set("hub", "hub-secret")
    client.on_message = on_message
    client.on_connect = lambda c, u, f, rc, p=None: (c.subscribe("esm/+/up", qos=1),
                                                    print("subscribed to esm/+/up", flush=True))
    client.max_inflight_messages_set(65535)
    signal.signal(signal.SIGTERM, lambda *_: client.disconnect())
    client.connect("127.0.0.1", port)
    client.loop_forever()
    write.close()  # flushes what is buffered


def hub_settings(vm: VictoriaMetrics, rollups: bool = True) -> dict:
    """The json_map model of the nine values and the influxdb sink, for bench_mqtt's
    ``hub_config``; without ``rollups``, the pipeline issue 15 measured (rollups, on by
    default, came later)."""
    return {
        "model": {"type": "json_map", "timestamp": {"path": "ts", "format": "epoch_ms"},
                  "points": [{"path": k, "quantity": q, **({"channel": c} if c else {})}
                             for k, (q, c) in POINTS.items()]},
        "sinks": {"vm": {"type": "influxdb", "url": vm.url, "org": "bench", "bucket": "bench",
                         "batch_size": 5000, "flush_interval": 0.2, "gzip": False,
                         "max_lag_seconds": 1e9},
                  **({} if rollups else {"rollups": {"type": "rollups", "enabled": False}})},
    }


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Arrivals:
    """Polls VictoriaMetrics' count of inserted rows: when it first reached ``expected``."""

    def __init__(self, vm: VictoriaMetrics, expected: int) -> None:
        self.vm, self.expected = vm, expected
        self.reached: float | None = None
        self.rows = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and self.reached is None:
            try:
                self.rows = self.vm.rows_inserted()
            except OSError:
                pass
            if self.rows >= self.expected:
                self.reached = time.time()
            self._stop.wait(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def count_readings(vm: VictoriaMetrics, expected: int, patience: float = 10.0) -> int:
    """Distinct (series, millisecond) samples of the nine quantities, after a restart that
    makes every accepted sample searchable. Right after a restart the export has been seen
    to miss the newest fraction of a second for a moment, so it is polled (up to
    ``patience`` s) until the count reaches ``expected`` or stops growing."""
    vm.stop()
    vm.start()
    deadline, last = time.time() + patience, -1
    while True:
        series = vm.export(READINGS_MATCH)
        counts = sorted(len(set(s["timestamps"])) for s in series)
        if sum(counts) >= expected or time.time() > deadline:
            break
        if sum(counts) == last:
            time.sleep(1.0)
        last = sum(counts)
    if os.environ.get("BENCH_DEBUG"):
        print(f"  {len(series)} series, distinct samples per series {counts[:3]}..{counts[-3:]}, "
              f"total samples {sum(len(s['timestamps']) for s in series)}", flush=True)
    return sum(counts)


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` alone, its children not counted."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _others_cpu(broker: Mosquitto, vm: VictoriaMetrics) -> tuple[float, float]:
    """CPU seconds of the broker and of VictoriaMetrics so far."""
    return (process_cpu(broker.proc.pid) if broker.proc else 0.0,
            process_cpu(vm.proc.pid) if vm.proc else 0.0)


def trial(args, tmp: str, broker: Mosquitto, pipeline: str, rate: float, run_publishers,
          cpu_seconds, hub_config) -> dict:
    devices = [f"dev-{i:05d}" for i in range(args.devices)]
    work = tempfile.mkdtemp(prefix=f"{pipeline}-{int(rate)}-", dir=tmp)
    vm = VictoriaMetrics(os.path.join(work, "vm"), dedup=None).start()
    total = int(rate * args.duration)
    expected = total * len(POINTS)
    try:
        if pipeline == "hub":
            os.environ["BENCH_MQTT_PASSWORD"] = "hub-secret"
            rollups = not getattr(args, "without_rollups", False)
            proc = HubProcess(hub_config(work, broker, devices, 1,
                                         **hub_settings(vm, rollups)), ROOT)
        else:
            proc = _Bridge(broker.port, vm.url)
        if pipeline == "hub":  # its rollup fold process's start-up is not the messages' CPU
            proc.wait_for_all("subscribed to", *(("ready, from seq",) if rollups else ()),
                              timeout=120)
        else:
            proc.wait_for("subscribed to")
        pid = proc.proc.pid
        spy = None
        if getattr(args, "profile", None):  # py-spy (pip install py-spy) into a flame input
            spy = subprocess.Popen(
                [os.path.join(os.path.dirname(sys.executable), "py-spy"), "record",
                 "--subprocesses", "-p", str(pid), "-f", "raw", "-r", "250", "-o",
                 f"{args.profile}-{pipeline}-{int(rate)}.txt",
                 # BENCH_PYSPY_GIL=1: only samples holding the GIL (the CPU of Python code)
                 *(["--gil"] if os.environ.get("BENCH_PYSPY_GIL") else [])],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
        arrivals = Arrivals(vm, expected)
        cpu0, own0 = cpu_seconds(pid), process_cpu(pid)
        others0 = _others_cpu(broker, vm)
        pub = run_publishers(args, broker.port, devices, total, rate, "realistic")
        deadline = pub["last_send"] + args.drain_timeout
        while arrivals.reached is None and time.time() < deadline:
            time.sleep(0.05)
        arrivals.stop()
        cpu1, own1 = cpu_seconds(pid), process_cpu(pid)
        others1 = _others_cpu(broker, vm)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        rss = peak_rss_mb(pid)
        proc.stop()
        rows = vm.rows_inserted()
        stored = count_readings(vm, expected)
    finally:
        vm.stop()
    end = arrivals.reached
    offered = total / max(pub["last_send"] - pub["t0"], 1e-9)
    drain = (end - pub["last_send"]) if end else None
    lost = expected - stored
    kept = (offered >= 0.97 * rate and lost == 0 and drain is not None
            and drain <= args.max_drain)
    return {"pipeline": pipeline, "rate": rate, "messages": total, "offered": offered,
            "e2e_rate": total / (end - pub["t0"]) if end else None,
            "drain_s": drain, "readings_expected": expected, "readings_stored": stored,
            "rows_inserted": rows,
            "lost": lost, "cpu_us_per_msg": 1e6 * (cpu1 - cpu0) / max(total, 1),
            # the hub (or bridge) process alone, without its children (the rollup fold)
            "process_cpu_us_per_msg": 1e6 * (own1 - own0) / max(total, 1),
            # and its children (the rollup fold process)
            "children_us_per_msg": 1e6 * (cpu1 - own1 - cpu0 + own0) / max(total, 1),
            # the rest of the machine's work for the same messages
            "broker_us_per_msg": 1e6 * (others1[0] - others0[0]) / max(total, 1),
            "vm_us_per_msg": 1e6 * (others1[1] - others0[1]) / max(total, 1),
            "publishers_us_per_msg": 1e6 * pub["cpu"] / max(total, 1),
            "peak_rss_mb": rss, "kept_up": kept}


class _Bridge(HubProcess):
    """The bridge as its own process, with HubProcess' log waiting."""

    def __init__(self, port: int, url: str) -> None:  # noqa: D107
        import queue

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scripts.bench_mqtt", "--bridge-worker",
             str(port), url], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, bufsize=1)
        self.lines = []
        self._queue = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()


def sweep(args, tmp: str, broker: Mosquitto, run_publishers, cpu_seconds, hub_config) -> dict:
    rates = [float(r) for r in args.rates.split(",")]
    results: dict = {"trials": [], "best": {}}
    for pipeline in args.pipelines.split(","):
        best = None
        for rate in rates:
            t = trial(args, tmp, broker, pipeline, rate, run_publishers, cpu_seconds, hub_config)
            results["trials"].append(t)
            print(f"{pipeline:>6} @ {rate:>8,.0f}/s: offered {t['offered']:,.0f}, "
                  f"end-to-end {t['e2e_rate'] or 0:,.0f}/s, drain "
                  f"{t['drain_s'] if t['drain_s'] is not None else float('nan'):.2f} s, lost "
                  f"{t['lost']:,} of {t['readings_expected']:,} readings "
                  f"({t['rows_inserted']:,} rows inserted), "
                  f"{t['cpu_us_per_msg']:.1f} µs CPU/msg "
                  f"({t['process_cpu_us_per_msg']:.1f} in its own process, "
                  f"{t['children_us_per_msg']:.1f} in its children), "
                  f"peak RSS {t['peak_rss_mb']:.0f} MB"
                  f"{'' if t['kept_up'] else '  -> NOT kept up'}", flush=True)
            machine = (t["cpu_us_per_msg"] + t["broker_us_per_msg"] + t["vm_us_per_msg"]
                       + t["publishers_us_per_msg"])
            print(f"{'':>8}the rest of the machine per message: Mosquitto "
                  f"{t['broker_us_per_msg']:.1f} µs, VictoriaMetrics {t['vm_us_per_msg']:.1f} "
                  f"µs, the publishers {t['publishers_us_per_msg']:.1f} µs; with the "
                  f"pipeline {machine:.1f} µs, so {os.cpu_count()} cores hold at most "
                  f"~{os.cpu_count() * 1e6 / machine:,.0f} msg/s of this setup", flush=True)
            if not t["kept_up"]:
                break
            best = t
        results["best"][pipeline] = best
    return results
