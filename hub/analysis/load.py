"""Load rate: a circuit's current against its rated current, from hourly rollups.

Ratings are configured per device under the ``rollups`` sink's ``reports`` (next to the
other settings the analysis reads; README "Load rate")::

    reports:
      rated:
        box-1: 63                      # every current channel of box-1: 63 A
        box-2: {channels: {A: 100, B: 100, C: 100, L1: 32}}   # per circuit / phase
        box-3: {capacity_kva: 50, voltage: 400, phases: 3}     # I = S / (√3 U) = 72.2 A

A device's ``current`` series (channel ``A``/``B``/``C``, a circuit name, or ``""``) are
compared with the rating of their channel (``channels``), else the device's ``current``
or the current its capacity gives. Per device over a period:

* **peak rate**: the highest hourly maximum of any rated channel ÷ its rating;
* **mean rate**: per hour the most loaded channel's mean ÷ its rating, averaged over the
  hours with readings (the circuit is judged by its most loaded phase);
* **overload hours**: hours whose mean current on some rated channel exceeded its rating
  (sustained overload; a short spike shows in the peak rate instead);
* **heavy hours**: hours whose mean reached ``HEAVY`` (80 %) of the rating.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: share of the rating from which an hour counts as heavily loaded
HEAVY = 0.8
#: below this mean rate a rated circuit is lightly loaded (advice: oversized)
LIGHT = 0.2


def _amperes(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            math.isfinite(value) and value > 0):
        raise ValueError(f"{path}: a positive number of amperes, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class Rating:
    """A device's rated current (A): ``current`` for every channel not in ``channels``."""

    current: float | None = None
    channels: Mapping[str, float] = field(default_factory=dict)

    def of(self, channel: str) -> float | None:
        return self.channels.get(channel, self.current)


def rating_from(value: Any, path: str) -> Rating:
    """One device's rating from configuration; ValueError names ``path`` and the key."""
    if not isinstance(value, Mapping):
        return Rating(_amperes(value, path))
    unknown = set(value) - {"current", "channels", "capacity_kva", "voltage", "phases"}
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; known: current, channels, "
                         "capacity_kva, voltage, phases")
    current = None
    if "current" in value:
        current = _amperes(value["current"], f"{path}.current")
    if "capacity_kva" in value:
        if current is not None:
            raise ValueError(f"{path}: current or capacity_kva, not both")
        kva = value["capacity_kva"]
        if isinstance(kva, bool) or not isinstance(kva, int | float) or not kva > 0:
            raise ValueError(f"{path}.capacity_kva: a positive number of kVA, not {kva!r}")
        volts = value.get("voltage", 400)
        if isinstance(volts, bool) or not isinstance(volts, int | float) or not volts > 0:
            raise ValueError(f"{path}.voltage: the line voltage in V, not {volts!r}")
        phases = value.get("phases", 3)
        if phases not in (1, 3):
            raise ValueError(f"{path}.phases: 1 or 3, not {phases!r}")
        current = kva * 1000 / (volts * (math.sqrt(3) if phases == 3 else 1.0))
    elif "voltage" in value or "phases" in value:
        raise ValueError(f"{path}: voltage and phases go with capacity_kva")
    channels = value.get("channels") or {}
    if not isinstance(channels, Mapping):
        raise ValueError(f"{path}.channels: a mapping of channel to amperes")
    chans = {str(c): _amperes(a, f"{path}.channels.{c}") for c, a in channels.items()}
    if current is None and not chans:
        raise ValueError(f"{path}: give current, channels or capacity_kva")
    return Rating(current, chans)


def ratings_from(m: Any, path: str = "rated") -> dict[str, Rating]:
    """``{device: rating}`` from the ``rated`` mapping."""
    if not isinstance(m, Mapping):
        raise ValueError(f"{path}: a mapping of device id to its rated current")
    return {str(dev): rating_from(v, f"{path}.{dev}") for dev, v in m.items()}


@dataclass(frozen=True)
class LoadRate:
    device: str
    rated: str  # the ratings compared, for people: "63 A" or "A 100 A, L1 32 A"
    hours: int  # hours with current readings on rated channels
    peak_rate: float | None  # highest hourly maximum / rating (None: no readings)
    mean_rate: float | None
    overload_hours: int
    heavy_hours: int
    peak_amperes: float | None = None
    peak_channel: str = ""


def rating_text(rating: Rating) -> str:
    """The whole rating for people: "63 A", "A 100 A, L1 32 A" or "63 A, L1 32 A" (the
    device's current first, for the channels not named)."""
    return _describe(rating, [*rating.channels, None])


def _describe(rating: Rating, seen: Iterable[str | None]) -> str:
    parts = []
    if rating.current is not None and any(c not in rating.channels for c in seen):
        parts.append(f"{rating.current:.4g} A")
    parts += [f"{c or '—'} {a:.4g} A" for c, a in sorted(rating.channels.items())
              if c in seen]
    return ", ".join(parts) or (f"{rating.current:.4g} A" if rating.current else "")


def load_rate(device: str, buckets: Sequence[Any], rating: Rating) -> LoadRate:
    """The load rate of ``device`` from its hourly ``current`` buckets (anything with
    ``channel, start, max, mean``)."""
    per_hour: dict[float, float] = {}
    overload: set[float] = set()
    heavy: set[float] = set()
    peak: tuple[float, float, str] | None = None
    seen: set[str] = set()
    for b in buckets:
        rated = rating.of(b.channel)
        if not rated:
            continue
        seen.add(b.channel)
        mean = b.mean / rated
        per_hour[b.start] = max(per_hour.get(b.start, 0.0), mean)
        if mean > 1.0:
            overload.add(b.start)
        if mean >= HEAVY:
            heavy.add(b.start)
        top = b.max / rated
        if peak is None or top > peak[0]:
            peak = (top, b.max, b.channel)
    return LoadRate(device, _describe(rating, seen), len(per_hour),
                    None if peak is None else round(peak[0], 4),
                    round(sum(per_hour.values()) / len(per_hour), 4) if per_hour else None,
                    len(overload), len(heavy),
                    None if peak is None else round(peak[1], 3),
                    "" if peak is None else peak[2])


def load_rates(store: Any, ratings: Mapping[str, Rating], devices: Iterable[str],
               since: float, until: float) -> list[LoadRate]:
    """Load rates of the rated ``devices`` over ``[since, until)`` from ``store``'s hourly
    buckets (:class:`hub.rollups.RollupStore`), most loaded first."""
    out = []
    for dev in devices:
        rating = ratings.get(dev)
        if rating is None:
            continue
        out.append(load_rate(dev, store.buckets(dev, "current", None, 3600, since, until),
                             rating))
    return sorted(out, key=lambda r: (-(r.peak_rate or 0.0), r.device))


def load_advice(rates: Iterable[LoadRate], names: Mapping[str, str] | None = None
                ) -> list[str]:
    """Advice from load rates: overload hours first, then lightly loaded circuits."""
    out = []
    names = names or {}
    rates = list(rates)
    for r in rates:
        if r.overload_hours:
            out.append(f"{names.get(r.device, r.device)} 过载 {r.overload_hours} 小时（小时平均"
                       f"电流超过额定 {r.rated}，峰值负载率 {r.peak_rate:.0%}）：请分流负荷或"
                       "核查线缆与开关的载流量。")
        elif r.heavy_hours:
            out.append(f"{names.get(r.device, r.device)} 重载 {r.heavy_hours} 小时（平均负载率"
                       f"≥ {HEAVY:.0%}）：余量不足，增加负荷前请评估。")
    light = [r for r in rates if r.mean_rate is not None and r.mean_rate < LIGHT
             and not r.overload_hours and (r.peak_rate or 0) < HEAVY]
    if light:
        shown = "、".join(names.get(r.device, r.device) for r in light[:5])
        out.append(f"{len(light)} 个回路平均负载率低于 {LIGHT:.0%}（{shown}"
                   f"{' 等' if len(light) > 5 else ''}）：容量偏大，新增负荷可优先接入。")
    return out
