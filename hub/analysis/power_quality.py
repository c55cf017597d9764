"""Power quality of one device over a period (≥ 1 week) against the national limits:

========================  ============================================================
voltage deviation         GB/T 12325-2008: 220 V single-phase +7 % / −10 %; three-phase
                          ≤ 20 kV (380 V included) ±7 %
three-phase unbalance     GB/T 15543-2008: 95 % probability value ≤ 2 %, maximum ≤ 4 %
voltage THD               GB/T 14549-93: 0.38 kV 5.0 %, 6/10 kV 4.0 %, 35/66 kV 3.0 %,
                          110 kV 2.0 %
frequency deviation       GB/T 15945-2008: ±0.2 Hz
harmonic currents         GB/T 14549-93 table 2 (orders 2-25, at the point of common
                          coupling), scaled per annex B (see below)
========================  ============================================================

**Harmonic-current limits.** Table 2 gives the current (A) of each order 2-25 that all
users together may inject at the point of common coupling, for a *reference* short-circuit
capacity per voltage (0.38 kV: 10 MVA; 6 and 10 kV: 100 MVA; 35 kV: 250 MVA; 66 kV: 500 MVA;
110 kV: 750 MVA). Annex B scales it:

* (B1) to the actual minimum short-circuit capacity ``S_k1`` at the point:
  ``I_h = S_k1 / S_k2 × I_hp`` (``S_k2`` the reference capacity, ``I_hp`` the table value);
* (B2) to one user's share, with the user's agreed capacity ``S_i`` of the supply
  equipment's capacity ``S_t``: ``I_hi = I_h × (S_i / S_t)^(1/α)``, α = 1.1 (order 3),
  1.2 (5), 1.4 (7), 1.8 (11), 1.9 (13), 2 (every other order).

A device reports harmonic current content (``current_harmonic_<n>``, % of the
fundamental); the amperes compared are that share of its ``current`` reading of the same
timestamp and channel.

Per index: the 95 % probability value (the largest 5 % of the samples left out, as the
standards define it), the maximum, the share of samples above the limit (time above limit,
samples being evenly spaced) and pass/fail (the 95 % value within the limit, and for
unbalance the maximum within the short-time limit too).

**Unbalance from three magnitudes**, when the device reports no ``voltage_unbalance``: GB/T
15543-2008 annex A (formula A.3) gives the negative-sequence unbalance of a three-wire
system from the three line voltages alone::

    L = (a⁴ + b⁴ + c⁴) / (a² + b² + c²)²
    ε = sqrt((1 − sqrt(3 − 6L)) / (1 + sqrt(3 − 6L))) × 100 %

It is exact for any three phasors that sum to zero (line voltages always do; phase voltages
when there is no zero-sequence component); from phase voltages of a four-wire system with a
zero-sequence part it is an estimate. Samples are the three phase readings of one timestamp.

Read from raw readings (the journal keeps weeks): the 95 % value needs the samples, which
hourly rollups do not keep.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

#: GB/T 14549-93 voltage THD limits (%) by nominal voltage (kV)
THD_LIMITS = {0.38: 5.0, 6: 4.0, 10: 4.0, 35: 3.0, 66: 3.0, 110: 2.0}
UNBALANCE_NORMAL, UNBALANCE_SHORT = 2.0, 4.0

#: GB/T 14549-93 table 2: nominal kV -> (reference short-circuit MVA, A for orders 2..25);
#: compared row by row with two programs published on GitHub (README "Power quality": no
#: copy of the standard itself was found), all values equal
HARMONIC_CURRENT_LIMITS: dict[float, tuple[float, tuple[float, ...]]] = {
    0.38: (10.0, (78, 62, 39, 62, 26, 44, 19, 21, 16, 28, 13, 24, 11, 12, 9.7, 18, 8.6, 16,
                  7.8, 8.9, 7.1, 14, 6.5, 12)),
    6: (100.0, (43, 34, 21, 34, 14, 24, 11, 11, 8.5, 16, 7.1, 13, 6.1, 6.8, 5.3, 10, 4.7, 9.0,
                4.3, 4.9, 3.9, 7.4, 3.6, 6.8)),
    10: (100.0, (26, 20, 13, 20, 8.5, 15, 6.4, 6.8, 5.1, 9.3, 4.3, 7.9, 3.7, 4.1, 3.2, 6.0, 2.8,
                 5.4, 2.6, 2.9, 2.3, 4.5, 2.1, 4.1)),
    35: (250.0, (15, 12, 7.7, 12, 5.1, 8.8, 3.8, 4.1, 3.1, 5.6, 2.6, 4.7, 2.2, 2.5, 1.9, 3.6,
                 1.7, 3.2, 1.5, 1.8, 1.4, 2.7, 1.3, 2.5)),
    66: (500.0, (16, 13, 8.1, 13, 5.4, 9.3, 4.1, 4.3, 3.3, 5.9, 2.7, 5.0, 2.3, 2.6, 2.0, 3.8,
                 1.8, 3.4, 1.6, 1.9, 1.5, 2.8, 1.4, 2.6)),
    110: (750.0, (12, 9.6, 6.0, 9.6, 4.0, 6.8, 3.0, 3.2, 2.4, 4.3, 2.0, 3.7, 1.7, 1.9, 1.5,
                  2.8, 1.3, 2.5, 1.2, 1.4, 1.1, 2.1, 1.0, 1.9)),
}
#: GB/T 14549-93 annex C: the exponent α of the share formula (B2); 2 for other orders
HARMONIC_ALPHA = {3: 1.1, 5: 1.2, 7: 1.4, 11: 1.8, 13: 1.9}


def harmonic_current_limit(order: int, nominal_kv: float = 0.38,
                           short_circuit_mva: float | None = None,
                           user_mva: float | None = None,
                           supply_mva: float | None = None) -> float:
    """Allowed injected harmonic current (A) of ``order`` (2-25): table 2's value, scaled
    to the actual minimum short-circuit capacity (B1) and to one user's share of the
    supply capacity (B2) when given."""
    if nominal_kv not in HARMONIC_CURRENT_LIMITS:
        raise ValueError(f"no harmonic current limits for {nominal_kv} kV; known: "
                         f"{sorted(HARMONIC_CURRENT_LIMITS)}")
    if not 2 <= order <= 25:
        raise ValueError("GB/T 14549 limits harmonic orders 2 to 25")
    reference, table = HARMONIC_CURRENT_LIMITS[nominal_kv]
    limit = float(table[order - 2])
    if short_circuit_mva is not None:
        limit *= short_circuit_mva / reference
    if user_mva is not None and supply_mva:
        limit *= (user_mva / supply_mva) ** (1 / HARMONIC_ALPHA.get(order, 2.0))
    return limit
FREQUENCY_LIMIT = 0.2


def unbalance_from_magnitudes(a: float, b: float, c: float) -> float:
    """Negative-sequence voltage unbalance (%) from three magnitudes (GB/T 15543 A.3)."""
    s2 = a * a + b * b + c * c
    if s2 <= 0:
        return 0.0
    big_l = (a ** 4 + b ** 4 + c ** 4) / (s2 * s2)
    root = math.sqrt(max(0.0, 3 - 6 * big_l))
    return math.sqrt(max(0.0, (1 - root) / (1 + root))) * 100


def p95(values: Sequence[float]) -> float:
    """The 95 % probability value: sorted ascending, the largest 5 % left out."""
    if not values:
        raise ValueError("no samples")
    s = sorted(values)
    return s[max(0, math.ceil(len(s) * 0.95) - 1)]


@dataclass(frozen=True)
class IndexResult:
    index: str  # voltage_deviation | voltage_unbalance | voltage_thd | frequency_deviation
    samples: int
    p95: float | None
    maximum: float | None
    limit: str
    above_share: float  # share of samples beyond the limit
    passed: bool | None  # None: no samples
    low: float | None = None  # voltage deviation: the 5 % value (the lower side)


def _assess(index: str, values: list[float], limit_text: str, beyond: Any,
            passes: Any) -> IndexResult:
    if not values:
        return IndexResult(index, 0, None, None, limit_text, 0.0, None)
    high = p95(values)
    return IndexResult(index, len(values), round(high, 4), round(max(values), 4), limit_text,
                       sum(1 for v in values if beyond(v)) / len(values), passes(values, high))


def voltage_deviation(volts: Iterable[float], nominal: float, three_phase: bool
                      ) -> IndexResult:
    """Deviation in % of ``nominal``: ``p95`` is the 95 % value of the deviations (upper
    side), ``low`` the 5 % value (lower side, the 95 % value of the drops); both must be
    within the band."""
    dev = [(v - nominal) / nominal * 100 for v in volts]
    lo, hi = (-7.0, 7.0) if three_phase else (-10.0, 7.0)
    text = f"{lo:+g} % … {hi:+g} % (GB/T 12325)"
    if not dev:
        return IndexResult("voltage_deviation", 0, None, None, text, 0.0, None)
    up, down = p95(dev), -p95([-d for d in dev])
    return IndexResult("voltage_deviation", len(dev), round(up, 4),
                       round(max(dev, key=abs), 4), text,
                       sum(1 for d in dev if d < lo or d > hi) / len(dev),
                       up <= hi and down >= lo, round(down, 4))


def unbalance(values: list[float]) -> IndexResult:
    return _assess("voltage_unbalance", values,
                   f"95 % ≤ {UNBALANCE_NORMAL:g} %, max ≤ {UNBALANCE_SHORT:g} % (GB/T 15543)",
                   lambda v: v > UNBALANCE_NORMAL,
                   lambda vs, h: h <= UNBALANCE_NORMAL and max(vs) <= UNBALANCE_SHORT)


def thd(values: list[float], nominal_kv: float = 0.38) -> IndexResult:
    limit = THD_LIMITS.get(nominal_kv)
    if limit is None:
        raise ValueError(f"no THD limit for {nominal_kv} kV; known: {sorted(THD_LIMITS)}")
    return _assess("voltage_thd", values, f"≤ {limit:g} % (GB/T 14549, {nominal_kv:g} kV)",
                   lambda v: v > limit, lambda vs, h: h <= limit)


def frequency_deviation(hz: Iterable[float], nominal: float = 50.0) -> IndexResult:
    dev = [abs(f - nominal) for f in hz]
    return _assess("frequency_deviation", dev, f"±{FREQUENCY_LIMIT:g} Hz (GB/T 15945)",
                   lambda d: d > FREQUENCY_LIMIT, lambda vs, h: h <= FREQUENCY_LIMIT)


def harmonic_current(order: int, amperes: list[float], limit: float) -> IndexResult:
    return _assess(f"current_harmonic_{order}", amperes,
                   f"≤ {limit:.3g} A (GB/T 14549 table 2, annex B)",
                   lambda v: v > limit, lambda vs, h: h <= limit)


def harmonic_amperes(content: Iterable[tuple[float, str, float]],
                     current: Iterable[tuple[float, str, float]]) -> list[float]:
    """Amperes of one harmonic order from its content (% of the fundamental) and the
    current readings of the same (timestamp, channel)."""
    amps = {(ts, ch): v for ts, ch, v in current}
    return [pct / 100 * amps[(ts, ch)] for ts, ch, pct in content if (ts, ch) in amps]


def assess_device(journal: Any, device: str, since: float, until: float,
                  nominal_voltage: float = 220.0, nominal_kv: float = 0.38,
                  three_phase: bool = False, short_circuit_mva: float | None = None,
                  user_mva: float | None = None,
                  supply_mva: float | None = None) -> list[IndexResult]:
    """The four indices of ``device`` over ``[since, until)`` from its raw readings, and
    one per harmonic-current order it reports (2-25)."""
    def values(quantity: str, channel: str | None = None) -> list[tuple[float, str, float]]:
        return [(r.ts, r.channel, r.value) for r in
                journal.history(device, quantity, channel, since, until)
                if r.ts < until and r.quality.value == "good" and r.value is not None]
    volts = values("voltage")
    given = [v for _, _, v in values("voltage_unbalance")]
    if not given:
        phases: dict[float, dict[str, float]] = {}
        for ts, ch, v in volts:
            if ch in ("A", "B", "C"):
                phases.setdefault(ts, {})[ch] = v
        given = [unbalance_from_magnitudes(p["A"], p["B"], p["C"])
                 for p in phases.values() if len(p) == 3]
    out = [voltage_deviation([v for _, _, v in volts], nominal_voltage, three_phase),
           unbalance(given), thd([v for _, _, v in values("voltage_thd")], nominal_kv),
           frequency_deviation([v for _, _, v in values("frequency")])]
    if nominal_kv in HARMONIC_CURRENT_LIMITS:
        current: list[tuple[float, str, float]] | None = None
        for order in range(2, 26):
            content = values(f"current_harmonic_{order}")
            if not content:
                continue
            if current is None:
                current = values("current")
            limit = harmonic_current_limit(order, nominal_kv, short_circuit_mva, user_mva,
                                           supply_mva)
            out.append(harmonic_current(order, harmonic_amperes(content, current), limit))
    return out


@dataclass(frozen=True)
class Bus:
    """A device assessed in reports (a bus or feeder it measures) and its parameters, as
    the API's ``/power-quality`` route takes them."""

    nominal_voltage: float = 220.0
    nominal_kv: float = 0.38
    three_phase: bool = False
    short_circuit_mva: float | None = None
    user_mva: float | None = None
    supply_mva: float | None = None


def buses_from(m: Any, path: str = "power_quality") -> dict[str, Bus]:
    """``{device: Bus}`` from configuration (``device: {}`` or ``true`` for the defaults);
    ValueError names the key path."""
    if not isinstance(m, dict):
        raise ValueError(f"{path}: a mapping of device id to its parameters")
    out = {}
    for dev, v in m.items():
        p = f"{path}.{dev}"
        if v is True or v is None:
            v = {}
        if not isinstance(v, dict):
            raise ValueError(f"{p}: a mapping (nominal_voltage, nominal_kv, three_phase, "
                             "short_circuit_mva, user_mva, supply_mva) or true")
        known = set(Bus.__dataclass_fields__)
        if set(v) - known:
            raise ValueError(f"{p}: unknown keys {sorted(set(v) - known)}; known: "
                             f"{', '.join(sorted(known))}")
        args: dict[str, Any] = {}
        for k, x in v.items():
            if k == "three_phase":
                if not isinstance(x, bool):
                    raise ValueError(f"{p}.three_phase: true or false, not {x!r}")
                args[k] = x
            elif isinstance(x, bool) or not isinstance(x, int | float) or not x > 0:
                raise ValueError(f"{p}.{k}: a positive number, not {x!r}")
            else:
                args[k] = float(x)
        bus = Bus(**args)
        if bus.nominal_kv not in THD_LIMITS:
            raise ValueError(f"{p}.nominal_kv: one of {sorted(THD_LIMITS)}")
        if (bus.user_mva is None) != (bus.supply_mva is None):
            raise ValueError(f"{p}: give user_mva and supply_mva together")
        out[str(dev)] = bus
    return out


def assess_buses(journal: Any, buses: dict[str, Bus], devices: Iterable[str], since: float,
                 until: float) -> dict[str, list[IndexResult]]:
    """:func:`assess_device` for each of ``devices`` configured in ``buses``."""
    return {d: assess_device(journal, d, since, until, b.nominal_voltage, b.nominal_kv,
                             b.three_phase, b.short_circuit_mva, b.user_mva, b.supply_mva)
            for d in sorted(devices) if (b := buses.get(d)) is not None}
