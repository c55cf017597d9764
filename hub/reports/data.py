"""What a project report says, computed once and rendered as HTML, PDF and Excel
(:mod:`.render`): the safety grade with its reasons, alarms and faults (counts, types, top
devices, time to acknowledge and to clear), energy (per day, time-of-use split, cost,
advice), load, and each device's online rate. Events come from the journal (a month of
events is small); readings only from the rollups."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from hub.analysis.energy import advice, by_period, cost, load_curve, project_energy, split_tou
from hub.analysis.grading import Grade, episodes, grade_device, grade_project
from hub.analysis.inputs import GradingSources, grading_inputs
from hub.analysis.load import LoadRate, load_advice, load_rates
from hub.model import ALARM_RULES, FAULT_CODES, EventKind
from hub.rollups.store import DAY, HOUR

if TYPE_CHECKING:
    from hub.analysis.power_quality import IndexResult
    from hub.analysis.settings import AnalysisSettings

#: Chinese names of alarm and fault codes, for people
CODE_NAMES: dict[str, str] = {
    **{r.name: r.label.removesuffix("报警") for r in ALARM_RULES.values()},
    **FAULT_CODES, "fault_arc": "故障电弧"}


def code_name(code: str) -> str:
    return CODE_NAMES.get(code, code)


def month_range(month: str, tz_offset: int) -> tuple[float, float]:
    """``YYYY-MM`` -> (start, end) of that local month as UTC epoch seconds."""
    try:
        y, m = (int(x) for x in month.split("-"))
        start = datetime(y, m, 1, tzinfo=UTC)
    except ValueError:
        raise ValueError(f"{month!r} is not a month YYYY-MM") from None
    end = datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=UTC)
    return start.timestamp() - tz_offset, end.timestamp() - tz_offset


def current_month(now: float, tz_offset: int) -> str:
    return datetime.fromtimestamp(now + tz_offset, UTC).strftime("%Y-%m")


#: report kinds and their names in the documents
KINDS = {"daily": "日报", "weekly": "周报", "monthly": "月度报告"}
#: what a period label of each kind looks like
LABELS = {"daily": r"^\d{4}-\d{2}-\d{2}$", "weekly": r"^\d{4}-W\d{2}$",
          "monthly": r"^\d{4}-\d{2}$"}


def period_range(kind: str, label: str, tz_offset: int) -> tuple[float, float]:
    """The local period ``label`` of ``kind`` as (start, end) UTC epoch seconds: daily
    ``YYYY-MM-DD``, weekly ``YYYY-Www`` (ISO 8601 week, Monday to Monday), monthly
    ``YYYY-MM``. ValueError when the label is not one."""
    if kind == "monthly":
        return month_range(label, tz_offset)
    try:
        if kind == "daily":
            start = datetime.strptime(label, "%Y-%m-%d").replace(tzinfo=UTC)
            days = 1
        elif kind == "weekly":
            y, w = label.split("-W")
            start = datetime.fromisocalendar(int(y), int(w), 1).replace(tzinfo=UTC)
            days = 7
        else:
            raise ValueError(f"kind: one of {', '.join(KINDS)}")
    except ValueError as e:
        if str(e).startswith("kind"):
            raise
        raise ValueError(f"{label!r} is not a {kind} period ("
                         f"{'YYYY-MM-DD' if kind == 'daily' else 'YYYY-Www'})") from None
    t = start.timestamp() - tz_offset
    return t, t + days * DAY


def period_of(kind: str, ts: float, tz_offset: int) -> str:
    """The label of the local period of ``kind`` holding ``ts``."""
    t = datetime.fromtimestamp(ts + tz_offset, UTC)
    if kind == "daily":
        return t.strftime("%Y-%m-%d")
    if kind == "weekly":
        y, w, _ = t.isocalendar()
        return f"{y}-W{w:02d}"
    return t.strftime("%Y-%m")


def last_period(kind: str, now: float, tz_offset: int) -> str:
    """The label of the newest whole period of ``kind`` before ``now``."""
    start, _ = period_range(kind, period_of(kind, now, tz_offset), tz_offset)
    return period_of(kind, start - 1, tz_offset)


@dataclass
class DeviceRow:
    device: str
    name: str
    alarms: int
    faults: int
    online_rate: float  # share of the period not offline
    kwh: float
    score: float
    grade: str


@dataclass
class ProjectReport:
    project: str
    title: str
    period: str  # the month, YYYY-MM
    since: float
    until: float
    tz_offset: int
    grade: Grade
    alarms_by_type: dict[str, int]
    alarms_by_level: dict[str, int]
    faults_by_type: dict[str, int]
    alarms_per_day: dict[str, int]
    faults_per_day: dict[str, int]
    acknowledged: int
    unacknowledged: int
    mean_ack_minutes: float | None
    mean_clear_minutes: float | None
    energy_per_day: dict[str, float]
    energy_total: float
    tou: dict[str, float]
    cost: float
    load_per_day: dict[str, float]  # mean active power, W
    online_rate: float
    devices: list[DeviceRow] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)
    kind: str = "monthly"  # daily | weekly | monthly
    #: energy of the same span a year before and a period before (None: no rollups then)
    energy_year_ago: float | None = None
    energy_period_before: float | None = None
    #: load rates of the devices with a rated current (hub.analysis.load), most loaded first
    load: list[LoadRate] = field(default_factory=list)
    #: power quality of the configured buses: device -> indices (hub.analysis.power_quality)
    power_quality: dict[str, list[IndexResult]] = field(default_factory=dict)

    @property
    def kind_name(self) -> str:
        return KINDS.get(self.kind, self.kind)

    @property
    def alarms(self) -> int:
        return sum(self.alarms_by_type.values())

    @property
    def faults(self) -> int:
        return sum(self.faults_by_type.values())


def _day(ts: float, tz: int) -> str:
    return datetime.fromtimestamp(ts + tz, UTC).strftime("%Y-%m-%d")


def build_report(journal: Any, store: Any, project: str, devices: dict[str, str],
                 since: float, until: float, settings: AnalysisSettings, period: str,
                 title: str = "", kind: str = "monthly",
                 sources: GradingSources | None = None) -> ProjectReport:
    """The report of ``project`` (``devices``: id -> name) over ``[since, until)``;
    ``store`` is a :class:`hub.rollups.RollupStore` or None (no energy then). Events are
    read once for all devices (a query per device is seconds for a thousand). ``sources``
    feed grading rules 6-8 (:func:`hub.analysis.inputs.grading_inputs`, as the API's
    grades); the load rate and power quality come from ``settings.reports``."""
    tz = store.tz_offset if store is not None else settings.tz_offset
    scheme = settings.grading
    by_type: Counter[str] = Counter()
    by_level: Counter[str] = Counter()
    faults: Counter[str] = Counter()
    per_day: Counter[str] = Counter()
    faults_day: Counter[str] = Counter()
    ack_minutes: list[float] = []
    clear_minutes: list[float] = []
    unacked = acked = 0
    grades: list[Grade] = []
    rows: list[DeviceRow] = []
    offline_total = 0.0
    days = [_day(t, tz) for t in _range_days(since, until)]
    events_of: dict[str, list] = {}
    for e in journal.events(None, since - 30 * DAY, limit=10_000_000):
        if e.ts < until and e.device in devices:
            events_of.setdefault(e.device, []).append(e)
    acks_of: dict[str, list] = {}
    for a in journal.acknowledgements(None):
        if a.ts < until:
            acks_of.setdefault(a.device, []).append(a)
    kwh_of = (store.device_energy(list(devices), DAY, since, until)
              if store is not None else {})
    extra, project_extra = grading_inputs(sources, list(devices), since, until, scheme,
                                          store, project)
    for dev, name in sorted(devices.items()):
        events = events_of.get(dev, [])
        acks = acks_of.get(dev, [])
        first_ack: dict[str, float] = {}
        for a in acks:
            first_ack.setdefault(a.event_id, a.ts)
        g = grade_device(dev, events, acks, since, until, scheme, extra[dev])
        grades.append(g)
        n_alarms = n_faults = 0
        offline = 0.0
        for ep in episodes(events, EventKind.ALARM):
            e = ep.raised
            if not since <= e.ts < until:
                continue
            n_alarms += 1
            by_type[e.code] += 1
            by_level[e.level.value] += 1
            per_day[_day(e.ts, tz)] += 1
            if e.id in first_ack:
                acked += 1
                ack_minutes.append((first_ack[e.id] - e.ts) / 60)
            else:
                unacked += 1
            if ep.end is not None:
                clear_minutes.append((ep.end - e.ts) / 60)
        for ep in episodes(events, EventKind.FAULT):
            e = ep.raised
            end = until if ep.end is None else ep.end
            if e.code == "offline":
                offline += max(0.0, min(end, until) - max(e.ts, since))
            if since <= e.ts < until:
                n_faults += 1
                faults[e.code] += 1
                faults_day[_day(e.ts, tz)] += 1
        offline_total += offline
        kwh = kwh_of.get(dev, 0.0)
        rows.append(DeviceRow(dev, name, n_alarms, n_faults,
                              1.0 - offline / (until - since), kwh, g.score, g.grade))
    project_grade = grade_project(project, grades, scheme, project_extra)
    ids = sorted(devices)
    if store is not None:
        daily = project_energy(store, ids, DAY, since, until)
        hourly = project_energy(store, ids, HOUR, since, until)
        load = load_curve(store, ids, DAY, since, until)
    else:
        daily, hourly, load = {}, {}, {}
    tou = split_tou(hourly, tz, settings.tou)
    energy_day = by_period(daily, tz, "day")
    year_ago = before = None
    loads: list[LoadRate] = []
    if store is not None:
        from hub.analysis.energy import compare

        c = compare(store, ids, since, until, tz)
        year_ago, before = c.year_ago, c.period_before
        loads = load_rates(store, settings.reports.rated, ids, since, until)
    pq: dict[str, list[IndexResult]] = {}
    if settings.reports.power_quality:
        from hub.analysis.power_quality import assess_buses

        pq = assess_buses(journal, settings.reports.power_quality, ids, since, until)
    return ProjectReport(
        project=project, title=title or project, period=period, since=since, until=until,
        tz_offset=tz, grade=project_grade,
        alarms_by_type={code_name(k): v for k, v in by_type.most_common()},
        alarms_by_level=dict(by_level),
        faults_by_type={code_name(k): v for k, v in faults.most_common()},
        alarms_per_day={d: per_day.get(d, 0) for d in days},
        faults_per_day={d: faults_day.get(d, 0) for d in days},
        acknowledged=acked, unacknowledged=unacked,
        mean_ack_minutes=sum(ack_minutes) / len(ack_minutes) if ack_minutes else None,
        mean_clear_minutes=sum(clear_minutes) / len(clear_minutes) if clear_minutes else None,
        energy_per_day={d: round(energy_day.get(d, 0.0), 3) for d in days},
        energy_total=round(sum(daily.values()), 3),
        tou={k: round(v, 3) for k, v in tou.items()}, cost=round(cost(tou, settings.tou), 2),
        load_per_day={_day(s, tz): round(w, 1) for s, w in load.items()},
        online_rate=1.0 - offline_total / ((until - since) * len(devices)) if devices else 1.0,
        devices=sorted(rows, key=lambda r: (r.score, r.device)),
        advice=advice(hourly, tz, None, settings.tou) + load_advice(loads, devices),
        kind=kind, energy_year_ago=year_ago, energy_period_before=before, load=loads,
        power_quality=pq)


def _range_days(since: float, until: float) -> list[float]:
    out = []
    t = since
    while t < until:
        out.append(t)
        t += DAY
    return out
