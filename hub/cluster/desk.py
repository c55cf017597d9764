"""The alarm desk in cluster mode: every journal's alarm edges reach the one shared store,
once, and each alarm's ladder runs on one core.

Where the desk runs:

* each owned partition's Hub has a :class:`ClusterDesk` on the partition journal (its cursor
  lives there and moves with the lease): the alarms raised and cleared in the partition;
* every node's own Hub has one too (the API's desk, :func:`node_desk_factory`): the node's own
  events (``nats_link``, ``store_unavailable``) and the acknowledgements given through it.

*Exactly once.* A desk applies a batch to the store in one transaction and only then moves
its cursor, so a kill between the two (or a takeover by another core) hands the same edges
to the store again. The single process tells replays by the journal's sequence number
(``last_seq`` of a record), which means nothing here: a record's edges come from a partition
journal and its acknowledgements from any node's journal, each numbered on its own. So the
cluster's desks remember what they applied by identity instead, in the table
``alarm_applied`` (:data:`hub.cluster.store.MIGRATION`), written in the same transaction as
the change: a raise ``r|<event id>``, a clear ``c|<event id>`` (event ids are derived from
device, code, channel, level and raise time: every core computes the same ones from the same
stream), an acknowledgement ``a|<event id>|<by>|<ts>``. An edge found there is skipped.

*One escalator per alarm.* The ladder of an alarm runs on the desk of the partition its
device hashes to (:func:`hub.cluster.wire.partition_of`), i.e. on that partition's owner:
at most one core at a time, and the next owner loads the ladder the store keeps. Every
other desk ingests and tells its listeners but arms no ladder and resumes no notification
(:class:`Scope`). Records changed through a node's journal (device ``hub``: a node's own
faults) have no partition desk watching their changes: the partition desk that owns them
adopts them every :data:`RESCAN` seconds. Notifications stay claimed once per (alarm, step,
channel, recipient) in the store, as in the single process, so even a ladder run twice would
send nothing twice. The inspection schedule and hazard reminders run on the desk of
partition 0 only.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet import defer, task
from twisted.logger import Logger

from hub.alarmdesk.desk import AlarmDesk
from hub.alarmdesk.lifecycle import AlarmRecord, Change, apply_ack, apply_event, key_of
from hub.model import Acknowledgement, Event, EventKind, EventState

_log = Logger(namespace="hub.cluster.desk")

#: the desk's backoff after a failed batch (the store away): short, so that it catches up
#: soon after PostgreSQL is back
RETRY = types.SimpleNamespace(retry_initial=0.5, retry_max=5.0)
#: seconds between looks for open alarms of a partition raised through another journal
RESCAN = 15.0


def edge_of(rec: Any) -> str | None:
    """The identity of a journal record as an alarm edge (None: not one)."""
    if isinstance(rec, Event):
        if rec.kind not in (EventKind.ALARM, EventKind.FAULT) or not rec.id:
            return None
        if rec.state is EventState.RAISED:
            return f"r|{rec.id}"
        if rec.state is EventState.CLEARED:
            return f"c|{rec.id}"
        return None
    if isinstance(rec, Acknowledgement):
        return f"a|{rec.event_id}|{rec.by}|{rec.ts!r}"
    return None


def ingest_once(store: Any, items: Iterable[tuple[int, Any]],
                project_of: Callable[[str], str]) -> list[tuple[AlarmRecord, Change]]:
    """:meth:`hub.store.alarms.AlarmTables.ingest` with replays told by identity (see the
    module's docstring): the journal's sequence numbers play no part."""
    from hub.store.alarms import _COLS, AlarmTables, _alarm

    items = [(edge, rec) for _, rec in items if (edge := edge_of(rec)) is not None]
    joined = ", ".join("a." + c for c in _COLS.split(", "))

    def do(db: Any) -> list[tuple[AlarmRecord, Change]]:
        out = []
        for edge, rec in items:
            if db.execute("SELECT 1 FROM alarm_applied WHERE edge = ?", (edge,)).fetchone():
                continue  # applied before: a replay after a kill or a takeover
            if isinstance(rec, Event):
                row = db.execute(f"SELECT {_COLS} FROM alarms WHERE key = ? AND open = 1",
                                 (key_of(rec),)).fetchone()
                old = _alarm(row) if row else None
                new, change = apply_event(old, rec, project_of(rec.device), 0)
            else:
                row = db.execute(f"SELECT {joined} FROM alarm_events e JOIN alarms a ON "
                                 "a.id = e.alarm_id WHERE e.event_id = ?",
                                 (rec.event_id,)).fetchone()
                if row is None:
                    continue
                old = _alarm(row)
                new, change = apply_ack(old, rec, 0)
            if new is None or new == old:
                continue
            new = AlarmTables._save(db, new)
            db.execute("INSERT INTO alarm_applied (edge, alarm_id) VALUES (?, ?)",
                       (edge, new.id))
            if isinstance(rec, Event):
                db.execute("INSERT OR IGNORE INTO alarm_events VALUES (?, ?)", (rec.id, new.id))
            if change is not None:
                AlarmTables._log(db, new, change)
                out.append((new, change))
        return out
    return store._write(do)


class Scope:
    """The platform store as one cluster desk sees it: its ``ingest`` is
    :func:`ingest_once`, and the escalation ladders, pending notifications and open alarms
    it loads are those of the alarms it escalates (``mine(record)``); hazard reminders'
    notifications only where the schedule runs. Everything else is the store's own."""

    def __init__(self, store: Any, mine: Callable[[AlarmRecord], bool],
                 schedule: bool, clock: Any = None) -> None:
        self._store = store
        self.mine = mine
        self.schedule = schedule
        self.clock = clock
        # the outbox's bookkeeping the store refused (away): row -> its latest end, and
        # attempts, written again after a backoff instead of leaving a sent row "pending"
        self._done: dict[int, tuple] = {}
        self._attempts: list[tuple] = []
        self._retry: Any = None
        self._failures = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def ingest(self, items: Iterable[tuple[int, Any]], project_of: Callable[[str], str]
               ) -> list[tuple[AlarmRecord, Change]]:
        return ingest_once(self._store, items, project_of)

    def alarms(self, *args: Any, **kw: Any) -> list[AlarmRecord]:
        return [r for r in self._store.alarms(*args, **kw) if self.mine(r)]

    def _mine_ids(self, ids: Iterable[int]) -> set[int]:
        ids = list(ids)
        hazards = {i for i in ids if i < 0} if self.schedule else set()
        records = self._store.alarm_records([i for i in ids if i > 0])
        return hazards | {i for i, r in records.items() if self.mine(r)}

    def esc_load(self) -> list[tuple[int, str, int, float, float]]:
        rows = self._store.esc_load()
        mine = self._mine_ids(r[0] for r in rows)
        return [r for r in rows if r[0] in mine]

    def notify_done(self, row: int, *args: Any) -> None:
        self._done[row] = args
        self._write_bookkeeping()

    def notify_attempt(self, *args: Any) -> None:
        self._attempts.append(args)
        self._write_bookkeeping()

    def _write_bookkeeping(self) -> None:
        if self._retry is not None and self._retry.active():
            return  # written in order when the retry runs
        self._retry = None
        try:
            while self._done:
                row, args = next(iter(self._done.items()))
                self._store.notify_done(row, *args)
                del self._done[row]
            while self._attempts:
                self._store.notify_attempt(*self._attempts[0])
                self._attempts.pop(0)
            self._failures = 0
        except Exception:  # noqa: BLE001 - the store is away: kept, written later
            if self.clock is None:
                raise
            self._failures += 1
            self._retry = self.clock.callLater(min(5.0, 0.2 * 2 ** self._failures),
                                               self._write_bookkeeping)

    def stop(self) -> None:
        """What could not be written stays pending in the store: the next owner of the
        partition sends it again, with the same idempotency key."""
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        clock, self.clock = self.clock, None
        try:
            self._write_bookkeeping()  # a last try
        except Exception:  # noqa: BLE001,S110 - what is left is told below
            pass
        self.clock = clock
        if self._done or self._attempts:
            _log.warn("alarm desk: {n} notification results not written (store away); "
                      "they are sent again by the partition's next owner", n=len(self._done))
            self._done.clear()
            self._attempts.clear()

    def notify_pending(self) -> list[tuple[int, str, dict[str, Any]]]:
        rows = self._store.notify_pending()
        mine = self._mine_ids(body.get("alarm_id", 0) for _, _, body in rows)
        return [r for r in rows if r[2].get("alarm_id", 0) in mine]


class _ScopedEscalator:
    """The desk's escalator, told only about the alarms the desk escalates."""

    def __init__(self, inner: Any, mine: Callable[[AlarmRecord], bool]) -> None:
        self._inner = inner
        self._mine = mine

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def changed(self, record: Any, action: str) -> None:
        if self._mine(record):
            self._inner.changed(record, action)

    def adopt(self, record: Any) -> None:
        if self._mine(record):
            self._inner.adopt(record)


class _Tracked:
    """A notification channel whose requests in flight are known: a desk that hands its
    partition over waits for them, so the next owner does not resume (send again) a
    notification whose answer was still coming."""

    def __init__(self, inner: Any, inflight: set) -> None:
        self._inner = inner
        self._inflight = inflight

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def send(self, n: Any) -> defer.Deferred:
        d = defer.maybeDeferred(self._inner.send, n)
        self._inflight.add(d)

        def done(result: Any) -> Any:
            self._inflight.discard(d)
            return result
        return d.addBoth(done)


class ClusterDesk(AlarmDesk):
    """:class:`hub.alarmdesk.desk.AlarmDesk` on a cluster journal (see the module's
    docstring). ``escalates(device)``: whether alarms of ``device`` are this desk's to
    escalate; ``schedule``: whether inspections and hazard reminders run here;
    ``on_stop``: called once the desk stopped (a store of its own closed)."""

    def __init__(self, hub: Any, store: Any, notify: Any, *,
                 escalates: Callable[[str], bool] = lambda device: False,
                 schedule: bool = False, listeners: list | None = None,
                 on_stop: Callable[[], None] | None = None) -> None:
        self.escalates = escalates
        super().__init__(hub, Scope(store, self.mine, schedule), notify, RETRY)
        self.store.clock = self.clock
        self.runs_schedule = schedule
        if listeners is not None:  # the node's desk's: the API's live stream of changes
            self.listeners = listeners
        self._on_stop = on_stop
        self._rescan: task.LoopingCall | None = None

    def mine(self, record: AlarmRecord) -> bool:
        return self.escalates(record.device)

    def started(self) -> None:
        self._inflight: set[defer.Deferred] = set()
        super().started()
        if self.outbox is not None:
            for name, channel in list(self.channels.items()):
                self.channels[name] = _Tracked(channel, self._inflight)
        self.escalator = _ScopedEscalator(self.escalator, self.mine)
        if not self.runs_schedule and self.schedule is not None:
            self.schedule.stop()
            self.schedule = None
        self._rescan = task.LoopingCall(self.rescan)
        self._rescan.clock = self.clock
        self._rescan.start(RESCAN, now=False)

    def rescan(self) -> None:
        """Adopt the open alarms this desk escalates whose changes it does not see: those
        of devices outside this Hub (raised through a node's own journal)."""
        if self.escalator is None:
            return
        try:
            for record in self.store.alarms(state="active-unacknowledged", limit=100_000):
                if self.port.device(record.device) is None:
                    self.escalator.adopt(record)
        except Exception:  # noqa: BLE001 - the store is away: the next pass tries again
            _log.debug("alarm desk rescan skipped: the platform store did not answer")

    def stopped(self) -> Any:
        if self._rescan is not None and self._rescan.running:
            self._rescan.stop()
        super().stopped()
        # requests in flight end (answer or channel timeout) and are written before the
        # partition goes: their rows are no longer pending when the next owner resumes
        waiting = [d for d in getattr(self, "_inflight", ()) if not d.called]
        d = defer.DeferredList(waiting, consumeErrors=True) if waiting else defer.succeed(None)
        if waiting:
            _log.info("alarm desk: waiting for {n} notifications in flight", n=len(waiting))
        d.addBoth(lambda _: self.store.stop())
        if self._on_stop is not None:
            d.addBoth(lambda _: self._on_stop())
        return d


def node_desk(node: Any, store: Any, notify: Any) -> ClusterDesk:
    """What :class:`hub.api.service.ApiService` builds as its desk on a cluster node
    (``hub.desk_factory``): a :class:`ClusterDesk` that escalates nothing (the partitions'
    desks do), on a store of its own that fails at once while PostgreSQL is away instead
    of waiting ``retry_seconds`` on the reactor (the desk retries after its backoff; a
    node's reactor must keep renewing its leases)."""
    from hub.cluster.store import open_platform_store

    own = None if node.config.api.store.backend == "sqlite" else \
        open_platform_store(node.config, quick=True)
    desk = ClusterDesk(node, own if own is not None else store, notify,
                       on_stop=own.close if own is not None else None)
    node.alarm_desk = desk  # the partitions' desks share its listeners
    return desk
