"""The node's NATS connection: connect with backoff, a fault event and a metric while it is
down, the JetStream stream and the lease bucket created if missing.

nats-py runs on the asyncio loop that Twisted's asyncio reactor drives (``hub run``
installs it first), so coroutines here and Deferreds elsewhere meet through
``Deferred.fromFuture``. While the link is down nats-py buffers nothing we rely on: an edge's
publish fails (its device is not acknowledged and sends again), a core's fetch fails and
its loop backs off; both carry on when the server is back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from hub.cluster.settings import ClusterSettings
from hub.model import Event, EventKind, EventState, Level, event_id

if TYPE_CHECKING:
    from hub.core import Hub

_log = Logger(namespace="hub.cluster")

FAULT_CODE = "nats_link"


def backoff(attempt: int, first: float = 0.1, cap: float = 5.0) -> float:
    """Seconds to wait before try ``attempt`` (0-based): doubling from ``first`` to ``cap``."""
    return min(cap, first * (2 ** min(attempt, 30)))


class NatsLink:
    """One connection per node. ``hub`` is the node's own Hub: the fault event goes to its
    journal (the link it is about may be the one that is down) and the metrics
    ``cluster.nats_connected`` / ``cluster.nats_disconnects`` to its metrics."""

    def __init__(self, settings: ClusterSettings, hub: Hub) -> None:
        self.settings = settings
        self.hub = hub
        self.nc: Any = None
        self.js: Any = None
        self.kv: Any = None
        self.ledger: Any = None  # the command ledger (remote.py)
        self.connected = asyncio.Event()
        self._fault: Event | None = None
        self._on_ready: list[Callable[[], Awaitable[None]]] = []
        self._closing = False

    def on_ready(self, fn: Callable[[], Awaitable[None]]) -> None:
        """``fn`` runs after every (re)connection, once stream and bucket exist."""
        self._on_ready.append(fn)

    async def connect(self) -> None:
        """Connect, retrying with backoff until it works (a node may start before NATS)."""
        import nats

        attempt = 0
        while not self._closing:
            try:
                self.nc = await nats.connect(
                    servers=list(self.settings.nats), name=self.settings.node,
                    max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                    allow_reconnect=True, connect_timeout=2,
                    disconnected_cb=self._disconnected, reconnected_cb=self._reconnected,
                    error_cb=self._error, pending_size=64 * 1024 * 1024)
                break
            except Exception as e:  # noqa: BLE001 - any failure to connect is retried
                self._down(f"cannot connect: {e!r}")
                await asyncio.sleep(backoff(attempt))
                attempt += 1
        if self._closing:
            return
        self.js = self.nc.jetstream(timeout=self.settings.publish_timeout)
        await self._ensure()
        self._up()

    async def _ensure(self) -> None:
        """The stream and the lease bucket; whoever comes first creates them (the others
        find them). Retried with backoff: JetStream may still be recovering its store."""
        from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

        s = self.settings
        attempt = 0
        while not self._closing:
            try:
                try:
                    await self.js.stream_info(s.stream)
                except Exception:  # noqa: BLE001 - not found: create it
                    await self.js.add_stream(StreamConfig(
                        name=s.stream, subjects=[f"{s.prefix}.in.*.*"],
                        retention=RetentionPolicy.LIMITS, storage=StorageType.FILE,
                        max_bytes=s.max_bytes, max_age=s.max_age, num_replicas=s.replicas,
                        # a full stream refuses new appends (the devices are not
                        # acknowledged and send again) instead of dropping old ones
                        # that a core may not have consumed yet
                        discard=DiscardPolicy.NEW))
                self.kv = await self.js.create_key_value(
                    bucket=s.lease_bucket, ttl=s.lease_ttl, history=1)
                # the devices' online state as their partitions' owners see it (reads.py)
                await self.js.create_key_value(bucket=f"{s.prefix}_presence", history=1)
                self.ledger = await self.js.create_key_value(
                    bucket=f"{s.prefix}_commands", history=1, ttl=86400.0)
                return
            except Exception as e:  # noqa: BLE001
                _log.warn("JetStream not ready ({error}); trying again",
                          error=getattr(e, "description", None) or repr(e))
                await asyncio.sleep(backoff(attempt))
                attempt += 1

    async def close(self) -> None:
        self._closing = True
        if self.nc is not None and not self.nc.is_closed:
            try:
                await self.nc.drain()
            except Exception:  # noqa: BLE001 - closing anyway
                await self.nc.close()

    # -- callbacks (on the loop) ------------------------------------------------------

    async def _disconnected(self) -> None:
        if not self._closing:
            self._down("disconnected")

    async def _reconnected(self) -> None:
        try:
            await self._ensure()
        finally:
            self._up()

    async def _error(self, e: Exception) -> None:
        _log.debug("nats: {error}", error=repr(e))

    def _down(self, reason: str) -> None:
        m = self.hub.metrics
        if self.connected.is_set() or self._fault is None:
            m.inc("cluster.nats_disconnects")
        self.connected.clear()
        m.set("cluster.nats_connected", 0)
        if self._fault is not None:
            return
        now = self.hub.clock.seconds()
        self._fault = Event("hub", EventKind.FAULT, FAULT_CODE, EventState.RAISED, now,
                            Level.FAULT, id=event_id("hub", FAULT_CODE, "", Level.FAULT, now),
                            source="hub", message=f"NATS link down ({reason})")
        _log.warn("NATS link down ({reason}); retrying", reason=reason)
        self.hub.record_events([self._fault])

    def _up(self) -> None:
        self.connected.set()
        self.hub.metrics.set("cluster.nats_connected", 1)
        if self._fault is not None:
            raised, self._fault = self._fault, None
            now = self.hub.clock.seconds()
            self.hub.record_events([Event(
                "hub", EventKind.FAULT, FAULT_CODE, EventState.CLEARED, now, Level.FAULT,
                id=raised.id, raised_ts=raised.ts, source="hub",
                message="NATS link restored")])
            _log.info("NATS link restored")
        else:
            _log.info("NATS connected to {servers} as {node}",
                      servers=",".join(self.settings.nats), node=self.settings.node)
        for fn in self._on_ready:
            asyncio.ensure_future(fn())
