"""``hub gb26875 centre`` run as a process."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time

from tests.support.hubproc import BIN


class CentreProcess:
    """`hub gb26875 centre` as a process; its JSON lines arrive through a queue."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [str(BIN / "hub"), "gb26875", "centre", "--listen", "127.0.0.1:0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.lines: queue.Queue[dict | str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        first = self.next(30)
        self.port = int(first["地址"].rsplit(":", 1)[1])

    def _pump(self) -> None:
        for line in self.proc.stdout:
            try:
                self.lines.put(json.loads(line))
            except ValueError:
                self.lines.put(line)

    def next(self, timeout: float = 10) -> dict:
        item = self.lines.get(timeout=timeout)
        assert isinstance(item, dict), item
        return item

    def until(self, pred, timeout: float = 10) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            item = self.next(max(0.01, deadline - time.monotonic()))
            if pred(item):
                return item

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)

