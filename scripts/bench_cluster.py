"""Benchmark of cluster mode: records per second end to end (device → edge → JetStream →
core → journal) and CPU per record on each role, against the single process in the same run.

    .venv/bin/python -m scripts.bench_cluster                     # 1,000 DTUs every 1 s, ~3 min
    .venv/bin/python -m scripts.bench_cluster --dtus 2000 --window 30
    .venv/bin/python -m scripts.bench_cluster --only 1+1

For each layout — ``single`` (``hub run``, role all), ``1+1`` (one edge, one core) and
``2+2`` (two of each) — it starts nats-server (JetStream, file store, the partition mapping;
not used by ``single``), the hub processes, and ``--sim-procs`` ``hub simulate dtu``
processes dialling the edges directly (no balancer CPU in the figures). Every DTU has one
device of the example EFD map (``conf/devices/efd-example.yaml``: one Modbus read of 18
registers per poll, 11 readings), polled every ``--interval`` s, so the offered load is
``dtus / interval`` polls/s. After ``--warmup`` s it measures a window of ``--window`` s:

* **records/s**: readings committed to the journals (the partition journals, or the single
  process's journal) per second of the window: the end-to-end rate, which equals the
  offered rate while everything keeps up (the report shows the stream's backlog at the end:
  what the cores had not consumed yet);
* **CPU µs/record** per role: (utime + stime) of the role's processes over the window ÷
  records, and the same for nats-server and for the single process. Their sum against the
  single process's figure is the cost of the JetStream hop.

Only 2 CPU cores are shared with other work on this machine: the figures that carry over
are the CPU µs per record (capacity per core = 10⁶ / µs), not the absolute rates. The
report prints the load average at the start and the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from tests.support.cluster import (
    EFD_MAP,
    FIRST_DTU,
    NatsServer,
    Node,
    node_config,
    partition_journals,
)
from tests.support.hubproc import BIN
from tests.support.services import free_port, wait_until

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def readings_committed(paths: list[str]) -> int:
    total = 0
    for path in paths:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            db.execute("PRAGMA busy_timeout = 5000")
            total += db.execute("SELECT count(*) FROM records WHERE kind = 0").fetchone()[0]
        finally:
            db.close()
    return total


def stream_backlog(url: str, partitions: int) -> int:
    import nats

    async def pending() -> int:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            n = 0
            for p in range(partitions):
                try:
                    info = await js.consumer_info("HUB", f"p{p}")
                    n += info.num_pending + info.num_ack_pending
                except Exception:  # noqa: BLE001 - a consumer not made yet holds it all
                    pass
            return n
        finally:
            await nc.close()

    return asyncio.run(pending())


def stream_info(url: str) -> tuple[int, int]:
    """(messages, bytes) stored in the stream."""
    import nats

    async def info() -> tuple[int, int]:
        nc = await nats.connect(url)
        try:
            state = (await nc.jetstream().stream_info("HUB")).state
            return state.messages, state.bytes
        finally:
            await nc.close()

    return asyncio.run(info())


def run_layout(layout: str, args: argparse.Namespace, tmp: str) -> dict:
    edges, cores = {"single": (0, 0), "1+1": (1, 1), "2+2": (2, 2)}[layout]
    ids = [str(int(FIRST_DTU) + i) for i in range(args.dtus)]
    nats = None
    nodes: dict[str, Node] = {}
    sims: list[Node] = []
    try:
        if layout == "single":
            port = free_port()
            cfg = node_config(tmp, "single", "nats://127.0.0.1:1", port, ids, args.partitions,
                              poll_interval=args.interval)
            nodes["single"] = Node("single", "all", [str(BIN / "hub"), "run", "-c", cfg], tmp)
            nodes["single"].wait_for("listening for DTUs", 120)
            ports = [port]
            journals = lambda: [os.path.join(tmp, "single", "journal.sqlite")]  # noqa: E731
        else:
            nats = NatsServer(os.path.join(tmp, "nats"), args.partitions, max_file="4G").start()
            ports = []
            for i in range(edges):
                ports.append(free_port())
                cfg = node_config(tmp, f"edge{i + 1}", nats.url, ports[-1], ids,
                                  args.partitions, poll_interval=args.interval)
                nodes[f"edge{i + 1}"] = Node(f"edge{i + 1}", "edge", [
                    str(BIN / "hub"), "run", "-c", cfg, "--role", "edge"], tmp)
            for i in range(cores):
                cfg = node_config(tmp, f"core{i + 1}", nats.url, free_port(), ids,
                                  args.partitions, poll_interval=args.interval)
                nodes[f"core{i + 1}"] = Node(f"core{i + 1}", "core", [
                    str(BIN / "hub"), "run", "-c", cfg, "--role", "core"], tmp)
            for node in nodes.values():
                wait_until(lambda n=node: n.logged("NATS connected") or n.logged(
                    "NATS link restored"), 120, what=f"{node.name} connected to NATS")

            def owned() -> bool:
                return len({line.split("partition ")[1].split()[0] for n in nodes.values()
                            for line in n.logged(" owned by ")}) >= args.partitions

            wait_until(owned, 120, what="every partition owned")
            journals = lambda: partition_journals(tmp)  # noqa: E731
        procs_n = max(args.sim_procs, len(ports))
        share = -(-args.dtus // procs_n)
        for i in range(procs_n):
            if i * share >= args.dtus:
                break
            port = ports[i % len(ports)]
            first = ids[i * share]
            count = min(share, args.dtus - i * share)
            sims.append(Node(f"sim{i}", "sim", [
                str(BIN / "hub"), "simulate", "dtu", "--connect", f"127.0.0.1:{port}",
                "--id", first, "--count", str(count), "--map", os.path.abspath(EFD_MAP),
                "--ramp", "500"], tmp))
        time.sleep(args.warmup)  # a benchmark, not a test: let the line settle
        procs = {name: n.proc.pid for name, n in nodes.items()}
        procs.update({s.name: s.proc.pid for s in sims})
        if nats is not None:
            procs["nats"] = nats.proc.pid
        cpu0 = {name: cpu_seconds(pid) for name, pid in procs.items()}
        n0, t0 = readings_committed(journals()), time.monotonic()
        time.sleep(args.window)
        n1, t1 = readings_committed(journals()), time.monotonic()
        cpu1 = {name: cpu_seconds(pid) for name, pid in procs.items()}
        records = n1 - n0
        backlog = stream_backlog(nats.url, args.partitions) if nats is not None else 0
        cpu = {name: cpu1[name] - cpu0[name] for name in procs}
        roles: dict[str, float] = {}
        for name, seconds in cpu.items():
            role = name.rstrip("0123456789")
            roles[role] = roles.get(role, 0.0) + seconds
        sim_cpu = roles.pop("sim", 0.0)
        info = stream_info(nats.url) if nats is not None else (0, 0)
        return {"layout": layout, "records": records, "seconds": t1 - t0,
                "sim_pct": 100 * sim_cpu / (t1 - t0),
                "bytes_per_message": info[1] / max(1, info[0]),
                "rate": records / (t1 - t0), "backlog": backlog,
                "us_per_record": {r: 1e6 * s / max(1, records) for r, s in roles.items()},
                "cpu_pct": {r: 100 * s / (t1 - t0) for r, s in roles.items()}}
    finally:
        for sim in sims:
            sim.stop()
        for node in nodes.values():
            node.stop()
        if nats is not None:
            nats.stop()


def report(results: list[dict], args: argparse.Namespace, load: tuple[str, str]) -> str:
    lines = [f"bench_cluster: {args.dtus} DTUs polled every {args.interval:g} s "
             f"({args.dtus / args.interval:.0f} polls/s offered), {args.partitions} partitions, "
             f"window {args.window:g} s; load average before {load[0]}, after {load[1]}",
             f"{'layout':8} {'records/s':>10} {'backlog':>8} {'B/msg':>6}  "
             "CPU µs/record (CPU % of a core)"]
    single = next((r for r in results if r["layout"] == "single"), None)
    for r in results:
        roles = "  ".join(f"{role} {us:.1f} ({r['cpu_pct'][role]:.0f} %)"
                          for role, us in sorted(r["us_per_record"].items()))
        total = sum(r["us_per_record"].values())
        extra = ""
        if single is not None and r is not single:
            base = sum(single["us_per_record"].values())
            extra = f"  total {total:.1f} = {total / base:.1f}× single"
        lines.append(f"{r['layout']:8} {r['rate']:>10.0f} "
                     f"{r['backlog']:>8} {r['bytes_per_message']:>6.0f}  {roles}{extra}  "
                     f"(simulators {r['sim_pct']:.0f} %)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dtus", type=int, default=1000)
    p.add_argument("--interval", type=float, default=1.0, help="poll interval, s")
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--warmup", type=float, default=15.0)
    p.add_argument("--window", type=float, default=20.0)
    p.add_argument("--sim-procs", type=int, default=4,
                   help="simulator processes (a starved simulator caps the offered load)")
    p.add_argument("--only", choices=("single", "1+1", "2+2"), action="append")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = p.parse_args(argv)
    load0 = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    results = []
    for layout in args.only or ("single", "1+1", "2+2"):
        tmp = tempfile.mkdtemp(prefix=f"bench-cluster-{layout.replace('+', '')}-")
        try:
            results.append(run_layout(layout, args, tmp))
            print(f"  {layout}: {results[-1]['rate']:.0f} records/s", file=sys.stderr)
        finally:
            if not args.keep:
                shutil.rmtree(tmp, ignore_errors=True)
    load1 = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(report(results, args, (load0, load1)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
