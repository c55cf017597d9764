"""Rollups: hourly and daily aggregates of every series, kept for years (README "Rollups,
safety grading and reports").

* :mod:`.store`: :class:`RollupStore`, the SQLite file, the energy-delta rule, rebuild;
* :mod:`.fold`: :class:`Accumulator`, readings folded in memory between writes;
* :mod:`.vector`: the fold's arithmetic on whole batches (numpy; the fold process loads it);
* :mod:`.sink`: :class:`RollupSink`, which keeps it up to date from the journal;
* :mod:`.child`: the fold process the sink starts by default (``python -m
  hub.rollups.child``), and :mod:`.supervise`, the hub's side of it.
"""

from hub.rollups.sink import RollupOptions, RollupSink
from hub.rollups.store import COUNTERS, DAY, HOUR, Bucket, RollupStore, default_path

__all__ = ["COUNTERS", "DAY", "HOUR", "Bucket", "RollupOptions", "RollupSink", "RollupStore",
           "default_path"]
