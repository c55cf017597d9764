"""The sink framework (hub.sinks) and the sink authors' harness (hub.testing): a tiny
example sink, the InfluxDB sink on the harness, the supervisor, lag by commit time,
rewinding a cursor through the admin socket, and the retention pass after a restart."""

from __future__ import annotations

import random

from twisted.internet import defer

from hub import hookimpl
from hub.admin import AdminProtocol
from hub.contracts import SinkType
from hub.model import EventState, Reading
from hub.service import HubService
from hub.sinks import BatchSink
from hub.testing import build_hub
from hub.validate import Checker, Path, Section
from plugins.sinks.influx_options import check_options as influx_options
from plugins.sinks.influx_sink import InfluxSink
from plugins.sinks.influx_writer import WriteError
from tests.support.audit import audit_rows

T = 1_767_225_600.0


class ListSink(BatchSink):
    """The whole of a sink on the framework: what a batch becomes, how it goes out."""

    def __init__(self, hub, name, options=None, *, send=None, rng=None):
        super().__init__(hub, name, options, rng=rng or random.Random(1))
        self.send = send

    def prepare(self, rows, end):
        return [(row[0], self.journal.record(row)) for row in rows]

    def deliver(self, payload):
        return self.send(payload)


class SimpleNamespace:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def seqs(payload):
    return [seq for seq, _ in payload]


def readings(n, start=0, ts=T):
    return [Reading("efd-1", "voltage", 220.0 + i, ts + i, "A") for i in range(start, start + n)]


def test_an_example_sink_redelivers_after_an_outage_and_loses_nothing(sink_harness):
    far = sink_harness.far_side()
    sink = sink_harness.start(ListSink(sink_harness.port, "mine", send=far))
    far.down()
    sink_harness.feed(readings(10))
    sink_harness.run(30)
    assert len(far.attempts) > 3 and far.accepted == []
    assert sink_harness.cursor("mine") == 0  # nothing accepted, nothing passed
    far.hold()
    sink_harness.run(60)
    assert far.pending and sink_harness.cursor("mine") == 0
    far.answer(ok=True)
    far.up()
    sink_harness.feed(readings(5, start=10))
    sink_harness.run(5)
    sink_harness.check_delivered("mine", far, seqs)
    assert sink.attempt == 0


def test_a_sink_is_woken_by_the_commit_not_by_polling(sink_harness):
    far = sink_harness.far_side()
    sink_harness.start(ListSink(sink_harness.port, "mine", SimpleNamespace(batch_size=3),
                                send=far))
    sink_harness.run(1.0)
    assert sink_harness.clock.getDelayedCalls()  # a flush timer and the lag check only
    sink_harness.feed(readings(3))  # a full batch: it goes at the commit, not at a tick
    sink_harness.clock.advance(0)
    assert [seqs(p) for p in far.accepted] == [[1, 2, 3]]


def test_a_sink_behind_by_more_than_two_batches_catches_up_with_larger_ones(sink_harness):
    far = sink_harness.far_side()
    sink_harness.start(ListSink(sink_harness.port, "mine",
                                SimpleNamespace(batch_size=3, catch_up_batch_size=8),
                                send=far))
    far.hold()
    sink_harness.feed(readings(3))  # one batch travels
    sink_harness.clock.advance(0)
    sink_harness.feed(readings(20, start=3))  # 20 wait behind it: more than two batches
    far.up()
    far.answer(ok=True)
    sink_harness.run(5)
    # large batches while more than two ordinary ones wait, then ordinary ones (the last
    # one partial, at the flush tick)
    assert [len(p) for p in far.accepted] == [3, 8, 8, 3, 1]
    sink_harness.check_delivered("mine", far, seqs)
    sink_harness.feed(readings(3, start=23))
    sink_harness.clock.advance(0)
    assert len(far.accepted[-1]) == 3  # caught up: ordinary batches again


def test_an_unexpected_error_in_a_sink_is_logged_counted_raised_and_retried(sink_harness):
    from twisted.logger import globalLogPublisher

    failures = []

    def observe(event):
        if event.get("log_failure") is not None:
            failures.append(event["log_failure"])

    globalLogPublisher.addObserver(observe)
    far = sink_harness.far_side()
    bugs = [ZeroDivisionError("a bug"), ZeroDivisionError("a bug")]

    class Buggy(ListSink):
        def prepare(self, rows, end):
            if bugs:
                raise bugs.pop()
            return super().prepare(rows, end)

    sink = sink_harness.start(Buggy(sink_harness.port, "buggy", send=far))
    sink_harness.feed(readings(3))
    sink_harness.run(10)
    globalLogPublisher.removeObserver(observe)
    assert sink_harness.metrics.value("sink.internal_errors", sink="buggy") == 2
    assert [f.type for f in failures] == [ZeroDivisionError] * 2  # with their tracebacks
    failed = [e for e in sink_harness.events if e.code == "sink_failed"]
    assert [e.state for e in failed] == [EventState.RAISED, EventState.CLEARED]
    sink_harness.check_delivered("buggy", far, seqs)  # the loop did not die
    assert sink.failures == 0


def test_the_influxdb_sink_on_the_harness_resends_after_an_outage(sink_harness):
    checker = Checker()
    options = influx_options(Section(checker, Path("test.yaml", ("sinks", "db")),
                                     {"url": "http://127.0.0.1:9", "bucket": "b",
                                      "retry_initial": 0.5, "retry_max": 2}))
    checker.raise_if_any()
    far = sink_harness.far_side(lambda: WriteError(503, "unavailable"))
    sink_harness.start(InfluxSink(sink_harness.port, "db", options, send=far,
                                  rng=random.Random(2)))
    far.down()
    sink_harness.feed(readings(20))
    sink_harness.run(10)
    assert sink_harness.cursor("db") == 0 and len(far.attempts) >= 4
    assert len(set(far.attempts)) == 1  # the same batch each time
    far.up()
    sink_harness.run(5)
    sink_harness.check_delivered("db", far)
    lines = b"\n".join(far.accepted).decode().split("\n")
    assert len({line for line in lines if line.startswith("voltage,")}) == 20


def test_lag_is_counted_from_the_hubs_commit_not_the_devices_clock(sink_harness):
    """Issue 12: a device with a wrong clock (or a buffered upload) must not raise
    sink_lagging at once: 1,496 records "29349806 s behind"."""
    far = sink_harness.far_side()
    far.down()
    sink_harness.feed(readings(5, ts=T - 29_349_806))  # the device's clock is a year off
    sink = ListSink(sink_harness.port, "mine",
                    SimpleNamespace(max_lag_seconds=300, retry_initial=1, retry_max=5),
                    send=far)
    sink_harness.start(sink)
    sink_harness.run(10)
    assert sink_harness.metrics.value("sink.lag_records", sink="mine") == 5
    assert 9 <= sink_harness.metrics.value("sink.lag_seconds", sink="mine") <= 11
    assert not [e for e in sink_harness.events if e.code == "sink_lagging"]
    sink_harness.run(300)  # now the records did wait that long in the hub
    [raised] = [e for e in sink_harness.events if e.code == "sink_lagging"]
    assert raised.state is EventState.RAISED and 300 < raised.value < 302


# ------------------------------------------------------------------ rewind, on a real hub


def example_plugin(sent):
    class Plugin:
        @hookimpl
        def hub_register_sink_types(self):
            def factory(hub, name, options):
                def send(payload):
                    sent.append(seqs(payload))
                    return defer.succeed(None)
                return ListSink(hub, name, options, send=send)
            return [SinkType("example", factory, lambda s: None, "a test sink")]
    return Plugin()


CONFIG = {"sinks": {"history": {"type": "example"}},
          "devices": [{"id": "efd-1", "model": "simulated"}]}


def run(hub, seconds):
    for _ in range(round(seconds / 0.1)):
        hub.clock.advance(0.1)


def test_rewinding_a_cursor_resends_audited_and_bounded(tmp_path, hub_clock):
    sent: list = []
    hub = build_hub(CONFIG, str(tmp_path / "var"), clock=hub_clock,
                    extra_plugins=[("example", example_plugin(sent))])
    service = HubService(hub, admin=False)
    service.startService()
    try:
        hub.journal.append(readings(6))
        run(hub, 2.0)
        assert hub.journal.get_cursor("history") == 6
        sent.clear()
        admin = AdminProtocol(hub)
        answer = admin.op_rewind_cursor({"name": "history", "seq": 2, "by": "alice"})
        assert answer == {"ok": True, "name": "history", "from": 6, "to": 2, "records": 4}
        run(hub, 2.0)
        assert sent == [[3, 4, 5, 6]]  # the running sink sent them again
        assert hub.journal.get_cursor("history") == 6
        hub.clock.advance(0.01)
        assert audit_rows(hub)[-1] == ("alice", "cursor.rewound", "history",
                                       {"cursor": "history", "from": 6, "to": 2})
        by_time = admin.op_rewind_cursor({"name": "history", "ts": hub.clock.seconds() - 1,
                                          "by": "bob"})
        assert by_time["ok"] and by_time["to"] == 6 and by_time["records"] == 0
        for bad, error in [({"seq": 7}, "would skip records"), ({}, "give 'seq' or 'ts'"),
                           ({"seq": 1, "name": "nope"}, "no cursor named 'nope'")]:
            answer = admin.op_rewind_cursor({"name": "history", "by": "eve", **bad})
            assert answer["ok"] is False and error in answer["error"]
        # bounded by what the journal still holds
        hub.journal._conn().execute("DELETE FROM records WHERE seq <= 3")
        answer = admin.op_rewind_cursor({"name": "history", "seq": 1, "by": "eve"})
        assert answer == {"ok": False, "error": "the journal holds records from seq 4 on "
                          "only (older ones were pruned); cannot rewind 'history' to 1"}
        assert [r[0] for r in audit_rows(hub) if r[1] == "cursor.rewound"] == ["alice", "bob"]
    finally:
        service.stopService()


def test_no_false_stale_cursor_warning_after_a_restart(tmp_path, hub_clock, logged):
    """Issue 12: the retention pass ran before the sinks claimed their cursors, so a
    configured sink's cursor was reported as belonging to no sink."""
    sent: list = []
    plugins = [("example", example_plugin(sent))]
    for _ in range(2):  # the first start creates the cursor, the second is the restart
        hub = build_hub(CONFIG, str(tmp_path / "var"), clock=hub_clock, extra_plugins=plugins)
        service = HubService(hub, admin=False)
        service.startService()
        assert hub.metrics.value("journal.stale_cursors") == 0
        hub.clock.advance(1.0)
        service.stopService()
    assert not [line for line in logged if "belongs to no configured sink" in line]


def test_a_removed_sinks_cursor_is_still_reported(tmp_path, hub_clock, logged):
    sent: list = []
    hub = build_hub(CONFIG, str(tmp_path / "var"), clock=hub_clock,
                    extra_plugins=[("example", example_plugin(sent))])
    hub.open()
    hub.journal.set_cursor("gone", 0)
    hub.close()
    hub = build_hub(CONFIG, str(tmp_path / "var"), clock=hub_clock,
                    extra_plugins=[("example", example_plugin(sent))])
    service = HubService(hub, admin=False)
    service.startService()
    try:
        assert hub.metrics.value("journal.stale_cursors") == 1
        assert any("journal cursor 'gone' belongs to no configured sink" in line
                   for line in logged)
    finally:
        service.stopService()


def test_hub_cursors_rewind_goes_through_the_admin_socket(tmp_path, hub_clock, monkeypatch,
                                                          capsys):
    import yaml

    from hub import cli
    from hub.cli import helpers

    sent: list = []
    hub = build_hub(CONFIG, str(tmp_path / "var"), clock=hub_clock,
                    extra_plugins=[("example", example_plugin(sent))])
    service = HubService(hub, admin=False)
    service.startService()
    requests = []

    def admin_request(state_dir, request, timeout):  # the socket's far end, in-process
        requests.append(request)
        return AdminProtocol(hub).op_rewind_cursor(request)

    monkeypatch.setattr(helpers, "admin_request", admin_request)
    path = tmp_path / "hub.yaml"
    # the CLI reads only state_dir (where the socket is); the sink runs in the hub
    path.write_text(yaml.safe_dump({"devices": CONFIG["devices"],
                                    "hub": {"state_dir": hub.config.state_dir}}))
    try:
        hub.journal.append(readings(4))
        run(hub, 2.0)
        argv = ["cursors", "-c", str(path), "--rewind", "history"]
        assert cli.main([*argv, "--to", "1"]) == 0
        assert capsys.readouterr().out == (
            "cursor 'history' rewound from seq 4 to 1: 3 records to deliver again\n")
        run(hub, 2.0)
        assert sent[-1] == [2, 3, 4]
        assert cli.main([*argv, "--to", "2025-12-31T00:00:00Z"]) == 0  # a time: by commit
        assert requests[-1]["ts"] == T - 86400 and "seq" not in requests[-1]
        assert "from seq 4 to 0: 4 records" in capsys.readouterr().out  # nothing was pruned
        assert cli.main([*argv, "--to", "9"]) == 2
        assert "would skip records" in capsys.readouterr().err
        assert cli.main(argv) == 2
        assert "needs --to" in capsys.readouterr().err
    finally:
        service.stopService()
