"""Energy analysis from rollups: kWh per hour/day/month/year, the time-of-use split
(尖峰 / 峰 / 平 / 谷) with tariffs and cost, load curves, and simple advice.

Everything here reads :class:`hub.rollups.RollupStore` buckets, never raw readings: a year
of a project is 365 daily buckets per device, summed in SQL (:meth:`RollupStore.project_energy`).
Year-on-year and period-on-period comparisons: :func:`compare`.

**Time-of-use split.** Periods are local clock ranges (``"23:00"``–``"07:00"`` wraps
midnight) named 尖峰, 峰, 平 or 谷; the hours no period names are 平. Each hourly bucket's
energy is shared among the periods it overlaps in proportion to the minutes (a period
boundary at 11:30 gives half of the 11:00 hour to each side): hourly buckets cannot say
more, and consumption within an hour is taken as even.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hub.rollups.store import DAY, HOUR

TOU_NAMES = ("尖峰", "峰", "平", "谷")
PERIODS = ("hour", "day", "month", "year")


def _minutes(text: str) -> int:
    h, m = text.split(":")
    value = int(h) * 60 + int(m)
    if not 0 <= value <= 24 * 60 or not 0 <= int(m) < 60:
        raise ValueError(f"{text!r} is not a time of day HH:MM")
    return value


@dataclass(frozen=True)
class TouSchedule:
    """Time-of-use periods and tariffs (yuan per kWh). The default is an example of a
    common industrial schedule; set the local one in the configuration."""

    periods: tuple[tuple[int, int, str], ...] = (
        (10 * 60, 15 * 60, "峰"), (18 * 60, 21 * 60, "峰"),
        (23 * 60, 7 * 60, "谷"),
    )
    tariffs: Mapping[str, float] = field(
        default_factory=lambda: {"尖峰": 1.25, "峰": 1.05, "平": 0.65, "谷": 0.30})

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any] | None) -> TouSchedule:
        """``{periods: [{start: "10:00", end: "15:00", name: 峰}, ...], tariffs: {峰: 1.0}}``;
        ValueError when a name or a time is wrong."""
        if not m:
            return cls()
        unknown = set(m) - {"periods", "tariffs"}
        if unknown:
            raise ValueError(f"unknown time-of-use keys {sorted(unknown)}")
        base = cls()
        periods = base.periods
        if "periods" in m:
            periods = tuple((_minutes(p["start"]), _minutes(p["end"]), str(p["name"]))
                            for p in m["periods"])
        tariffs = {**base.tariffs, **{str(k): float(v) for k, v in
                                      dict(m.get("tariffs") or {}).items()}}
        for _, _, name in periods:
            if name not in TOU_NAMES:
                raise ValueError(f"period name {name!r}: one of {', '.join(TOU_NAMES)}")
        for name in tariffs:
            if name not in TOU_NAMES:
                raise ValueError(f"tariff {name!r}: one of {', '.join(TOU_NAMES)}")
        return cls(periods, tariffs)

    def shares(self, minute: int, length: int = 60) -> dict[str, float]:
        """How the local minutes ``[minute, minute + length)`` of a day divide among the
        periods (fractions summing to 1)."""
        out: dict[str, float] = {}
        named = 0.0
        lo, hi = minute, minute + length
        for start, end, name in self.periods:
            spans = [(start, end)] if start < end else [(start, 24 * 60), (0, end)]
            for a, b in spans:
                o = max(0, min(hi, b) - max(lo, a))
                if o:
                    out[name] = out.get(name, 0.0) + o / length
                    named += o / length
        if named < 1.0:
            out["平"] = out.get("平", 0.0) + 1.0 - named
        return out


def split_tou(hourly: Mapping[float, float], tz_offset: int,
              schedule: TouSchedule | None = None) -> dict[str, float]:
    """kWh per period name from hourly energy buckets (start -> kWh)."""
    s = schedule or TouSchedule()
    out = {name: 0.0 for name in TOU_NAMES}
    for start, kwh in hourly.items():
        minute = int((start + tz_offset) % DAY) // 60
        for name, share in s.shares(minute).items():
            out[name] += kwh * share
    return out


def cost(tou: Mapping[str, float], schedule: TouSchedule | None = None) -> float:
    s = schedule or TouSchedule()
    return sum(kwh * s.tariffs.get(name, 0.0) for name, kwh in tou.items())


def period_key(start: float, tz_offset: int, period: str) -> str:
    """The local label of the period holding ``start``: 2026-01-05T13, 2026-01-05, 2026-01,
    2026."""
    t = datetime.fromtimestamp(start + tz_offset, UTC)
    return {"hour": t.strftime("%Y-%m-%dT%H"), "day": t.strftime("%Y-%m-%d"),
            "month": t.strftime("%Y-%m"), "year": t.strftime("%Y")}[period]


def by_period(buckets: Mapping[float, float], tz_offset: int, period: str) -> dict[str, float]:
    """Bucket values (start -> kWh) summed per local hour/day/month/year label."""
    if period not in PERIODS:
        raise ValueError(f"period: one of {', '.join(PERIODS)}")
    out: dict[str, float] = {}
    for start, v in sorted(buckets.items()):
        k = period_key(start, tz_offset, period)
        out[k] = out.get(k, 0.0) + v
    return out


def width_for(period: str) -> int:
    return HOUR if period == "hour" else DAY


def project_energy(store: Any, devices: Iterable[str], width: int, since: float,
                   until: float) -> dict[float, float]:
    """Energy of several devices summed per bucket start."""
    return store.project_energy(list(devices), width, since, until)


def load_curve(store: Any, devices: Sequence[str], width: int, since: float,
               until: float) -> dict[float, float]:
    """Mean active power (W, summed over devices: the project's load) per bucket, from
    the whole-device ``active_power`` series (channel ``""``)."""
    return store.project_mean(devices, "active_power", width, since, until)


def advice(hourly: Mapping[float, float], tz_offset: int, pf_mean: float | None = None,
           schedule: TouSchedule | None = None) -> list[str]:
    """Plain advice, each with the number behind it."""
    out: list[str] = []
    if hourly:
        night = [v for s, v in hourly.items() if 1 <= ((s + tz_offset) % DAY) // HOUR < 5]
        day = [v for s, v in hourly.items() if 9 <= ((s + tz_offset) % DAY) // HOUR < 17]
        if night and day:
            n, d = sum(night) / len(night), sum(day) / len(day)
            if d > 0 and n / d > 0.5:
                out.append(f"夜间基础负荷偏高：01:00–05:00 平均 {n:.2f} kWh/h，为白天的 "
                           f"{n / d:.0%}；请检查夜间未关闭的设备。")
        tou = split_tou(hourly, tz_offset, schedule)
        total = sum(tou.values())
        peak = tou["峰"] + tou["尖峰"]
        if total > 0 and peak / total > 0.5:
            out.append(f"峰时段用电占 {peak / total:.0%}：可将可调负荷移至谷时段以降低电费。")
    if pf_mean is not None and pf_mean < 0.9:
        out.append(f"平均功率因数 {pf_mean:.2f} 低于 0.90：建议无功补偿。")
    return out


@dataclass(frozen=True)
class Comparison:
    """Energy of a span against the same span a year before (year-on-year, 同比) and the
    period before (period-on-period, 环比: the previous calendar month for a month, else
    the span of equal length just before). ``None``: the rollups hold nothing then;
    changes are relative (0.1 = 10 % more)."""

    current: float
    year_ago: float | None
    period_before: float | None

    @staticmethod
    def _change(now: float, then: float | None) -> float | None:
        return None if then is None or then == 0 else (now - then) / then

    @property
    def yoy(self) -> float | None:
        return self._change(self.current, self.year_ago)

    @property
    def mom(self) -> float | None:
        return self._change(self.current, self.period_before)


def _local(ts: float, tz_offset: int) -> datetime:
    return datetime.fromtimestamp(ts + tz_offset, UTC)


def _epoch(t: datetime, tz_offset: int) -> float:
    return t.timestamp() - tz_offset


def year_before(ts: float, tz_offset: int) -> float:
    """The same local date and time a year before (29 February: the 28th)."""
    t = _local(ts, tz_offset)
    try:
        return _epoch(t.replace(year=t.year - 1), tz_offset)
    except ValueError:
        return _epoch(t.replace(year=t.year - 1, day=28), tz_offset)


def period_before(since: float, until: float, tz_offset: int) -> tuple[float, float]:
    """The period before ``[since, until)``: the previous calendar month when the span is
    one local month, else the span of equal length ending at ``since``."""
    a, b = _local(since, tz_offset), _local(until, tz_offset)
    whole_month = (a.day == 1 and b.day == 1 and a.time() == b.time() == datetime.min.time()
                   and (b.year * 12 + b.month) - (a.year * 12 + a.month) == 1)
    if whole_month:
        prev = a.replace(year=a.year - (a.month == 1), month=(a.month - 2) % 12 + 1)
        return _epoch(prev, tz_offset), since
    return since - (until - since), since


def compare(store: Any, devices: Sequence[str], since: float, until: float,
            tz_offset: int) -> Comparison:
    """:class:`Comparison` of ``devices``' energy over ``[since, until)`` from daily
    buckets (hourly when the span is not whole local days)."""
    whole_days = (since + tz_offset) % DAY == 0 and (until + tz_offset) % DAY == 0
    width = DAY if whole_days else HOUR

    def total(a: float, b: float) -> float | None:
        e = store.project_energy(list(devices), width, a, b)
        return sum(e.values()) if e else None
    p0, p1 = period_before(since, until, tz_offset)
    return Comparison(total(since, until) or 0.0,
                      total(year_before(since, tz_offset), year_before(until, tz_offset)),
                      total(p0, p1))
