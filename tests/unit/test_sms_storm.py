"""Storm control and escalation, sans-IO: time is a number passed in."""

from __future__ import annotations

from plugins.sinks.sms.escalation import Escalations
from plugins.sinks.sms.storm import Item, StormControl, StormSettings

P = "+8613800138000"


def item(n, dedup=None, raise_=True):
    return Item(f"k{n}", f"d{n}" if dedup is None else dedup, raise_)


def keys(releases):
    return [[i.key for i in r.items] for r in releases]


def test_a_lone_alarm_goes_at_once():
    s = StormControl(StormSettings())
    assert s.offer(P, item(1), 0.0)
    assert keys(s.release(0.0)) == [["k1"]]
    assert s.release(0.0) == [] and s.next_due() is None


def test_the_same_alarm_is_not_resent_within_the_window_but_a_recovery_is():
    s = StormControl(StormSettings(dedup_window=600))
    assert s.offer(P, item(1, "efd-1/temperature/T1"), 0)
    assert not s.offer(P, item(2, "efd-1/temperature/T1"), 100)  # raised again: suppressed
    assert s.offer(P, item(3, "efd-1/temperature/T1", raise_=False), 200)  # recovered: told
    assert s.offer(P, item(4, "efd-1/temperature/T1"), 300)  # raised again: the phone must know
    assert not s.offer(P, item(5, "efd-1/temperature/T1", raise_=False), 400)  # flapping
    assert not s.offer(P, item(6, "efd-1/temperature/T1"), 500)  # the phone believes "raised"
    assert s.offer(P, item(7, "efd-1/temperature/T1"), 1000)  # window over
    assert s.offer(P, item(8, ""), 1001) and s.offer(P, item(9, ""), 1002)  # escalations
    assert s.offer("+8613900139000", item(10, "efd-1/temperature/T1"), 1003)  # another phone


def test_many_alarms_become_one_summary_then_the_phone_is_held():
    s = StormControl(StormSettings(summary_after=3, summary_window=120, rate_limits=()))
    for n in range(3):
        s.offer(P, item(n), n)
        assert keys(s.release(n)) == [[f"k{n}"]]
    for n in range(3, 10):  # the fourth within 120 s: held for the window
        s.offer(P, item(n), 10 + n)
        assert s.release(10 + n) == []
    assert s.next_due() == 13 + 120
    assert keys(s.release(133)) == [[f"k{n}" for n in range(3, 10)]]


def test_what_arrives_while_the_phone_is_busy_goes_as_one():
    s = StormControl(StormSettings(rate_limits=()))
    s.offer(P, item(1), 0)
    assert keys(s.release(0)) == [["k1"]]
    s.offer(P, item(2), 0.1)
    s.offer(P, item(3), 0.2)
    assert s.release(0.3, busy={P}) == []
    assert keys(s.release(0.4)) == [["k2", "k3"]]


def test_rate_limits_hold_and_aggregate_never_drop():
    s = StormControl(StormSettings(summary_after=100, rate_limits=((2, 60.0),)))
    sent = []
    for n in range(10):
        s.offer(P, item(n), n * 5)
        sent += keys(s.release(n * 5))
    assert sent == [["k0"], ["k1"]]
    assert s.next_due() == 60.0  # the first send leaves the window
    sent += keys(s.release(60.0))
    assert sent[-1] == [f"k{n}" for n in range(2, 10)]
    assert sum(len(x) for x in sent) == 10


def test_rate_limit_history_survives_a_restart():
    s = StormControl(StormSettings(rate_limits=((1, 60.0),)))
    s.note_sent(P, 0.0)
    s.offer(P, item(1), 10)
    assert s.release(10) == [] and s.next_due() == 60.0


def test_escalation_ladder_ack_and_clear():
    e = Escalations()
    e.start("a1", 0, ("mgr", "director"), 600, 0.0)
    e.start("a1", 0, ("mgr", "director"), 600, 50.0)  # again (a restart): no change
    assert e.next_due() == 600 and e.due(599) == []
    [step] = e.due(600)
    assert (step.group, step.level, step.overdue) == ("mgr", 1, 600)
    e.ack("a1")
    assert e.due(5000) == [] and e.next_due() is None
    assert e.stop("a1") == ["mgr"]  # the recovery also goes to the group it reached
    e.start("a2", 1, ("mgr", "director"), 60, 0.0)
    steps = e.due(1000)
    assert [(s.group, s.overdue) for s in steps] == [("mgr", 60), ("director", 120)]
    assert not e.watching("a2")
