"""Safety grading: a 100-point score per device and project over a period, mapped to
优 / 良好 / 一般隐患 / 严重隐患 (T/CFPA 023-2023 §6.3.2 asks for the grade; no standard
gives a formula, so this one is ours, published in the README "Safety grading").

Each device starts at 100; every rule below deducts points, and each deduction is kept
with its reason, so a grade always says why. All weights and bands are configurable
(:meth:`GradingScheme.from_mapping`).

1. **Alarms** raised in the period: ``alarm_weight[class] × level_factor[level]`` each
   (class ``fire``: temperature, residual/leakage current, fault arc, pyrolytic particles,
   smoke, gas, and any code with "fire" in it; class ``electrical``: everything else),
   at most ``per_code_cap`` points per alarm code, so one chattering sensor cannot hide
   the rest.
2. **Time in alarm**: ``hour_weight[class]`` per hour an alarm stayed raised within the
   period (alarms raised before it count from its start), at most ``time_cap`` in all.
3. **Unhandled alarms**: ``late_ack_points`` for each alarm acknowledged later than
   ``ack_within`` seconds after it was raised (or never, and cleared), and
   ``open_unacked_points`` more for each still raised and unacknowledged at the end.
4. **Offline**: ``offline_points × share of the period offline`` (offline faults).
5. **Other faults** (open or shorted channel, self-fault, ...): ``fault_points`` each.
6. **Open hazards** (隐患, :mod:`hub.store.hazards`): ``hazard_points[severity]`` (一般 5,
   重大 15) for each hazard of the device found before the end of the period and not
   closed by then. A hazard of the whole project (no device) deducts from the project.
7. **Overdue rectifications**: ``overdue_points`` (5) for each such hazard whose deadline
   passed before the end of the period, plus ``overdue_day_points`` (1) per whole day
   overdue, at most ``overdue_cap`` (20) per hazard.
8. **Near the set point**: ``near_points`` (0.5) per hour whose highest temperature or
   residual current reached ``near_ratio`` (80 %) of the device's alarm set point, at
   most ``near_cap`` (10) per quantity (hourly rollup maxima; the set points are the
   device's configured thresholds). Reaching the set point itself is an alarm (rule 1);
   this is the margin that is running out.

The score is ``max(0, 100 - Σ)``. Bands: ``score ≥ 90`` 优, ``≥ 75`` 良好, ``≥ 60``
一般隐患, else 严重隐患 (configurable). A **project** scores the mean of its devices, but
at most ``project_above_worst`` points above its worst device: a hundred quiet devices do
not hide one that burns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

from hub.model import Acknowledgement, Event, EventKind, EventState, Level

FIRE_CODES = frozenset({"temperature", "residual_current", "resistive_leakage_current",
                        "fault_arc", "pyrolytic_particles", "smoke_concentration",
                        "gas_concentration"})
GRADES = ("优", "良好", "一般隐患", "严重隐患")


@dataclass(frozen=True)
class GradingScheme:
    alarm_weight: Mapping[str, float] = field(
        default_factory=lambda: {"fire": 10.0, "electrical": 4.0})
    level_factor: Mapping[str, float] = field(
        default_factory=lambda: {"warning": 0.4, "alarm": 1.0, "fault": 1.0, "info": 0.0})
    per_code_cap: float = 40.0
    hour_weight: Mapping[str, float] = field(
        default_factory=lambda: {"fire": 2.0, "electrical": 0.5})
    time_cap: float = 20.0
    ack_within: float = 900.0
    late_ack_points: float = 3.0
    open_unacked_points: float = 10.0
    offline_points: float = 20.0
    fault_points: float = 2.0
    #: lowest score of 优, 良好, 一般隐患 (below the last: 严重隐患)
    bands: tuple[float, float, float] = (90.0, 75.0, 60.0)
    project_above_worst: float = 20.0
    fire_codes: frozenset[str] = FIRE_CODES
    hazard_points: Mapping[str, float] = field(
        default_factory=lambda: {"一般": 5.0, "重大": 15.0})
    overdue_points: float = 5.0
    overdue_day_points: float = 1.0
    overdue_cap: float = 20.0
    near_ratio: float = 0.8
    near_points: float = 0.5
    near_cap: float = 10.0

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any] | None) -> GradingScheme:
        """A scheme from configuration: any field given replaces the default (mappings are
        merged key by key). Raises ValueError on unknown keys or bands not descending."""
        if not m:
            return cls()
        known = {f.name for f in fields(cls)}
        unknown = set(m) - known
        if unknown:
            raise ValueError(f"unknown grading keys {sorted(unknown)}; known: {sorted(known)}")
        base = cls()
        changes: dict[str, Any] = {}
        for k, v in m.items():
            current = getattr(base, k)
            if isinstance(current, Mapping):
                changes[k] = {**current, **{str(a): float(b) for a, b in dict(v).items()}}
            elif k == "bands":
                changes[k] = tuple(float(x) for x in v)
                if len(changes[k]) != 3 or not (100 >= changes[k][0] > changes[k][1]
                                                 > changes[k][2] >= 0):
                    raise ValueError("bands: three descending scores between 0 and 100")
            elif k == "fire_codes":
                changes[k] = frozenset(str(x) for x in v)
            else:
                changes[k] = float(v)
        return replace(base, **changes)

    def grade(self, score: float) -> str:
        for name, bound in zip(GRADES, self.bands, strict=False):
            if score >= bound:
                return name
        return GRADES[-1]

    def alarm_class(self, code: str) -> str:
        return "fire" if code in self.fire_codes or "fire" in code else "electrical"


@dataclass(frozen=True)
class Deduction:
    rule: str  # alarms | alarm_time | late_ack | open_unacked | offline | faults |
    # hazards | overdue | near_set_point
    points: float
    reason: str
    device: str = ""
    code: str = ""


@dataclass(frozen=True)
class Grade:
    subject: str  # a device id or a project code
    since: float
    until: float
    score: float
    grade: str
    deductions: tuple[Deduction, ...]
    devices: tuple[Grade, ...] = ()


@dataclass
class Episode:
    raised: Event
    end: float | None = None  # cleared at


def episodes(events: Iterable[Event], kind: EventKind) -> list[Episode]:
    """Raised-to-cleared episodes of ``kind`` by event id, in the order raised."""
    out: dict[str, Episode] = {}
    for e in events:
        if e.kind != kind:
            continue
        if e.state == EventState.RAISED:
            out.setdefault(e.id, Episode(e))
        elif e.state == EventState.CLEARED:
            ep = out.get(e.id)
            if ep is None and e.raised_ts is not None:  # raised before what we were given
                ep = out[e.id] = Episode(replace(e, state=EventState.RAISED, ts=e.raised_ts))
            if ep is not None:
                ep.end = e.ts
    return list(out.values())


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _overlap(a: float, b: float, since: float, until: float) -> float:
    return max(0.0, min(b, until) - max(a, since))


def hazard_deductions(hazards: Iterable[Any], until: float, scheme: GradingScheme,
                      device: str = "") -> list[Deduction]:
    """Rules 6 and 7 for ``hazards`` (anything with ``id, device, severity, category,
    created_ts, closed_ts, deadline``: :class:`hub.store.hazards.Hazard`) as they stood at
    ``until``."""
    s = scheme
    out: list[Deduction] = []
    for h in hazards:
        if h.created_ts >= until or (h.closed_ts is not None and h.closed_ts < until):
            continue
        dev = h.device or device
        out.append(Deduction("hazards", s.hazard_points.get(h.severity, 0.0),
                             f"隐患 #{h.id}（{h.severity}，{h.category}）未销号", dev,
                             f"hazard:{h.id}"))
        if h.deadline is not None and h.deadline < until:
            days = int((until - h.deadline) // 86400)
            out.append(Deduction("overdue", min(s.overdue_cap, s.overdue_points
                                                 + s.overdue_day_points * days),
                                 f"隐患 #{h.id} 整改逾期 {days} 天（期限 {_when(h.deadline)}）",
                                 dev, f"hazard:{h.id}"))
    return out


def near_set_point_deductions(device: str, hourly_max: Mapping[str, Sequence[float]],
                              set_points: Mapping[str, float],
                              scheme: GradingScheme) -> list[Deduction]:
    """Rule 8: ``hourly_max`` maps a quantity (temperature, residual_current) to the
    highest value of each hour of the period; ``set_points`` the device's alarm set
    points of the same quantities."""
    s = scheme
    out = []
    for quantity, maxima in sorted(hourly_max.items()):
        sp = set_points.get(quantity)
        if not sp or sp <= 0:
            continue
        bound = s.near_ratio * sp
        hours = sum(1 for m in maxima if m >= bound)
        if hours:
            out.append(Deduction(
                "near_set_point", min(s.near_cap, s.near_points * hours),
                f"{hours} h with {quantity} ≥ {s.near_ratio:.0%} of its set point {sp:g} "
                f"(≥ {bound:g})", device, quantity))
    return out


def grade_device(device: str, events: Sequence[Event], acks: Sequence[Acknowledgement],
                 since: float, until: float, scheme: GradingScheme | None = None,
                 extra: Iterable[Deduction] = ()) -> Grade:
    """The grade of ``device`` over ``[since, until)`` from its events (include those raised
    before ``since`` that were still raised in it) and acknowledgements; ``extra``:
    deductions from other inputs (:func:`hazard_deductions`,
    :func:`near_set_point_deductions`)."""
    s = scheme or GradingScheme()
    ded: list[Deduction] = list(extra)
    first_ack: dict[str, float] = {}
    for a in acks:
        if a.event_id not in first_ack or a.ts < first_ack[a.event_id]:
            first_ack[a.event_id] = a.ts
    per_code: dict[str, float] = {}
    time_points = 0.0
    hours_by_code: dict[str, float] = {}
    for ep in episodes(events, EventKind.ALARM):
        e = ep.raised
        cls = s.alarm_class(e.code)
        end = until if ep.end is None else ep.end
        hours = _overlap(e.ts, end, since, until) / 3600
        if hours:
            hours_by_code[e.code] = hours_by_code.get(e.code, 0.0) + hours
            time_points += hours * s.hour_weight.get(cls, 0.0)
        if not since <= e.ts < until:
            continue
        pts = s.alarm_weight.get(cls, 0.0) * s.level_factor.get(e.level.value, 1.0)
        per_code[e.code] = per_code.get(e.code, 0.0) + pts
        acked = first_ack.get(e.id)
        if acked is None or acked - e.ts > s.ack_within:
            if acked is not None or ep.end is not None:
                ded.append(Deduction("late_ack", s.late_ack_points,
                                     f"{e.code} at {_when(e.ts)} acknowledged "
                                     + ("never" if acked is None else
                                        f"after {(acked - e.ts) / 60:.0f} min"), device, e.code))
        if ep.end is None and acked is None and e.level.rank >= Level.ALARM.rank:
            ded.append(Deduction("open_unacked", s.open_unacked_points,
                                 f"{e.code} raised and unacknowledged at the end of the "
                                 "period", device, e.code))
    for code, pts in sorted(per_code.items()):
        n = sum(1 for ep in episodes(events, EventKind.ALARM)
                if ep.raised.code == code and since <= ep.raised.ts < until)
        ded.append(Deduction("alarms", min(pts, s.per_code_cap),
                             f"{n} × {code} ({s.alarm_class(code)})", device, code))
    if time_points:
        ded.append(Deduction("alarm_time", min(time_points, s.time_cap),
                             "hours in alarm: " + ", ".join(
                                 f"{c} {h:.1f} h" for c, h in sorted(hours_by_code.items())),
                             device))
    offline = 0.0
    faults = 0
    for ep in episodes(events, EventKind.FAULT):
        e = ep.raised
        if e.code == "offline":
            offline += _overlap(e.ts, until if ep.end is None else ep.end, since, until)
        elif since <= e.ts < until:
            faults += 1
    if offline and until > since:
        share = offline / (until - since)
        ded.append(Deduction("offline", s.offline_points * share,
                             f"offline {share:.1%} of the period", device, "offline"))
    if faults:
        ded.append(Deduction("faults", s.fault_points * faults, f"{faults} faults", device))
    score = round(max(0.0, 100.0 - sum(d.points for d in ded)), 1)
    return Grade(device, since, until, score, s.grade(score), tuple(ded))


def grade_project(project: str, devices: Sequence[Grade],
                  scheme: GradingScheme | None = None,
                  extra: Sequence[Deduction] = ()) -> Grade:
    """The project's grade from its devices' (same period): the mean score, at most
    ``project_above_worst`` above the worst, less ``extra`` (hazards of the whole project);
    its deductions are those and the devices'."""
    s = scheme or GradingScheme()
    own = sum(d.points for d in extra)
    if not devices:
        score = round(max(0.0, 100.0 - own), 1)
        return Grade(project, 0.0, 0.0, score, s.grade(score), tuple(extra))
    mean = sum(g.score for g in devices) / len(devices)
    worst = min(g.score for g in devices)
    score = round(max(0.0, min(mean, worst + s.project_above_worst) - own), 1)
    ded = tuple(extra) + tuple(d for g in sorted(devices, key=lambda g: g.score)
                               for d in g.deductions)
    return Grade(project, devices[0].since, devices[0].until, score, s.grade(score), ded,
                 tuple(devices))


def journal_grade(journal: Any, device: str, since: float, until: float,
                  scheme: GradingScheme | None = None, lookback: float = 30 * 86400,
                  extra: Iterable[Deduction] = ()) -> Grade:
    """:func:`grade_device` from a journal (events of the period, and of ``lookback``
    before it, for alarms raised earlier and still raised in it)."""
    events = [e for e in journal.events(device, since - lookback, limit=1_000_000)
              if e.ts < until]
    acks = [a for a in journal.acknowledgements(device) if a.ts < until]
    return grade_device(device, events, acks, since, until, scheme, extra)


def extra_deductions(devices: Sequence[str], since: float, until: float,
                     scheme: GradingScheme, hazards: Iterable[Any] = (),
                     rollups: Any = None,
                     set_points: Mapping[str, Mapping[str, float]] | None = None
                     ) -> tuple[dict[str, list[Deduction]], list[Deduction]]:
    """Rules 6 to 8 for ``devices``: (per device, of the whole project)."""
    per: dict[str, list[Deduction]] = {d: [] for d in devices}
    project: list[Deduction] = []
    for d in hazard_deductions(hazards, until, scheme):
        if d.device in per:
            per[d.device].append(d)
        elif not d.device:
            project.append(d)
    if rollups is not None and set_points:
        for dev in devices:
            points = set_points.get(dev)
            if not points:
                continue
            maxima = {q: [b.max for b in rollups.buckets(dev, q, None, 3600, since, until)]
                      for q in points}
            per[dev] += near_set_point_deductions(dev, maxima, points, scheme)
    return per, project
