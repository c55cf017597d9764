"""Real services for tests and benchmarks, started on free loopback ports with temporary
data directories and stopped by the process we started (never by name).

VictoriaMetrics (Debian ``victoria-metrics``) accepts the InfluxDB v2 write API
(``/api/v2/write``) and reads back with ``/api/v1/export``: a field ``f`` of measurement
``m`` becomes the series ``m_f`` with the tags as labels, timestamps in milliseconds. New
points become visible about a second after they were written, so reads poll with a deadline.

InfluxDB keeps one value per series and timestamp (a second write of the same point replaces
the first); VictoriaMetrics keeps every sample unless ``-dedup.minScrapeInterval`` is set.
:class:`VictoriaMetrics` sets it to 1 ms by default, so the database behaves as InfluxDB
does for points a millisecond or more apart, and :meth:`VictoriaMetrics.rows_inserted`
still counts every row received (re-deliveries included).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

VM_BINARY = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.05,
               what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something true, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not reached within {timeout} s")
        pause.wait(interval)


class VictoriaMetrics:
    """One ``victoria-metrics`` process; :meth:`stop` and :meth:`start` again keep the data
    (same directory and port), which is what an outage looks like."""

    def __init__(self, data_dir: str, port: int | None = None, log_path: str | None = None,
                 dedup: str | None = "1ms"):
        self.data_dir = data_dir
        self.dedup = dedup
        self.port = port or free_port()
        self.log_path = log_path or os.path.join(os.path.dirname(data_dir.rstrip("/")),
                                                 f"victoria-metrics-{self.port}.log")
        self.proc: subprocess.Popen | None = None
        self._polls = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> VictoriaMetrics:
        if not os.path.exists(VM_BINARY):
            raise RuntimeError("victoria-metrics is not installed (make system-deps)")
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [VM_BINARY, f"-storageDataPath={self.data_dir}",
             f"-httpListenAddr=127.0.0.1:{self.port}", "-retentionPeriod=100y",
             "-loggerLevel=WARN",
             *([f"-dedup.minScrapeInterval={self.dedup}"] if self.dedup else [])],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        try:
            wait_until(self.healthy, timeout, what=f"victoria-metrics on port {self.port}")
        except TimeoutError:
            self.stop()
            raise
        return self

    def healthy(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"victoria-metrics exited; see {self.log_path}")
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=1) as r:
                return r.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (VictoriaMetrics flushes what it accepted) and wait for the exit."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self.proc = None

    def rows_inserted(self) -> int:
        """Rows received through the InfluxDB write API since this process started."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line.startswith('vm_rows_inserted_total{type="influx"}'):
                    return int(float(line.rsplit(" ", 1)[1]))
        return 0

    def export(self, match: str = '{__name__=~".+"}') -> list[dict]:
        """Every series matching ``match``: ``{"metric": {...}, "values": [...],
        "timestamps": [...]}`` (ms).

        VictoriaMetrics caches which series a filter selects, and a series created after a
        query was cached stays invisible to that same filter for about ten seconds. Every
        call therefore adds a label filter that matches everything but differs each time
        (``hubtest_poll!="<n>"``), so polling sees new series within the usual second.
        """
        self._polls += 1
        assert match.endswith("}"), "match must be a {...} selector"
        match = f'{match[:-1].rstrip()}{"," if match[:-1].strip(" {") else ""}' \
                f'hubtest_poll!="{self._polls}"}}'
        data = urllib.parse.urlencode({"match[]": match}).encode()
        with urllib.request.urlopen(self.url + "/api/v1/export", data=data, timeout=60) as r:
            return [json.loads(line) for line in r.read().splitlines() if line.strip()]

    def points(self, match: str = '{__name__=~".+"}') -> list[tuple[tuple, int, float]]:
        """Every stored sample as ``(series key, ms, value)``, duplicates included; the
        series key is the sorted labels with ``__name__``."""
        out = []
        for s in self.export(match):
            key = tuple(sorted(s["metric"].items()))
            out += [(key, ts, v) for ts, v in zip(s["timestamps"], s["values"], strict=True)]
        return out

    def wait_for_points(self, count: int, match: str = '{__name__=~".+"}',
                        timeout: float = 30.0) -> list[tuple[tuple, int, float]]:
        """Poll the export until at least ``count`` samples match (or the deadline)."""
        latest: list = []

        def enough() -> bool:
            latest[:] = self.points(match)
            return len(latest) >= count

        try:
            wait_until(enough, timeout, interval=0.2, what=f"{count} points in victoria-metrics")
        except TimeoutError:
            raise AssertionError(f"only {len(latest)} of {count} points arrived") from None
        return latest


@pytest.fixture
def victoria(tmp_path):
    """A VictoriaMetrics for one test (its own port and data directory), stopped after it."""
    vm = VictoriaMetrics(str(tmp_path / "vm-data"))
    vm.start()
    yield vm
    vm.stop()
