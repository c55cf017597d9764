"""The ``influxdb`` sink service: journal cursor → batches → writes, lossless."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from hub.model import Event, EventKind, EventState, Level, event_id
from plugins.sinks.deadletters import DeadLetters, deadletter_path
from plugins.sinks.influx_options import (
    LAG_CHECK_INTERVAL,
    LAG_CODE,
    MAX_SAMPLES,
    MAX_SPLITS,
    PREFETCH,
    InfluxOptions,
)
from plugins.sinks.influx_writer import InfluxWriter, WriteError
from plugins.sinks.line_protocol import UNREADABLE, LineEncoder

_log = Logger(namespace="hub.sinks.influxdb")

# ---------------------------------------------------------------------------- the sink


@dataclass
class _Batch:
    """Encoded records from the journal, up to ``end`` (the cursor once it is written)."""

    end: int
    lines: list[str]
    seqs: list[int]
    body: bytes
    #: (lo, hi) slices of ``lines`` still to send; split on a permanent error
    chunks: deque[tuple[int, int]] = field(default_factory=deque)
    #: dead letters to commit before the cursor moves
    dead: list[tuple[int, int, int | None, str, str, int]] = field(default_factory=list)
    splits: int = 0
    written: int = 0
    #: rows of the journal that could not be read back (in ``dead`` too)
    unreadable: int = 0

    def payload(self, lo: int, hi: int) -> bytes:
        if lo == 0 and hi == len(self.lines):
            return self.body
        return "\n".join(self.lines[lo:hi]).encode()


class InfluxSink(Service):
    """Reads the journal from cursor ``name``, writes to InfluxDB, advances the cursor.

    ``send(body) -> Deferred`` and ``rng`` are injectable for tests; by default ``send``
    runs :meth:`InfluxWriter.write` in a one-thread pool of the reactor.
    """

    def __init__(self, hub: Any, name: str, options: InfluxOptions, *,
                 send: Callable[[bytes], defer.Deferred] | None = None,
                 rng: random.Random | None = None,
                 deadletters: DeadLetters | None = None) -> None:
        self.hub = hub
        self.sink = name
        self.options = options
        self.clock = hub.clock
        self._send_fn = send
        self._rng = rng or random.Random()
        self._deadletters = deadletters
        self._own_deadletters = False
        self._writer: InfluxWriter | None = None
        self._pool: Any = None
        self.encoder = LineEncoder(
            self._device_tags, readings=options.readings_measurement,
            events=options.events_measurement, results=options.results_measurement)
        self._kinds = set(options.kinds)
        self._labels = {"sink": name}
        self.cursor = 0  # last seq the database accepted everything up to (durable)
        self._read_upto = 0  # last seq read into a batch
        self._batches: deque[_Batch] = deque()
        self._inflight: defer.Deferred | None = None
        self._timer: IDelayedCall | None = None
        self._retrying = False
        self.attempt = 0  # failures in a row of the chunk at the head
        self._samples: deque[tuple[int, float]] = deque()  # (last_seq, first seen at)
        self._lag_loop: task.LoopingCall | None = None
        self._fault: Event | None = None
        self._peak = 0.0
        self._rate_mark: tuple[float, float] | None = None
        self._points = 0
        self._tags_cache: dict[str, tuple[tuple[str, str], ...]] = {}
        self._last_error_logged = ""

    # -- lifecycle -----------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        journal = self.hub.journal
        self.cursor = self._read_upto = journal.get_cursor(self.sink)
        # registered before the first write: retention must not prune what we have not sent
        journal.set_cursor(self.sink, self.cursor)
        self._batches.clear()
        self._samples.clear()
        self._retrying, self.attempt = False, 0
        if self._deadletters is None:
            self._deadletters = DeadLetters(deadletter_path(self.hub.config.state_dir))
            self._own_deadletters = True
        if self._send_fn is None:
            from twisted.internet import reactor
            from twisted.python.threadpool import ThreadPool

            self._writer = InfluxWriter(self.options)
            self._pool = ThreadPool(1, 1, name=f"sink-{self.sink}")
            self._pool.start()
            writer, pool = self._writer, self._pool
            self._send_fn = lambda body: threads_defer(reactor, pool, writer.write, body)
        now = self.clock.seconds()
        self._restore_fault()
        top = journal.last_seq()
        if top > self.cursor:
            # the backlog from before this start: its age is what its records say
            first = journal.read(self.cursor, 1)
            ts = getattr(first[0][1], "ts", now) if first else now
            self._samples.append((top, min(now, ts)))
        self._rate_mark = (now, 0.0)
        self._lag_loop = task.LoopingCall(self._check_lag)
        self._lag_loop.clock = self.clock
        self._lag_loop.start(LAG_CHECK_INTERVAL, now=True)
        _log.info("sink {sink}: writing to {url} bucket {bucket} from seq {seq} "
                  "({lag} records behind)", sink=self.sink, url=self.options.url,
                  bucket=self.options.bucket, seq=self.cursor, lag=top - self.cursor)
        self._schedule(0)

    @defer.inlineCallbacks
    def stopService(self):
        super().stopService()
        self._cancel_timer()
        if self._lag_loop is not None and self._lag_loop.running:
            self._lag_loop.stop()
        if self._inflight is not None:
            # its answer moves the cursor; the journal closes only after the sinks stopped
            try:
                yield self._inflight
            except Exception:
                pass
        if self._pool is not None:
            self._pool.stop()
            self._pool = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self._send_fn = None
        if self._own_deadletters and self._deadletters is not None:
            self._deadletters.close()
            self._deadletters, self._own_deadletters = None, False
        self._update_metrics()
        _log.info("sink {sink}: stopped at seq {seq}", sink=self.sink, seq=self.cursor)

    # -- the loop ------------------------------------------------------------------------

    def _schedule(self, delay: float) -> None:
        if self._timer is None and self.running:
            self._timer = self.clock.callLater(delay, self._tick)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _tick(self) -> None:
        """The flush timer, or the end of a retry delay: partial batches may go now."""
        self._timer = None
        self._retrying = False
        try:
            self._fill(partial=True)
            self._send_next()
        except Exception:
            self._recover()

    def _recover(self) -> None:
        """Something local failed (the journal or the dead-letter file could not be read
        or written). Nothing is lost: forget the prepared batches, read again from the
        durable cursor after a pause. A write still in flight only ends as a re-send."""
        self.hub.metrics.inc("sink.internal_errors", **self._labels)
        _log.failure("sink {sink}: internal error; reading again from seq {seq} in {delay} s",
                     sink=self.sink, seq=self.cursor, delay=self.options.retry_max)
        self._batches.clear()
        self._read_upto = self.cursor
        self._retrying = True
        self._cancel_timer()
        self._schedule(self.options.retry_max)

    def _fill(self, partial: bool) -> None:
        """Read and encode batches ahead, up to one in flight plus PREFETCH."""
        journal = self.hub.journal
        size = self.options.batch_size
        while len(self._batches) <= PREFETCH:
            top = journal.last_seq()
            if top <= self._read_upto or (not partial and top - self._read_upto < size):
                return
            rows = journal.read_rows(self._read_upto, size, self._kinds)
            full = len(rows) >= size
            end = rows[-1][0] if full else top  # filtered-out kinds up to top are passed too
            lines, seqs, failed = self.encoder.encode_rows(rows, journal.series_key,
                                                           journal.record)
            batch = _Batch(end, lines, seqs, "\n".join(lines).encode())
            if lines:
                batch.chunks.append((0, len(lines)))
            for seq, text, reason in failed:
                if reason.startswith(UNREADABLE):
                    batch.unreadable += 1
                else:
                    reason = f"not encodable: {reason}"
                batch.dead.append((seq, seq, None, reason, text, 1))
            self._batches.append(batch)
            self._read_upto = end
            if not full:
                return

    def _send_next(self) -> None:
        while self.running and self._inflight is None and not self._retrying and self._batches:
            batch = self._batches[0]
            if not batch.chunks:
                self._complete(batch)
                continue
            lo, hi = batch.chunks[0]
            d = defer.maybeDeferred(self._send_fn, batch.payload(lo, hi))
            self._inflight = d
            d.addCallbacks(self._sent, self._failed, callbackArgs=(batch, lo, hi),
                           errbackArgs=(batch, lo, hi))
            if self._inflight is d:  # still travelling: prepare the next batch meanwhile
                self._fill(partial=False)
            return
        if self.running and self._inflight is None and not self._retrying:
            self._schedule(self.options.flush_interval)

    def _sent(self, _: Any, batch: _Batch, lo: int, hi: int) -> None:
        self._inflight = None
        if self.attempt:
            _log.info("sink {sink}: writing again after {n} failed attempts", sink=self.sink,
                      n=self.attempt)
            self.attempt = 0
            self._last_error_logged = ""
        batch.chunks.popleft()
        batch.written += hi - lo
        self._points += hi - lo
        self.hub.metrics.inc("sink.points_written", hi - lo, **self._labels)
        self._continue()

    def _continue(self) -> None:
        try:
            self._next()
        except Exception:
            self._recover()

    def _failed(self, failure: Failure, batch: _Batch, lo: int, hi: int) -> None:
        self._inflight = None
        err = failure.value
        if not isinstance(err, WriteError):
            _log.failure("sink {sink}: unexpected error while writing", failure, sink=self.sink)
            err = WriteError(None, f"{type(err).__name__}: {err}")
        self.hub.metrics.inc("sink.write_errors", status=str(err.status or "connection"),
                             **self._labels)
        if err.permanent:
            batch.chunks.popleft()
            if hi - lo > 1 and batch.splits < MAX_SPLITS:
                mid = (lo + hi) // 2
                batch.splits += 1
                batch.chunks.extendleft([(mid, hi), (lo, mid)])
            else:
                batch.dead.append((batch.seqs[lo], batch.seqs[hi - 1], err.status,
                                   err.message, "\n".join(batch.lines[lo:hi]), hi - lo))
                _log.error("sink {sink}: {n} points (seq {first}..{last}) refused for good "
                           "({status}: {message}); kept in the dead-letter table",
                           sink=self.sink, n=hi - lo, first=batch.seqs[lo],
                           last=batch.seqs[hi - 1], status=err.status, message=err.message)
            self._continue()
            return
        self.attempt += 1
        delay = self.backoff(self.attempt, err.retry_after)
        text = str(err)
        if text != self._last_error_logged or self.attempt in (1, 10, 100, 1000):
            self._last_error_logged = text
            _log.warn("sink {sink}: write failed ({error}); attempt {n}, next in {delay:.1f} s; "
                      "{lag} records waiting", sink=self.sink, error=text, n=self.attempt,
                      delay=delay, lag=self.hub.journal.last_seq() - self.cursor)
        self._retrying = True
        self._cancel_timer()
        self._schedule(delay)

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds before retry ``attempt`` (1, 2, ...): exponential, capped, with jitter."""
        o = self.options
        if retry_after is not None:
            return min(max(retry_after, o.retry_initial), o.retry_max)
        base = min(o.retry_max, o.retry_initial * 2.0 ** min(attempt - 1, 60))
        return base * (0.5 + 0.5 * self._rng.random())

    def _next(self) -> None:
        while self._batches and not self._batches[0].chunks:
            self._complete(self._batches[0])
        if not self.running:
            return
        if not self._batches:
            self._fill(partial=False)
        self._send_next()  # the next batch goes first; the one after is read while it travels

    def _complete(self, batch: _Batch) -> None:
        """Every line was accepted or dead-lettered: commit dead letters, move the cursor."""
        self._batches.popleft()
        if batch.dead:
            self._deadletters.add(self.sink, batch.dead, self.clock.seconds())
            self.hub.metrics.inc("sink.deadletter_points", sum(e[5] for e in batch.dead),
                                 **self._labels)
            if batch.unreadable:
                self.hub.metrics.inc("sink.unreadable_records", batch.unreadable,
                                     **self._labels)
            for first, _, status, message, _, _ in batch.dead:
                if status is None:  # refused here, not by the server (that is logged there)
                    _log.error("sink {sink}: journal seq {seq} not written ({message}); kept "
                               "in the dead-letter table", sink=self.sink, seq=first,
                               message=message)
        if batch.end > self.cursor:
            self.hub.journal.set_cursor(self.sink, batch.end)
            self.cursor = batch.end
        self.hub.metrics.inc("sink.batches_written", **self._labels)

    # -- tags ----------------------------------------------------------------------------

    def _device_tags(self, device: str) -> tuple[tuple[str, str], ...]:
        tags = self._tags_cache.get(device)
        if tags is None:
            try:
                d = self.hub.registry.get(device)
                tags = (("model", d.model_name), ("project", d.project))
            except LookupError:
                tags = ()  # the hub itself, or a device no longer configured
            self._tags_cache[device] = tags
        return tags

    # -- lag -----------------------------------------------------------------------------

    def lag(self) -> tuple[int, float]:
        """(records, seconds) this sink is behind the journal."""
        now = self.clock.seconds()
        top = self.hub.journal.last_seq()
        samples = self._samples
        if not samples or samples[-1][0] < top:
            samples.append((top, now))
            if len(samples) > MAX_SAMPLES:  # keep the oldest, thin the rest
                kept = list(samples)
                samples.clear()
                samples.extend([kept[0], *kept[1:-1:2], kept[-1]])
        while samples and samples[0][0] <= self.cursor:
            samples.popleft()
        if not samples or top <= self.cursor:
            return 0, 0.0
        return top - self.cursor, max(0.0, now - samples[0][1])

    def _update_metrics(self) -> tuple[int, float]:
        records, seconds = self.lag()
        now = self.clock.seconds()
        m, labels = self.hub.metrics, self._labels
        m.set("sink.lag_records", records, **labels)
        m.set("sink.lag_seconds", round(seconds, 3), **labels)
        if self._rate_mark is not None and now > self._rate_mark[0]:
            t0, p0 = self._rate_mark
            m.set("sink.write_rate", round((self._points - p0) / (now - t0), 1), **labels)
        self._rate_mark = (now, self._points)
        return records, seconds

    def _check_lag(self) -> None:
        """Every second: the gauges, and the sink_lagging fault raised or cleared."""
        records, seconds = self._update_metrics()
        now = self.clock.seconds()
        bound = self.options.max_lag_seconds
        if seconds > bound and self._fault is None:
            self._peak = seconds
            self._fault = Event(
                device="hub", kind=EventKind.FAULT, code=LAG_CODE, state=EventState.RAISED,
                ts=now, level=Level.FAULT, id=self._fault_id(now), value=seconds,
                set_point=bound, message=f"sink {self.sink} is {seconds:.0f} s "
                f"({records} records) behind the journal (bound {bound:g} s)")
            self.hub.record_events([self._fault])
        elif self._fault is not None:
            self._peak = max(self._peak, seconds)
            if seconds <= bound:
                raised, self._fault = self._fault, None
                self.hub.record_events([replace(
                    raised, state=EventState.CLEARED, ts=now, value=seconds, raised_ts=raised.ts,
                    peak=max(self._peak, raised.value or 0.0),
                    message=f"sink {self.sink} caught up ({records} records behind)")])

    def _fault_id(self, raised_ts: float) -> str:
        # the sink's name is part of the id: two sinks may lag at the same instant
        return event_id("hub", f"{LAG_CODE}/{self.sink}", "", Level.FAULT, raised_ts)

    def _restore_fault(self) -> None:
        for e in self.hub.journal.active_events():
            if e.code == LAG_CODE and e.id == self._fault_id(e.ts):
                self._fault, self._peak = e, e.value or 0.0


def threads_defer(reactor: Any, pool: Any, fn: Callable[..., Any], *args: Any) -> defer.Deferred:
    from twisted.internet.threads import deferToThreadPool

    return deferToThreadPool(reactor, pool, fn, *args)
