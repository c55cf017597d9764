"""The alarm benchmark inside a running hub (``python -m scripts.bench_alarms --hub``).

Starts a Mosquitto and ``hub run`` (API on, the alarm desk in it) with ``--storm`` +
``--storm`` + ``--open`` MQTT detectors whose temperature alarm is 45 °C with no delay,
makes their projects and notification policies through the API, and a loopback webhook
receiver that notes when each request arrives. Then, one after another:

1. **storm**: the ``--storm`` detectors of project ``storm`` publish 90 °C in one burst;
   for each alarm, the time from its reading (its timestamp, the moment it was published:
   the journal commit comes after, so this is an upper bound) to the arrival of its first
   notification request at the receiver: p50/p99/max (target p99 < 1 s). The policy's
   storm limit is 1,000 a recipient, so every alarm gets its own request;
2. **summary**: as many detectors of project ``summ`` (storm limit 5 in a 10 s window) do
   the same: the requests per recipient in the window (5, then one summary at its end);
3. **timers**: ``--open`` detectors in ten projects publish 90 °C in one burst; their
   policy's only step is due ``--delay`` s after the raise (to a receiver that is not
   listening: delivery is not what is measured); how late each step was taken against its
   due time, from the store (the notification's claim time against the alarm's raise +
   delay): p50/p99/max (target within 1 s).

Also prints the hub's CPU time over the run. Figures are of the machine it runs on (the
publisher, broker, receiver and hub share it): say how busy it was.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import re
import socket
import sqlite3
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from scripts.bench_api import PASSWORD, start_hub
from scripts.bench_mqtt import open_socket, publish_packet
from tests.support.services import Mosquitto, free_port

TIMER_PROJECTS = 10


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, max(0, round(q * len(s)) - 1))], 3)


class Receiver:
    """A webhook receiver noting (arrival time, body) of every request. It runs in a
    process of its own on asyncio (one thread, no thread per connection), so the figures
    measure the hub, not the receiver: a storm's 1,000 connections arriving at once
    made a thread each in the bench's own process, whose start-up under the GIL added
    seconds to the later arrivals."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, dict[str, Any]]] = []
        ctx = mp.get_context("spawn")
        self._pipe, child = ctx.Pipe(duplex=False)
        ready, port_in = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=_serve, args=(child, port_in), daemon=True)
        self._proc.start()
        self.port = ready.recv()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        try:
            while True:
                t, body = self._pipe.recv()
                self.seen.append((t, json.loads(body)))
        except (EOFError, OSError):
            pass

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def close(self) -> None:
        self._proc.terminate()
        self._proc.join(10)


def _serve(out: Any, port_out: Any) -> None:
    import asyncio

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                out.send((time.time(), body))
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
        port_out.send(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def write_config(tmp: Path, groups: dict[str, list[str]], broker: int, hook: str,
                 void: str) -> Path:
    devices = [{"id": d, "project": project, "model": "probe", "transport": "broker",
                "address": d, "alarms": {"temperature": {"alarm": 45, "delay": 0}}}
               for project, names in groups.items() for d in names]
    config = tmp / "hub.yaml"
    config.write_text(yaml.safe_dump({
        "hub": {"name": "bench", "state_dir": str(tmp / "var"), "log_level": "warn"},
        "api": {"port": 0, "address_throttle": {"failures": 100000, "minutes": 1},
                "notify": {"channels": {
                    "hook": {"type": "webhook", "url": hook, "secret": "bench-secret"},
                    "void": {"type": "webhook", "url": void, "secret": "bench-secret",
                             "timeout": 2}},
                    "retry": {"attempts": 1}}},
        "presence": {"heartbeat_interval": 600, "timeout_count": 3},
        "models": {"probe": {"type": "json_map",
                             "timestamp": {"path": "ts", "format": "epoch_ms"},
                             "points": [{"path": "t", "quantity": "temperature"}]}},
        "transports": {"broker": {"type": "mqtt", "host": "127.0.0.1", "port": broker,
                                  "username": "hub", "password": "hub-secret",
                                  "client_id": "hub-bench-alarms", "receive_maximum": 65535,
                                  "engine": "native"}},
        "devices": devices,
    }, allow_unicode=True), encoding="utf-8")
    return config


def burst(port: int, devices: list[str], value: float = 90.0) -> float:
    """Publish one reading of every device at once (QoS 1, one send); its time."""
    t = time.time()
    ms = int(t * 1000)
    data = b"".join(publish_packet(f"esm/{d}/up".encode(), i % 65535 + 1,
                                   b'{"ts":%d,"t":%.1f}' % (ms, value))
                    for i, d in enumerate(devices))
    sock = open_socket(port, f"bench-burst-{ms}")
    sock.sendall(data)
    threading.Thread(target=_drain, args=(sock, 4 * len(devices)), daemon=True).start()
    return ms / 1000


def _drain(sock: socket.socket, n: int) -> None:
    got = 0
    sock.settimeout(60)
    try:
        while got < n:
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += len(chunk)
    except OSError:
        pass
    sock.close()


def wait_for(predicate: Any, timeout: float) -> bool:
    end = time.monotonic() + timeout
    pause = threading.Event()
    while time.monotonic() < end:
        if predicate():
            return True
        pause.wait(0.05)
    return False


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(storm: int, opened: int, delay: float) -> dict[str, Any]:
    groups = {"storm": [f"s-{i:05d}" for i in range(storm)],
              "summ": [f"m-{i:05d}" for i in range(storm)]}
    for k in range(TIMER_PROJECTS):
        groups[f"t{k}"] = [f"t{k}-{i:05d}" for i in range(k, opened, TIMER_PROJECTS)]
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        broker = Mosquitto(str(tmp / "mosquitto")).start()
        receiver = Receiver()
        void = f"http://127.0.0.1:{free_port()}/nobody"
        config = write_config(tmp, groups, broker.port, receiver.url, void)
        t_start = time.monotonic()
        log: list[str] = []
        proc, url = start_hub(config, log)
        out["hub_start_s"] = round(time.monotonic() - t_start, 1)
        try:
            with httpx.Client(base_url=url, timeout=60) as c:
                token = c.post("/api/auth/login", json={"username": "bench",
                                                        "password": PASSWORD}
                               ).json()["access_token"]
                c.headers["Authorization"] = f"Bearer {token}"
                unit = c.post("/api/units", json={"name": "bench"}).json()["id"]
                for code in groups:
                    r = c.post("/api/projects", json={"name": code, "code": code,
                                                      "unit_id": unit})
                    assert r.status_code == 201, r.text
                    if code == "storm":
                        policy = {"steps": [{"delay": 0, "channel": "hook",
                                             "recipients": ["duty-storm"]}],
                                  "storm_limit": 1000, "storm_window": 300}
                    elif code == "summ":
                        policy = {"steps": [{"delay": 0, "channel": "hook",
                                             "recipients": ["duty-summ"]}],
                                  "storm_limit": 5, "storm_window": 10}
                    else:
                        policy = {"steps": [{"delay": delay, "channel": "void",
                                             "recipients": [f"duty-{code}"]}],
                                  "storm_limit": 1000, "storm_window": 300}
                    r = c.put(f"/api/projects/{r.json()['id']}/notification-policy",
                              json=policy)
                    assert r.status_code == 200, r.text
            cpu0 = cpu_seconds(proc.pid)
            wall0 = time.monotonic()
            # 1. storm
            t0 = burst(broker.port, groups["storm"])
            wait_for(lambda: len(receiver.seen) >= storm, 60)
            first: dict[str, float] = {}
            for t, body in list(receiver.seen):
                device = body["text"].split()[1]
                first.setdefault(device, t - t0)
            lat = list(first.values())
            db_path = str(tmp / "var" / "platform.sqlite")
            with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
                # inside the hub: when each notification was claimed (then sent)
                claims = [r[0] - t0 for r in db.execute(
                    "SELECT n.ts FROM notifications n JOIN alarms a ON a.id = n.alarm_id "
                    "WHERE a.project = 'storm'")]
            out["storm"] = {"alarms": storm, "notified": len(first),
                            "claimed_p50_s": pct(claims, 0.5),
                            "claimed_p99_s": pct(claims, 0.99),
                            "first_request_s": pct(lat, 0.0001),
                            "p50_s": pct(lat, 0.5), "p99_s": pct(lat, 0.99),
                            "max_s": pct(lat, 1.0)}
            # 2. summary
            seen_before = len(receiver.seen)
            burst(broker.port, groups["summ"])
            wait_for(lambda: any(b.get("summary_of") for _, b in receiver.seen[seen_before:]),
                     30)
            summ = [b for _, b in receiver.seen[seen_before:] if b["recipient"] == "duty-summ"]
            out["summary"] = {"alarms": storm, "requests_to_recipient": len(summ),
                              "summaries": sum(1 for b in summ if b.get("summary_of")),
                              "alarms_in_summary": sum(len(b.get("summary_of") or ())
                                                       for b in summ)}
            # 3. timers
            timed = [d for k in range(TIMER_PROJECTS) for d in groups[f"t{k}"]]
            t_timed = burst(broker.port, timed)

            def armed() -> int:
                with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
                    return db.execute("SELECT COUNT(*) FROM escalations WHERE policy LIKE "
                                      "'t%'").fetchone()[0]
            # how long the hub took to take in the burst (every ladder stored)
            all_armed = wait_for(lambda: armed() >= opened, delay)
            armed_s = round(time.time() - t_timed, 1) if all_armed else None

            def claimed() -> int:
                with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
                    return db.execute("SELECT COUNT(*) FROM notifications n JOIN alarms a "
                                      "ON a.id = n.alarm_id WHERE a.project LIKE 't%'"
                                      ).fetchone()[0]
            wait_for(lambda: claimed() >= opened, delay + 60)
            with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
                rows = db.execute("SELECT n.ts - (a.first_ts + ?) FROM notifications n JOIN "
                                  "alarms a ON a.id = n.alarm_id WHERE a.project LIKE 't%' "
                                  "AND n.step = 0", (delay,)).fetchall()
                raised = db.execute("SELECT project, COUNT(*) FROM alarms WHERE project LIKE "
                                    "'t%' GROUP BY project").fetchall()
            late = [r[0] for r in rows]
            out["timers"] = {"open_alarms": opened, "all_armed_after_s": armed_s,
                             "raised": sum(n for _, n in raised), "fired": len(late),
                             "late_p50_s": pct(late, 0.5), "late_p99_s": pct(late, 0.99),
                             "late_max_s": pct(late, 1.0),
                             "early": sum(1 for x in late if x < -0.001)}
            out["hub_cpu_s"] = round(cpu_seconds(proc.pid) - cpu0, 2)
            out["wall_s"] = round(time.monotonic() - wall0, 1)
            out["loadavg_1m"] = os.getloadavg()[0]
            trouble = [line.rstrip() for line in log if re.search(
                r"Traceback|Unhandled|failed|error", line, re.I)]
            out["hub_log_problems"] = len(trouble)
            for line in trouble[:10]:
                print("hub log:", line[:300])
        finally:
            proc.terminate()
            try:
                proc.wait(60)
            except Exception:
                proc.kill()
            receiver.close()
            broker.stop()
    return out


