"""Harmonic-current limits (GB/T 14549-93 table 2 scaled per annex B) and year-on-year /
period-on-period energy, against hand-computed values."""

from __future__ import annotations

import math

import pytest

from hub.analysis.energy import compare, period_before, year_before
from hub.analysis.power_quality import (
    harmonic_amperes,
    harmonic_current,
    harmonic_current_limit,
)
from hub.reports.data import month_range
from hub.rollups import DAY, RollupStore

TZ = 8 * 3600


def test_table_values_at_the_reference_capacity():
    assert harmonic_current_limit(5, 0.38) == 62.0
    assert harmonic_current_limit(2, 10) == 26.0
    assert harmonic_current_limit(25, 110) == 1.9
    assert harmonic_current_limit(3, 35) == 12.0


def test_scaled_to_the_short_circuit_capacity_b1():
    # 0.38 kV, 5 MVA actual against 10 MVA reference: 62 × 5 / 10 = 31 A
    assert harmonic_current_limit(5, 0.38, short_circuit_mva=5) == pytest.approx(31.0)
    # 10 kV, 200 MVA against 100: 20 × 2 = 40 A
    assert harmonic_current_limit(3, 10, short_circuit_mva=200) == pytest.approx(40.0)


def test_one_users_share_b2():
    # 31 A × (0.5 / 2) ^ (1 / 1.2): 0.25 ^ 0.8333 = e^(−1.155245) = 0.314980 → 9.7644 A
    assert harmonic_current_limit(5, 0.38, 5, 0.5, 2) == pytest.approx(9.7644, abs=1e-3)
    # order 9: α = 2, a quarter of the capacity halves it: 21 × 0.5 = 10.5 A
    assert harmonic_current_limit(9, 0.38, None, 1, 4) == pytest.approx(10.5)
    assert math.isclose(harmonic_current_limit(3, 0.38, 10, 1, 1), 62.0)


def test_out_of_the_table_is_refused():
    with pytest.raises(ValueError, match="orders 2 to 25"):
        harmonic_current_limit(26)
    with pytest.raises(ValueError, match="no harmonic current limits"):
        harmonic_current_limit(5, 20)


def test_amperes_from_content_and_current_and_the_index():
    content = [(0.0, "A", 20.0), (60.0, "A", 40.0), (60.0, "B", 10.0), (120.0, "A", 5.0)]
    current = [(0.0, "A", 100.0), (60.0, "A", 100.0), (60.0, "B", 50.0)]  # none at 120
    amps = harmonic_amperes(content, current)
    assert amps == [20.0, 40.0, 5.0]
    r = harmonic_current(5, amps * 10, 31.0)
    assert r.index == "current_harmonic_5" and r.maximum == 40.0
    assert r.passed is False and r.above_share == pytest.approx(1 / 3)


def test_year_before_and_period_before():
    jan = month_range("2026-01", TZ)
    dec = month_range("2025-12", TZ)
    assert period_before(*jan, TZ) == dec  # a month: the calendar month before
    mar = month_range("2026-03", TZ)
    assert period_before(*mar, TZ) == month_range("2026-02", TZ)
    assert period_before(jan[0], jan[0] + 7 * DAY, TZ) == (jan[0] - 7 * DAY, jan[0])
    assert year_before(jan[0], TZ) == month_range("2025-01", TZ)[0]
    leap = month_range("2024-02", TZ)[0] + 28 * DAY  # 29 February 2024 → 28 February
    assert year_before(leap, TZ) == month_range("2023-02", TZ)[0] + 27 * DAY


def test_compare_from_daily_buckets(tmp_path):
    store = RollupStore(str(tmp_path / "r.sqlite"))
    names = {1: ("m1", "", "active_energy")}
    jan25, dec25, jan26 = (month_range(m, TZ)[0] for m in ("2025-01", "2025-12", "2026-01"))
    # a reading at noon each day: 10 kWh a day in Jan 2025, 12 in Dec 2025, 15 in Jan 2026
    # (whose first reading is the counter of 31 December's: 0 kWh on the 1st)
    rows, seq, value = [], 0, 0.0
    for start, days, per_day in ((jan25 - DAY, 32, 10.0), (dec25 - DAY, 32, 12.0),
                                 (jan26, 31, 15.0)):
        for d in range(days):
            seq += 1
            value += per_day if d else 0.0
            rows.append((seq, 0, 1, start + d * DAY + 12 * 3600, value, None, None))
    store.apply(rows, names.__getitem__)
    c = compare(store, ["m1"], *month_range("2026-01", TZ), TZ)
    # each day's delta lands on the day of its later reading (README "Rollups")
    assert c.year_ago == pytest.approx(31 * 10.0)
    assert c.period_before == pytest.approx(31 * 12.0)
    assert c.current == pytest.approx(30 * 15.0)
    assert c.yoy == pytest.approx(450 / 310 - 1) and c.mom == pytest.approx(450 / 372 - 1)
    empty = compare(store, ["m1"], *month_range("2024-06", TZ), TZ)
    assert empty.year_ago is None and empty.yoy is None
    store.close()
