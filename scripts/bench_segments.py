"""The journal alone on issue 15's workload: append, commit, the keeping-up sink's read back.

    .venv/bin/python -m scripts.bench_segments                       # 40,000 messages
    .venv/bin/python -m scripts.bench_segments --per-commit 40 --rounds 3

Nine-value messages (as ``--payload realistic`` of bench_mqtt sends them) from 100 devices
are appended a message at a time; every ``--per-commit`` messages the journal commits (on
the reactor thread, as :meth:`Journal.flush` does) and a sink reads what was committed
(``read_rows`` from its cursor). At 8,000 msg/s the hub commits about 40 messages at a
time, which is where per-series work of a commit (``latest``) shows. The figure is the
process's CPU per message (all threads), the one to compare on a loaded machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from twisted.internet.task import Clock

from hub.journal import Journal
from hub.model import Reading

T0 = 1_700_000_000.0
VALUES = (("i0", 31.5), ("t1", 45.2), ("ua", 221.3), ("ub", 220.8), ("uc", 222.1),
          ("ia", 10.2), ("ib", 10.4), ("ic", 9.9), ("pf", 0.93))


def messages(n: int, devices: int) -> list[list[Reading]]:
    out = []
    for i in range(n):
        device, ts = f"det-{i % devices:04d}", T0 + i * 0.0001
        out.append([Reading(device, q, v + (i % 7), ts, "1") for q, v in VALUES])
    return out


def run(n: int, devices: int, per_commit: int, checkpoints: bool, wal_pages: int | None = None
        ) -> tuple[float, int, float, int]:
    """CPU seconds per message, the WAL size at the end, CPU seconds per message spent in
    checkpoints (with ``checkpoints``) and their number."""
    msgs = messages(n, devices)
    with tempfile.TemporaryDirectory(prefix="bench-segments-") as tmp:
        path = os.path.join(tmp, "journal.sqlite")
        clock = Clock()
        journal = Journal(path, clock=clock, max_batch=1 << 30, commit_interval=3600)
        journal.open()
        if checkpoints:
            from twisted.internet.defer import maybeDeferred
            journal.checkpoint_in_threads(lambda fn: maybeDeferred(fn))
            if wal_pages is not None:  # as checkpoint_in_threads computes it
                journal._wal_pages = wal_pages
        in_checkpoints = [0.0, 0]
        checkpoint = journal._checkpoint

        def timed() -> tuple[int, int, int]:
            t = time.process_time()
            try:
                return checkpoint()
            finally:
                in_checkpoints[0] += time.process_time() - t
                in_checkpoints[1] += 1
        journal._checkpoint = timed  # type: ignore[method-assign]
        cursor = 0
        cpu = time.process_time()
        for i, m in enumerate(msgs, 1):
            journal.append(m)
            if i % per_commit == 0:
                clock.advance(0.01)
                journal.flush()
                while rows := journal.read_rows(cursor, 10000):
                    cursor = rows[-1][0]
        journal.flush()
        while rows := journal.read_rows(cursor, 10000):
            cursor = rows[-1][0]
        cpu = time.process_time() - cpu
        wal = os.path.getsize(path + "-wal")
        journal.close()
    if cursor != n * len(VALUES):
        raise SystemExit(f"read back to {cursor}, expected {n * len(VALUES)}")
    return cpu / n, wal, in_checkpoints[0] / n, in_checkpoints[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=40_000)
    p.add_argument("--devices", type=int, default=100)
    p.add_argument("--per-commit", type=int, default=40, help="messages per commit")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--checkpoints", action="store_true",
                   help="checkpoint as the hub does (PASSIVE, here inline), not SQLite's own")
    p.add_argument("--wal-pages", type=int,
                   help="with --checkpoints: checkpoint at this many WAL pages")
    args = p.parse_args(argv)
    for r in range(args.rounds):
        cpu, wal, ckpt, ckpts = run(args.messages, args.devices, args.per_commit,
                                    args.checkpoints, args.wal_pages)
        print(f"round {r + 1}: {cpu * 1e6:.1f} µs CPU per message ({args.messages} messages,"
              f" {args.per_commit} per commit, {args.devices} devices; WAL {wal / 1e6:.0f} MB)"
              + (f", of which checkpoints {ckpt * 1e6:.1f} ({ckpts})" if args.checkpoints
                 else "") + f"; load {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
