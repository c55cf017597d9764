"""``latest`` kept in memory and saved in batches (hub.journal.latest): readers and a
journal reopened after a kill see every committed reading, as when each commit wrote it."""

from __future__ import annotations

import random
import shutil
import sqlite3

from twisted.internet.task import Clock

from hub.journal import Journal
from hub.journal.latest import SAVE_EVERY
from hub.model import Quality, Reading

T0 = 1_700_000_000.0
TICK = 0.005


def _open(path, clock, **kw) -> Journal:
    j = Journal(str(path), clock=clock, **kw)
    j.open()
    return j


def _table(path) -> dict:
    with sqlite3.connect(path) as db:
        return {sid: (ts, value) for sid, ts, value in
                db.execute("SELECT series, ts, value FROM latest")}


def _crash_image(src, dst) -> None:
    """The files as a kill -9 leaves them: the database and its WAL, nothing flushed."""
    shutil.copy(str(src), str(dst))
    shutil.copy(str(src) + "-wal", str(dst) + "-wal")


def test_commits_between_saves_leave_the_table_but_every_reader_sees_them(tmp_path):
    clock = Clock()
    path = tmp_path / "j.sqlite"
    j = _open(path, clock)
    j.append([Reading("d", "voltage", 220.0, T0, "A")])
    clock.advance(TICK)  # the first commit saves
    saved = _table(path)
    j.append([Reading("d", "voltage", 221.0, T0 + 1, "A"),
              Reading("d", "current", 5.0, T0 + 1, "A", Quality.UNCERTAIN)])
    clock.advance(TICK)
    assert _table(path) == {**saved, 2: (None, None)}  # not written by this commit
    expected = [Reading("d", "current", 5.0, T0 + 1, "A", Quality.UNCERTAIN),
                Reading("d", "voltage", 221.0, T0 + 1, "A")]
    reader = _open(path, Clock(), readonly=True)
    assert j.latest("d") == expected and reader.latest("d") == expected
    assert reader.latest("d", "voltage") == expected[1:]
    clock.advance(SAVE_EVERY)
    j.append([Reading("d", "voltage", 222.0, T0 + 2, "A")])
    clock.advance(TICK)
    assert sorted(v for _, v in _table(path).values()) == [5.0, 222.0]
    reader.close()
    j.close()


def test_latest_after_a_kill_equals_latest_before_it(tmp_path):
    """Random readings (late arrivals, ties, several devices) over commits with and without
    saves; a crash image taken at each step reopens with the latest of the live journal."""
    rnd = random.Random(15)
    clock = Clock()
    path = tmp_path / "j.sqlite"
    j = _open(path, clock)
    devices = ["a", "b", "c"]
    for step in range(40):
        batch = [Reading(rnd.choice(devices), rnd.choice(["voltage", "current"]),
                         float(rnd.randrange(100)), T0 + rnd.randrange(20), rnd.choice("AB"))
                 for _ in range(rnd.randrange(1, 12))]
        j.append(batch)
        clock.advance(rnd.choice([TICK, TICK, SAVE_EVERY / 3]))
        if step % 8 != 7:
            continue
        before = {d: j.latest(d) for d in devices}
        image = tmp_path / f"crash-{step}.sqlite"
        _crash_image(path, image)
        reader = _open(image, Clock(), readonly=True)
        assert {d: reader.latest(d) for d in devices} == before
        reader.close()
        again = _open(image, Clock())
        assert {d: again.latest(d) for d in devices} == before
        last = again.last_seq()
        again.close()  # saves what it folded: the table alone is now exact
        with sqlite3.connect(image) as db:
            saved_at = db.execute("SELECT value FROM meta WHERE key = 'latest_seq'").fetchone()
        assert saved_at == (last,)
        reader = _open(image, Clock(), readonly=True)
        assert {d: reader.latest(d) for d in devices} == before
        reader.close()
    j.close()


def test_a_later_commit_wins_a_tie_and_an_older_reading_never_does(tmp_path):
    clock = Clock()
    path = tmp_path / "j.sqlite"
    j = _open(path, clock)
    j.append([Reading("d", "voltage", 1.0, T0 + 5, "A"), Reading("d", "voltage", 2.0, T0 + 5, "A")])
    clock.advance(TICK)
    assert [r.value for r in j.latest("d")] == [1.0]  # the first of equal ts in a commit
    j.append([Reading("d", "voltage", 3.0, T0 + 5, "A")])
    clock.advance(TICK)
    j.append([Reading("d", "voltage", 4.0, T0 + 4, "A")])
    clock.advance(TICK)
    _crash_image(path, tmp_path / "c.sqlite")
    for journal in (j, _open(tmp_path / "c.sqlite", Clock())):
        assert [r.value for r in journal.latest("d")] == [3.0]
        journal.close()


def test_pruning_saves_latest_before_deleting_what_it_was_folded_from(tmp_path):
    clock = Clock()
    path = tmp_path / "j.sqlite"
    j = _open(path, clock, retention=10.0)  # a mark (dating for retention) every 0.5 s
    j.append([Reading("d", "voltage", 1.0, T0, "A")])
    clock.advance(TICK)
    clock.advance(0.6)
    j.append([Reading("d", "voltage", 2.0, T0 + 1, "A")])  # marked, not saved (< SAVE_EVERY)
    clock.advance(TICK)
    clock.advance(120.0)
    j.set_cursor("sink", j.last_seq())
    assert j.prune(clock.seconds()) == 2
    _crash_image(path, tmp_path / "c.sqlite")
    reader = _open(tmp_path / "c.sqlite", Clock(), readonly=True)
    assert [r.value for r in reader.latest("d")] == [2.0]
    reader.close()
    j.close()
