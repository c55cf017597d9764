"""Benchmark: how many readings a second the rollups keep up with, and what they cost ingest.

    .venv/bin/python -m scripts.bench_rollups                  # 300,000 readings
    .venv/bin/python -m scripts.bench_rollups --readings 1000000 --devices 1000

1. **fold**: a journal filled with ``--readings`` readings (``--devices`` devices × energy,
   power and temperature, one reading each per minute) is folded into a fresh rollup store
   from its read rows, in batches of 5,000 as the sink reads: readings/s.
2. **ingest with and without**: the same readings journaled in commits of 20,000 on a
   ``task.Clock``, once alone and once with the ``rollups`` sink (a ``BatchSink``) running
   after every commit, as in the hub: readings/s both ways and the slowdown (the issue's
   target: at most 15 %, at 100,000 readings/s).

3. **the fold process on issue 15's payload**: a journal of ``--messages`` nine-value
   messages of 100 devices (the realistic payload of ``scripts.bench_mqtt``), committed 50
   messages at a time (a commit of the hub at 10,000 msg/s), folded by the fold process's
   own loop (:class:`hub.rollups.child.Fold`, in this process) into a fresh store: reads
   of at most 18,000 readings (what 0.2 s of polling finds at 10,000 msg/s) and a write
   every 90,000 (1 s); CPU per reading and per message (``time.process_time``, median of
   ``--rounds``). Run it against other code with ``PYTHONPATH=<checkout> python
   <this file>``: the loop's interface has not changed.

On the `task.Clock` of this benchmark the sink folds inline, on the one thread (`python -m
scripts.bench_reports` measures it on its worker thread, as the hub runs it).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from twisted.internet.task import Clock

from hub.model import Reading
from hub.rollups import RollupOptions, RollupSink, RollupStore
from hub.testing import SinkHarness

T0 = 1_767_196_800.0


def readings(n: int, devices: int) -> list[Reading]:
    out = []
    per_step = devices * 3
    for k in range(n):
        step, i = divmod(k, per_step)
        d, q = divmod(i, 3)
        ts = T0 + step * 60
        dev = f"d{d}"
        if q == 0:
            out.append(Reading(dev, "active_energy", 1000 + step * 0.05, ts))
        elif q == 1:
            out.append(Reading(dev, "active_power", 3000 + (k % 97), ts))
        else:
            out.append(Reading(dev, "temperature", 25 + (k % 13), ts, "T1"))
    return out


def ingest(tmp: Path, data: list[Reading], with_rollups: bool, commit: int = 20_000) -> float:
    clock = Clock()
    clock.advance(T0 + 86400 * 400)
    h = SinkHarness(str(tmp), clock=clock)
    if with_rollups:
        h.start(RollupSink(h.port, "rollups", RollupOptions(batch_size=5000,
                                                             flush_interval=0.01)))
    t = time.perf_counter()
    for k in range(0, len(data), commit):
        h.journal.append(data[k:k + commit])
        h.journal.flush()
        clock.advance(0.02)  # the sink's wake-up and partial-batch flush
        clock.advance(0.02)
    h.run(1, step=0.02)
    elapsed = time.perf_counter() - t
    if with_rollups:
        assert h.cursor("rollups") == h.journal.last_seq()
    h.close()
    return len(data) / elapsed


#: issue 15's nine values per message: (quantity, channel, value)
POINTS = [("residual_current", "", 31.5), ("temperature", "T1", 45.2), ("voltage", "A", 221.3),
          ("voltage", "B", 220.8), ("voltage", "C", 219.6), ("current", "A", 10.2),
          ("current", "B", 10.4), ("current", "C", 9.8), ("power_factor", "", 0.93)]


def realistic_journal(tmp: Path, messages: int, devices: int = 100, rate: float = 10_000,
                      commit: int = 50) -> str:
    h = SinkHarness(str(tmp))
    records = []
    for m in range(messages):
        ts = T0 + m / rate
        device = f"d{m % devices}"
        records += [Reading(device, q, v + (m % 17) * 0.1, ts, c) for q, c, v in POINTS]
        if (m + 1) % commit == 0:
            h.feed(records)
            records = []
    if records:
        h.feed(records)
    path = h.journal.path
    h.close()
    return path


def fold_process_cpu(journal: str, store: str, readings: int) -> float:
    """CPU seconds of the fold process's loop folding the whole journal into ``store``."""
    import io

    from hub.rollups.child import Fold

    r, w = os.pipe()
    fold = Fold(journal, store, 8 * 3600, 18_000, 1.0, 0.01, io.StringIO())
    assert fold.lock(r)
    fold.open()
    try:
        import hub.rollups.vector  # noqa: F401  (numpy, when there: imported at start)
    except ImportError:
        pass
    t = time.process_time()
    since = 0
    while True:
        more = fold.step()
        if fold.acc.readings - since >= 90_000 or not more:
            fold.flush()
            since = 0
        if not more:
            break
    cpu = time.process_time() - t
    assert fold.store.applied > 0
    got = fold.store.db.execute("SELECT sum(count) FROM buckets WHERE width = 3600").fetchone()
    assert got[0] == readings, got
    fold.close()
    os.close(r)
    os.close(w)
    return cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--readings", type=int, default=300_000)
    p.add_argument("--devices", type=int, default=1000)
    p.add_argument("--messages", type=int, default=60_000,
                   help="3.: nine-value messages in the fold process's journal")
    p.add_argument("--rounds", type=int, default=3, help="3.: folds of that journal")
    args = p.parse_args()
    data = readings(args.readings, args.devices)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        alone = ingest(base / "a", data, False)
        both = ingest(base / "b", data, True)
        h = SinkHarness(str(base / "a2"))
        h.feed(data)
        store = RollupStore(str(base / "fold.sqlite"))
        t = time.perf_counter()
        after = 0
        while True:
            rows = h.journal.read_rows(after, 5000, {"reading"})
            if not rows:
                break
            store.apply(rows, h.journal.series_key)
            after = rows[-1][0]
        fold = len(data) / (time.perf_counter() - t)
        store.close()
        h.close()
        journal = realistic_journal(base / "r", args.messages)
        n = args.messages * len(POINTS)
        cpus = sorted(fold_process_cpu(journal, str(base / f"r{k}.sqlite"), n)
                      for k in range(args.rounds))
        process = cpus[len(cpus) // 2] / n
    print(f"readings: {len(data):,} ({args.devices:,} devices × 3 series)")
    print(f"fold into rollups:        {fold:12,.0f} readings/s")
    print(f"ingest without rollups:   {alone:12,.0f} readings/s")
    print(f"ingest with rollups:      {both:12,.0f} readings/s "
          f"({(1 - both / alone) * 100:.0f} % slower)")
    print(f"fold process, issue 15's payload ({args.messages:,} messages of 9 readings, "
          f"median of {args.rounds}): {process * 1e6:.3f} µs CPU per reading, "
          f"{process * 9e6:.2f} µs per message; load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
