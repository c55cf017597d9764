"""Notification policies on task.Clock: every path of the ladder."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

from twisted.internet.task import Clock

from hub.alarmdesk.lifecycle import AlarmRecord
from hub.alarmdesk.policy import (
    Escalator,
    Policy,
    Step,
    check_policy,
    in_quiet_hours,
    policy_from_dict,
)

DAY = 86400.0
MIDNIGHT_CST = datetime(2026, 12, 7, tzinfo=timezone(timedelta(hours=8))).timestamp()


class Memory:
    """The store's side of the escalator, in memory (the SQLite one is tested through the
    API); ``records`` is the rig's dict of current records."""

    def __init__(self):
        self.rows: dict[int, tuple[str, int, float, float]] = {}
        self.claimed: set[tuple] = set()
        self.current: dict = {}
        self.writes = 0

    def apply(self, saves, drops):
        self.writes += 1
        self.rows.update(saves)
        for a in drops:
            self.rows.pop(a, None)

    def load(self):
        return [(a, *row) for a, row in self.rows.items()]

    def records(self, ids):
        return {i: self.current[i] for i in ids if i in self.current}

    def claim(self, notes, ts):
        out = []
        for n in notes:
            key = (n.alarm_id, n.step, n.channel, n.recipient)
            out.append(key not in self.claimed)
            self.claimed.add(key)
        return out


LADDER = Policy(steps=(Step(0, "sms", ("+8613800000001",)),
                       Step(300, "sms", ("+8613800000002",)),
                       Step(900, "voice", ("+8613800000003",))))


class Rig:
    def __init__(self, policy=LADDER, start=MIDNIGHT_CST + 12 * 3600, store=None):
        self.clock = Clock()
        self.clock.advance(start)
        self.policy = policy
        self.sent = []
        self.store = store or Memory()
        self.records: dict[int, AlarmRecord] = {}
        self.store.current = self.records
        self.esc = Escalator(self.clock, self.store, lambda p: self.policy, self.resolve,
                             self.sent.append)

    @staticmethod
    def resolve(project, step):
        return [(step.channel, r) for r in step.recipients]

    def raise_(self, alarm_id=1, severity="alarm", device="d1"):
        r = AlarmRecord(alarm_id, f"{device}||temperature", device, "p1", "alarm",
                        "temperature", "", severity, self.clock.seconds(),
                        self.clock.seconds(), (f"e{alarm_id}",), message="overheat")
        self.records[alarm_id] = r
        self.esc.changed(r, "raised")
        return r

    def act(self, alarm_id, action, **changes):
        r = self.records[alarm_id] = replace(self.records[alarm_id], **changes)
        self.esc.changed(r, action)

    def recipients(self):
        return [n.recipient[-1] for n in self.sent]


def test_the_ladder_runs_step_by_step_when_nobody_acknowledges():
    rig = Rig()
    rig.raise_()
    rig.clock.advance(0)
    assert rig.recipients() == ["1"]
    rig.clock.advance(299)
    assert rig.recipients() == ["1"]
    rig.clock.advance(1)
    assert rig.recipients() == ["1", "2"]
    rig.clock.advance(600)
    assert rig.recipients() == ["1", "2", "3"]
    assert rig.sent[-1].channel == "voice"
    rig.clock.advance(DAY)
    assert len(rig.sent) == 3 and rig.store.rows == {}


def test_acknowledgement_stops_the_escalation():
    rig = Rig()
    rig.raise_()
    rig.clock.advance(10)
    rig.act(1, "acknowledged", acked=True, acked_by="op")
    rig.clock.advance(DAY)
    assert rig.recipients() == ["1"] and rig.store.rows == {}


def test_clear_stops_the_escalation():
    rig = Rig()
    rig.raise_()
    rig.clock.advance(10)
    rig.act(1, "cleared", active_events=())
    rig.clock.advance(DAY)
    assert rig.recipients() == ["1"]


def test_an_act_the_escalator_was_not_told_of_stops_it_too():
    """`hub alarms ack` writes the store only: the step reads the record first."""
    rig = Rig()
    rig.raise_()
    rig.clock.advance(10)
    rig.records[1] = replace(rig.records[1], acked=True)
    rig.clock.advance(DAY)
    assert rig.recipients() == ["1"] and rig.store.rows == {}


def test_repeat_until_acknowledged():
    rig = Rig(Policy(steps=(Step(60, "sms", ("+8613800000001",)),), repeat_interval=600))
    rig.raise_()
    rig.clock.advance(60)
    for _ in range(3):
        rig.clock.advance(600)
    assert len(rig.sent) == 4
    assert [n.step for n in rig.sent] == [0, 1, 2, 3]
    rig.act(1, "acknowledged", acked=True)
    rig.clock.advance(DAY)
    assert len(rig.sent) == 4


QUIET = Policy(steps=(Step(0, "sms", ("+8613800000001",)),), quiet_hours=(22 * 60, 7 * 60))


def test_quiet_hours_hold_back_a_pre_alarm_until_they_end():
    rig = Rig(QUIET, start=MIDNIGHT_CST + 23 * 3600)  # 23:00 local
    rig.raise_(severity="pre-alarm")
    rig.clock.advance(0)
    assert rig.sent == []
    rig.clock.advance(8 * 3600 - 1)  # 06:59:59
    assert rig.sent == []
    rig.clock.advance(1)  # 07:00
    assert rig.recipients() == ["1"]


def test_a_fire_alarm_goes_through_quiet_hours():
    rig = Rig(QUIET, start=MIDNIGHT_CST + 23 * 3600)
    rig.raise_(severity="alarm")
    rig.clock.advance(0)
    assert rig.recipients() == ["1"]


def test_quiet_hours_arithmetic():
    p = QUIET
    assert in_quiet_hours(p, MIDNIGHT_CST + 12 * 3600) is None
    assert in_quiet_hours(p, MIDNIGHT_CST + 2 * 3600) == MIDNIGHT_CST + 7 * 3600
    assert in_quiet_hours(p, MIDNIGHT_CST + 22 * 3600) == MIDNIGHT_CST + DAY + 7 * 3600
    day = Policy(steps=(), quiet_hours=(12 * 60, 13 * 60))
    assert in_quiet_hours(day, MIDNIGHT_CST + 12.5 * 3600) == MIDNIGHT_CST + 13 * 3600
    assert in_quiet_hours(day, MIDNIGHT_CST + 13 * 3600) is None


def test_a_storm_becomes_a_summary_per_recipient():
    rig = Rig(Policy(steps=(Step(0, "sms", ("+8613800000001",)),), storm_limit=3,
                     storm_window=60))
    for i in range(1, 101):
        rig.raise_(alarm_id=i, device=f"d{i}")
    rig.clock.advance(0)
    assert len(rig.sent) == 3
    rig.clock.advance(60)
    assert len(rig.sent) == 4
    summary = rig.sent[-1]
    assert len(summary.summary_of) == 97 and summary.text.startswith("97 more alarm(s)")
    # the next window starts afresh
    rig.raise_(alarm_id=500, device="d500")
    rig.clock.advance(0)
    assert len(rig.sent) == 5 and rig.sent[-1].summary_of == ()


def test_a_restart_resumes_on_time_and_sends_nothing_twice():
    store = Memory()
    rig = Rig(store=store)
    r = rig.raise_()
    rig.clock.advance(10)
    rig.esc.stop()  # the hub stops 10 s after the raise
    assert store.rows[1][1:] == (1, r.first_ts + 300, r.first_ts)
    again = Rig(store=store, start=r.first_ts + 100)
    again.records[1] = r
    again.esc.start()
    again.clock.advance(199)
    assert again.sent == []
    again.clock.advance(1)
    assert again.recipients() == ["2"]
    # a step due while the hub was down goes at once; a step already sent is not repeated
    late = Rig(store=store, start=r.first_ts + 2000)
    late.records[1] = r
    store.rows[1] = ("p1", 1, r.first_ts + 300, r.first_ts)
    late.esc.start()
    late.clock.advance(0)
    # step 1 was sent before (claimed): not again; step 2, overdue, at once
    assert late.recipients() == ["3"]


def test_policies_from_json_and_their_checks():
    p = policy_from_dict({"steps": [{"delay": 0, "channel": "sms", "role": "operator"}],
                          "repeat_interval": 600, "quiet_hours": {"start": "22:00",
                                                                  "end": "07:30"}})
    assert p.quiet_hours == (1320, 450) and p.steps[0].role == "operator"
    problems = check_policy({"steps": [{"delay": 60, "channel": "pager", "role": "x"},
                                       {"delay": 0, "channel": "sms"}]}, ["sms"])
    assert len(problems) == 3


def test_an_alarm_raised_before_the_policy_is_adopted_from_now():
    rig = Rig()
    rig.policy = None
    r = rig.raise_()
    rig.clock.advance(1000)
    assert rig.sent == []
    rig.policy = LADDER
    rig.esc.adopt(r)
    rig.clock.advance(0)
    assert rig.recipients() == ["1"]
    rig.clock.advance(300)
    assert rig.recipients() == ["1", "2"]
    rig.esc.adopt(r)  # adopting twice changes nothing
    rig.clock.advance(0)
    assert len(rig.sent) == 2


def test_one_write_per_reactor_turn_however_many_ladders_move():
    rig = Rig(Policy(steps=(Step(0, "sms", ("+8613800000001",)),
                            Step(60, "sms", ("+8613800000002",))), storm_limit=10**6))
    for i in range(1, 501):
        rig.raise_(alarm_id=i, device=f"d{i}")
    rig.clock.advance(0)
    assert len(rig.sent) == 500 and len(rig.store.rows) == 500
    writes = rig.store.writes
    rig.clock.advance(60)
    assert len(rig.sent) == 1000 and rig.store.rows == {}
    assert rig.store.writes - writes == 1


class Failing(Memory):
    """The store failing ``n`` times in ``what`` (apply, records or claim), then working."""

    def __init__(self, what, n=1):
        super().__init__()
        self.what, self.left = what, n

    def _maybe_fail(self, what):
        if self.what == what and self.left:
            self.left -= 1
            raise OSError(f"{what}: database is locked")

    def apply(self, saves, drops):
        self._maybe_fail("apply")
        super().apply(saves, drops)

    def records(self, ids):
        self._maybe_fail("records")
        return super().records(ids)

    def claim(self, notes, ts):
        self._maybe_fail("claim")
        return super().claim(notes, ts)


def test_a_failed_ladder_write_is_kept_and_written_again():
    rig = Rig(Policy(steps=(Step(60, "sms", ("+8613800000001",)),)), store=Failing("apply", 2))
    for i in range(1, 4):
        rig.raise_(alarm_id=i, device=f"d{i}")
    rig.clock.advance(0)
    assert rig.store.rows == {} and rig.esc.failures == 1
    rig.clock.advance(0.5)
    assert rig.esc.failures == 2
    rig.clock.advance(1)
    assert set(rig.store.rows) == {1, 2, 3} and rig.esc.failures == 0
    rig.clock.advance(60)
    assert len(rig.sent) == 3 and rig.store.rows == {}


def test_steps_due_when_the_store_fails_are_taken_after_the_backoff():
    for what in ("records", "claim"):
        rig = Rig(Policy(steps=(Step(60, "sms", ("+8613800000001",)),), storm_limit=100),
                  store=Failing(what))
        for i in range(1, 4):
            rig.raise_(alarm_id=i, device=f"d{i}")
        rig.clock.advance(60)
        assert rig.sent == [] and rig.esc.failures == 1, what
        rig.clock.advance(0.5)
        assert sorted(n.alarm_id for n in rig.sent) == [1, 2, 3], what
        assert rig.store.rows == {} and len(rig.store.claimed) == 3, what
