"""The journal: group commit, one seq stream, cursors, queries, readonly readers, size and
retention, and failures that errback instead of losing records."""

from __future__ import annotations

import sqlite3

import pytest
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from hub.journal import Journal, JournalError, JournalReadOnlyError
from hub.metrics import Metrics
from hub.model import (
    Command,
    CommandResult,
    CommandStatus,
    Event,
    EventKind,
    EventState,
    Level,
    Quality,
    Reading,
    event_id,
)

T0 = 1_700_000_000.0
TICK = 0.005  # the default commit interval


def outcome(d) -> list:
    """Collect what a Deferred fires with (a result or a Failure), consuming failures."""
    out: list = []
    d.addBoth(out.append)
    return out


def values(records) -> list[float]:
    return [r.value for r in records]


def readings(n: int, device: str = "dev-1", start: float = T0, quantity: str = "voltage"):
    return [Reading(device, quantity, 220.0 + i, start + i, "A") for i in range(n)]


def alarm(state: EventState, raised_ts: float, ts: float, device: str = "dev-1") -> Event:
    eid = event_id(device, "temperature", "T1", Level.ALARM, raised_ts)
    return Event(
        device=device,
        kind=EventKind.ALARM,
        code="temperature",
        state=state,
        ts=ts,
        level=Level.ALARM,
        channel="T1",
        id=eid,
        value=91.5,
        set_point=80.0,
        peak=95.25 if state is EventState.CLEARED else None,
        raised_ts=raised_ts if state is EventState.CLEARED else None,
        message="温度报警",
    )


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def metrics():
    return Metrics()


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "journal.sqlite")


@pytest.fixture
def make(path, clock, metrics):
    opened: list[Journal] = []

    def make(**kw) -> Journal:
        kw.setdefault("clock", clock)
        kw.setdefault("metrics", metrics)
        j = Journal(kw.pop("path", path), **kw)
        j.open()
        opened.append(j)
        return j

    yield make
    for j in opened:
        j.close()


@pytest.fixture
def journal(make):
    return make()


def reopen(j: Journal, make, **kw) -> Journal:
    j.close()
    return make(**kw)


# -- group commit ------------------------------------------------------------------------


def test_deferred_fires_only_after_commit(journal, clock, path):
    """append's Deferred has no result until the commit timer runs, then the last seq."""
    got = outcome(journal.append(readings(3)))
    reader = sqlite3.connect(path)
    assert got == []
    assert reader.execute("SELECT count(*) FROM records").fetchone()[0] == 0
    clock.advance(TICK)
    assert got == [3]
    assert reader.execute("SELECT count(*) FROM records").fetchone()[0] == 3
    reader.close()


def test_group_commit_many_appends_one_transaction(journal, clock, metrics):
    """Fifty appends inside one commit interval are committed by a single transaction."""
    results = [outcome(journal.append(readings(2, start=T0 + 10 * i))) for i in range(50)]
    assert metrics.value("journal.commits") == 0
    clock.advance(TICK)
    assert metrics.value("journal.commits") == 1
    assert metrics.value("journal.records_committed") == 100
    assert [r[0] for r in results] == list(range(2, 101, 2))


def test_max_batch_commits_synchronously(make, metrics):
    """Reaching max_batch commits at once, without waiting for the timer."""
    j = make(max_batch=10)
    first = outcome(j.append(readings(4)))
    second = outcome(j.append(readings(6, start=T0 + 100)))
    assert first == [4] and second == [10]
    assert metrics.value("journal.commits") == 1


def test_empty_append_fires_with_last_seq(journal, clock):
    """An append with no records fires at once with the last committed seq."""
    journal.append(readings(2))
    clock.advance(TICK)
    assert outcome(journal.append([])) == [2]


def test_close_commits_what_is_buffered(journal, make):
    """close() commits buffered records and fires their Deferreds."""
    got = outcome(journal.append(readings(5)))
    j = reopen(journal, make)
    assert got == [5]
    assert len(j.read(0)) == 5


# -- the stream --------------------------------------------------------------------------


def test_seq_is_one_counter_across_kinds(journal, clock):
    """Readings, events, commands and results share one increasing seq in append order."""
    cmd = Command("c1", "dev-1", "reset", T0 + 2)
    journal.append([readings(1)[0], alarm(EventState.RAISED, T0, T0 + 1), cmd])
    journal.append([CommandResult("c1", "dev-1", CommandStatus.SUCCEEDED, T0 + 3)])
    journal.append(readings(1, start=T0 + 4))
    clock.advance(TICK)
    got = journal.read(0)
    assert [seq for seq, _ in got] == [1, 2, 3, 4, 5]
    kinds = [type(r).__name__ for _, r in got]
    assert kinds == ["Reading", "Event", "Command", "CommandResult", "Reading"]
    assert journal.last_seq() == 5


def test_read_after_limit_and_kinds(journal, clock):
    """read() starts after a seq, stops at limit and keeps only the kinds asked for."""
    recs = [*readings(3), alarm(EventState.RAISED, T0, T0), *readings(3, start=T0 + 10)]
    journal.append(recs)
    clock.advance(TICK)
    assert [s for s, _ in journal.read(2, limit=3)] == [3, 4, 5]
    assert [s for s, _ in journal.read(0, kinds={"event"})] == [4]
    assert [s for s, _ in journal.read(4, kinds={"reading"})] == [5, 6, 7]
    assert journal.read(7) == []
    with pytest.raises(ValueError):
        journal.read(0, kinds={"bogus"})


def test_records_round_trip_exactly(journal, make):
    """Every field of every kind comes back equal, floats bit for bit, after a reopen."""
    recs = [
        Reading("dtu-7", "temperature", 0.1 + 0.2, T0 + 0.123456789, "T3", Quality.UNCERTAIN),
        Reading("dtu-7", "residual_current", -1e-300, 1.5, "L12", Quality.BAD),
        Reading("dtu-7", "outage", 1.0, T0 + 1 / 3),
        alarm(EventState.RAISED, T0 + 0.1, T0 + 0.1),
        alarm(EventState.CLEARED, T0 + 0.1, T0 + 7.7),
        Event(
            "dtu-7",
            EventKind.STATE,
            "reset_done",
            EventState.NOTICE,
            T0,
            Level.INFO,
            source="device",
        ),
        Command(
            "cmd-1",
            "dtu-7",
            "set_threshold",
            T0 + 2,
            "L1",
            {"threshold": 300.5, "nested": {"a": [1, 2]}},
            "alice",
            12.5,
        ),
        CommandResult("cmd-1", "dtu-7", CommandStatus.TIMED_OUT, T0 + 14.5, "no answer"),
    ]
    journal.append(recs)
    j = reopen(journal, make)
    assert [r for _, r in j.read(0)] == recs


def test_cursors_survive_reopen(journal, clock, make):
    """Cursors start at 0, are stored at once, and are there after a reopen."""
    journal.append(readings(5))
    clock.advance(TICK)
    assert journal.get_cursor("influx") == 0
    journal.set_cursor("influx", 4)
    journal.set_cursor("sms", 2)
    j = reopen(journal, make)
    assert j.cursors() == {"influx": 4, "sms": 2}
    assert j.get_cursor("influx") == 4
    # after the reopen no sink of this process has set a cursor yet: both are stale until set
    assert j.stale_cursors() == {"influx": 4, "sms": 2}
    j.set_cursor("influx", 4)
    assert j.stale_cursors() == {"sms": 2}
    assert j.delete_cursor("sms") is True and j.delete_cursor("sms") is False
    assert j.cursors() == {"influx": 4} and j.stale_cursors() == {}


def test_cursor_cannot_pass_last_committed_seq(journal):
    """A cursor beyond the committed records (or buffered ones) is refused."""
    journal.append(readings(2))
    with pytest.raises(ValueError):
        journal.set_cursor("influx", 1)  # buffered, not committed yet


# -- queries -----------------------------------------------------------------------------


def test_latest_is_newest_per_series_and_survives_reopen(journal, clock, make):
    """latest() keeps the newest reading by ts per (channel, quantity), even out of order."""
    journal.append(
        [
            Reading("d", "voltage", 220.0, T0 + 5, "A"),
            Reading("d", "voltage", 219.0, T0 + 1, "A"),  # late arrival, older: ignored
            Reading("d", "voltage", 230.0, T0 + 5, "B"),
            Reading("d", "temperature", 41.0, T0 + 2, "T1", Quality.UNCERTAIN),
            Reading("other", "voltage", 1.0, T0 + 9, "A"),
        ]
    )
    clock.advance(TICK)
    journal.append([Reading("d", "voltage", 218.0, T0 + 3, "A")])  # older than stored
    journal.append([Reading("d", "voltage", 231.0, T0 + 6, "B")])
    clock.advance(TICK)
    expected = [
        Reading("d", "temperature", 41.0, T0 + 2, "T1", Quality.UNCERTAIN),
        Reading("d", "voltage", 220.0, T0 + 5, "A"),
        Reading("d", "voltage", 231.0, T0 + 6, "B"),
    ]
    assert journal.latest("d") == expected
    j = reopen(journal, make)
    assert j.latest("d") == expected
    assert j.latest("d", "temperature") == expected[:1]
    assert j.latest("nobody") == []


def test_history_filters_orders_and_limits(journal, clock):
    """history() filters a device's readings by range and series; limit keeps the newest."""
    journal.append(
        [
            Reading("d", "voltage", 3.0, T0 + 3, "A"),
            Reading("d", "voltage", 1.0, T0 + 1, "A"),
            Reading("d", "voltage", 2.0, T0 + 2, "B"),
            Reading("d", "current", 9.0, T0 + 2, "A"),
            Reading("e", "voltage", 7.0, T0 + 2, "A"),
            alarm(EventState.RAISED, T0 + 2, T0 + 2, device="d"),
        ]
    )
    clock.advance(TICK)
    assert values(journal.history("d")) == [1.0, 2.0, 9.0, 3.0]
    assert values(journal.history("d", "voltage")) == [1.0, 2.0, 3.0]
    assert values(journal.history("d", "voltage", "A")) == [1.0, 3.0]
    assert values(journal.history("d", since=T0 + 2, until=T0 + 2)) == [2.0, 9.0]
    assert values(journal.history("d", "voltage", limit=2)) == [2.0, 3.0]
    assert journal.history("d", "frequency") == []
    assert journal.history("nobody") == []


def test_events_filter_and_newest_last(journal, clock):
    """events() filters by device and time and returns the newest `limit`, newest last."""
    journal.append(
        [
            alarm(EventState.RAISED, T0 + 1, T0 + 1, "a"),
            readings(1)[0],
            alarm(EventState.RAISED, T0 + 2, T0 + 2, "b"),
            alarm(EventState.CLEARED, T0 + 1, T0 + 3, "a"),
        ]
    )
    clock.advance(TICK)
    assert [(e.device, e.ts) for e in journal.events()] == [
        ("a", T0 + 1),
        ("b", T0 + 2),
        ("a", T0 + 3),
    ]
    assert [e.ts for e in journal.events("a")] == [T0 + 1, T0 + 3]
    assert [e.ts for e in journal.events(since=T0 + 2)] == [T0 + 2, T0 + 3]
    assert [e.ts for e in journal.events(limit=2)] == [T0 + 2, T0 + 3]
    assert journal.events("nobody") == []


def test_active_events_raise_clear_and_reopen(journal, clock, make):
    """A raise makes an event active, its clear removes it, and the set survives a reopen."""
    raise_a = alarm(EventState.RAISED, T0 + 1, T0 + 1, "a")
    raise_b = alarm(EventState.RAISED, T0 + 2, T0 + 2, "b")
    journal.append([raise_a, raise_b])
    clock.advance(TICK)
    assert journal.active_events() == [raise_a, raise_b]
    journal.append([alarm(EventState.CLEARED, T0 + 1, T0 + 5, "a")])
    clock.advance(TICK)
    assert journal.active_events() == [raise_b]
    j = reopen(journal, make)
    assert j.active_events() == [raise_b]


def test_raise_and_clear_in_one_commit_leaves_nothing_active(journal, clock):
    """A raise followed by its clear in the same group commit is not active."""
    journal.append([alarm(EventState.RAISED, T0, T0)])
    journal.append([alarm(EventState.CLEARED, T0, T0 + 1)])
    clock.advance(TICK)
    assert journal.active_events() == []


def test_touch_keeps_the_latest_time_across_reopen(journal, clock, make):
    """touch() keeps the newest last_seen per device; it is committed and survives a reopen."""
    journal.touch("a", T0 + 5)
    journal.touch("a", T0 + 1)  # older: ignored
    journal.touch("b", T0 + 2)
    assert journal.device_states() == {"a": T0 + 5, "b": T0 + 2}  # visible before commit
    clock.advance(TICK)
    journal.touch("a", T0 + 3)
    clock.advance(TICK)
    j = reopen(journal, make)
    assert j.device_states() == {"a": T0 + 5, "b": T0 + 2}


# -- a read-only reader beside the writer ------------------------------------------------


def test_a_reader_names_a_series_committed_while_it_reads_the_names(journal, clock, make):
    """A device and its first series committed between the reader's look at the devices
    and its look at the series are both known after it (they were a KeyError when the two
    were read in two snapshots)."""
    journal.append(readings(1, device="a"))
    clock.advance(TICK)
    reader = make(readonly=True)
    assert [r.device for _, r in reader.read(0)] == ["a"]  # its names are loaded
    journal.append(readings(1, device="b"))  # a series it does not know: names read again
    clock.advance(TICK)
    real = reader._db

    class CommitsAfterTheDevices:
        def execute(self, sql, *args):
            cur = real.execute(sql, *args)
            if sql.strip().startswith("SELECT id, name FROM devices"):
                rows = cur.fetchall()
                journal.append(readings(1, device="c"))
                clock.advance(TICK)
                return iter(rows)
            return cur
    reader._db = CommitsAfterTheDevices()
    try:
        assert [r.device for _, r in reader.read(1)] == ["b"]
    finally:
        reader._db = real
    assert [r.device for _, r in reader.read(2)] == ["c"]


def test_readonly_reader_sees_commits_and_refuses_writes(journal, clock, path, make):
    """A readonly journal sees the writer's later commits and refuses every write."""
    journal.append(readings(3, device="a"))
    clock.advance(TICK)
    reader = make(readonly=True)
    assert len(reader.read(0)) == 3 and reader.last_seq() == 3
    journal.append([*readings(2, device="b"), alarm(EventState.RAISED, T0, T0, "b")])
    journal.touch("b", T0 + 9)
    clock.advance(TICK)
    assert [r.device for _, r in reader.read(3, kinds={"reading"})] == ["b", "b"]
    assert reader.latest("b")[0].value == 221.0
    assert reader.device_states() == {"b": T0 + 9}
    assert len(reader.active_events()) == 1
    assert reader.last_seq() == 6
    with pytest.raises(JournalReadOnlyError):
        reader.append(readings(1))
    with pytest.raises(JournalReadOnlyError):
        reader.set_cursor("x", 1)
    with pytest.raises(JournalReadOnlyError):
        reader.touch("a", T0)
    with pytest.raises(JournalReadOnlyError):
        reader.prune(T0)
    with pytest.raises(sqlite3.OperationalError):
        reader._db.execute("DELETE FROM records")


def test_readonly_needs_an_existing_journal(tmp_path, clock):
    """Opening a missing file read-only fails instead of creating an empty journal."""
    j = Journal(str(tmp_path / "missing.sqlite"), clock=clock, readonly=True)
    with pytest.raises(FileNotFoundError):
        j.open()
    assert not (tmp_path / "missing.sqlite").exists()


def test_newer_schema_is_refused(path, clock):
    """A journal written by a newer schema version is not opened."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(JournalError):
        Journal(path, clock=clock).open()


# -- size and retention ------------------------------------------------------------------


def fill(j: Journal, clock: Clock, upto: int) -> None:
    """Append readings of many devices until the journal uses at least ``upto`` bytes."""
    n = 0
    while j.used_bytes() < upto:
        j.append([Reading(f"dev-{i % 20}", "voltage", 220.0, T0 + n + i, "A") for i in range(500)])
        n += 500
        clock.advance(TICK)
        assert n < 200_000, "journal does not grow"


def test_near_full_fault_stays_while_undelivered_and_clears_after_prune(make, clock, metrics):
    """journal_near_full stays raised while records are undelivered, clears after prune."""
    faults: list[Event] = []
    j = make(max_bytes=400_000, warn_ratio=0.5, on_fault=faults.extend)
    j.set_cursor("influx", 0)
    assert faults == [] and metrics.value("journal.near_full") == 0
    fill(j, clock, 420_000)
    clock.advance(2)  # the size is checked every second of clock time, not every commit
    j.append(readings(1))
    clock.advance(TICK)
    [raised] = faults
    assert (raised.code, raised.state, raised.kind) == (
        "journal_near_full",
        EventState.RAISED,
        EventKind.FAULT,
    )
    assert raised.device == "hub" and raised.value >= 200_000 and raised.set_point == 200_000
    assert metrics.value("journal.near_full") == 1
    assert metrics.value("journal.used_bytes") == raised.value
    last = j.last_seq()
    assert j.prune(clock.seconds()) == 0  # nothing delivered: nothing deleted
    assert len(faults) == 1 and len(j.read(0, limit=last)) == last
    j.set_cursor("influx", last)
    assert j.prune(clock.seconds()) > 0
    assert j.used_bytes() < 200_000
    cleared = faults[-1]
    assert cleared.state is EventState.CLEARED and cleared.id == raised.id
    assert cleared.raised_ts == raised.ts and cleared.peak >= raised.value
    assert metrics.value("journal.near_full") == 0


def test_near_full_fault_journaled_before_restart_is_cleared_later(path, clock):
    """A near-full fault left active before a restart is cleared under its id at open."""
    faults: list[Event] = []
    current: list[Journal] = []

    def journal_it(events):  # what the core does with the journal's faults
        faults.extend(events)
        current[-1].append(events)

    j = Journal(path, clock=clock, max_bytes=300_000, warn_ratio=0.5, on_fault=journal_it)
    current.append(j)
    j.open()
    j.set_cursor("influx", 0)
    fill(j, clock, 320_000)
    j.prune(clock.seconds())
    [raised] = faults
    j.flush()
    assert [e.id for e in j.active_events()] == [raised.id]
    j.close()
    j = Journal(path, clock=clock, max_bytes=100_000_000, on_fault=journal_it)
    current.append(j)
    j.open()
    cleared = faults[-1]
    assert cleared.state is EventState.CLEARED
    assert (cleared.id, cleared.raised_ts) == (raised.id, raised.ts)
    j.flush()
    assert j.active_events() == []
    j.close()


def test_prune_respects_cursors_and_retention(make, clock, metrics):
    """prune() deletes records older than retention only up to the slowest cursor."""
    j = make(retention=100)
    j.append(readings(10))
    clock.advance(TICK)  # committed at t=0.005
    clock.advance(50)
    j.append(readings(10, start=T0 + 50))
    clock.advance(TICK)  # committed at t=50.01
    j.set_cursor("influx", 20)
    j.set_cursor("sms", 5)
    clock.advance(70)  # t=120: the first batch is older than retention, the second is not
    assert j.prune(clock.seconds()) == 5  # sms has only delivered up to seq 5
    assert j.read(0)[0][0] == 6
    j.set_cursor("sms", 20)
    assert j.prune(clock.seconds()) == 5
    assert j.read(0)[0][0] == 11  # the second batch is younger than retention: kept
    assert j.prune(clock.seconds() + 100) == 10
    assert j.read(0) == [] and metrics.value("journal.pruned") == 20


def test_seq_never_reused_after_everything_is_pruned(make, clock):
    """Pruning every record keeps last_seq, so seqs continue after a reopen."""
    j = make(retention=1)
    j.append(readings(7))
    clock.advance(TICK)
    clock.advance(10)
    assert j.prune(clock.seconds()) == 7
    j = reopen(j, make, retention=1)
    assert j.last_seq() == 7
    assert outcome(j.append(readings(1))) == [] and j.flush() == 8


# -- failures ----------------------------------------------------------------------------


def test_failed_commit_errbacks_and_journal_recovers(journal, clock, metrics):
    """A failed commit (disk full) errbacks and keeps nothing; the next append commits."""
    journal.append(readings(5))
    clock.advance(TICK)
    pages = journal._db.execute("PRAGMA page_count").fetchone()[0]
    journal._db.execute(f"PRAGMA max_page_count = {pages}")  # a full disk, in effect
    got = outcome(journal.append(readings(4000, device="big")))
    clock.advance(TICK)
    [failure] = got
    assert isinstance(failure, Failure) and failure.check(sqlite3.OperationalError)
    assert metrics.value("journal.commit_errors") == 1
    assert journal.last_seq() == 5 and len(journal.read(0)) == 5
    journal._db.execute("PRAGMA max_page_count = 1073741823")
    assert outcome(journal.append(readings(3, device="big"))) == []
    clock.advance(TICK)
    assert journal.last_seq() == 8
    assert [r.device for _, r in journal.read(5)] == ["big"] * 3


def test_bad_record_fails_only_its_own_append(journal, clock):
    """A record SQLite cannot bind fails its append; the others of the group still commit."""
    good1 = outcome(journal.append(readings(2, device="a")))
    bad = outcome(journal.append([Reading("b", "voltage", object(), T0)]))
    good2 = outcome(journal.append(readings(2, device="c")))
    clock.advance(TICK)
    assert good1 == [2] and good2 == [5]
    assert isinstance(bad[0], Failure)
    assert [r.device for _, r in journal.read(0)] == ["a", "a", "c", "c"]
    assert outcome(journal.append(readings(1, device="d"))) == []
    clock.advance(TICK)
    assert journal.last_seq() == 6


def test_connection_lost_underneath_errbacks(journal, clock):
    """When the connection is gone the batch's Deferred fails instead of firing."""
    journal._db.close()
    got = outcome(journal.append(readings(2)))
    clock.advance(TICK)
    assert isinstance(got[0], Failure) and got[0].check(sqlite3.ProgrammingError)


def test_unknown_record_type_fails_the_append_at_once(journal, clock):
    """Something that is not a record fails its append immediately and buffers nothing."""
    got = outcome(journal.append([readings(1)[0], "not a record"]))
    assert isinstance(got[0], Failure) and got[0].check(TypeError)
    clock.advance(TICK)
    assert journal.last_seq() == 0 and journal.read(0) == []


def test_checkpoints_run_beside_the_writer_when_given_a_thread_runner(tmp_path):
    """With checkpoint_in_threads, SQLite's inline autocheckpoint is off and the journal
    runs PASSIVE checkpoints through the runner once the WAL passes the threshold; the WAL
    is then reused from its start instead of growing."""
    import os

    from hub.journal import WAL_AUTOCHECKPOINT
    from tests.support.journal_wal import checkpoint_inline, fill_until_checkpoint

    clock = Clock()
    j = Journal(str(tmp_path / "j.sqlite"), clock=clock)
    j.open()
    ran = checkpoint_inline(j)  # runs the checkpoint at once, as a worker thread would
    assert j._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    value = fill_until_checkpoint(j, ran)  # asserts that one ran
    busy, log_pages, done = ran[0]
    assert busy == 0 and done == log_pages >= WAL_AUTOCHECKPOINT
    assert j._metrics.value("journal.checkpoints") == 1
    size = os.path.getsize(j.path + "-wal")
    for _ in range(50):  # the checkpointed WAL is written again from its start
        value += 1
        j.append([Reading("d1", "voltage", value, value, "A")])
        j.flush()
    assert os.path.getsize(j.path + "-wal") <= size
    j.close()


# ------------------------------------------------------------------ commit notification


def test_when_past_fires_after_the_commit_that_passes_it_not_before(journal, clock):
    d = journal.when_past(0)
    journal.append(readings(2))
    assert not d.called  # buffered, not committed: a sink must not read it yet
    clock.advance(0.005)
    assert outcome(d) == [2]
    assert outcome(journal.when_past(1)) == [2]  # already past: at once
    later = journal.when_past(2)
    later.cancel()  # a stopped sink stops waiting; the next commit must not trip on it
    journal.append(readings(1))
    journal.flush()
    assert journal.last_seq() == 3


def test_commit_time_is_the_hubs_commit_not_the_devices_clock(make, clock, path):
    journal = make()
    clock.advance(1000.0)
    journal.append([Reading("dev-1", "voltage", 220.0, 5.0)])  # a device clock far behind
    journal.flush()
    clock.advance(7.0)
    journal.append(readings(1))
    journal.flush()
    assert journal.commit_time(1) == 1000.0 and journal.commit_time(2) == 1007.0
    assert journal.commit_time(3) is None  # not committed
    journal.close()
    clock.advance(500.0)
    again = make(path=path)
    # after a restart, dated by the marks (the close writes one): never the device's ts
    assert 1000.0 <= again.commit_time(1) <= 1007.0


def test_a_cursor_is_rewound_within_what_the_journal_holds(make, clock):
    journal = make(retention=100.0)
    journal.append(readings(5))
    journal.flush()
    journal.set_cursor("db", 5)
    told = []
    stop = journal.on_rewind("db", told.append)
    assert journal.rewind_cursor("db", 2) == 5
    assert journal.get_cursor("db") == 2 and told == [2]
    stop()
    with pytest.raises(ValueError, match="skip records"):
        journal.rewind_cursor("db", 4)
    with pytest.raises(ValueError, match="no cursor"):
        journal.rewind_cursor("nope", 0)
    journal.set_cursor("db", 5)
    clock.advance(200.0)
    journal.append(readings(1))
    journal.flush()
    assert journal.prune(clock.seconds()) == 5
    with pytest.raises(ValueError, match="from seq 6 on only"):
        journal.rewind_cursor("db", 2)
    assert journal.seq_at(clock.seconds()) == 6
    with pytest.raises(ValueError, match="committed since"):
        journal.seq_at(50.0)
    assert told == [2]
