"""Benchmark: the rollups under ingest, a monthly report, a year of daily energy.

    .venv/bin/python -m scripts.bench_reports                      # all three
    .venv/bin/python -m scripts.bench_reports --readings 1000000 --skip-report

1. **ingest with and without rollups, same run**: ``--readings`` readings (``--devices``
   devices × energy, power and temperature, one reading each per minute) journaled in
   commits of 20,000 on the real reactor, with no sink and with the ``rollups`` sink in
   each ``--modes``: folding in its own process (the default), on a worker thread in the
   hub, inline on the reactor thread; ``--rounds`` rounds, the modes alternated within
   each. Printed (medians): ingest readings/s (wall clock), the reactor thread's CPU per
   reading, the hub process's CPU per reading (all its threads, until the rollups caught
   up; the fold process's own is printed apart as readings per CPU-second), the slowdown
   (the issue's bound: 15 %), how fast the rollups kept up, and the load average.
2. **monthly report of a ``--report-devices`` project**: a rollup store holding a month of
   hourly readings of each device (energy, power), a journal with alarms for one device
   in ten; building the report and rendering HTML, PDF and Excel, each timed (bound: 10 s),
   twice: the first in the process (it imports matplotlib and WeasyPrint, as ``hub
   report`` does) and the next (as in a running hub, which imported them once). The load
   average is printed with them: on a shared machine wall time is CPU time stretched by
   the run queue.
3. **a year of daily energy** of the same project from a store holding 365 daily buckets
   per device: :func:`hub.analysis.energy.project_energy` and the API's per-day answer
   (bound: 1 s).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

from twisted.internet import defer, task

from hub.model import Event, EventKind, EventState, Level, Reading
from hub.rollups import DAY, HOUR, RollupOptions, RollupSink, RollupStore
from hub.testing import SinkHarness
from scripts.bench_rollups import T0, readings

#: how the rollups fold in each measured mode (None: no rollups)
MODES = {"process": RollupOptions(process=True, flush_interval=0.5),
         "thread": RollupOptions(process=False, worker="thread", flush_interval=0.5),
         "inline": RollupOptions(process=False, worker="inline", flush_interval=0.5)}


def caught_up(sink: RollupSink, seq: int) -> defer.Deferred[None]:
    """Fires once the sink's journal cursor reaches ``seq``."""
    tail = sink.tail
    d: defer.Deferred[None] = defer.Deferred()
    commit = tail.commit

    def watched(*args: Any, **kwargs: Any) -> bool:
        moved = commit(*args, **kwargs)
        if tail.cursor >= seq and not d.called:
            d.callback(None)
        return moved
    tail.commit = watched  # type: ignore[method-assign]
    if tail.cursor >= seq:
        d.callback(None)
    return d


@defer.inlineCallbacks
def ingest(reactor: Any, tmp: Path, data: list[Reading], mode: str | None,
           commit: int = 20_000) -> Any:
    """(ingest readings/s, reactor-thread CPU µs per reading, rollups readings/s or
    (that, fold readings per CPU-second), hub-process CPU µs per reading until the rollups
    caught up)."""
    h = SinkHarness(str(tmp), clock=reactor)
    sink = None
    if mode is not None:
        sink = h.start(RollupSink(h.port, "rollups", MODES[mode]))
        if sink.supervisor is not None:  # the fold process ready: its start-up not timed
            while "rollups.fold_cpu_seconds" not in {m["name"] for m in h.metrics.snapshot()}:
                yield task.deferLater(reactor, 0.01, lambda: None)
    t = time.perf_counter()
    cpu = time.thread_time()
    pcpu = time.process_time()
    for k in range(0, len(data), commit):
        h.journal.append(data[k:k + commit])
        h.journal.flush()
        yield task.deferLater(reactor, 0, lambda: None)  # the reactor's turn: sink wake-ups
    elapsed = time.perf_counter() - t
    cpu_us = (time.thread_time() - cpu) / len(data) * 1e6
    fold_rate = None
    if sink is not None:
        last = h.journal.last_seq()
        # told when the cursor gets there: a poll would be the hub's largest CPU cost
        # while a fold process catches up
        yield caught_up(sink, last)
        fold_rate = len(data) / (time.perf_counter() - t)
    proc_us = (time.process_time() - pcpu) / len(data) * 1e6
    if sink is not None:
        worker, supervisor = sink.worker, sink.supervisor
        fold_cpu = supervisor.cpu_seconds if supervisor is not None else None
        yield sink.stopService()
        if worker is not None and worker.threaded:
            fold_cpu = worker.cpu_seconds
        if fold_cpu:
            fold_rate = (fold_rate, len(data) / fold_cpu)
    h.close()
    return len(data) / elapsed, cpu_us, fold_rate, proc_us


def month_store(path: str, devices: int, since: float, days: int) -> None:
    """A month of hourly energy and power readings of ``devices`` devices."""
    store = RollupStore(path)
    names = {}
    rows = []
    seq = 0
    for d in range(devices):
        names[2 * d] = (f"d{d}", "", "active_energy")
        names[2 * d + 1] = (f"d{d}", "", "active_power")
    for h in range(days * 24 + 1):
        ts = since + h * HOUR
        for d in range(devices):
            seq += 1
            rows.append((seq, 0, 2 * d, ts, 100.0 + h * (1 + d % 7) * 0.5, None, None))
            seq += 1
            rows.append((seq, 0, 2 * d + 1, ts, 500.0 + (d * 37 + h * 11) % 900, None, None))
        if len(rows) > 200_000:
            store.apply(rows, names.__getitem__)
            rows = []
    store.apply(rows, names.__getitem__)
    store.close()


def year_store(path: str, devices: int, since: float) -> None:
    """365 daily energy buckets of each device, written directly (as a year of folding
    would leave them)."""
    store = RollupStore(path)
    db = store.db
    db.execute("BEGIN")
    for d in range(devices):
        sid = store._series_id((f"d{d}", "", "active_energy"))
        db.executemany(
            "INSERT INTO buckets VALUES (?, ?, ?, 24, 0, 1, 12, ?, 1, ?)",
            [(sid, DAY, since + i * DAY, since + i * DAY + DAY - 1, 10.0 + (d + i) % 5)
             for i in range(365)])
    db.execute("COMMIT")
    store.close()


def bench_report(base: Path, devices: int, runs: int = 2
                 ) -> list[dict[str, tuple[float, float]]]:
    from hub.analysis.energy import TouSchedule
    from hub.analysis.grading import GradingScheme
    from hub.analysis.settings import AnalysisSettings
    from hub.reports.data import build_report, month_range
    from hub.reports.render import render

    since, until = month_range("2026-01", 8 * 3600)
    days = round((until - since) / DAY)
    path = str(base / "month.sqlite")
    month_store(path, devices, since, days)
    h = SinkHarness(str(base / "month"))
    events = []
    for d in range(0, devices, 10):
        for i in range(5):
            ts = since + (d % 28) * DAY + i * 3 * HOUR
            eid = f"a{d}-{i}"
            events += [Event(f"d{d}", EventKind.ALARM, "temperature", EventState.RAISED, ts,
                             Level.ALARM, "T1", id=eid),
                       Event(f"d{d}", EventKind.ALARM, "temperature", EventState.CLEARED,
                             ts + 1800, Level.ALARM, "T1", id=eid, raised_ts=ts)]
    h.feed(events)
    s = AnalysisSettings(path, 8 * 3600, GradingScheme(), TouSchedule(), True)
    store = RollupStore(path, readonly=True)
    runs_out = []
    for _ in range(runs):
        out: dict[str, tuple[float, float]] = {}
        t, c = time.perf_counter(), time.process_time()
        report = build_report(h.journal, store, "p", {f"d{d}": f"配电箱 {d}"
                                                      for d in range(devices)},
                              since, until, s, "2026-01", "基准项目")
        out["build"] = (time.perf_counter() - t, time.process_time() - c)
        for fmt in ("pdf", "html", "xlsx"):  # the PDF first: it pays the imports
            t, c = time.perf_counter(), time.process_time()
            render(report, fmt)
            out[fmt] = (time.perf_counter() - t, time.process_time() - c)
        runs_out.append(out)
    store.close()
    h.close()
    return runs_out


def bench_year(base: Path, devices: int) -> tuple[float, float, int]:
    """(wall s, CPU s, days) of the best of three."""
    from hub.analysis.energy import by_period, project_energy

    since = T0
    path = str(base / "year.sqlite")
    year_store(path, devices, since)
    store = RollupStore(path, readonly=True)
    ids = [f"d{d}" for d in range(devices)]
    best = (float("inf"), float("inf"))
    for _ in range(3):
        t, c = time.perf_counter(), time.process_time()
        daily = project_energy(store, ids, DAY, since, since + 365 * DAY)
        per_day = by_period(daily, store.tz_offset, "day")
        best = min(best, (time.perf_counter() - t, time.process_time() - c))
    store.close()
    return best[0], best[1], len(per_day)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--readings", type=int, default=600_000)
    p.add_argument("--devices", type=int, default=1000)
    p.add_argument("--report-devices", type=int, default=1000)
    p.add_argument("--skip-ingest", action="store_true")
    p.add_argument("--skip-report", action="store_true")
    p.add_argument("--modes", default="process,thread,inline",
                   help="fold modes measured against no rollups (process, thread, inline)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--verbose", action="store_true", help="print every run")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        if not args.skip_ingest:
            from twisted.internet import reactor

            data = readings(args.readings, args.devices)
            results: dict[str | None, Any] = {}
            modes: list[str | None] = [None, *(m for m in args.modes.split(",") if m)]

            @defer.inlineCallbacks
            def run() -> Any:
                try:
                    # alternate, so a noisy neighbour hits every mode alike
                    for i in range(args.rounds):
                        for mode in modes:
                            r = yield ingest(reactor, base / f"{mode}{i}", data, mode)
                            results.setdefault(mode, []).append(r)
                            if args.verbose:
                                print(f"  round {i} {mode}: {r}", flush=True)
                finally:
                    reactor.stop()
            reactor.callWhenRunning(run)
            load0 = os.getloadavg()
            reactor.run()
            load1 = os.getloadavg()

            def rate(r: Any, i: int) -> float:
                v = r[2] if isinstance(r[2], tuple) else (r[2], None)
                return v[i] or 0.0
            # medians: a neighbour's burst hits single runs; best-of would flatter
            best = {m: (median(r[0] for r in rs), median(r[1] for r in rs),
                        median(rate(r, 0) for r in rs), median(rate(r, 1) for r in rs),
                        median(r[3] for r in rs))
                    for m, rs in results.items()}
            alone = best[None]
            print(f"ingest: {len(data):,} readings ({args.devices:,} devices × 3 series), "
                  f"commits of 20,000, real reactor; median of {args.rounds} alternated "
                  f"rounds; load average {load0[0]:.1f} before, {load1[0]:.1f} after "
                  f"({os.cpu_count()} CPUs)")
            print(f"  without rollups:         {alone[0]:10,.0f} readings/s, reactor CPU "
                  f"{alone[1]:.2f} µs/reading, hub process CPU {alone[4]:.2f} µs/reading")
            labels = {"process": "rollups in their process", "thread": "rollups on a thread",
                      "inline": "rollups on the reactor"}
            for mode in modes[1:]:
                r = best[mode]
                print(f"  with {labels[mode] + ':':20s}{r[0]:10,.0f} readings/s "
                      f"({(1 - r[0] / alone[0]) * 100:+.0f} % slower), reactor CPU "
                      f"{r[1]:.2f} µs/reading ({(r[1] / alone[1] - 1) * 100:+.0f} %), "
                      f"hub process CPU {r[4]:.2f} µs/reading "
                      f"({(r[4] / alone[4] - 1) * 100:+.0f} %); rollups at the end "
                      f"{r[2]:,.0f} readings/s"
                      + (f"; fold {r[3]:,.0f} readings per CPU-second" if r[3] else ""))
        if not args.skip_report:
            before = os.getloadavg()[0]
            runs = bench_report(base, args.report_devices)
            print(f"monthly report, {args.report_devices:,} devices, a month of hourly "
                  f"rollups, s wall (CPU); load average {before:.1f} before, "
                  f"{os.getloadavg()[0]:.1f} after:")
            for label, r in zip(("first in the process", "next"), runs, strict=False):
                print(f"  {label}: " + ", ".join(f"{k} {w:.2f} ({c:.2f})"
                                                 for k, (w, c) in r.items()))
                print(f"    data + PDF {r['build'][0] + r['pdf'][0]:.2f} s wall, "
                      f"{r['build'][1] + r['pdf'][1]:.2f} s CPU (bound 10 s)")
            wall, cpu, days = bench_year(base, args.report_devices)
            print(f"a year of daily energy ({days} days), one project of "
                  f"{args.report_devices:,} devices: {wall * 1000:.0f} ms wall, "
                  f"{cpu * 1000:.0f} ms CPU (best of 3; bound 1 s)")


if __name__ == "__main__":
    main()
