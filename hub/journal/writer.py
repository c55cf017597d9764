"""The journal: the one durable store between ingest and the sinks (SQLite in WAL mode).

Records are buffered and committed in groups (group commit): one transaction every
``commit_interval`` seconds, or as soon as ``max_batch`` records wait. :meth:`Journal.append`
returns a Deferred that fires only after the transaction holding the records has committed,
so upstream acknowledges (MQTT PUBACK, LwM2M response, ...) nothing that could still be lost.

Every record gets a ``seq`` from one counter shared by all kinds, so sinks read one stream
and keep one cursor each. Records are deleted only by :meth:`Journal.prune`, and only once
every cursor has passed them; when undelivered records fill the journal, a
``journal_near_full`` fault is raised instead of dropping anything.
After each commit the sinks waiting for new records are woken (:meth:`Journal.when_past`),
and the commit's time is noted, so a record's age is measured by when the hub committed it
(:meth:`Journal.commit_time`). The storage layout is described in :mod:`hub.journal.schema`.

(Slightly over 500 lines: :meth:`Journal.append` converts every record kind, a
:class:`hub.blocks.ReadingBlock` too, in one loop beside the commit bookkeeping it feeds.)
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Callable, Iterable
from itertools import chain
from urllib.parse import quote

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from hub.blocks import BlockKeys, ReadingBlock
from hub.journal.checkpoints import WAL_AUTOCHECKPOINT, Checkpoints
from hub.journal.codecs import (
    ack_to_dict,
    command_to_dict,
    delivery_to_dict,
    dumps,
    result_to_dict,
)
from hub.journal.committer import ThreadedCommits
from hub.journal.cursors import Cursors
from hub.journal.latest import LatestRows
from hub.journal.notify import CommitNotifier
from hub.journal.reader import JournalQueries
from hub.journal.recent import RECENT_ROWS, RECENT_ROWS_HELD, RecentRows
from hub.journal.retention import Retention
from hub.journal.schema import (
    KIND_ACK,
    KIND_COMMAND,
    KIND_DELIVERY,
    KIND_EVENT,
    KIND_READING,
    KIND_RESULT,
    SCHEMA,
    SCHEMA_VERSION,
    JournalClosedError,
    JournalError,
    JournalReadOnlyError,
)
from hub.journal.segments import migrate_from_1
from hub.journal.segments import real as _real
from hub.journal.transaction import Job, execute, rollback
from hub.metrics import Metrics
from hub.model import (
    Acknowledgement,
    Command,
    CommandResult,
    Delivery,
    Event,
    EventKind,
    EventState,
    Quality,
    Reading,
    Record,
)

__all__ = ["Journal"]

log = Logger()

#: A larger page cache keeps the (device, ts) index hot: each commit touches one leaf per device.
CACHE_KIB = 65536
#: Seconds between two rows of ``marks`` (seq -> commit time), the durable dating of records.
MARK_EVERY = 10.0
#: (device, key set) pairs whose series ids append keeps at hand (a few per device).
BLOCK_SERIES_CACHE = 100_000

_GOOD = Quality.GOOD
_RAISED, _CLEARED = EventState.RAISED, EventState.CLEARED
_EDGE_KINDS = (EventKind.ALARM, EventKind.FAULT)


class _Batch:
    """The records of one append(), converted to rows, waiting for a commit."""

    __slots__ = ("deferred", "readings", "others", "active", "last_seq", "plain")

    def __init__(self, readings: list, others: list, active: list, last_seq: int,
                 plain: bool = True) -> None:
        self.deferred: Deferred[int] = Deferred()
        self.readings = readings
        self.others = others
        self.active = active  # (raised?, event id, seq, json) in append order
        self.last_seq = last_seq
        # every reading's value is a finite float: no segment body of it needs the search
        # for values written null (hub.journal.segments.encode)
        self.plain = plain


class Journal(Checkpoints, ThreadedCommits, Cursors, Retention, JournalQueries):
    """The append-only SQLite journal with group commit, per-sink cursors, bounded size.

    Only ``clock.seconds()`` tells time. Used from the reactor thread only. With
    ``readonly=True`` it opens a live journal of another process for queries only.
    """

    def __init__(
        self,
        path: str,
        *,
        clock: IReactorTime,
        commit_interval: float = 0.005,
        max_batch: int = 5000,
        max_bytes: int | None = None,
        warn_ratio: float = 0.9,
        retention: float | None = None,
        synchronous: str = "normal",
        metrics: Metrics | None = None,
        on_fault: Callable[[list[Event]], None] | None = None,
        readonly: bool = False,
        recent_rows: int = RECENT_ROWS,
        recent_rows_held: int = RECENT_ROWS_HELD,
    ) -> None:
        super().__init__()
        # the rows kept in memory for the sinks (hub.journal.recent)
        self._recent = RecentRows(recent_rows, recent_rows_held)
        if synchronous.lower() not in ("normal", "full"):
            raise ValueError(f"synchronous must be 'normal' or 'full', not {synchronous!r}")
        self.path = path
        self._clock = clock
        self._commit_interval = commit_interval
        self._max_batch = max_batch
        self._max_bytes = max_bytes
        self._warn_ratio = warn_ratio
        self._retention = retention
        self._synchronous = synchronous.upper()
        self._metrics = metrics if metrics is not None else Metrics()
        self._on_fault = on_fault
        self._readonly = readonly
        self._pending: list[_Batch] = []
        self._pending_count = 0
        self._timer: IDelayedCall | None = None
        self._next_seq = 0  # last seq handed out, committed or not
        self._last_seq = 0  # last seq committed
        self._series_ids: dict[tuple[str, str, str], tuple[int, int]] = {}
        # (device, BlockKeys) -> the series ids of the block's values (see append)
        self._block_series: dict[tuple[str, BlockKeys], tuple[int, ...]] = {}
        # series id -> device id, for grouping a commit's readings into segments
        self._series_device: dict[int, int] = {}
        # ids handed out but maybe not committed yet: written by every commit until one succeeds
        self._new_devices: list[tuple[int, str]] = []
        self._new_series: list[tuple[int, int, str, str]] = []
        self._touches: dict[int, float] = {}
        self._last_device = self._last_series = 0  # highest ids handed out
        self._commits_since_check = 0
        self._last_check = -math.inf
        self._last_mark = -math.inf
        # marks also date records for sinks' lag and `hub cursors --rewind --to TIME`
        self._mark_every = MARK_EVERY if retention is None else min(MARK_EVERY, retention / 20)
        self._fault: Event | None = None  # the raised journal_near_full event
        self._peak = 0
        # background checkpoints (see checkpoint_in_threads); None: SQLite's own, inline
        self._checkpoint_runner: Callable[[Callable[[], object]], Deferred] | None = None
        self._checkpointing = False
        self._checkpoint_db: sqlite3.Connection | None = None
        # cursors a sink of this process has set: the others belong to no running sink
        self._claimed: set[str] = set()
        self._notifier = CommitNotifier()
        self._latest = LatestRows()
        self._last_latest_save = -math.inf

    # -- lifecycle -----------------------------------------------------------------------

    def open(self) -> None:
        """Connect, set the PRAGMAs, create the schema of a new journal, load the id caches."""
        if self._db is not None:
            raise JournalError(f"{self.path} is already open")
        db = self._connect()
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0 and not self._readonly:
                db.executescript(f"BEGIN; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
            elif version == 1 and not self._readonly:
                self._migrate(db)
            elif version != SCHEMA_VERSION:
                raise JournalError(f"{self.path}: schema {version}, expected {SCHEMA_VERSION}"
                                   + (" (open it read-write once to upgrade it)"
                                      if version == 1 else ""))
            self._db = db
            self._load_names()
            self._last_seq = self._next_seq = self._stored_last_seq()
        except BaseException:
            db.close()
            self._db = None
            raise
        self._block_series.clear()
        for sid, key in self._series_names.items():
            self._series_ids[key] = (self._device_ids[key[0]], sid)
            self._series_device[sid] = self._device_ids[key[0]]
        self._last_device = max(self._device_names, default=0)
        self._last_series = max(self._series_names, default=0)
        if not self._readonly:
            self._latest.load(self._db, self._last_seq)
            for event in self.active_events():
                if event.code == "journal_near_full" and event.device == "hub":
                    self._fault = event  # raised before a restart: clear it when space returns
            self._check_size(force=True)
            self._notifier.opened(self._last_seq, self._clock.seconds())

    def _migrate(self, db: sqlite3.Connection) -> None:
        """Schema 1 to 2 (readings by the segment), in one transaction: all or nothing."""
        log.info("journal {path}: upgrading schema 1 to 2 (readings by the segment)",
                 path=self.path)
        db.execute("BEGIN IMMEDIATE")
        try:
            migrate_from_1(db)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _connect(self, check_same_thread: bool = True) -> sqlite3.Connection:
        if self._readonly:
            if not os.path.exists(self.path):  # mode=ro would fail too, but less clearly
                raise FileNotFoundError(f"no journal at {self.path}")
            uri = f"file:{quote(os.path.abspath(self.path))}?mode=ro"
            db = sqlite3.connect(uri, uri=True, isolation_level=None)
            db.execute("PRAGMA busy_timeout = 5000")
            db.execute("PRAGMA query_only = 1")
            return db
        # autocommit mode: every transaction is an explicit BEGIN ... COMMIT of ours
        db = sqlite3.connect(self.path, isolation_level=None,
                             check_same_thread=check_same_thread)
        try:
            db.execute("PRAGMA busy_timeout = 5000")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise JournalError(f"{self.path}: cannot switch to WAL (journal_mode={mode})")
            db.execute(f"PRAGMA synchronous = {self._synchronous}")
            db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            db.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT}")
            # the WAL file shrinks back after a burst instead of keeping its largest size
            db.execute(f"PRAGMA journal_size_limit = {64 << 20}")
        except BaseException:
            db.close()
            raise
        return db

    def close(self) -> None:
        """Commit what is buffered, stop the timer, close the connection."""
        if self._db is None:
            return
        if not self._readonly:
            self.flush()
            try:
                self._save_latest()
            except sqlite3.Error:  # nothing is lost: the next open folds the segments in
                log.failure("journal: saving latest at close failed")
            self._mark_close()
        self._cancel_timer()
        self._stop_commit_thread()
        self._recent.clear()
        self._db.close()
        self._db = None
        self._close_checkpoints()
        if self._checkpoint_db is not None and not self._checkpointing:
            self._checkpoint_db.close()
            self._checkpoint_db = None

    def last_seq(self) -> int:
        """The seq of the newest committed record (0 for an empty journal)."""
        return self._stored_last_seq() if self._readonly else self._last_seq

    def _stored_last_seq(self) -> int:
        row = self._conn().execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
        return int(row[0]) if row else 0

    # -- writing -------------------------------------------------------------------------

    def append(
        self,
        records: Iterable[Record | Command | CommandResult | Acknowledgement | Delivery],
    ) -> Deferred[int]:
        """Buffer ``records``; the Deferred fires with the last seq given to them once their
        transaction has committed, or fails if it could not commit (nothing acked then).

        Callers validate records; the journal only converts them to rows, as fast as it can.
        """
        self._writable()
        if self._db is None:
            return fail(JournalClosedError("the journal is closed"))
        seq = start = self._next_seq
        readings: list[tuple] = []
        others: list[tuple] = []
        active: list[tuple] = []
        add = readings.append
        series_ids = self._series_ids
        block_sids = self._block_series
        real = _real
        plain = True
        try:
            for r in records:
                t = type(r)
                if t is Reading or isinstance(r, Reading):
                    seq += 1
                    ids = series_ids.get((r.device, r.channel, r.quantity)) or self._new_key(r)
                    q = r.quality
                    q = None if q is _GOOD else Quality(q).value
                    # the row as read_rows gives it back: REAL columns as floats, NaN as None
                    ts, v = r.ts, r.value
                    if type(ts) is not float:
                        ts = float(ts)
                    if type(v) is not float or v - v != 0.0:  # not a finite float
                        v = real(v)
                        plain = False
                    add((seq, KIND_READING, ids[1], ts, v, q, None))
                elif t is ReadingBlock:
                    # a message's readings in one (hub.blocks): the rows without a Reading
                    sids = block_sids.get((r.device, r.keys)) or self._block_sids(r)
                    ts = r.ts if type(r.ts) is float else float(r.ts)
                    values = r.values
                    end = seq + len(values)
                    if r.plain:  # finite floats, checked by the block's maker
                        readings += [(s, KIND_READING, sid, ts, v, None, None)
                                     for s, sid, v in zip(range(seq + 1, end + 1), sids,
                                                          values, strict=True)]
                        seq = end
                        continue
                    if plain:  # one sum in C: a None, NaN or infinity makes it no number
                        try:
                            total = sum(values)
                            plain = total - total == 0
                        except Exception:  # noqa: BLE001 - text or None: not plain, that is all
                            plain = False
                    readings += [
                        (s, KIND_READING, sid, ts,
                         v if type(v) is float and v == v else real(v), None, None)
                        for s, sid, v in zip(range(seq + 1, end + 1), sids, values,
                                             strict=True)]
                    seq = end
                elif t is Event or isinstance(r, Event):
                    seq += 1
                    data = dumps(r.to_dict())
                    others.append((seq, KIND_EVENT, self._device(r.device), r.ts, data))
                    if r.kind in _EDGE_KINDS and r.id and r.state in (_RAISED, _CLEARED):
                        active.append((r.state is _RAISED, r.id, seq, data))
                elif t is Command or isinstance(r, Command):
                    seq += 1
                    data = dumps(command_to_dict(r))
                    others.append((seq, KIND_COMMAND, self._device(r.device), r.ts, data))
                elif t is CommandResult or isinstance(r, CommandResult):
                    seq += 1
                    data = dumps(result_to_dict(r))
                    others.append((seq, KIND_RESULT, self._device(r.device), r.ts, data))
                elif t is Delivery:
                    seq += 1
                    data = dumps(delivery_to_dict(r))
                    others.append((seq, KIND_DELIVERY, self._device(r.device), r.ts, data))
                elif t is Acknowledgement:
                    seq += 1
                    data = dumps(ack_to_dict(r))
                    others.append((seq, KIND_ACK, self._device(r.device), r.ts, data))
                else:
                    raise TypeError(f"the journal cannot store {type(r).__name__}")
        except Exception:
            return fail()  # nothing of this append is buffered; its seqs are handed out again
        if seq == start:
            return succeed(self._last_seq)
        self._next_seq = seq
        batch = _Batch(readings, others, active, seq, plain)
        self._pending.append(batch)
        self._pending_count += seq - start
        if self._pending_count >= self._max_batch:
            self._commit_now()
        elif self._timer is None:
            self._timer = self._clock.callLater(self._commit_interval, self._timer_fired)
        return batch.deferred

    def touch(self, device: str, ts: float) -> None:
        """Remember that ``device`` was seen at ``ts`` (the max wins); written by the next
        commit, so presence survives a restart."""
        dev_id = self._device_ids.get(device)
        if dev_id is None or self._db is None or self._readonly:  # once per device, or refused
            self._writable()
            self._conn()
            dev_id = self._device(device)
        if ts > self._touches.get(dev_id, -math.inf):
            self._touches[dev_id] = ts
        if self._timer is None:
            self._timer = self._clock.callLater(self._commit_interval, self._timer_fired)

    def flush(self) -> int:
        """Commit everything buffered now, fire (or fail) the Deferreds; return last_seq."""
        self._cancel_timer()
        if self._inflight is not None:
            self._wait_for_commit_thread()  # what it holds goes first
        if self._db is None or not (self._pending or self._touches or self._new_devices):
            return self._last_seq
        batches, self._pending, self._pending_count = self._pending, [], 0
        results: list[tuple[_Batch, Failure | None]]
        try:
            self._write(batches)
            results = [(b, None) for b in batches]
        except Exception:
            results = self._commit_failed(Failure(), batches)
        self._next_seq = self._last_seq  # seqs of failed appends are handed out again
        self._settle(results)
        return self._last_seq

    def _commit_failed(self, failure: Failure, batches: list[_Batch]
                       ) -> list[tuple[_Batch, Failure | None]]:
        log.failure("journal commit of {n} appends failed", failure, n=len(batches))
        self._metrics.inc("journal.commit_errors")
        if len(batches) == 1:
            return [(batches[0], failure)]
        # one bad record must not fail its neighbours: retry each append on its own
        return [(b, self._write_alone(b)) for b in batches]

    def _settle(self, results: list[tuple[_Batch, Failure | None]]) -> None:
        """Fire (or fail) the appends' Deferreds after their transaction; wake the sinks."""
        for batch, failure in results:
            if failure is None:
                batch.deferred.callback(batch.last_seq)
            else:
                batch.deferred.errback(failure)
        if any(f is None for _, f in results) or not results:
            self._notifier.committed(self._last_seq, self._clock.seconds())
            self._check_size()
            self._maybe_checkpoint()

    def _write_alone(self, batch: _Batch) -> Failure | None:
        try:
            self._write([batch])
        except Exception:
            self._metrics.inc("journal.commit_errors")
            return Failure()
        return None

    def _execute_job(self, db: sqlite3.Connection, job: Job) -> None:
        execute(db, job)  # the commit thread's entry: reads nothing of self

    def _write(self, batches: list[_Batch]) -> None:
        """One transaction for ``batches``; raises (after rolling back) if it did not commit."""
        job = self._job(batches)
        execute(self._conn(), job)
        self._wrote(job)

    def _job(self, batches: list[_Batch]) -> Job:
        """What one transaction writes, taken from the reactor thread's state."""
        now = self._clock.seconds()
        if len(batches) == 1:
            readings, others = batches[0].readings, batches[0].others
        else:
            readings = list(chain.from_iterable(b.readings for b in batches))
            others = list(chain.from_iterable(b.others for b in batches))
        last = max((b.last_seq for b in batches), default=self._last_seq)
        active = [a for b in batches for a in b.active]
        return Job(readings, others, active, list(self._new_devices), list(self._new_series),
                    list(self._touches.items()), last, now,
                    now - self._last_mark >= self._mark_every, self._series_device,
                    self._latest, self._latest.due(now - self._last_latest_save),
                    all(b.plain for b in batches))

    def _save_latest(self) -> None:
        """Write ``latest`` up to the last commit now (close, before pruning); the writer's
        connection, no commit in flight (after :meth:`flush`)."""
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            self._latest.save(db, [], self._last_seq)
            db.execute("COMMIT")
        except BaseException:
            rollback(db)
            raise
        self._latest.committed([], True)
        self._last_latest_save = self._clock.seconds()

    def _wrote(self, job: Job) -> None:
        """``job`` committed: the bookkeeping, in the reactor thread."""
        if job.mark:
            self._last_mark = job.now
        if job.save_latest:
            self._last_latest_save = job.now
        self._recent.committed(self._last_seq, job.last, job.readings, job.others)
        # what was written; ids and touches that came meanwhile go with the next commit
        del self._new_devices[:len(job.new_devices)]
        del self._new_series[:len(job.new_series)]
        touches = self._touches
        for dev_id, ts in job.touches:
            if touches.get(dev_id) == ts:
                del touches[dev_id]
        self._last_seq = max(self._last_seq, job.last)
        self._commits_since_check += 1
        m = self._metrics
        m.inc("journal.commits")
        m.inc("journal.records_committed", len(job.readings) + len(job.others))
        m.set("journal.last_seq", self._last_seq)

    def _timer_fired(self) -> None:
        self._timer = None
        self._commit_now()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _writable(self) -> None:
        if self._readonly:
            raise JournalReadOnlyError(f"{self.path} was opened read-only")

    def _device(self, name: str) -> int:
        dev_id = self._device_ids.get(name)
        if dev_id is None:
            self._last_device = dev_id = self._last_device + 1
            self._device_ids[name] = dev_id
            self._device_names[dev_id] = name
            self._new_devices.append((dev_id, name))
        return dev_id

    def _new_key(self, r: Reading) -> tuple[int, int]:
        return self._new_series_key(r.device, r.channel, r.quantity)

    def _new_series_key(self, device: str, channel: str, quantity: str) -> tuple[int, int]:
        dev_id = self._device(device)
        self._last_series = sid = self._last_series + 1
        self._series_names[sid] = (device, channel, quantity)
        self._series_device[sid] = dev_id
        self._series_ids[(device, channel, quantity)] = ids = (dev_id, sid)
        self._new_series.append((sid, dev_id, channel, quantity))
        return ids

    def _block_sids(self, block: ReadingBlock) -> tuple[int, ...]:
        """The series ids of a block's keys for its device (made once per device and
        :class:`hub.blocks.BlockKeys`)."""
        device, series_ids = block.device, self._series_ids
        sids = tuple((series_ids.get((device, channel, quantity))
                      or self._new_series_key(device, channel, quantity))[1]
                     for quantity, channel in block.keys.pairs)
        if len(self._block_series) >= BLOCK_SERIES_CACHE:
            self._block_series.clear()
        self._block_series[(device, block.keys)] = sids
        return sids

    def device_states(self) -> dict[str, float]:
        """device -> last time it was seen (:meth:`touch`), including touches not committed."""
        states = dict(
            self._conn().execute("SELECT name, last_seen FROM devices WHERE last_seen IS NOT NULL")
        )
        for dev_id, ts in self._touches.items():
            name = self._device_names[dev_id]
            states[name] = max(ts, states.get(name, ts))
        return states
