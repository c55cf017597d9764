"""Offline detection by heartbeat (T/CFPA 023-2023 6.3.3 i).

A device is offline when nothing (data or heartbeat) arrived for its heartbeat interval ×
timeout count. :meth:`Presence.seen` runs for every frame, so it only writes the arrival time
into a dict; no timer is touched. Deadlines live in a heap with one entry per tracked,
online device, and a single timer waits for the earliest one. When it fires, each due entry
is re-checked against ``last_seen``: a device heard from since gets a new entry, the others
go offline. A device therefore costs one heap operation per timeout period, not per frame.

Timestamps: an offline event is stamped with the deadline that passed (``last_seen +
timeout``), which is what the silence proves. At startup (:meth:`Presence.restore`) a
deadline that passed while the hub was down is stamped with the restore time instead: the hub
was not listening then, so only "now" is a time it can vouch for.

The module does no I/O; the events it returns or emits go to the core, which journals them.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from hub.model import Event, EventKind, EventState, Level, event_id

__all__ = ["OFFLINE", "Presence"]

#: The fault code of an offline device (T/CFPA 023-2023 table 3).
OFFLINE = "offline"

_NEVER = float("-inf")


class Presence:
    """Decides when tracked devices go offline and come back.

    :param clock: time source for the deadline timer and default arrival times.
    :param timeout: ``timeout(device)`` = heartbeat interval × timeout count, in seconds;
        read whenever a deadline is computed, so a config reload applies from the device's
        next deadline on.
    :param emit: receives offline events decided by the timer (and by :meth:`restore`).
    """

    def __init__(
        self,
        clock: IReactorTime,
        timeout: Callable[[str], float],
        emit: Callable[[list[Event]], object],
    ) -> None:
        self._clock = clock
        self._timeout = timeout
        self._emit = emit
        self._last: dict[str, float] = {}
        self._heard: set[str] = set()  # seen since start (restored last_seen does not count)
        # tracked device -> time silence is counted from when it has not been seen since
        self._base: dict[str, float] = {}
        self._offline: dict[str, Event] = {}  # device -> its RAISED offline event
        self._heap: list[tuple[float, str]] = []
        # The deadline of each device's one live heap entry; other entries are stale.
        self._queued: dict[str, float] = {}
        self._timer: IDelayedCall | None = None
        self._stopped = False

    # -- public API ------------------------------------------------------------------

    def track(self, devices: Iterable[str]) -> None:
        """Start watching ``devices``: one silent for its timeout from now goes offline.

        Tracking an already tracked device changes nothing.
        """
        now = self._clock.seconds()
        for device in devices:
            if device in self._base:
                continue
            self._base[device] = now
            if device not in self._offline:
                self._push(device, self._deadline(device))
        self._arm()

    def untrack(self, device: str) -> None:
        """Stop watching ``device``.

        Its last_seen and any offline state are kept, so a frame that still arrives clears
        the offline event the journal holds.
        """
        self._base.pop(device, None)
        self._queued.pop(device, None)  # its heap entry becomes stale and is dropped lazily

    def restore(self, last_seen: Mapping[str, float], offline: Iterable[Event]) -> None:
        """Resume from the journal at startup; every device named here becomes tracked.

        ``offline`` holds the journal's active offline events: those devices stay offline
        without a second event. A device whose deadline (``last_seen + timeout``) already
        passed goes offline now (emitted); the others keep their deadline from last_seen,
        with no grace period for the restart.
        """
        now = self._clock.seconds()
        for ev in offline:
            if ev.code == OFFLINE and ev.state is EventState.RAISED:
                self._offline[ev.device] = ev
                self._base[ev.device] = _NEVER
                self._queued.pop(ev.device, None)  # no deadline while offline
        for device, ts in last_seen.items():
            if ts > self._last.get(device, _NEVER):
                self._last[device] = ts
            self._base[device] = _NEVER
        events: list[Event] = []
        for device in last_seen:
            if device in self._offline:
                continue
            deadline = self._deadline(device)
            if deadline <= now:
                events.append(self._go_offline(device, now))
            else:
                self._push(device, deadline)
        self._arm()
        if events:
            self._emit(events)

    def seen(self, device: str, ts: float | None = None) -> list[Event]:
        """Record that data or a heartbeat from ``device`` arrived at ``ts`` (default: now).

        Returns ``[]``, or the online event (the offline fault CLEARED under its original
        id) when the device was offline. ``ts`` should be the hub's arrival time: a
        device's own clock may be skewed, and deadlines run on the hub's clock.
        """
        if ts is None:
            ts = self._clock.seconds()
        if ts > self._last.get(device, _NEVER):
            self._last[device] = ts
        self._heard.add(device)
        raised = self._offline.pop(device, None)
        if raised is None:
            return []
        # A frame stamped before the offline raise (buffered data) still proves the device
        # is talking now; never give the fault a negative duration.
        assert raised.raised_ts is not None
        cleared_ts = max(ts, raised.raised_ts)
        if device in self._base:
            self._push(device, self._deadline(device))
            self._arm()
        return [
            replace(
                raised,
                state=EventState.CLEARED,
                ts=cleared_ts,
                message=f"设备恢复在线: 离线 {cleared_ts - raised.raised_ts:.0f} s",
            )
        ]

    def reschedule(self, device: str) -> None:
        """The timeout of ``device`` changed: its deadline follows from now on (an earlier
        one than its queued entry would otherwise wait for that entry)."""
        if device in self._base and device not in self._offline and not self._stopped:
            self._push(device, self._deadline(device))
            self._arm()

    def is_online(self, device: str) -> bool | None:
        """False if offline, True if heard from since start, None if neither yet."""
        if device in self._offline:
            return False
        if device in self._heard:
            return True
        return None

    def last_seen(self, device: str) -> float | None:
        """The latest arrival time known (live or restored), or None."""
        return self._last.get(device)

    def offline(self) -> list[Event]:
        """The RAISED offline events of every device currently offline."""
        return list(self._offline.values())

    def stop(self) -> None:
        """Cancel the deadline timer for good (shutdown); state stays readable."""
        self._stopped = True
        self._cancel()

    # -- internals -------------------------------------------------------------------

    def _cancel(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _deadline(self, device: str) -> float:
        base = max(self._last.get(device, _NEVER), self._base.get(device, _NEVER))
        return base + self._timeout(device)

    def _push(self, device: str, deadline: float) -> None:
        self._queued[device] = deadline
        heapq.heappush(self._heap, (deadline, device))

    def _arm(self) -> None:
        """Point the one timer at the earliest live deadline."""
        heap = self._heap
        # Drop stale tops now so the timer does not wake for entries that mean nothing.
        while heap and self._queued.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        if not heap or self._stopped:
            self._cancel()
            return
        delay = max(0.0, heap[0][0] - self._clock.seconds())
        timer = self._timer
        if timer is not None and timer.active():
            if timer.getTime() <= heap[0][0]:
                return  # it fires early enough; the sweep will re-arm
            timer.reset(delay)
        else:
            self._timer = self._clock.callLater(delay, self._sweep)

    def _sweep(self) -> None:
        self._timer = None
        now = self._clock.seconds()
        heap = self._heap
        events: list[Event] = []
        while heap and heap[0][0] <= now:
            deadline, device = heapq.heappop(heap)
            if self._queued.get(device) != deadline or device in self._offline:
                continue  # superseded, untracked or went offline: stale entry
            del self._queued[device]
            actual = self._deadline(device)  # later than `deadline` if seen since
            if actual > now:
                self._push(device, actual)
            else:
                events.append(self._go_offline(device, actual))
        self._arm()
        if events:
            self._emit(events)

    def _go_offline(self, device: str, raised_ts: float) -> Event:
        timeout = self._timeout(device)
        self._queued.pop(device, None)
        ev = Event(
            device=device,
            kind=EventKind.FAULT,
            code=OFFLINE,
            state=EventState.RAISED,
            ts=raised_ts,
            level=Level.FAULT,
            channel="",
            id=event_id(device, OFFLINE, "", Level.FAULT, raised_ts),
            value=self._last.get(device),
            set_point=timeout,
            raised_ts=raised_ts,
            source="hub",
            message=f"设备离线: 超过 {timeout:g} s 未收到数据或心跳",
        )
        self._offline[device] = ev
        return ev
