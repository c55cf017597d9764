"""The sink framework: how a sink reads the journal and delivers it without losing a record.

* :class:`SinkPort` (:mod:`.port`): what a sink may use of the hub (clock, metrics, the
  journal, its own fault events, device information, its state directory);
* :class:`JournalTail` (:mod:`.tail`): one durable cursor, a read position ahead of it, and
  a wait on the journal's commit notification;
* :class:`CursorSink` (:mod:`.base`): the service owning cursors, wake-ups, backoff with
  jitter, lag metrics, ``sink_lagging`` and the supervisor of unexpected failures;
* :class:`BatchSink` (:mod:`.batch`): the delivery loop for sinks that send batches; a sink
  implements ``prepare`` and ``deliver`` and nothing else.

The README's "Writing a sink" walks through a complete one; :mod:`hub.testing` has the
harness to test it (feed records, fail the far side, check redelivery).
"""

from hub.contracts.sink import DeviceInfo, SinkJournal, SinkPort, as_port
from hub.sinks.base import (
    FAILED_CODE,
    FAULT_AFTER,
    LAG_CHECK_INTERVAL,
    LAG_CODE,
    Backoff,
    CursorSink,
)
from hub.sinks.batch import BatchSink, Prepared, Retry
from hub.sinks.tail import JournalTail

__all__ = [
    "FAILED_CODE",
    "FAULT_AFTER",
    "LAG_CHECK_INTERVAL",
    "LAG_CODE",
    "Backoff",
    "BatchSink",
    "CursorSink",
    "DeviceInfo",
    "JournalTail",
    "Prepared",
    "Retry",
    "SinkJournal",
    "SinkPort",
    "as_port",
]
