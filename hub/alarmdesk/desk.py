"""The alarm desk: keeps the platform store's alarm records in step with the journal.

A :class:`hub.sinks.CursorSink` on cursor ``alarmdesk`` reading events and
acknowledgements: each batch goes into the store in one transaction (which ignores replays,
see :meth:`hub.store.alarms.AlarmTables.ingest`), then the cursor moves. A hub killed
between the two applies the batch again, to no effect. Every change goes to the signed
audit log (actor ``hub`` for edges) and wakes the live stream of alarm changes.

The store's SQLite calls run on the reactor here: short single transactions per batch of
at most ``BATCH`` records (the API's own calls go to its worker threads).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

from hub.alarmdesk.lifecycle import AlarmRecord, Change
from hub.sinks import CursorSink

_log = Logger(namespace="hub.alarmdesk")

CURSOR = "alarmdesk"
BATCH = 1000

Listener = Callable[[AlarmRecord, Change], None]


class AlarmDesk(CursorSink):
    def __init__(self, hub: Any, store: Any, options: Any = None) -> None:
        super().__init__(hub, CURSOR, options)
        self.hub = hub
        self.store = store
        self.tail = self.add_tail(CURSOR, {"event", "acknowledgement"})
        self.listeners: list[Listener] = []

    def project_of(self, device: str) -> str:
        info = self.port.device(device)
        return info.project if info is not None and info.project else ""

    def pump(self) -> None:
        while True:
            items, end, full = self.tail.read(BATCH)
            changes = self.store.ingest(items, self.project_of) if items else []
            self.tail.commit(end)
            if items:
                self.delivered(len(items))
            for record, change in changes:
                self.changed(record, change)
            if not full:
                return

    def changed(self, record: AlarmRecord, change: Change, via: str = "") -> None:
        """Tell the audit log and the listeners about a change (the API calls this for
        the acts it wrote itself, after auditing them: ``via`` then says so)."""
        if not via:
            self.hub.audit.record(change.by, f"alarm.{change.action}", str(record.id), {
                "device": record.device, "project": record.project, "code": record.code,
                "channel": record.channel, "state": record.state, "note": change.note,
                **change.details}).addErrback(
                lambda f: _log.failure("alarm change not audited", f))
        for listener in list(self.listeners):
            try:
                listener(record, change)
            except Exception:
                _log.failure("alarm change listener failed")
