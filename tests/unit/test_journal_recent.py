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
    served = 0
    for step in range(120):
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
