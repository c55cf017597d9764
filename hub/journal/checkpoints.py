"""WAL checkpoints off the reactor thread: a mixin of :class:`hub.journal.Journal`."""

from __future__ import annotations

import os
import sqlite3
import struct
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger(namespace="hub.journal")

#: Checkpoint every this many WAL pages; fewer, larger checkpoints measured ~20 % faster.
WAL_AUTOCHECKPOINT = 10000

#: The wal-index (``-shm``) header, native byte order (sqlite.org/walformat.html): version
#: at 0, mxFrame (frames in the WAL) at 16, nBackfill (frames checkpointed) at 96.
_SHM_HEADER = struct.Struct("=I12xI76xI")
_SHM_VERSION = 3007000


def wal_pending(fd: int) -> int | None:
    """Frames of the WAL not yet copied into the database, from its wal-index open as
    ``fd``; None if the header is not one this code knows."""
    try:
        version, frames, backfilled = _SHM_HEADER.unpack(os.pread(fd, _SHM_HEADER.size, 0))
    except (OSError, struct.error):
        return None
    return frames - backfilled if version == _SHM_VERSION and frames >= backfilled else None


class Checkpoints:
    """Needs the writer's ``_db``, ``_readonly``, ``path``, ``_metrics``."""

    _db: sqlite3.Connection | None
    _readonly: bool
    path: str
    _metrics: Any
    _checkpoint_runner: Callable[[Callable[[], object]], Deferred] | None
    _checkpointing: bool
    _checkpoint_db: sqlite3.Connection | None

    # -- checkpoints ---------------------------------------------------------------------

    def checkpoint_in_threads(self, runner: Callable[[Callable[[], object]], Deferred]) -> None:
        """Move WAL checkpoints off the caller's thread: ``runner(fn)`` runs ``fn`` in a
        worker thread (``twisted.internet.threads.deferToThread``).

        SQLite checkpoints inside the COMMIT that crosses ``wal_autocheckpoint`` pages, so
        every few seconds one commit (and the reactor with it) stalls for 35-140 ms while
        pages are copied into the database file. A PASSIVE checkpoint on a second
        connection runs beside the writer instead (WAL allows one checkpointer with
        concurrent writers), in a thread that releases the GIL inside SQLite.
        """
        if self._readonly or self._db is None:
            return
        self._checkpoint_runner = runner
        self._db.execute("PRAGMA wal_autocheckpoint = 0")
        # a WAL file is a 32-byte header and frames of a 24-byte header plus one page
        self._wal_threshold = 32 + WAL_AUTOCHECKPOINT * (
            self._db.execute("PRAGMA page_size").fetchone()[0] + 24)
        self._wal_pages = WAL_AUTOCHECKPOINT
        try:
            self._shm_fd: int | None = os.open(self.path + "-shm", os.O_RDONLY)
        except OSError:
            self._shm_fd = None

    def _maybe_checkpoint(self) -> None:
        if self._checkpointing or self._checkpoint_runner is None:
            return
        # the WAL file keeps its size when SQLite starts it over after a checkpoint: its
        # size alone made a checkpoint follow nearly every commit (613 in 1,000 commits,
        # a quarter of the journal's CPU), so count the frames not yet checkpointed
        pending = None if self._shm_fd is None else wal_pending(self._shm_fd)
        if pending is not None:
            if pending < self._wal_pages:
                return
        else:
            try:
                if os.path.getsize(self.path + "-wal") < self._wal_threshold:
                    return
            except OSError:
                return
        self._checkpointing = True
        d = self._checkpoint_runner(self._checkpoint)
        d.addCallbacks(self._checkpointed, self._checkpoint_failed)

    def _checkpoint(self) -> tuple[int, int, int]:
        """In a worker thread: one PASSIVE checkpoint on the checkpoint connection."""
        if self._checkpoint_db is None:
            self._checkpoint_db = sqlite3.connect(self.path, isolation_level=None,
                                                  check_same_thread=False)
            self._checkpoint_db.execute("PRAGMA busy_timeout = 5000")
        busy, log_pages, done = self._checkpoint_db.execute(
            "PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return busy, log_pages, done

    def _close_checkpoints(self) -> None:
        if getattr(self, "_shm_fd", None) is not None:
            os.close(self._shm_fd)
            self._shm_fd = None

    def _checkpointed(self, result: tuple[int, int, int]) -> None:
        self._checkpointing = False
        self._metrics.inc("journal.checkpoints")
        self._metrics.set("journal.wal_pages", result[1])
        if self._db is None and self._checkpoint_db is not None:  # closed meanwhile
            self._checkpoint_db.close()
            self._checkpoint_db = None

    def _checkpoint_failed(self, failure: Failure) -> None:
        self._checkpointing = False
        self._metrics.inc("journal.checkpoint_errors")
        log.failure("journal checkpoint failed", failure)

