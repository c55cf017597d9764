"""Benchmark of the ``mqtt`` transport: QoS 1 messages/s from simulated devices through a
real Mosquitto into one hub process, committed to its journal, with nothing lost.

    .venv/bin/python -m scripts.bench_mqtt                          # 20,000 msg/s for 10 s
    .venv/bin/python -m scripts.bench_mqtt --rate 30000 --devices 2000 --duration 20
    .venv/bin/python -m scripts.bench_mqtt --broker-only            # the broker's ceiling
    .venv/bin/python -m scripts.bench_mqtt --payload realistic      # issue 15: end to end
    .venv/bin/python -m scripts.bench_mqtt --payload realistic --pipelines hub \
        --rates 12000 --profile /tmp/prof   # py-spy the hub (pip install py-spy)

``--payload realistic`` is a different benchmark, in :mod:`scripts.mqtt_e2e`: nine values per
message, 100 devices, through the hub (native engine, json_map, journal, influxdb sink) and
through a bare paho -> influxdb-client bridge, each to a real VictoriaMetrics, counted there;
it prints the highest paced rate each kept up with zero loss, CPU µs per message and peak
RSS. What follows describes the default, tiny-payload mode.

Set-up: a Mosquitto with the settings the README asks for (``max_queued_messages 0``) on
free loopback ports, and ``hub run`` as its own process (a json_map model, ``--devices``
devices on one ``mqtt`` transport, ``--connections`` paho clients on a shared
subscription when more than one).

The load generator must not be the bottleneck (a paho publisher tops out near 8,000 QoS 1
msg/s on the development machine): ``--publishers`` processes send pre-encoded MQTT 3.1.1
PUBLISH packets on raw sockets, on an open-loop schedule (message j of a publisher is due
at t0 + j / rate, so a late generator shows up as latency, not as a lower offered rate), at
most ``--inflight`` unacknowledged per socket (packet ids are 16 bits: a cap far below
65,535 keeps them unique). Each payload carries its due time and a per-device sequence
number.

Reported:

* offered and **committed** messages/s (first due time → last message committed), and
  the drain time after the last publish; loss (sequence numbers missing from the journal)
  and duplicates;
* **publish-to-commit latency** p50/p99/max: commit time is found by polling the journal's
  last seq every 2 ms, so the resolution is about 2 ms;
* **hub CPU µs per message** (user + system time of the hub process over the run, from
  /proc, divided by messages);
* with ``--broker-only``: the rate Mosquitto alone acknowledges from the same publishers
  (no hub subscribed), i.e. the ceiling of this machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import sqlite3
import statistics
import sys
import tempfile
import threading
import time

import yaml

from tests.support.hubproc import HubProcess
from tests.support.services import Mosquitto

T_BASE = 1_767_225_600_000  # ms; payload times are offsets from this plus the real clock


# ---------------------------------------------------------------------------- raw MQTT 3.1.1


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return len(b).to_bytes(2, "big") + b


def connect_packet(client_id: str, user: str, password: str) -> bytes:
    body = _str("MQTT") + bytes([4, 0x80 | 0x40 | 0x02]) + (0).to_bytes(2, "big")
    body += _str(client_id) + _str(user) + _str(password)
    return b"\x10" + _varint(len(body)) + body


def publish_packet(topic: bytes, packet_id: int, payload: bytes) -> bytes:
    body = _str(topic) + packet_id.to_bytes(2, "big") + payload
    return b"\x32" + _varint(len(body)) + body


def open_socket(port: int, client_id: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(connect_packet(client_id, "dev", "dev-secret"))
    ack = b""
    while len(ack) < 4:
        chunk = s.recv(4 - len(ack))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        ack += chunk
    if ack[0] != 0x20 or ack[3] != 0:
        raise ConnectionError(f"CONNACK refused: {ack.hex()}")
    return s


#: The realistic payload of issue 15: 122 bytes of JSON, nine values (``seq`` is not mapped).
REALISTIC = (b'{"ts":%d,"seq":%d,"i0":31.5,"t1":45.2,"ua":221.3,"ub":220.8,"uc":219.6,'
             b'"ia":10.2,"ib":10.4,"ic":9.8,"pf":0.93}')


def publisher(index: int, port: int, devices: list[str], rate: float, count: int,
              inflight: int, t0: float, out: mp.Queue, payload_kind: str = "tiny") -> None:
    """One load process: ``count`` messages round-robin over ``devices`` at ``rate``
    (0: as fast as the in-flight cap allows), starting at wall time ``t0``."""
    packets = []
    seqs = dict.fromkeys(devices, 0)
    last_ms = dict.fromkeys(devices, 0)
    topics = {d: f"esm/{d}/up".encode() for d in devices}
    for j in range(count):
        d = devices[j % len(devices)]
        seqs[d] += 1
        due_ms = (t0 + (j / rate if rate else 0)) * 1000
        if payload_kind == "tiny":
            payload = b'{"ts":%.3f,"e":%d}' % (due_ms, seqs[d])
        else:
            # whole milliseconds, distinct per device: VictoriaMetrics stores milliseconds,
            # and two samples of a series on one millisecond would count as one
            ms = last_ms[d] = max(int(due_ms), last_ms[d] + 1)
            payload = REALISTIC % (ms, seqs[d])
        packets.append(publish_packet(topics[d], j % 65535 + 1, payload))
    sock = open_socket(port, f"bench-pub-{index}")
    acked = [0]

    def reader() -> None:
        buf = b""
        while acked[0] < count:
            data = sock.recv(262144)
            if not data:
                return
            buf += data
            # PUBACKs come 4 bytes at a time: reading them in bunches costs the load far
            # fewer wake-ups (its CPU competes with the hub's on a small machine)
            time.sleep(0.002)
            n = len(buf) // 4  # every packet the broker sends us is a 4-byte PUBACK
            acked[0] += n
            buf = buf[n * 4:]

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    while time.time() < t0:
        time.sleep(0.001)
    cpu_start = time.process_time()  # the load's own CPU, pre-encoding left out
    sent = 0
    while sent < count:
        now = time.time()
        due = count if not rate else min(count, int((now - t0) * rate) + 1)
        room = inflight - (sent - acked[0])
        n = min(due - sent, room)
        if n > 0:
            sock.sendall(b"".join(packets[sent:sent + n]))
            sent += n
        else:
            time.sleep(0.001)
    last_send = time.time()
    t.join(120)
    out.put((index, sent, acked[0], last_send, time.time(), time.process_time() - cpu_start))
    sock.close()


def run_publishers(args, port: int, devices: list[str], total: int, rate: float,
                   payload_kind: str = "tiny") -> dict:
    per = [devices[i::args.publishers] for i in range(args.publishers)]
    counts = [total // args.publishers + (1 if i < total % args.publishers else 0)
              for i in range(args.publishers)]
    q: mp.Queue = mp.Queue()
    t0 = time.time() + 1.0 + total / 400_000  # time to pre-encode before the start
    procs = [mp.Process(target=publisher, args=(i, port, per[i], rate / args.publishers,
                                                counts[i], args.inflight, t0, q,
                                                payload_kind))
             for i in range(args.publishers)]
    for p in procs:
        p.start()
    results = [q.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    return {"t0": t0, "sent": sum(r[1] for r in results), "acked": sum(r[2] for r in results),
            "last_send": max(r[3] for r in results), "last_ack": max(r[4] for r in results),
            "cpu": sum(r[5] for r in results)}


# ---------------------------------------------------------------------------- the hub side


def hub_config(tmp: str, broker: Mosquitto, devices: list[str], connections: int,
               protocol: str = "5", engine: str = "native", model: dict | None = None,
               sinks: dict | None = None) -> str:
    transport: dict = {"type": "mqtt", "host": "127.0.0.1", "port": broker.port,
                       "username": "hub", "password": {"env": "BENCH_MQTT_PASSWORD"},
                       "client_id": "hub-bench", "receive_maximum": 65535,
                       "protocol": protocol, "engine": engine}
    if connections > 1:
        transport.update(connections=connections, shared_group="bench")
    config = {
        "hub": {"state_dir": os.path.join(tmp, "var")},
        "presence": {"heartbeat_interval": 600, "timeout_count": 3},
        "models": {"bench": model or {
            "type": "json_map", "timestamp": {"path": "ts", "format": "epoch_ms"},
            "points": [{"path": "e", "quantity": "active_energy"}]}},
        "transports": {"broker": transport},
        **({"sinks": sinks} if sinks else {}),
        "devices": [{"id": d, "model": "bench", "transport": "broker", "address": d}
                    for d in devices],
    }
    path = os.path.join(tmp, "hub.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(config, f)
    return path


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """CPU of ``pid`` and its live children: the hub's rollup fold runs in a child process
    (README "Rollups"), and its work is the hub's work."""
    ticks = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = _stat(int(entry))
        except OSError:  # ended while we looked
            continue
        if int(entry) == pid or int(fields[1]) == pid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


class CommitClock:
    """Polls the journal's last seq: ``(wall time, seq)`` samples, to date each commit."""

    def __init__(self, path: str, interval: float = 0.002) -> None:
        self.path = path
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        db = None
        while not self._stop.is_set():
            try:
                if db is None:
                    db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
                row = db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
                seq = int(row[0]) if row else 0
                if not self.samples or seq != self.samples[-1][1]:
                    self.samples.append((time.time(), seq))
            except sqlite3.Error:
                db = None
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def time_of(self, seq: int, start: int = 0) -> tuple[float | None, int]:
        """When ``seq`` was first seen committed (searching from sample ``start``), or
        ``None`` if it was committed only after the clock stopped (a drain that timed out,
        or the hub's final commit on SIGTERM)."""
        samples, i = self.samples, start
        while i < len(samples) and samples[i][1] < seq:
            i += 1
        return (samples[i][0] if i < len(samples) else None), i


def journal_readings(path: str) -> list[tuple[int, str, float, float]]:
    """(seq, device, ts, value) of every reading, in seq order."""
    from twisted.internet.task import Clock

    from hub.journal import Journal

    j = Journal(path, clock=Clock(), readonly=True)
    j.open()
    out, after = [], 0
    while True:
        chunk = j.read(after, 100_000, {"reading"})
        if not chunk:
            break
        out += [(seq, r.device, r.ts, r.value) for seq, r in chunk]
        after = chunk[-1][0]
    j.close()
    return out


def bench_hub(args, tmp: str, broker: Mosquitto) -> dict:
    devices = [f"dev-{i:05d}" for i in range(args.devices)]
    config = hub_config(tmp, broker, devices, args.connections, args.protocol, args.engine)
    os.environ["BENCH_MQTT_PASSWORD"] = "hub-secret"
    hub = HubProcess(config, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for _ in range(args.connections):
        hub.wait_for("subscribed to")
    journal = os.path.join(tmp, "var", "journal.sqlite")
    clock = CommitClock(journal)
    total = int(args.rate * args.duration)
    cpu0 = cpu_seconds(hub.proc.pid)
    pub = run_publishers(args, broker.port, devices, total, args.rate)
    # drained: the journal holds at least one record per message (its seqs also count the
    # devices' online events, so reaching `total` alone is not the end) and no commit came
    # for half a second
    deadline = time.time() + args.drain_timeout
    drained, last_seq, quiet_since = False, -1, time.time()
    while time.time() < deadline:
        seq = clock.samples[-1][1] if clock.samples else 0
        if seq != last_seq:
            last_seq, quiet_since = seq, time.time()
        elif seq >= total and time.time() - quiet_since >= 0.5:
            drained = True
            break
        time.sleep(0.01)
    cpu1 = cpu_seconds(hub.proc.pid)
    clock.stop()
    hub.stop()
    rows = journal_readings(journal)
    seen: dict[str, set[int]] = {}
    dups = 0
    for _, dev, _, value in rows:
        s = seen.setdefault(dev, set())
        if int(value) in s:
            dups += 1
        s.add(int(value))
    expected = dict.fromkeys(devices, 0)  # messages each device published
    per_pub = [devices[i::args.publishers] for i in range(args.publishers)]
    counts = [total // args.publishers + (1 if i < total % args.publishers else 0)
              for i in range(args.publishers)]
    for devs, n in zip(per_pub, counts, strict=True):
        for k in range(n):
            expected[devs[k % len(devs)]] += 1
    lost = sum(len(set(range(1, n + 1)) - seen.get(d, set())) for d, n in expected.items())
    latencies, idx, late = [], 0, 0
    for seq, _, ts, _ in rows:
        t, idx = clock.time_of(seq, idx)
        if t is None:
            late += 1  # committed after the drain deadline: no latency to report
        else:
            latencies.append(t - ts)
    last_commit = clock.samples[-1][0] if clock.samples else pub["t0"]
    committed = len(rows) - dups - late
    latencies.sort()
    offered = total / max(pub["last_send"] - pub["t0"], 1e-9)
    warnings = []
    if offered < 0.97 * args.rate:
        warnings.append(f"the publishers offered {offered:,.0f} msg/s, short of --rate "
                        f"{args.rate:,.0f}: the load generator was the bottleneck (fewer "
                        "devices, more --publishers, or a lower --rate)")
    if not drained:
        warnings.append(f"the hub had not committed every message {args.drain_timeout:g} s "
                        f"after the last publish; {late} readings were committed only at "
                        "shutdown or later, and are left out of the rates and latencies")
    return {
        "messages": total, "offered_rate": offered,
        "committed_rate": committed / max(last_commit - pub["t0"], 1e-9),
        "drain_s": last_commit - pub["last_send"], "drain_timed_out": not drained,
        "late_commits": late, "lost": lost, "duplicates": dups,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else None,
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else None,
        "max_ms": 1000 * latencies[-1] if latencies else None,
        "hub_cpu_us_per_msg": 1e6 * (cpu1 - cpu0) / max(total, 1),
        "broker_acked": pub["acked"], "warnings": warnings,
    }


def bench_broker(args, broker: Mosquitto) -> dict:
    devices = [f"dev-{i:05d}" for i in range(args.devices)]
    total = int(args.broker_messages)
    pub = run_publishers(args, broker.port, devices, total, 0)
    return {"messages": total, "acked": pub["acked"],
            "broker_rate": pub["acked"] / (pub["last_ack"] - pub["t0"])}


def report_realistic(args, result: dict) -> int:
    if args.json:
        print(json.dumps(result))
    print("\nhighest paced rate kept up with zero loss (100 % of readings in VictoriaMetrics):")
    for name, t in result["best"].items():
        if t is None:
            print(f"{name:>6}: none of the rates tried")
        else:
            print(f"{name:>6}: {t['rate']:,.0f} msg/s ({t['rate'] * 9:,.0f} readings/s), "
                  f"{t['cpu_us_per_msg']:.1f} µs CPU per message, peak RSS "
                  f"{t['peak_rss_mb']:.0f} MB")
    hub, bridge = result["best"].get("hub"), result["best"].get("bridge")
    if hub is not None and bridge is not None:
        print(f"the hub kept up {hub['rate'] / bridge['rate']:.2f} × the bridge's rate "
              f"(issue 15 asks for 2 ×)")
    return 0 if all(t is not None for t in result["best"].values()) else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=20000, help="offered msg/s (default 20000)")
    p.add_argument("--duration", type=float, default=10, help="seconds of load (default 10)")
    p.add_argument("--devices", type=int, default=1000, help="simulated devices (default 1000)")
    p.add_argument("--publishers", type=int, default=2, help="load processes (default 2)")
    p.add_argument("--inflight", type=int, default=5000,
                   help="unacknowledged messages per publisher socket (default 5000)")
    p.add_argument("--connections", type=int, default=1,
                   help="hub connections on a shared subscription (default 1)")
    p.add_argument("--protocol", choices=("5", "3.1.1"), default="5",
                   help="MQTT version of the hub's connections (default 5)")
    p.add_argument("--engine", choices=("native", "paho"), default="native",
                   help="the mqtt transport's engine (default native)")
    p.add_argument("--drain-timeout", type=float, default=60)
    p.add_argument("--broker-only", action="store_true",
                   help="measure the broker alone (no hub subscribed)")
    p.add_argument("--broker-messages", type=float, default=400_000)
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--payload", choices=("tiny", "realistic"), default="tiny",
                   help="tiny: one value, journal only; realistic: issue 15's nine values "
                   "end to end into VictoriaMetrics, the hub against a bare bridge")
    p.add_argument("--rates", default="10000,15000,20000,25000,30000,35000,40000,45000",
                   help="realistic: paced rates tried in order per pipeline")
    p.add_argument("--pipelines", default="bridge,hub", help="realistic: bridge,hub")
    p.add_argument("--without-rollups", action="store_true",
                   help="realistic: the hub without its rollups (on by default; the fold "
                   "runs in a child process whose CPU is counted as the hub's)")
    p.add_argument("--max-drain", type=float, default=2.0,
                   help="realistic: s after the last publish for the last point to arrive")
    p.add_argument("--profile", metavar="PREFIX",
                   help="realistic: py-spy each trial into PREFIX-<pipeline>-<rate>.txt")
    if len(sys.argv) == 4 and sys.argv[1] == "--bridge-worker":
        from scripts import mqtt_e2e

        mqtt_e2e.bridge_main(int(sys.argv[2]), sys.argv[3])
        return 0
    args = p.parse_args()
    if args.payload == "realistic" and "--devices" not in sys.argv:
        args.devices = 100
    if args.payload == "realistic" and "--duration" not in sys.argv:
        args.duration = 8
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as tmp:
        broker = Mosquitto(os.path.join(tmp, "mosquitto")).start()
        try:
            if args.payload == "realistic":
                from scripts import mqtt_e2e

                result = mqtt_e2e.sweep(args, tmp, broker, run_publishers, cpu_seconds,
                                        hub_config)
            elif args.broker_only:
                result = bench_broker(args, broker)
            else:
                result = bench_hub(args, tmp, broker)
        finally:
            broker.stop()
        if args.payload == "realistic":
            return report_realistic(args, result)
    ok = result.get("lost", 0) == 0 and not result.get("drain_timed_out", False)
    warnings = result.pop("warnings", [])
    if args.json:
        print(json.dumps({**result, "warnings": warnings}))
        return 0 if ok else 1
    for k, v in result.items():
        print(f"{k:>20}: {v:,.1f}" if isinstance(v, float) else f"{k:>20}: {v}")
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
