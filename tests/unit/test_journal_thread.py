"""Journal commits in a thread of their own (hub.journal.committer): an append's Deferred
still fires only after its transaction committed, in the caller's (reactor) thread."""

from __future__ import annotations

import queue
import sqlite3

import pytest
from twisted.internet.task import Clock

from hub.journal import Journal, committer
from hub.model import Reading

T0 = 1_767_225_600.0


class Reactor:
    """Stands in for ``reactor.callFromThread``: calls wait until the test runs them."""

    def __init__(self) -> None:
        self.calls: queue.Queue = queue.Queue()

    def call_from_thread(self, fn, *args) -> None:
        self.calls.put((fn, args))

    def run_one(self) -> None:
        fn, args = self.calls.get(timeout=30)
        fn(*args)


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setattr(committer, "THREAD_MIN", 1)  # every commit goes to the thread
    clock, reactor = Clock(), Reactor()
    j = Journal(str(tmp_path / "j.sqlite"), clock=clock)
    j.open()
    j.commit_in_thread(reactor.call_from_thread)
    yield j, clock, reactor
    j.close()


def stored(j: Journal) -> list[tuple[int, float]]:
    db = sqlite3.connect(j.path)
    try:
        return db.execute("SELECT seq, value FROM records ORDER BY seq").fetchall()
    finally:
        db.close()


def readings(*values: float) -> list[Reading]:
    return [Reading("d1", "voltage", v, T0 + v, "A") for v in values]


def test_the_deferred_fires_after_the_commit_in_the_reactor_thread(setup):
    j, clock, reactor = setup
    fired = []
    j.append(readings(1, 2)).addCallback(fired.append)
    clock.advance(0.005)  # the timer hands the batch to the commit thread
    assert fired == []  # nothing acked before the commit thread answered
    reactor.run_one()
    assert fired == [2]
    assert stored(j) == [(1, 1.0), (2, 2.0)]
    assert j.last_seq() == 2
    assert j.read_rows(0, 10) == [(1, 0, 1, T0 + 1, 1.0, None, None),
                                  (2, 0, 1, T0 + 2, 2.0, None, None)]


def test_appends_during_a_commit_go_together_in_the_next(setup):
    j, clock, reactor = setup
    fired = []
    j.append(readings(1)).addCallback(fired.append)
    clock.advance(0.005)
    j.append(readings(2)).addCallback(fired.append)
    j.append(readings(3)).addCallback(fired.append)
    clock.advance(0.005)  # a commit is in flight: nothing more is dispatched
    reactor.run_one()  # the first lands; the two waiting go at the commit timer
    assert fired == [1]
    clock.advance(0.005)
    reactor.run_one()
    assert fired == [1, 2, 3]
    assert j._metrics.value("journal.commits") == 2
    assert stored(j) == [(1, 1.0), (2, 2.0), (3, 3.0)]


def test_a_failed_commit_fails_its_appends_and_the_next_goes_on(setup):
    j, clock, reactor = setup
    db = sqlite3.connect(j.path)
    db.execute("CREATE TRIGGER no BEFORE INSERT ON segments"  # the reading of value 2.0
               " WHEN EXISTS (SELECT 1 FROM json_each(CAST(NEW.body AS TEXT))"
               " WHERE json_extract(value, '$[4]') = 2.0)"
               " BEGIN SELECT RAISE(ABORT, 'refused'); END")
    db.commit()
    db.close()
    ok, failed = [], []
    j.append(readings(1)).addCallbacks(ok.append, failed.append)
    j.append(readings(2)).addCallbacks(ok.append, failed.append)
    clock.advance(0.005)
    reactor.run_one()
    assert ok == [1] and len(failed) == 1  # its neighbour was retried alone and committed
    j.append(readings(3)).addCallbacks(ok.append, failed.append)
    clock.advance(0.005)
    reactor.run_one()
    assert ok == [1, 3]
    assert stored(j) == [(1, 1.0), (3, 3.0)]  # seq 2 is a gap, as after a prune


def test_flush_waits_for_the_commit_in_flight_then_commits_the_rest(setup):
    j, clock, reactor = setup
    fired = []
    j.append(readings(1)).addCallback(fired.append)
    clock.advance(0.005)
    j.append(readings(2)).addCallback(fired.append)
    assert j.flush() == 2
    assert fired == [1, 2]
    assert stored(j) == [(1, 1.0), (2, 2.0)]
    reactor.run_one()  # the thread's late report of the first commit changes nothing
    assert fired == [1, 2] and j.last_seq() == 2


def test_small_commits_stay_on_the_callers_thread(tmp_path):
    clock, reactor = Clock(), Reactor()
    j = Journal(str(tmp_path / "j.sqlite"), clock=clock)
    j.open()
    j.commit_in_thread(reactor.call_from_thread)
    fired = []
    j.append(readings(1, 2)).addCallback(fired.append)
    clock.advance(0.005)
    assert fired == [2]  # committed inline: no hand-over to wait for
    assert reactor.calls.empty()
    big = [Reading("d1", "voltage", 1.0, T0 + i, "A") for i in range(committer.THREAD_MIN)]
    j.append(big).addCallback(fired.append)
    clock.advance(0.005)
    assert fired == [2]  # this one went to the thread
    reactor.run_one()
    assert fired == [2, 2 + committer.THREAD_MIN]
    j.close()


def test_close_commits_what_is_buffered(tmp_path, monkeypatch):
    monkeypatch.setattr(committer, "THREAD_MIN", 1)
    clock, reactor = Clock(), Reactor()
    j = Journal(str(tmp_path / "j.sqlite"), clock=clock)
    j.open()
    j.commit_in_thread(reactor.call_from_thread)
    fired = []
    j.append(readings(1)).addCallback(fired.append)
    clock.advance(0.005)
    j.append(readings(2)).addCallback(fired.append)
    j.close()
    assert fired == [1, 2]
    j2 = Journal(str(tmp_path / "j.sqlite"), clock=clock)
    j2.open()
    assert [r.value for _, r in j2.read(0, 10)] == [1.0, 2.0]
    j2.close()
