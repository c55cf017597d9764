"""What a node's API reads about devices whose partition another node holds.

* **History and latest readings** — a request on ``<prefix>.read.<partition>``. Every core
  subscribes to ``<prefix>.read.*`` and the one owning the partition answers from that
  partition's journal (a read-only connection on a worker thread, as the API's own
  readers); the others stay silent. The API's journal reader on every node is wrapped in
  :class:`JournalView`, which sends ``latest`` and ``history`` there and leaves everything
  else (events, commands: the node's own journal) to the local reader.
* **Online state** — the JetStream KV bucket ``<prefix>_presence``: each core puts, once a
  second, what changed in the presence of its partitions' devices (online or offline, the
  offline event; the last-seen time when it moved by :data:`SEEN_STEP` seconds or more).
  Every node watches the bucket and answers ``hub.presence.is_online``, ``last_seen`` and
  ``offline`` from it (:class:`PresenceView`); the node's own presence sees no data in a
  cluster and would say nothing useful.

A partition between owners (a takeover under way) answers nothing for up to about a lease
TTL: the request fails after :data:`READ_TIMEOUT` and the API answers an error; presence
keeps its last state.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import orjson
from twisted.logger import Logger

from hub.cluster.remote import CommandLedger, ledger_bucket
from hub.cluster.wire import decode, device_token, encode_records, partition_of
from hub.model import Command, Event

if TYPE_CHECKING:
    from hub.cluster.core import Owner
    from hub.cluster.link import NatsLink
    from hub.core import Hub

_log = Logger(namespace="hub.cluster.reads")

READ_TIMEOUT = 5.0
PRESENCE_INTERVAL = 1.0
#: last_seen in the shared view moves in steps of this many seconds (a put per message of
#: every device would cost more than the data path)
SEEN_STEP = 300.0


def presence_bucket(link: NatsLink) -> str:
    return f"{link.settings.prefix}_presence"


def presence_key(device: str) -> str:
    """A KV key (``[-/_=.A-Za-z0-9]``) for ``device``: its subject token with ``~`` as ``=``."""
    return device_token(device).replace("~", "=")


# ------------------------------------------------------------------------- every node


class PresenceView:
    """The node hub's presence as the API sees it: the shared bucket's state; everything
    else (track, untrack, stop ...) goes to the node's own presence."""

    def __init__(self, local: Any) -> None:
        self._local = local
        self.state: dict[str, dict[str, Any]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._local, name)

    def is_online(self, device: str) -> bool | None:
        s = self.state.get(device)
        return None if s is None else s.get("on")

    def last_seen(self, device: str) -> float | None:
        s = self.state.get(device)
        return None if s is None else s.get("seen")

    def offline(self) -> list[Event]:
        return [Event.from_dict(s["ev"]) for s in list(self.state.values()) if s.get("ev")]

    def apply(self, value: bytes | None, key: str) -> None:
        if value is None:
            self.state = {d: s for d, s in self.state.items() if presence_key(d) != key}
            return
        s = orjson.loads(value)
        self.state[s["d"]] = s


class JournalView:
    """A worker thread's journal reader whose ``latest`` and ``history`` come from the core
    owning the device's partition."""

    def __init__(self, local: Any, link: NatsLink, loop: asyncio.AbstractEventLoop | None,
                 ledger: CommandLedger | None = None) -> None:
        self._local = local
        self._link = link
        self._loop = loop
        self._ledger = ledger

    def __getattr__(self, name: str) -> Any:
        return getattr(self._local, name)

    def latest(self, device: str, quantity: str | None = None) -> list[Any]:
        return self._ask({"op": "latest", "d": device, "q": quantity})

    def history(self, device: str, quantity: str | None = None, channel: str | None = None,
                since: float | None = None, until: float | None = None,
                limit: int | None = None) -> list[Any]:
        return self._ask({"op": "history", "d": device, "q": quantity, "c": channel,
                          "s": since, "u": until, "l": limit})

    def command_records(self, device: str, since: float, until: float) -> list[Any]:
        """This node's journal, and the ledger for commands another node accepted (or that
        one accepted before it died)."""
        mine = self._local.command_records(device, since, until)
        if self._ledger is None:
            return mine
        known = {r.id for _, r in mine if isinstance(r, Command)}
        theirs = [(seq, r) for seq, r in self._ledger.records(device, since, until)
                  if (r.id if isinstance(r, Command) else r.command_id) not in known]
        return mine + theirs

    def _ask(self, body: dict[str, Any]) -> list[Any]:
        """From a worker thread: the request runs on the loop, this thread waits for it."""
        if self._loop is None:
            raise ConnectionError("NATS link not up yet: the device's partition cannot be read")
        fut = asyncio.run_coroutine_threadsafe(ask(self._link, body), self._loop)
        return fut.result(READ_TIMEOUT + 1)


async def ask(link: NatsLink, body: dict[str, Any]) -> list[Any]:
    """The owner's answer to a read of ``body["d"]``: its readings."""
    s = link.settings
    token = device_token(body["d"])
    subject = f"{s.prefix}.read.{partition_of(token, s.partitions)}"
    if not link.connected.is_set():
        raise ConnectionError("NATS link down: the device's partition cannot be read")
    msg = await link.nc.request(subject, orjson.dumps(body), timeout=READ_TIMEOUT)
    answer = decode(msg.data)
    if "error" in answer:
        raise RuntimeError(f"partition owner: {answer['error']}")
    return answer["r"]


# ------------------------------------------------------------------------- cores


class ReadServer:
    """On a core: answers reads of the partitions it owns, and publishes their presence."""

    def __init__(self, owner: Owner, link: NatsLink, ledger: CommandLedger) -> None:
        self.owner = owner
        self.link = link
        self.ledger = ledger
        self._sub: Any = None
        self._pool = ThreadPoolExecutor(2, thread_name_prefix="cluster-reads")
        self._local = threading.local()
        self._published: dict[str, tuple[Any, float | None, bool]] = {}
        self._task: asyncio.Task | None = None

    async def ready(self) -> None:
        """After each (re)connection: subscribe once (nats-py carries subscriptions over
        reconnections) and keep the presence loop running."""
        if self._sub is None:
            self._sub = await self.link.nc.subscribe(
                f"{self.link.settings.prefix}.read.*", cb=self._on_read)
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._presence_loop())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _on_read(self, msg: Any) -> None:
        p = int(msg.subject.rsplit(".", 1)[1])
        worker = self.owner.workers.get(p)
        hub = getattr(worker, "hub", None)
        if hub is None:
            return  # not ours (or not started yet): the owner answers
        try:
            body = orjson.loads(msg.data)
            readings = await asyncio.get_running_loop().run_in_executor(
                self._pool, self._query, hub.config.journal.path, body)
            out = encode_records(body["d"], readings, 0.0)
        except Exception as e:  # noqa: BLE001 - the asker gets the reason, not a timeout
            _log.failure("read of partition {p} failed", p=p)
            out = orjson.dumps({"error": f"{type(e).__name__}: {e}"})
        await msg.respond(out)

    def _query(self, path: str, body: dict[str, Any]) -> list[Any]:
        journals = getattr(self._local, "journals", None)
        if journals is None:
            journals = self._local.journals = {}
        j = journals.get(path)
        if j is None:
            from twisted.internet.task import Clock

            from hub.journal import Journal

            j = Journal(path, clock=Clock(), readonly=True)
            j.open()
            journals[path] = j
        if body["op"] == "latest":
            return j.latest(body["d"], body.get("q"))
        return j.history(body["d"], body.get("q"), body.get("c"), body.get("s"),
                         body.get("u"), limit=body.get("l"))

    async def _presence_loop(self) -> None:
        kv = await self.link.js.key_value(presence_bucket(self.link))
        while True:
            try:
                await self.publish_presence(kv)
                ended = await self.ledger.sweep(self.link, self.owner.node.clock.seconds())
                if ended:
                    _log.info("{n} commands of nodes gone ended as timed out", n=ended)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - NATS away: the next round tries again
                _log.debug("presence not published: {error}", error=repr(e))
            await asyncio.sleep(PRESENCE_INTERVAL)

    async def publish_presence(self, kv: Any) -> None:
        for worker in list(self.owner.workers.values()):
            hub = worker.hub
            if hub is None:
                continue
            presence = hub.presence
            events = {e.device: e for e in presence.offline()}
            for device in list(hub.registry):
                d = device.id
                on, seen = presence.is_online(d), presence.last_seen(d)
                last = self._published.get(d)
                if last is not None and last[0] == on and last[2] == (d in events) and (
                        seen is None or (last[1] is not None and seen - last[1] < SEEN_STEP)):
                    continue
                ev = events.get(d)
                await kv.put(presence_key(d), orjson.dumps(
                    {"d": d, "on": on, "seen": seen,
                     "ev": ev.to_dict() if ev is not None else None}))
                self._published[d] = (on, seen, ev is not None)


# ------------------------------------------------------------------------- wiring


def attach(hub: Hub, link: NatsLink, owner: Owner | None) -> None:
    """Give ``hub`` (a node's own Hub) the cluster's view of devices: its presence answers
    from the shared bucket, its API's journal readers ask the partitions' owners; a core
    also serves its partitions."""
    loops: list[asyncio.AbstractEventLoop] = []  # the reactor's, once the link is ready
    view = PresenceView(hub.presence)
    ledger = CommandLedger()
    hub.presence = view
    hub.journal_view = lambda j: JournalView(j, link, loops[0] if loops else None, ledger)
    server = ReadServer(owner, link, ledger) if owner is not None else None
    watching: list[asyncio.Task] = []

    async def watch(bucket: str, apply: Any) -> None:
        kv = await link.js.key_value(bucket)
        watcher = await kv.watchall()
        async for entry in watcher:
            if entry is None:
                continue  # the end of the initial values
            deleted = entry.operation in ("DEL", "PURGE")
            apply(entry.key, None if deleted else entry.value, entry.revision)

    async def ready() -> None:
        loops[:] = [asyncio.get_running_loop()]
        # new watchers after each reconnection: the old ones' consumers may be gone
        for task in watching:
            task.cancel()
        watching[:] = [
            asyncio.ensure_future(watch(presence_bucket(link),
                                        lambda k, v, _: view.apply(v, k))),
            asyncio.ensure_future(watch(ledger_bucket(link.settings.prefix), ledger.apply))]
        if server is not None:
            await server.ready()

    link.on_ready(ready)
