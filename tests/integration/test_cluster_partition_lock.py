"""The partition lock between processes (hub.cluster.shared.PartitionLock): a second
process cannot open a partition another one holds, and a kill -9 frees it at once."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hub.cluster.shared import PartitionBusy, PartitionLock

HOLD = """
import sys
from hub.cluster.shared import PartitionLock
lock = PartitionLock(sys.argv[1], "core-1")
lock.acquire()
print("held", flush=True)
sys.stdin.read()
"""


def test_a_held_partition_is_refused_naming_its_holder_and_freed_by_kill_9(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(PartitionBusy, match=f"core-1 pid {holder.pid}"):
            PartitionLock(str(tmp_path), "core-2").acquire()
    finally:
        holder.kill()
        holder.wait(10)
    lock = PartitionLock(str(tmp_path), "core-2")
    lock.acquire()
    lock.release()
