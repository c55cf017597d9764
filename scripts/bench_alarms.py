"""Benchmark of the alarm desk (issue 16's benchmark): in one process, and with ``--hub``
inside a running hub (:mod:`scripts.bench_alarms_hub`: ``hub run`` with MQTT detectors,
the API and a webhook receiver).

    .venv/bin/python -m scripts.bench_alarms                     # 1,000 storm, 10,000 open
    .venv/bin/python -m scripts.bench_alarms --storm 500 --open 2000
    .venv/bin/python -m scripts.bench_alarms --hub               # the same in `hub run`

What it measures, on the real reactor with the SQLite platform store in a temporary
directory (the desk's own code path: ``store.ingest`` → escalator → storm gate → claim in
the store → a channel that only counts):

1. **storm**: ``--storm`` devices raise an alarm at once (one journal batch); the time from
   the batch's hand-over to the first notification handed to a channel, and to the last
   alarm's record being stored; the requests per recipient (the summary keeps them at
   ``storm_limit`` + 1 per window);
2. **timers**: ``--open`` open alarms whose next step falls due within one second; how late
   each step runs against its due time (p50/p99/max): the target is within 1 s.

Not measured in-process: the journal, MQTT and the providers' own latency (see
``bench_sms``); ``--hub`` measures them together in a running hub.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from twisted.internet import asyncioreactor

asyncioreactor.install()

from twisted.internet import reactor  # noqa: E402

from hub.alarmdesk.policy import Escalator, Policy, Step  # noqa: E402
from hub.model import Event, EventKind, EventState, Level  # noqa: E402
from hub.store import SqliteStore  # noqa: E402


class _Persist:
    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.apply = store.esc_apply
        self.load = store.esc_load
        self.records = store.alarm_records

    def claim(self, notes, ts):
        rows = self.store.notify_claim([(n.alarm_id, n.step, n.channel, n.recipient,
                                         {"text": n.text}) for n in notes], ts)
        return [r is not None for r in rows]


def _percentile(values, p):
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered)) - 1))]


def storm(store: SqliteStore, n: int) -> dict:
    sent: list[tuple[float, str]] = []
    policy = Policy(steps=(Step(0, "sms", ("13800138000", "13900139000")),),
                    storm_limit=5, storm_window=60)
    esc = Escalator(reactor, _Persist(store), lambda p: policy,
                    lambda p, s: [(s.channel, r) for r in s.recipients],
                    lambda note: sent.append((time.monotonic(), note.recipient)))
    now = time.time()
    events = [(i + 1, Event(f"d{i}", EventKind.ALARM, "temperature", EventState.RAISED, now,
                            Level.ALARM, channel="T1", id=f"storm-{i}")) for i in range(n)]
    t0 = time.monotonic()
    changes = store.ingest(events, lambda d: "p1")
    stored = time.monotonic() - t0
    for record, change in changes:
        esc.changed(record, change.action)
    done = []
    reactor.callLater(0.5, lambda: done.append(True))
    while not done:
        reactor.iterate(0.01)
    per_recipient = {}
    for _, r in sent:
        per_recipient[r] = per_recipient.get(r, 0) + 1
    esc.stop()
    return {"alarms": n, "stored_s": round(stored, 3),
            "first_notification_s": round(sent[0][0] - t0, 3) if sent else None,
            "requests_per_recipient_in_window": per_recipient}


def timers(store: SqliteStore, n: int, spread: float = 1.0) -> dict:
    lateness: list[float] = []
    policy = Policy(steps=(Step(2.0, "sms", ("13800138000",)),), storm_limit=10**9)
    records = {}

    def deliver(note):
        lateness.append(time.time() - records[note.alarm_id])

    esc = Escalator(reactor, _Persist(store), lambda p: policy,
                    lambda p, s: [(s.channel, r) for r in s.recipients], deliver)
    base = time.time()
    events = [(10**6 + i, Event(f"t{i}", EventKind.ALARM, "temperature", EventState.RAISED,
                                base + spread * i / n, Level.ALARM, channel="T2",
                                id=f"timer-{i}")) for i in range(n)]
    changes = store.ingest(events, lambda d: "p1")
    for record, change in changes:
        records[record.id] = record.first_ts + 2.0
        esc.changed(record, change.action)
    deadline = time.monotonic() + 2.0 + spread + 60
    while len(lateness) < n and time.monotonic() < deadline:
        reactor.iterate(0.005)
    esc.stop()
    return {"open_alarms": n, "fired": len(lateness),
            "late_p50_s": round(statistics.median(lateness), 3),
            "late_p99_s": round(_percentile(lateness, 99), 3),
            "late_max_s": round(max(lateness), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--storm", type=int, default=1000)
    ap.add_argument("--open", type=int, default=10_000)
    ap.add_argument("--hub", action="store_true", help="inside a running hub (hub run)")
    ap.add_argument("--delay", type=float, default=180.0,
                    help="--hub: the timed step's delay after the raise, s")
    args = ap.parse_args()
    if args.hub:
        from scripts.bench_alarms_hub import run

        for name, figures in run(args.storm, args.open, args.delay).items():
            print(f"{name}: {figures}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(os.path.join(tmp, "platform.sqlite"))
        store.open()
        try:
            print("storm: ", storm(store, args.storm))
            print("timers:", timers(store, args.open))
        finally:
            store.close()


if __name__ == "__main__":
    main()
