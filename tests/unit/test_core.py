"""The hub's data path on a task.Clock: ingest → presence → alarms → journal → observers."""

from __future__ import annotations

import pytest

from hub import hookimpl
from hub.model import EventState, Reading
from tests.support.fakes import CONFIG, FakeTarget


class Recorder:
    """An observer plugin that writes down what it was told."""

    def __init__(self):
        self.calls = []

    @hookimpl
    def hub_event_recorded(self, event):
        self.calls.append(("event", event.code, event.level.value, event.state.value, event.id))

    @hookimpl
    def hub_device_offline(self, device, last_seen):
        self.calls.append(("offline", device, last_seen))

    @hookimpl
    def hub_device_online(self, device):
        self.calls.append(("online", device))


def temp(value, ts, device="d1"):
    return Reading(device, "temperature", value, ts, "T1")


def commit(hub, d):
    """Let the group commit run and return the Deferred's result."""
    hub.clock.advance(hub.config.journal.commit_interval)
    results = []
    d.addBoth(results.append)
    assert results, "ingest did not complete after the commit interval"
    return results[0]


def test_ingest_commits_before_its_deferred_fires(make_hub):
    """The Deferred from ingest fires after the records are committed, with their seq."""
    hub = make_hub(CONFIG)
    now = hub.clock.seconds()
    d = hub.ingest("d1", [temp(25.0, now), Reading("d1", "voltage", 221.5, now, "A")])
    fired = []
    d.addCallback(fired.append)
    assert fired == [] and hub.journal.last_seq() == 0
    hub.clock.advance(hub.config.journal.commit_interval)
    assert fired == [2]
    assert {(r.quantity, r.value) for r in hub.journal.latest("d1")} == {
        ("temperature", 25.0), ("voltage", 221.5)}


def test_threshold_alarm_is_journaled_and_observed_after_commit(make_hub):
    """Crossing the set point raises warning and alarm; observers hear of them after commit;
    the clear carries the same id and the peak."""
    rec = Recorder()
    hub = make_hub(CONFIG, extra_plugins=[("recorder", rec)])
    t = hub.clock.seconds()
    d = hub.ingest("d1", [temp(85.0, t)])
    assert rec.calls == []  # not before the commit
    commit(hub, d)
    assert [c[1:4] for c in rec.calls] == [("temperature", "warning", "raised"),
                                           ("temperature", "alarm", "raised")]
    alarm_id = rec.calls[1][4]
    commit(hub, hub.ingest("d1", [temp(90.0, t + 1)]))
    assert len(rec.calls) == 2  # still raised: nothing new
    commit(hub, hub.ingest("d1", [temp(65.0, t + 2)]))
    cleared = [e for e in hub.journal.events("d1") if e.state is EventState.CLEARED]
    assert {e.level.value for e in cleared} == {"warning", "alarm"}
    alarm_clear = next(e for e in cleared if e.level.value == "alarm")
    assert alarm_clear.id == alarm_id and alarm_clear.peak == 90.0
    assert alarm_clear.duration == pytest.approx(2.0)
    assert hub.journal.active_events() == []


def test_silent_device_goes_offline_and_comes_back(make_hub):
    """A device silent for interval × count raises an offline fault; data clears it."""
    rec = Recorder()
    hub = make_hub(CONFIG, extra_plugins=[("recorder", rec)])
    hub.clock.advance(9.9)  # d2: 5 s × 2
    assert not [c for c in rec.calls if c[0] == "offline"]
    hub.clock.advance(0.2)
    hub.clock.advance(hub.config.journal.commit_interval)
    assert ("offline", "d2", None) in rec.calls
    active = hub.journal.active_events()
    assert [(e.device, e.code) for e in active] == [("d2", "offline")]
    commit(hub, hub.ingest("d2", [temp(20.0, hub.clock.seconds(), "d2")]))
    assert ("online", "d2") in rec.calls
    assert hub.journal.active_events() == []


def test_heartbeat_counts_as_liveness(make_hub):
    """Heartbeats without data keep a device online."""
    hub = make_hub(CONFIG)
    for _ in range(10):
        hub.clock.advance(4)
        hub.heartbeat("d2")
    hub.clock.advance(0.1)
    assert hub.presence.is_online("d2") is True
    assert [e.device for e in hub.journal.active_events()] == ["d1"]  # d1 sent nothing


def test_active_alarm_and_offline_survive_a_restart(make_hub, tmp_path):
    """After a restart an alarm already raised is not raised again, its clear is not lost,
    and an offline device is not reported offline twice."""
    hub = make_hub(CONFIG)
    t = hub.clock.seconds()
    commit(hub, hub.ingest("d1", [temp(85.0, t)]))
    hub.clock.advance(20)  # d2 offline
    hub.clock.advance(hub.config.journal.commit_interval)
    raised = {e.id: e for e in hub.journal.active_events()}
    assert len(raised) == 3  # warning, alarm, offline
    hub.close()

    rec = Recorder()
    hub2 = make_hub(CONFIG, extra_plugins=[("recorder", rec)])
    t2 = hub2.clock.seconds()
    commit(hub2, hub2.ingest("d1", [temp(88.0, t2)]))
    hub2.clock.advance(25)  # long enough for a second offline of d2, short of d1's 30 s
    hub2.clock.advance(hub2.config.journal.commit_interval)
    assert [c for c in rec.calls if c[0] == "offline" or c[3] == "raised"] == []
    commit(hub2, hub2.ingest("d1", [temp(60.0, t2 + 26)]))
    cleared = {c[4] for c in rec.calls if c[0] == "event" and c[3] == "cleared"}
    assert cleared == {i for i, e in raised.items() if e.device == "d1"}
    alarm = next(e for e in hub2.journal.events("d1") if e.state is EventState.CLEARED
                 and e.level.value == "alarm")
    assert alarm.peak == 88.0 and alarm.raised_ts == t


def test_events_of_a_failed_commit_are_journaled_later(make_hub):
    """A commit that fails (a full disk) with an alarm's raise in it: the alarm engine will
    not raise it again, so the hub appends the events again until the journal takes them;
    the ingest itself still fails, so the transport does not acknowledge its readings."""
    rec = Recorder()
    hub = make_hub(CONFIG, extra_plugins=[("recorder", rec)])
    t = hub.clock.seconds()
    commit(hub, hub.ingest("d1", [temp(25.0, t)]))
    db = hub.journal._db
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")  # a full disk, in effect
    filler = [Reading("d1", "voltage", 220.0 + i % 7, t, "A") for i in range(4000)]
    result = commit(hub, hub.ingest("d1", [temp(85.0, t + 1)] + filler))
    assert result.check(Exception) and hub.metrics.value("journal.event_retries") == 1
    assert [e for e in hub.journal.active_events() if e.device == "d1"] == []
    db.execute("PRAGMA max_page_count = 1073741823")  # room again
    hub.clock.advance(1.0)  # the first retry
    hub.clock.advance(hub.config.journal.commit_interval)
    raised = sorted(e.level.value for e in hub.journal.active_events() if e.device == "d1")
    assert raised == ["alarm", "warning"]
    assert sorted(c[2] for c in rec.calls if c[0] == "event") == ["alarm", "warning"]
    hub.clock.advance(120)
    assert hub.metrics.value("journal.event_retries") == 1  # nothing appended twice
    assert len([e for e in hub.journal.events("d1")]) == 2


def test_unknown_device_is_refused_and_counted(make_hub):
    """resolve() refuses an identity nobody declared and counts it."""
    hub = make_hub(CONFIG)
    assert hub.resolve("sim", "no-such-profile") is None
    assert hub.metrics.value("registry.refused", transport="sim") == 1
    assert hub.resolve("sim", "normal").id == "d1"


def test_auto_provisioning_rule_accepts_matching_identity(make_hub):
    """With provisioning on, a matching identity becomes a device with the rule's model."""
    cfg = dict(CONFIG, provisioning={"enabled": True, "rules": [
        {"transport": "sim", "match": "8612[0-9]{11}", "model": "simulated",
         "project": "p1", "name": "auto {id}"}]})
    hub = make_hub(cfg)
    dev = hub.resolve("sim", "861234567890123")
    assert dev.id == "861234567890123" and dev.project == "p1" and dev.provisioned
    assert dev.name == "auto 861234567890123"
    assert hub.resolve("sim", "12345") is None
    assert hub.metrics.value("registry.provisioned") == 1
    assert hub.presence.is_online(dev.id) is None  # tracked: it will time out if silent


def test_provisioned_device_presence_survives_a_restart(make_hub):
    """An auto-provisioned device lives only in the journal: after a restart its offline
    fault still clears when it returns, and one that never returns still goes offline."""
    cfg = dict(CONFIG, provisioning={"enabled": True, "rules": [
        {"transport": "sim", "match": "8612[0-9]{11}", "model": "simulated"}]})
    hub = make_hub(cfg)
    t = hub.clock.seconds()
    for ident in ("861234567890123", "861234567890124"):
        dev = hub.resolve("sim", ident)
        commit(hub, hub.ingest(dev.id, [temp(25.0, t, dev.id)]))
    hub.clock.advance(31)  # both silent past the hub's 10 s × 3
    hub.clock.advance(hub.config.journal.commit_interval)
    offline = {e.device: e.id for e in hub.journal.active_events() if e.code == "offline"}
    assert {"861234567890123", "861234567890124"} <= set(offline)
    hub.close()

    rec = Recorder()
    hub2 = make_hub(cfg, extra_plugins=[("recorder", rec)])
    dev = hub2.resolve("sim", "861234567890123")
    commit(hub2, hub2.ingest(dev.id, [temp(26.0, hub2.clock.seconds(), dev.id)]))
    assert ("event", "offline", "fault", "cleared", offline[dev.id]) in rec.calls
    still = {e.device for e in hub2.journal.active_events() if e.code == "offline"}
    assert "861234567890124" in still and dev.id not in still
    assert hub2.presence.is_online("861234567890124") is False  # no second offline event
    assert not [c for c in rec.calls if c[0] == "offline"]


def test_provisioned_device_that_never_returns_goes_offline_after_a_restart(make_hub):
    cfg = dict(CONFIG, provisioning={"enabled": True, "rules": [
        {"transport": "sim", "match": "8612[0-9]{11}", "model": "simulated"}]})
    hub = make_hub(cfg)
    dev = hub.resolve("sim", "861234567890123")
    commit(hub, hub.ingest(dev.id, [temp(25.0, hub.clock.seconds(), dev.id)]))
    hub.close()
    rec = Recorder()
    hub2 = make_hub(cfg, extra_plugins=[("recorder", rec)])
    hub2.clock.advance(31)
    hub2.clock.advance(hub2.config.journal.commit_interval)
    assert dev.id in [c[1] for c in rec.calls if c[0] == "offline"]


class CommandRecorder:
    def __init__(self):
        self.finished = []

    @hookimpl
    def hub_command_finished(self, command, result):
        self.finished.append((command.id, result.status.value))


@pytest.mark.parametrize("answer,status", [("ok", "succeeded"), ("refuse", "failed"),
                                           ("never", "timed_out")])
def test_command_lifecycle_is_journaled_and_observed(make_hub, answer, status):
    """A command is journaled, sent to the device's transport, ends succeeded, failed or
    timed out (after its ttl on the clock), and the observers hear the final status."""
    from hub.model import Command, CommandResult

    rec = CommandRecorder()
    hub = make_hub(CONFIG, extra_plugins=[("recorder", rec)])
    target = FakeTarget(answer)
    hub.commands.register_target("sim", target)
    cmd = Command("c1", "d1", "reset", hub.clock.seconds(), ttl=10, requested_by="op")
    results = []
    hub.commands.execute(cmd).addCallback(results.append)
    hub.clock.advance(10.001)
    hub.clock.advance(hub.config.journal.commit_interval)
    assert target.sent == [("d1", "reset")]
    assert [r.status.value for r in results] == [status]
    assert rec.finished == [("c1", status)]
    kinds = [type(r).__name__ for _, r in hub.journal.read(0, 100, {"command", "command_result"})]
    assert kinds == ["Command", "CommandResult"]
    assert isinstance(results[0], CommandResult)


def test_command_for_unknown_device_or_action_is_refused(make_hub):
    """Commands that cannot be carried are refused at once with a clear reason."""
    from hub.commands import CommandError
    from hub.model import Command

    hub = make_hub(CONFIG)
    with pytest.raises(CommandError, match="unknown device 'zz'"):
        hub.commands.execute(Command("c", "zz", "reset", 0.0))
    with pytest.raises(CommandError, match="unknown command action 'explode'"):
        hub.commands.execute(Command("c", "d1", "explode", 0.0))
    with pytest.raises(CommandError, match="no running transport"):
        hub.commands.execute(Command("c", "d1", "reset", 0.0))


def test_non_canonical_readings_are_dropped_counted_and_logged(make_hub):
    """A model bug (unknown quantity, bad channel, NaN) costs only the bad records: they are
    counted per model, and the good readings of the same frame are committed."""
    hub = make_hub(CONFIG)
    now = hub.clock.seconds()
    frame = [temp(25.0, now), Reading("d1", "temprature", 1.0, now, "T1"),
             Reading("d1", "voltage", 220.0, now, "phase-A"),
             Reading("d1", "voltage", float("nan"), now, "A"),
             Reading("d1", "voltage", 221.0, now, "B")]
    commit(hub, hub.ingest("d1", frame))
    assert sorted((r.quantity, r.channel) for r in hub.journal.latest("d1")) == [
        ("temperature", "T1"), ("voltage", "B")]
    assert hub.metrics.value("ingest.schema_errors", model="simulated") == 3


def test_non_finite_values_absurd_times_and_bad_events_are_dropped(make_hub):
    """An infinite value, a time that is not a Unix time of 1970..2100 (a decoder that read a
    counter as a clock) and a device event on a malformed channel never reach the journal,
    where they would stop a sink that cannot represent them; a good reading already seen
    under the same key still passes the cached check."""
    from hub.model import Event, EventKind

    hub = make_hub(CONFIG)
    now = hub.clock.seconds()
    commit(hub, hub.ingest("d1", [temp(25.0, now)]))
    frame = [temp(float("inf"), now), temp(26.0, float("inf")), temp(27.0, 1e12),
             temp(28.0, -5.0), temp(29.0, now + 1),
             Event("d1", EventKind.ALARM, "fault_arc", EventState.RAISED, now, channel="x1"),
             Event("d1", EventKind.ALARM, "fault_arc", EventState.RAISED, float("nan"))]
    commit(hub, hub.ingest("d1", frame))
    assert [(r.value, r.ts) for r in hub.journal.latest("d1")] == [(29.0, now + 1)]
    assert hub.metrics.value("ingest.schema_errors", model="simulated") == 6
    assert list(hub.journal.events("d1")) == []


def test_heartbeat_settings_resolve_device_then_model_then_hub(make_hub):
    """Offline-after is the device's setting, else its model section's, else the hub's."""
    cfg = dict(CONFIG, models={"sim60": {"type": "simulated",
                                         "heartbeat": {"interval": 60, "timeout_count": 2}}})
    cfg["devices"] = CONFIG["devices"] + [{"id": "d3", "model": "sim60"}]
    hub = make_hub(cfg)
    assert hub.registry.get("d2").offline_after == 10  # its own 5 s × 2
    assert hub.registry.get("d3").offline_after == 120  # the model section's 60 s × 2
    assert hub.registry.get("d1").offline_after == 30  # the hub's 10 s × 3


def test_histogram_counts_per_bucket_and_keeps_quantile_gauges():
    from hub.metrics import Histogram, Metrics

    m = Metrics()
    h = Histogram(m, "x_ms", (10, 20, 50), {0.5: "x_p50_ms", 0.99: "x_p99_ms"}, sink="s")
    assert h.quantile(0.5) is None
    for v in (1, 10, 11, 19, 49, 70, 3):
        h.observe(v)
    assert [m.value("x_ms", sink="s", le=le) for le in ("10", "20", "50", "+Inf")] == [3, 2, 1, 1]
    assert m.value("x_p50_ms", sink="s") == 20  # the 4th of 7 lies in the bucket up to 20
    assert m.value("x_p99_ms", sink="s") == 70  # beyond the last bound: the largest seen


def test_harmonic_orders_are_canonical_quantities():
    """Table 2's harmonic currents and voltages: orders 2..31 per phase, in % of the
    fundamental; error messages fold the orders into one entry."""
    from hub.model import QUANTITIES, SchemaError, quantity_names

    assert Reading("d1", "current_harmonic_5", 3.2, 1.0e9, "A").validate().unit == "%"
    assert QUANTITIES["voltage_harmonic_31"].label == "31次电压谐波含有率"
    with pytest.raises(SchemaError):
        Reading("d1", "current_harmonic_32", 1.0, 1.0e9, "A").validate()
    names = quantity_names()
    assert "current_harmonic_2..31" in names and "current_harmonic_5" not in names
    assert "residual_current" in names


def test_bucket_quantile_reads_a_histogram_snapshot():
    import math

    from hub.metrics import bucket_quantile

    counts = {1.0: 3, 2.0: 2, math.inf: 1}
    assert bucket_quantile(counts, 0.5) == 1.0
    assert bucket_quantile(counts, 0.8) == 2.0
    assert bucket_quantile(counts, 0.99) == math.inf
    assert math.isnan(bucket_quantile({}, 0.5))
