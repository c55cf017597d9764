"""A sink that delivers the journal in batches: implement ``prepare`` and ``deliver``.

::

    from hub.sinks import BatchSink, Retry

    class WebhookSink(BatchSink):
        def prepare(self, rows, end):
            return json.dumps([self.journal.record(r).to_dict() for r in rows]).encode()

        def deliver(self, body):
            d = treq.post(self.options.url, body)       # any Deferred
            return d.addCallback(self._check)

        def _check(self, response):
            if response.code >= 500:
                raise Retry(f"HTTP {response.code}")    # same batch again, after a backoff

The loop (:class:`BatchSink`): read up to ``batch_size`` rows past the tail's position (a
partial batch only once ``flush_interval`` has passed since the last delivery), ``prepare``
them, ``deliver``; while one batch travels the next is read and prepared (``prefetch``).
When ``deliver``'s Deferred fires, :meth:`BatchSink.settled` runs and the cursor moves to the
batch's end: at-least-once, never past what the far side accepted. When it fails with
:class:`Retry` the same prepared batch is delivered again after a backoff delay (the
``retry_after`` of the exception if given), as often as it takes; any other exception is a
bug: logged with its traceback, counted, and the sink starts again from its cursor after a
backoff (see :class:`hub.sinks.CursorSink`). ``prepare`` may also raise: same treatment.

A prepared batch is delivered again as it is, so ``deliver`` may keep progress in it (a
batch split after the far side refused part of it resumes where it stopped).
"""

from __future__ import annotations

import abc
import random
from collections import deque
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from hub.sinks.base import CursorSink

_log = Logger(namespace="hub.sinks")


class Retry(Exception):
    """A delivery failed for now (the far side is down, busy, refuses our credentials until
    an operator fixes them): deliver the same batch again later. ``retry_after``: seconds
    the far side asked for."""

    def __init__(self, message: str = "", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class Prepared:
    """A batch read from the journal: its payload and the cursor once it is delivered."""

    end: int
    epoch: int
    payload: Any


class BatchSink(CursorSink):
    """Base of a batch sink with one cursor (the sink's name). Options it reads:
    ``batch_size`` (rows per batch, default 1000), ``catch_up_batch_size`` (rows per batch
    while more than two batches wait, default ``batch_size``), ``flush_interval`` (s a
    partial batch waits, default 1), ``retry_initial``/``retry_max``, ``max_lag_seconds``.
    ``kinds``: the record kinds read (None: all)."""

    #: batches read and prepared ahead of the one in flight
    prefetch = 1
    #: what the log calls one delivery ("write" for a database)
    delivery_word = "delivery"
    kinds: set[str] | None = None

    def __init__(self, hub: Any, name: str, options: Any, *,
                 rng: random.Random | None = None) -> None:
        super().__init__(hub, name, options, rng=rng)
        self.batch_size: int = getattr(options, "batch_size", 1000)
        # one batch travels at a time: a sink behind by more than its round trips can carry
        # catches up only with fewer, larger batches (issue 15: 5,000 readings a write held
        # an InfluxDB sink to ~350,000 a second on a busy machine, 20,000 did not)
        self.catch_up_size: int = max(
            self.batch_size, getattr(options, "catch_up_batch_size", None) or 0)
        self.flush_interval: float = getattr(options, "flush_interval", 1.0)
        self.tail = self.add_tail(name, self.kinds)
        self.attempt = 0  # failures in a row of the batch at the head
        self._batches: deque[Prepared] = deque()
        self._inflight: defer.Deferred | None = None
        self._retrying = False
        self._timer: IDelayedCall | None = None
        self._last_error = ""

    # -- what a batch sink implements ----------------------------------------------------

    def prepare(self, rows: list[tuple], end: int) -> Any:
        """The payload of a batch of stored rows (``(seq, kind, series, ts, value,
        quality, data)``; :meth:`SinkJournal.record` rebuilds a record). ``end`` is the
        seq the cursor moves to once it is delivered. Default: the rows."""
        return rows

    @abc.abstractmethod
    def deliver(self, payload: Any) -> defer.Deferred:
        """Send one payload; the Deferred fires when the far side accepted all of it, or
        fails with :class:`Retry`."""

    def settled(self, payload: Any) -> None:
        """A payload was delivered; runs before the cursor moves past it (commit what
        must be durable first: dead letters, say)."""

    def is_empty(self, payload: Any) -> bool:
        """True when there is nothing to send (every row filtered or refused): the cursor
        moves without a delivery. Default: an empty sequence."""
        try:
            return len(payload) == 0
        except TypeError:
            return False

    # -- the loop ------------------------------------------------------------------------

    def started(self) -> None:
        self._batches.clear()
        self._retrying, self.attempt = False, 0
        self._schedule(0)  # what waited before the start goes now, partial or not

    def stopped(self) -> Any:
        self._cancel_timer()
        if self._inflight is not None:
            # its answer moves the cursor; the journal closes only after the sinks stopped
            d: defer.Deferred = defer.Deferred()
            self._inflight.addBoth(lambda r: (d.callback(None), r)[1])
            return d
        return None

    def reset(self) -> None:
        self._batches.clear()
        self._retrying = False
        self._cancel_timer()

    def pump(self) -> None:
        self._fill(partial=False)
        self._send_next()

    def resumed(self) -> None:
        self._tick()  # after a backoff what is there goes at once, a partial batch too

    def _tick(self) -> None:
        """The flush timer, or the end of a retry delay: partial batches may go now."""
        self._timer = None
        self._retrying = False
        try:
            self._fill(partial=True)
            self._send_next()
        except Exception:
            self.internal_error(Failure())
            return
        self._arm()

    def _schedule(self, delay: float) -> None:
        if self._timer is None and self.running:
            self._timer = self.clock.callLater(delay, self._tick)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _fill(self, partial: bool) -> None:
        tail = self.tail
        while len(self._batches) <= self.prefetch:
            behind = tail.behind()
            if behind <= 0 or (not partial and behind < self.batch_size):
                return
            size = self.batch_size
            if behind > 2 * size:
                size = self.catch_up_size
            rows, end, full = tail.read_rows(size)
            self._batches.append(Prepared(end, tail.epoch, self.prepare(rows, end)))
            if not full:
                return

    def _send_next(self) -> None:
        while self.running and self._inflight is None and not self._retrying and self._batches:
            batch = self._batches[0]
            if self.is_empty(batch.payload):
                self._complete()
                continue
            d = defer.maybeDeferred(self.deliver, batch.payload)
            self._inflight = d
            d.addCallbacks(self._sent, self._failed, callbackArgs=(batch,),
                           errbackArgs=(batch,))
            d.addErrback(self.internal_error)
            if self._inflight is d:  # still travelling: prepare the next batch meanwhile
                self._fill(partial=False)
            return
        if self.running and self._inflight is None and not self._retrying:
            self._schedule(self.flush_interval)

    def _sent(self, _: Any, batch: Prepared) -> None:
        self._inflight = None
        if self.attempt:
            _log.info("sink {sink}: {what} works again after {n} failed attempts",
                      sink=self.sink, what=self.delivery_word, n=self.attempt)
            self.attempt = 0
            self._last_error = ""
        if self._batches and self._batches[0] is batch:
            self._complete()
        if self.running:
            if not self._batches:
                self._fill(partial=False)
            self._send_next()

    def _complete(self) -> None:
        batch = self._batches.popleft()
        self.settled(batch.payload)
        self.tail.commit(batch.end, batch.epoch)
        self.delivered()

    def _failed(self, failure: Failure, batch: Prepared) -> None:
        self._inflight = None
        if not failure.check(Retry):
            return failure  # a bug, not the far side: the supervisor takes it
        err: Retry = failure.value
        self.attempt += 1
        delay = self.backoff.delay(self.attempt, err.retry_after)
        text = str(err)
        if text != self._last_error or self.attempt in (1, 10, 100, 1000):
            self._last_error = text
            _log.warn("sink {sink}: {what} failed ({error}); attempt {n}, next in "
                      "{delay:.1f} s; {lag} records waiting", sink=self.sink, error=text,
                      what=self.delivery_word,
                      n=self.attempt, delay=delay,
                      lag=self.journal.last_seq() - self.tail.cursor)
        self._retrying = True
        self._cancel_timer()
        self._schedule(delay)
        return None
