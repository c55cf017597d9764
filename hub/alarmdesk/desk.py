"""The alarm desk: keeps the platform store's alarm records in step with the journal.

A :class:`hub.sinks.CursorSink` on cursor ``alarmdesk`` reading events and
acknowledgements: each batch goes into the store in one transaction (which ignores replays,
see :meth:`hub.store.alarms.AlarmTables.ingest`), then the cursor moves. A hub killed
between the two applies the batch again, to no effect (the ladders of the alarms it opened
are adopted at the next start). Every change goes to the signed audit log (actor ``hub``
for edges), to the escalator, and wakes the live stream of alarm changes. The changes are
kept until handled: records read again are replays that return none, so a failure after
the store took a batch in (the cursor not moved, a change not handled) is retried from
what is kept, after the sink's backoff, never skipped.

The store's SQLite calls run on the reactor here: short single transactions per batch of
at most ``BATCH`` records (the API's own calls go to its worker threads).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from twisted.logger import Logger

from hub.alarmdesk.channels import Outbox, build_channels
from hub.alarmdesk.lifecycle import AlarmRecord, Change
from hub.alarmdesk.policy import Escalator, Policy, Step, policy_from_dict
from hub.alarmdesk.schedule import Schedule
from hub.alarmdesk.settings import NotifySettings
from hub.model import Event, EventKind, EventState, Level, event_id
from hub.sinks import CursorSink

_log = Logger(namespace="hub.alarmdesk")

CURSOR = "alarmdesk"
BATCH = 1000
#: notifications handed to their channels per reactor turn: a storm's thousands of requests
#: go out over several turns, so timers falling due meanwhile are not held up behind them
#: and the first requests leave at once
SEND_PER_TURN = 100
#: tries of one alarm change (each after the sink's backoff) before it is given up
HANDLE_ATTEMPTS = 5
#: the fault raised when a change is given up (device ``hub``), cleared when a device's
#: change is handled again: an operator sees it in the live stream and the alarm list, not
#: only in the log
GIVEN_UP_CODE = "alarmdesk_change_given_up"

Listener = Callable[[AlarmRecord, Change], None]


class _Persistence:
    def __init__(self, store: Any, outbox: Outbox) -> None:
        self.apply = store.esc_apply
        self.load = store.esc_load
        self.records = store.alarm_records
        self.claim = outbox.claim


class AlarmDesk(CursorSink):
    def __init__(self, hub: Any, store: Any, notify: NotifySettings | None = None,
                 options: Any = None) -> None:
        super().__init__(hub, CURSOR, options)
        self.hub = hub
        self.store = store
        self.notify = notify or NotifySettings()
        self.tail = self.add_tail(CURSOR, {"event", "acknowledgement"})
        self.listeners: list[Listener] = []
        self.channels: dict[str, Any] = {}
        self.outbox: Outbox | None = None
        self.escalator: Escalator | None = None
        self.schedule: Schedule | None = None
        self._sending: list[Any] = []
        self._send_call: Any = None
        # changes the store made and the desk has not handled yet: [record, change, audited]
        self._pending: deque[list[Any]] = deque()
        self._attempts = 0  # failures of the first of them in a row
        self._given_up: Event | None = None  # the raised GIVEN_UP_CODE fault

    # -- notification policies -------------------------------------------------------------

    def started(self) -> None:
        self.channels = build_channels(self.notify, getattr(self.hub, "plugins", None),
                                       self.clock)
        self.outbox = Outbox(self.clock, self.store, self.channels, self.notify)
        self.escalator = Escalator(self.clock, _Persistence(self.store, self.outbox),
                                   self.policy_for, self.resolve, self.deliver)
        self.escalator.start()
        # a ladder lost by a crash before its first write: adopted, nothing sent twice
        for record in self.store.alarms(state="active-unacknowledged", limit=1_000_000):
            self.escalator.adopt(record)
        self.outbox.resume()
        # inspections and hazard reminders (:mod:`hub.alarmdesk.schedule`)
        self.schedule = Schedule(self.clock, self.store, self.policy_for, self.resolve,
                                 self.responsible, self.outbox.claim, self.deliver,
                                 self.scheduled)
        self.schedule.start()

    def deliver(self, note: Any) -> None:
        """Hand a claimed notification to the outbox, at most ``SEND_PER_TURN`` a turn."""
        self._sending.append(note)
        if self._send_call is None:
            self._send_call = self.clock.callLater(0, self._send_some)

    def _send_some(self) -> None:
        batch, self._sending = self._sending[:SEND_PER_TURN], self._sending[SEND_PER_TURN:]
        self._send_call = self.clock.callLater(0, self._send_some) if self._sending else None
        for note in batch:
            if self.outbox is not None:
                try:
                    self.outbox.deliver(note)
                except Exception:  # claimed and pending: sent again at the next start
                    _log.failure("notification {n} not handed over", n=note)

    def stopped(self) -> None:
        if self._send_call is not None and self._send_call.active():
            self._send_call.cancel()
        self._send_call = None
        self._sending.clear()  # claimed and pending in the store: resumed at the next start
        if self.schedule is not None:
            self.schedule.stop()
        if self.escalator is not None:
            self.escalator.stop()
        if self.outbox is not None:
            self.outbox.stop()

    def policy_changed(self, project: str) -> None:
        """A new policy applies to the project's open unacknowledged alarms from now."""
        if self.escalator is None:
            return
        for record in self.store.alarms({project}, state="active-unacknowledged",
                                        limit=100_000):
            self.escalator.adopt(record)

    def policy_for(self, project: str) -> Policy | None:
        body = self.store.policy(project)
        return policy_from_dict(body) if body else None

    def resolve(self, project: str, step: Step) -> list[tuple[str, str]]:
        """The (channel, address) pairs of a step: addresses as given, ``user:NAME`` and
        the holders of ``role`` on the project (or above it) by their preferences: the
        step's channel if they gave an address on it, else their first choice."""
        out: list[tuple[str, str]] = []
        users: list[int] = []
        for r in step.recipients:
            if r.startswith("user:"):
                u = self.store.user_by_name(r[5:])
                if u is not None and not u.disabled:
                    users.append(u.id)
            else:
                out.append((step.channel, r))
        if step.role:
            from hub.api.authz import Tree

            tree = Tree(self.store.nodes())
            nodes = list(tree.ancestors(tree.node_of_project(project))) if project else [1]
            users.extend(uid for uid, _ in self.store.users_with_role(nodes, step.role))
        for uid in dict.fromkeys(users):
            contacts = self.store.contacts(uid)
            mine = [c for c in contacts if c[0] == step.channel] or contacts[:1]
            out.extend(mine[:1])
        return list(dict.fromkeys(out))

    def responsible(self, name: str, step: Step) -> list[tuple[str, str]]:
        """A hazard's responsible person, when the name is a user's, by their
        preferences."""
        if not name:
            return []
        return self.resolve("", Step(0, step.channel, (f"user:{name}",)))

    def scheduled(self, kind: str, change: dict) -> None:
        """An inspection change or a hazard reminder made by the schedule: audited (actor
        ``hub``) and the live streams woken. Changes made through the API are audited
        there and only poke the streams."""
        if kind == "inspection":
            action, subject = f"inspection.{change['action']}", \
                str(change["task_id"] or change["plan_id"])
            details = {"project": change["project"], "plan_id": change["plan_id"],
                       **change["details"]}
        else:
            action, subject = "hazard.reminded", str(change["hazard_id"])
            details = change
        self.hub.audit.record("hub", action, subject, details).addErrback(
            lambda f: _log.failure("schedule change not audited", f))
        self.poke()

    def project_of(self, device: str) -> str:
        info = self.port.device(device)
        return info.project if info is not None and info.project else ""

    def pump(self) -> None:
        while True:
            self._handle_pending()
            items, end, full = self.tail.read(BATCH)
            if items:
                # the store has taken them in: read again they are replays that change
                # nothing, so they wait here until handled, whatever fails after this
                self._pending.extend([record, change, False]
                                     for record, change in self.store.ingest(
                                         items, self.project_of))
            self.tail.commit(end)
            if items:
                self.delivered(len(items))
            self._handle_pending()
            if not full:
                return

    def _handle_pending(self) -> None:
        """Hand the changes the store made to the audit log, the escalator and the
        listeners, in order. One that fails stops the pump (the supervisor logs it, counts
        it and pumps again after a backoff, starting here); after :data:`HANDLE_ATTEMPTS`
        failures it is given up, logged with its context and counted
        (``alarmdesk.changes_given_up``), and the rest go on."""
        pending = self._pending
        while pending:
            entry = pending[0]
            record, change, audited = entry
            try:
                if not audited:  # audited once, however often the rest is retried
                    entry[2] = True
                    self._audit(record, change)
                self._tell(record, change)
            except Exception:
                self._attempts += 1
                if self._attempts < HANDLE_ATTEMPTS:
                    raise
                self.metrics.inc("alarmdesk.changes_given_up")
                _log.failure("alarm {id} ({project}, {device} {code}): change {action!r} not "
                             "handled after {n} attempts; given up (an open alarm's ladder is "
                             "adopted at the next start)", id=record.id,
                             project=record.project, device=record.device, code=record.code,
                             action=change.action, n=self._attempts)
                self._give_up_fault(record, change)
            else:
                self._given_up_cleared(record)
            pending.popleft()
            self._attempts = 0

    def _give_up_fault(self, record: AlarmRecord, change: Change) -> None:
        """Raise the given-up fault (once while raised; the journal takes it, so the live
        stream and the desk's own alarm list show it)."""
        if self._given_up is not None:
            return
        now = self.clock.seconds()
        self._given_up = Event(
            device="hub", kind=EventKind.FAULT, code=GIVEN_UP_CODE, state=EventState.RAISED,
            ts=now, level=Level.FAULT,
            id=event_id("hub", GIVEN_UP_CODE, "", Level.FAULT, now),
            message=f"alarm desk gave up change {change.action!r} of alarm {record.id} "
                    f"({record.project}, {record.device} {record.code}) after "
                    f"{self._attempts} attempts")
        self.port.record_events([self._given_up])

    def _given_up_cleared(self, record: AlarmRecord) -> None:
        """A later change of a device's alarm was handled: the desk works again. (The
        hub's own faults do not count: the sink's ``sink_failed`` raised on the way to the
        give-up is handled just after it.)"""
        raised = self._given_up
        if raised is None or record.device == "hub":
            return
        self._given_up = None
        self.port.record_events([replace(
            raised, state=EventState.CLEARED, ts=self.clock.seconds(), raised_ts=raised.ts,
            message="alarm desk handles changes again")])

    def plans_changed(self) -> None:
        """A plan was created or changed (through the API): generate what is due now, and
        wake the live streams."""
        if self.schedule is not None:
            self.schedule.soon()
        self.poke()

    def poke(self) -> None:
        """Wake the live streams (a hazard changed through the API)."""
        for listener in list(self.listeners):
            try:
                listener(None, None)
            except Exception:
                _log.failure("change listener failed")

    def changed(self, record: AlarmRecord, change: Change, via: str = "") -> None:
        """Tell the audit log and the listeners about a change (the API calls this for
        the acts it wrote itself, after auditing them: ``via`` then says so)."""
        if not via:
            self._audit(record, change)
        self._tell(record, change)

    def _audit(self, record: AlarmRecord, change: Change) -> None:
        self.hub.audit.record(change.by, f"alarm.{change.action}", str(record.id), {
            "device": record.device, "project": record.project, "code": record.code,
            "channel": record.channel, "state": record.state, "note": change.note,
            **change.details}).addErrback(
            lambda f: _log.failure("alarm change not audited", f))

    def _tell(self, record: AlarmRecord, change: Change) -> None:
        if self.escalator is not None:
            self.escalator.changed(record, change.action)
        for listener in list(self.listeners):
            try:
                listener(record, change)
            except Exception:
                _log.failure("alarm change listener failed")
