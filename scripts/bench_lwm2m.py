"""Benchmark of the ``coap_lwm2m`` transport: registrations/s and notifications/s that one
``hub run`` process decodes and commits, against the ceiling of a bare aiocoap server on the
same machine, measured in the same run.

    .venv/bin/python -m scripts.bench_lwm2m                      # ~2-3 min on 2 cores
    .venv/bin/python -m scripts.bench_lwm2m --devices 500 --duration 20
    .venv/bin/python -m scripts.bench_lwm2m --ceiling-only       # the bare aiocoap figure

1. **Ceiling.** A bare aiocoap server (its own process) with one resource that only answers
   2.04, hammered for ``--ceiling-duration`` s by ``--sim-procs`` processes of
   ``--flood-contexts`` aiocoap contexts each, made exactly as the simulated endpoints make
   theirs, each with one confirmable POST in flight (CoAP's NSTART = 1). Reported: answers/s
   and the server's CPU (it is saturated when near 100 % of one core).
2. **Hub.** ``hub run`` on a temporary configuration: ``--devices`` ``lwm2m_ipso`` devices
   on one ``coap_lwm2m`` transport. ``hub simulate lwm2m`` processes (``--sim-procs``) open
   their endpoints' sockets, then all start registering at one agreed wall-clock time
   (``--start-at``, so process start-up is outside the measurement), as fast as the hub
   answers (64 in flight per process). **Registrations/s** = devices / (that start → the
   last endpoint's *first* 2.01, as the simulators timed it; re-registrations after a
   lost answer are not counted). The hub then observes the 15 instances of each endpoint;
   the window starts ``--warmup`` s after every observation is set up (the simulators'
   status lines count them; that moment is reported too).
   The endpoints notify every ``--interval`` s; by default the interval offers
   ``--overload`` (1.5) times the ceiling, so a hub that keeps up with the ceiling shows
   headroom and one that does not shows its own limit (an endpoint skips a sample while
   its previous notifications are unacknowledged, so a slow hub slows the load instead of
   growing queues). **Notifications/s** = the increase of the hub's own
   ``coap.notifications`` counter between two of its ``metrics.json`` snapshots
   ``--window`` s apart (every notification, whatever it carries), divided by the time
   between the snapshots' own timestamps. **Readings/s committed** and **latency** come
   from the journal: the bench polls its last seq every 2 ms to date each commit; latency
   = commit time − the time the endpoint rendered the notification (SenML ``t``; both
   clocks of this machine), p50/p99/max.

Targets from the issue: 1,000 registrations/s; notifications/s at least 80 % of the ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from scripts.bench_mqtt import CommitClock, cpu_seconds, journal_readings

ROOT = Path(__file__).resolve().parent.parent

BIN = Path(sys.executable).parent
IMEI_BASE = 861234567800000
OBSERVED_PER_DEVICE = 15  # instances lwm2m_ipso observes on a simulated detector
METRICS_FILE = "metrics.json"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------- the ceiling


def _bare_server(port: int, ready: mp.Event, stop: mp.Event) -> None:
    import aiocoap
    import aiocoap.resource

    class Answer(aiocoap.resource.Resource):
        async def render_post(self, request):
            return aiocoap.Message(code=aiocoap.CHANGED)

    async def main() -> None:
        site = aiocoap.resource.Site()
        site.add_resource(["n"], Answer())
        ctx = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", port),
                                                          transports=["udp6"])
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.1)
        await ctx.shutdown()

    asyncio.run(main())


def _flooder(port: int, contexts: int, duration: float, out: mp.Queue) -> None:
    from plugins.simulators.lwm2m.fleet import flood

    payload = b'[{"bn":"/3303/0/","n":"5700","v":25.31,"t":1767225600.123}]'
    out.put(asyncio.run(flood(("127.0.0.1", port), contexts, duration, payload=payload)))


def bench_ceiling(args: argparse.Namespace) -> dict:
    port = free_udp_port()
    ready, stop = mp.Event(), mp.Event()
    server = mp.Process(target=_bare_server, args=(port, ready, stop), daemon=True)
    server.start()
    if not ready.wait(30):
        raise RuntimeError("bare aiocoap server did not start")
    q: mp.Queue = mp.Queue()
    procs = [mp.Process(target=_flooder, args=(port, args.flood_contexts,
                                               args.ceiling_duration, q), daemon=True)
             for _ in range(args.sim_procs)]
    cpu0, wall0 = cpu_seconds(server.pid), time.monotonic()
    for p in procs:
        p.start()
    results = [q.get(timeout=args.ceiling_duration + 120) for _ in procs]
    cpu1, wall1 = cpu_seconds(server.pid), time.monotonic()
    for p in procs:
        p.join(30)
    stop.set()
    server.join(10)
    answered = sum(r["answered"] for r in results)
    return {"ceiling_per_s": answered / args.ceiling_duration,
            "ceiling_failed": sum(r["failed"] for r in results),
            "ceiling_client_cpu_pct": [round(100 * r["cpu_s"] / (args.ceiling_duration + 1), 1)
                                       for r in results],
            "ceiling_server_cpu_pct": 100 * (cpu1 - cpu0) / (wall1 - wall0)}


# ---------------------------------------------------------------------------- the hub


def hub_config(tmp: Path, devices: int, port: int) -> Path:
    config = {
        "hub": {"name": "bench-lwm2m", "state_dir": str(tmp / "var"), "log_level": "info"},
        "presence": {"heartbeat_interval": 600, "timeout_count": 3},
        "models": {"nb-efd": {"type": "lwm2m_ipso"}},
        "transports": {"nb": {"type": "coap_lwm2m", "host": "127.0.0.1", "port": port}},
        "devices": [{"id": f"efd-{i:05d}", "model": "nb-efd", "transport": "nb",
                     "address": str(IMEI_BASE + i)} for i in range(devices)],
    }
    path = tmp / "hub.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class LogDevices:
    """The distinct devices named in lines matching ``pattern`` (group 1) of a growing log
    file: a device registering twice counts once."""

    def __init__(self, path: Path, pattern: str) -> None:
        import re

        self.path, self.pattern = path, re.compile(pattern)
        self.pos, self.devices, self.partial = 0, set(), ""

    def update(self) -> int:
        with open(self.path, encoding="utf-8", errors="replace") as f:
            f.seek(self.pos)
            chunk = f.read()
            self.pos = f.tell()
        lines = (self.partial + chunk).split("\n")
        self.partial = lines.pop()
        for line in lines:
            m = self.pattern.search(line)
            if m:
                self.devices.add(m.group(1))
        return len(self.devices)


def metrics_snapshot(state_dir: Path, after: float | None = None) -> tuple[float, dict]:
    """The hub's latest ``metrics.json`` (its ``ts`` and counters summed over labels);
    with ``after``, the first one written later than that."""
    try:
        doc = json.loads((state_dir / METRICS_FILE).read_text())
    except (OSError, ValueError):  # not written yet, or caught mid-replace
        return -1.0, {}
    if after is not None and doc["ts"] <= after:
        return -1.0, {}
    values: dict[str, float] = {}
    for m in doc["metrics"]:
        values[m["name"]] = values.get(m["name"], 0.0) + m["value"]
    return doc["ts"], values


def wait_snapshot(state_dir: Path, after: float, timeout: float, procs: list
                  ) -> tuple[float, dict]:
    got: list = []

    def ready() -> bool:
        ts, values = metrics_snapshot(state_dir, after)
        if ts < 0:
            return False
        got[:] = [ts, values]
        return True

    wait_until("a new metrics.json", ready, timeout, procs)
    return got[0], got[1]


class LogCount:
    """Counts lines holding a text in a growing log file."""

    def __init__(self, path: Path, text: str) -> None:
        self.path, self.text = path, text
        self.pos, self.count, self.partial = 0, 0, ""

    def update(self) -> int:
        with open(self.path, encoding="utf-8", errors="replace") as f:
            f.seek(self.pos)
            chunk = f.read()
            self.pos = f.tell()
        lines = (self.partial + chunk).split("\n")
        self.partial = lines.pop()
        self.count += sum(self.text in line for line in lines)
        return self.count


def sim_observations(log: Path) -> int:
    """Observations a simulator holds, from its latest status line (0 before the first)."""
    import re

    found = re.findall(r"registrations, \d+ failed\), \d+ updates, (\d+) observations",
                       log.read_text(errors="replace"))
    return int(found[-1]) if found else 0


def start_simulators(tmp: Path, port: int, devices: int, procs: int, imei_base: int,
                     extra: list[str]) -> list[subprocess.Popen]:
    """``hub simulate lwm2m`` processes sharing ``devices`` endpoints (SenML, lifetime 1 h),
    each logging to ``tmp/sim-<k>.log``."""
    per = -(-devices // procs)
    sims = []
    for k in range(procs):
        n = min(per, devices - k * per)
        if n <= 0:
            break
        cmd = [str(BIN / "hub"), "simulate", "lwm2m", "--server", f"127.0.0.1:{port}",
               "--count", str(n), "--imei-base", str(imei_base + k * per), "--format", "senml",
               "--lifetime", "3600", *extra]
        with open(tmp / f"sim-{k}.log", "w") as f:
            sims.append(subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT))
    return sims


def wait_until(what: str, predicate, timeout: float, procs: list) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"{what}: {p.args[:3]} exited with {p.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.02)


def bench_hub(args: argparse.Namespace, ceiling: float | None) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-lwm2m-"))
    port = free_udp_port()
    config = hub_config(tmp, args.devices, port)
    log_path = tmp / "hub.log"
    interval = args.interval or max(
        0.5, args.devices * OBSERVED_PER_DEVICE / (args.overload * (ceiling or 3600.0)))
    offered = args.devices * OBSERVED_PER_DEVICE / interval
    out: dict = {"devices": args.devices, "warmup_s": args.warmup, "interval_s": round(interval, 2),
                 "offered_per_s": round(offered), "tmp": str(tmp)}
    state_dir = tmp / "var"
    hub_log = open(log_path, "w")
    hub = subprocess.Popen([str(BIN / "hub"), "run", "-c", str(config)], cwd=ROOT,
                           stdout=hub_log, stderr=subprocess.STDOUT)
    sims: list[subprocess.Popen] = []
    clock = None
    try:
        listening = LogCount(log_path, "LwM2M/CoAP server on udp")
        wait_until("hub listening", lambda: listening.update() > 0, 120, [hub])
        registered = LogDevices(log_path, r": (\S+) registered as ")
        # every simulator opens its sockets first; registering starts for all at once
        start_at = time.time() + args.sim_startup
        sims += start_simulators(tmp, port, args.devices, args.sim_procs, IMEI_BASE, [
            "--interval", f"{interval:g}", "--ramp", "100000", "--concurrency",
            str(args.concurrency), "--status-interval", "1", "--start-at", f"{start_at:.3f}"])
        wait_until("every device registered", lambda: registered.update() >= args.devices,
                   args.devices / 50 + 120, [hub, *sims])
        # the window measures notifications, not the hub still setting up 15 observations
        # per device (30,000 exchanges for 2,000 devices, as costly as notifications)
        want = args.devices * OBSERVED_PER_DEVICE
        wait_until("every observation set up",
                   lambda: sum(sim_observations(tmp / f"sim-{k}.log")
                               for k in range(len(sims))) >= want,
                   args.devices / 10 + 120, [hub, *sims])
        out["observed_s"] = round(time.time() - start_at, 1)
        time.sleep(args.warmup)
        clock = CommitClock(str(state_dir / "journal.sqlite"))
        # the window runs between two of the hub's own metrics snapshots
        ts_a, m_a = wait_snapshot(state_dir, metrics_snapshot(state_dir)[0], 60, [hub, *sims])
        hub_cpu0, sim_cpu0 = cpu_seconds(hub.pid), [cpu_seconds(s.pid) for s in sims]
        wa = time.time()
        ts_b, m_b = wait_snapshot(state_dir, ts_a + args.window - 1, args.window + 60,
                                  [hub, *sims])
        wb = time.time()
        hub_cpu1, sim_cpu1 = cpu_seconds(hub.pid), [cpu_seconds(s.pid) for s in sims]
        time.sleep(0.5)  # commits of notifications sent inside the window
        clock.stop()
        for s in sims:
            s.send_signal(signal.SIGTERM)
        summaries = []
        for k, s in enumerate(sims):
            s.wait(60)
            text = (tmp / f"sim-{k}.log").read_text()
            summaries.append(json.loads(text.rsplit("lwm2m-sim: summary ", 1)[1]))
        firsts = sorted(t for s in summaries for t in s["first_registered_at"])
        late = max(s["first_register_sent"] for s in summaries) - start_at
        reg_s = firsts[-1] - start_at
        notes = m_b.get("coap.notifications", 0) - m_a.get("coap.notifications", 0)
        out.update({
            "registration_s": round(reg_s, 2),
            "registrations_per_s": round(len(firsts) / reg_s, 1),
            "first_registrations": len(firsts),
            "registrations_total": sum(s["registrations"] for s in summaries),
            "sim_start_late_s": round(late, 2),
            "register_failures": sum(s["register_failures"] for s in summaries),
            "notifications_per_s": round(notes / (ts_b - ts_a), 1),
            "metrics_window_s": round(ts_b - ts_a, 1),
            "window_s": round(wb - wa, 1),
            "hub_cpu_pct": round(100 * (hub_cpu1 - hub_cpu0) / (wb - wa), 1),
            "sim_cpu_pct": [round(100 * (b - a) / (wb - wa), 1)
                            for a, b in zip(sim_cpu0, sim_cpu1, strict=True)],
            "sim_notifications": sum(s["notifications"] for s in summaries),
            "sim_coalesced": sum(s["coalesced"] for s in summaries),
        })
    finally:
        for s in sims:
            if s.poll() is None:
                s.kill()
        if hub.poll() is None:
            hub.send_signal(signal.SIGTERM)
            try:
                out["hub_exit"] = hub.wait(120)
            except subprocess.TimeoutExpired:
                hub.kill()
                out["hub_exit"] = "killed"
        hub_log.close()
        if clock is not None:
            clock.stop()
    rows = journal_readings(str(tmp / "var" / "journal.sqlite"))
    latencies, idx = [], 0
    samples = clock.samples
    for seq, _device, ts, _ in rows:
        while idx < len(samples) and samples[idx][1] < seq:
            idx += 1
        if idx == len(samples):
            break
        t = samples[idx][0]
        if wa <= t <= wb:
            latencies.append(t - ts)
    latencies.sort()
    out.update({
        "readings_per_s": round(len(latencies) / (wb - wa), 1),
        "latency_p50_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
        "latency_p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1)
        if latencies else None,
        "latency_max_ms": round(1000 * latencies[-1], 1) if latencies else None,
    })
    if not args.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return out


def report(r: dict) -> str:
    lines = []
    if "ceiling_per_s" in r:
        lines.append(f"  bare aiocoap server (ceiling)   {r['ceiling_per_s']:8,.0f} answers/s "
                     f"(server CPU {r['ceiling_server_cpu_pct']:.0f} %, load processes "
                     f"{', '.join(f'{c:.0f} %' for c in r['ceiling_client_cpu_pct'])}, "
                     f"{r['ceiling_failed']} failed)")
    if "registrations_per_s" in r:
        ok = "" if r["registrations_per_s"] >= 1000 else "   (target 1,000/s)"
        lines += [
            f"  devices / sample interval       {r['devices']} / {r['interval_s']} s "
            f"(offered {r['offered_per_s']:,} notifications/s)",
            f"  registrations/s                 {r['registrations_per_s']:8,.0f} "
            f"({r['first_registrations']} first registrations in {r['registration_s']} s "
            f"from a common start; {r['registrations_total']} in all, "
            f"{r['register_failures']} retried, simulators late by {r['sim_start_late_s']} s)"
            f"{ok}",
            f"  every observation set up after   {r['observed_s']:7.1f} s "
            f"({r['devices'] * OBSERVED_PER_DEVICE:,} observations; the window starts "
            f"{r['warmup_s']:g} s later)",
            f"  notifications/s (hub counter)   {r['notifications_per_s']:8,.0f} "
            f"(over {r['metrics_window_s']} s of coap.notifications)",
            f"  readings/s committed            {r['readings_per_s']:8,.0f} "
            f"(journal, window {r['window_s']} s)",
        ]
        if r.get("ceiling_per_s"):
            share = 100 * r["notifications_per_s"] / r["ceiling_per_s"]
            lines.append(f"  … of the ceiling                {share:8.0f} %"
                         f"{'' if share >= 80 else '   (target 80 %)'}")
        lines += [
            f"  notification→commit p50/p99/max {r['latency_p50_ms']} / {r['latency_p99_ms']} / "
            f"{r['latency_max_ms']} ms",
            f"  hub CPU                         {r['hub_cpu_pct']} % of one core (simulators: "
            f"{', '.join(f'{c} %' for c in r['sim_cpu_pct'])})",
            f"  simulators sent / coalesced     {r['sim_notifications']} / {r['sim_coalesced']}",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", type=int, default=2000, help="simulated devices (default 2000)")
    p.add_argument("--duration", type=float, help="shorthand: --window and --ceiling-duration")
    p.add_argument("--window", type=float, default=30.0,
                   help="measured notification window, s (default 30; rounded to the hub's "
                   "10 s metrics period)")
    p.add_argument("--warmup", type=float, default=5.0,
                   help="s between the last registration and the window (default 5)")
    p.add_argument("--interval", type=float,
                   help="sample interval of the endpoints (default: offered rate = "
                   "--overload × ceiling)")
    p.add_argument("--overload", type=float, default=1.5,
                   help="offered notifications as a multiple of the ceiling (default 1.5)")
    p.add_argument("--sim-startup", type=float, default=5.0,
                   help="s the simulators get to start before they all register at once "
                   "(default 5)")
    p.add_argument("--ceiling-duration", type=float, default=15.0,
                   help="s of load on the bare server (default 15)")
    p.add_argument("--sim-procs", type=int, default=2, help="load processes (default 2)")
    p.add_argument("--flood-contexts", type=int, default=32,
                   help="contexts per load process for the ceiling (default 32)")
    p.add_argument("--concurrency", type=int, default=64,
                   help="registrations in flight per simulator process (default 64)")
    p.add_argument("--ceiling-only", action="store_true", help="measure only the bare server")
    p.add_argument("--hub-only", action="store_true", help="skip the ceiling")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)
    if args.duration:
        args.window = args.ceiling_duration = args.duration
    result: dict = {}
    if not args.hub_only:
        result.update(bench_ceiling(args))
        if not args.ceiling_only and not args.json:
            print(report(result), flush=True)
    if not args.ceiling_only:
        result.update(bench_hub(args, result.get("ceiling_per_s")))
    print(json.dumps(result) if args.json else report(result), flush=True)
    return 0 if result.get("hub_exit", 0) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
