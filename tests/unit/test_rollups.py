"""Rollups: aggregates, the energy-delta rule (resets, gaps, out of order), idempotent
re-delivery through the sink, rebuild equal to incremental, retention."""

from __future__ import annotations

import sqlite3

import pytest

from hub.model import Quality, Reading
from hub.rollups import DAY, HOUR, RollupOptions, RollupSink, RollupStore
from hub.testing import SinkHarness

#: 2026-01-01 00:00 in China (UTC+8)
T = 1_767_196_800.0


def rows_of(readings):
    """Journal-shaped rows for RollupStore.apply (one series id per (device, ch, qty))."""
    ids: dict[tuple, int] = {}
    rows = []
    for seq, r in enumerate(readings, 1):
        sid = ids.setdefault((r.device, r.channel, r.quantity), len(ids) + 1)
        rows.append((seq, 0, sid, r.ts, r.value,
                     None if r.quality == Quality.GOOD else r.quality.value, None))
    names = {v: k for k, v in ids.items()}
    return rows, names.__getitem__


def e(ts, value, device="m1", channel=""):
    return Reading(device, "active_energy", value, ts, channel)


@pytest.fixture
def store(tmp_path):
    s = RollupStore(str(tmp_path / "rollups.sqlite"))
    yield s
    s.close()


def dump(store):
    return store.db.execute(
        "SELECT s.device, s.channel, s.quantity, b.width, b.start, b.count, b.min, b.max, "
        "round(b.total, 9), b.last_ts, b.last, round(b.energy, 9) FROM buckets b "
        "JOIN series s ON s.id = b.series ORDER BY 1, 2, 3, 4, 5").fetchall()


def test_statistics_per_hour_and_local_day(store):
    rows, names = rows_of([Reading("d", "temperature", v, T + dt, "T1") for v, dt in
                           [(20.0, 10), (26.0, 1800), (23.0, 3599), (30.0, 3600)]])
    assert store.apply(rows, names) == 4
    h = store.buckets("d", "temperature", "T1", HOUR)
    assert [(b.start, b.count, b.min, b.max, b.mean, b.last) for b in h] == [
        (T, 3, 20.0, 26.0, 23.0, 23.0), (T + HOUR, 1, 30.0, 30.0, 30.0, 30.0)]
    (day,) = store.buckets("d", "temperature", "T1", DAY)
    assert (day.start, day.count, day.min, day.max, day.mean, day.last) == (
        T, 4, 20.0, 30.0, 24.75, 30.0)
    assert day.energy is None  # not a counter


def test_energy_across_reset_gap_and_out_of_order(store):
    readings = [
        e(T + 60, 100.0),          # baseline: no delta
        e(T + 600, 101.5),         # +1.5
        e(T + 1200, 0.5),          # went down: reset, counted from zero: +0.5
        e(T + 900, 101.0),         # out of order: counts, adds nothing
        e(T + HOUR + 60, 2.0),     # +1.5 in the second hour
        e(T + DAY + 5 * HOUR, 12.0),  # after a 28 h gap: +10 in the hour it came back
        Reading("m1", "active_energy", 99.0, T + DAY + 6 * HOUR, "", Quality.BAD),  # ignored
    ]
    rows, names = rows_of(readings)
    store.apply(rows, names)
    assert store.energy("m1", HOUR) == {T: 2.0, T + HOUR: 1.5, T + DAY + 5 * HOUR: 10.0}
    assert store.energy("m1", DAY) == {T: 3.5, T + DAY: 10.0}
    first = store.buckets("m1", "active_energy", "", HOUR)[0]
    assert (first.count, first.last, first.last_ts) == (4, 0.5, T + 1200)


def test_device_energy_uses_the_whole_device_counter_else_sums_circuits(store):
    rows, names = rows_of([e(T, 1.0, "a", "L1"), e(T + 60, 2.0, "a", "L1"),
                           e(T, 5.0, "a", "L2"), e(T + 60, 8.0, "a", "L2"),
                           e(T, 0.0, "b", ""), e(T + 60, 4.0, "b", ""),
                           e(T, 0.0, "b", "A"), e(T + 60, 1.0, "b", "A")])
    store.apply(rows, names)
    assert store.energy("a", HOUR) == {T: 4.0}
    assert store.energy("b", HOUR) == {T: 4.0}


def test_apply_is_idempotent(store):
    rows, names = rows_of([e(T + i * 600, float(i)) for i in range(10)])
    store.apply(rows[:6], names)
    once = dump(store)
    store.apply(rows[:6], names)  # delivered again after a crash
    assert dump(store) == once
    store.apply(rows, names)  # overlapping batch: only the new part counts
    assert store.energy("m1", DAY) == {T: 9.0}
    assert store.applied == 10


def test_a_failed_transaction_leaves_nothing(store):
    rows, names = rows_of([e(T, 1.0), e(T + 60, 2.0)])

    def broken(sid):
        raise RuntimeError("names unavailable")
    with pytest.raises(RuntimeError):
        store.apply(rows, broken)
    assert dump(store) == [] and store.applied == 0
    store.apply(rows, names)
    assert store.energy("m1", HOUR) == {T: 1.0}


def test_prune_keeps_each_width_its_own_time(store):
    rows, names = rows_of([e(T, 1.0), e(T + 1000 * DAY, 2.0)])
    store.apply(rows, names)
    store.prune(T + 1000 * DAY, hourly_days=800, daily_days=3660)
    assert [b.start for b in store.buckets("m1", width=HOUR)] == [T + 1000 * DAY]
    assert [b.start for b in store.buckets("m1", width=DAY)] == [T, T + 1000 * DAY]


def _feed_month(harness, days=3):
    readings = []
    for i in range(days * 24 * 6):
        ts = T + i * 600 + 7
        readings.append(Reading("m1", "active_energy", 100.0 + i * 0.25 if i < 200
                                else (i - 200) * 0.25, ts))
        readings.append(Reading("m1", "temperature", 20.0 + (i % 13), ts, "T1"))
        readings.append(Reading("m2", "current", 1.0 + (i % 5), ts, "A"))
    for k in range(0, len(readings), 500):
        harness.feed(readings[k:k + 500])
    return readings


def test_sink_folds_in_at_least_once_and_rebuild_equals_incremental(tmp_path):
    from hub.testing import SinkHarness

    clock_start = T + 4 * DAY
    from twisted.internet.task import Clock
    clock = Clock()
    clock.advance(clock_start)
    h = SinkHarness(str(tmp_path / "var"), clock=clock)
    try:
        opts = RollupOptions(batch_size=700, flush_interval=0.5)
        sink = h.start(RollupSink(h.port, "rollups", opts))
        _feed_month(h)
        h.run(5)
        h.check_delivered("rollups", h.far_side())
        incremental = dump(sink.store)
        # 0.25 kWh per 10 min; the first reading is a baseline, the reset (i = 200, day 2)
        # reads 0: counted from zero, so nothing
        assert sink.store.energy("m1", DAY) == {T: 35.75, T + DAY: 35.75, T + 2 * DAY: 36.0}
        # the cursor falls back (a crash before it moved): everything is read again
        sink.stopService()
        h.journal.set_cursor("rollups", 100)
        sink = h.start(RollupSink(h.port, "rollups", opts))
        h.run(5)
        assert h.cursor("rollups") == h.journal.last_seq()
        assert dump(sink.store) == incremental
        # a rebuild from the journal gives the same buckets
        rebuilt = RollupStore(str(tmp_path / "rebuilt.sqlite"))
        rebuilt.rebuild(h.journal)
        assert dump(rebuilt) == incremental
        # ... and so does a rebuild in place
        sink.store.rebuild(h.journal)
        assert dump(sink.store) == incremental
        rebuilt.close()
    finally:
        h.close()


def test_rebuild_keeps_days_the_journal_no_longer_holds(tmp_path, store):
    from hub.testing import SinkHarness

    h = SinkHarness(str(tmp_path / "var"))
    try:
        old = [e(T + i * HOUR, float(i)) for i in range(48)]
        rows, names = rows_of(old)
        store.apply(rows, names)  # folded in before the journal was pruned
        h.feed([e(T + DAY + 12 * HOUR + i * HOUR, 100.0 + i) for i in range(36)])
        store.rebuild(h.journal)
        days = store.energy("m1", DAY)
        assert days[T] == 23.0  # kept: the journal starts in the middle of day 2
        assert days[T + DAY] == 24.0  # kept too (not a whole day in the journal)
        assert days[T + 2 * DAY] == 24.0  # rebuilt from the journal
    finally:
        h.close()


def test_store_file_is_sqlite_with_schema_version(store):
    db = sqlite3.connect(store.path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    db.close()


def test_hub_rollups_rebuild_from_the_cli(tmp_path, capsys):
    import yaml
    from twisted.internet.task import Clock

    from hub.cli import main
    from hub.journal import Journal

    var = tmp_path / "var"
    var.mkdir()
    config = tmp_path / "hub.yaml"
    config.write_text(yaml.safe_dump({
        "hub": {"state_dir": "var"}, "devices": [],
        "sinks": {"agg": {"type": "rollups", "path": "agg.sqlite", "tz_offset_hours": 0}}}))
    j = Journal(str(var / "journal.sqlite"), clock=Clock())
    j.open()
    j.append([e(DAY * 20000 + i * 600, i * 0.5) for i in range(12)])
    j.flush()
    j.close()
    assert main(["rollups", "rebuild", "-c", str(config)]) == 0
    assert "12 readings folded in" in capsys.readouterr().err
    store = RollupStore(str(var / "agg.sqlite"))
    assert store.tz_offset == 0
    assert store.energy("m1", DAY) == {DAY * 20000: 5.5}
    store.close()


def test_the_readme_rollups_configuration_is_valid():
    import re
    from pathlib import Path

    import yaml

    from hub.config import check_config
    from hub.pluginmanager import make_plugins

    root = Path(__file__).parents[2]
    readme = (root / "README.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", readme, flags=re.S)
                 if "type: rollups" in b)
    cfg = check_config(yaml.safe_load(block), root / "conf" / "hub.yaml", make_plugins())
    opts = cfg.sinks["rollups"].options
    assert opts.hourly_days == 800 and opts.tou["tariffs"]["谷"] == 0.30


def test_days_at_a_half_hour_offset(tmp_path):
    """UTC+5:30: local midnight falls in the middle of a UTC hour."""
    store = RollupStore(str(tmp_path / "r.sqlite"), tz_offset=19800)
    midnight = 20000 * DAY - 19800  # a local midnight
    rows, names = rows_of([e(midnight - 600, 1.0), e(midnight - 60, 2.0), e(midnight + 60, 5.0),
                           e(midnight + 600, 6.0)])
    store.apply(rows, names)
    assert store.energy("m1", DAY) == {midnight - DAY: 1.0, midnight: 4.0}
    (hour,) = store.energy("m1", HOUR).items()
    assert hour == (midnight // HOUR * HOUR, 5.0)
    store.close()


def test_days_are_graded_on_schedule_and_a_change_of_grade_is_an_event(tmp_path):
    from twisted.internet.task import Clock

    from hub.analysis.schedule import CODE, stored_grades
    from hub.model import Event, EventKind, EventState, Level
    from hub.sinks import DeviceInfo

    clock = Clock()
    clock.advance(T + 12 * HOUR)
    h = SinkHarness(str(tmp_path / "var"), devices=[DeviceInfo("m1", "m1"),
                                                    DeviceInfo("m2", "m2")], clock=clock)
    try:
        sink = h.start(RollupSink(h.port, "rollups", RollupOptions()))

        def alarm(dev, ts, id):
            raised = Event(dev, EventKind.ALARM, "temperature", EventState.RAISED, ts,
                           Level.ALARM, "T1", id=id)
            return [raised, Event(dev, EventKind.ALARM, "temperature", EventState.CLEARED,
                                  ts + HOUR, Level.ALARM, "T1", id=id, raised_ts=ts)]
        h.feed(alarm("m1", T + 13 * HOUR, "a1"))
        h.run(DAY, step=300)  # the day before the start, then day 1: m1 worse
        first = [e for e in h.events if e.code == CODE]
        assert [(e.device, e.level) for e in first] == [("m1", Level.WARNING)]
        h.feed(alarm("m2", T + DAY + 13 * HOUR, "a2"))
        h.run(DAY, step=300)  # day 2: m1 better, m2 worse
        changes = {e.device: e for e in h.events[len(first):] if e.code == CODE}
        # 100 − 10 (fire alarm) − 2 (1 h) − 3 (never acknowledged) = 85
        assert stored_grades(sink.store, "m1") == [(T - DAY, 100.0, "优"), (T, 85.0, "良好"),
                                                   (T + DAY, 100.0, "优")]
        assert changes["m1"].level == Level.INFO and "良好 → 优" in changes["m1"].message
        assert changes["m2"].level == Level.WARNING and "优 → 良好" in changes["m2"].message
        assert changes["m2"].ts == T + 2 * DAY and changes["m2"].value == 85.0
        assert h.journal.events("m2")[-1].code == CODE  # journaled: policies can push it
    finally:
        h.close()
