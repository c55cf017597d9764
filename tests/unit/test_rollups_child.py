"""The fold process's loop (hub.rollups.child.Fold), driven in this process: it folds what
the journal holds as the store's own fold does, reports each write, starts again from the
store's applied seq, refuses to write over another writer, waits for the fold lock, leaves
at ``stop`` or the end of its stdin; the sink's process options are validated."""

from __future__ import annotations

import fcntl
import io
import json
import os

import pytest
import yaml

from hub.model import Reading
from hub.rollups import RollupStore, child
from hub.rollups.child import Fold
from hub.rollups.fold import FoldConflict
from hub.testing import SinkHarness

T = 1_767_196_800.0


def _feed(h, n, start=0):
    records = []
    for i in range(start, start + n):
        records += [Reading("m1", "active_energy", 100.0 + i * 0.25, T + i * 600.0),
                    Reading("m1", "temperature", 20.0 + i % 7, T + i * 600.0, "T1")]
    return h.feed(records)


def dump(store):
    return store.db.execute(
        "SELECT s.device, s.channel, s.quantity, b.width, b.start, b.count, b.min, b.max, "
        "round(b.total, 9), b.last_ts, b.last, round(b.energy, 9) FROM buckets b "
        "JOIN series s ON s.id = b.series ORDER BY 1, 2, 3, 4, 5").fetchall()


def _fold(h, tmp_path, out=None, batch=50):
    return Fold(h.journal.path, str(tmp_path / "rollups.sqlite"), 8 * 3600, batch, 1.0, 0.01,
                out if out is not None else io.StringIO())


def _said(out):
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_the_child_folds_the_journal_as_the_store_does_and_says_each_write(tmp_path):
    h = SinkHarness(str(tmp_path / "var"))
    try:
        _feed(h, 120)
        h.journal.append([Reading("m1", "voltage", 220.0, T, "A")])  # not folded twice
        last = h.feed([])
        out = io.StringIO()
        fold = _fold(h, tmp_path, out)
        r, w = os.pipe()
        assert fold.lock(r)
        fold.open()
        while fold.step():
            pass
        fold.flush()
        assert fold.store.applied == last
        assert _said(out) == [{"ready": 0, "pid": os.getpid(), "cpu": _said(out)[0]["cpu"]},
                              {"flushed": last, "readings": 241, "cpu": _said(out)[1]["cpu"]}]
        want = RollupStore(str(tmp_path / "want.sqlite"))
        want.fold_journal(h.journal)
        assert dump(fold.store) == dump(want)
        # a new run starts from the applied seq: nothing is read twice
        fold.close()
        _feed(h, 30, start=120)
        fold = _fold(h, tmp_path, out)
        assert fold.lock(r)
        fold.open()
        assert fold.acc.mark == last
        while fold.step():
            pass
        fold.flush()
        want.fold_journal(h.journal)
        assert dump(fold.store) == dump(want)
        fold.close()
        want.close()
        os.close(r)
        os.close(w)
    finally:
        h.close()


def test_a_write_over_another_writers_is_refused_and_forgotten(tmp_path):
    h = SinkHarness(str(tmp_path / "var"))
    try:
        _feed(h, 40)
        fold = _fold(h, tmp_path)
        r, w = os.pipe()
        assert fold.lock(r)
        fold.open()
        while fold.step():
            pass
        # someone else (a second fold, a rebuild) moved the applied seq meanwhile
        other = RollupStore(str(tmp_path / "rollups.sqlite"))
        other.fold_journal(h.journal)
        before = dump(other)
        with pytest.raises(FoldConflict, match="written by someone else"):
            fold.acc.flush()
        assert dump(other) == before  # nothing counted twice
        assert fold.acc.mark == other.applied and not fold.acc.acc  # starts again after it
        other.close()
        fold.close()
        os.close(r)
        os.close(w)
    finally:
        h.close()


def test_the_lock_waits_for_the_previous_fold_and_gives_up_at_stop(tmp_path):
    h = SinkHarness(str(tmp_path / "var"))
    try:
        lock_path = child.lock_path(str(tmp_path / "rollups.sqlite"))
        held = os.open(lock_path, os.O_RDWR | os.O_CREAT)
        fcntl.flock(held, fcntl.LOCK_EX)  # a fold of a killed hub still writing
        assert child.try_lock(str(tmp_path / "rollups.sqlite")) is None  # `hub rollups
        # rebuild` refuses then
        r, w = os.pipe()
        os.write(w, b"stop\n")
        assert _fold(h, tmp_path).lock(r) is False  # told to stop while waiting
        os.close(held)  # the holder exited: the kernel drops its lock
        fold = _fold(h, tmp_path)
        assert fold.lock(r)
        fold.close()
        os.close(r)
        os.close(w)
    finally:
        h.close()


@pytest.mark.parametrize("stdin", ["stop", "eof"])
def test_the_loop_writes_and_leaves_at_stop_or_when_the_hub_is_gone(tmp_path, stdin):
    h = SinkHarness(str(tmp_path / "var"))
    try:
        last = _feed(h, 60)
        r, w = os.pipe()
        if stdin == "stop":
            os.write(w, b"stop\n")
        else:
            os.close(w)  # the hub died: its end of the pipe closed
        out = io.StringIO()
        assert _fold(h, tmp_path, out).run(r) == 0
        # what it had folded is written and said; the backlog waits for the next start
        said = _said(out)[-1]["flushed"]
        store = RollupStore(str(tmp_path / "rollups.sqlite"))
        assert 0 < store.applied == said <= last
        store.close()
        if stdin == "stop":
            os.write(w, b"stop\n")
        assert _fold(h, tmp_path).run(r) == 0
        store = RollupStore(str(tmp_path / "rollups.sqlite"))
        assert store.applied > said
        store.close()
        os.close(r)
        if stdin == "stop":
            os.close(w)
    finally:
        h.close()


def _config(tmp_path, sinks):
    from hub.config import check_config
    from hub.pluginmanager import make_plugins

    data = {"hub": {"state_dir": "var"}, "devices": [], "sinks": sinks}
    return check_config(yaml.safe_load(yaml.safe_dump(data)), tmp_path / "hub.yaml",
                        make_plugins())


def test_the_fold_process_is_the_default_and_its_options_are_checked(tmp_path):
    from hub.rollups.sink import RollupOptions

    assert RollupOptions().process is True
    on = _config(tmp_path, {"rollups": {"type": "rollups"}})
    o = on.sinks["rollups"].options
    assert (o.process, o.poll_interval, o.stop_timeout) == (True, 0.2, 30.0)
    off = _config(tmp_path, {"rollups": {"type": "rollups", "process": False}})
    assert off.sinks["rollups"].options.process is False
    with pytest.raises(Exception, match=r"sinks\.rollups\.poll_interval"):
        _config(tmp_path, {"rollups": {"type": "rollups", "poll_interval": 0}})
    with pytest.raises(Exception, match=r"sinks\.rollups\.process"):
        _config(tmp_path, {"rollups": {"type": "rollups", "process": "sometimes"}})


class _Transport:
    def __init__(self, pid):
        self.pid = pid
        self.written = b""
        self.stdin_closed = False
        self.signals = []

    def write(self, data):
        self.written += data

    def closeStdin(self):
        self.stdin_closed = True

    def signalProcess(self, sig):
        self.signals.append(sig)


class _Reactor:
    """task.Clock that 'starts' processes: the supervisor's decisions on injected time,
    no process involved."""

    def __init__(self):
        from twisted.internet.task import Clock

        self.clock = Clock()
        self.clock.advance(1_767_225_600.0)
        self.callLater = self.clock.callLater
        self.seconds = self.clock.seconds
        self.spawned = []

    def spawnProcess(self, proto, executable, argv, env, childFDs):
        t = _Transport(1000 + len(self.spawned))
        proto.makeConnection(t)
        self.spawned.append((proto, argv, env))
        return t


def _ended(proto, sig=None, code=None):
    from twisted.internet import error
    from twisted.python.failure import Failure

    if sig is None and code == 0:
        proto.processEnded(Failure(error.ProcessDone(0)))
    else:
        proto.processEnded(Failure(error.ProcessTerminated(code, sig)))


def test_the_supervisor_restarts_with_backoff_raises_a_fault_once_and_stops_cleanly():
    import random

    from hub.metrics import Metrics
    from hub.rollups.supervise import FOLD_FAILED_CODE, FoldSupervisor
    from hub.sinks import Backoff

    reactor, metrics, events, flushed = _Reactor(), Metrics(), [], []
    sup = FoldSupervisor(reactor, ["python", "-m", "hub.rollups.child"], metrics=metrics,
                         record_events=events.extend,
                         backoff=Backoff(1.0, 8.0, random.Random(3)),
                         flushed=lambda seq, n: flushed.append((seq, n)), stop_timeout=5)

    def value(name):
        return {m["name"]: m["value"] for m in metrics.snapshot()}.get(name)
    sup.start()
    proto = reactor.spawned[0][0]
    proto.childDataReceived(1, b'{"ready": 0, "pid": 1000, "cpu": 0.25}\n{"flushed": 7')
    proto.childDataReceived(1, b', "readings": 5, "cpu": 0.5}\n')
    assert flushed == [(7, 5)] and value("rollups.fold_cpu_seconds") == 0.25
    delays = []
    for k in range(1, 5):  # dies again and again: each wait about twice the last
        _ended(reactor.spawned[-1][0], sig=9)
        assert value("rollups.fold_restarts") == k and value("rollups.fold_running") == 0
        call = sup._respawn
        delays.append(call.getTime() - reactor.seconds())
        reactor.clock.advance(delays[-1])
        assert len(reactor.spawned) == k + 1 and value("rollups.fold_running") == 1
    for k, d in enumerate(delays):
        assert min(8.0, 2.0 ** k) * 0.5 <= d < min(8.0, 2.0 ** k)
    assert [(e.code, e.state.value) for e in events] == [(FOLD_FAILED_CODE, "raised")]
    assert "killed by signal 9" in events[0].message
    # the restarted child writes: the fault clears, the next death waits the least again
    reactor.spawned[-1][0].childDataReceived(1, b'{"flushed": 9, "readings": 2, "cpu": 1}\n')
    assert [e.state.value for e in events] == ["raised", "cleared"] and sup.restarts == 0
    # a stop asks, then kills a child that does not leave in stop_timeout
    proto = reactor.spawned[-1][0]
    done = sup.stop()
    assert proto.transport.written == b"stop\n" and proto.transport.stdin_closed
    reactor.clock.advance(5)
    assert proto.transport.signals == ["KILL"] and not done.called
    _ended(proto, sig=9)
    assert done.called and len(reactor.spawned) == 5  # not started again
    assert len(events) == 2  # a death asked for is no fault


def test_a_process_that_cannot_start_is_tried_again_later():
    import random

    from hub.metrics import Metrics
    from hub.rollups.supervise import FoldSupervisor
    from hub.sinks import Backoff

    reactor, events = _Reactor(), []
    spawn = reactor.spawnProcess

    def refuse(*args, **kwargs):
        raise OSError("Resource temporarily unavailable")
    reactor.spawnProcess = refuse
    sup = FoldSupervisor(reactor, ["python"], metrics=Metrics(), record_events=events.extend,
                         backoff=Backoff(1.0, 8.0, random.Random(1)), flushed=lambda *a: None)
    sup.start()
    assert sup.child is None and sup._respawn is not None
    assert "Resource temporarily unavailable" in events[0].message
    reactor.spawnProcess = spawn
    reactor.clock.advance(1.0)
    assert len(reactor.spawned) == 1 and sup.child is not None
