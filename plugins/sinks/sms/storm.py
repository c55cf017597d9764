"""Storm control, sans-IO (time passed in): never flood a phone, never drop.

Per phone:

* **the same alarm** (same device, code and channel) raised again within ``dedup_window`` of
  the last time this phone was told of it, while the phone was not told it recovered, is
  not sent again; a recovery within ``dedup_window`` of the last recovery told is not either.
  When in doubt the phone believes the hazard is still there: a flapping alarm ends up
  told as raised, never as over while it is not.
* **one message waits for the phone**: whatever arrives while the phone's message is
  in flight or being retried, while the phone is held, or while a rate limit is reached,
  waits in its outbox, and the whole outbox goes out as one message when the phone may be
  sent to: the message itself if one waits, a summary if several do.
* **summaries**: once ``summary_after`` messages went to the phone within
  ``summary_window`` s, the phone is held for ``summary_window`` s and what arrives meanwhile
  becomes one summary.
* **rate limits** (``count`` per ``per`` seconds, several allowed): honoured by holding the
  outbox until the oldest send leaves the window, never by dropping.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Item:
    """One message for one phone. ``dedup`` names "the same alarm" (empty: never
    suppressed, e.g. an escalation); ``raise_`` says whether it tells of a raise (alarm,
    fault, offline) or of a recovery."""

    key: str
    dedup: str
    raise_: bool
    payload: Any = None


@dataclass(frozen=True)
class Release:
    phone: str
    items: tuple[Item, ...]


@dataclass
class _Phone:
    pending: list[Item] = field(default_factory=list)
    hold_until: float | None = None
    sent: deque[float] = field(default_factory=deque)


@dataclass(frozen=True)
class StormSettings:
    dedup_window: float = 600.0
    summary_after: int = 3
    summary_window: float = 120.0
    rate_limits: tuple[tuple[int, float], ...] = ((5, 60.0), (30, 3600.0))


class StormControl:
    def __init__(self, settings: StormSettings) -> None:
        self.s = settings
        self._phones: dict[str, _Phone] = {}
        # (phone, dedup) -> (told raised?, last raise told, last recovery told)
        self._told: dict[tuple[str, str], tuple[bool, float, float]] = {}
        self._horizon = max([settings.summary_window, *(p for _, p in settings.rate_limits)])

    def _phone(self, phone: str) -> _Phone:
        return self._phones.setdefault(phone, _Phone())

    def offer(self, phone: str, item: Item, now: float) -> bool:
        """Queue ``item`` for ``phone``; ``False`` if it is a duplicate within the window
        (not queued)."""
        if item.dedup:
            key = (phone, item.dedup)
            raised, last_raise, last_clear = self._told.get(key, (False, -1e18, -1e18))
            w = self.s.dedup_window
            if item.raise_:
                if raised and now - last_raise < w:
                    return False
                self._told[key] = (True, now, last_clear)
            else:
                if now - last_clear < w:
                    return False
                self._told[key] = (False, last_raise, now)
        self._phone(phone).pending.append(item)
        return True

    def note_told(self, phone: str, dedup: str, raise_: bool, ts: float) -> None:
        """A phone was told of a raise or a recovery before a restart, so the dedup window
        holds across it (in the order told)."""
        raised, last_raise, last_clear = self._told.get((phone, dedup), (False, -1e18, -1e18))
        self._told[(phone, dedup)] = ((True, ts, last_clear) if raise_
                                      else (False, last_raise, ts))

    def note_sent(self, phone: str, ts: float) -> None:
        """A send made before a restart, so rate limits hold across it."""
        self._phone(phone).sent.append(ts)

    def allowed_at(self, phone: str, now: float) -> float:
        """The earliest time the rate limits let one more message go to ``phone``."""
        sent = self._phone(phone).sent
        while sent and sent[0] <= now - self._horizon:
            sent.popleft()
        at = now
        for count, per in self.s.rate_limits:
            recent = [t for t in sent if t > now - per]
            if len(recent) >= count:
                at = max(at, recent[-count] + per)
        return at

    def release(self, now: float, busy: Container[str] = ()) -> list[Release]:
        """What may go now: one release per phone not ``busy`` whose outbox is free."""
        out = []
        for phone, st in self._phones.items():
            if not st.pending or phone in busy:
                continue
            if st.hold_until is not None and now < st.hold_until:
                continue
            at = self.allowed_at(phone, now)
            if at > now:
                st.hold_until = at
                continue
            if st.hold_until is None and self._recent(st, now) >= self.s.summary_after:
                st.hold_until = now + self.s.summary_window
                continue
            out.append(Release(phone, tuple(st.pending)))
            st.pending = []
            st.hold_until = None
            st.sent.append(now)
        return out

    def _recent(self, st: _Phone, now: float) -> int:
        return sum(1 for t in st.sent if t > now - self.s.summary_window)

    def next_due(self) -> float | None:
        """When a held outbox may go (a busy phone's outbox goes when it is not busy)."""
        return min((st.hold_until for st in self._phones.values()
                    if st.pending and st.hold_until is not None), default=None)

    def waiting(self) -> dict[str, Sequence[Item]]:
        return {p: list(st.pending) for p, st in self._phones.items() if st.pending}
