"""The batch fold (hub.rollups.vector through hub.rollups.fold.Accumulator) against a
reading-by-reading reference fold written straight from the rules of hub.rollups.store,
on seeded random journals: counters with resets, duplicates and out-of-order readings,
bad quality and missing values, days at whole and odd tz offsets, the rebuild floor,
batches shuffled and read again after a write, and the energy baselines carried over in
the store between two folds."""

from __future__ import annotations

import random

import pytest

from hub.rollups import DAY, HOUR, RollupStore
from hub.rollups.fold import Accumulator

T = 1_767_196_800.0
#: journal series id -> (device, channel, quantity); ids are sparse, as a journal's may be
NAMES = {3: ("m1", "", "active_energy"), 4: ("m1", "", "temperature"),
         9: ("m1", "A", "voltage"), 17: ("m2", "", "reactive_energy"),
         40: ("m2", "C1", "active_energy"), 41: ("m2", "", "power_factor")}
COUNTER = {"active_energy", "reactive_energy"}


def journal(rng: random.Random, n: int) -> list[tuple]:
    """``n`` journal rows in seq order: mostly readings, some of another kind."""
    rows, meters = [], {sid: 100.0 for sid in NAMES}
    ts = T + rng.uniform(-3 * HOUR, 3 * HOUR)
    for seq in range(1, n + 1):
        if rng.random() < 0.03:
            rows.append((seq, 1, None, ts, None, None, '{"e": 1}'))
            continue
        sid = rng.choice(list(NAMES))
        roll = rng.random()
        if roll < 0.7:
            ts += rng.choice((0.0, 0.0, 0.5, 60.0, 600.0, 1800.0, 0.001))
            t = ts
        elif roll < 0.85:
            t = ts - rng.choice((0.0, 1.0, 3600.0, 7200.0))  # late, or a duplicate ts
        else:
            t = ts + rng.choice((0.0, 1.0, 3600.0))
        if NAMES[sid][2] in COUNTER:
            if rng.random() < 0.05:
                meters[sid] = rng.choice((0.0, 0.5, 3.0))  # a reset or a replaced meter
            else:
                meters[sid] += rng.choice((0.0, 0.25, 1.5, 0.1))
            value = meters[sid]
        else:
            value = round(rng.uniform(-50.0, 250.0), 3)
        quality = None
        if rng.random() < 0.05:
            quality = rng.choice(("uncertain", "bad"))
        if rng.random() < 0.03:
            value = None
        rows.append((seq, 0, sid, t, value, quality, None))
    return rows


def reference(rows: list[tuple], tz: int, floor: float | None = None,
              counters: dict | None = None) -> tuple[dict, dict]:
    """Buckets ``(series names, width, start) -> [count, min, max, total, last_ts, last,
    energy]`` and the counters' newest readings, folding one reading at a time."""
    buckets: dict = {}
    newest = dict(counters or {})
    for _seq, kind, sid, ts, value, quality, _ in sorted(rows):
        if kind != 0 or quality is not None or value is None:
            continue
        name = NAMES[sid]
        energy = None
        if name[2] in COUNTER:
            energy = 0.0
            before = newest.get(name)
            if before is None or ts > before[0]:
                if before is not None:
                    energy = value - before[1] if value >= before[1] else value
                newest[name] = (ts, value)
        if floor is not None and ts < floor:
            continue
        for width, start in ((HOUR, ts // HOUR * HOUR),
                             (DAY, (ts + tz) // DAY * DAY - tz)):
            b = buckets.setdefault((name, width, start), [
                0, value, value, 0.0, ts, value, None if energy is None else 0.0])
            b[0] += 1
            b[1], b[2], b[3] = min(b[1], value), max(b[2], value), b[3] + value
            if ts >= b[4]:
                b[4], b[5] = ts, value
            if energy is not None:
                b[6] += energy
    return buckets, newest


def stored(store: RollupStore) -> tuple[dict, dict]:
    buckets = {((d, c, q), w, st): [n, lo, hi, tot, lts, last, e]
               for d, c, q, w, st, n, lo, hi, tot, lts, last, e in store.db.execute(
                   "SELECT s.device, s.channel, s.quantity, b.width, b.start, b.count, b.min,"
                   " b.max, b.total, b.last_ts, b.last, b.energy FROM buckets b"
                   " JOIN series s ON s.id = b.series")}
    counters = {(d, c, q): (ts, v) for d, c, q, ts, v in store.db.execute(
        "SELECT s.device, s.channel, s.quantity, c.ts, c.value FROM counters c"
        " JOIN series s ON s.id = c.series")}
    return buckets, counters


def same(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for key, w in want.items():
        g = got[key]
        # count, min, max, last ts, last: exact; sums may differ in their last bits
        assert (g[0], g[1], g[2], g[4], g[5]) == (w[0], w[1], w[2], w[4], w[5]), key
        assert g[3] == pytest.approx(w[3], rel=1e-12, abs=1e-9), key
        assert g[6] == (None if w[6] is None else pytest.approx(w[6], rel=1e-12, abs=1e-9)), key


def fold(store: RollupStore, rows: list[tuple], rng: random.Random,
         floor: float | None = None) -> Accumulator:
    """Fold ``rows`` in random batches, each shuffled, some written and then read again
    from a little before the applied seq (as after a restart)."""
    acc = Accumulator(store)
    k = 0
    while k < len(rows):
        size = rng.choice((1, 7, 50, 400))
        batch = rows[max(0, k - rng.choice((0, 0, 5))):k + size]  # some read twice
        rng.shuffle(batch)
        acc.add(batch, NAMES.__getitem__, floor=floor)
        k += size
        if rng.random() < 0.3:
            acc.flush()
    acc.flush()
    return acc


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("tz", [0, 8 * 3600, 19_800, -13_500, 20_700])
def test_the_batch_fold_equals_a_reading_by_reading_fold(tmp_path, seed, tz):
    rng = random.Random(seed * 1000 + tz)
    rows = journal(rng, 1500)
    store = RollupStore(str(tmp_path / "r.sqlite"), tz_offset=tz)
    half = rng.randrange(len(rows))
    fold(store, rows[:half], rng)
    store.close()
    # a second fold (a restart) takes the counters' baselines from the store
    store = RollupStore(str(tmp_path / "r.sqlite"), tz_offset=tz)
    fold(store, rows, rng)
    want, newest = reference(rows, tz)
    got, counters = stored(store)
    same(got, want)
    assert counters == newest
    assert store.applied == len(rows)
    store.close()


@pytest.mark.parametrize("seed", range(4))
def test_before_the_floor_only_the_baselines_move(tmp_path, seed):
    rng = random.Random(seed)
    rows = journal(rng, 1200)
    floor = sorted(r[3] for r in rows)[len(rows) // 2] // HOUR * HOUR
    store = RollupStore(str(tmp_path / "r.sqlite"), tz_offset=19_800)
    fold(store, rows, rng, floor=floor)
    want, newest = reference(rows, 19_800, floor=floor)
    got, counters = stored(store)
    same(got, want)
    assert counters == newest
    store.close()


def test_one_batch_in_any_order_and_folded_twice_adds_once(tmp_path):
    rng = random.Random(7)
    rows = journal(rng, 3000)
    store = RollupStore(str(tmp_path / "r.sqlite"), tz_offset=8 * 3600)
    acc = Accumulator(store)
    shuffled = rows[:]
    rng.shuffle(shuffled)
    good = sum(1 for r in rows if r[1] == 0 and r[4] is not None and r[5] is None)
    assert acc.add(shuffled, NAMES.__getitem__) == good
    assert acc.add(rows, NAMES.__getitem__) == 0
    acc.flush()
    same(stored(store)[0], reference(rows, 8 * 3600)[0])
    store.close()


def test_the_last_of_equal_timestamps_is_the_later_seq_and_far_apart_hours_fold(tmp_path):
    store = RollupStore(str(tmp_path / "r.sqlite"), tz_offset=0)
    acc = Accumulator(store)
    far = 1e20  # hours too far apart for one (series, hour) integer key
    rows = [(5, 0, 4, T, 2.0, None, None), (2, 0, 4, T, 1.0, None, None),
            (9, 0, 4, T + 10, 0.5, None, None), (8, 0, 4, T + 10, 3.0, None, None),
            (11, 0, 9, far, 7.0, None, None), (12, 0, 9, -far, 6.0, None, None)]
    assert acc.add(rows, NAMES.__getitem__) == 6
    acc.flush()
    same(stored(store)[0], reference(rows, 0)[0])
    hour = store.buckets("m1", "temperature")[0]
    assert (hour.count, hour.last, hour.last_ts, hour.min, hour.max) == (4, 0.5, T + 10, 0.5, 3.0)
    store.close()


def test_series_ids_far_apart_are_looked_up_without_a_table(tmp_path):
    rng = random.Random(11)
    rows = journal(rng, 800)
    far = {sid: (1 << 40) + 7 * sid for sid in NAMES}
    names = {far[sid]: n for sid, n in NAMES.items()}
    moved = [r if r[2] is None else (r[0], r[1], far[r[2]], *r[3:]) for r in rows]
    store = RollupStore(str(tmp_path / "r.sqlite"), tz_offset=19_800)
    acc = Accumulator(store)
    for k in range(0, len(moved), 100):
        acc.add(moved[k:k + 100], names.__getitem__)
    acc.flush()
    want, newest = reference(rows, 19_800)
    got, counters = stored(store)
    same(got, want)
    assert counters == newest and len(acc._lut) == 0
    store.close()
