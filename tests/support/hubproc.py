"""Running `hub run` as a real process in tests, and waiting on what it logs."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

BIN = Path(sys.executable).parent
#: the bound on one `hub …` command-line process: on a loaded shared machine its start alone
#: (an interpreter and the hub's imports) was seen taking over 20 s, so a minute was too
#: close; a passing run never waits it out
CLI_TIMEOUT = 180.0


class HubProcess:
    """`hub run` in a subprocess. A thread copies its log lines into a queue, so waiting for
    a line is a blocking get with a deadline (never a sleep, and never a select() that would
    miss lines already sitting in Python's read buffer)."""

    def __init__(self, config: Path, cwd: Path):
        self.proc = subprocess.Popen(
            [str(BIN / "hub"), "run", "-c", str(config)], cwd=cwd, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        return self.wait_for_all(text, timeout=timeout)[0]

    def wait_for_all(self, *texts: str, timeout: float = 60.0) -> list[str]:
        """Wait until each of `texts` has been logged, in whatever order: lines that come
        from different parts of the hub (a transport, the journal's commit) may interleave
        either way, and a test must not depend on which wins."""
        missing = list(texts)
        found: dict[str, str] = {}
        deadline = time.monotonic() + timeout
        while missing and (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            for text in [t for t in missing if t in line]:
                found[text] = line
                missing.remove(text)
            if "failed to start" in line:
                break
        if missing:
            raise AssertionError(
                f"{missing!r} not logged; log so far:\n{''.join(self.lines)}")
        return [found[t] for t in texts]

    def drain(self) -> None:
        """Take every line logged so far, so the next wait_for sees only what comes after
        (a reconnect logged earlier must not stand for the one a test is about to cause)."""
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return
            if line is None:
                self._queue.put(None)
                return
            self.lines.append(line)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=30)
        while (line := self._queue.get(timeout=10)) is not None:
            self.lines.append(line)
        return code
