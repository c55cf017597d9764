"""Schema 1 (a row per reading) to schema 2 (readings by the segment): existing journals
are upgraded when the hub opens them, all or nothing, and read back the same."""

from __future__ import annotations

import sqlite3

import pytest
from twisted.internet.task import Clock

from hub.journal import Journal, JournalError, segments
from hub.model import Event, EventKind, EventState, Level, Quality, Reading, event_id
from tests.support.journal_v1 import write_v1

T0 = 1_767_225_600.0


def records() -> list:
    """Three devices interleaved, a bad-quality and a missing value, an int ts, an alarm."""
    out: list = []
    for i in range(40):
        for dev in ("d1", "d2", "d3"):
            out.append(Reading(dev, "voltage", 220.0 + i, T0 + i, "A"))
            out.append(Reading(dev, "current", None if i == 7 else 1.5 * i, T0 + i, "",
                               Quality.BAD if i == 9 else Quality.GOOD))
        if i == 20:
            out.append(Event("d2", EventKind.ALARM, "temperature", EventState.RAISED, T0 + i,
                             Level.ALARM, "T1",
                             id=event_id("d2", "temperature", "T1", Level.ALARM, T0 + i),
                             value=91.5, set_point=80.0))
    out.append(Reading("d1", "voltage", 5, 1_767_300_000, "A"))  # ints, as SQLite kept them
    return out


@pytest.fixture
def v1(tmp_path, monkeypatch):
    monkeypatch.setattr(segments, "MIGRATION_SPAN", 16)  # segments of several spans
    path = str(tmp_path / "j.sqlite")
    recs = records()
    write_v1(path, recs, {"influx": 100, "rollups": len(recs)})
    return path, recs


def test_a_schema_1_journal_is_upgraded_at_open_and_reads_the_same(v1):
    path, recs = v1
    j = Journal(path, clock=Clock())
    j.open()
    try:
        assert j._conn().execute("PRAGMA user_version").fetchone()[0] == 2
        tables = {n for (n,) in j._conn().execute("SELECT name FROM sqlite_master")}
        assert {"segments", "entries", "records", "readings"} <= tables
        assert j._conn().execute("SELECT count(*) FROM segments").fetchone()[0] > 3
        got = j.read(0, 10_000)
        assert [s for s, _ in got] == list(range(1, len(recs) + 1))
        # what schema 1 gave back: REAL columns as floats
        want = [Reading(r.device, r.quantity, None if r.value is None else float(r.value),
                        float(r.ts), r.channel, r.quality) if isinstance(r, Reading) else r
                for r in recs]
        assert [r for _, r in got] == want
        assert j.read(100, 5) == got[100:105]  # from the middle of a segment
        assert j.last_seq() == len(recs) and j.first_seq() == 1
        assert j.cursors() == {"influx": 100, "rollups": len(recs)}
        assert [(r.quantity, r.channel, r.value) for r in j.latest("d1")] == [
            ("current", "", 58.5), ("voltage", "A", 5.0)]
        assert [r.value for r in j.history("d2", "voltage", since=T0 + 30, limit=3)] == [
            257.0, 258.0, 259.0]
        assert [e.code for e in j.events()] == ["temperature"]
        assert [e.code for e in j.active_events()] == []  # active was not in this fixture
        assert j._conn().execute("SELECT count(*) FROM readings").fetchone()[0] == len(recs) - 1
        # the journal goes on after the old seqs
        d = j.append([Reading("d3", "voltage", 1.0, T0 + 99, "A")])
        j.flush()
        assert d.result == len(recs) + 1
    finally:
        j.close()
    j = Journal(path, clock=Clock())  # opened again: already schema 2, nothing to do
    j.open()
    assert len(j.read(0, 10_000)) == len(recs) + 1
    j.close()


def test_a_failed_upgrade_leaves_the_schema_1_journal_as_it_was(v1, monkeypatch):
    path, recs = v1

    def broken(*args):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(segments, "encode", broken)
    with pytest.raises(RuntimeError):
        Journal(path, clock=Clock()).open()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM records").fetchone()[0] == len(recs)
    assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'segments'"
                      ).fetchone()[0] == 0
    db.close()


def test_a_reader_does_not_upgrade(v1):
    """Read-only (the CLI beside a running hub) cannot upgrade: it says how to."""
    path, _ = v1
    with pytest.raises(JournalError, match="open it read-write once"):
        Journal(path, clock=Clock(), readonly=True).open()


def test_pruning_cuts_the_segments_of_a_commit_exactly(tmp_path):
    """One commit of three devices is three interleaved segments: pruning through a seq in
    their middle deletes exactly the records up to it."""
    clock = Clock()
    j = Journal(str(tmp_path / "j.sqlite"), clock=clock, retention=1.0)
    j.open()
    j.append([Reading(d, "voltage", float(i), T0 + i, "A")
              for i in range(10) for d in ("d1", "d2", "d3")])
    j.flush()
    j.set_cursor("sink", 13)
    clock.advance(100)
    assert j.prune(clock.seconds()) == 13
    assert [s for s, _ in j.read(0, 100)] == list(range(14, 31))
    assert j.first_seq() == 14
    assert j._conn().execute("SELECT count(*) FROM records").fetchone()[0] == 17
    j.close()


def test_the_records_view_updates_and_deletes_as_the_table_did(tmp_path):
    """The sqlite3 shell (and tests corrupting a row on purpose) may still UPDATE and DELETE
    ``records``: the triggers rewrite the segment or the entry behind the row."""
    j = Journal(str(tmp_path / "j.sqlite"), clock=Clock())
    j.open()
    j.append([Reading("d1", "voltage", 1.0, T0, "A"), Reading("d2", "voltage", 2.0, T0, "A"),
              Event("d1", EventKind.ALARM, "temperature", EventState.RAISED, T0, Level.ALARM,
                    "T1", "e1", value=91.5),
              Reading("d1", "voltage", 3.0, T0 + 1, "A")])
    j.flush()
    db = j._conn()
    db.execute("UPDATE records SET value = 9.5 WHERE seq = 4")
    db.execute("UPDATE records SET data = json_set(data, '$.code', 'smoke') WHERE seq = 3")
    db.execute("DELETE FROM records WHERE seq = 1")
    j._recent.clear()
    got = j.read(0, 10)
    assert [s for s, _ in got] == [2, 3, 4]
    assert got[1][1].code == "smoke" and got[2][1].value == 9.5 and got[0][1].value == 2.0
    assert db.execute("SELECT seq, value FROM records ORDER BY seq").fetchall() == [
        (2, 2.0), (3, None), (4, 9.5)]
    j.close()


def test_first_reading_ts_is_the_oldest_reading_held(tmp_path):
    j = Journal(str(tmp_path / "j.sqlite"), clock=Clock())
    j.open()
    assert j.first_reading_ts() is None
    j.append([Event("d1", EventKind.ALARM, "temperature", EventState.RAISED, T0 - 50,
                    Level.ALARM, "T1", "e1", value=91.5),
              Reading("d2", "voltage", 2.0, T0 + 5, "A"), Reading("d1", "voltage", 1.0, T0, "A")])
    j.flush()
    assert j.first_reading_ts() == T0  # events do not count
    j.close()


@pytest.mark.parametrize("seed", range(3))
def test_segment_reads_agree_with_the_rows_they_hold(tmp_path, seed):
    """Random commits of interleaved devices with out-of-order ts: history with a limit is
    the newest end of the full answer, and reads from any seq give the view's rows."""
    import random

    rng = random.Random(seed)
    j = Journal(str(tmp_path / "j.sqlite"), clock=Clock(), max_batch=10**9)
    j.open()
    for _ in range(30):
        for _ in range(rng.randrange(1, 6)):
            j.append([Reading(rng.choice(("d1", "d2", "d3")), rng.choice(("voltage", "current")),
                              rng.random(), T0 + rng.randrange(0, 500), "A")
                      for _ in range(rng.randrange(1, 12))])
        j.flush()
    j._recent.clear()  # what SQLite holds, not the cache
    top = j.last_seq()
    for _ in range(40):
        after, limit = rng.randrange(0, top + 1), rng.choice((1, 5, 50, 10_000))
        want = j._conn().execute(
            "SELECT seq, kind, series, ts, value, quality, data FROM records WHERE seq > ?"
            " ORDER BY seq LIMIT ?", (after, limit)).fetchall()
        assert j.read_rows(after, limit) == want
        device, since = rng.choice(("d1", "d2", "d3")), T0 + rng.randrange(0, 500)
        full = j.history(device, "voltage", since=since)
        assert j.history(device, "voltage", since=since, limit=limit) == full[-limit:]
        assert [r.ts for r in full] == sorted(r.ts for r in full)
    j.close()
