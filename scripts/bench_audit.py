"""What the audit log costs the reactor: the time one call holds the thread.

    .venv/bin/python -m scripts.bench_audit [--n 500] [--dir DIR]

* ``record_now``: one entry committed at once with ``synchronous = FULL`` (an fsync), what a
  command costs before it is sent;
* a grouped commit of ``--group`` entries (``record`` then the timer's ``flush``), what acks
  and command ends cost;
* a checkpoint (one Ed25519 signature).

The file lives in ``--dir`` (default: a temporary directory on the disk of the checkout,
not tmpfs, so the fsync is real).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.internet.task import Clock

from hub.audit import AuditLog

DETAILS = {"command_id": "3f2a9c0d1e4b5a67", "action": "set_threshold", "channel": "T1",
           "params": {"rule": "temperature", "value": 70}, "ttl": 30.0, "transport": "dtu"}


def ms(samples: list[float]) -> str:
    samples = sorted(samples)
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return (f"median {statistics.median(samples) * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms, "
            f"max {samples[-1] * 1000:.2f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--group", type=int, default=100)
    ap.add_argument("--dir", default=os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "var"))
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        clock = Clock()
        clock.advance(time.time())
        log = AuditLog(os.path.join(d, "audit.sqlite"), clock=clock,
                       key=Ed25519PrivateKey.generate(), checkpoint_every=10**9)
        log.open()
        now = []
        for _ in range(args.n):
            t = time.perf_counter()
            log.record_now("alice", "command.requested", "efd-1", DETAILS)
            now.append(time.perf_counter() - t)
        grouped = []
        for _ in range(max(1, args.n // 10)):
            t = time.perf_counter()
            for _ in range(args.group):
                log.record("alice", "command.finished", "efd-1", DETAILS)
            log.flush()
            grouped.append(time.perf_counter() - t)
        signs = []
        for _ in range(50):
            log.record("alice", "event.acknowledged", "ev", {})
            t = time.perf_counter()
            log.checkpoint()
            signs.append(time.perf_counter() - t)
        log.close()
    print(f"record_now (1 entry, fsync'd commit): {ms(now)}")
    print(f"grouped commit of {args.group} entries: {ms(grouped)}")
    print(f"checkpoint (sign + fsync'd commit of 1 entry and the checkpoint): {ms(signs)}")


if __name__ == "__main__":
    main()
