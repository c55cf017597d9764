"""The InfluxDB sink: cursor discipline, backoff, dead letters and lag on a task.Clock; the
real influxdb-client against a small HTTP server; and the real thing against
VictoriaMetrics: every kind of record, an outage of the database and a kill -9 of the hub."""

from __future__ import annotations

import gzip
import http.server
import importlib
import json
import math
import os
import random
import select
import sqlite3
import ssl
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

import pytest
import yaml
from twisted.internet import defer
from twisted.internet.task import Clock

from hub.config import check_config
from hub.journal import Journal
from hub.model import (
    Command,
    CommandResult,
    CommandStatus,
    Event,
    EventKind,
    EventState,
    Level,
    Reading,
)
from hub.pluginmanager import make_plugins
from hub.validate import ConfigError
from plugins.sinks import influx_sink
from plugins.sinks.influxdb import (
    DeadLetters,
    InfluxOptions,
    InfluxSink,
    InfluxWriter,
    WriteError,
    deadletter_path,
)
from plugins.sinks.line_protocol import timestamp_ns
from tests.support.distribution import PLUGINS, write_distribution
from tests.support.hubproc import BIN, HubProcess
from tests.support.services import TestPki, free_port, wait_until
from tests.support.services import make_victoria as make_victoria  # noqa: F401  (the fixture)

T = 1_767_225_600.0


# ------------------------------------------------------------------------------ helpers


@dataclass
class Call:
    body: bytes
    d: defer.Deferred

    @property
    def lines(self) -> list[str]:
        return self.body.decode().split("\n")


class Server:
    """Stands in for the database: every write is a Deferred the test fires, or, with a
    ``policy`` (body -> None or WriteError), is answered at once."""

    def __init__(self, policy=None):
        self.calls: list[Call] = []
        self.policy = policy
        self.accepted: list[str] = []

    def __call__(self, body: bytes) -> defer.Deferred:
        call = Call(body, defer.Deferred())
        self.calls.append(call)
        if self.policy is not None:
            err = self.policy(body)
            if err is None:
                self.accepted += call.lines
                call.d.callback(None)
            else:
                call.d.errback(err)
        return call.d

    def ok(self, i: int = -1) -> None:
        self.accepted += self.calls[i].lines
        self.calls[i].d.callback(None)

    def fail(self, status=None, message="ConnectionRefusedError: refused", retry_after=None):
        self.calls[-1].d.errback(WriteError(status, message, retry_after))


def config(**options):
    sink = {"type": "influxdb", "url": "http://127.0.0.1:9", "bucket": "fire", **options}
    return {"sinks": {"db": sink},
            "devices": [{"id": "efd-1", "model": "simulated", "project": "campus-a"}]}


@pytest.fixture
def start(make_hub):
    """``start(server, **options)`` -> (hub, sink): a hub on a task.Clock with a started
    sink named ``db`` writing through ``server``."""

    def start(server, name="db", hub=None, **options):
        hub = hub or make_hub(config(**options))
        opts = hub.config.sinks["db"].options
        sink = InfluxSink(hub, name, opts, send=server, rng=random.Random(7))
        sink.startService()
        return hub, sink

    return start


def append(hub, records):
    hub.journal.append(records)
    hub.journal.flush()
    return hub.journal.last_seq()


def readings(n, start=0, device="efd-1", quantity="voltage", channel="A"):
    return [Reading(device, quantity, 200.0 + i, T + i, channel) for i in range(start, start + n)]


def events_of(hub, code):
    return [e for e in hub.journal.events(limit=100) if e.code == code]


# ------------------------------------------------------------------------------ options


def test_options_are_checked_and_errors_name_the_key_path(monkeypatch):
    plugins = make_plugins()
    bad = config(url="influx:8086", token="s3cret", batch_size=0, kinds=["command"],
                 readings_measurement="{quantity}_{unit}", retry_initial=10, retry_max=5,
                 gzip="yes", colour="red")
    del bad["sinks"]["db"]["bucket"]
    with pytest.raises(ConfigError) as e:
        check_config(bad, "hub.yaml", plugins)
    errors = e.value.errors
    assert set(errors) == {
        "hub.yaml: sinks.db.url: 'influx:8086' is not an http:// or https:// URL",
        "hub.yaml: sinks.db.bucket: is required",
        "hub.yaml: sinks.db.token: write the token as {env: NAME} or {file: PATH}, not in "
        "the file itself",
        "hub.yaml: sinks.db.batch_size: 0 is outside 1..100000",
        "hub.yaml: sinks.db.kinds: 'command' is not one of reading, event, command_result",
        "hub.yaml: sinks.db.readings_measurement: '{quantity}_{unit}' may contain only the "
        "placeholder {quantity}",
        "hub.yaml: sinks.db.retry_max: 5 s is below retry_initial (10 s)",
        "hub.yaml: sinks.db.gzip: expected true or false, got 'yes'",
        "hub.yaml: sinks.db.colour: is not a known key here",
    }
    monkeypatch.setenv("INFLUX_TOKEN", "s3cret")
    good = config(token={"env": "INFLUX_TOKEN"}, org="campus", kinds=["reading"])
    opts = check_config(good, "hub.yaml", plugins).sinks["db"].options
    assert opts.token == "s3cret" and opts.kinds == {"reading"}
    assert (opts.batch_size, opts.flush_interval, opts.gzip) == (5000, 1.0, True)
    assert opts.catch_up_batch_size == 20000  # four batches while catching up
    opts = check_config(config(token={"env": "INFLUX_TOKEN"}, batch_size=40000), "hub.yaml",
                        plugins).sinks["db"].options
    assert opts.catch_up_batch_size == 100_000
    with pytest.raises(ConfigError) as e:
        check_config(config(token={"env": "INFLUX_TOKEN"}, batch_size=500,
                            catch_up_batch_size=100), "hub.yaml", plugins)
    assert e.value.errors == [
        "hub.yaml: sinks.db.catch_up_batch_size: 100 is below batch_size (500)"]
    assert "s3cret" not in repr(opts)


# ------------------------------------------------------------------------------ delivery


def test_cursor_moves_only_after_the_database_accepted(start):
    server = Server()
    hub, sink = start(server)
    seq = append(hub, readings(3))
    hub.clock.advance(1.0)  # the flush interval: a partial batch goes
    [call] = server.calls
    assert call.lines == [
        f"voltage,channel=A,device=efd-1,model=simulated,project=campus-a "
        f"value={200.0 + i} {timestamp_ns(T + i)}" for i in range(3)]
    hub.clock.advance(30)
    assert hub.journal.get_cursor("db") == 0 and len(server.calls) == 1
    server.ok()
    assert hub.journal.get_cursor("db") == seq == 3
    assert hub.metrics.value("sink.points_written", sink="db") == 3


def test_batches_are_bounded_by_size_and_by_time(start):
    server = Server()
    # catching up with larger batches is off here (it is tested in test_sink_framework)
    hub, sink = start(server, batch_size=5, catch_up_batch_size=5, flush_interval=2.0)
    append(hub, readings(12))
    hub.clock.advance(2.0)
    assert [len(c.lines) for c in server.calls] == [5]
    server.ok()  # the next full batch was read while the first travelled; it goes at once
    assert [len(c.lines) for c in server.calls] == [5, 5]
    assert hub.journal.get_cursor("db") == 5
    server.ok()
    assert len(server.calls) == 2  # two records are not a full batch: they wait ...
    hub.clock.advance(1.9)
    assert len(server.calls) == 2
    hub.clock.advance(0.1)  # ... at most flush_interval
    assert [len(c.lines) for c in server.calls] == [5, 5, 2]
    server.ok()
    assert hub.journal.get_cursor("db") == 12
    assert sorted(server.accepted) == sorted(sum((c.lines for c in server.calls), []))


def test_transient_failures_back_off_exponentially_with_jitter(start):
    server = Server()
    hub, sink = start(server, retry_initial=1, retry_max=8)
    append(hub, readings(2))
    hub.clock.advance(1.0)
    first = server.calls[0].body
    rng = random.Random(7)  # the sink's rng, replayed
    for attempt in range(1, 8):
        server.fail()
        base = min(8.0, 2.0 ** (attempt - 1))
        delay = base * (0.5 + 0.5 * rng.random())
        assert base / 2 <= delay < base
        hub.clock.advance(delay - 1e-6)
        assert len(server.calls) == attempt, f"retry {attempt} came too early"
        hub.clock.advance(2e-6)
        assert len(server.calls) == attempt + 1, f"retry {attempt} did not come"
        assert server.calls[-1].body == first  # the same batch, again
        assert hub.journal.get_cursor("db") == 0
    server.ok()
    assert hub.journal.get_cursor("db") == 2 and sink.attempt == 0
    assert hub.metrics.value("sink.write_errors", sink="db", status="connection") == 7


def test_retry_after_is_honoured_and_auth_errors_wait_instead_of_dropping(start):
    server = Server()
    hub, sink = start(server, retry_initial=1, retry_max=60)
    append(hub, readings(1))
    hub.clock.advance(1.0)
    server.fail(429, "too many requests", retry_after=7.0)
    hub.clock.advance(6.99)
    assert len(server.calls) == 1
    hub.clock.advance(0.02)
    assert len(server.calls) == 2
    server.fail(401, "unauthorized access")  # a wrong token is fixed by an operator
    for _ in range(5):
        hub.clock.advance(60)
        server.fail(404, 'bucket "fire" not found')
    hub.clock.advance(60)
    server.ok()
    assert hub.journal.get_cursor("db") == 1
    assert DeadLetters(deadletter_path(hub.config.state_dir)).entries() == []


def test_refused_lines_are_isolated_into_the_dead_letter_table(start):
    message = ('partial write: field type conflict: input field "value" on measurement '
               '"voltage" is type float, already exists as type integer dropped=1')

    def policy(body):
        return WriteError(400, message) if b"value=213.0 " in body else None

    server = Server(policy)
    hub, sink = start(server)
    seq = append(hub, readings(20, start=10))
    hub.clock.advance(1.0)
    assert hub.journal.get_cursor("db") == seq
    bad = f"voltage,channel=A,device=efd-1,model=simulated,project=campus-a " \
          f"value=213.0 {timestamp_ns(T + 13)}"
    assert sorted(server.accepted) == sorted(
        line for line in server.calls[0].lines if line != bad)
    [entry] = DeadLetters(deadletter_path(hub.config.state_dir)).entries("db")
    assert (entry["first_seq"], entry["last_seq"], entry["points"]) == (4, 4, 1)
    assert (entry["status"], entry["message"], entry["lines"]) == (400, message, bad)
    assert hub.metrics.value("sink.deadletter_points", sink="db") == 1
    assert len(server.calls) <= 1 + 2 * math.ceil(math.log2(20))  # bisected, not line by line


def test_dead_letters_are_listed_by_the_cli(start, tmp_path, capsys):
    from hub import cli

    server = Server(lambda body: WriteError(400, "invalid field format"))
    hub, sink = start(server)
    append(hub, readings(1))
    hub.clock.advance(1.0)
    path = tmp_path / "hub.yaml"
    path.write_text(yaml.safe_dump({**config(), "hub": {"state_dir": hub.config.state_dir}}))
    assert cli.main(["deadletter", "-c", str(path)]) == 0
    assert capsys.readouterr().out == (
        "#1 sink db seq 1..1 1 points, status 400: invalid field format\n")
    assert cli.main(["deadletter", "-c", str(path), "--lines"]) == 0
    assert capsys.readouterr().out.startswith("voltage,channel=A,device=efd-1,")


def test_splitting_stops_at_its_budget(start, monkeypatch):
    monkeypatch.setattr(influx_sink, "MAX_SPLITS", 2)
    server = Server(lambda body: WriteError(422, "points beyond retention policy"))
    hub, sink = start(server)
    append(hub, readings(8))
    hub.clock.advance(1.0)
    entries = DeadLetters(deadletter_path(hub.config.state_dir)).entries("db")
    # [1..8] split, [1..4] split, then the budget is spent: [1..2], [3..4], [5..8] kept whole
    assert [(e["first_seq"], e["last_seq"]) for e in entries] == [(1, 2), (3, 4), (5, 8)]
    assert sum(e["points"] for e in entries) == 8
    assert hub.journal.get_cursor("db") == 8


def test_a_record_line_protocol_cannot_carry_is_dead_lettered_without_a_request(start):
    server = Server(lambda body: None)
    hub, sink = start(server)
    append(hub, [Reading("efd-1", "voltage", math.inf, T, "A")])
    hub.clock.advance(1.0)
    assert server.calls == [] and hub.journal.get_cursor("db") == 1
    [entry] = DeadLetters(deadletter_path(hub.config.state_dir)).entries()
    assert entry["status"] is None
    assert entry["message"] == "not encodable: value inf is not finite; line protocol " \
                               "cannot carry it"


def test_an_unreadable_journal_row_is_dead_lettered_and_the_stream_goes_on(start, logged):
    """A row this version cannot read back (an event kind it does not know, after a
    downgrade; JSON cut short) goes to the dead-letter table with the reason and its seq,
    instead of being read again every ``retry_max`` forever."""
    server = Server(lambda body: None)
    hub, sink = start(server, retry_max=5)
    append(hub, [*readings(2),
                 Event("efd-1", EventKind.ALARM, "temperature", EventState.RAISED, T + 3,
                       Level.ALARM, "T1", "e1", value=91.5),
                 CommandResult("c-1", "efd-1", CommandStatus.SUCCEEDED, T + 4),
                 *readings(2, start=5)])
    db = sqlite3.connect(hub.journal.path)  # corrupt the rows behind the journal's back
    with db:
        db.execute("UPDATE records SET data = json_set(data, '$.kind', 'sparkle')"
                   " WHERE seq = 3")
        db.execute("UPDATE records SET data = substr(data, 1, 20) WHERE seq = 4")
    db.close()
    hub.clock.advance(1.0)
    assert hub.journal.get_cursor("db") == 6
    assert [line.split(" value=")[1] for c in server.calls for line in c.lines] == [
        f"{200.0 + i} {timestamp_ns(T + i)}" for i in (0, 1, 5, 6)]
    entries = DeadLetters(deadletter_path(hub.config.state_dir)).entries("db")
    assert [(e["first_seq"], e["last_seq"], e["status"], e["points"]) for e in entries] == [
        (3, 3, None, 1), (4, 4, None, 1)]
    assert entries[0]["message"] == ("unreadable journal row: ValueError: 'sparkle' is not "
                                     "a valid EventKind")
    assert entries[1]["message"].startswith("unreadable journal row: JSONDecodeError: ")
    assert '"kind":"sparkle"' in entries[0]["lines"]  # the row as stored, for forensics
    assert hub.metrics.value("sink.unreadable_records", sink="db") == 2
    assert hub.metrics.value("sink.deadletter_points", sink="db") == 2
    assert hub.metrics.value("sink.internal_errors", sink="db") == 0
    assert any("journal seq 3 not written (unreadable journal row: ValueError" in line
               for line in logged)
    hub.clock.advance(30)  # nothing is read again
    assert len(server.calls) == 1


def test_kinds_not_written_are_passed_over(start):
    server = Server(lambda body: None)
    hub, sink = start(server, kinds=["reading"])
    seq = append(hub, [*readings(2),
                       Command("c-1", "efd-1", "reset", T + 5),
                       Event("efd-1", EventKind.STATE, "reset", EventState.NOTICE, T + 6,
                             Level.INFO),
                       CommandResult("c-1", "efd-1", CommandStatus.SUCCEEDED, T + 7)])
    hub.clock.advance(1.0)
    assert [len(c.lines) for c in server.calls] == [2]
    assert hub.journal.get_cursor("db") == seq == 5  # nothing holds retention back


def test_a_local_failure_is_retried_from_the_durable_cursor(start, monkeypatch):
    server = Server(lambda body: None)
    hub, sink = start(server, retry_max=5)
    append(hub, readings(3))
    real, failures = hub.journal.set_cursor, ["disk I/O error"]

    def set_cursor(name, seq):
        if failures:
            raise sqlite3.OperationalError(failures.pop())
        real(name, seq)

    monkeypatch.setattr(hub.journal, "set_cursor", set_cursor)
    hub.clock.advance(1.0)
    assert hub.journal.get_cursor("db") == 0
    assert hub.metrics.value("sink.internal_errors", sink="db") == 1
    hub.clock.advance(5.0)
    assert hub.journal.get_cursor("db") == 3
    assert [c.body for c in server.calls] == [server.calls[0].body] * 2  # sent again


def test_two_sinks_keep_their_own_cursors(start):
    down, up = Server(lambda body: WriteError(503, "unavailable")), Server(lambda body: None)
    hub, first = start(down)
    _, second = start(up, name="db2", hub=hub)
    seq = append(hub, readings(4))
    hub.clock.advance(1.0)
    assert hub.journal.cursors() == {"db": 0, "db2": seq}
    assert len(up.accepted) == 4


def test_two_sinks_lagging_at_the_same_instant_are_two_series(start):
    """Both sinks check their lag on the same clock tick, so their sink_lagging faults
    carry the same timestamp; the tag event_id keeps them apart in the database."""
    down = [Server(lambda body: WriteError(503, "unavailable")) for _ in range(2)]
    hub, first = start(down[0], max_lag_seconds=5, retry_initial=0.5, retry_max=0.5)
    _, second = start(down[1], name="db2", hub=hub)
    append(hub, readings(3))
    for _ in range(14):
        hub.clock.advance(0.5)
        hub.journal.flush()
    raised = [e for e in events_of(hub, "sink_lagging") if e.state is EventState.RAISED]
    assert len(raised) == 2 and raised[0].ts == raised[1].ts
    for server in down:
        server.policy = lambda body: None
    hub.clock.advance(1.0)
    lines = [line for line in down[0].accepted if "code=sink_lagging" in line
             and "state=raised" in line]
    assert len(lines) == 2
    assert len({line.split(" ")[0] for line in lines}) == 2  # two series ...
    assert len({line.rsplit(" ", 1)[1] for line in lines}) == 1  # ... at one timestamp
    assert {f"event_id={e.id}" for e in raised} == {
        tag for line in lines for tag in line.split(" ")[0].split(",") if "event_id" in tag}


def test_tags_are_taken_at_delivery_time(start, make_hub):
    """Pins documented behaviour, not a wish: model and project come from the configuration
    the sink runs with, not from the time of the reading. A backlog written under project
    campus-a and delivered after the device moved to campus-b lands in campus-b's series
    (the journal does not record a device's tags; see the README)."""
    hub, sink = start(Server(lambda body: WriteError(503, "unavailable")))
    seq = append(hub, readings(2))
    hub.clock.advance(1.0)
    assert hub.journal.get_cursor("db") == 0
    sink.stopService()
    hub.close()
    moved = config()
    moved["devices"][0]["project"] = "campus-b"
    server = Server(lambda body: None)
    hub, sink = start(server, hub=make_hub(moved))
    hub.clock.advance(1.0)
    assert hub.journal.get_cursor("db") == seq
    assert server.accepted == [
        f"voltage,channel=A,device=efd-1,model=simulated,project=campus-b "
        f"value={200.0 + i} {timestamp_ns(T + i)}" for i in range(2)]


def test_write_rate_is_points_per_second_over_the_last_lag_check(start):
    server = Server(lambda body: None)
    hub, sink = start(server, batch_size=100)
    seen = []
    for n in (300, 0, 40, 0):
        append(hub, readings(n, start=len(server.accepted)))
        hub.clock.advance(1.0)
        seen.append(hub.metrics.value("sink.write_rate", sink="db"))
    # the points written in each second, as the lag check that ends it sees them
    assert hub.journal.get_cursor("db") == 340
    assert seen == [300.0, 0.0, 40.0, 0.0]


def test_stop_waits_for_the_write_in_flight(start):
    server = Server()
    hub, sink = start(server)
    append(hub, readings(3))
    hub.clock.advance(1.0)
    stopped = sink.stopService()
    assert not stopped.called
    server.ok()
    assert stopped.called and hub.journal.get_cursor("db") == 3
    hub.clock.advance(10)
    assert len(server.calls) == 1


def test_lag_raises_one_fault_and_clears_it(start):
    server = Server()
    hub, sink = start(server, max_lag_seconds=5, retry_initial=0.5, retry_max=0.5)
    append(hub, readings(3))
    hub.clock.advance(1.0)
    for _ in range(16):  # the database is down for 8 s
        server.fail(503, "unavailable")
        hub.clock.advance(0.5)
        hub.journal.flush()
    assert hub.metrics.value("sink.lag_records", sink="db") >= 3
    assert hub.metrics.value("sink.lag_seconds", sink="db") > 5
    [raised] = events_of(hub, "sink_lagging")
    assert (raised.device, raised.kind, raised.state, raised.level) == (
        "hub", EventKind.FAULT, EventState.RAISED, Level.FAULT)
    assert "sink db is" in raised.message and raised.set_point == 5

    # a restart while lagging takes the raised fault over instead of raising it again
    server.fail(503, "unavailable")
    sink.stopService()
    server2 = Server()
    hub, sink = start(server2, hub=hub, max_lag_seconds=5)
    assert sink._fault is not None and sink._fault.id == raised.id
    hub.clock.advance(3)
    assert len(events_of(hub, "sink_lagging")) == 1
    for _ in range(4):  # the database is back
        if not server2.calls[-1].d.called:
            server2.ok()
        hub.clock.advance(1.0)
        hub.journal.flush()
    lagging = events_of(hub, "sink_lagging")
    assert [e.state for e in lagging] == [EventState.RAISED, EventState.CLEARED]
    cleared = lagging[1]
    assert cleared.id == raised.id and cleared.raised_ts == raised.ts
    assert cleared.peak > 5
    assert hub.journal.active_events() == []
    assert hub.metrics.value("sink.lag_records", sink="db") == 0


# ------------------------------------------------------------------------------ the writer


class Recorder(http.server.BaseHTTPRequestHandler):
    answers: list = []  # (status, headers, body) per request, the last one repeats
    requests: list = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).requests.append((self.path, dict(self.headers), body))
        status, headers, payload = self.answers[min(len(self.requests), len(self.answers)) - 1]
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    Recorder.answers, Recorder.requests = [], []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, Recorder
    server.shutdown()
    server.server_close()


def test_writer_posts_gzipped_line_protocol_with_the_token(http_server):
    server, rec = http_server
    rec.answers = [(204, {}, b"")]
    url = f"http://127.0.0.1:{server.server_port}"
    writer = InfluxWriter(InfluxOptions(url=url, bucket="fire/autogen", org="campus",
                                        token="t0ken"))
    body = b"voltage,device=d value=1.0 1\nvoltage,device=d value=2.0 2"
    writer.write(body)
    writer.close()
    [(path, headers, sent)] = rec.requests
    parts = urllib.parse.urlsplit(path)
    assert parts.path == "/api/v2/write"
    assert urllib.parse.parse_qs(parts.query) == {
        "org": ["campus"], "bucket": ["fire/autogen"], "precision": ["ns"]}
    assert headers["Authorization"] == "Token t0ken"
    assert headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(sent) == body


def test_writer_turns_answers_into_write_errors(http_server):
    server, rec = http_server
    msg = 'unable to parse \'voltage value=x\': invalid field format'
    rec.answers = [
        (400, {"Content-Type": "application/json"},
         json.dumps({"code": "invalid", "message": msg}).encode()),
        (503, {"Retry-After": "3"}, b""),
        (413, {}, b"request too large"),
    ]
    url = f"http://127.0.0.1:{server.server_port}"
    writer = InfluxWriter(InfluxOptions(url=url, bucket="b", gzip=False))
    with pytest.raises(WriteError) as e:
        writer.write(b"voltage value=x")
    assert (e.value.status, e.value.message, e.value.permanent) == (400, msg, True)
    with pytest.raises(WriteError) as e:
        writer.write(b"voltage value=1")
    assert (e.value.status, e.value.retry_after, e.value.permanent) == (503, 3.0, False)
    with pytest.raises(WriteError) as e:
        writer.write(b"voltage value=1")
    assert (e.value.status, e.value.message, e.value.permanent) == (413, "request too large",
                                                                    True)
    assert rec.requests[0][2] == b"voltage value=x"  # gzip off: sent as it is
    closed = InfluxWriter(InfluxOptions(url=f"http://127.0.0.1:{free_port()}", bucket="b"))
    with pytest.raises(WriteError) as e:
        closed.write(b"voltage value=1")
    assert e.value.status is None and not e.value.permanent


class IdleCloser(http.server.BaseHTTPRequestHandler):
    """HTTP/1.1, kept alive, but every connection is closed after its first answer, as a
    server does with a connection left idle past its keep-alive timeout."""

    protocol_version = "HTTP/1.1"
    peers: list = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).peers.append(self.client_address)
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()
        self.close_connection = True  # no "Connection: close": the client cannot know

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("seen", [True, False], ids=["close-seen", "close-unseen"])
def test_writer_starts_a_new_connection_when_the_server_closed_the_idle_one(seen,
                                                                           monkeypatch):
    """Whether the closed connection is noticed before the next write (it became
    readable) or only by that write failing, the write goes through on a new one."""
    IdleCloser.peers = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), IdleCloser)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        writer = InfluxWriter(InfluxOptions(url=f"http://127.0.0.1:{server.server_port}",
                                            bucket="b", gzip=False))
        if not seen:
            monkeypatch.setattr(writer, "_closed_by_peer", lambda: False)
        for i in range(3):
            if seen and i:  # the server's close has reached the idle socket
                sock = writer._conn.sock
                wait_until(lambda s=sock: select.select([s], [], [], 0)[0], 10,
                           what="the server closing the connection")
            writer.write(b"voltage value=%d" % i)
        writer.close()
    finally:
        server.shutdown()
        server.server_close()
    assert len(IdleCloser.peers) == 3 and len(set(IdleCloser.peers)) == 3


def test_writer_verifies_the_servers_certificate_unless_told_not_to(tmp_path):
    """HTTPS with a certificate of a CA the system does not trust: refused (and retried,
    not dead-lettered) with ``verify_ssl: true``, written with ``verify_ssl: false``."""
    Recorder.answers, Recorder.requests = [(204, {}, b"")], []
    cert, key = TestPki(str(tmp_path / "pki")).issue("server", "localhost", server=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"https://127.0.0.1:{server.server_port}"
        strict = InfluxWriter(InfluxOptions(url=url, bucket="b", gzip=False))
        with pytest.raises(WriteError) as e:
            strict.write(b"voltage value=1")
        assert e.value.status is None and not e.value.permanent
        assert "CERTIFICATE_VERIFY_FAILED" in e.value.message
        lax = InfluxWriter(InfluxOptions(url=url, bucket="b", gzip=False, verify_ssl=False))
        lax.write(b"voltage value=2")
        lax.close()
    finally:
        server.shutdown()
        server.server_close()
    assert [body for _, _, body in Recorder.requests] == [b"voltage value=2"]


# ------------------------------------------------------------------------------ the database


def key(measurement, **labels):
    return tuple(sorted({"__name__": measurement, **labels}.items()))


def test_every_kind_reaches_the_database_with_its_series_and_timestamp(victoria, make_hub):
    project = "1号楼 A,B=C\\"  # every character line protocol escapes
    cfg = config(url=victoria.url, batch_size=3)
    cfg["devices"][0]["project"] = project
    hub = make_hub(cfg)
    opts = hub.config.sinks["db"].options
    writer = InfluxWriter(opts)
    sink = InfluxSink(hub, "db", opts, send=lambda body: defer.maybeDeferred(writer.write, body))
    sink.startService()
    append(hub, [
        Reading("efd-1", "temperature", 25.5, T + 0.001, "T1"),
        Reading("efd-1", "residual_current", 31.0, T + 0.002, "L1"),
        Reading("gone", "voltage", 219.5, T + 0.003, "A"),  # no longer configured
        Event("efd-1", EventKind.ALARM, "temperature", EventState.RAISED, T + 1, Level.ALARM,
              "T1", "e1", value=91.5, set_point=80.0, message="温度报警"),
        CommandResult("c-1", "efd-1", CommandStatus.SUCCEEDED, T + 2),
    ])
    hub.clock.advance(1.0)
    assert hub.journal.get_cursor("db") == 5
    sink.stopService()
    writer.close()
    tags = {"model": "simulated", "project": project}
    got = {(k, ms, v) for k, ms, v in victoria.wait_for_points(10)}
    ms = 1_767_225_600_000
    assert got == {
        (key("temperature_value", device="efd-1", channel="T1", **tags), ms + 1, 25.5),
        (key("residual_current_value", device="efd-1", channel="L1", **tags), ms + 2, 31.0),
        (key("voltage_value", device="gone", channel="A"), ms + 3, 219.5),
        # string fields (id, message, command_id, detail) read back as 0 in VictoriaMetrics
        *[(key(f"events_{f}", device="efd-1", channel="T1", kind="alarm", code="temperature",
               level="alarm", state="raised", source="hub", **tags), ms + 1000, v)
          for f, v in (("id", 0), ("message", 0), ("value", 91.5), ("set_point", 80.0))],
        *[(key(f"command_results_{f}", device="efd-1", status="succeeded", **tags), ms + 2000, v)
          for f, v in (("command_id", 0), ("detail", 0), ("ok", 1))],
    }


def test_a_line_the_database_refuses_is_dead_lettered_with_its_answer(victoria, make_hub):
    """A real 400: VictoriaMetrics refuses a request holding a line longer than its
    ``-influx.maxLineSize`` (256 KiB by default), here a command result with a long detail.
    (It skips lines it cannot parse with a 204, so a malformed line cannot make it answer
    400.) The batch is split down to that line, which lands in the dead-letter table with
    the server's message; every other point is written and the cursor moves past it."""
    cfg = config(url=victoria.url, retry_initial=0.01, retry_max=0.01)
    hub = make_hub(cfg)
    opts = hub.config.sinks["db"].options
    writer = InfluxWriter(opts)
    sink = InfluxSink(hub, "db", opts, send=lambda body: defer.maybeDeferred(writer.write, body))
    sink.startService()
    detail = "无响应 " * 100_000  # 700 KB of UTF-8
    seq = append(hub, [*readings(5),
                       CommandResult("c-1", "efd-1", CommandStatus.FAILED, T + 5, detail),
                       *readings(5, start=6)])
    hub.clock.advance(1.0)
    assert hub.journal.get_cursor("db") == seq == 11
    sink.stopService()
    writer.close()
    [entry] = DeadLetters(deadletter_path(hub.config.state_dir)).entries("db")
    assert (entry["first_seq"], entry["last_seq"], entry["status"], entry["points"]) == (
        6, 6, 400, 1)
    assert "too long line: more than 262144 bytes" in entry["message"]
    assert entry["lines"].startswith("command_results,device=efd-1,model=simulated,"
                                     "project=campus-a,status=failed command_id=\"c-1\",")
    assert hub.metrics.value("sink.write_errors", sink="db", status="400") >= 1
    assert hub.metrics.value("sink.deadletter_points", sink="db") == 1
    got = {(ms, v) for _, ms, v in victoria.settled_points('{__name__="voltage_value"}')}
    assert got == {(round((T + i) * 1000), 200.0 + i) for i in (*range(5), *range(6, 11))}


def test_two_sinks_write_two_databases_each_from_its_own_cursor(make_victoria, make_hub):
    """Two sinks, two buckets on two databases. One database stops: its sink waits at its
    cursor while the other keeps writing; it comes back and the waiting sink catches up.
    Each database ends with every reading, once."""
    vms = {"a": make_victoria(), "b": make_victoria()}
    cfg = config()
    cfg["sinks"] = {name: {"type": "influxdb", "url": vm.url, "bucket": f"fire-{name}",
                           "retry_initial": 0.05, "retry_max": 0.2}
                    for name, vm in vms.items()}
    hub = make_hub(cfg)
    sinks, writers = {}, []
    for name in vms:
        opts = hub.config.sinks[name].options
        writer = InfluxWriter(opts)
        writers.append(writer)
        sinks[name] = InfluxSink(hub, name, opts,
                                 send=lambda body, w=writer: defer.maybeDeferred(w.write, body))
        sinks[name].startService()

    def run(seconds: float) -> dict[str, list[float]]:
        """Advance in half seconds; the write rate of each sink after every step."""
        rates: dict[str, list[float]] = {name: [] for name in sinks}
        for _ in range(int(seconds / 0.5)):
            hub.clock.advance(0.5)
            for name in sinks:
                rates[name].append(hub.metrics.value("sink.write_rate", sink=name))
        return rates

    append(hub, readings(10))
    run(3)
    assert hub.journal.cursors() == {"a": 10, "b": 10}
    vms["a"].stop()
    append(hub, readings(10, start=10))
    rates = run(3)
    assert hub.journal.cursors() == {"a": 10, "b": 20}  # b went on, a waits at its own
    assert set(rates["a"]) == {0.0} and max(rates["b"]) == 10.0
    assert hub.metrics.value("sink.write_errors", sink="a", status="connection") > 0
    assert hub.metrics.value("sink.lag_records", sink="a") == 10
    vms["a"].start()
    rates = run(3)
    assert hub.journal.cursors() == {"a": 20, "b": 20}
    assert max(rates["a"]) == 10.0 and set(rates["b"]) == {0.0}  # a caught up alone
    for sink in sinks.values():
        sink.stopService()
    for writer in writers:
        writer.close()
    expected = {(round((T + i) * 1000), 200.0 + i) for i in range(20)}
    for vm in vms.values():
        got = [(ms, v) for _, ms, v in vm.settled_points('{__name__="voltage_value"}')]
        assert sorted(got) == sorted(expected)


# ------------------------------------------------------------------------------ hub process

PER_DEVICE, DEVICES, BATCH = 600, 20, 500
TOTAL = PER_DEVICE * DEVICES


@pytest.fixture
def burst_hub(site_dir, tmp_path, victoria, monkeypatch):
    """``burst_hub(**more)`` -> a `hub run` configuration: the burst test transport (20
    devices × 600 readings, about 4,000 a second), the InfluxDB sink ``history`` on the
    test's VictoriaMetrics and one more sink per ``name=url``."""
    write_distribution(site_dir, "hubtest-burst", {"burst": "hubtest_burst"},
                       {"hubtest_burst": (PLUGINS / "hubtest_burst.py").read_text()})
    importlib.invalidate_caches()
    monkeypatch.setenv("INFLUX_TOKEN", "any-token")

    def make(**more: str):
        sinks = {name: {"type": "influxdb", "url": url, "org": "campus", "bucket": "fire",
                        "token": {"env": "INFLUX_TOKEN"}, "batch_size": BATCH,
                        "flush_interval": 0.05, "timeout": 2, "retry_initial": 0.05,
                        "retry_max": 0.3}
                 for name, url in {"history": victoria.url, **more}.items()}
        cfg = {
            "hub": {"state_dir": str(tmp_path / "var")},
            "journal": {"commit_interval_ms": 5},
            "transports": {"burst": {"type": "burst", "per_device": PER_DEVICE, "per_tick": 10,
                                     "interval": 0.05, "step": 0.01}},
            "sinks": sinks,
            "devices": [{"id": f"b-{i:02d}", "model": "simulated", "transport": "burst",
                         "address": f"b{i}", "project": "p"} for i in range(DEVICES)],
        }
        path = tmp_path / "hub.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    return make


class JournalWatch:
    """The live journal of a hub process, read-only, polled for progress."""

    def __init__(self, path: str, sinks: tuple[str, ...] = ("history",)):
        self.path = path
        self.sinks = sinks

    def state(self) -> tuple[int, int, int]:
        """(readings committed, last seq, the cursor of the sink furthest behind)."""
        if not os.path.exists(self.path):
            return 0, 0, 0
        j = Journal(self.path, clock=Clock(), readonly=True)
        j.open()
        try:
            n = j._conn().execute("SELECT count(*) FROM records WHERE kind = 0").fetchone()[0]
            return n, j.last_seq(), min(j.get_cursor(name) for name in self.sinks)
        finally:
            j.close()

    def expected(self) -> dict[tuple[tuple, int], float]:
        """What the database must hold: {(series key, ms): value} of every reading."""
        j = Journal(self.path, clock=Clock(), readonly=True)
        j.open()
        try:
            readings = [r for _, r in j.read(0, 10 * TOTAL, {"reading"})]
        finally:
            j.close()
        expected = {}
        for r in readings:
            k = key(f"{r.quantity}_value", device=r.device, channel=r.channel,
                    model="simulated", project="p")
            expected[(k, timestamp_ns(r.ts) // 1_000_000)] = r.value
        assert len(expected) == TOTAL  # the transport's set, complete and without repeats
        return expected

    def wait(self, predicate, timeout=60.0, what="progress"):
        return wait_until(lambda: predicate(*self.state()), timeout, interval=0.05, what=what)


def assert_exactly_once(expected: dict, got: list) -> None:
    """Every expected point is in ``got`` once, at its series and timestamp, with its
    value, and nothing else is."""
    stored = {}
    for k, ms, v in got:
        assert (k, ms) not in stored, f"{k} at {ms} twice"
        stored[(k, ms)] = v
    assert stored.keys() == expected.keys()
    assert stored == expected


def assert_repeats_are_the_same_point(expected: dict, got: list) -> int:
    """At least once: every expected point is in ``got``; a point stored more than once
    has the same value each time (the same point re-sent, not another one), and nothing
    else is there. Returns how many samples were repeats."""
    seen: dict = {}
    for k, ms, v in got:
        assert (k, ms) in expected, f"{k} at {ms} is not in the journal"
        assert v == expected[(k, ms)], \
            f"{k} at {ms}: {v} re-sent where the journal has {expected[(k, ms)]}"
        seen[(k, ms)] = seen.get((k, ms), 0) + 1
    assert seen.keys() == expected.keys()
    return sum(seen.values()) - len(seen)


def write_point(vm, k: tuple, ms: int, value: float) -> None:
    """One reading of the burst set written straight to ``vm`` (to show a check fails)."""
    labels = dict(k)
    writer = InfluxWriter(InfluxOptions(url=vm.url, bucket="fire"))
    writer.write(f"voltage,channel={labels['channel']},device={labels['device']},"
                 f"model=simulated,project=p value={value!r} {ms * 1_000_000}".encode())
    writer.close()


def stop(hub: HubProcess) -> str:
    code = hub.stop()
    log = "".join(hub.lines)
    assert code == 0, log
    return log


VOLTAGE = '{__name__="voltage_value"}'


@pytest.mark.parametrize("victoria", [{"dedup": None}], indirect=True, ids=["every-sample"])
def test_database_outage_mid_stream_loses_nothing(burst_hub, tmp_path, victoria):
    """The database stops for a while in the middle of a stream and comes back: every
    reading is in it exactly once. Nothing crashed, so nothing may be written twice: the
    database keeps every sample (no dedup), and a re-sent point would show."""
    config = burst_hub()
    journal = JournalWatch(str(tmp_path / "var" / "journal.sqlite"))
    hub = HubProcess(config, tmp_path)
    try:
        hub.wait_for("hub hub started")
        journal.wait(lambda n, top, cursor: cursor >= 2 * BATCH, what="first batches")
        victoria.stop()
        at_stop = journal.state()
        assert at_stop[0] < TOTAL - 3000, "the stream ended before the outage"
        # the stream goes on into the journal while the database is away
        journal.wait(lambda n, top, cursor: n >= at_stop[0] + 3000, what="backlog")
        assert journal.state()[2] <= at_stop[1] + BATCH  # the cursor waited
        victoria.start()
        journal.wait(lambda n, top, cursor: n == TOTAL and cursor == top, what="catch-up")
    finally:
        log = stop(hub)
    assert "write failed" in log
    metrics = json.loads(subprocess.run(
        [str(BIN / "hub"), "metrics", "-c", str(config), "--json"], cwd=tmp_path,
        capture_output=True, text=True, timeout=60, check=True).stdout)["metrics"]
    errors = sum(m["value"] for m in metrics if m["name"] == "sink.write_errors")
    assert errors > 0
    lag = {m["name"]: m["value"] for m in metrics if m["labels"].get("sink") == "history"}
    assert lag["sink.lag_records"] == 0 and lag["sink.points_written"] >= TOTAL

    expected = journal.expected()
    assert_exactly_once(expected, victoria.settled_points(VOLTAGE))
    # the check can fail: one point written a second time, identical, is caught
    (k, ms), value = next(iter(expected.items()))
    write_point(victoria, k, ms, value)
    with pytest.raises(AssertionError, match="twice"):
        assert_exactly_once(expected, victoria.settled_points(VOLTAGE))


class HoldingProxy:
    """An HTTP proxy in front of a database. Once :attr:`hold` is set it passes the next
    write on and keeps the answer back: the database has the points, the hub does not know
    it (the instant a crash turns into a re-delivery)."""

    def __init__(self, target: str):
        self.hold, self.holding, self.release = (threading.Event(), threading.Event(),
                                                 threading.Event())
        self.held: list[str] = []  # the lines of the write whose answer was kept back
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() in ("content-type", "content-encoding", "authorization")}
                request = urllib.request.Request(target + self.path, body, headers)
                try:
                    with urllib.request.urlopen(request, timeout=10) as r:
                        status, payload = r.status, r.read()
                except urllib.error.HTTPError as e:
                    status, payload = e.code, e.read()
                if proxy.hold.is_set() and not proxy.holding.is_set():
                    if headers.get("Content-Encoding") == "gzip":
                        body = gzip.decompress(body)
                    proxy.held = body.decode().split("\n")
                    proxy.holding.set()
                    proxy.release.wait(60)
                    return  # the connection closes without an answer
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def test_hub_killed_mid_stream_and_restarted_loses_nothing(burst_hub, tmp_path, victoria,
                                                           make_victoria):
    """kill -9 while the sinks are writing, start again. Delivery is at least once: a write
    the database accepted but whose answer the hub never saw is sent again after the
    restart, because the cursor had not moved. InfluxDB keeps one value per series and
    timestamp, so it ends with every reading exactly once; ``victoria`` deduplicates the
    same way and is checked for exactly that. A second sink, ``raw``, writes through a proxy
    that holds back the answer of the write in flight when the hub is killed, to a
    VictoriaMetrics that keeps every sample: there every reading is present, the held write
    is there twice, and every repeat is the same point (series, timestamp and value)."""
    raw = make_victoria(dedup=None)
    proxy = HoldingProxy(raw.url)
    config = burst_hub(raw=proxy.url)
    journal = JournalWatch(str(tmp_path / "var" / "journal.sqlite"), ("history", "raw"))
    hub = HubProcess(config, tmp_path)
    try:
        hub.wait_for("hub hub started")
        journal.wait(lambda n, top, cursor: cursor >= 3 * BATCH, what="first batches")
        proxy.hold.set()
        assert proxy.holding.wait(30), "no write to hold"
    finally:
        hub.proc.kill()
        hub.proc.wait(timeout=30)
    proxy.hold.clear()
    proxy.release.set()
    n, top, cursor = journal.state()
    assert 0 < cursor < TOTAL and n < TOTAL, "not killed mid-stream"
    hub = HubProcess(config, tmp_path)
    try:
        hub.wait_for("hub hub started")
        journal.wait(lambda n, top, cursor: n == TOTAL and cursor == top, what="catch-up")
    finally:
        stop(hub)
        proxy.close()
    expected = journal.expected()
    assert TOTAL <= victoria.rows_inserted() <= TOTAL + BATCH
    assert_exactly_once(expected, victoria.settled_points(VOLTAGE))

    received = raw.rows_inserted()
    everything = raw.settled_points()
    assert len(everything) == received  # nothing merged: every row received is exported
    repeats = assert_repeats_are_the_same_point(
        expected, [p for p in everything if dict(p[0])["__name__"] == "voltage_value"])
    held = sum(line.startswith("voltage,") for line in proxy.held)
    assert 0 < held <= repeats <= BATCH  # the held write came again, and little else
    # the check can fail: the same series and timestamp with another value is caught
    (k, ms), value = next(iter(expected.items()))
    write_point(raw, k, ms, value + 1)
    with pytest.raises(AssertionError, match="re-sent where the journal has"):
        assert_repeats_are_the_same_point(expected, raw.settled_points(VOLTAGE))
