"""Asking a hub process from outside: its CLI (``hub … --json``) and its journal file."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from twisted.internet.task import Clock

from hub.journal import Journal
from tests.support.hubproc import BIN, CLI_TIMEOUT

#: the checkout (the virtualenv's parent), where the hub finds its bundled maps
CWD = str(BIN.parent.parent)


def cli(config: Path, cwd: Path, *args: str) -> list[dict]:
    out = subprocess.run([str(BIN / "hub"), *args, "-c", str(config), "--json"], cwd=cwd,
                         capture_output=True, text=True, timeout=CLI_TIMEOUT, check=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def journal_records(tmp_path, kinds: set[str]) -> list:
    journal = Journal(str(tmp_path / "var" / "journal.sqlite"), clock=Clock(), readonly=True)
    journal.open()
    try:
        return [r for _, r in journal.read(0, 100_000, kinds)]
    finally:
        journal.close()


def hub_command(config: str, device: str, action: str, ttl: float = 60) -> dict:
    out = subprocess.run([str(BIN / "hub"), "command", "-c", config, "--device", device, action,
                          "--json", "--ttl", str(ttl), "--by", "tester"], cwd=CWD,
                         capture_output=True, text=True, timeout=CLI_TIMEOUT)
    assert out.returncode in (0, 1), out.stderr
    return json.loads(out.stdout)

