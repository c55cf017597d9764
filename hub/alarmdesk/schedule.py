"""The alarm desk's periodic duties, on an injected clock (``task.Clock`` in tests): the
inspection schedule (tasks generated as their periods begin, open ones past their deadline
flagged missed) and hazard reminders before and after the deadline.

Every ``tick`` seconds (and at once when :meth:`Schedule.soon` is called, e.g. after a
plan was created) it asks the store for the work due now. Both are durable without timers
of their own: a task exists once per (plan, period) and a reminder kind once per hazard
(``hazard_reminders``) and its notifications are claimed in the outbox before they are
marked sent, so neither repeats after a restart; a hub that was down catches up at its
first tick.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from hub.alarmdesk.inspections import reminder_kind, reminder_step
from hub.alarmdesk.policy import Notification, Policy, Step

_log = Logger(namespace="hub.alarmdesk.schedule")

TICK = 30.0


class Schedule:
    """:param claim: the outbox's ``claim(notes, ts) -> [new?]``; :param deliver: its
    ``deliver(note)``; :param resolve: ``resolve(project, step)`` as the escalator's;
    :param responsible: ``(channel, address)`` pairs of a hazard's responsible person;
    :param changed: told every inspection change and every reminder sent (audit, live
    stream)."""

    def __init__(self, clock: IReactorTime, store: Any,
                 policy_for: Callable[[str], Policy | None],
                 resolve: Callable[[str, Step], Iterable[tuple[str, str]]],
                 responsible: Callable[[str, Step], Iterable[tuple[str, str]]],
                 claim: Callable[[list[Notification], float], list[bool]],
                 deliver: Callable[[Notification], None],
                 changed: Callable[[str, dict[str, Any]], None], tick: float = TICK) -> None:
        self.clock = clock
        self.store = store
        self.policy_for = policy_for
        self.resolve = resolve
        self.responsible = responsible
        self.claim = claim
        self.deliver = deliver
        self.changed = changed
        self.tick = tick
        self._call: IDelayedCall | None = None

    def start(self) -> None:
        self.soon()

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def soon(self) -> None:
        """Run a pass now (in the next reactor turn), then every ``tick``."""
        self.stop()
        self._call = self.clock.callLater(0, self._pass)

    def _pass(self) -> None:
        self._call = self.clock.callLater(self.tick, self._pass)
        try:
            self.run(self.clock.seconds())
        except Exception:
            _log.failure("schedule pass failed")

    def run(self, now: float) -> None:
        for change in self.store.inspection_tick(now):
            self.changed("inspection", change)
        self.remind(now)

    def remind(self, now: float) -> None:
        policies: dict[str, Policy | None] = {}
        for (hid, project, category, description, deadline, responsible, severity, device,
             sent) in self.store.hazards_with_deadline():
            if project not in policies:
                policies[project] = self.policy_for(project)
            policy = policies[project]
            if policy is None:
                continue
            kind = reminder_kind(deadline, now, policy.remind_before, policy.remind_after,
                                 policy.remind_repeat)
            if kind is None or kind in sent:
                continue
            step = policy.step(policy.remind_step) if policy.steps else None
            pairs = list(self.resolve(project, step)) if step else []
            pairs += [p for p in self.responsible(responsible, step) if p not in pairs] \
                if step else []
            when = (datetime.fromtimestamp(deadline, UTC)
                    + timedelta(minutes=policy.utc_offset_minutes)).strftime("%Y-%m-%d %H:%M")
            state = "due" if kind == "before" else "overdue"
            text = (f"[hazard {severity}] #{hid} {category}"
                    f"{' ' + device if device else ''}: {description[:80]} — {state}, "
                    f"deadline {when}")
            notes = [Notification(-hid, reminder_step(kind), channel, address, "hazard", text,
                                  project, (), hid) for channel, address in pairs]
            for note, new in zip(notes, self.claim(notes, now) if notes else [], strict=True):
                if new:
                    self.deliver(note)
            self.store.hazard_reminded(hid, kind, now)
            self.changed("hazard_reminder", {"hazard_id": hid, "project": project,
                                             "kind": kind, "recipients": len(notes)})
