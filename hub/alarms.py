"""The alarm engine: readings in, alarm edges out.

Two sources of alarms meet here:

* **Set points** (T/CFPA 023-2023 table 1): the hub compares readings against per-device
  :class:`Threshold` s and raises/clears ``source="hub"`` events, with an optional warning
  (预警) level, hysteresis and raise/clear delays.
* **Device reports**: many detectors only expose a status word that a poller reads every
  cycle. The engine turns those level-style reports into edges: one ``RAISED`` and one
  ``CLEARED`` per alarm, both under a stable id.

Comparison rule: an alarm is raised when the value *reaches* its set point (``value >= set
point`` for "high" rules, ``value <= set point`` for "low" ones), which is how detector
datasheets state their thresholds ("报警值 80 °C"). It clears strictly beyond the hysteresis
band (``value < set point - hysteresis`` / ``value > set point + hysteresis``), so with no
hysteresis the clear condition is exactly the negation of the raise condition.

Timestamps: the engine works on reading time, not on the clock. A delayed raise is stamped
``ts of the reading that started the condition + delay`` (the instant the condition had held
for ``delay``), a delayed clear likewise with ``clear_delay``. The clock only decides *when*
the engine gives up waiting for more readings. So the same readings always give the same
events and ids, whether they arrive live or as a buffered upload from a DTU, and a later
reading whose ts is past the deadline confirms the condition without waiting for the timer.

The engine does no I/O: :meth:`AlarmEngine.process` returns events decided now, timer
decisions go to ``emit``; the core journals both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from hub.model import (
    ALARM_RULES,
    QUANTITIES,
    AlarmRule,
    Event,
    EventKind,
    EventState,
    Level,
    Quality,
    Reading,
    event_id,
)

__all__ = ["AlarmEngine", "Threshold"]


@dataclass(frozen=True, slots=True)
class Threshold:
    """The set points of one alarm rule for one device (validated by the config layer)."""

    rule: str  # key of ALARM_RULES
    alarm: float  # set point
    warning: float | None  # pre-alarm set point (absolute); None = no warning level
    hysteresis: float = 0.0  # absolute, in the quantity's unit
    delay: float = 0.0  # seconds the condition must hold before it is raised
    clear_delay: float = 0.0  # seconds the normal condition must hold before the clear
    enabled: bool = True


# WARNING first so a reading that crosses both yields [warning, alarm] in escalation order.
_LEVELS = (Level.WARNING, Level.ALARM)

_CondKey = tuple[str, str, Level]  # (channel, rule name, level), inside a per-device dict
# (device, kind, code, channel, level): a device's pre-alarm and alarm bits for one code
# are two conditions, as the engine's own warning and alarm levels are
_EdgeKey = tuple[str, EventKind, str, str, Level]


class _Condition:
    """One (device, channel, rule, level): waiting to raise, raised, or waiting to clear.

    ``raised is None`` means the raise delay is running; otherwise ``since`` is set while
    the clear delay runs. A condition that is neither raised nor pending is deleted.
    """

    __slots__ = ("due", "peak", "raised", "rule", "set_point", "since", "timer", "value")

    def __init__(
        self, rule: AlarmRule, set_point: float, since: float, value: float | None = None
    ) -> None:
        self.rule = rule
        self.set_point = set_point
        self.raised: Event | None = None
        self.since: float | None = since
        self.due: float = since
        self.value = value if value is not None else set_point
        self.peak: float | None = value
        self.timer: IDelayedCall | None = None

    def track_peak(self, value: float) -> None:
        if self.peak is None:
            self.peak = value
        elif self.rule.direction == "high":
            self.peak = max(self.peak, value)
        else:
            self.peak = min(self.peak, value)

    def cancel(self) -> None:
        if self.timer is not None:
            if self.timer.active():
                self.timer.cancel()
            self.timer = None


class AlarmEngine:
    """Evaluates readings against set points and turns device reports into edges.

    :param clock: time source for the raise/clear delays.
    :param thresholds: ``thresholds(device)`` gives ``{rule name: Threshold}``; called on
        every relevant reading, so a config reload takes effect at the next reading.
    :param emit: receives the events decided later by a timer (delay expiry).
    """

    def __init__(
        self,
        clock: IReactorTime,
        thresholds: Callable[[str], Mapping[str, Threshold]],
        emit: Callable[[list[Event]], object],
    ) -> None:
        self._clock = clock
        self._thresholds = thresholds
        self._emit = emit
        # Built once: quantities without any rule (power, energy, ...) are most of the
        # traffic and must cost one dict lookup.
        by_quantity: dict[str, tuple[AlarmRule, ...]] = {}
        for rule in ALARM_RULES.values():
            by_quantity[rule.quantity] = by_quantity.get(rule.quantity, ()) + (rule,)
        self._by_quantity = by_quantity
        self._conds: dict[str, dict[_CondKey, _Condition]] = {}
        self._edges: dict[_EdgeKey, Event] = {}
        self._stopped = False

    # -- public API ------------------------------------------------------------------

    def process(self, records: Sequence[Reading | Event]) -> list[Event]:
        """Evaluate ``records`` in order; return the events decided now.

        Readings with quality BAD are skipped (an open sensor's 0 °C proves nothing).
        Device-reported alarm/fault events come back as edges (repeats swallowed, stable
        id assigned); notices and hub events pass through unchanged.
        """
        out: list[Event] = []
        for rec in records:
            if isinstance(rec, Reading):
                rules = self._by_quantity.get(rec.quantity)
                if rules is None or rec.quality == Quality.BAD:
                    continue
                self._evaluate(rec, rules, out)
            else:
                self._edge(rec, out)
        return out

    def watching(self, device: str) -> bool:
        """Whether a set-point condition of ``device`` is open (raised or pending): its
        readings count even with no threshold left (a removed rule retires it)."""
        return device in self._conds

    def restore(self, active: Iterable[Event]) -> None:
        """Take over the journal's active (raised, never cleared) events at startup.

        Events the engine does not own (offline faults, other hub faults) are ignored, so
        the core may pass the journal's whole active set.
        """
        for ev in active:
            if ev.state is not EventState.RAISED:
                continue
            if ev.source == "device":
                if ev.kind in (EventKind.ALARM, EventKind.FAULT):
                    self._edges[(ev.device, ev.kind, ev.code, ev.channel, ev.level)] = ev
                continue
            rule = ALARM_RULES.get(ev.code)
            if ev.kind is not EventKind.ALARM or rule is None or ev.level not in _LEVELS:
                continue
            cond = _Condition(rule, ev.set_point if ev.set_point is not None else 0.0, ev.ts)
            for v in (ev.value, ev.peak):
                if v is not None:
                    cond.track_peak(v)
            cond.value = ev.value if ev.value is not None else (cond.peak or 0.0)
            cond.raised = ev
            cond.since = None
            self._conds.setdefault(ev.device, {})[(ev.channel, ev.code, ev.level)] = cond

    def active(self) -> list[Event]:
        """The RAISED records of every alarm currently raised (set point and device)."""
        out = [c.raised for d in self._conds.values() for c in d.values() if c.raised]
        out.extend(self._edges.values())
        out.sort(key=lambda e: (e.raised_ts if e.raised_ts is not None else e.ts, e.id))
        return out

    def stop(self) -> None:
        """Cancel pending delay timers for good (shutdown).

        State is kept: readings still raise and clear, delays are then confirmed only by
        later readings.
        """
        self._stopped = True
        for conds in self._conds.values():
            for cond in conds.values():
                cond.cancel()

    # -- set points ------------------------------------------------------------------

    def _evaluate(self, rec: Reading, rules: tuple[AlarmRule, ...], out: list[Event]) -> None:
        device = rec.device
        th = self._thresholds(device)
        for rule in rules:
            t = th.get(rule.name)
            if t is not None and not t.enabled:
                t = None
            if t is None and device not in self._conds:
                continue  # the common "no rule here" case: nothing to start or retire
            for level in _LEVELS:
                key = (rec.channel, rule.name, level)
                conds = self._conds.get(device)
                cond = conds.get(key) if conds else None
                sp = None
                if t is not None:
                    sp = t.alarm if level is Level.ALARM else t.warning
                if t is None or sp is None:
                    if cond is not None:
                        self._retire(rec, key, cond, out)
                elif cond is None:
                    self._start(rec, key, rule, t, sp, out)
                else:
                    self._step(rec, key, cond, t, sp, out)

    def _start(
        self,
        rec: Reading,
        key: _CondKey,
        rule: AlarmRule,
        t: Threshold,
        sp: float,
        out: list[Event],
    ) -> None:
        v = rec.value
        if not (v >= sp if rule.direction == "high" else v <= sp):
            return
        cond = _Condition(rule, sp, rec.ts, v)
        self._conds.setdefault(rec.device, {})[key] = cond
        if t.delay <= 0:
            out.append(self._raise(rec.device, key, cond, rec.ts))
        else:
            cond.due = rec.ts + t.delay
            cond.timer = self._later(t.delay, self._raise_due, rec.device, key)

    def _step(
        self,
        rec: Reading,
        key: _CondKey,
        cond: _Condition,
        t: Threshold,
        sp: float,
        out: list[Event],
    ) -> None:
        v, ts = rec.value, rec.ts
        high = cond.rule.direction == "high"
        cond.track_peak(v)
        if cond.raised is None:  # raise delay running
            if not (v >= sp if high else v <= sp):
                cond.cancel()
                self._drop(rec.device, key)
                return
            cond.value = v
            cond.set_point = sp
            if ts >= cond.due:  # readings already prove it held long enough
                cond.cancel()
                out.append(self._raise(rec.device, key, cond, cond.due))
            return
        if not (v < sp - t.hysteresis if high else v > sp + t.hysteresis):
            if cond.since is not None:  # back inside the band: the normal spell is broken
                cond.cancel()
                cond.since = None
            return
        cond.value = v
        if cond.since is None:
            if t.clear_delay <= 0:
                out.append(self._clear(rec.device, key, cond, ts))
                return
            cond.since = ts
            cond.due = ts + t.clear_delay
            cond.timer = self._later(t.clear_delay, self._clear_due, rec.device, key)
        elif ts >= cond.due:
            cond.cancel()
            out.append(self._clear(rec.device, key, cond, cond.due))

    def _retire(self, rec: Reading, key: _CondKey, cond: _Condition, out: list[Event]) -> None:
        # The rule or level was removed or disabled by a reload: nothing would ever clear a
        # raised alarm again, so clear it now rather than leave it active forever.
        cond.cancel()
        if cond.raised is None:
            self._drop(rec.device, key)
            return
        cond.value = rec.value
        ev = self._clear(rec.device, key, cond, rec.ts)
        out.append(replace(ev, message=ev.message + " (阈值已停用)"))

    def _later(
        self, delay: float, fn: Callable[[str, _CondKey], None], device: str, key: _CondKey
    ) -> IDelayedCall | None:
        return None if self._stopped else self._clock.callLater(delay, fn, device, key)

    def _raise_due(self, device: str, key: _CondKey) -> None:
        cond = self._conds.get(device, {}).get(key)
        if cond is None or cond.raised is not None:
            return
        cond.timer = None
        self._emit([self._raise(device, key, cond, cond.due)])

    def _clear_due(self, device: str, key: _CondKey) -> None:
        cond = self._conds.get(device, {}).get(key)
        if cond is None or cond.raised is None or cond.since is None:
            return
        cond.timer = None
        self._emit([self._clear(device, key, cond, cond.due)])

    def _raise(self, device: str, key: _CondKey, cond: _Condition, ts: float) -> Event:
        channel, code, level = key
        rule = cond.rule
        unit = _unit(rule)
        op = "≥" if rule.direction == "high" else "≤"
        text = f"{_num(cond.value)}{unit} {op} {cond.set_point:g}{unit}"
        ev = Event(
            device=device,
            kind=EventKind.ALARM,
            code=code,
            state=EventState.RAISED,
            ts=ts,
            level=level,
            channel=channel,
            id=event_id(device, code, channel, level, ts),
            value=cond.value,
            set_point=cond.set_point,
            peak=cond.peak,
            raised_ts=ts,
            source="hub",
            message=" ".join(p for p in (_label(rule, level), channel, text) if p),
        )
        cond.raised = ev
        cond.since = None
        cond.timer = None
        return ev

    def _clear(self, device: str, key: _CondKey, cond: _Condition, ts: float) -> Event:
        raised = cond.raised
        assert raised is not None
        unit = _unit(cond.rule)
        label = _label(cond.rule, raised.level) + "恢复"
        text = f"{_num(cond.value)}{unit}"
        if cond.peak is not None:
            text += f", 峰值 {_num(cond.peak)}{unit}"
        self._drop(device, key)
        return replace(
            raised,
            state=EventState.CLEARED,
            ts=ts,
            value=cond.value,
            peak=cond.peak,
            message=" ".join(p for p in (label, raised.channel, text) if p),
        )

    def _drop(self, device: str, key: _CondKey) -> None:
        conds = self._conds.get(device)
        if conds is not None:
            conds.pop(key, None)
            if not conds:  # keeps the "no condition for this device" fast path a falsy check
                del self._conds[device]

    # -- device reports --------------------------------------------------------------

    def _edge(self, ev: Event, out: list[Event]) -> None:
        if (
            ev.source != "device"
            or ev.kind not in (EventKind.ALARM, EventKind.FAULT)
            or ev.state not in (EventState.RAISED, EventState.CLEARED)
        ):
            out.append(ev)
            return
        key = (ev.device, ev.kind, ev.code, ev.channel, ev.level)
        prev = self._edges.get(key)
        if ev.state is EventState.RAISED:
            if prev is not None:  # the status bit is reported on every poll
                return
            raised_ts = ev.raised_ts if ev.raised_ts is not None else ev.ts
            ev = replace(
                ev,
                id=event_id(ev.device, ev.code, ev.channel, ev.level, raised_ts),
                raised_ts=raised_ts,
            )
            self._edges[key] = ev
            out.append(ev)
        elif prev is not None:
            del self._edges[key]
            # The clear belongs to the raise: same id, level and raise time.
            out.append(replace(ev, id=prev.id, level=prev.level, raised_ts=prev.raised_ts))


def _label(rule: AlarmRule, level: Level) -> str:
    if level is Level.WARNING:
        base = rule.label.removesuffix("报警")
        return base + "预警"
    return rule.label


def _unit(rule: AlarmRule) -> str:
    unit = QUANTITIES[rule.quantity].unit
    return f" {unit}" if unit else ""


def _num(x: float) -> str:
    # One decimal reads naturally for °C/V/mA; keep more digits when they carry information
    # (smoke 0.05 %obs/m).
    return f"{x:.1f}" if x == round(x, 1) else f"{x:.6g}"
