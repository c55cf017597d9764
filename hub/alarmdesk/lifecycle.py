"""The alarm lifecycle, sans-IO: journal edges and people's acts in, record changes out.

An *alarm record* is what people handle: one per (device, channel, rule) while it is open,
whatever the journal says underneath (the engine's pre-alarm and alarm levels of one rule
are two conditions and two event ids there; a detector that flaps raises a new id each
time). A re-trigger updates the open record (``count``, ``last_ts``, severity) instead of
opening another one. A record closes when it is cleared *and* acknowledged; the next raise
of the same key opens a new record.

States (T/CFPA 023-2023 §6.3.1 g): ``active-unacknowledged``, ``active-acknowledged``,
``cleared-unacknowledged``, ``cleared-acknowledged`` (closed). Severity maps the
standard's levels: a warning (预警) is ``pre-alarm``, an alarm ``alarm``, any fault event
``fault``.

A re-trigger with a *higher* severity withdraws an acknowledgement (a pre-alarm someone took
note of became an alarm: it needs attention again); one at the same or a lower severity
keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from hub.model import Acknowledgement, Event, EventKind, EventState, Level

__all__ = [
    "ACTIONS",
    "SEVERITIES",
    "STATES",
    "AlarmRecord",
    "Change",
    "IllegalAct",
    "apply_act",
    "apply_event",
    "key_of",
    "severity_of",
]

SEVERITIES = ("pre-alarm", "alarm", "fault")
_SEVERITY_RANK = {"pre-alarm": 1, "alarm": 2, "fault": 2}
STATES = ("active-unacknowledged", "active-acknowledged", "cleared-unacknowledged",
          "cleared-acknowledged")
#: what people do to a record (the API's and the CLI's verbs)
ACTIONS = ("acknowledge", "assign", "comment", "handle")


class IllegalAct(ValueError):
    """An act the record's state does not allow (handling a closed alarm, ...)."""


def severity_of(event: Event) -> str:
    if event.kind is EventKind.FAULT or event.level is Level.FAULT:
        return "fault"
    return "pre-alarm" if event.level is Level.WARNING else "alarm"


def key_of(event: Event) -> str:
    return f"{event.device}|{event.channel}|{event.code}"


@dataclass(frozen=True)
class AlarmRecord:
    id: int  # 0 until the store gave it one
    key: str
    device: str
    project: str
    kind: str  # "alarm" or "fault"
    code: str
    channel: str
    severity: str
    first_ts: float
    last_ts: float
    active_events: tuple[str, ...] = ()  # journal ids raised and not cleared
    acked: bool = False
    acked_by: str = ""
    acked_ts: float | None = None
    cleared_ts: float | None = None
    assignee: str = ""
    cause: str = ""
    action_taken: str = ""
    count: int = 1
    message: str = ""
    value: float | None = None
    last_seq: int = 0  # the last journal record applied (replays below it are ignored)

    @property
    def active(self) -> bool:
        return bool(self.active_events)

    @property
    def state(self) -> str:
        return f"{'active' if self.active else 'cleared'}-" \
               f"{'acknowledged' if self.acked else 'unacknowledged'}"

    @property
    def open(self) -> bool:
        return self.active or not self.acked

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "device": self.device, "project": self.project,
                "kind": self.kind, "code": self.code, "channel": self.channel,
                "severity": self.severity, "state": self.state, "open": self.open,
                "first_ts": self.first_ts, "last_ts": self.last_ts,
                "cleared_ts": self.cleared_ts, "acked_by": self.acked_by or None,
                "acked_ts": self.acked_ts, "assignee": self.assignee or None,
                "cause": self.cause or None, "action_taken": self.action_taken or None,
                "count": self.count, "message": self.message, "value": self.value,
                "events": list(self.active_events)}


@dataclass(frozen=True)
class Change:
    """One step of a record's history: who did what when (``by`` is "hub" for edges)."""

    action: str  # raised, retriggered, cleared, acknowledged, assigned, commented, handled
    by: str
    ts: float
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)


def apply_event(record: AlarmRecord | None, event: Event, project: str, seq: int
                ) -> tuple[AlarmRecord | None, Change | None]:
    """``event`` (an alarm or fault edge of the journal at ``seq``) applied to the open
    record of its key (``None``: there is none). Returns the new record (``None``: nothing
    to record, e.g. a clear of an alarm raised before the desk began) and its change."""
    if event.kind not in (EventKind.ALARM, EventKind.FAULT):
        return record, None
    if record is not None and seq and seq <= record.last_seq:
        return record, None  # a replay after a crash between store write and cursor commit
    sev = severity_of(event)
    if event.state is EventState.RAISED:
        if record is None:
            new = AlarmRecord(0, key_of(event), event.device, project, event.kind.value,
                              event.code, event.channel, sev, event.ts, event.ts,
                              (event.id,), message=event.message, value=event.value,
                              last_seq=seq)
            return new, Change("raised", "hub", event.ts, event.message,
                               {"event_id": event.id, "severity": sev})
        worse = _SEVERITY_RANK[sev] > _SEVERITY_RANK[record.severity]
        events = record.active_events + (() if event.id in record.active_events
                                         else (event.id,))
        acked = record.acked and not worse
        new = replace(record, active_events=events, last_ts=event.ts, count=record.count + 1,
                      severity=sev if worse else record.severity, message=event.message,
                      value=event.value, last_seq=seq, cleared_ts=None, acked=acked,
                      acked_by=record.acked_by if acked else "",
                      acked_ts=record.acked_ts if acked else None)
        return new, Change("retriggered", "hub", event.ts, event.message,
                           {"event_id": event.id, "severity": new.severity,
                            "count": new.count})
    if event.state is EventState.CLEARED:
        if record is None or event.id not in record.active_events:
            return record, None
        events = tuple(e for e in record.active_events if e != event.id)
        new = replace(record, active_events=events, last_seq=seq,
                      cleared_ts=None if events else event.ts)
        if events:  # another level of the same rule still holds
            return new, None
        return new, Change("cleared", "hub", event.ts, event.message,
                           {"event_id": event.id, "peak": event.peak})
    return record, None


def apply_ack(record: AlarmRecord, ack: Acknowledgement, seq: int
              ) -> tuple[AlarmRecord, Change | None]:
    """An acknowledgement of the journal (``hub events ack``, POST /api/events/{id}/ack)."""
    if seq and seq <= record.last_seq:
        return record, None
    if record.acked:
        return replace(record, last_seq=seq), None
    return (replace(record, acked=True, acked_by=ack.by, acked_ts=ack.ts, last_seq=seq),
            Change("acknowledged", ack.by, ack.ts, ack.note, {"event_id": ack.event_id}))


def apply_act(record: AlarmRecord, action: str, by: str, ts: float, note: str = "",
              assignee: str = "", cause: str = "", action_taken: str = ""
              ) -> tuple[AlarmRecord, Change | None]:
    """A person's act. Acknowledging an acknowledged record changes nothing (no change:
    a batch may hold it twice); commenting is always allowed; assigning and handling a
    closed record are :class:`IllegalAct`."""
    if action == "comment":
        if not note:
            raise IllegalAct("a comment needs a note")
        return record, Change("commented", by, ts, note)
    if action == "acknowledge":
        if record.acked:
            return record, None
        return (replace(record, acked=True, acked_by=by, acked_ts=ts),
                Change("acknowledged", by, ts, note))
    if not record.open:
        raise IllegalAct(f"alarm {record.id} is closed ({record.state}); only comments")
    if action == "assign":
        if not assignee:
            raise IllegalAct("assign to whom? (assignee)")
        return (replace(record, assignee=assignee),
                Change("assigned", by, ts, note, {"assignee": assignee}))
    if action == "handle":
        if not cause or not action_taken:
            raise IllegalAct("handling records the cause and the action taken")
        acked = record.acked
        new = replace(record, cause=cause, action_taken=action_taken, acked=True,
                      acked_by=record.acked_by if acked else by,
                      acked_ts=record.acked_ts if acked else ts)
        return new, Change("handled", by, ts, note,
                           {"cause": cause, "action_taken": action_taken})
    raise IllegalAct(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
