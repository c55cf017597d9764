"""The shared partition directory (hub.cluster.shared): the checks a core makes at start,
its id, and the agreement of the cores on it (hub.cluster.core.Owner.same_directory)."""

from __future__ import annotations

import asyncio
import os
from types import SimpleNamespace

import pytest

from hub.cluster.core import Owner
from hub.cluster.settings import ClusterSettings
from hub.cluster.shared import (
    ID_FILE,
    PartitionDirError,
    PartitionLock,
    check_partition_dir,
    cluster_id,
)
from hub.metrics import Metrics


def test_the_first_core_makes_the_id_and_every_later_one_reads_it(tmp_path):
    path = str(tmp_path / "partitions")
    first = check_partition_dir(path)
    assert len(first) == 32 and check_partition_dir(path) == first == cluster_id(path)
    assert not [f for f in os.listdir(path) if f.startswith(".probe")]
    other = str(tmp_path / "elsewhere")
    assert check_partition_dir(other) != first


def test_an_empty_id_left_by_a_crash_is_made_again(tmp_path):
    (tmp_path / ID_FILE).write_text("")
    assert len(cluster_id(str(tmp_path))) == 32


def test_a_directory_that_cannot_be_one_fails_the_start_saying_what(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PartitionDirError, match="docs/scaling.md"):
        check_partition_dir(str(blocker / "partitions"))


def test_the_partition_lock_names_its_holder_and_is_freed_on_release(tmp_path):
    lock = PartitionLock(str(tmp_path), "core-1")
    lock.acquire()
    assert (tmp_path / "owner.lock").read_text().startswith("core-1 pid ")
    lock.release()
    again = PartitionLock(str(tmp_path), "core-2")
    again.acquire()
    assert (tmp_path / "owner.lock").read_text().startswith("core-2 pid ")
    again.release()


class _Kv:
    def __init__(self, values: dict[str, bytes]) -> None:
        self.values = values

    async def get(self, key: str):
        import nats.js.errors

        if key not in self.values:
            raise nats.js.errors.KeyNotFoundError
        return SimpleNamespace(value=self.values[key])


def owner(values: dict[str, bytes]) -> Owner:
    settings = ClusterSettings(node="core1", partition_dir="/srv/p")
    node = SimpleNamespace(metrics=Metrics(), config=SimpleNamespace(api=None))
    o = Owner(node, SimpleNamespace(settings=settings, kv=_Kv(values)))
    o.dir_id = "a" * 32
    return o


def test_cores_on_another_directory_are_refused_until_they_agree():
    o = owner({"node.core2": b"a" * 32, "node.core3": b"b" * 32, "node.core4": b"1"})
    nodes = ["core1", "core2", "core3", "core4", "gone"]
    assert asyncio.run(o.same_directory(nodes)) is False
    assert o.node.metrics.value("cluster.partition_dir_conflicts") == 1
    o.link.kv.values["node.core3"] = b"a" * 32
    assert asyncio.run(o.same_directory(nodes)) is True
    assert o.node.metrics.value("cluster.partition_dir_conflicts") == 0
