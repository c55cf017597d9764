"""Energy analysis: time-of-use split across period boundaries and midnight, periods,
cost, advice."""

from __future__ import annotations

import pytest

from hub.analysis.energy import TouSchedule, by_period, cost, split_tou
from hub.rollups import HOUR

TZ = 8 * 3600
#: 2026-01-01 00:00 local (UTC+8)
T = 1_767_196_800.0


def test_tou_split_of_whole_hours_and_across_midnight():
    # 1 kWh in each hour 22:00..02:00 local: 22 平, 23 谷, 00 谷, 01 谷
    hourly = {T - 2 * HOUR: 1.0, T - HOUR: 1.0, T: 1.0, T + HOUR: 1.0}
    assert split_tou(hourly, TZ) == {"尖峰": 0.0, "峰": 0.0, "平": 1.0, "谷": 3.0}


def test_tou_split_at_a_half_hour_boundary():
    s = TouSchedule.from_mapping({"periods": [
        {"start": "11:30", "end": "12:00", "name": "尖峰"},
        {"start": "22:00", "end": "06:30", "name": "谷"}]})
    hourly = {T + 11 * HOUR: 4.0, T + 6 * HOUR: 2.0}
    tou = split_tou(hourly, TZ, s)
    assert tou == {"尖峰": 2.0, "峰": 0.0, "平": 3.0, "谷": 1.0}
    assert cost(tou, s) == pytest.approx(2 * 1.25 + 3 * 0.65 + 1 * 0.30)


def test_schedule_configuration_is_checked():
    with pytest.raises(ValueError, match="one of"):
        TouSchedule.from_mapping({"periods": [{"start": "1:00", "end": "2:00", "name": "x"}]})
    with pytest.raises(ValueError, match="HH:MM"):
        TouSchedule.from_mapping({"periods": [{"start": "1:75", "end": "2:00", "name": "谷"}]})


def test_energy_by_local_day_month_and_year():
    daily = {T - 86400: 1.0, T: 2.0, T + 86400: 3.0}  # 2025-12-31, 2026-01-01, 01-02
    assert by_period(daily, TZ, "day") == {"2025-12-31": 1.0, "2026-01-01": 2.0,
                                           "2026-01-02": 3.0}
    assert by_period(daily, TZ, "month") == {"2025-12": 1.0, "2026-01": 5.0}
    assert by_period(daily, TZ, "year") == {"2025": 1.0, "2026": 5.0}
