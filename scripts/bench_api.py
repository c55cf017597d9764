"""Benchmark of the HTTP API on one hub process while MQTT ingest runs (issue 14's
performance section).

    .venv/bin/python -m scripts.bench_api                   # 10,000 devices, 200 req/s, 10k/s
    .venv/bin/python -m scripts.bench_api --devices 2000 --rate 100 --seconds 10 \
        --subscribers 200 --ingest 2000

What it does: starts a Mosquitto (tests/support/services.py), writes a configuration with
``--devices`` MQTT devices in ``--projects`` projects (plus one simulated detector that
raises and clears a temperature alarm every few seconds), fills the journal with 30 days of
one channel at 2-minute resolution (21,600 readings), starts ``hub run``, makes the projects
and an admin through the API. Raw-socket publishers (scripts/bench_mqtt.py's, in their own
processes) then publish ``--ingest`` readings/s for the whole run: ``--seconds`` without
API load (the ingest rate alone), then, one after another while ingest goes on, measures

1. device list pages (100 rows, filtered by project) and device details, alternating, at
   ``--rate`` requests/s for ``--seconds``: latency from each request's scheduled start
   (so queueing counts), p50/p99; the ingest rate during it against the rate alone (both
   from the journal's committed seq, in the same run) is the ingest drop;
2. the 30 days downsampled to 500 points, one request after another: p50/p99;
3. ``--subscribers`` SSE subscribers, in a separate process (so their client's CPU is not
   the hub's): the time from an alarm's raise (its ``ts``) to its arrival at each
   subscriber, p50/p99 over the alarms seen.

The figures are of the machine it runs on (load generator, broker and hub share it): say
how busy it was.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import yaml
from twisted.internet.task import Clock

from hub.journal import Journal
from hub.model import Reading
from scripts.bench_mqtt import CommitClock, run_publishers
from tests.support.services import Mosquitto

BIN = Path(sys.executable).parent
PASSWORD = "Load-test-0042"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def write_config(tmp: Path, devices: int, projects: int, broker: int) -> Path:
    config = tmp / "hub.yaml"
    devs = [{"id": f"dev-{i:05d}", "name": f"配电箱 {i}", "project": f"p{i % projects:03d}",
             "model": "bench", "transport": "broker", "address": f"dev-{i:05d}",
             "location": f"{i % 30}F"} for i in range(devices)]
    devs.append({"id": "alarmer", "project": "p000", "model": "simulated",
                 "transport": "demo", "address": "overheat",
                 "alarms": {"temperature": {"alarm": 80, "delay": 0, "hysteresis": 2}}})
    config.write_text(yaml.safe_dump({
        "hub": {"name": "bench", "state_dir": str(tmp / "var"), "log_level": "warn"},
        "api": {"port": 0, "address_throttle": {"failures": 100000, "minutes": 1}},
        "presence": {"heartbeat_interval": 600, "timeout_count": 3},
        "models": {"bench": {"type": "json_map",
                             "timestamp": {"path": "ts", "format": "epoch_ms"},
                             "points": [{"path": "e", "quantity": "active_energy"}]}},
        "transports": {"demo": {"type": "simulator", "interval": 0.25, "period": 4},
                       "broker": {"type": "mqtt", "host": "127.0.0.1", "port": broker,
                                  "username": "hub", "password": "hub-secret",
                                  "client_id": "hub-bench-api", "receive_maximum": 65535,
                                  "engine": "native"}},
        "devices": devs,
    }, allow_unicode=True), encoding="utf-8")
    return config


def fill_journal(tmp: Path) -> float:
    """30 days of dev-00000's temperature T1 every 2 minutes; returns the first ts."""
    (tmp / "var").mkdir(parents=True, exist_ok=True)
    clock = Clock()
    clock.advance(time.time())  # commit marks at the real time, or retention drops them
    j = Journal(str(tmp / "var" / "journal.sqlite"), clock=clock)
    j.open()
    start = time.time() - 30 * 86400
    j.append([Reading("dev-00000", "temperature", 25 + (i % 50) / 10, start + i * 120, "T1")
              for i in range(21_600)])
    j.flush()
    j.close()
    return start


def start_hub(config: Path, log: list[str] | None = None) -> tuple[subprocess.Popen, str]:
    """``hub run`` on ``config`` with the first admin; its API's URL once it started. With
    ``log``, the hub's log lines are collected there."""
    made = subprocess.run([str(BIN / "hub"), "users", "add", "--role", "admin", "bench",
                           "--password-stdin", "-c", str(config)], input=PASSWORD + "\n",
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    proc = subprocess.Popen([str(BIN / "hub"), "run", "-c", str(config), "--log-level", "info"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = None
    kept = log if log is not None else []
    for line in proc.stdout:
        kept.append(line)
        m = re.search(r"API listening on (https?://[\d.]+:\d+)/", line)
        if m:
            url = m.group(1)
        if "hub bench started" in line:
            break
    assert url, "the hub did not start"
    keep = kept.extend if log is not None else (lambda lines: [None for _ in lines])
    threading.Thread(target=keep, args=(proc.stdout,), daemon=True).start()
    return proc, url


def make_projects(url: str, projects: int, **fields: object) -> str:
    """The admin's access token, after making ``projects`` projects p000… in a unit (with
    ``fields(p)`` for each field given as a function of the project's number)."""
    with httpx.Client(base_url=url, timeout=60) as c:
        token = c.post("/api/auth/login", json={"username": "bench", "password": PASSWORD}
                       ).json()["access_token"]
        c.headers["Authorization"] = f"Bearer {token}"
        unit = c.post("/api/units", json={"name": "bench"}).json()["id"]
        for p in range(projects):
            extra = {k: f(p) if callable(f) else f for k, f in fields.items()}
            r = c.post("/api/projects", json={"name": f"项目 {p}", "code": f"p{p:03d}",
                                              "unit_id": unit, "region": "华东", **extra})
            assert r.status_code == 201, r.text
    return token


def paced_load(url: str, token: str, rate: float, seconds: float, projects: int,
               devices: int) -> tuple[list[float], list[float], int]:
    """Alternating list/detail requests at ``rate``/s from 8 threads; latencies in ms."""
    total = int(rate * seconds)
    lists: list[float] = []
    details: list[float] = []
    errors = [0]
    t0 = time.perf_counter() + 0.5
    lock = threading.Lock()

    def worker(k: int) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                          timeout=30) as c:
            for i in range(k, total, 8):
                due = t0 + i / rate
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                if i % 2:
                    r = c.get(f"/api/devices/dev-{(i * 7919) % devices:05d}")
                    bucket = details
                else:
                    r = c.get("/api/devices", params={"project": f"p{i % projects:03d}",
                                                      "limit": 100})
                    bucket = lists
                ms = (time.perf_counter() - due) * 1000
                with lock:
                    bucket.append(ms)
                    if r.status_code != 200:
                        errors[0] += 1

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lists, details, errors[0]


async def subscribers(url: str, token: str, n: int, seconds: float) -> list[float]:
    """Alarm raise → arrival delays (ms) over ``n`` SSE subscribers for ``seconds``."""
    delays: list[float] = []
    limits = httpx.Limits(max_connections=n + 10)
    async with httpx.AsyncClient(base_url=url, timeout=seconds + 30, limits=limits,
                                 headers={"Authorization": f"Bearer {token}"}) as c:
        async def one() -> None:
            params = {"kind": "alarm", "device": "alarmer", "idle_timeout": seconds}
            try:
                async with c.stream("GET", "/api/events/stream", params=params) as r:
                    async for line in r.aiter_lines():
                        if line.startswith("data:"):
                            e = json.loads(line[5:])
                            if e.get("state") == "raised":
                                delays.append((time.time() - e["ts"]) * 1000)
            except httpx.HTTPError:
                pass

        tasks = [asyncio.create_task(one()) for _ in range(n)]
        await asyncio.sleep(seconds)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return delays


def _subscriber_process(url: str, token: str, n: int, seconds: float, out: mp.Queue) -> None:
    out.put(asyncio.run(subscribers(url, token, n, seconds)))


def lag_buckets(url: str) -> dict[float, float]:
    """The hub's loop-lag histogram (cumulative counts by bound, in s) from /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    out = {}
    for m in re.finditer(r'^hub_loop_lag_seconds_bucket\{le="([^"]+)"\} (\S+)$', text, re.M):
        out[float(m.group(1))] = float(m.group(2))
    return out


def lag_quantile(before: dict[float, float], after: dict[float, float], q: float) -> str:
    """The ``q`` quantile's bucket bound of the lag observed between two scrapes."""
    total = after.get(float("inf"), 0) - before.get(float("inf"), 0)
    if not total:
        return "n/a"
    for le in sorted(after):
        if after[le] - before.get(le, 0) >= q * total:
            return f"≤ {le * 1000:g} ms" if le != float("inf") else "> 5 s"
    return "n/a"


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rate_between(samples: list[tuple[float, int]], t0: float, t1: float) -> float:
    """Records committed per second between wall times ``t0`` and ``t1``."""
    def seq_at(t: float) -> int:
        last = 0
        for when, seq in samples:
            if when > t:
                break
            last = seq
        return last
    return (seq_at(t1) - seq_at(t0)) / (t1 - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=10_000)
    ap.add_argument("--projects", type=int, default=100)
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--ingest", type=float, default=10_000, help="MQTT readings/s")
    ap.add_argument("--publishers", type=int, default=2)
    ap.add_argument("--warmup", type=float, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        broker = Mosquitto(str(tmp / "mosquitto")).start()
        config = write_config(tmp, args.devices, args.projects, broker.port)
        since = fill_journal(tmp)
        proc, url = start_hub(config)
        print(f"hub pid {proc.pid} at {url}; load average {os.getloadavg()[0]:.1f} (1 min)",
              flush=True)
        try:
            token = make_projects(url, args.projects)
            clock = CommitClock(str(tmp / "var" / "journal.sqlite"), interval=0.05)
            devices = [f"dev-{i:05d}" for i in range(args.devices)]
            history_seconds = 10.0
            span = args.warmup + 3 * args.seconds + history_seconds + 8
            pub_args = argparse.Namespace(publishers=args.publishers, inflight=5000)
            pub: dict = {}
            publishing = threading.Thread(target=lambda: pub.update(run_publishers(
                pub_args, broker.port, devices, int(args.ingest * span), args.ingest)))
            publishing.start()
            time.sleep(1.5 + args.ingest * span / 400_000 + args.warmup)  # encode, warm up
            quiet = (time.time(), time.time() + args.seconds)
            lag = [lag_buckets(url)]
            cpu = [(time.time(), cpu_seconds(proc.pid))]
            time.sleep(args.seconds)
            lag.append(lag_buckets(url))
            cpu.append((time.time(), cpu_seconds(proc.pid)))
            # 1. pages and details at --rate: the ingest rate under this load is the figure
            loaded_from = time.time()
            lists, details, errors = paced_load(url, token, args.rate, args.seconds,
                                                args.projects, args.devices)
            loaded = (loaded_from, time.time())
            lag.append(lag_buckets(url))
            cpu.append((time.time(), cpu_seconds(proc.pid)))
            # 2. history, one request after another
            hist: list[float] = []
            with httpx.Client(base_url=url, timeout=60,
                              headers={"Authorization": f"Bearer {token}"}) as c:
                end = time.time() + history_seconds
                while time.time() < end:
                    t = time.perf_counter()
                    r = c.get("/api/devices/dev-00000/history", params={
                        "quantity": "temperature", "channel": "T1", "since": since - 1,
                        "points": 500})
                    hist.append((time.perf_counter() - t) * 1000)
                    assert r.status_code == 200 and r.json()["raw_points"] == 21_600, r.text
            # 3. the subscribers, their client in its own process
            q: mp.Queue = mp.Queue()
            subs = mp.Process(target=_subscriber_process,
                              args=(url, token, args.subscribers, args.seconds, q))
            subs.start()
            delays = q.get(timeout=args.seconds + 120)
            subs.join()
            lag.append(lag_buckets(url))
            publishing.join()
            clock.stop()
            alone = rate_between(clock.samples, *quiet)
            under = rate_between(clock.samples, *loaded)
            print(f"ingest offered {args.ingest:,.0f} readings/s over MQTT ({args.devices} "
                  f"devices): alone {alone:,.0f}/s, under the API load {under:,.0f}/s "
                  f"(drop {100 * (1 - under / alone) if alone else float('nan'):.1f} %)")
            print(f"device list (100 rows, by project) at {args.rate:g} req/s mixed: "
                  f"p50 {pct(lists, .5):.1f} ms, p99 {pct(lists, .99):.1f} ms ({len(lists)})")
            print(f"device detail: p50 {pct(details, .5):.1f} ms, "
                  f"p99 {pct(details, .99):.1f} ms ({len(details)}); errors {errors}")
            print(f"history 21,600 points → 500 (one after another): p50 {pct(hist, .5):.1f} ms, "
                  f"p99 {pct(hist, .99):.1f} ms ({len(hist)})")
            print(f"{args.subscribers} SSE subscribers (own process): {len(delays)} alarm "
                  f"arrivals, raise → arrival p50 {pct(delays, .5):.0f} ms, "
                  f"p99 {pct(delays, .99):.0f} ms"
                  + (f", mean {statistics.mean(delays):.0f} ms" if delays else ""))
            alone_cpu = (cpu[1][1] - cpu[0][1]) / (cpu[1][0] - cpu[0][0])
            loaded_cpu = (cpu[2][1] - cpu[1][1]) / (cpu[2][0] - cpu[1][0])
            served = len(lists) + len(details)
            per_request = (loaded_cpu - alone_cpu) * (cpu[2][0] - cpu[1][0]) / served * 1000
            print(f"hub CPU: ingest alone {100 * alone_cpu:.0f} % of a core, with list/detail "
                  f"{100 * loaded_cpu:.0f} %: {per_request:.2f} ms of CPU per request")
            print("loop lag (probe every 20 ms) p50/p99: ingest alone "
                  f"{lag_quantile(lag[0], lag[1], .5)} / {lag_quantile(lag[0], lag[1], .99)}; "
                  f"with list/detail {lag_quantile(lag[1], lag[2], .5)} / "
                  f"{lag_quantile(lag[1], lag[2], .99)}; with SSE (and history before it) "
                  f"{lag_quantile(lag[2], lag[3], .5)} / {lag_quantile(lag[2], lag[3], .99)}")
            print(f"load average {os.getloadavg()[0]:.1f} (1 min) at the end; "
                  f"machine: {os.cpu_count()} CPUs")
        finally:
            proc.terminate()
            proc.wait(timeout=60)
            broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
