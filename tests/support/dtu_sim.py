"""`hub simulate dtu` as a process, and the hub CLI, for DTU tests."""

from __future__ import annotations

import queue
import subprocess
import threading
from pathlib import Path

from tests.support.hubproc import BIN, HubProcess

ROOT = Path(__file__).resolve().parents[2]
EFD = str(ROOT / "conf/devices/efd-example.yaml")


class SimProcess(HubProcess):
    """`hub simulate dtu` in a subprocess, its output read like the hub's (a thread copies
    the lines into a queue; waiting is a get with a deadline, never a sleep)."""

    def __init__(self, argv: list[str], cwd: Path):  # HubProcess's pump, another command
        self.proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.lines = []
        self._queue = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()


def hub_cli(config: Path, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "hub"), *argv, "-c", str(config)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
