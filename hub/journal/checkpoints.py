"""WAL checkpoints off the reactor thread: a mixin of :class:`hub.journal.Journal`."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger(namespace="hub.journal")

#: Checkpoint every this many WAL pages; fewer, larger checkpoints measured ~20 % faster.
WAL_AUTOCHECKPOINT = 10000


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

    def _maybe_checkpoint(self) -> None:
        if self._checkpointing or self._checkpoint_runner is None:
            return
        try:
            wal = os.path.getsize(self.path + "-wal")
        except OSError:
            return
        if wal < self._wal_threshold:
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

