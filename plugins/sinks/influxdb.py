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

* The sink (a :class:`hub.sinks.BatchSink`) reads the journal from its durable cursor in
  batches of at most ``batch_size`` records, woken by the journal's commits; a partial
  batch waits at most ``flush_interval``. Records become line protocol
  (:mod:`plugins.sinks.line_protocol`) on the reactor thread; the HTTP write (gzip level
  1, then ``POST /api/v2/write``, precision ns, with :mod:`http.client` on one kept-alive
  connection: :mod:`.influx_writer`) runs in the sink's own one-thread pool. A sink that
  keeps up posts full batches: at 90,000 points/s and ``batch_size`` 5000, about 20
  writes a second.
  One batch is in flight at a time; the next one is read and encoded while it travels.
* The cursor moves (``journal.set_cursor``) only after the server answered 2xx for every
  line of the batch, so a crash or an outage at any instant means the batch is sent again.
  Re-sent points are identical (same measurement, tags, fields and nanosecond timestamp):
  InfluxDB keeps one value per series and timestamp, so the database ends with exactly one.
  The tags ``model`` and ``project`` are the exception: they are looked up in the running
  configuration at delivery time, because the journal does not keep them with a record,
  so a backlog delivered after a device changed project lands in the new series.
* The writer retries nothing itself (influxdb-client's batching mode, which drops a batch
  after its last retry, is not used; neither is the rest of that client since the write
  became a plain request): every failure comes back here. The one exception is a kept-alive
  connection the server closed while it was idle: the write is sent once more on a new
  connection (a write is idempotent).
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
  there too, without a request, and so does a journal row that cannot be read back (an
  enum value this version does not know, corrupt JSON): the stored row with the reason
  ``unreadable journal row: ...``, logged with its seq, so one bad row never holds the
  stream back. Database and OS errors while reading are not the row's fault: they make
  the sink read again from its cursor (``sink.internal_errors``).
* Dead letters live in ``<state_dir>/deadletter.sqlite`` (table ``deadletter``: sink,
  first_seq, last_seq, status, message, lines, points, at), written and committed before
  the cursor passes them. ``hub deadletter`` lists them; after fixing the cause an operator
  can send the stored lines again (they are plain line protocol).

Metrics (label ``sink=<name>``): ``sink.lag_records`` (journal seqs not yet passed),
``sink.lag_seconds`` (how long ago the hub committed the oldest undelivered record; a
device's own timestamp does not count),
``sink.write_rate`` (points/s over the last second), ``sink.points_written``,
``sink.batches_written``, ``sink.write_errors`` (label ``status``: an HTTP status or
``connection``), ``sink.deadletter_points``, ``sink.unreadable_records`` (journal rows
that could not be read back, dead-lettered), ``sink.internal_errors`` (the journal or the
dead-letter file failed locally, or a bug; the sink reads again from its cursor after a
backoff delay, and raises ``sink_failed`` when it fails twice in a row).
When ``sink.lag_seconds`` passes ``max_lag_seconds`` the sink raises the fault event
``sink_lagging`` (device ``hub``) and clears it, with the peak lag, once it is back under
the bound.

Reading and encoding 5,000 readings blocks the reactor for about 1-2 ms; ``read_rows`` of
the journal hands the rows over as stored (from its in-memory rows when the sink keeps
up: every kind is read, so that is a slice, and the encoder passes over the kinds not
written), and the encoder caches each series' line prefix by its id and the text of
repeated values, so no :class:`hub.model.Reading` is built on this path.

The pieces: :mod:`.influx_options` (checked options), :mod:`.influx_writer` (one HTTP
write), :mod:`.deadletters` (refused lines), :mod:`.influx_sink` (the service); this module
registers them and adds ``hub deadletter``.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.logger import Logger

from hub import hookimpl
from hub.contracts import SinkType
from plugins.sinks.deadletters import DeadLetters, deadletter_path
from plugins.sinks.influx_options import InfluxOptions, check_options
from plugins.sinks.influx_sink import InfluxSink
from plugins.sinks.influx_writer import InfluxWriter, WriteError

_log = Logger(namespace="hub.sinks.influxdb")

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
           "check_options", "deadletter_path"]
