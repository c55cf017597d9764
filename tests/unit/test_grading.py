"""Safety grading: hand-computed scores, each grade boundary, configuration."""

from __future__ import annotations

import pytest

from hub.analysis.grading import GradingScheme, grade_device, grade_project
from hub.model import Acknowledgement, Event, EventKind, EventState, Level

DAY = 86400.0


def raised(code, ts, level=Level.ALARM, kind=EventKind.ALARM, id=None):
    return Event("d1", kind, code, EventState.RAISED, ts, level, id=id or f"{code}@{ts}")


def cleared(ev, ts):
    return Event("d1", ev.kind, ev.code, EventState.CLEARED, ts, ev.level, id=ev.id,
                 raised_ts=ev.ts)


def ack(ev, ts):
    return Acknowledgement(ev.id, "alice", ts, "d1")


def test_a_day_with_alarms_faults_and_offline_time():
    temp = raised("temperature", 3600)
    volt = raised("overvoltage", 10000, Level.WARNING)
    off = raised("offline", 43200, Level.FAULT, EventKind.FAULT)
    chan = raised("channel_open", 50000, Level.FAULT, EventKind.FAULT)
    events = [temp, volt, cleared(temp, 3600 + 7200), cleared(volt, 10000 + 3600), off,
              cleared(off, 43200 + 4320), chan]
    g = grade_device("d1", events, [ack(temp, 3600 + 300)], 0, DAY)
    points = {(d.rule, d.code): round(d.points, 6) for d in g.deductions}
    assert points == {
        ("alarms", "overvoltage"): 1.6,      # electrical 4 × warning 0.4
        ("alarms", "temperature"): 10.0,     # fire 10 × alarm 1.0
        ("alarm_time", ""): 4.5,             # 2 h × 2 (fire) + 1 h × 0.5 (electrical)
        ("late_ack", "overvoltage"): 3.0,    # cleared, never acknowledged
        ("offline", "offline"): 1.0,         # 5 % of the day × 20
        ("faults", ""): 2.0,                 # one channel_open
    }
    assert g.score == pytest.approx(77.9)
    assert g.grade == "良好"


def test_an_open_unacknowledged_fire_alarm_at_the_end():
    fire = raised("fault_arc", DAY - 3600)
    g = grade_device("d1", [fire], [], 0, DAY)
    # 10 (fire alarm) + 1 h × 2 + 10 (raised and unacknowledged at the end)
    assert g.score == 78.0 and g.grade == "良好"
    assert {d.rule for d in g.deductions} == {"alarms", "alarm_time", "open_unacked"}


def test_chattering_alarms_are_capped_per_code():
    events = []
    acks = []
    for i in range(8):
        e = raised("temperature", 1000 + i * 100)
        events += [e, cleared(e, 1000 + i * 100 + 36)]  # 0.01 h each
        acks.append(ack(e, 1000 + i * 100 + 10))
    g = grade_device("d1", events, acks, 0, DAY)
    # 8 × 10 capped at 40; 0.08 h × 2 = 0.16
    assert g.score == pytest.approx(100 - 40 - 0.16, abs=0.05)
    assert g.grade == "严重隐患"


def test_an_alarm_raised_before_the_period_counts_only_its_time_in_it():
    e = raised("temperature", -3600)
    g = grade_device("d1", [e, cleared(e, 1800)], [ack(e, -3000)], 0, DAY)
    assert [(d.rule, d.points) for d in g.deductions] == [("alarm_time", 1.0)]
    assert g.score == 99.0 and g.grade == "优"


@pytest.mark.parametrize("score,grade", [(100, "优"), (90, "优"), (89.9, "良好"), (75, "良好"),
                                         (74.9, "一般隐患"), (60, "一般隐患"),
                                         (59.9, "严重隐患"), (0, "严重隐患")])
def test_each_grade_boundary(score, grade):
    assert GradingScheme().grade(score) == grade


def test_bands_and_weights_are_configurable():
    s = GradingScheme.from_mapping({"bands": [95, 80, 50], "alarm_weight": {"fire": 30}})
    assert s.alarm_weight == {"fire": 30.0, "electrical": 4.0}
    assert s.grade(94.9) == "良好" and s.grade(50) == "一般隐患"
    g = grade_device("d1", [raised("smoke_concentration", 10, id="x"),
                            cleared(raised("smoke_concentration", 10, id="x"), 10)],
                     [ack(raised("smoke_concentration", 10, id="x"), 20)], 0, DAY, s)
    assert g.score == 70.0 and g.grade == "一般隐患"
    with pytest.raises(ValueError, match="unknown grading keys"):
        GradingScheme.from_mapping({"bogus": 1})
    with pytest.raises(ValueError, match="descending"):
        GradingScheme.from_mapping({"bands": [60, 75, 90]})


def test_a_project_is_no_better_than_its_worst_device_allows():
    quiet = grade_device("q", [], [], 0, DAY)
    assert quiet.score == 100 and quiet.deductions == ()
    fire = raised("temperature", 100)
    bad = grade_device("d1", [fire] + [raised("temperature", 200 + i) for i in range(5)],
                       [], 0, DAY)
    assert bad.score < 40
    p = grade_project("p1", [quiet, quiet, quiet, bad])
    assert p.score == round(bad.score + 20, 1) and p.grade == GradingScheme().grade(p.score)
    assert p.deductions == bad.deductions
