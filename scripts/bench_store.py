"""The platform store's cost per operation on SQLite and on PostgreSQL, in the same run.

    .venv/bin/python -m scripts.bench_store            # 2,000 of each operation
    .venv/bin/python -m scripts.bench_store --n 500

For each backend: a token lookup (``session_by_token``, what every API request does), a login
(``add_session``), an alarm raised and stored (``ingest`` of one event), a notification claim
(``notify_claim``); the wall time per operation (p50, p99) and the hub process's CPU per
operation (``time.process_time``: the client side; PostgreSQL's own CPU is in its server
processes and not counted). PostgreSQL is a local one started for the run (loopback, fsync
and synchronous commit off, as the tests run it), so its figures are a floor: a real cluster
adds the network round trip and a durable commit to each write.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable

from hub.model import Event, EventKind, EventState, Level
from hub.store import SqliteStore
from hub.store.postgres import PostgresStore
from tests.support.postgres import PostgresServer


def _measure(n: int, op: Callable[[int], object]) -> dict[str, float]:
    walls = []
    cpu0 = time.process_time()
    for i in range(n):
        t = time.perf_counter()
        op(i)
        walls.append(time.perf_counter() - t)
    cpu = time.process_time() - cpu0
    walls.sort()
    return {"p50_ms": statistics.median(walls) * 1e3,
            "p99_ms": walls[min(n - 1, int(n * 0.99))] * 1e3, "cpu_us": cpu / n * 1e6}


def run(store, n: int) -> dict[str, dict[str, float]]:
    u = store.add_user("bench", "h", now=1.0)
    for i in range(n):
        store.add_session(u.id, f"t{i}", f"r{i}", 1e12, 1e12, 2.0)
    out = {
        "session_by_token": _measure(n, lambda i: store.session_by_token(f"t{i}")),
        "add_session": _measure(n, lambda i: store.add_session(
            u.id, f"x{i}", f"y{i}", 1e12, 1e12, 3.0)),
        "ingest (1 alarm)": _measure(n, lambda i: store.ingest([(i + 1, Event(
            f"d{i}", EventKind.ALARM, "temperature", EventState.RAISED, 100.0 + i,
            Level.ALARM, channel="t1", id=f"e{i}", value=70.0))], lambda d: "p1")),
        "notify_claim": _measure(n, lambda i: store.notify_claim(
            [(i + 1, 0, "sms", "13800138000", {"text": "x"})], 200.0)),
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-store-")
    server = PostgresServer(tempfile.mkdtemp(prefix="bench-pg-")).init().start()
    try:
        results = {}
        sq = SqliteStore(os.path.join(tmp, "platform.sqlite"))
        sq.open()
        results["sqlite"] = run(sq, args.n)
        sq.close()
        pg = PostgresStore(server.dsn(), pool=2)
        pg.open()
        results["postgresql"] = run(pg, args.n)
        pg.close()
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(server.root, ignore_errors=True)
    print(f"{'operation':<20} {'backend':<11} {'p50 ms':>8} {'p99 ms':>8} {'CPU µs/op':>10}")
    for backend, ops in results.items():
        for name, m in ops.items():
            print(f"{name:<20} {backend:<11} {m['p50_ms']:8.3f} {m['p99_ms']:8.3f} "
                  f"{m['cpu_us']:10.0f}")


if __name__ == "__main__":
    main()
