"""The desk's schedule on task.Clock with a real store: inspection tasks generated as their
periods begin, missed ones flagged, results recorded (late ones counted), the completion
statistics; hazard reminders before and after the deadline through the project's policy,
each sent once, not again after a restart."""

from __future__ import annotations

from datetime import UTC

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock

from hub.alarmdesk.channels import Outbox
from hub.alarmdesk.inspections import (
    inspection_stats,
    period_starts,
    reminder_kind,
    reminder_step,
)
from hub.alarmdesk.policy import policy_from_dict
from hub.alarmdesk.schedule import Schedule
from hub.alarmdesk.settings import NotifySettings
from hub.store import SqliteStore
from hub.store.inspections import TaskState

DAY = 86400.0
T0 = 1_700_000_000.0 - 1_700_000_000.0 % DAY  # a UTC midnight


@pytest.fixture
def store(tmp_path):
    s = SqliteStore(str(tmp_path / "p.sqlite"))
    s.open()
    yield s
    s.close()


class Recorder:
    def __init__(self):
        self.sent = []

    def send(self, n):
        self.sent.append(n)
        return defer.succeed("ok")


def schedule(store, clock, channel, changes):
    box = Outbox(clock, store, {"sms": channel}, NotifySettings())

    def policy_for(project):
        body = store.policy(project)
        return policy_from_dict(body) if body else None

    s = Schedule(clock, store, policy_for,
                 lambda project, step: [(step.channel, r) for r in step.recipients],
                 lambda name, step: [(step.channel, "139" + name)] if name else [],
                 box.claim, box.deliver, lambda kind, c: changes.append((kind, c)), tick=60)
    return s


def test_period_arithmetic():
    assert period_starts(0, 10, 0, 35) == [0, 10, 20, 30]
    assert period_starts(0, 10, 40, 35) == []
    assert period_starts(0, 10, 20, 20) == [20]
    assert period_starts(0, 10, 0, 10_000, cap=3) == [9980, 9990, 10000]
    assert reminder_kind(100, 50, 60, 0, None) == "before"
    assert reminder_kind(100, 30, 60, 0, None) is None
    assert reminder_kind(100, 100, 60, 0, 50) == "after"
    assert reminder_kind(100, 260, 60, 0, 50) == "after-3"
    assert [reminder_step(k) for k in ("before", "after", "after-3")] == [-1, -2, -5]


def test_inspection_tasks_are_generated_missed_and_recorded(store):
    clock = Clock()
    clock.advance(T0)
    changes = []
    s = schedule(store, clock, Recorder(), changes)
    plan, _ = store.plan_add("p1", "配电箱巡查", ["箱门完好", "温度正常"], DAY, 8 * 3600, T0,
                             "zhang", "mgr", T0)
    s.start()
    clock.advance(0)
    [task] = store.tasks({"p1"})
    assert (task["state"], task["due_ts"], task["deadline_ts"]) == ("open", T0, T0 + 8 * 3600)
    assert task["items"] == ["箱门完好", "温度正常"]
    clock.advance(8 * 3600)  # the deadline passes at a tick
    assert store.task(task["id"])["state"] == "missed"
    assert [c["action"] for _, c in changes] == ["task.created", "task.missed"]
    clock.advance(DAY - 8 * 3600)  # the next day's task
    tasks = store.tasks({"p1"})
    assert [t["state"] for t in tasks] == ["missed", "open"]
    done, change = store.task_record(tasks[1]["id"], [
        {"item": "箱门完好", "result": "ok"}, {"item": "温度正常", "result": "problem",
                                              "note": "62 °C"}], "", "zhang", clock.seconds())
    assert (done["state"], done["late"], done["problems"]) == ("done", False, 1)
    late, _ = store.task_record(tasks[0]["id"], [], "done on paper", "zhang", clock.seconds())
    assert late["late"] is True
    with pytest.raises(TaskState):
        store.task_record(tasks[0]["id"], [], "", "zhang", clock.seconds())
    stats = inspection_stats(store.inspection_times({"p1"}, None, None), clock.seconds())
    assert (stats["total"], stats["done"], stats["done_late"], stats["missed"]) == (2, 2, 1, 0)
    assert stats["completion"] == 1.0 and stats["on_time"] == 0.5
    assert stats["problems_found"] == 1
    # a restart (a new schedule on the same store) makes no second task for a period
    s.stop()
    s2 = schedule(store, clock, Recorder(), [])
    s2.start()
    clock.advance(0)
    assert len(store.tasks({"p1"})) == 2
    s2.stop()


def test_an_idle_plan_skips_its_periods_and_a_new_frequency_counts_from_now(store):
    plan, _ = store.plan_add("p1", "x", ["a"], 3600, 3600, T0, "", "mgr", T0)
    store.inspection_tick(T0)
    store.plan_update(plan["id"], {"active": False}, "mgr", T0 + 10)
    # idle: no task for its periods, only the open one flagged
    assert [c["action"] for c in store.inspection_tick(T0 + 5 * 3600)] == ["task.missed"]
    updated, _ = store.plan_update(plan["id"], {"active": True}, "mgr", T0 + 5 * 3600 + 10)
    assert updated["next_ts"] == T0 + 6 * 3600
    store.inspection_tick(T0 + 6 * 3600)
    assert [t["due_ts"] for t in store.tasks({"p1"})] == [T0, T0 + 6 * 3600]
    updated, _ = store.plan_update(plan["id"], {"every": DAY}, "mgr", T0 + 6 * 3600 + 5)
    assert updated["next_ts"] == T0 + 6 * 3600 + 5 + DAY


def test_hazard_reminders_before_and_after_the_deadline_once_each(store):
    clock = Clock()
    clock.advance(T0)
    store.set_policy("p1", {"steps": [{"delay": 0, "channel": "sms",
                                       "recipients": ["13800138000"]}],
                            "hazard_reminders": {"before": 3600, "after": 0, "repeat": DAY}},
                     "mgr", T0)
    deadline = T0 + 2 * DAY
    h = store.hazard_add("p1", "d1", None, "接线", "一般", "loose terminal", deadline, "zhang",
                         "op", T0)
    channel = Recorder()
    changes = []
    s = schedule(store, clock, channel, changes)
    s.start()
    clock.advance(0)
    assert channel.sent == []  # two days early: nothing
    clock.pump([60] * int((2 * DAY - 3600) / 60))  # an hour before the deadline
    assert [(n.recipient, n.step, n.hazard_id, n.alarm_id) for n in channel.sent] == [
        ("13800138000", -1, h.id, -h.id), ("139zhang", -1, h.id, -h.id)]
    assert "due" in channel.sent[0].text and f"#{h.id}" in channel.sent[0].text
    # a restart does not send it again
    s.stop()
    channel2 = Recorder()
    s = schedule(store, clock, channel2, changes)
    s.start()
    clock.pump([60] * 59)
    assert channel2.sent == []
    clock.pump([60] * 2)  # the deadline passes: one overdue reminder
    assert [n.step for n in channel2.sent] == [-2, -2] and "overdue" in channel2.sent[0].text
    clock.pump([600] * int(DAY / 600))  # a day later: the repeat
    assert [n.step for n in channel2.sent] == [-2, -2, -3, -3]
    store.hazard_move(h.id, "rectifying", "op", clock.seconds())
    store.hazard_move(h.id, "checked", "op", clock.seconds())
    store.hazard_move(h.id, "closed", "op", clock.seconds())
    clock.pump([600] * int(DAY / 600))  # closed: no more reminders
    assert len(channel2.sent) == 4
    assert [c["kind"] for k, c in changes if k == "hazard_reminder"] == ["before", "after",
                                                                         "after-1"]
    assert len(store.notifications(-h.id)) == 6
    s.stop()


def test_no_policy_no_reminders(store):
    clock = Clock()
    clock.advance(T0)
    store.hazard_add("p9", "d1", None, "x", "一般", "x", T0 + 10, "", "op", T0)
    channel = Recorder()
    s = schedule(store, clock, channel, [])
    s.start()
    clock.pump([60] * 10)
    assert channel.sent == []
    s.stop()


def test_month_arithmetic_clamps_the_day_in_local_time():
    from datetime import datetime, timedelta, timezone

    from hub.alarmdesk.inspections import month_index, month_start

    cst = timezone(timedelta(hours=8))

    def local(ts):
        d = datetime.fromtimestamp(ts, cst)
        return (d.year, d.month, d.day, d.hour, d.minute)

    # 31 Jan 2024, 00:30 local: still 30 Jan in UTC (the offset decides the day)
    start = datetime(2024, 1, 31, 0, 30, tzinfo=cst).timestamp()
    assert [local(month_start(start, k, 480)) for k in range(5)] == [
        (2024, 1, 31, 0, 30), (2024, 2, 29, 0, 30), (2024, 3, 31, 0, 30),
        (2024, 4, 30, 0, 30), (2024, 5, 31, 0, 30)]  # leap February, back to the 31st
    assert local(month_start(start, 13, 480)) == (2025, 2, 28, 0, 30)
    assert local(month_start(start, 11, 480)) == (2024, 12, 31, 0, 30)
    # the same instant in UTC is the 30th: a UTC calendar would run on the 30th
    assert datetime.fromtimestamp(month_start(start, 2, 0), UTC).day == 30
    feb = month_start(start, 1, 480)
    assert month_index(start, feb - 1, 480) == 0 and month_index(start, feb, 480) == 1
    assert month_index(start, start - 1, 480) == -1


def test_a_monthly_plan_generates_by_the_calendar_and_misses_at_the_next_month(store):
    from datetime import datetime, timedelta, timezone

    cst = timezone(timedelta(hours=8))
    start = datetime(2025, 1, 31, 9, 0, tzinfo=cst).timestamp()
    plan, _ = store.plan_add("p1", "月检", ["a"], 30 * DAY, 0.0, start, "", "mgr", start,
                             "monthly", 480)
    assert (plan["frequency"], plan["utc_offset_minutes"]) == ("monthly", 480)
    made = store.inspection_tick(start)
    assert [c["action"] for c in made] == ["task.created"]
    feb = datetime(2025, 2, 28, 9, 0, tzinfo=cst).timestamp()
    assert store.plan(plan["id"])["next_ts"] == feb
    assert store.inspection_tick(feb - 1) == []  # 27 days is no period yet
    changes = store.inspection_tick(feb)
    assert sorted(c["action"] for c in changes) == ["task.created", "task.missed"]
    tasks = store.tasks({"p1"})
    assert [t["due_ts"] for t in tasks] == [start, feb]
    assert tasks[0]["deadline_ts"] == feb  # grace 0: until the next month's period
    assert tasks[0]["state"] == "missed"
    # a hub down for three months catches up by the calendar
    jun = datetime(2025, 6, 1, tzinfo=cst).timestamp()
    store.inspection_tick(jun)
    days = [datetime.fromtimestamp(t["due_ts"], cst).day for t in store.tasks({"p1"})]
    assert days == [31, 28, 31, 30, 31]
    # a new frequency counts from the change, as for any plan
    updated, _ = store.plan_update(plan["id"], {"every": DAY, "frequency": "", "grace": DAY},
                                   "mgr", jun)
    assert updated["next_ts"] == jun + DAY and updated["frequency"] == ""
