"""Which recipient groups hear of an event: rules on project, message kind, level and
device group, each with its groups to notify and its escalation ladder."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hub.model import Event, EventKind, EventState
from plugins.sinks.sms.templates import DeviceInfo


def message_kind(event: Event) -> str | None:
    """``alarm``, ``fault``, ``offline``, ``recovery`` (a clear of any of them), or ``None``
    for what is never texted (state notices)."""
    if event.state is EventState.CLEARED:
        return "recovery"
    if event.state is not EventState.RAISED:
        return None
    if event.kind is EventKind.ALARM:
        return "alarm"
    if event.kind is EventKind.FAULT:
        return "offline" if event.code == "offline" else "fault"
    return None


@dataclass(frozen=True)
class Route:
    """``None`` in a condition means "any"."""

    notify: tuple[str, ...]
    kinds: frozenset[str] | None = None
    levels: frozenset[str] | None = None
    projects: frozenset[str] | None = None
    groups: frozenset[str] | None = None
    escalate: tuple[str, ...] = ()
    escalate_after: float = 600.0

    def matches(self, kind: str, event: Event, info: DeviceInfo) -> bool:
        return ((self.kinds is None or kind in self.kinds)
                and (self.levels is None or event.level.value in self.levels)
                and (self.projects is None or info.project in self.projects)
                and (self.groups is None or info.group in self.groups))


class Router:
    def __init__(self, routes: Sequence[Route], recipients: Mapping[str, tuple[str, ...]]):
        self.routes = tuple(routes)
        self.recipients = recipients

    def matching(self, kind: str, event: Event, info: DeviceInfo) -> list[tuple[int, Route]]:
        """(index, route) of every route that matches; the index names a route stably."""
        return [(i, r) for i, r in enumerate(self.routes) if r.matches(kind, event, info)]

    def phones(self, groups: Sequence[str]) -> list[str]:
        """The phones of ``groups``, each once, in configuration order."""
        out: dict[str, None] = {}
        for g in groups:
            for p in self.recipients.get(g, ()):
                out[p] = None
        return list(out)
