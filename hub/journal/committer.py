"""Commits in a thread of their own: a mixin of :class:`hub.journal.Journal`.

A commit of the issue-15 workload (a row and an index entry per reading) is a third of the
hub's CPU, nearly all of it inside SQLite, which releases the GIL. Run on the reactor
thread, it leaves the second core idle and the reactor deaf for its duration; run in one
commit thread on a connection of its own, the reactor decodes the next messages meanwhile.

What does not change: an append's Deferred fires (and the transport acknowledges) only
after the transaction holding it committed, in the reactor thread; one commit at a time,
in seq order; the appends that arrive during a commit wait and go together in the next
one (a group commit that grows with the load). Commits of fewer than :data:`THREAD_MIN`
records (a low rate) stay on the reactor thread, on its connection, as without the thread.
A failed commit fails its appends exactly as :meth:`Journal.flush` does, except that
the seqs it held are not handed out again (the appends after it already have later ones):
the journal has a gap there, as it has where records were pruned. :meth:`Journal.flush`
(close, prune, tests) waits for the commit in flight, then commits on the reactor thread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from typing import Any

from twisted.python.failure import Failure

#: Records a commit must hold to go to the thread. Handing a commit over and back costs
#: 20-25 µs of CPU (measured): nothing next to a commit of hundreds of readings, but +25 %
#: on the small commits of DTU polls and LwM2M notifications, which stay inline.
THREAD_MIN = 256


class ThreadedCommits:
    """Needs the writer's ``_db``, ``_readonly``, ``_connect``, ``_pending``, ``_job``,
    ``_execute_job``, ``_wrote``, ``_settle``, ``_commit_failed``, ``flush``."""

    _committer: ThreadPoolExecutor | None = None
    _commit_db: sqlite3.Connection | None = None
    _inflight: tuple[Future, list, Any] | None = None
    _from_thread: Callable[..., Any] | None = None

    def commit_in_thread(self, call_from_thread: Callable[..., Any]) -> None:
        """Commit in a worker thread from now on; ``call_from_thread(fn, *args)`` runs
        ``fn`` in the reactor thread (``reactor.callFromThread``)."""
        if self._readonly or self._db is None or self._committer is not None:
            return
        db = self._connect(check_same_thread=False)
        # the commits happen on this connection now: it checkpoints as the writer's did
        autocheckpoint = self._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        db.execute(f"PRAGMA wal_autocheckpoint = {int(autocheckpoint)}")
        self._commit_db = db
        self._from_thread = call_from_thread
        self._committer = ThreadPoolExecutor(1, thread_name_prefix="journal-commit")

    def _commit_now(self) -> None:
        if self._committer is None or (self._inflight is None
                                       and self._pending_count < THREAD_MIN):
            self.flush()
        else:
            self._dispatch()

    def _dispatch(self) -> None:
        """Hand what is buffered to the commit thread, unless a commit is in flight (its
        landing dispatches what came meanwhile)."""
        if self._inflight is not None or self._db is None:
            return
        if not (self._pending or self._touches or self._new_devices):
            return
        self._cancel_timer()
        batches, self._pending, self._pending_count = self._pending, [], 0
        job = self._job(batches)
        future = self._committer.submit(self._execute_job, self._commit_db, job)
        self._inflight = (future, batches, job)
        future.add_done_callback(lambda f: self._from_thread(self._landed, f))

    def _landed(self, future: Future, dispatch: bool = True) -> None:
        """In the reactor thread: the commit thread finished ``future``."""
        inflight = self._inflight
        if inflight is None or inflight[0] is not future:
            return  # flush() settled it already
        self._inflight = None
        _, batches, job = inflight
        error = future.exception()
        if error is None:
            self._wrote(job)
            results = [(b, None) for b in batches]
        else:
            results = self._commit_failed(Failure(error, type(error), error.__traceback__),
                                          batches)
        self._settle(results)
        if not dispatch:
            return
        # at once only when a full batch waits: committing whatever came during the commit
        # made small commits back to back, measured 30 % more CPU per message
        if self._pending_count >= self._max_batch:
            self._dispatch()
        elif (self._pending or self._touches or self._new_devices) and self._timer is None:
            self._timer = self._clock.callLater(self._commit_interval, self._timer_fired)

    def _wait_for_commit_thread(self) -> None:
        future = self._inflight[0]
        wait_for([future])
        self._landed(future, dispatch=False)

    def _stop_commit_thread(self) -> None:
        if self._committer is not None:
            self._committer.shutdown(wait=True)
            self._committer = None
        if self._commit_db is not None:
            self._commit_db.close()
            self._commit_db = None
