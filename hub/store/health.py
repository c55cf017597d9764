"""The platform store's reachability as the hub reports it: a fault event and metrics.

:class:`PostgresStore` calls ``on_health(up, why)`` from whichever thread met the change
(an API worker, the reactor); this turns that into, in the reactor thread,

- a fault event, device ``hub``, code ``store_unavailable``, raised when the database went
  away and cleared when a call succeeded again (one stable id per outage);
- the gauge ``store.up`` (1 or 0) and the counter ``store.outages``, labelled by backend.

The SQLite store never calls it: a local file has no outage to report.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from hub.model import Event, EventKind, EventState, Level, event_id

_log = Logger(namespace="hub.store")

FAULT_CODE = "store_unavailable"


class StoreHealth:
    def __init__(self, hub: Any, backend: str = "postgresql") -> None:
        self.hub = hub
        self.backend = backend
        self._raised: Event | None = None
        hub.metrics.set("store.up", 1, backend=backend)

    def __call__(self, up: bool, why: str) -> None:
        """Thread-safe: the work happens in the reactor thread."""
        clock = self.hub.clock
        call = getattr(clock, "callFromThread", None)
        if call is None:  # a task.Clock in tests: already the one thread
            self.changed(up, why)
        else:
            call(self.changed, up, why)

    def changed(self, up: bool, why: str) -> None:
        metrics = self.hub.metrics
        metrics.set("store.up", 1 if up else 0, backend=self.backend)
        now = self.hub.clock.seconds()
        if not up and self._raised is None:
            metrics.inc("store.outages", backend=self.backend)
            _log.warn("platform store unavailable: {why}; retrying", why=why)
            self._raised = Event(
                "hub", EventKind.FAULT, FAULT_CODE, EventState.RAISED, now, Level.FAULT,
                id=event_id("hub", FAULT_CODE, "", Level.FAULT, now), source="hub",
                message=f"platform store unavailable: {why}")
            self._record(self._raised)
        elif up and self._raised is not None:
            raised, self._raised = self._raised, None
            _log.info("platform store reachable again")
            self._record(Event(
                "hub", EventKind.FAULT, FAULT_CODE, EventState.CLEARED, now, Level.FAULT,
                id=raised.id, raised_ts=raised.ts, source="hub",
                message="platform store reachable again"))

    def _record(self, event: Event) -> None:
        try:
            d = self.hub.record_events([event])
        except Exception:  # noqa: BLE001 - a fault we cannot record must not break the store
            _log.failure("could not record the store's fault event")
            return
        if hasattr(d, "addErrback"):
            d.addErrback(lambda f: None)  # the hub retries events it could not journal
