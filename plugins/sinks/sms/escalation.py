"""Escalation, sans-IO: an event not acknowledged within ``after`` seconds goes to the next
recipient group of its route's ladder, then the next, until acknowledged or cleared."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class _Ladder:
    event_id: str
    route: int
    groups: tuple[str, ...]
    after: float
    raised_at: float
    step: int = 0  # groups[step] is the next one

    @property
    def next_at(self) -> float:
        return self.raised_at + self.after * (self.step + 1)


@dataclass(frozen=True)
class Step:
    event_id: str
    route: int
    group: str
    level: int  # 1 for the first escalation
    overdue: float  # seconds unacknowledged this step stands for (after × level)


class Escalations:
    def __init__(self) -> None:
        self._ladders: dict[tuple[str, int], _Ladder] = {}
        self._reached: dict[str, list[str]] = {}  # event id -> groups escalated to

    def start(self, event_id: str, route: int, groups: tuple[str, ...], after: float,
              raised_at: float) -> None:
        """Watch an event from ``raised_at`` (its raise time, so a restart keeps the
        schedule); starting one already watched changes nothing."""
        if groups and (event_id, route) not in self._ladders:
            self._ladders[(event_id, route)] = _Ladder(event_id, route, groups, after,
                                                      raised_at)

    def ack(self, event_id: str) -> None:
        """Someone took note: no more escalation (the groups reached still hear of the
        recovery)."""
        for key in [k for k in self._ladders if k[0] == event_id]:
            del self._ladders[key]

    def stop(self, event_id: str) -> list[str]:
        """Cleared: no more escalation. Returns the groups it reached (they are told of the
        recovery too)."""
        self.ack(event_id)
        return self._reached.pop(event_id, [])

    def watching(self, event_id: str) -> bool:
        return any(k[0] == event_id for k in self._ladders)

    def due(self, now: float) -> list[Step]:
        out = []
        for key, ladder in list(self._ladders.items()):
            while ladder.next_at <= now and ladder.step < len(ladder.groups):
                group = ladder.groups[ladder.step]
                ladder.step += 1
                out.append(Step(ladder.event_id, ladder.route, group, ladder.step,
                                ladder.after * ladder.step))
                self._reached.setdefault(ladder.event_id, []).append(group)
            if ladder.step >= len(ladder.groups):
                del self._ladders[key]
        return out

    def next_due(self) -> float | None:
        return min((lad.next_at for lad in self._ladders.values()), default=None)
