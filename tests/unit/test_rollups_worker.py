"""The rollup fold off the reactor thread: the worker thread's results equal the inline
fold's, its cursor moves only after a write, a failure drops the batches queued behind
it; rollups run by default."""

from __future__ import annotations

import threading

import pytest
import yaml

from hub.rollups import DAY, HOUR, RollupStore
from hub.rollups.fold import Accumulator
from hub.rollups.sink import FoldWorker

T = 1_767_196_800.0


def rows(start_seq, n, sid=1, t0=T, step=600.0, v0=0.0):
    return [(start_seq + i, 0, sid, t0 + i * step, v0 + i * 0.5, None, None) for i in range(n)]


NAMES = {1: ("m1", "", "active_energy"), 2: ("m1", "T1", "temperature")}


def dump(store):
    return store.db.execute("SELECT series, width, start, count, min, max, round(total, 9), "
                            "last_ts, last, round(energy, 9) FROM buckets ORDER BY 1, 2, 3"
                            ).fetchall()


class Reports:
    """``call_from_thread`` for the worker: runs the report at once, under a lock, and
    lets the test wait for a given report without sleeping."""

    def __init__(self):
        self.lock = threading.Lock()
        self.seen = []
        self.changed = threading.Condition(self.lock)

    def call(self, fn, *args):
        with self.changed:
            fn(*args)
            self.changed.notify_all()

    def report(self, *what):
        self.seen.append(what)

    def wait(self, predicate, timeout=30):
        with self.changed:
            assert self.changed.wait_for(lambda: predicate(self.seen), timeout), self.seen


def test_the_worker_thread_folds_as_inline_and_reports_after_each_write(tmp_path):
    batches = [rows(1, 50), rows(51, 50, t0=T + 50 * 600, v0=25.0),
               [(101, 0, 2, T + 5, 30.0, None, None), (102, 3, None, T + 6, None, None, "{}")]]
    inline = RollupStore(str(tmp_path / "inline.sqlite"))
    for b in batches:
        inline.apply(b, NAMES.__getitem__)
    r = Reports()
    w = FoldWorker(str(tmp_path / "thread.sqlite"), 8 * 3600, NAMES.__getitem__,
                   r.report, r.call)
    w.start()
    for b in batches:
        w.submit("rows", b, b[-1][0], 1)
    w.submit("flush")
    r.wait(lambda seen: any(s[0] == "flushed" for s in seen))
    assert [s for s in r.seen if s[0] == "flushed"] == [("flushed", 102, 1, 101)]
    assert [s for s in r.seen if s[0] == "consumed"] == [("consumed",)] * 3
    w.submit("rows", rows(1, 30), 30, 2)  # read again after a restart: nothing new
    w.submit("stop")
    w._thread.join(30)
    assert w.done.called
    threaded = RollupStore(str(tmp_path / "thread.sqlite"))
    assert dump(threaded) == dump(inline) and threaded.applied == 102
    # the re-read batch was of a new epoch: reported so that the cursor can move
    assert r.seen[-1] == ("flushed", 102, 2, 0)
    threaded.close()
    inline.close()


def test_a_failed_batch_drops_those_queued_behind_it(tmp_path):
    broken = {1: ("m1", "", "active_energy")}
    r = Reports()
    w = FoldWorker(str(tmp_path / "r.sqlite"), 0, broken.__getitem__, r.report, r.call)
    w.start()
    w.submit("rows", rows(1, 10), 10, 1)
    w.submit("rows", [(11, 0, 2, T, 1.0, None, None)], 11, 1)  # series 2: KeyError
    w.submit("rows", rows(12, 5, t0=T + 7200), 16, 1)  # behind the failure: dropped
    w.submit("flush")
    r.wait(lambda seen: any(s[0] == "failed" for s in seen))
    w.submit("rows", rows(1, 16), 16, 2)  # the sink restarted from its cursor
    w.submit("stop")
    w._thread.join(30)
    failed = [s for s in r.seen if s[0] == "failed"]
    assert len(failed) == 1 and failed[0][1].check(KeyError)
    store = RollupStore(str(tmp_path / "r.sqlite"))
    # only the restarted epoch's 16 readings, once: 7.5 kWh over 15 steps
    assert store.energy("m1", DAY) == {T // DAY * DAY: 7.5}
    assert store.applied == 16
    store.close()


def test_the_accumulator_writes_one_upsert_per_bucket_per_flush(tmp_path):
    store = RollupStore(str(tmp_path / "r.sqlite"), tz_offset=0)
    acc = Accumulator(store)
    for k in range(6):  # a reading every 10 min for an hour, six batches
        acc.add(rows(k + 1, 1, t0=T + k * 600, v0=k * 0.5), NAMES.__getitem__)
    assert len(acc.acc) == 1  # one hour; the day is made from it at write time
    assert acc.flush() == 6
    assert [b.count for b in store.buckets("m1", width=HOUR)] == [6]
    assert store.energy("m1", DAY) == {T // DAY * DAY: 2.5}
    store.close()


def _config(tmp_path, sinks):
    from hub.config import check_config
    from hub.pluginmanager import make_plugins

    data = {"hub": {"state_dir": "var"}, "devices": []}
    if sinks is not None:
        data["sinks"] = sinks
    return check_config(yaml.safe_load(yaml.safe_dump(data)), tmp_path / "hub.yaml",
                        make_plugins())


def test_rollups_run_by_default_and_can_be_turned_off(tmp_path):
    on = _config(tmp_path, None)
    assert [(k, s.type) for k, s in on.sinks.items()] == [("rollups", "rollups")]
    assert on.sinks["rollups"].options.worker == "thread"
    off = _config(tmp_path, {"rollups": {"type": "rollups", "enabled": False}})
    assert off.sinks == {}
    mine = _config(tmp_path, {"agg": {"type": "rollups", "tz_offset_hours": 0}})
    assert list(mine.sinks) == ["agg"]
    with pytest.raises(Exception, match="worker"):
        _config(tmp_path, {"rollups": {"type": "rollups", "worker": "process"}})
