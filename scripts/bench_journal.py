"""Benchmarks of the hub's hot paths, one section each.

    .venv/bin/python -m scripts.bench_journal                    # 1,000,000 readings
    .venv/bin/python -m scripts.bench_journal --readings 200000 --batch 1000 --synchronous full

The journal section appends device messages (12 readings of one device, as one Modbus poll
returns them) through :class:`hub.journal.Journal` with its own group commit: a commit when
``--batch`` readings wait, or when the commit interval has passed. The task.Clock is moved
along with the wall clock after every message, so the commit timer fires as it would under
the reactor. The time runs from the first append to the last commit, and every record is
checked to be in the database file (WAL mode) at the end.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable

from twisted.internet.task import Clock

from hub.config import JournalSettings
from hub.journal import Journal
from hub.metrics import Metrics
from hub.model import Reading

T0 = 1_700_000_000.0
#: What one device reports per poll: 4 quantities on 3 phases
POLL = [(q, ch) for q in ("voltage", "current", "temperature", "residual_current") for ch in "ABC"]


def make_readings(n: int, devices: int = 1000) -> list[Reading]:
    """``n`` readings, device after device, each device reporting its 12 points per poll."""
    out: list[Reading] = []
    poll = 0
    while len(out) < n:
        for d in range(devices):
            device = f"dtu-{d:05d}"
            ts = T0 + poll * 10 + d * 0.001
            out += [Reading(device, q, 220.0 + (poll + d) % 17, ts, ch) for q, ch in POLL]
        poll += 1
    return out[:n]


def bench_journal(
    n: int,
    batch: int,
    path: str | None = None,
    devices: int = 1000,
    synchronous: str = "normal",
    readings: list[Reading] | None = None,
) -> float:
    """Commit ``n`` readings through the journal; return readings committed per second."""
    readings = readings if readings is not None else make_readings(n, devices)
    tmp = None
    if path is None:
        tmp = tempfile.mkdtemp(prefix="bench-journal-")
        path = os.path.join(tmp, "journal.sqlite")
    clock, metrics = Clock(), Metrics()
    journal = Journal(path, clock=clock, max_batch=batch, metrics=metrics, synchronous=synchronous,
                      commit_interval=JournalSettings.commit_interval)
    journal.open()
    base = journal.last_seq()
    acked = [0]

    def ack(seq: int, count: int) -> int:
        acked[0] += count
        return seq

    step = len(POLL)
    cpu = time.process_time()
    start = time.perf_counter()
    for i in range(0, n, step):
        message = readings[i : i + step]
        journal.append(message).addCallback(ack, len(message))
        clock.advance(time.perf_counter() - start - clock.seconds())
    journal.flush()
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    journal.close()

    db = sqlite3.connect(path)
    stored = db.execute("SELECT count(*) FROM records WHERE seq > ?", (base,)).fetchone()[0]
    db.close()
    if acked[0] != n or stored != n:
        raise SystemExit(f"journal: {n} appended but {acked[0]} acked and {stored} stored")
    commits = metrics.value("journal.commits")
    rate = n / elapsed
    print(f"journal: {n} readings committed in {elapsed:.2f} s = {rate:,.0f} readings/s"
          f" ({cpu / n * 1e6:.2f} µs CPU per reading)")
    print(
        f"         {commits:.0f} commits ({n / commits:,.0f} readings each),"
        f" {devices} devices, synchronous={synchronous}, {os.path.getsize(path) / 1e6:.0f} MB"
        f" at {path if tmp is None else 'a temporary file'}"
    )
    if tmp is not None:
        for name in os.listdir(tmp):
            os.remove(os.path.join(tmp, name))
        os.rmdir(tmp)
    return rate


def journal_section(args: argparse.Namespace) -> None:
    bench_journal(args.readings, args.batch, args.path, args.devices, args.synchronous)


def bench_alarms(n: int, devices: int = 1000) -> tuple[float, float]:
    """Readings through the alarm engine where every reading crosses a set point (warning
    and alarm raised, then both cleared by the next one): the engine's worst case.
    Returns (readings/s, events/s)."""
    from hub.alarms import AlarmEngine, Threshold

    thresholds = {"temperature": Threshold("temperature", 80.0, 72.0, hysteresis=2.0)}
    engine = AlarmEngine(Clock(), lambda device: thresholds, lambda events: None)
    readings = [
        Reading(f"dtu-{i % devices:05d}", "temperature", 85.0 if (i // devices) % 2 else 60.0,
                T0 + i * 0.001, f"T{1 + i % 4}")
        for i in range(n)
    ]
    step = len(POLL)
    events = 0
    start = time.perf_counter()
    for i in range(0, n, step):
        events += len(engine.process(readings[i : i + step]))
    elapsed = time.perf_counter() - start
    print(f"alarms:  {n} readings evaluated in {elapsed:.2f} s = {n / elapsed:,.0f} readings/s,"
          f" {events} events = {events / elapsed:,.0f} events/s (every reading crosses)")
    return n / elapsed, events / elapsed


def bench_ingest(n: int, batch: int, devices: int = 1000) -> float:
    """The whole path of Hub.ingest: presence, alarm engine (3 rules per device) and journal
    with group commit. Returns readings/s committed."""
    from hub.testing import build_hub

    config = {
        "alarms": {"defaults": {"temperature": {"alarm": 80}, "overvoltage": {"alarm": 264},
                                "undervoltage": {"alarm": 187}}},
        "journal": {"max_batch": batch},
        "devices": [{"id": f"dtu-{d:05d}", "model": "simulated"} for d in range(devices)],
    }
    readings = make_readings(n, devices)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        clock = Clock()
        clock.advance(T0)
        hub = build_hub(config, tmp, clock=clock)
        hub.open()
        step = len(POLL)
        start = time.perf_counter()
        for i in range(0, n, step):
            message = readings[i : i + step]
            hub.ingest(message[0].device, message, message[0].ts)
            clock.advance(time.perf_counter() - start + T0 - clock.seconds())
        hub.journal.flush()
        elapsed = time.perf_counter() - start
        seq = hub.journal.last_seq()
        hub.close()
    print(f"ingest:  {n} readings through presence + alarms + journal in {elapsed:.2f} s ="
          f" {n / elapsed:,.0f} readings/s (journal at seq {seq})")
    return n / elapsed


def alarms_section(args: argparse.Namespace) -> None:
    bench_alarms(args.alarm_readings, args.devices)


def ingest_section(args: argparse.Namespace) -> None:
    bench_ingest(args.readings, args.batch, args.devices)


#: Every section of the benchmark, run in order by main(); each takes the parsed arguments.
SECTIONS: list[Callable[[argparse.Namespace], None]] = [
    journal_section, alarms_section, ingest_section]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--readings", type=int, default=1_000_000, help="readings to commit")
    p.add_argument("--batch", type=int, default=JournalSettings.max_batch,
                   help="the journal's max_batch (default: the hub's)")
    p.add_argument("--devices", type=int, default=1000, help="devices the readings come from")
    p.add_argument("--synchronous", choices=("normal", "full"), default="normal")
    p.add_argument("--path", help="journal file (default: a temporary file, removed after)")
    p.add_argument("--alarm-readings", type=int, default=400_000,
                   help="readings through the alarm engine")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for section in SECTIONS:
        section(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
