"""Benchmark of the ``tcp_dtu`` transport: one ``hub run`` process holding many simulated DTUs.

    .venv/bin/python -m scripts.bench_dtu                    # 10,000 DTUs every 10 s, ~2.5 min
    .venv/bin/python -m scripts.bench_dtu --dtus 19000 --interval 120 --window 120   # memory
    .venv/bin/python -m scripts.bench_dtu --dtus 2000 --profile /tmp/hub.svg   # py-spy the hub
    .venv/bin/python -m scripts.bench_dtu --protocol dlt645  # DL/T 645 meters instead

What it does:

1. Writes a configuration in a temporary directory: a ``tcp_dtu`` listener on a free
   loopback port, ``--dtus`` devices of the example EFD map (``conf/devices/efd-example.yaml``,
   one read of 18 input registers per poll), each on its own DTU id, polled every
   ``--interval`` seconds (``--protocol dlt645``: one DL/T 645 meter per DTU instead, read
   with one request per poll, the phase voltages block ``0201FF00`` of
   ``conf/devices/dlt645-meter-example.yaml``; ``--protocol mixed``: both behind each DTU,
   so two requests per DTU and interval on one line). Then starts ``hub run`` on it as a
   process, with its soft RLIMIT_NOFILE raised to the hard limit (here, in ``preexec_fn``;
   the hub itself does not; the hard limit too when permitted, see below).
2. Reads the hub's RSS once it listens, then starts ``hub simulate dtu`` in separate processes
   (``--sim-procs``, each dialling from its own loopback address), so the hub's CPU is
   measured alone. DTUs dial at ``--ramp`` per second; by default ``dtus / interval`` (which
   spreads the polls evenly over the interval, as DTUs that came online at random times are),
   at most 200/s: faster bursts overflowed the hub's listen backlog (Twisted's default of
   50, before the listener's ``backlog`` option, default 1024) whenever its loop stalled
   (garbage collection), and DTUs then hung in half-open connections the hub never accepted.
   ``--gc-freeze``/``--no-gc-freeze`` and ``--gc-threshold`` set the hub's ``hub.gc``.
3. Waits until the hub logged every registration, lets ``--warmup`` seconds pass, and
   measures a window between two of the hub's metrics snapshots (``<state_dir>/metrics.json``,
   written every 10 s, so the window is a multiple of 10 s).

What it reports:

* **sessions held**: DTUs registered and not disconnected (hub log), and what the
  simulators say they hold;
* **polls/s**: answers the hub framed per second over the window (the count of the
  ``dtu.round_trip_ms`` histogram) and readings ingested per second (``ingest.readings``);
* **round trip** p50/p99/max: ``dtu.round_trip_ms`` in ``tcp_dtu``, the time from the hub
  writing a request to the hub framing its answer, as the hub sees it: both processes' event
  loop delays and loopback TCP included. Values are bucket upper bounds (1, 2, 3, 5, 7.5,
  10, 15, 20, 30, 50, ... ms), so "p99 ≤ 5 ms" means the 99th percentile lies in the bucket
  that ends at 5 ms;
* **hub memory per session**: (VmRSS with every session held − VmRSS before the first
  connection) / sessions. The baseline is taken once the hub listens, *after* the
  configuration and the registry of every device were built, so the figure is what the
  sessions add, not what a device costs; the report prints the baseline next to it, and the
  all-in figure (VmRSS / sessions) too;
* **hub CPU**: (utime + stime) over the window / wall time, in % of one core; likewise for
  the registration phase and for the simulators (so a saturated simulator shows).

Targets from the issue: 10,000 DTUs polled every 10 s (1,000 polls/s) with p99 under 50 ms on
loopback; 50,000 DTUs polled every 120 s held by one hub with under 8 KiB per session.
Each session is a socket, so ``--dtus`` is bounded by the hard RLIMIT_NOFILE of the hub (and
of each simulator process). Run as root, the script raises the hard limit of itself (and so
of the processes it starts) to what ``--dtus`` needs, up to ``fs.nr_open``; otherwise it
says so instead of running into EMFILE.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from hub.metrics import bucket_quantile

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MAP = ROOT / "conf/devices/efd-example.yaml"
METER_MAP = ROOT / "conf/devices/dlt645-meter-example.yaml"
METER = "000000000001"
FIRST_ID = 861234560000000
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: connections per second at most by default: 1,000/s left hundreds of 10,000 DTUs in
#: connections the hub never accepted (listen backlog 50, loop stalls of a few hundred ms)
DEFAULT_RAMP = 200.0
FD_MARGIN = 200  # descriptors a process needs besides its sessions (journal, logs, pipes)


def nr_open() -> int:
    """The kernel's ceiling for RLIMIT_NOFILE (``fs.nr_open``)."""
    try:
        return int(Path("/proc/sys/fs/nr_open").read_text())
    except (OSError, ValueError):
        return 1 << 20  # the kernel's default


def raise_nofile(need: int = 0) -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (in this process, or in a child when
    used as ``preexec_fn``); returns the new soft limit. When the hard limit is below
    ``need`` and the process may raise it (root, or CAP_SYS_RESOURCE), the hard limit is
    raised first, to ``need`` capped at ``fs.nr_open``. Only the benchmark does this, for
    itself and the processes it starts: the hub never touches its limits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and need > hard:
        target = min(need, nr_open())
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, target))
        except (ValueError, OSError):
            pass  # not permitted: the caller reports the limit it got
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else 1 << 20
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------- /proc


def rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# ---------------------------------------------------------------------------- the hub


def bench_meter_map(tmp: Path) -> Path:
    """The example meter map cut to one read per poll (as the EFD map is one read): the
    phase voltages block."""
    with open(METER_MAP, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    data["points"] = []
    data["blocks"] = [b for b in data["blocks"] if b["di"] == "0201FF00"]
    path = tmp / "meter-bench.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def write_config(tmp: Path, dtus: int, interval: float, port: int,
                 gc: dict | None = None, protocol: str = "modbus") -> tuple[Path, list[str]]:
    ids = [str(FIRST_ID + i) for i in range(dtus)]
    hub = {"name": "bench", "state_dir": str(tmp / "var"), "log_level": "info"}
    if gc:
        hub["gc"] = gc
    config = {
        "hub": hub,
        # presence: a device is offline after 3 missed polls, whatever the interval
        "models": {"efd": {"type": "modbus_map", "map": str(MAP),
                           "heartbeat": {"interval": max(30.0, interval), "timeout_count": 3}},
                   "meter": {"type": "dlt645", "map": str(bench_meter_map(tmp)),
                             "heartbeat": {"interval": max(30.0, interval),
                                           "timeout_count": 3}}},
        "transports": {"dtu": {"type": "tcp_dtu", "host": "127.0.0.1", "port": port,
                               "max_connections": dtus + 100,
                               "idle_timeout": max(300.0, 3 * interval)}},
        "devices": [{"id": f"{kind}-{i:05d}", "model": kind, "transport": "dtu",
                     "address": {"dtu": ident, "slave": 1 if kind == "efd" else METER,
                                 "poll_interval": interval}}
                    for i, ident in enumerate(ids) for kind in KINDS[protocol]],
    }
    path = tmp / "hub.yaml"
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    path.write_text(yaml.dump(config, Dumper=dumper, allow_unicode=True))
    return path, ids


class LogWatch:
    """Counts lines of a growing log file (the hub's stdout) without holding it in memory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pos = 0
        self._partial = ""
        self.counts: dict[str, int] = {}
        self.tail: list[str] = []

    def update(self, patterns: tuple[str, ...]) -> dict[str, int]:
        with open(self.path, encoding="utf-8", errors="replace") as f:
            f.seek(self._pos)
            chunk = f.read()
            self._pos = f.tell()
        lines = (self._partial + chunk).split("\n")
        self._partial = lines.pop()
        for line in lines:
            for p in patterns:
                if p in line:
                    self.counts[p] = self.counts.get(p, 0) + 1
        self.tail = (self.tail + lines)[-20:]
        return self.counts


#: the devices behind each DTU, per --protocol
KINDS = {"modbus": ("efd",), "dlt645": ("meter",), "mixed": ("efd", "meter")}


def wait_for(what: str, predicate: Callable[[], Any], timeout: float,
             procs: list[subprocess.Popen], interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"{what}: process {p.args[:3]} exited with {p.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached within {timeout:.0f} s")
        time.sleep(interval)


def read_metrics(state_dir: Path) -> dict | None:
    try:
        return json.loads((state_dir / "metrics.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def metric(doc: dict, name: str, **labels: str) -> float:
    return sum(m["value"] for m in doc["metrics"] if m["name"] == name
               and all(m["labels"].get(k) == v for k, v in labels.items()))


def buckets(doc: dict) -> dict[float, float]:
    out: dict[float, float] = {}
    for m in doc["metrics"]:
        if m["name"] == "dtu.round_trip_ms":
            le = math.inf if m["labels"]["le"] == "+Inf" else float(m["labels"]["le"])
            out[le] = out.get(le, 0) + m["value"]
    return out


# ---------------------------------------------------------------------------- the run


def run(args: argparse.Namespace) -> dict:
    # the hard limit is raised here, when permitted, so the hub and the simulators inherit it
    limit = raise_nofile(args.dtus + FD_MARGIN)
    sim_procs = args.sim_procs or max(1, math.ceil(args.dtus / 10_000))
    per_sim = math.ceil(args.dtus / sim_procs)
    if args.dtus + FD_MARGIN > limit or per_sim + FD_MARGIN > limit:
        if os.geteuid() == 0:
            print("bench: running as root, but not allowed to raise the hard RLIMIT_NOFILE "
                  "(no CAP_SYS_RESOURCE: a container?)", file=sys.stderr)
        raise SystemExit(
            f"{args.dtus} sessions need {args.dtus + FD_MARGIN} descriptors in the hub, but the "
            f"hard RLIMIT_NOFILE here is {limit} (fs.nr_open {nr_open()}); use --dtus "
            f"{limit - FD_MARGIN} or less, run the benchmark as root with CAP_SYS_RESOURCE "
            "(it then raises the hard limit itself), or raise the hard limit (ulimit -Hn, "
            "LimitNOFILE=, /etc/security/limits.conf)")
    ramp = args.ramp or min(DEFAULT_RAMP, max(20.0, args.dtus / args.interval))
    tmp = Path(tempfile.mkdtemp(prefix="bench-dtu-"))
    port = free_port()
    t0 = time.monotonic()
    gc: dict[str, Any] = {}
    if args.gc_freeze is not None:
        gc["freeze"] = args.gc_freeze
    if args.gc_threshold:
        gc["threshold"] = [int(n) for n in args.gc_threshold.split(",")]
    config, ids = write_config(tmp, args.dtus, args.interval, port, gc, args.protocol)
    hub_log = tmp / "hub.log"
    state = tmp / "var"
    procs: list[subprocess.Popen] = []
    sims: list[subprocess.Popen] = []
    result: dict[str, Any] = {"dtus": args.dtus, "interval_s": args.interval,
                              "protocol": args.protocol,
                              "gc": gc or "hub defaults",
                              "sim_procs": sim_procs, "ramp_per_s": ramp, "nofile": limit,
                              "tmp": str(tmp)}
    print(f"bench: {args.dtus} DTUs every {args.interval:g} s, {sim_procs} simulator process(es)"
          f", ramp {ramp:.0f}/s, RLIMIT_NOFILE {limit}; files in {tmp}", flush=True)
    try:
        with open(hub_log, "w") as log:
            hub_cmd = shlex.split(args.hub_exec) if args.hub_exec else [str(BIN / "hub")]
            hub = subprocess.Popen([*hub_cmd, "run", "-c", str(config)], cwd=ROOT,
                                   stdout=log, stderr=subprocess.STDOUT,
                                   preexec_fn=raise_nofile)
        procs.append(hub)
        watch = LogWatch(hub_log)
        wait_for("hub listening", lambda: watch.update(("listening for DTUs",)), 300, procs)
        result["hub_start_s"] = round(time.monotonic() - t0, 1)
        time.sleep(1)  # let the start settle (first metrics snapshot, imports)
        rss0 = rss_kib(hub.pid)
        cpu_reg0, t_reg0 = cpu_seconds(hub.pid), time.monotonic()
        print(f"bench: hub pid {hub.pid} listening after {result['hub_start_s']} s, "
              f"RSS {rss0 / 1024:.1f} MiB", flush=True)

        for i in range(sim_procs):
            chunk = ids[i * per_sim:(i + 1) * per_sim]
            if not chunk:
                continue
            line = ["--map", str(MAP)] if args.protocol != "dlt645" else ["--slaves", "none"]
            if args.protocol != "modbus":
                line += ["--meters", METER, "--meter-map", str(tmp / "meter-bench.yaml")]
            cmd = [str(BIN / "hub"), "simulate", "dtu", "--connect", f"127.0.0.1:{port}",
                   "--id", chunk[0], "--count", str(len(chunk)), *line,
                   "--scenario", "normal", "--seed", str(i), "--ramp", f"{ramp / sim_procs:g}",
                   "--bind", f"127.0.0.{2 + i}", "--status-interval", "5"]
            with open(tmp / f"sim-{i}.log", "w") as log:
                sims.append(subprocess.Popen(cmd, cwd=ROOT, stdout=log,
                                             stderr=subprocess.STDOUT,
                                             preexec_fn=raise_nofile))
        procs += sims
        marks = ("registered on", "disconnected from", "refused")

        def all_registered() -> bool:
            c = watch.update(marks)
            return c.get("registered on", 0) >= args.dtus

        last = [time.monotonic(), 0, time.monotonic()]  # report time, count, last progress

        def progress() -> bool:
            done = all_registered()
            now, n = time.monotonic(), watch.counts.get("registered on", 0)
            if n > last[1]:
                last[1:] = [n, now]
            elif now - last[2] > 90:
                raise TimeoutError(f"registrations stalled at {n} of {args.dtus}")
            if now - last[0] > 10:
                last[0] = now
                print(f"bench: {n} registered", flush=True)
            return done

        wait_for("every DTU registered", progress, 3 * args.dtus / ramp + 600, procs, 0.5)
        reg_s = time.monotonic() - t_reg0
        result["registration_s"] = round(reg_s, 1)
        result["registration_hub_cpu_pct"] = round(
            100 * (cpu_seconds(hub.pid) - cpu_reg0) / reg_s, 1)
        print(f"bench: {args.dtus} registered in {reg_s:.1f} s "
              f"(hub CPU {result['registration_hub_cpu_pct']} %); warming up {args.warmup:g} s",
              flush=True)
        time.sleep(args.warmup)

        def snapshot_after(ts: float) -> tuple[dict, float, float, list[float]]:
            # metrics carry the hub's wall-clock time; a snapshot is written every 10 s
            doc = wait_for("a metrics snapshot", lambda: (d := read_metrics(state)) and
                           d["ts"] > ts and d, max(0.0, ts - time.time()) + 30, procs, 0.05)
            return doc, time.monotonic(), cpu_seconds(hub.pid), [cpu_seconds(s.pid) for s in sims]

        first = read_metrics(state)
        a, wall_a, cpu_a, sims_a = snapshot_after(first["ts"] if first else 0)
        profiler = None
        if args.profile:
            profiler = start_profile(hub.pid, args.window, args.profile)
        b, wall_b, cpu_b, sims_b = snapshot_after(a["ts"] + args.window - 1)
        rss1 = rss_kib(hub.pid)
        if profiler is not None:
            profiler.wait(timeout=120)
        span = b["ts"] - a["ts"]
        counts = buckets(b)
        for le, n in buckets(a).items():
            counts[le] = counts.get(le, 0) - n
        polls = sum(counts.values())
        c = watch.update(marks)
        sessions = c.get("registered on", 0) - c.get("disconnected from", 0)
        sim_held = []
        for i in range(len(sims)):
            lines = (tmp / f"sim-{i}.log").read_text().splitlines()
            status = [ln for ln in lines if "connected," in ln]
            sim_held.append(int(status[-1].split()[1].split("/")[0]) if status else 0)
        result.update({
            "window_s": round(span, 1),
            "sessions_held": sessions,
            "sessions_simulators_hold": sum(sim_held),
            "polls_per_s": round(polls / span, 1),
            "expected_polls_per_s": round(
                args.dtus * len(KINDS[args.protocol]) / args.interval, 1),
            "readings_per_s": round((metric(b, "ingest.readings") -
                                     metric(a, "ingest.readings")) / span, 1),
            "rtt_p50_ms_le": bucket_quantile(counts, 0.5),
            "rtt_p99_ms_le": bucket_quantile(counts, 0.99),
            "rtt_max_ms_le": max((le for le, n in counts.items() if n), default=math.nan),
            "response_timeouts": metric(b, "dtu.response_timeouts") -
            metric(a, "dtu.response_timeouts"),
            "devices_online": metric(b, "devices.online"),
            "hub_cpu_pct": round(100 * (cpu_b - cpu_a) / (wall_b - wall_a), 1),
            "sim_cpu_pct": [round(100 * (y - x) / (wall_b - wall_a), 1)
                            for x, y in zip(sims_a, sims_b, strict=True)],
            "hub_rss_before_mib": round(rss0 / 1024, 1),
            "hub_rss_after_mib": round(rss1 / 1024, 1),
            "hub_kib_per_session": round((rss1 - rss0) / max(sessions, 1), 2),
            "hub_kib_per_dtu_all_in": round(rss1 / max(sessions, 1), 2),
            "refused": c.get("refused", 0),
        })
        return result
    finally:
        for p in sims:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in sims:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        if procs and procs[0].poll() is None:
            procs[0].send_signal(signal.SIGTERM)
            try:
                result["hub_exit"] = procs[0].wait(timeout=180)
            except subprocess.TimeoutExpired:
                procs[0].kill()
                result["hub_exit"] = "killed"
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def start_profile(pid: int, seconds: float, out: str) -> subprocess.Popen | None:
    """py-spy the hub for ``seconds`` (a flame graph, or speedscope JSON for ``.json``)."""
    spy = shutil.which("py-spy") or str(BIN / "py-spy")
    if not os.path.exists(spy):
        print("bench: py-spy not found (pip install py-spy); not profiling", flush=True)
        return None
    fmt = "speedscope" if out.endswith(".json") else "flamegraph"
    return subprocess.Popen([spy, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "50",
                             "-f", fmt, "-o", out, "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def report(r: dict) -> str:
    ok_rtt = r["rtt_p99_ms_le"] <= 50
    return "\n".join([
        f"DTUs {r['dtus']} ({r['protocol']}), poll interval {r['interval_s']:g} s, "
        f"window {r['window_s']:g} s "
        f"({r['sim_procs']} simulator process(es), ramp {r['ramp_per_s']:.0f}/s)",
        f"  hub start (config + registry)     {r['hub_start_s']} s",
        f"  registration of every DTU          {r['registration_s']} s, hub CPU "
        f"{r['registration_hub_cpu_pct']} %",
        f"  sessions held                      {r['sessions_held']} (simulators: "
        f"{r['sessions_simulators_hold']}; refused {r['refused']})",
        f"  polls/s                            {r['polls_per_s']} (expected "
        f"{r['expected_polls_per_s']}); readings/s {r['readings_per_s']}",
        f"  round trip p50 / p99 / max         ≤ {r['rtt_p50_ms_le']:g} / ≤ {r['rtt_p99_ms_le']:g}"
        f" / ≤ {r['rtt_max_ms_le']:g} ms{'' if ok_rtt else '   (p99 target: 50 ms)'}",
        f"  response timeouts in the window    {r['response_timeouts']:g}",
        f"  devices online                     {r['devices_online']:g}",
        f"  hub CPU                            {r['hub_cpu_pct']} % of one core "
        f"(simulators: {', '.join(f'{c} %' for c in r['sim_cpu_pct'])})",
        f"  hub RSS                            {r['hub_rss_before_mib']} → "
        f"{r['hub_rss_after_mib']} MiB: {r['hub_kib_per_session']} KiB per session",
        f"    baseline {r['hub_rss_before_mib']} MiB taken once the hub listened, with the "
        f"registry of all {r['dtus']} devices built:",
        "    per session is what sockets, sessions and polls add, not what a device costs;",
        f"    all in (interpreter and registry too): {r['hub_kib_per_dtu_all_in']} KiB per DTU",
    ])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dtus", type=int, default=10_000, help="simulated DTUs (default 10000)")
    p.add_argument("--interval", type=float, default=10.0, help="poll interval, s (default 10)")
    p.add_argument("--protocol", choices=tuple(KINDS), default="modbus",
                   help="what sits behind each DTU: a Modbus detector (default), a DL/T 645 "
                   "meter, or both (mixed)")
    p.add_argument("--window", type=float, default=60.0,
                   help="measured window, s, rounded up to the hub's 10 s metrics (default 60)")
    p.add_argument("--warmup", type=float, default=5.0,
                   help="seconds between the last registration and the window (default 5)")
    p.add_argument("--ramp", type=float,
                   help="connections per second (default dtus/interval, at most 200)")
    p.add_argument("--sim-procs", type=int, help="simulator processes (default 1 per 10,000)")
    p.add_argument("--profile", metavar="FILE",
                   help="py-spy the hub during the window: .svg flame graph or .json speedscope")
    p.add_argument("--hub-exec", metavar="CMD",
                   help="command that stands for `hub` when starting the hub (e.g. a wrapper "
                   "that patches or instruments it for an experiment)")
    p.add_argument("--gc-freeze", action=argparse.BooleanOptionalAction,
                   help="hub.gc.freeze in the hub's configuration (default: the hub's default)")
    p.add_argument("--gc-threshold", metavar="A,B,C",
                   help="hub.gc.threshold, e.g. 700,10,10 for Python's own default")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON line")
    args = p.parse_args(argv)
    result = run(args)
    print(json.dumps(result) if args.json else report(result), flush=True)
    return 0 if result.get("hub_exit") == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
