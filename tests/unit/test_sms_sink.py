"""The sms sink on a task.Clock with the ``recording`` test provider
(tests/support/plugins), installed through a real entry point."""

from __future__ import annotations

import importlib
import random

import pytest

from hub.admin import AdminProtocol
from hub.model import (
    Acknowledgement,
    DeliveryStatus,
    Event,
    EventKind,
    EventState,
    Level,
)
from hub.validate import ConfigError
from plugins.sinks.sms.sink import SmsSink
from tests.support.distribution import PLUGINS, write_distribution

A, B, M = "+8613800138000", "+8613900139000", "+8613700137000"


@pytest.fixture
def control(site_dir):
    write_distribution(site_dir, "hubtest-sms", {"hubtest_sms": "hubtest_sms"},
                       {"hubtest_sms": (PLUGINS / "hubtest_sms.py").read_text()})
    importlib.invalidate_caches()
    module = importlib.import_module("hubtest_sms")
    module.CONTROL.reset()
    return module.CONTROL


def config(**options):
    sink = {"type": "sms", "provider": {"type": "recording"},
            "recipients": {"duty": ["13800138000", "139-0013-9000"], "mgr": ["+8613700137000"]},
            "routes": [{"notify": ["duty"], "escalate": ["mgr"], "escalate_after": 600}],
            "rate_limits": [], **options}
    return {"sinks": {"sms": sink},
            "devices": [{"id": f"efd-{i}", "model": "simulated", "project": "campus-a",
                         "name": f"{i}号配电箱", "location": "A栋1层", "group": "配电房",
                         "heartbeat": {"interval": 86400 * 7, "timeout_count": 100}}
                        for i in range(1, 31)]}


@pytest.fixture
def start(make_hub, control):
    def start(hub=None, **options):
        hub = hub or make_hub(config(**options))
        sink = SmsSink(hub, "sms", hub.config.sinks["sms"].options, rng=random.Random(3))
        sink.startService()
        return hub, sink

    return start


def raise_(hub, n=1, state=EventState.RAISED, kind=EventKind.ALARM, code="temperature",
           level=Level.ALARM, **kw):
    now = hub.clock.seconds()
    e = Event(device=f"efd-{n}", kind=kind, code=code, state=state, ts=now, level=level,
              channel="T1", id=f"a{n}", value=92.5, set_point=80.0,
              raised_ts=now - 60 if state is EventState.CLEARED else None, **kw)
    hub.journal.append([e])
    hub.journal.flush()
    return hub.journal.last_seq()


def deliveries(hub):
    return [r for _, r in hub.journal.read(0, 100000, {"delivery"})]


def tick(hub, seconds=0.2):
    hub.clock.advance(seconds)
    hub.journal.flush()
    hub.clock.advance(0)


def test_config_errors_name_the_key_path(make_hub, control):
    with pytest.raises(ConfigError) as e:
        make_hub(config(recipients={"duty": ["13800138000", "12345"], "x y": ["13800138000"]},
                        routes=[{"notify": ["nobody"], "kinds": ["fire"]}],
                        provider={"type": "recording", "max_parts": 99},
                        time_zone="Mars/Base", templates={"alarm": "{colour}"}))
    text = str(e.value)
    assert "test.yaml: sinks.sms.recipients.duty[1]: '12345' is neither" in text
    assert "sinks.sms.recipients.x y" in text
    assert "sinks.sms.routes[0].notify: 'nobody' is not a recipient group" in text
    assert "sinks.sms.routes[0].kinds: 'fire' is not one of alarm, fault, offline" in text
    assert "sinks.sms.provider.max_parts: 99 is outside 1..10" in text
    assert "sinks.sms.time_zone" in text and "sinks.sms.templates.alarm" in text
    with pytest.raises(ConfigError, match="sinks.sms.provider.type: 'carrier-pigeon' is not a "
                                          "known SMS provider"):
        make_hub(config(provider={"type": "carrier-pigeon"}))


def test_alarm_is_texted_recorded_and_the_cursor_moves(start, control):
    hub, sink = start()
    seq = raise_(hub)
    tick(hub)
    assert [m.phones for m in control.sent] == [(A,), (B,)]
    m = control.sent[0]
    assert m.template == "alarm" and m.params["value"] == "92.5" and m.params["unit"] == "°C"
    assert m.text.startswith("【电气火灾报警】A栋1层 1号配电箱T1温度报警：温度92.5°C")
    recs = deliveries(hub)
    assert [(d.target, d.status, d.message_id, d.event_ids) for d in recs] == [
        (A, DeliveryStatus.SENT, "m1", ("a1",)), (B, DeliveryStatus.SENT, "m2", ("a1",))]
    assert hub.journal.get_cursor("sms") >= seq
    assert hub.metrics.value("sms.alarm_latency_seconds", sink="sms") == pytest.approx(0.2)


def test_alarm_latency_histogram_gives_p50_and_p99(start, control):
    """Six alarms texted 1 s after they were raised, four held by storm control for two
    minutes: the buckets count every alarm, p50 is 1 s, p99 the held ones."""
    hub, sink = start(routes=[{"notify": ["mgr"]}], summary_after=6, summary_window=300)
    for n in range(1, 11):
        raise_(hub, n)
        tick(hub, 1)
    tick(hub, 120)
    tick(hub, 300)
    assert [m.template for m in control.sent] == ["alarm"] * 6 + ["summary"]
    buckets = {m["labels"]["le"]: m["value"] for m in hub.metrics.snapshot()
               if m["name"] == "sms.alarm_latency_ms"}
    assert buckets == {"1000": 6, "600000": 4}
    assert hub.metrics.value("sms.alarm_latency_p50_ms", sink="sms") == 1000
    assert hub.metrics.value("sms.alarm_latency_p99_ms", sink="sms") == 600_000
    # a latency beyond the last bucket: the longest seen, not infinity
    sink._latencies([7200.0] * 10)
    assert hub.metrics.value("sms.alarm_latency_p99_ms", sink="sms") == 7_200_000


def test_escalation_after_the_configured_time_and_ack_stops_it(start, control):
    hub, sink = start(routes=[{"notify": ["duty"], "escalate": ["mgr", "duty"],
                               "escalate_after": 600}])
    raise_(hub, 1)
    raise_(hub, 2)
    tick(hub)
    assert len(control.sent) == 2  # a1 alone, then a2 (phone A was in flight: own message)
    ack = AdminProtocol(hub).op_ack({"op": "ack", "event_id": "a2", "by": "alice",
                                     "note": "on site"})
    tick(hub)
    assert ack.result == {"ok": True, "event_id": "a2", "device": "efd-2",
                          "seq": hub.journal.last_seq() - 0}
    control.sent.clear()
    tick(hub, 599)
    assert control.sent == []
    tick(hub, 1.0)
    [esc] = control.sent
    assert esc.phones == (M,) and "10分钟未确认，升级通知（第1级）" in esc.text
    assert "2号配电箱" not in esc.text  # a2 was acknowledged
    # recovery goes to duty and to the manager the alarm reached
    control.sent.clear()
    raise_(hub, 1, state=EventState.CLEARED)
    tick(hub)
    assert sorted(m.phones[0] for m in control.sent) == sorted([A, B, M])
    assert all(m.template == "recovery" and "持续1分" in m.text for m in control.sent)
    assert not sink.escalations.watching("a1")
    [a] = hub.journal.acknowledgements("efd-2")
    assert (a.event_id, a.by, a.note) == ("a2", "alice", "on site")


def test_ack_refuses_unknown_events(start, control):
    hub, sink = start()
    answer = AdminProtocol(hub).op_ack({"op": "ack", "event_id": "nope", "by": "alice"})
    assert answer == {"ok": False, "error": "no event with id 'nope' in the journal"}
    assert AdminProtocol(hub).op_ack({"op": "ack", "event_id": "nope"})["ok"] is False


@pytest.mark.parametrize("storm, expected", [
    # two singles, then the phone is held 60 s and the rest is one summary
    ({"summary_after": 2, "summary_window": 60}, ["alarm", "alarm", "summary"]),
    # three singles, then the limit holds the rest until the first send leaves the window
    ({"summary_after": 100, "rate_limits": [{"count": 3, "per": 600}]},
     ["alarm", "alarm", "alarm", "summary"]),
])
def test_storm_becomes_summaries_and_respects_rate_limits(start, control, storm, expected):
    hub, sink = start(routes=[{"notify": ["duty"]}], **storm)
    for n in range(1, 21):
        raise_(hub, n)
        tick(hub, 1)
    assert hub.journal.get_cursor("sms") < hub.journal.last_seq()  # held: not passed
    tick(hub, 3600)
    to_a = [m for m in control.sent if m.phones == (A,)]
    assert [m.template for m in to_a] == expected
    covered = [k for d in deliveries(hub) if d.target == A and d.status is DeliveryStatus.SENT
               for k in d.items]
    assert sorted(covered) == sorted(f"a{n}:raised:0" for n in range(1, 21))  # none dropped
    rest = 21 - len(expected)
    assert f"{rest}条新消息（报警{rest}）" in to_a[-1].text
    assert to_a[-1].params["count"] == str(rest)
    assert not sink.pending and hub.journal.get_cursor("sms") >= hub.journal.last_seq() - 2


def test_provider_outage_mid_storm_loses_nothing_and_duplicates_nothing(start, control):
    hub, sink = start(routes=[{"notify": ["duty"]}], summary_after=3, summary_window=30,
                      retry_initial=1, retry_max=20)
    seqs = {}
    for n in range(1, 41):
        if n == 10:
            control.mode = "down"
        seqs[n] = raise_(hub, n)
        tick(hub, 0.5)
        if 10 <= n:
            unsent = min(s for k, s in seqs.items() if k >= 10)
            assert hub.journal.get_cursor("sms") < unsent  # never past an unsent alarm
    tick(hub, 60)
    assert control.mode == "down" and len(control.attempts) > len(control.sent)
    control.mode = "ok"
    for _ in range(20):
        tick(hub, 10)
    for phone in (A, B):
        covered = [k for d in deliveries(hub) if d.target == phone
                   and d.status is DeliveryStatus.SENT for k in d.items]
        assert sorted(covered) == sorted(f"a{n}:raised:0" for n in range(1, 41)), phone
    accepted_keys = [m.key for m in control.sent]
    assert len(accepted_keys) == len(set(accepted_keys))  # each message accepted once
    assert any(d.status is DeliveryStatus.RETRY for d in deliveries(hub))
    assert hub.journal.get_cursor("sms") >= seqs[40]
    assert not sink.pending and not sink.retrying


def test_transient_result_is_retried_with_backoff(start, control):
    hub, sink = start(routes=[{"notify": ["mgr"]}], retry_initial=2, retry_max=8)
    control.mode = "busy"
    seq = raise_(hub)
    tick(hub)
    times = []
    for _ in range(40):
        n = len(control.attempts)
        tick(hub, 0.5)
        if len(control.attempts) > n:
            times.append(hub.clock.seconds())
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert all(g <= 8.5 for g in gaps) and max(gaps) > 3  # doubling, capped
    assert hub.journal.get_cursor("sms") < seq
    control.mode = "ok"
    tick(hub, 10)
    assert len(control.sent) == 1 and hub.journal.get_cursor("sms") >= seq
    assert len({m.key for m in control.attempts}) == 1  # the same message each time


def test_permanent_failure_is_recorded_and_raises_a_fault(start, control):
    control.bad_phones = {B}
    hub, sink = start(routes=[{"notify": ["duty"], "kinds": ["alarm"]}])
    seq = raise_(hub)
    tick(hub)
    recs = {d.target: d for d in deliveries(hub)}
    assert recs[A].status is DeliveryStatus.SENT
    assert recs[B].status is DeliveryStatus.FAILED and recs[B].detail == "invalid number"
    [fault] = [e for e in hub.journal.active_events() if e.code == "sms_delivery_failed"]
    assert fault.kind is EventKind.FAULT and B in fault.message
    assert hub.journal.get_cursor("sms") >= seq  # refused for good: not retried forever
    raise_(hub, 2)
    tick(hub)
    assert len([e for e in hub.journal.events("hub") if e.code == "sms_delivery_failed"]) == 1


def test_same_alarm_within_window_is_suppressed_and_recorded(start, control):
    hub, sink = start(routes=[{"notify": ["mgr"]}])
    raise_(hub, 1)
    tick(hub)
    e = Event(device="efd-1", kind=EventKind.ALARM, code="temperature",
              state=EventState.RAISED, ts=hub.clock.seconds(), channel="T1", id="a1-again",
              value=95.0)
    hub.journal.append([e])
    seq = hub.journal.flush()
    tick(hub)
    assert len(control.sent) == 1
    assert [d.status for d in deliveries(hub)] == [DeliveryStatus.SENT,
                                                   DeliveryStatus.SUPPRESSED]
    assert hub.journal.get_cursor("sms") >= seq  # suppressed: settled


def test_restart_resends_only_what_was_not_delivered(start, control, make_hub):
    hub, sink = start(routes=[{"notify": ["duty"]}])
    control.mode = "hold"
    raise_(hub)
    tick(hub)
    (m1, d1), (m2, d2) = control.held
    d1.callback(None)  # phone A accepted; B still waiting when the hub stops
    tick(hub)
    sink.stopService()
    d2.callback(None)  # accepted after the stop: not recorded, so sent again (at least once)
    assert hub.journal.get_cursor("sms") == 0
    control.mode = "ok"
    control.sent.clear()
    hub2, sink2 = start(hub=hub)
    tick(hub2)
    assert [m.phones for m in control.sent] == [(B,)]
    assert not sink2.pending and hub.journal.get_cursor("sms") >= 1


def again(hub, n, state=EventState.RAISED, id_=""):
    """Alarm ``n`` (same device, code, channel) once more, as a new event."""
    now = hub.clock.seconds()
    e = Event(device=f"efd-{n}", kind=EventKind.ALARM, code="temperature", state=state,
              ts=now, level=Level.ALARM, channel="T1", id=id_ or f"a{n}-{now:g}", value=95.0,
              raised_ts=now - 1 if state is EventState.CLEARED else None)
    hub.journal.append([e])
    return hub.journal.flush()


@pytest.mark.parametrize("restart", [False, True])
def test_dedup_window_holds_across_a_restart(start, control, restart):
    """A phone told of an alarm a minute ago is not told again when it flaps, whether or
    not the hub restarted in between (the window is restored from the deliveries)."""
    hub, sink = start(routes=[{"notify": ["mgr"], "kinds": ["alarm"]}])
    raise_(hub, 1)
    tick(hub)
    raise_(hub, 1, state=EventState.CLEARED)  # recoveries are not routed: the phone
    tick(hub, 30)                               # still believes "raised"
    if restart:
        sink.stopService()
        hub, sink = start(hub=hub)
    tick(hub, 30)
    seq = again(hub, 1)
    tick(hub)
    assert [m.params["event_id"] for m in control.sent] == ["a1"]
    assert [d.status for d in deliveries(hub)] == [DeliveryStatus.SENT,
                                                   DeliveryStatus.SUPPRESSED]
    assert hub.journal.get_cursor("sms") >= seq
    tick(hub, 600)  # the window is over: told again
    again(hub, 1)
    tick(hub)
    assert len(control.sent) == 2


def test_a_recovery_told_before_a_restart_lets_the_next_raise_through(start, control):
    """Restored in order: raised, then recovered, told before the restart; raised again
    after it: the phone must hear of it. Recovered again at once: a flap, not told."""
    hub, sink = start(routes=[{"notify": ["mgr"]}], summary_after=100)
    raise_(hub, 1)
    tick(hub)
    raise_(hub, 1, state=EventState.CLEARED)
    tick(hub)
    sink.stopService()
    hub, sink = start(hub=hub)
    tick(hub, 10)
    again(hub, 1, id_="a1-second")
    tick(hub)
    again(hub, 1, state=EventState.CLEARED, id_="a1-second")
    tick(hub)
    assert [m.template for m in control.sent] == ["alarm", "recovery", "alarm"]
    assert [d.status for d in deliveries(hub)][-1] is DeliveryStatus.SUPPRESSED


def test_acknowledgement_read_from_the_journal_after_restart_stops_escalation(start, control):
    hub, sink = start()
    raise_(hub)
    tick(hub)
    sink.stopService()
    hub.journal.append([Acknowledgement("a1", "bob", hub.clock.seconds(), "efd-1")])
    hub.journal.flush()
    control.sent.clear()
    hub, sink = start(hub=hub)
    tick(hub, 700)
    assert control.sent == []  # acknowledged while the sink was down: no escalation
    assert "a1" in sink.acked and not sink.escalations.watching("a1")
    # the journal holds the two texts of before the restart, and nothing since
    assert [(d.target, d.status, d.items) for d in deliveries(hub)] == [
        (A, DeliveryStatus.SENT, ("a1:raised:0",)), (B, DeliveryStatus.SENT, ("a1:raised:0",))]


def test_readme_sms_example_is_a_valid_configuration():
    import re
    from pathlib import Path

    import yaml

    from hub.config import check_config
    from hub.pluginmanager import make_plugins

    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", readme, flags=re.S)
                 if "dedup_window" in b)
    cfg = check_config(yaml.safe_load(block), "README.md", make_plugins())
    options = cfg.sinks["sms"].options
    assert options.recipients["duty"] == ("+8613800138000", "+8613900139000")
    assert options.routes[0].escalate == ("managers",)


def test_a_provider_send_deadline_longer_than_send_timeout_is_waited_for(start, control):
    """A provider that queues (a GSM modem) says how long a send may take; the sink does
    not give up sooner, which would only send the same text twice."""
    hub, sink = start(routes=[{"notify": ["duty"]}])
    sink.provider.send_deadline = 100.0
    control.mode = "hold"
    raise_(hub)
    tick(hub)
    assert len(control.attempts) == 2
    for _ in range(45):  # 90 s: past send_timeout (30 s), within the provider's deadline
        tick(hub, 2.0)
    assert len(control.attempts) == 2 and not deliveries(hub)
    for _ in range(10):  # past the deadline: the attempt counts as failed and is retried
        tick(hub, 2.0)
    assert len(control.attempts) > 2
