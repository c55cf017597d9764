"""The ``influxdb`` sink service: journal cursor → batches → writes, lossless."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from hub.journal import KINDS
from hub.model import Event
from hub.sinks import BatchSink, Retry
from plugins.sinks.deadletters import DeadLetters, deadletter_path
from plugins.sinks.influx_options import MAX_SPLITS, PREFETCH, InfluxOptions
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


class InfluxSink(BatchSink):
    """Reads the journal from cursor ``name``, writes to InfluxDB, advances the cursor.

    Built on :class:`hub.sinks.BatchSink`: the cursor, read-ahead, wake-ups, backoff, lag
    and the supervisor are the framework's; this class encodes batches (line protocol)
    and writes them, splitting a batch the server refuses part of.

    ``send(body) -> Deferred`` and ``rng`` are injectable for tests; by default ``send``
    runs :meth:`InfluxWriter.write` in a one-thread pool of the reactor.
    """

    kinds = None
    prefetch = PREFETCH
    delivery_word = "write"

    def __init__(self, hub: Any, name: str, options: InfluxOptions, *,
                 send: Callable[[bytes], defer.Deferred] | None = None,
                 rng: random.Random | None = None,
                 deadletters: DeadLetters | None = None) -> None:
        # With readings wanted the tail reads every kind and the encoder passes over the
        # others by code: a filtered read of the journal's in-memory rows walks them one by
        # one in Python, an unfiltered one is a slice (1.4 % of the hub's CPU at 90,000
        # points/s). Without readings, the journal filters (in SQL).
        self.kinds = None if "reading" in options.kinds else set(options.kinds)
        self._kind_codes = frozenset(KINDS[k] for k in options.kinds)
        super().__init__(hub, name, options, rng=rng)
        self._send_fn = send
        self._deadletters = deadletters
        self._own_deadletters = False
        self._writer: InfluxWriter | None = None
        self._pool: Any = None
        self.encoder = LineEncoder(
            self._device_tags, readings=options.readings_measurement,
            events=options.events_measurement, results=options.results_measurement)
        self._tags_cache: dict[str, tuple[tuple[str, str], ...]] = {}

    @property
    def cursor(self) -> int:
        """The last seq the database accepted everything up to (durable)."""
        return self.tail.cursor

    @property
    def _fault(self) -> Event | None:
        return self.lag_fault

    # -- lifecycle -----------------------------------------------------------------------

    def started(self) -> None:
        super().started()
        if self._deadletters is None:
            self._deadletters = DeadLetters(deadletter_path(self.port.state_dir))
            self._own_deadletters = True
        if self._send_fn is None:
            from twisted.internet import reactor
            from twisted.python.threadpool import ThreadPool

            self._writer = InfluxWriter(self.options)
            self._pool = ThreadPool(1, 1, name=f"sink-{self.sink}")
            self._pool.start()
            writer, pool = self._writer, self._pool
            self._send_fn = lambda body: threads_defer(reactor, pool, writer.write, body)
        _log.info("sink {sink}: writing to {url} bucket {bucket} from seq {seq} "
                  "({lag} records behind)", sink=self.sink, url=self.options.url,
                  bucket=self.options.bucket, seq=self.cursor, lag=self.tail.behind())

    def stopped(self) -> Any:
        d = defer.maybeDeferred(super().stopped)
        d.addBoth(self._close)
        return d

    def _close(self, result: Any) -> Any:
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
        _log.info("sink {sink}: stopped at seq {seq}", sink=self.sink, seq=self.cursor)
        return result

    # -- batches -------------------------------------------------------------------------

    def prepare(self, rows: list[tuple], end: int) -> _Batch:
        """Rows become line protocol here, on the reactor thread; refused ones (an infinite
        value, an unreadable row) become dead letters without a request."""
        journal = self.journal
        lines, seqs, failed = self.encoder.encode_rows(rows, journal.series_key,
                                                       journal.record, self._kind_codes)
        batch = _Batch(end, lines, seqs, "\n".join(lines).encode())
        if lines:
            batch.chunks.append((0, len(lines)))
        for seq, text, reason in failed:
            if reason.startswith(UNREADABLE):
                batch.unreadable += 1
            else:
                reason = f"not encodable: {reason}"
            batch.dead.append((seq, seq, None, reason, text, 1))
        return batch

    def is_empty(self, payload: _Batch) -> bool:
        return not payload.chunks

    @defer.inlineCallbacks
    def deliver(self, batch: _Batch):
        """Write the batch's chunks; a permanent refusal splits the chunk (down to single
        lines, at most MAX_SPLITS times), a transient one is a :class:`Retry` of what is
        left."""
        while batch.chunks:
            lo, hi = batch.chunks[0]
            try:
                yield defer.maybeDeferred(self._send_fn, batch.payload(lo, hi))
            except Exception as e:
                err = e
                if not isinstance(err, WriteError):
                    _log.failure("sink {sink}: unexpected error while writing", sink=self.sink)
                    err = WriteError(None, f"{type(err).__name__}: {err}")
                self.metrics.inc("sink.write_errors", status=str(err.status or "connection"),
                                 **self.labels)
                if not err.permanent:
                    raise Retry(str(err), err.retry_after) from None
                self._refused(batch, lo, hi, err)
                continue
            batch.chunks.popleft()
            batch.written += hi - lo
            self.delivered(hi - lo)
            self.metrics.inc("sink.points_written", hi - lo, **self.labels)

    def _refused(self, batch: _Batch, lo: int, hi: int, err: WriteError) -> None:
        batch.chunks.popleft()
        if hi - lo > 1 and batch.splits < MAX_SPLITS:
            mid = (lo + hi) // 2
            batch.splits += 1
            batch.chunks.extendleft([(mid, hi), (lo, mid)])
            return
        batch.dead.append((batch.seqs[lo], batch.seqs[hi - 1], err.status,
                           err.message, "\n".join(batch.lines[lo:hi]), hi - lo))
        _log.error("sink {sink}: {n} points (seq {first}..{last}) refused for good "
                   "({status}: {message}); kept in the dead-letter table",
                   sink=self.sink, n=hi - lo, first=batch.seqs[lo],
                   last=batch.seqs[hi - 1], status=err.status, message=err.message)

    def settled(self, batch: _Batch) -> None:
        """Every line was accepted or dead-lettered: commit the dead letters (the cursor
        moves right after)."""
        if batch.dead:
            assert self._deadletters is not None
            self._deadletters.add(self.sink, batch.dead, self.clock.seconds())
            self.metrics.inc("sink.deadletter_points", sum(e[5] for e in batch.dead),
                             **self.labels)
            if batch.unreadable:
                self.metrics.inc("sink.unreadable_records", batch.unreadable, **self.labels)
            for first, _, status, message, _, _ in batch.dead:
                if status is None:  # refused here, not by the server (that is logged there)
                    _log.error("sink {sink}: journal seq {seq} not written ({message}); kept "
                               "in the dead-letter table", sink=self.sink, seq=first,
                               message=message)
        self.metrics.inc("sink.batches_written", **self.labels)

    # -- tags ----------------------------------------------------------------------------

    def _device_tags(self, device: str) -> tuple[tuple[str, str], ...]:
        tags = self._tags_cache.get(device)
        if tags is None:
            d = self.port.device(device)
            # () for the hub itself, or a device no longer configured
            tags = () if d is None else (("model", d.model), ("project", d.project))
            self._tags_cache[device] = tags
        return tags


def threads_defer(reactor: Any, pool: Any, fn: Callable[..., Any], *args: Any) -> defer.Deferred:
    from twisted.internet.threads import deferToThreadPool

    return deferToThreadPool(reactor, pool, fn, *args)
