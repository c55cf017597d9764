"""Benchmark of the InfluxDB sink: points/s from the journal into a real database.

    .venv/bin/python -m scripts.bench_influx                       # 1,000,000 points
    .venv/bin/python -m scripts.bench_influx --points 300000 --outage-points 200000 --no-gzip

One hub process (the asyncio reactor, as ``hub run`` uses), a journal under a temporary
directory, and a VictoriaMetrics started on a free loopback port as the InfluxDB-compatible
database (``/api/v2/write``). Two measurements:

* **drain**: ``--points`` readings are committed to the journal first, then the sink starts
  and writes them all; the rate is points / (time from start until the sink's cursor reached
  the end of the journal, i.e. until the database acknowledged the last batch).
* **catch-up after an outage**: the database is stopped, ``--outage-points`` readings are
  committed while the sink fails and backs off, the database is started again; the rate is
  points / (time from the database answering /health until the cursor reached the end).
  The wait for the sink's next retry (``retry_max`` is 1 s here) is reported on its own.

The drain also reports the CPU time of the hub process (the reactor and the sink's HTTP
thread; not the database's) per point: unlike points/s it hardly depends on what else
runs on the machine.

With ``--verify`` (the default) every point is read back from the database and compared
by series and timestamp with the journal.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from hub.cli import install_reactor  # noqa: E402

install_reactor()

from twisted.internet import defer, reactor, task  # noqa: E402

from hub.testing import build_hub  # noqa: E402
from plugins.sinks.line_protocol import timestamp_ns  # noqa: E402
from scripts.bench_journal import make_readings  # noqa: E402
from tests.support.services import VictoriaMetrics  # noqa: E402

T0 = 1_767_225_600.0


def fill(journal, readings, offset: float) -> None:
    """Commit ``readings`` (shifted by ``offset`` seconds) in journal-sized appends."""
    step = 5000
    for i in range(0, len(readings), step):
        chunk = readings[i:i + step]
        if offset:
            chunk = [r.__class__(r.device, r.quantity, r.value, r.ts + offset, r.channel)
                     for r in chunk]
        journal.append(chunk)
    journal.flush()


@defer.inlineCallbacks
def run(args, tmp: str, results: dict):
    vm = VictoriaMetrics(os.path.join(tmp, "vm"), dedup=None).start()
    try:
        config = {"sinks": {"bench": {
            "type": "influxdb", "url": vm.url, "bucket": "bench", "org": "bench",
            "batch_size": args.batch, "gzip": args.gzip, "retry_initial": 0.2,
            "retry_max": 1.0, "flush_interval": 0.2, "max_lag_seconds": 1e12}},
            "transports": {}, "devices": []}
        hub = build_hub(config, os.path.join(tmp, "var"), clock=reactor)
        hub.open()
        sink_type = hub.plugins.sinks["influxdb"]
        sink = sink_type.factory(hub, "bench", hub.config.sinks["bench"].options)
        journal = hub.journal

        readings = make_readings(args.points, args.devices)
        fill(journal, readings, 0.0)
        top = journal.last_seq()
        start, cpu = time.perf_counter(), time.process_time()
        sink.startService()
        while sink.cursor < top:
            yield task.deferLater(reactor, 0.01, lambda: None)
        drain = time.perf_counter() - start
        cpu = time.process_time() - cpu
        results["drain"] = (args.points, drain, cpu)
        print(f"drain: {args.points:,} points in {drain:.2f} s = "
              f"{args.points / drain:,.0f} points/s, {cpu / args.points * 1e6:.2f} µs CPU "
              f"per point (batch {args.batch}, gzip {'on' if args.gzip else 'off'})",
              flush=True)

        vm.stop()
        outage = make_readings(args.outage_points, args.devices)
        fill(journal, outage, 10 * 86400.0)
        top = journal.last_seq()
        # let the sink fail a few times against the stopped database
        yield task.deferLater(reactor, 1.5, lambda: None)
        failures = sink.attempt
        vm.start()
        up = time.perf_counter()
        first = None
        while sink.cursor < top:
            if first is None and sink.attempt == 0:
                first = time.perf_counter()
            yield task.deferLater(reactor, 0.005, lambda: None)
        end = time.perf_counter()
        first = first or end
        catch = end - up
        results["catch_up"] = (args.outage_points, catch, first - up)
        print(f"catch-up: {args.outage_points:,} points in {catch:.2f} s after the database "
              f"came back = {args.outage_points / catch:,.0f} points/s "
              f"({first - up:.2f} s of it waiting for the next retry after {failures} failed "
              f"attempts; {args.outage_points / max(end - first, 1e-9):,.0f} points/s once "
              f"writing)", flush=True)
        yield sink.stopService()

        if args.verify:
            expected = set()
            for r in readings + [r.__class__(r.device, r.quantity, r.value, r.ts + 10 * 86400.0,
                                             r.channel) for r in outage]:
                expected.add((r.quantity, r.device, r.channel, timestamp_ns(r.ts) // 1_000_000))
            got = vm.wait_for_points(len(expected), timeout=60)
            seen = {(dict(k)["__name__"][: -len("_value")], dict(k)["device"],
                     dict(k).get("channel", ""), ms) for k, ms, _ in got}
            missing = len(expected - seen)
            print(f"verify: {len(got):,} samples in the database, {len(seen):,} distinct, "
                  f"{len(expected):,} expected, {missing} missing, "
                  f"{len(got) - len(seen)} duplicates", flush=True)
            results["missing"] = missing
        hub.close()
    finally:
        vm.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--points", type=int, default=1_000_000)
    p.add_argument("--outage-points", type=int, default=300_000)
    p.add_argument("--devices", type=int, default=1000)
    p.add_argument("--batch", type=int, default=5000)
    p.add_argument("--no-gzip", dest="gzip", action="store_false")
    p.add_argument("--no-verify", dest="verify", action="store_false")
    args = p.parse_args()
    results: dict = {}
    code = [0]
    with tempfile.TemporaryDirectory(prefix="bench-influx-") as tmp:
        def done(_):
            reactor.stop()

        def failed(f):
            f.printTraceback()
            code[0] = 1
            reactor.stop()

        reactor.callWhenRunning(
            lambda: run(args, tmp, results).addCallbacks(done, failed))
        reactor.run()
    if results.get("missing"):
        code[0] = 1
    return code[0]


if __name__ == "__main__":
    sys.exit(main())
