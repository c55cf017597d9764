"""Grading rules 6-8 (open hazards, overdue rectifications, readings near their set
points), hand-computed, at each grade boundary."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from hub.analysis.grading import (
    GradingScheme,
    extra_deductions,
    grade_device,
    grade_project,
    hazard_deductions,
    near_set_point_deductions,
)
from hub.rollups import HOUR, RollupStore

DAY = 86400.0
S = GradingScheme()


@dataclass
class H:
    id: int
    device: str = "d1"
    severity: str = "一般"
    category: str = "接线"
    created_ts: float = 0.0
    closed_ts: float | None = None
    deadline: float | None = None


def test_open_hazards_and_overdue_rectifications():
    hazards = [H(1), H(2, severity="重大", deadline=DAY - 3.5 * DAY),  # 3 whole days late
               H(3, closed_ts=DAY / 2),  # closed in the period: nothing
               H(4, created_ts=DAY),  # found after it: nothing
               H(5, deadline=-40 * DAY)]  # late beyond the cap
    ded = hazard_deductions(hazards, DAY, S)
    assert [(d.rule, d.points, d.code) for d in ded] == [
        ("hazards", 5.0, "hazard:1"), ("hazards", 15.0, "hazard:2"),
        ("overdue", 5.0 + 3 * 1.0, "hazard:2"), ("hazards", 5.0, "hazard:5"),
        ("overdue", 20.0, "hazard:5")]
    assert "逾期 3 天" in ded[2].reason
    g = grade_device("d1", [], [], 0, DAY, S, ded)
    assert g.score == 100 - 5 - 15 - 8 - 5 - 20 and g.grade == "严重隐患"


def test_near_set_point_hours():
    # set point 60 °C: 80 % is 48; three hours at or above it, one below
    ded = near_set_point_deductions("d1", {"temperature": [47.9, 48.0, 55.0, 60.0]},
                                    {"temperature": 60.0}, S)
    assert [(d.rule, d.points, d.code) for d in ded] == [("near_set_point", 1.5,
                                                         "temperature")]
    capped = near_set_point_deductions("d1", {"residual_current": [290.0] * 40},
                                       {"residual_current": 300.0}, S)
    assert capped[0].points == 10.0
    assert near_set_point_deductions("d1", {"temperature": [99.0]}, {}, S) == []


LATE = H(9, deadline=DAY - 0.1)  # 一般, 0 whole days late: 5 + 5


@pytest.mark.parametrize("hazards,near_hours,score,grade", [
    ([], 0, 100.0, "优"),
    ([H(1), H(2)], 0, 90.0, "优"),                                 # 100 − 2 × 5
    ([H(1), H(2)], 1, 89.5, "良好"),                               # − 0.5 for an hour
    ([H(1, severity="重大"), H(2), H(3)], 0, 75.0, "良好"),        # − 15 − 5 − 5
    ([H(1, severity="重大"), H(2), H(3)], 1, 74.5, "一般隐患"),
    ([H(1, severity="重大"), H(2, severity="重大"), LATE], 0, 60.0, "一般隐患"),
    ([H(1, severity="重大"), H(2, severity="重大"), LATE], 1, 59.5, "严重隐患"),
])
def test_each_grade_boundary_from_hazards_and_near_set_points(hazards, near_hours, score,
                                                                grade):
    near = near_set_point_deductions("d1", {"temperature": [50.0] * near_hours},
                                     {"temperature": 60.0}, S)
    g = grade_device("d1", [], [], 0, DAY, S, hazard_deductions(hazards, DAY, S) + near)
    assert (g.score, g.grade) == (score, grade)


def test_project_hazards_and_rollup_maxima_through_extra_deductions(tmp_path):
    store = RollupStore(str(tmp_path / "r.sqlite"), tz_offset=0)
    names = {1: ("d1", "T1", "temperature"), 2: ("d2", "T1", "temperature")}
    rows = [(i + 1, 0, 1 + i % 2, i // 2 * HOUR + 60, 50.0 if i < 6 else 30.0, None, None)
            for i in range(12)]  # d1 and d2: hours 0-2 at 50 °C, hours 3-5 at 30 °C
    store.apply(rows, names.__getitem__)
    per, project = extra_deductions(
        ["d1", "d2"], 0, DAY, S, [H(1, device=""), H(2, device="d2", severity="重大")],
        store, {"d1": {"temperature": 60.0}, "d2": {"temperature": 100.0}})
    assert [(d.rule, d.points) for d in per["d1"]] == [("near_set_point", 1.5)]
    assert [(d.rule, d.points) for d in per["d2"]] == [("hazards", 15.0)]
    assert [(d.rule, d.points) for d in project] == [("hazards", 5.0)]
    g1 = grade_device("d1", [], [], 0, DAY, S, per["d1"])
    g2 = grade_device("d2", [], [], 0, DAY, S, per["d2"])
    p = grade_project("p1", [g1, g2], S, project)
    # mean (98.5 + 85) / 2 = 91.75, within worst + 20; less the project's own 5
    assert p.score == 86.8 and p.grade == "良好"
    assert p.deductions[0].rule == "hazards" and p.deductions[0].device == ""
    store.close()


def test_the_new_weights_are_configurable():
    s = GradingScheme.from_mapping({"hazard_points": {"重大": 30}, "near_ratio": 0.9,
                                    "overdue_cap": 10})
    assert s.hazard_points == {"一般": 5.0, "重大": 30.0} and s.near_ratio == 0.9
    assert hazard_deductions([H(1, deadline=-100 * DAY)], DAY, s)[1].points == 10.0
