"""The core role: partitions owned through leases, one worker per owned partition.

*Ownership* — a JetStream KV bucket whose entries live ``lease_ttl`` seconds (the bucket's
max age). A core holds partition ``p`` while it keeps updating ``p.<p>`` with the revision
it last wrote (an optimistic compare-and-set: two cores can never both hold it). Cores
announce themselves in ``node.<name>`` (same TTL); each aims at ``ceil(partitions /
cores)`` partitions, takes free ones when it has fewer and releases its highest when it has
more, so a core that joins, leaves or dies has its share moved within about one TTL. A core
that cannot renew (NATS unreachable) stops its workers at once: the lease may be someone
else's by the time it could renew.

*A partition* — a :class:`hub.core.Hub` of its own (presence, alarm engine, journal,
sinks) over the devices that hash to it, with its state directory under
``cluster.partition_dir`` so that it moves with the lease. The stream sequence of the last
applied message is written with each commit (a journal touch of the pseudo-device
:data:`MARKER`), and that position, not the consumer's acknowledgements, is the cursor:
the owner (re)creates the durable pull consumer ``p<p>`` to start right after it — when it
takes the partition, and whenever a delivery is missing or repeated, a fetch failed or a
commit failed — so messages are applied once and in stream order, whatever a dead owner
left unacknowledged. A fetched batch is ingested, committed, and only then is its last
message acknowledged (ack policy "all"). The alarm engine and presence of the new owner are
restored from the same journal: no alarm is raised twice and no clear is lost.

*Alarm records* — each partition's Hub runs a :class:`hub.cluster.desk.ClusterDesk` on
its journal, writing to the platform store the core shares between its partitions
(:meth:`Owner.platform_store`). *The directory* — checked when the core starts, agreed on
with the other cores through the bucket, and each partition's journal fenced to one
process by a lock (:mod:`hub.cluster.shared`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from hub.cluster.link import backoff
from hub.cluster.shared import PartitionLock, check_partition_dir
from hub.cluster.wire import decode, device_token, partition_of
from hub.config import AuditSettings, HubConfig
from hub.journal.recent import RECENT_ROWS, RECENT_ROWS_HELD

if TYPE_CHECKING:
    from hub.cluster.link import NatsLink
    from hub.cluster.settings import ClusterSettings
    from hub.core import Hub

_log = Logger(namespace="hub.cluster.core")

#: the journal's pseudo-device whose last_seen is the last applied stream sequence
MARKER = "~stream"


def partition_config(config: HubConfig, settings: ClusterSettings, p: int) -> HubConfig:
    """The configuration of partition ``p``'s Hub: the node's, with the partition's
    devices, its own state directory (journal, audit log and key move with the lease), no
    transports and no API."""
    pdir = os.path.join(settings.partition_dir, f"p{p}")
    devices = [d for d in config.devices
               if partition_of(device_token(d.id), settings.partitions) == p]
    # each partition takes 1/partitions of the data: that share of the rows kept in memory
    # for the sinks covers the same time, and a core owning them all holds one hub's worth
    n = max(1, settings.partitions)
    return dataclasses.replace(
        config, name=f"p{p}", state_dir=pdir, devices=devices, transports={}, api=None,
        journal=dataclasses.replace(config.journal, path=os.path.join(pdir, "journal.sqlite"),
                                    recent_rows=max(4096, RECENT_ROWS // n),
                                    recent_rows_held=max(4096, RECENT_ROWS_HELD // n)),
        audit=AuditSettings(os.path.join(pdir, "audit.sqlite"),
                            os.path.join(pdir, "audit_key.pem")))


class PartitionWorker:
    def __init__(self, node: Hub, link: NatsLink, p: int,
                 valid: Callable[[], bool] = lambda: True,
                 store: Callable[[], Any] | None = None) -> None:
        self.node = node
        self.store = store  # the core's platform store, opened on first use (or None)
        self.lock: PartitionLock | None = None
        self.valid = valid  # whether the lease is surely still ours
        self.link = link
        self.settings = link.settings
        self.p = p
        self.hub: Hub | None = None
        self.service: Any = None
        self.committed = 0
        self.sub: Any = None
        self.delivered = 0
        self._task: asyncio.Task | None = None
        self._running = False

    def _loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    async def start(self) -> None:
        from hub.api.live import load_stored
        from hub.core import Hub
        from hub.service import HubService

        s = self.settings
        config = partition_config(self.node.config, s, self.p)
        os.makedirs(config.state_dir, exist_ok=True)
        store = self.store() if self.store is not None else None
        # devices created through the API, those of this partition (read before anything
        # is opened: the store may be away, and then the partition waits for it)
        stored = [d for d in store.devices() if self.holds(d.id)] if store is not None else []
        # one process at a time has the journal open, whatever the leases say
        self.lock = PartitionLock(config.state_dir, s.node)
        self.lock.acquire()
        hub = Hub(config, self.node.plugins, self.node.clock, self.node.metrics)
        self.service = HubService(hub, admin=False)
        if store is not None:
            load_stored(hub, stored)
            self.desk(hub, store).setServiceParent(self.service)
        await self.service.startService().asFuture(self._loop())
        self.attach(hub)
        await self.consume_from_journal()
        self._running = True
        self._task = asyncio.ensure_future(self._run())
        _log.info("partition {p} owned by {node} (journal {path}, applied up to stream seq "
                  "{seq})", p=self.p, node=s.node, path=config.journal.path, seq=self.committed)

    def holds(self, device: str) -> bool:
        """Whether ``device`` belongs to this partition."""
        return partition_of(device_token(device), self.settings.partitions) == self.p

    def desk(self, hub: Hub, store: Any) -> Any:
        """The partition's alarm desk (:mod:`hub.cluster.desk`): the partition journal's
        alarms to the shared store; it escalates the alarms of the partition's devices, and
        partition 0's runs the inspection schedule and hazard reminders."""
        from hub.cluster.desk import ClusterDesk

        node_desk = getattr(self.node, "alarm_desk", None)
        desk = ClusterDesk(hub, store, self.node.config.api.notify, escalates=self.holds,
                           schedule=self.p == 0,
                           listeners=node_desk.listeners if node_desk is not None else None)
        desk.setName("alarmdesk")
        return desk

    async def consume_from_journal(self) -> None:
        """(Re)create the partition's consumer at the first message the journal has not
        applied. The journal's marker, not the consumer's acknowledgements, is the cursor:
        a dead owner's unacknowledged deliveries would otherwise come back after newer
        messages (out of order, past the marker) or be swept up by a later "ack all". Acks
        only keep the consumer's lag visible."""
        import nats.js.errors
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        s = self.settings
        js = self.link.js
        if self.sub is not None:
            try:
                await self.sub.unsubscribe()
            except Exception:  # noqa: BLE001 - gone with the connection
                pass
            self.sub = None
        try:
            await js.delete_consumer(s.stream, f"p{self.p}")
        except nats.js.errors.NotFoundError:
            pass
        self.sub = await js.pull_subscribe(
            f"{s.prefix}.in.{self.p}.*", durable=f"p{self.p}", stream=s.stream,
            config=ConsumerConfig(ack_policy=AckPolicy.ALL,
                                  deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                  opt_start_seq=self.committed + 1, ack_wait=30.0,
                                  max_ack_pending=-1, max_waiting=16))
        self.delivered = 0  # the consumer sequence of the last delivery taken

    def attach(self, hub: Hub) -> None:
        """Work on ``hub`` (opened), from the stream position its journal has applied."""
        self.hub = hub
        self.committed = int(hub.journal.device_states().get(MARKER, 0))

    async def stop(self) -> None:
        self._running = False
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 10)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
        try:
            await self.sub.unsubscribe()
        except Exception:  # noqa: BLE001 - the link may be down; the lease says who owns it
            pass
        try:
            if self.service is not None:
                await self.service.stopService().asFuture(self._loop())
        finally:
            if self.lock is not None:
                self.lock.release()
        _log.info("partition {p} released by {node}", p=self.p, node=self.settings.node)

    async def _run(self) -> None:
        import nats.errors

        attempt = 0
        rewind = False
        while self._running:
            if not self.valid():  # not renewed for most of a TTL: maybe someone else's now
                await asyncio.sleep(0.05)
                continue
            try:
                if rewind:
                    await self.consume_from_journal()
                    rewind = False
                msgs = await self.sub.fetch(self.settings.fetch_batch, timeout=0.5)
            except nats.errors.TimeoutError:
                attempt = 0
                continue
            except Exception as e:  # noqa: BLE001 - the link is down or JetStream restarts
                self.node.metrics.inc("cluster.fetch_errors")
                _log.debug("partition {p}: fetch failed ({error})", p=self.p, error=repr(e))
                rewind = True  # deliveries may have been lost with the connection
                await asyncio.sleep(backoff(attempt))
                attempt += 1
                continue
            attempt = 0
            if not msgs:
                continue
            if not self.in_order(msgs):
                # a delivery went missing (a fetch that timed out as it arrived) or came
                # again: start over from the journal's position, in order
                self.node.metrics.inc("cluster.rewinds")
                rewind = True
                continue
            try:
                await self.apply(msgs)
            except Exception as e:  # noqa: BLE001 - not committed, not acked
                self.node.metrics.inc("cluster.apply_errors")
                _log.warn("partition {p}: {n} messages not committed ({error}); again from "
                          "stream seq {seq}", p=self.p, n=len(msgs), error=repr(e),
                          seq=self.committed + 1)
                rewind = True
                await asyncio.sleep(backoff(attempt))
                attempt += 1

    def in_order(self, msgs: list[Any]) -> bool:
        """Whether ``msgs`` are the consumer's next deliveries, each for the first time."""
        for i, m in enumerate(msgs):
            md = m.metadata
            if md.sequence.consumer != self.delivered + 1 + i or md.num_delivered != 1:
                return False
        self.delivered += len(msgs)
        return True

    async def apply(self, msgs: list[Any]) -> None:
        """Ingest ``msgs`` (in stream order), wait for the journal commit, then ack the
        last (ack policy "all" acknowledges everything before it)."""
        hub = self.hub
        assert hub is not None
        if not msgs:
            return
        batch = []
        received = 0.0
        last = self.committed
        skipped = 0
        for m in msgs:
            seq = m.metadata.sequence.stream
            if seq <= self.committed:
                skipped += 1  # journaled already (a batch committed, then not acked)
                continue
            body = decode(m.data)
            records = body.get("r")
            if records is not None:
                batch.append((body["d"], records))
                received = max(received, body["t"])
            elif "h" in body:
                hub.heartbeat(body["d"], body["h"])
            elif "x" in body:
                hub.set_offline_after(body["d"], body.get("o"))
            last = max(last, seq)
        if skipped:
            self.node.metrics.inc("cluster.redelivered_skipped", skipped)
        if batch:
            # One ingest for the whole fetch, as a transport does for a drained socket
            # buffer: its received time is the latest message's (presence needs no finer).
            # The marker rides on the same commit as the records. (A fetch of heartbeats
            # only is acknowledged without one: applying a heartbeat twice changes nothing.)
            d = hub.ingest_many(batch, received)
            hub.journal.touch(MARKER, float(last))
            await d.asFuture(self._loop())
            self.committed = last
        await msgs[-1].ack()
        self.node.metrics.inc("cluster.consumed", len(msgs))


class Owner:
    """Keeps this core's fair share of the partitions (see the module's docstring)."""

    def __init__(self, node: Hub, link: NatsLink) -> None:
        self.node = node
        self.link = link
        self.settings = link.settings
        self.workers: dict[int, PartitionWorker] = {}
        self.revisions: dict[int, int] = {}
        self.renewed: dict[int, float] = {}  # partition -> loop time of its last renewal
        self._task: asyncio.Task | None = None
        self._running = False
        self._store: Any = None
        self._health: Any = None
        self.dir_id = ""  # the partition directory's id (hub.cluster.shared.cluster_id)
        self._strangers: set[str] = set()  # cores seen with another partition directory
        api = node.config.api
        if api is not None and api.store.backend != "sqlite":
            from hub.store.health import StoreHealth

            self._health = StoreHealth(node)  # store_unavailable fault event, store.up

    def platform_store(self) -> Any:
        """The store the partitions' desks share, opened at the first use. PostgreSQL calls
        from it try once (they run on the reactor, which must keep renewing the leases); a
        desk retries a failed batch after its backoff, and a partition that cannot read its
        devices is not taken until the store answers."""
        if self._store is None:
            from hub.cluster.store import open_platform_store

            self._store = open_platform_store(self.node.config, quick=True,
                                              on_health=self._health)
        return self._store

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Called before the reactor runs its loop: the task goes on the reactor's own.
        Checks the partition directory first (:func:`hub.cluster.shared.check_partition_dir`
        raises what it lacks: the core does not start)."""
        self.dir_id = check_partition_dir(self.settings.partition_dir)
        self._running = True
        self._task = loop.create_task(self._run())

    async def stop(self) -> None:
        self._running = False
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        for p in sorted(self.revisions):
            await self._drop(p, release=True)
        if self._store is not None:
            self._store.close()
            self._store = None

    async def _run(self) -> None:
        period = self.settings.lease_ttl / 3
        attempt = 0
        while self._running:
            await self.link.connected.wait()
            try:
                await self.tick()
                attempt = 0
                await asyncio.sleep(period)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - NATS went away mid-tick
                _log.warn("partition leases: {error}; retrying", error=repr(e))
                # Cannot prove ownership: stop the workers at once, but remember the leases'
                # revisions: if nobody took one meanwhile, the next renewal proves it is
                # still ours and its worker starts again without waiting for the TTL.
                for p in sorted(self.workers):
                    await self._stop_worker(p)
                await asyncio.sleep(backoff(attempt, first=period / 4))
                attempt += 1

    async def tick(self) -> None:
        import nats.js.errors

        kv = self.link.kv
        me = self.settings.node
        n = self.settings.partitions
        await kv.put(f"node.{me}", self.dir_id.encode())
        try:
            keys = set(await kv.keys())
        except nats.js.errors.NoKeysError:
            keys = set()
        nodes = sorted(k[5:] for k in keys if k.startswith("node."))
        if not await self.same_directory(nodes):
            for p in sorted(self.revisions):
                await self._drop(p, release=True)
            self.node.metrics.set("cluster.partitions_owned", 0)
            return
        share = math.ceil(n / max(1, len(nodes)))
        for p, rev in sorted(self.revisions.items()):
            try:
                self.revisions[p] = await kv.update(f"p.{p}", me.encode(), last=rev)
                self.renewed[p] = asyncio.get_running_loop().time()
            except nats.js.errors.KeyWrongLastSequenceError:
                _log.warn("partition {p}: lease lost", p=p)
                await self._drop(p, release=False)
                continue
            if p not in self.workers:
                await self._start_worker(p)
        while len(self.revisions) > share:
            await self._drop(max(self.revisions), release=True)
        if len(self.revisions) < share:
            start = nodes.index(me) * share if me in nodes else 0
            for i in range(n):
                p = (start + i) % n
                if len(self.revisions) >= share:
                    break
                if f"p.{p}" in keys or p in self.revisions:
                    continue
                try:
                    rev = await kv.create(f"p.{p}", me.encode())
                except nats.js.errors.KeyWrongLastSequenceError:
                    continue  # another core was quicker
                self.revisions[p] = rev
                self.renewed[p] = asyncio.get_running_loop().time()
                await self._start_worker(p)
        self.node.metrics.set("cluster.partitions_owned", len(self.workers))
        self.node.metrics.set("cluster.cores", len(nodes))

    async def same_directory(self, nodes: list[str]) -> bool:
        """Whether every core announces this core's partition directory id. A core on
        another directory would open other journals for the same partitions: applied
        stream positions, alarm states and sink cursors would not move with the leases.
        Such a core owns nothing until the directories agree (logged once per core)."""
        import nats.js.errors

        strangers = set()
        for other in nodes:
            if other == self.settings.node:
                continue
            try:
                entry = await self.link.kv.get(f"node.{other}")
            except nats.js.errors.KeyNotFoundError:
                continue  # gone meanwhile
            theirs = (entry.value or b"").decode(errors="replace")
            if theirs not in ("", "1", self.dir_id):  # "1": a core from before the check
                strangers.add(other)
                if other not in self._strangers:
                    _log.error(
                        "core {other} uses another partition directory (id {theirs}; this "
                        "core's {path} has {mine}): every core must see the same directory "
                        "(docs/scaling.md, \"The shared partition directory\"); this core "
                        "owns no partition until they agree", other=other, theirs=theirs,
                        path=self.settings.partition_dir, mine=self.dir_id)
        self._strangers = strangers
        self.node.metrics.set("cluster.partition_dir_conflicts", len(strangers))
        return not strangers

    def _valid(self, p: int) -> bool:
        renewed = self.renewed.get(p)
        return renewed is not None and (asyncio.get_running_loop().time() - renewed
                                        < 0.8 * self.settings.lease_ttl)

    async def _start_worker(self, p: int) -> None:
        worker = PartitionWorker(self.node, self.link, p, lambda: self._valid(p),
                                 self.platform_store if self.node.config.api else None)
        self.workers[p] = worker
        try:
            await worker.start()
        except Exception:
            _log.failure("partition {p} could not start", p=p)
            await self._drop(p, release=True)

    async def _stop_worker(self, p: int) -> None:
        worker = self.workers.pop(p, None)
        if worker is not None:
            try:
                await worker.stop()
            except Exception:  # noqa: BLE001
                _log.failure("partition {p} did not stop cleanly", p=p)

    async def _drop(self, p: int, release: bool) -> None:
        await self._stop_worker(p)
        rev = self.revisions.pop(p, None)
        self.renewed.pop(p, None)
        if release and rev is not None:
            try:
                await self.link.kv.delete(f"p.{p}", last=rev)
            except Exception:  # noqa: BLE001 - it expires by itself
                pass
