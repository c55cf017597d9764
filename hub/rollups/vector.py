"""The fold's arithmetic on whole batches (numpy): journal rows to columns, each bucket's
count, min, max, total and last of a batch, and the energy deltas of counters.

Why numpy: the fold process folds every reading the hub takes (270,000 a second on issue
15's workload) and a per-reading Python loop cost it about a microsecond each, decoding
included; here a batch costs a few dozen array passes whatever its size, and the Python
work left is one dict entry per bucket (a few thousand a second), not one per reading.
Imported only where a fold runs (the fold process, a rebuild, the in-hub worker): the hub
process does not load numpy while its fold runs in a process of its own.

:class:`hub.rollups.fold.Accumulator` merges the results into its buckets; the rules (what
is folded in, the energy-delta rule) are documented in :mod:`hub.rollups.store`. Totals
may differ from a reading-by-reading sum in the last bits (a batch is summed before it is
added), as they already did between two flush schedules.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from operator import itemgetter

import numpy as np

_I64 = np.int64
_SEQ, _KIND, _SID, _TS, _VALUE, _QUALITY = map(itemgetter, range(6))


class Columns:
    """The reading rows of a batch worth folding: good quality, a value, kind reading,
    ``seq > top``; ``seq_max``: the highest seq of every row given (skipped ones too)."""

    __slots__ = ("seq", "sid", "ts", "value", "seq_max")

    def __init__(self, seq: np.ndarray, sid: np.ndarray, ts: np.ndarray, value: np.ndarray,
                 seq_max: int) -> None:
        self.seq, self.sid, self.ts, self.value, self.seq_max = seq, sid, ts, value, seq_max


def columns(rows: Sequence[Sequence], top: int) -> Columns:
    """``rows`` (``(seq, kind, series, ts, value, quality, data)`` tuples or lists, in any
    order) as columns of what a fold takes of them."""
    n = len(rows)
    if list(map(_KIND, rows)).count(0) == n and list(map(_QUALITY, rows)).count(None) == n:
        # readings of good quality only (a segment holds nothing else): each column read
        # straight into its array, a third cheaper than going through an object array;
        # fromiter converts as astype does (None to NaN, numeric text to its number)
        seq = np.fromiter(map(_SEQ, rows), _I64, n)
        value = np.fromiter(map(_VALUE, rows), np.float64, n)
        ts = np.fromiter(map(_TS, rows), np.float64, n)
        sid = np.fromiter(map(_SID, rows), _I64, n)
        seq_max = int(seq.max())
        keep = (seq > top) & (value == value)
        if not keep.all():
            seq, sid, ts, value = seq[keep], sid[keep], ts[keep], value[keep]
        return Columns(seq, sid, ts, value, seq_max)
    a = np.fromiter(chain.from_iterable(rows), dtype=object, count=7 * n).reshape(n, 7)
    seq = a[:, 0].astype(_I64)
    seq_max = int(seq.max())
    kind = a[:, 1]
    keep = seq > top
    if not (kind == 0).all():
        keep &= kind == 0
    quality = a[:, 5]
    if not (quality == None).all():  # noqa: E711 (elementwise on an object array)
        keep &= quality == None  # noqa: E711
    if not keep.all():
        a, seq = a[keep], seq[keep]
    # a missing value (None; NaN is stored as None) becomes NaN here and is dropped
    value = a[:, 4].astype(np.float64)
    ts = a[:, 3].astype(np.float64)
    sid = a[:, 2].astype(_I64)
    ok = value == value
    if not ok.all():
        seq, sid, ts, value = seq[ok], sid[ok], ts[ok], value[ok]
    return Columns(seq, sid, ts, value, seq_max)


def energy(sid: np.ndarray, seq: np.ndarray, ts: np.ndarray, value: np.ndarray,
           state: dict[int, tuple[float, float]]) -> tuple[np.ndarray, dict[int, tuple]]:
    """The energy delta of each counter reading (``sid`` the rollup store's series ids), by
    the rule of :mod:`hub.rollups.store` applied in seq order and starting from ``state``
    (series -> newest ``(ts, value)``): the first reading of a counter only sets its
    baseline (0.0), a newer reading adds its rise (or its value after a reset), one not
    newer adds 0.0. Returns the deltas (in the order given) and the series whose newest
    reading moved, with it."""
    n = len(sid)
    order = np.lexsort((seq, sid))
    s, t, v = sid[order], ts[order], value[order]
    head = np.empty(n, dtype=bool)
    head[0] = True
    np.not_equal(s[1:], s[:-1], out=head[1:])
    firsts = np.flatnonzero(head)
    # each series' stored newest reading goes in front of its readings, as a baseline
    prior = [(i, state[k]) for i, k in zip(firsts.tolist(), s[firsts].tolist(), strict=True)
             if k in state]
    if prior:
        at = np.array([i for i, _ in prior], dtype=_I64)
        s = np.insert(s, at, s[at])
        t = np.insert(t, at, [p[0] for _, p in prior])
        v = np.insert(v, at, [p[1] for _, p in prior])
        real = np.ones(len(s), dtype=bool)
        real[at + np.arange(len(at))] = False
        head = np.empty(len(s), dtype=bool)
        head[0] = True
        np.not_equal(s[1:], s[:-1], out=head[1:])
    else:
        real = None
    m = len(s)
    # a reading is newer than every earlier one of its series when its ts rank beats the
    # running maximum; ranks (equal ts, equal rank) offset by series keep that maximum
    # within each series in one pass
    _, rank = np.unique(t, return_inverse=True)
    group = np.cumsum(head) - 1
    key = group * (m + 1) + rank.reshape(-1)
    running = np.maximum.accumulate(key)
    newest = head.copy()
    newest[1:] |= key[1:] > running[:-1]
    last = np.maximum.accumulate(np.where(newest, np.arange(m), -1))
    prev = np.empty(m, dtype=_I64)
    prev[0] = 0
    prev[1:] = last[:-1]
    pv = v[prev]
    delta = np.where(newest & ~head, np.where(v >= pv, v - pv, v), 0.0)
    tails = np.empty(len(firsts), dtype=_I64)
    tails[:-1] = np.flatnonzero(head)[1:] - 1
    tails[-1] = m - 1
    moved: dict[int, tuple] = {}
    for k, i in zip(s[tails].tolist(), last[tails].tolist(), strict=True):
        if real is None or real[i]:
            moved[k] = (float(t[i]), float(v[i]))
    if real is not None:
        delta = delta[real]
    out = np.empty(n, dtype=np.float64)
    out[order] = delta
    return out, moved


#: a partial bucket's fields, as arrays: series, start, count, min, max, total, last ts,
#: the seq of the last value (the later wins among equal ts), last value, energy (0.0 for
#: series that are no counter)
FIELDS = ("sid", "start", "count", "lo", "hi", "total", "last_ts", "last_seq", "last",
          "energy")


def readings(sid: np.ndarray, seq: np.ndarray, ts: np.ndarray, value: np.ndarray,
             energy: np.ndarray | None) -> list[np.ndarray]:
    """Each reading as a partial bucket of its own (no start yet: see :func:`regroup`)."""
    ones = np.ones(len(sid), dtype=_I64)
    return [sid, ts, ones, value, value, value, ts, seq, value,
            np.zeros(len(sid)) if energy is None else energy]


def concat(parts: list[list[np.ndarray]]) -> list[np.ndarray]:
    return parts[0] if len(parts) == 1 else [np.concatenate(f) for f in zip(*parts, strict=True)]


def regroup(part: list[np.ndarray], width: float, shift: float = 0.0,
            at: np.ndarray | None = None) -> list[np.ndarray]:
    """Partial buckets (:data:`FIELDS`) merged by (series, bucket of ``width`` holding
    ``at``, default their start; a bucket starts at ``floor((t + shift) / width) * width -
    shift``): count and sums add up, the min of mins, the max of maxes, the last of the
    newest last ts (the later seq among equals)."""
    sid, start, count, lo, hi, total, last_ts, last_seq, last, energy = part
    q = np.floor_divide((start if at is None else at) + shift, width)
    n = len(sid)
    smax = int(sid.max()) + 1
    qmin, qmax = float(q.min()), float(q.max())
    span = int(qmax - qmin) + 1 if -2.0 ** 52 < qmin and qmax < 2.0 ** 52 else 1 << 62
    if smax * span < 1 << 62:
        qmin_i = int(qmin)
        key = sid * span + (q.astype(_I64) - qmin_i)
        if smax * span <= 4 * n + 4096:  # few (series, bucket) pairs: count them in place
            present = np.bincount(key, minlength=smax * span)
            keys = np.flatnonzero(present)
            pos = np.zeros(len(present), dtype=_I64)
            pos[keys] = np.arange(len(keys))
            gid = pos[key]
        else:
            keys, gid = np.unique(key, return_inverse=True)
            gid = gid.reshape(-1)
        gsid, gq_i = np.divmod(keys, span)
        gq = (gq_i + qmin_i).astype(np.float64)
    else:  # buckets so far apart (or out of range) that a pair does not fit one integer
        pairs, gid = np.unique(np.stack([sid.astype(np.float64), q], axis=1), axis=0,
                               return_inverse=True)
        gid = gid.reshape(-1)
        gsid, gq = pairs[:, 0].astype(_I64), pairs[:, 1]
    g = len(gsid)
    gcount = np.bincount(gid, weights=count, minlength=g).astype(_I64)
    gtotal = np.bincount(gid, weights=total, minlength=g)
    genergy = np.bincount(gid, weights=energy, minlength=g)
    glo = np.full(g, np.inf)
    np.minimum.at(glo, gid, lo)
    ghi = np.full(g, -np.inf)
    np.maximum.at(ghi, gid, hi)
    glast_ts = np.full(g, -np.inf)
    np.maximum.at(glast_ts, gid, last_ts)
    latest = last_ts == glast_ts[gid]
    glast_seq = np.full(g, -1, dtype=_I64)
    np.maximum.at(glast_seq, gid, np.where(latest, last_seq, -1))
    pick = latest & (last_seq == glast_seq[gid])  # one per group: seqs are unique
    glast = np.empty(g)
    glast[gid[pick]] = last[pick]
    gstart = gq * width
    if shift:
        gstart -= shift
    return [gsid, gstart, gcount, glo, ghi, gtotal, glast_ts, glast_seq, glast, genergy]
