"""The journal's in-memory copy of its last commits (hub.journal.recent): every
``read_rows`` it answers must be what SQLite holds, whatever was appended, failed, pruned."""

from __future__ import annotations

import math
import random

import pytest
from twisted.internet.task import Clock

from hub.journal import Journal
from hub.journal.recent import RecentRows
from hub.model import (
    CommandResult,
    CommandStatus,
    Event,
    EventKind,
    EventState,
    Level,
    Quality,
    Reading,
)
from hub.sinks import JournalTail

T0 = 1_767_225_600.0
KIND_SETS = [None, {"reading"}, {"reading", "event"}, {"event"}, {"event", "command_result"}]


def stored(j: Journal, after: int, limit: int, kinds) -> list[tuple]:
    """read_rows from SQLite alone."""
    recent, j._recent = j._recent, RecentRows()
    try:
        return j.read_rows(after, limit, kinds)
    finally:
        j._recent = recent


def records(rng: random.Random, n: int, t: float) -> list:
    out: list = []
    for i in range(n):
        x = rng.random()
        dev = f"d{rng.randrange(5)}"
        if x < 0.85:
            v = rng.choice([1.5, 2, True, -0.0, math.inf, 230.25])
            out.append(Reading(dev, rng.choice(["voltage", "current"]), v,
                               rng.choice([t + i, int(t) + i]), rng.choice(["A", "B"]),
                               rng.choice([Quality.GOOD, Quality.GOOD, Quality.BAD])))
        elif x < 0.95:
            out.append(Event(dev, EventKind.ALARM, "temperature", EventState.RAISED, t + i,
                             Level.ALARM, "T1", f"e{rng.random()}", value=90.0))
        else:
            out.append(CommandResult(f"c{i}", dev, CommandStatus.SUCCEEDED, t + i))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_every_answer_from_memory_is_what_sqlite_holds(tmp_path, seed):
    rng = random.Random(seed)
    clock = Clock()
    j = Journal(str(tmp_path / "j.sqlite"), clock=clock, max_batch=10**9)
    j.open()
    j._recent.limit = 300  # small, so trimming and misses happen
    j._recent.held = 900
    served = 0
    for step in range(120):
        if rng.random() < 0.2:  # sinks behind hold rows in memory, then catch up or stop
            name = rng.choice(["s1", "s2"])
            if rng.random() < 0.3:
                j.unfollow(name)
            else:
                j.follow(name, rng.randrange(max(0, j.last_seq() - 1000), j.last_seq() + 1))
        for _ in range(rng.randrange(1, 4)):
            j.append(records(rng, rng.randrange(0, 60), T0 + step))
        if rng.random() < 0.1:
            j.append([Reading("d1", "voltage", math.nan, T0, "A")])  # stored as NULL
        j.flush()
        if rng.random() < 0.05:
            j.prune(clock.seconds())
        top = j.last_seq()
        for _ in range(5):
            after = rng.randrange(max(0, top - 400), top + 2)
            limit = rng.choice([1, 7, 100, 5000])
            kinds = rng.choice(KIND_SETS)
            got = j.read_rows(after, limit, kinds)
            want = stored(j, after, limit, kinds)
            assert got == want, (step, after, limit, kinds)
            assert [tuple(map(type, r)) for r in got] == [tuple(map(type, r)) for r in want]
            served += j._recent.read(after, limit, top, None) is not None
    j.close()
    assert served > 100  # the cache answered, it was not merely bypassed


def test_a_failed_commit_leaves_nothing_in_memory(tmp_path):
    j = Journal(str(tmp_path / "j.sqlite"), clock=Clock())
    j.open()
    j.append([Reading("d1", "voltage", 1.0, T0, "A")])
    j.flush()
    j._conn().execute("CREATE TRIGGER no BEFORE INSERT ON segments"  # the reading of value 2.0
                      " WHEN EXISTS (SELECT 1 FROM json_each(CAST(NEW.body AS TEXT))"
                      " WHERE json_extract(value, '$[4]') = 2.0)"
                      " BEGIN SELECT RAISE(ABORT, 'refused'); END")
    d = j.append([Reading("d1", "voltage", 2.0, T0 + 1, "A")])
    d.addErrback(lambda f: None)
    j.flush()
    assert j.last_seq() == 1
    assert j.read_rows(0, 10) == stored(j, 0, 10, None) and len(j.read_rows(0, 10)) == 1
    j.append([Reading("d1", "voltage", 3.0, T0 + 2, "A")])
    j.flush()
    assert j.read_rows(0, 10) == stored(j, 0, 10, None)
    assert [r[4] for r in j.read_rows(0, 10)] == [1.0, 3.0]
    j.close()


def rows_of(first: int, n: int) -> list[tuple]:
    return [(s, 0, 1, T0 + s, 1.0, None, None) for s in range(first, first + n)]


def test_rows_a_follower_has_not_read_stay_up_to_the_held_bound():
    r = RecentRows(limit=100, held=400)
    r.committed(0, 100, rows_of(1, 100), [])
    r.follow("influx", 50)  # behind: has read up to seq 50
    r.committed(100, 300, rows_of(101, 200), [])
    # without the follower 100 rows would be kept; seqs 51.. are held for it
    assert r.start == 50 and len(r.rows) == 250
    assert r.read(50, 1000, 300, None) == rows_of(51, 250)
    r.committed(300, 600, rows_of(301, 300), [])  # 550 unread: more than held
    assert len(r.rows) == 400 and r.start == 200
    assert r.read(50, 10, 600, None) is None  # fell out: SQLite answers it
    r.follow("influx", 590)  # nearly caught up: only its unread rows past the limit stay
    r.committed(600, 700, rows_of(601, 100), [])
    assert r.start == 590 and len(r.rows) == 110 and r.end == 700
    # two followers: the one further behind decides
    r.follow("fire-centre", 650)
    r.follow("influx", 690)
    r.committed(700, 800, rows_of(701, 100), [])
    assert r.start == 650
    r.unfollow("fire-centre")
    r.unfollow("influx")
    r.committed(800, 900, rows_of(801, 100), [])
    assert r.start == 800 and len(r.rows) == 100


def test_a_tail_reading_readings_follows_and_stops_following_when_released(tmp_path):
    j = Journal(str(tmp_path / "j.sqlite"), clock=Clock())
    j.open()
    j._recent.limit, j._recent.held = 8, 1000
    readings = JournalTail(j, "vm")
    events = JournalTail(j, "sms", kinds={"event"})
    for t in (readings, events):
        t.claim()
    j.append([Reading("d1", "voltage", float(i), T0 + i, "A") for i in range(5)])
    j.flush()
    rows, end, _ = readings.read_rows(2)
    events.read(10)
    assert end == 2 and j._recent.followers == {"vm": 2}  # the event sink holds nothing
    j.append([Reading("d1", "voltage", float(i), T0 + i, "A") for i in range(5, 40)])
    j.flush()
    assert j._recent.start == 2 and len(j._recent.rows) == 38
    assert readings.read_rows(100)[0] == stored(j, 2, 100, None)
    readings.restart()
    assert j._recent.followers == {"vm": 0}
    readings.release()
    events.release()
    assert j._recent.followers == {}
    j.close()
