"""WAL checkpoints beside the writer: one per WAL_AUTOCHECKPOINT pages written, counted
in the wal-index, not one per commit once the WAL file has reached that size."""

from __future__ import annotations

import os

from twisted.internet.task import Clock

from hub.journal import WAL_AUTOCHECKPOINT, Journal
from hub.journal.checkpoints import wal_pending
from hub.model import Reading
from tests.support.journal_wal import checkpoint_inline, fill_until_checkpoint


def test_a_checkpoint_per_threshold_of_pages_not_per_commit_after_the_first(tmp_path):
    j = Journal(str(tmp_path / "j.sqlite"), clock=Clock())
    j.open()
    ran = checkpoint_inline(j)
    value = fill_until_checkpoint(j, ran)
    assert os.path.getsize(j.path + "-wal") >= 32 + WAL_AUTOCHECKPOINT * 4096
    for _ in range(50):  # the WAL file keeps its size; what is left to checkpoint is small
        value += 1
        j.append([Reading("d1", "voltage", value, value, "A")])
        j.flush()
    assert len(ran) == 1
    pending = wal_pending(j._shm_fd)
    assert pending is not None and 50 <= pending < WAL_AUTOCHECKPOINT
    j.close()


def test_wal_pending_refuses_what_is_no_wal_index(tmp_path):
    path = tmp_path / "junk"
    path.write_bytes(b"\x01" * 200)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert wal_pending(fd) is None
    finally:
        os.close(fd)
