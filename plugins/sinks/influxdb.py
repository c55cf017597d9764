"""Built-in sink ``influxdb``: the journal, delivered to InfluxDB without losing a record.

Configuration (``sinks.<name>`` in ``hub.yaml``; several sinks of this type may run, each
with its own cursor named after its key)::

    sinks:
      history:
        type: influxdb
        url: http://influx.example:8086     # InfluxDB 2.x, or 1.8+ through its v2 API
        org: campus                          # 1.8: "-"
        bucket: fire-monitoring              # 1.8: "database/retention_policy"
        token: {env: INFLUX_TOKEN}           # 1.8: {env: ...} holding "user:password"
        batch_size: 5000                     # records per write (InfluxData: 5000 lines)
        flush_interval: 1.0                  # s a partial batch may wait
        timeout: 10                          # s per HTTP request
        gzip: true
        max_lag_seconds: 300                 # fault event sink_lagging above this
        retry_initial: 1.0                   # s, first retry delay; doubles each time ...
        retry_max: 60                        # ... up to this, each with jitter
        readings_measurement: "{quantity}"   # or one measurement, e.g. "reading"
        events_measurement: events
        results_measurement: command_results
        kinds: [reading, event, command_result]
        verify_ssl: true

How delivery works (the whole of the "lose nothing" promise):

* The sink reads the journal from its durable cursor (``journal.get_cursor(name)``) in
  batches of at most ``batch_size`` records; a partial batch waits at most
  ``flush_interval``. Records become line protocol (:mod:`plugins.sinks.line_protocol`)
  on the reactor thread; the HTTP write (gzip level 1, then ``POST /api/v2/write`` through
  influxdb-client's ``WriteService``, precision ns) runs in the sink's own one-thread pool.
  One batch is in flight at a time; the next one is read and encoded while it travels.
* The cursor moves (``journal.set_cursor``) only after the server answered 2xx for every
  line of the batch, so a crash or an outage at any instant means the batch is sent again.
  Re-sent points are identical (same measurement, tags, fields and nanosecond timestamp):
  InfluxDB keeps one value per series and timestamp, so the database ends with exactly one.
* influxdb-client's batching and retries are not used (they drop a batch after their last
  retry): the client is built with ``retries=False`` and every failure comes back here.
* Transient failures (connection refused or reset, timeout, 5xx, 429, and 401/403/404:
  a wrong token or a missing bucket is fixed by an operator, not by dropping data) are
  retried forever, the same batch, after ``retry_initial × 2^n`` seconds capped at
  ``retry_max``, each delay multiplied by a random factor in [0.5, 1) (jitter), or after the
  server's ``Retry-After`` when it sends one.
* A 400, 413 or 422 cannot succeed by waiting (a field type conflict, a malformed line, a
  point outside the retention period). The failing chunk is split in halves and each half
  sent again, down to single lines (at most ``MAX_SPLITS`` splits per batch), so only the
  offending lines end in the dead-letter table, with the server's message; the rest is
  written and the cursor moves on. A record the encoder refuses (an infinite value) goes
  there too, without a request.
* Dead letters live in ``<state_dir>/deadletter.sqlite`` (table ``deadletter``: sink,
  first_seq, last_seq, status, message, lines, points, at), written and committed before
  the cursor passes them. ``hub deadletter`` lists them; after fixing the cause an operator
  can send the stored lines again (they are plain line protocol).

Metrics (label ``sink=<name>``): ``sink.lag_records`` (journal seqs not yet passed),
``sink.lag_seconds`` (age of the oldest undelivered record: how long ago it was seen
committed; for records already there when the hub started, their own timestamp),
``sink.write_rate`` (points/s over the last second), ``sink.points_written``,
``sink.batches_written``, ``sink.write_errors`` (label ``status``: an HTTP status or
``connection``), ``sink.deadletter_points``, ``sink.internal_errors`` (the journal or the
dead-letter file failed locally; the sink reads again from its cursor after ``retry_max``).
When ``sink.lag_seconds`` passes ``max_lag_seconds`` the sink raises the fault event
``sink_lagging`` (device ``hub``) and clears it, with the peak lag, once it is back under
the bound.

Reading and encoding 5,000 records blocks the reactor for about 11 ms; ``read_rows`` of the
journal hands the rows over as stored, and the encoder caches each series' line prefix by
its id, so no :class:`hub.model.Reading` is built on this path.
"""

from __future__ import annotations

import gzip as _gzip
import math
import os
import random
import sqlite3
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from hub import hookimpl
from hub.config import Secret
from hub.journal import KINDS
from hub.model import Event, EventKind, EventState, Level, event_id
from hub.types import SinkType
from hub.validate import Invalid, Section, boolean, describe, integer, number, string
from plugins.sinks.line_protocol import LineEncoder

_log = Logger(namespace="hub.sinks.influxdb")

#: Kinds of journal records this sink can write (commands are the audit log's business).
WRITABLE_KINDS = ("reading", "event", "command_result")
#: HTTP statuses that waiting will not fix: the lines go to the dead-letter table.
PERMANENT_STATUSES = frozenset({400, 413, 422})
#: Splits of one batch while isolating bad lines; past this the rest goes to dead letters.
MAX_SPLITS = 64
#: Batches prepared ahead of the one in flight.
PREFETCH = 1
#: Seconds between lag checks (metrics and the sink_lagging fault).
LAG_CHECK_INTERVAL = 1.0
#: Lag samples kept before old ones are thinned (precision of old samples degrades).
MAX_SAMPLES = 4096
GZIP_LEVEL = 1
LAG_CODE = "sink_lagging"


# ---------------------------------------------------------------------------- options


@dataclass(frozen=True)
class InfluxOptions:
    url: str
    bucket: str
    org: str = "-"
    token: str | None = None
    batch_size: int = 5000
    flush_interval: float = 1.0
    timeout: float = 10.0
    gzip: bool = True
    max_lag_seconds: float = 300.0
    retry_initial: float = 1.0
    retry_max: float = 60.0
    readings_measurement: str = "{quantity}"
    events_measurement: str = "events"
    results_measurement: str = "command_results"
    kinds: frozenset[str] = frozenset(WRITABLE_KINDS)
    verify_ssl: bool = True

    def __repr__(self) -> str:  # the token never reaches a log
        return f"InfluxOptions(url={self.url!r}, org={self.org!r}, bucket={self.bucket!r})"


def _url(v: Any) -> str:
    v = string()(v)
    if not v.startswith(("http://", "https://")):
        raise Invalid(f"{v!r} is not an http:// or https:// URL")
    return v.rstrip("/")


def _token(v: Any) -> str | None:
    if v is None:  # an {env:} or {file:} that could not be read: already reported
        return None
    if not isinstance(v, Secret):
        raise Invalid("write the token as {env: NAME} or {file: PATH}, not in the file itself"
                      if isinstance(v, str) else f"expected {{env: NAME}} or {{file: PATH}}, "
                      f"got {describe(v)}")
    return v


def _measurement(placeholder: bool) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        v = string()(v)
        if not v:
            raise Invalid("must not be empty")
        if placeholder:
            try:
                v.format(quantity="q")
            except (KeyError, IndexError, ValueError):
                raise Invalid(f"{v!r} may contain only the placeholder {{quantity}}") from None
        return v

    return check


def _kinds(v: Any) -> frozenset[str]:
    if not isinstance(v, list) or not v:
        raise Invalid(f"expected a non-empty list of {', '.join(WRITABLE_KINDS)}, "
                      f"got {describe(v)}")
    bad = [k for k in v if k not in WRITABLE_KINDS]
    if bad:
        raise Invalid(f"{describe(bad[0])} is not one of {', '.join(WRITABLE_KINDS)}")
    return frozenset(v)


def check_options(s: Section) -> InfluxOptions:
    opts = InfluxOptions(
        url=s.get("url", _url),
        bucket=s.get("bucket", string(r".+", "a bucket name")),
        org=s.get("org", string(r".+", "an organisation name"), "-"),
        token=s.get("token", _token, None),
        batch_size=s.get("batch_size", integer(1, 100_000), 5000),
        flush_interval=s.get("flush_interval", number(0.01, 3600, "s"), 1.0),
        timeout=s.get("timeout", number(0.1, 3600, "s"), 10.0),
        gzip=s.get("gzip", boolean, True),
        max_lag_seconds=s.get("max_lag_seconds", number(1, None, "s"), 300.0),
        retry_initial=s.get("retry_initial", number(0.01, 3600, "s"), 1.0),
        retry_max=s.get("retry_max", number(0.01, 86400, "s"), 60.0),
        readings_measurement=s.get("readings_measurement", _measurement(True), "{quantity}"),
        events_measurement=s.get("events_measurement", _measurement(False), "events"),
        results_measurement=s.get("results_measurement", _measurement(False),
                                  "command_results"),
        kinds=s.get("kinds", _kinds, frozenset(WRITABLE_KINDS)),
        verify_ssl=s.get("verify_ssl", boolean, True),
    )
    if (opts.retry_initial is not None and opts.retry_max is not None
            and opts.retry_max < opts.retry_initial):
        s.checker.error(s.path / "retry_max", f"{opts.retry_max:g} s is below retry_initial "
                        f"({opts.retry_initial:g} s)")
    s.finish()
    return opts


# ---------------------------------------------------------------------------- the writer


class WriteError(Exception):
    """A write that did not succeed: ``status`` is the HTTP status (``None`` when no answer
    came back), ``message`` the server's message, ``retry_after`` its Retry-After (s)."""

    def __init__(self, status: int | None, message: str,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{status or 'no answer'}: {message}")
        self.status = status
        self.message = message
        self.retry_after = retry_after

    @property
    def permanent(self) -> bool:
        return self.status in PERMANENT_STATUSES


class InfluxWriter:
    """The blocking half, run in the sink's thread: one ``POST /api/v2/write`` per call
    through influxdb-client, no retries of its own."""

    def __init__(self, opts: InfluxOptions) -> None:
        from influxdb_client import InfluxDBClient
        from influxdb_client.service.write_service import WriteService

        self._opts = opts
        self._client = InfluxDBClient(
            url=opts.url, token=opts.token or None, org=opts.org,
            timeout=int(opts.timeout * 1000), enable_gzip=False, verify_ssl=opts.verify_ssl,
            retries=False)
        self._service = WriteService(self._client.api_client)

    def write(self, body: bytes) -> None:
        """Send ``body`` (line protocol); raise :class:`WriteError` unless it was accepted."""
        import urllib3
        from influxdb_client.rest import ApiException

        extra: dict[str, str] = {}
        if self._opts.gzip:
            body = _gzip.compress(body, GZIP_LEVEL)
            extra["content_encoding"] = "gzip"
        try:
            self._service.post_write(
                org=self._opts.org, bucket=self._opts.bucket, body=body, precision="ns",
                content_type="text/plain; charset=utf-8", **extra)
        except ApiException as e:
            message = getattr(e, "message", None) or e.reason or ""
            if isinstance(message, bytes):
                message = message.decode("utf-8", "replace")
            raise WriteError(e.status, str(message)[:2000],
                             _retry_after(getattr(e, "retry_after", None))) from None
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise WriteError(None, f"{type(e).__name__}: {e}"[:2000]) from None

    def close(self) -> None:
        self._client.close()


def _retry_after(value: Any) -> float | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None  # absent, or an HTTP date: our own backoff applies
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


# ---------------------------------------------------------------------------- dead letters


DEADLETTER_SCHEMA = """
CREATE TABLE IF NOT EXISTS deadletter (
    id INTEGER PRIMARY KEY, sink TEXT NOT NULL, first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL, status INTEGER, message TEXT NOT NULL, lines TEXT NOT NULL,
    points INTEGER NOT NULL, at REAL NOT NULL, UNIQUE (sink, first_seq, last_seq));
"""


def deadletter_path(state_dir: str) -> str:
    return os.path.join(state_dir, "deadletter.sqlite")


class DeadLetters:
    """Lines a server refused for good, with its message: ``<state_dir>/deadletter.sqlite``.

    A row is committed before the sink's cursor passes it. The same chunk stored twice (a
    crash between the two) is kept once: (sink, first_seq, last_seq) is unique.
    """

    def __init__(self, path: str) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout = 5000")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.executescript(DEADLETTER_SCHEMA)

    def add(self, sink: str, entries: Sequence[tuple[int, int, int | None, str, str, int]],
            now: float) -> None:
        """Store ``(first_seq, last_seq, status, message, lines, points)`` in one commit."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT OR IGNORE INTO deadletter (sink, first_seq, last_seq, status, message,"
                " lines, points, at) VALUES (?,?,?,?,?,?,?,?)",
                [(sink, *e, now) for e in entries])

    def entries(self, sink: str | None = None) -> list[dict[str, Any]]:
        sql = ("SELECT id, sink, first_seq, last_seq, status, message, lines, points, at"
               " FROM deadletter")
        args: tuple = ()
        if sink is not None:
            sql += " WHERE sink = ?"
            args = (sink,)
        cols = ("id", "sink", "first_seq", "last_seq", "status", "message", "lines", "points",
                "at")
        return [dict(zip(cols, row, strict=True))
                for row in self._db.execute(sql + " ORDER BY id", args)]

    def close(self) -> None:
        self._db.close()


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
            for seq, rec, reason in failed:
                batch.dead.append((seq, seq, None, f"not encodable: {reason}", rec, 1))
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


# ---------------------------------------------------------------------------- CLI


def cmd_deadletter(args: Any) -> int:
    import json

    from hub.cli import _load

    _, config = _load(args)
    path = deadletter_path(config.state_dir)
    if not os.path.exists(path):
        print(f"no dead letters ({path} does not exist)")
        return 0
    store = DeadLetters(path)
    try:
        entries = store.entries(args.sink)
    finally:
        store.close()
    for e in entries:
        if args.json:
            print(json.dumps(e, ensure_ascii=False))
        elif args.lines:
            print(e["lines"])
        else:
            print(f"#{e['id']} sink {e['sink']} seq {e['first_seq']}..{e['last_seq']} "
                  f"{e['points']} points, status {e['status'] or '-'}: {e['message']}")
    return 0


@hookimpl
def hub_add_commands(subparsers: Any) -> None:
    from hub.cli import DEFAULT_CONFIG

    p = subparsers.add_parser("deadletter", help="lines a database refused for good")
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG)
    p.add_argument("--sink", help="only this sink's entries")
    p.add_argument("--json", action="store_true", help="one JSON object per entry")
    p.add_argument("--lines", action="store_true",
                   help="print only the stored line protocol (to send it again)")
    p.set_defaults(func=cmd_deadletter)


@hookimpl
def hub_register_sink_types() -> list[SinkType]:
    return [SinkType("influxdb", InfluxSink, check_options,
                     "InfluxDB 2.x / 1.8+ (v2 write API), lossless from the journal")]


__all__ = ["DeadLetters", "InfluxOptions", "InfluxSink", "InfluxWriter", "WriteError",
           "check_options", "KINDS"]
