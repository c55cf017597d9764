"""The rollup sink: folds committed readings into :class:`hub.rollups.RollupStore` from its
own durable journal cursor (a :class:`hub.sinks.BatchSink`, so at-least-once), and prunes
old buckets on a timer.

At-least-once delivery becomes exactly-once in the store: the store records the last seq
it folded in within the same transaction as the buckets and skips anything at or below it,
so a batch read again after a crash (the cursor moves only after the store committed)
changes nothing.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer, task
from twisted.logger import Logger

from hub.rollups.store import DEFAULT_TZ_OFFSET, RollupStore, resolve_path
from hub.sinks import BatchSink

_log = Logger(namespace="hub.rollups")

#: seconds between retention passes over the buckets
PRUNE_INTERVAL = 6 * 3600.0
#: seconds between checks for a local day to grade (hub.analysis.schedule)
GRADE_CHECK_INTERVAL = 600.0


@dataclass(frozen=True)
class RollupOptions:
    path: str | None = None  # default <state_dir>/rollups.sqlite; relative: to state_dir
    tz_offset_hours: float = DEFAULT_TZ_OFFSET / 3600
    hourly_days: float = 800.0  # ≥ 2 years (T/CFPA 023-2023 §6.3.1 b)
    daily_days: float = 3660.0
    batch_size: int = 5000
    flush_interval: float = 1.0
    max_lag_seconds: float | None = 300.0
    retry_initial: float = 1.0
    retry_max: float = 60.0
    #: the safety-grading scheme and the time-of-use schedule (:mod:`hub.analysis`),
    #: configured here because they are read with these rollups
    grading: Mapping[str, Any] | None = None
    tou: Mapping[str, Any] | None = None


class RollupSink(BatchSink):
    """``sinks.<name>: {type: rollups}``; the cursor is named after the key."""

    kinds = {"reading"}
    delivery_word = "rollup update"

    def __init__(self, hub: Any, name: str, options: RollupOptions | None = None, *,
                 rng: random.Random | None = None) -> None:
        options = options or RollupOptions()
        super().__init__(hub, name, options, rng=rng)
        self.path = resolve_path(options.path, self.port.state_dir)
        self.store: RollupStore | None = None
        self._prune: task.LoopingCall | None = None
        self._grader: task.LoopingCall | None = None

    def started(self) -> None:
        if self.store is None:
            self.store = RollupStore(self.path,
                                     tz_offset=int(self.options.tz_offset_hours * 3600))
        self._prune = task.LoopingCall(self.prune)
        self._prune.clock = self.clock
        self._prune.start(PRUNE_INTERVAL, now=True)
        self._grader = task.LoopingCall(self.grade)
        self._grader.clock = self.clock
        self._grader.start(GRADE_CHECK_INTERVAL, now=False)
        super().started()

    def stopped(self) -> Any:
        for loop in (self._prune, self._grader):
            if loop is not None and loop.running:
                loop.stop()
        d = defer.maybeDeferred(super().stopped)

        def close(result: Any) -> Any:
            if self.store is not None:
                self.store.close()
                self.store = None
            return result
        return d.addBoth(close)

    def prune(self) -> int:
        assert self.store is not None
        return self.store.prune(self.clock.seconds(), self.options.hourly_days,
                                self.options.daily_days)

    def grade(self) -> int:
        """Grade the local days that ended (grades and grade-change events)."""
        from hub.analysis.grading import GradingScheme
        from hub.analysis.schedule import grade_days

        assert self.store is not None
        devices = [d.id for d in self.port.devices()]
        try:
            return grade_days(self.store, self.journal, devices, self.clock.seconds(),
                              GradingScheme.from_mapping(self.options.grading),
                              self.port.record_events)
        except Exception:
            _log.failure("rollups {sink}: grading failed; tried again in "
                         f"{GRADE_CHECK_INTERVAL:g} s", sink=self.sink)
            return 0

    def prepare(self, rows: list[tuple], end: int) -> Any:
        return rows, end

    def is_empty(self, payload: Any) -> bool:
        return not payload[0]

    def deliver(self, payload: Any) -> defer.Deferred:
        assert self.store is not None
        rows, end = payload
        n = self.store.apply(rows, self.journal.series_key, end)
        self.metrics.inc("rollups.readings", n)
        return defer.succeed(None)
