"""Notification policies and escalation, on an injected clock (``task.Clock`` in tests).

A project's :class:`Policy` is an ordered list of :class:`Step` s: ``delay`` seconds after
the alarm was raised, send on ``channel`` to ``recipients`` (addresses, ``user:NAME``) and/or
to everyone holding ``role`` on the project. After the last step the last step repeats
every ``repeat_interval`` seconds until someone acknowledges. Acknowledgement or clear
stops the ladder: :class:`Escalator` asks the store for the record's state before every
step, so an act made anywhere (API, ``hub alarms``, ``hub events ack``) stops it.

Quiet hours (``quiet_hours``, local minutes of the day, may wrap midnight) hold pre-alarms
and faults back to their end; an alarm (报警, what an electrical-fire detector raises) is
never held back. A recipient that gets more than ``storm_limit`` notifications within
``storm_window`` seconds gets the rest as one summary at the end of the window
(:class:`StormGate`).

Durable: the next due time of every ladder is in the store (``save``/``drop``), loaded at
start; a step already due when the hub comes back is sent at once, the later ones keep
their times (they count from the raise, not from the restart). Each
(alarm, step, channel, recipient) is sent at most once (the store's ``notifications`` keeps
them; ``claim`` says whether it is new). What one reactor turn changes is written in one
transaction at the end of the turn, and the records of every step falling due in the turn
are read in one query.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

_log = Logger(namespace="hub.alarmdesk")

#: a failed flush (the store busy or failing) is tried again after this, doubling to the max
RETRY_INITIAL = 0.5
RETRY_MAX = 30.0

__all__ = ["Escalator", "Notification", "Policy", "Step", "StormGate", "in_quiet_hours",
           "policy_from_dict"]


@dataclass(frozen=True)
class Step:
    delay: float  # s after the raise
    channel: str  # a channel's name in the configuration
    recipients: tuple[str, ...] = ()
    role: str | None = None


@dataclass(frozen=True)
class Policy:
    steps: tuple[Step, ...]
    repeat_interval: float | None = None
    quiet_hours: tuple[int, int] | None = None  # (start, end) minutes of the local day
    utc_offset_minutes: int = 480  # the project's local time (China Standard Time)
    storm_limit: int = 5
    storm_window: float = 300.0
    # hazard reminders (s before / after the deadline, repeat while overdue), sent to the
    # recipients of step ``remind_step`` and to the hazard's responsible person
    remind_before: float | None = None
    remind_after: float | None = None
    remind_repeat: float | None = None
    remind_step: int = 0

    def due(self, first_ts: float, index: int) -> float:
        """When step ``index`` (past the last: its repeats) is due."""
        last = len(self.steps) - 1
        if index <= last:
            return first_ts + self.steps[index].delay
        assert self.repeat_interval
        return first_ts + self.steps[last].delay + self.repeat_interval * (index - last)

    def step(self, index: int) -> Step:
        return self.steps[min(index, len(self.steps) - 1)]

    def has(self, index: int) -> bool:
        return index < len(self.steps) or bool(self.repeat_interval)


def policy_from_dict(d: dict[str, Any]) -> Policy:
    """A policy from its JSON form (the API checked it)."""
    quiet = d.get("quiet_hours")
    return Policy(
        steps=tuple(Step(float(s["delay"]), s["channel"], tuple(s.get("recipients") or ()),
                         s.get("role")) for s in d["steps"]),
        repeat_interval=d.get("repeat_interval"),
        quiet_hours=(_minutes(quiet["start"]), _minutes(quiet["end"])) if quiet else None,
        utc_offset_minutes=int(d.get("utc_offset_minutes", 480)),
        storm_limit=int(d.get("storm_limit", 5)),
        storm_window=float(d.get("storm_window", 300.0)),
        remind_before=(d.get("hazard_reminders") or {}).get("before"),
        remind_after=(d.get("hazard_reminders") or {}).get("after"),
        remind_repeat=(d.get("hazard_reminders") or {}).get("repeat"),
        remind_step=int((d.get("hazard_reminders") or {}).get("step") or 0))


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


def in_quiet_hours(policy: Policy, ts: float) -> float | None:
    """The end of the quiet hours ``ts`` falls in (epoch s), or None."""
    if policy.quiet_hours is None:
        return None
    start, end = policy.quiet_hours
    local = ts + policy.utc_offset_minutes * 60
    minute = (local // 60) % 1440
    inside = start <= minute < end if start <= end else minute >= start or minute < end
    if not inside:
        return None
    day = local - local % 86400
    end_local = day + end * 60
    if end_local <= local:
        end_local += 86400
    return end_local - policy.utc_offset_minutes * 60


@dataclass(frozen=True)
class Notification:
    alarm_id: int
    step: int  # index in the ladder; past the last step: a repeat
    channel: str
    recipient: str  # an address on the channel
    severity: str
    text: str
    project: str = ""
    summary_of: tuple[int, ...] = ()
    hazard_id: int | None = None  # a hazard reminder (alarm_id is then -hazard_id)


class Persistence(Protocol):
    """The store's side, in batches: one transaction per reactor turn however many
    ladders moved (10,000 timers falling due in one second stay on time)."""

    def apply(self, saves: dict[int, tuple[str, int, float, float]],
              drops: set[int]) -> None: ...
    def load(self) -> list[tuple[int, str, int, float, float]]: ...
    def records(self, alarm_ids: list[int]) -> dict[int, Any]: ...
    def claim(self, notes: list[Notification], ts: float) -> list[bool]: ...


class StormGate:
    """Per (channel, recipient): the first ``limit`` notifications of a window pass, the
    rest wait for one summary at its end. ``send`` gets what passes and the summaries."""

    def __init__(self, clock: IReactorTime, send: Callable[[Notification], None]) -> None:
        self.clock = clock
        self.send = send
        self._windows: dict[tuple[str, str], _Window] = {}

    def offer(self, n: Notification, limit: int, window: float) -> None:
        key = (n.channel, n.recipient)
        w = self._windows.get(key)
        now = self.clock.seconds()
        if w is None or now >= w.end:
            w = self._windows[key] = _Window(now + window)
        if w.sent < limit:
            w.sent += 1
            self.send(n)
            return
        w.held.append(n)
        if w.timer is None:
            w.timer = self.clock.callLater(w.end - now, self._flush, key, w)

    def _flush(self, key: tuple[str, str], w: _Window) -> None:
        w.timer = None
        if self._windows.get(key) is w:
            del self._windows[key]
        if not w.held:
            return
        ids = tuple(dict.fromkeys(n.alarm_id for n in w.held))
        first = w.held[0]
        text = f"{len(ids)} more alarm(s) in {len({n.project for n in w.held})} project(s): " \
               + "; ".join(n.text for n in w.held[:5]) + (" …" if len(w.held) > 5 else "")
        self.send(Notification(first.alarm_id, first.step, first.channel, first.recipient,
                               max((n.severity for n in w.held), key=_sev_rank), text,
                               first.project, ids))

    def stop(self) -> None:
        for w in self._windows.values():
            if w.timer is not None and w.timer.active():
                w.timer.cancel()
        self._windows.clear()


@dataclass
class _Window:
    end: float
    sent: int = 0
    held: list[Notification] = field(default_factory=list)
    timer: IDelayedCall | None = None


def _sev_rank(severity: str) -> int:
    return {"pre-alarm": 1, "fault": 2, "alarm": 3}.get(severity, 0)


class Escalator:
    """Runs the ladders of open alarms.

    :param store: the durable side (:class:`Persistence`): ladders, the current records
        (read before every step, so an act made anywhere stops it), claims.
    :param policy_for: ``policy_for(project)``: the project's policy or None (no ladder).
    :param resolve: ``resolve(project, step)``: ``[(channel, address)]`` of the step's
        recipients after their preferences.
    :param deliver: hands one notification to its channel (which retries on its own).
    """

    def __init__(self, clock: IReactorTime, store: Persistence,
                 policy_for: Callable[[str], Policy | None],
                 resolve: Callable[[str, Step], Iterable[tuple[str, str]]],
                 deliver: Callable[[Notification], None]) -> None:
        self.clock = clock
        self.store = store
        self.policy_for = policy_for
        self.resolve = resolve
        self.deliver = deliver
        self.gate = StormGate(clock, self._send)
        self.timers: dict[int, tuple[IDelayedCall, str, int, float]] = {}
        # what this reactor turn changed, written (and sent) together by _flush
        self._saves: dict[int, tuple[str, int, float, float]] = {}
        self._drops: set[int] = set()
        self._firing: list[tuple[int, str, int, float]] = []
        self._outgoing: list[Notification] = []
        self._flush_call: IDelayedCall | None = None
        self.failures = 0  # flushes failed in a row
        self._flushing = False

    # -- what the desk tells it --------------------------------------------------------

    def start(self) -> None:
        """Resume every ladder the store holds."""
        for alarm_id, project, step, due, base in self.store.load():
            self._arm(alarm_id, project, step, due, base, persist=False)

    def stop(self) -> None:
        """Stop the timers; what this turn changed is written first."""
        self._firing.clear()
        self._outgoing.clear()
        self._write()
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        for call, *_ in self.timers.values():
            if call.active():
                call.cancel()
        self.timers.clear()
        self.gate.stop()

    def changed(self, record: Any, action: str) -> None:
        if action == "raised" and record.id not in self.timers:
            policy = self.policy_for(record.project)
            if policy is None or not policy.steps:
                return
            self._arm(record.id, record.project, 0, policy.due(record.first_ts, 0),
                      record.first_ts)
        elif action == "retriggered":  # raised again after a clear stopped its ladder
            self.adopt(record)
        elif action in ("acknowledged", "handled", "cleared") and record.id in self.timers:
            self._cancel(record.id)

    def adopt(self, record: Any) -> None:
        """Start the ladder of an open alarm that has none (raised before its project had
        a policy, or whose ladder a crash lost before it was written): its delays count
        from now; steps sent before are not sent again (their claims are stored)."""
        if record.id in self.timers or record.acked or not record.active:
            return
        policy = self.policy_for(record.project)
        if policy is not None and policy.steps:
            now = self.clock.seconds()
            self._arm(record.id, record.project, 0, policy.due(now, 0), now)

    # -- the ladder ----------------------------------------------------------------------

    def _soon(self) -> None:
        if self._flushing:  # what a flush's own steps add, it writes and claims itself
            return
        if self._flush_call is None or not self._flush_call.active():
            self._flush_call = self.clock.callLater(0, self._flush)

    def _arm(self, alarm_id: int, project: str, step: int, due: float, base: float,
             persist: bool = True) -> None:
        if persist:
            self._saves[alarm_id] = (project, step, due, base)
            self._drops.discard(alarm_id)
            self._soon()
        delay = max(0.0, due - self.clock.seconds())
        call = self.clock.callLater(delay, self._due, alarm_id, project, step, base)
        old = self.timers.get(alarm_id)
        if old is not None and old[0].active():
            old[0].cancel()
        self.timers[alarm_id] = (call, project, step, base)

    def _drop(self, alarm_id: int) -> None:
        self._saves.pop(alarm_id, None)
        self._drops.add(alarm_id)
        self._soon()

    def _cancel(self, alarm_id: int) -> None:
        call, *_ = self.timers.pop(alarm_id)
        if call.active():
            call.cancel()
        self._drop(alarm_id)

    def _due(self, alarm_id: int, project: str, index: int, base: float) -> None:
        self.timers.pop(alarm_id, None)
        self._firing.append((alarm_id, project, index, base))
        self._soon()

    def _flush(self) -> None:
        """What this turn changed: due steps taken, notifications claimed, ladders
        written. A failure keeps what was not done (steps not taken, notifications not
        claimed, ladders not written) and tries again after a backoff: nothing is dropped."""
        self._flush_call = None
        self._flushing = True
        try:
            self._flush_once()
        except Exception:
            self.failures += 1
            delay = min(RETRY_MAX, RETRY_INITIAL * 2 ** min(self.failures - 1, 16))
            _log.failure("escalation: flush failed ({n} in a row; {f} steps due, {o} "
                         "notifications to claim, {s} ladders to write, {d} to end kept); "
                         "again in {delay:.1f} s", n=self.failures, f=len(self._firing),
                         o=len(self._outgoing), s=len(self._saves), d=len(self._drops),
                         delay=delay)
            # the retry waits out the backoff: _soon sees it pending
            self._flush_call = self.clock.callLater(delay, self._flush)
        else:
            self.failures = 0
        finally:
            self._flushing = False

    def _flush_once(self) -> None:
        firing, self._firing = self._firing, []
        if firing:
            done = 0
            try:
                records = self.store.records([f[0] for f in firing])
                # one policy look-up per project for the steps falling due together
                policies: dict[str, Policy | None] = {}
                for alarm_id, project, index, base in firing:
                    if project not in policies:
                        policies[project] = self.policy_for(project)
                    self._step(records.get(alarm_id), alarm_id, project, index, base,
                               policies[project])
                    done += 1
            except BaseException:
                self._firing[:0] = firing[done:]  # still due, before any due since
                raise
        outgoing = self._outgoing
        if outgoing:
            claimed = self.store.claim(outgoing, self.clock.seconds())
            self._outgoing = []  # claimed: a failure before this claims them again
            for n, new in zip(outgoing, claimed, strict=True):
                if new:
                    self.deliver(n)
        self._write()

    def _write(self) -> None:
        if self._saves or self._drops:
            saves, drops = self._saves, self._drops
            self._saves, self._drops = {}, set()
            try:
                self.store.apply(saves, drops)
            except BaseException:
                # kept for the next write; what changed meanwhile is newer and wins
                for alarm_id, row in saves.items():
                    if alarm_id not in self._drops:
                        self._saves.setdefault(alarm_id, row)
                self._drops |= {a for a in drops if a not in self._saves}
                raise

    def _step(self, record: Any, alarm_id: int, project: str, index: int,
              base: float, policy: Policy | None) -> None:
        if record is None or record.acked or not record.active or policy is None:
            self._drop(alarm_id)
            return
        now = self.clock.seconds()
        if record.severity != "alarm":
            until = in_quiet_hours(policy, now)
            if until is not None:
                self._arm(alarm_id, project, index, until, base)
                return
        step = policy.step(index)
        text = f"[{record.severity}] {record.device} {record.code}" \
               f"{' ' + record.channel if record.channel else ''}: {record.message}".rstrip(": ")
        for channel, address in self.resolve(project, step):
            n = Notification(alarm_id, index, channel, address, record.severity, text, project)
            self.gate.offer(n, policy.storm_limit, policy.storm_window)
        nxt = index + 1
        if policy.has(nxt):
            self._arm(alarm_id, project, nxt, max(policy.due(base, nxt), now), base)
        else:
            self._drop(alarm_id)

    def _send(self, n: Notification) -> None:
        self._outgoing.append(n)
        self._soon()


def wall_clock_offset() -> int:
    """The local UTC offset in minutes (a default for policies without one)."""
    return -time.timezone // 60


def check_policy(d: dict[str, Any], channels: Sequence[str]) -> list[str]:
    """Problems of a policy's JSON form against the configured channel names."""
    problems = []
    last = -1.0
    for i, s in enumerate(d.get("steps") or ()):
        if s["channel"] not in channels:
            problems.append(f"steps[{i}]: no channel {s['channel']!r} (configured: "
                            f"{', '.join(channels) or 'none'})")
        if s["delay"] < last:
            problems.append(f"steps[{i}]: delays are counted from the raise; they must not "
                            "decrease")
        last = s["delay"]
        if not s.get("recipients") and not s.get("role"):
            problems.append(f"steps[{i}]: give recipients or a role")
    return problems
