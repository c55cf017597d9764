"""The rollup fold in its own process under `hub run`: kill -9 of the fold process at
arbitrary instants and of the hub itself, restarts with backoff (a fault event, a metric),
a clean stop; afterwards the rollups equal a fold of the journal from scratch, so nothing
was counted twice or lost."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
from pathlib import Path

import pytest
import yaml
from twisted.internet.task import Clock

from hub.journal import Journal
from hub.rollups import RollupStore
from tests.support.hubcli import journal_records
from tests.support.hubproc import BIN, HubProcess
from tests.support.services import wait_until

STARTED = re.compile(r"fold process (\d+) started")


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "hub.yaml"
    config.write_text(yaml.safe_dump({
        "hub": {"state_dir": str(tmp_path / "var")},
        "journal": {"commit_interval_ms": 5},
        "transports": {"demo": {"type": "simulator", "interval": 0.02, "period": 30}},
        "sinks": {"rollups": {"type": "rollups", "flush_interval": 0.2,
                              "poll_interval": 0.05, "retry_initial": 0.2,
                              "retry_max": 1.0}},
        "devices": [{"id": f"d{i}", "model": "simulated", "transport": "demo",
                     "address": profile}
                    for i, profile in enumerate(("normal", "overheat", "leakage"))],
    }))
    return config


def _applied(path: Path) -> int:
    if not path.exists():
        return 0
    store = RollupStore(str(path), readonly=True)
    try:
        return store.applied
    except Exception:  # created but no schema yet
        return 0
    finally:
        store.close()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def _child_pid(hub: HubProcess) -> int:
    while True:  # "fold process N killed ..." comes before "fold process M started"
        m = STARTED.search(hub.wait_for("fold process", timeout=60))
        if m is not None:
            return int(m.group(1))


def _metrics(config: Path, tmp_path: Path) -> dict:
    out = subprocess.run([str(BIN / "hub"), "metrics", "-c", str(config), "--json"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    if out.returncode:
        return {}
    return {(m["name"], tuple(sorted(m["labels"].items()))): m["value"]
            for m in json.loads(out.stdout)["metrics"]}


def _by_name(store: RollupStore) -> dict:
    return {(d, c, q, w, st): (n, lo, hi, tot, lts, last, e) for d, c, q, w, st, n, lo, hi, tot,
            lts, last, e in store.db.execute(
                "SELECT s.device, s.channel, s.quantity, b.width, b.start, b.count, b.min, "
                "b.max, b.total, b.last_ts, b.last, b.energy FROM buckets b JOIN series s "
                "ON s.id = b.series")}


def test_kill_9_of_the_fold_or_the_hub_counts_nothing_twice(tmp_path):
    config = _config(tmp_path)
    store_path = tmp_path / "var" / "rollups.sqlite"
    rng = random.Random(18)
    hub = HubProcess(config, tmp_path)
    try:
        pid = _child_pid(hub)
        hub.wait_for("hub hub started")
        for _ in range(5):
            # kill at an arbitrary point of the fold's read/fold/write cycle
            mark = _applied(store_path) + rng.randint(1, 400)
            wait_until(lambda m=mark: _applied(store_path) >= m, 60, 0.01, "rollups progress")
            os.kill(pid, signal.SIGKILL)
            new = _child_pid(hub)
            assert new != pid
            pid = new
        wait_until(lambda: _metrics(config, tmp_path).get(
            ("rollups.fold_restarts", (("sink", "rollups"),))) == 5, 60, 0.2,
            "rollups.fold_restarts = 5")
        assert "killed by signal 9; started again in" in "".join(hub.lines)
        # the hub killed: its fold process sees its stdin end and leaves by itself
        hub.proc.kill()
        hub.proc.wait(30)
        wait_until(lambda: not _alive(pid), 30, 0.05, "the orphaned fold process gone")
    finally:
        if hub.proc.poll() is None:
            hub.proc.kill()
            hub.proc.wait(30)

    hub = HubProcess(config, tmp_path)
    try:
        pid = _child_pid(hub)
        hub.wait_for("hub hub started")
        mark = _applied(store_path) + 200
        wait_until(lambda: _applied(store_path) >= mark, 60, 0.05, "rollups progress")
    finally:
        assert hub.stop() == 0
    assert not _alive(pid)  # stopped with the hub, not left behind
    assert "killed" not in "".join(hub.lines).split("fold process")[-1]

    faults = [e for e in journal_records(tmp_path, {"event"})
              if e.code == "rollups_fold_failed"]
    assert [e.state.value for e in faults][:2] == ["raised", "cleared"]
    assert len(faults) % 2 == 0  # every raise was cleared by a write after the restart

    journal = Journal(str(tmp_path / "var" / "journal.sqlite"), clock=Clock(), readonly=True)
    journal.open()
    try:
        folded = RollupStore(str(store_path))
        folded.fold_journal(journal)  # what the last commits at the stop added
        fresh = RollupStore(str(tmp_path / "fresh.sqlite"))
        n = fresh.fold_journal(journal)
        assert n > 2000 and folded.applied == fresh.applied == journal.last_seq()
        got, want = _by_name(folded), _by_name(fresh)
        assert got.keys() == want.keys()
        for key, (count, lo, hi, total, lts, last, energy) in want.items():
            g = got[key]
            assert (g[0], g[1], g[2], g[4], g[5]) == (count, lo, hi, lts, last), key
            assert g[3] == pytest.approx(total, rel=1e-9), key
            assert g[6] == (None if energy is None else pytest.approx(energy, rel=1e-9)), key
        folded.close()
        fresh.close()
    finally:
        journal.close()
