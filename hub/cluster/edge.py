"""The edge role: transports run unchanged behind :class:`EdgePort`, a
:class:`hub.contracts.TransportPort` whose data path ends in JetStream instead of the
journal.

The transports' promise stays the same: the Deferred of ``ingest``/``ingest_many`` fires
only when the records are safe, so a DTU's poll, an MQTT PUBACK or a CoAP response waits
for it. Here "safe" is JetStream's publish acknowledgement (the stream stored the message),
not a local commit. A failed or timed-out publish fails the Deferred: the device is not
acknowledged and sends again.

Commands: while a device's session is held here (data or a heartbeat came through this
edge), the edge subscribes to ``<prefix>.cmd.<device>``. A command arrives as a request
whose reply subject is the requesting node's inbox; the edge answers ``sent``/``queued``
steps and the final result there (:mod:`hub.cluster.remote` is the other side). An edge
that no longer holds the device's session stays silent, so a command is carried by one
socket or ends timed out: never sent twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import orjson
from twisted.internet import defer
from twisted.logger import Logger

from hub.cluster.remote import ledger_put
from hub.cluster.wire import (
    device_token,
    encode_heartbeat,
    encode_offline_after,
    encode_records,
)
from hub.contracts import CommandTarget, DeviceChange, GatewaySource
from hub.journal import command_from_dict, result_to_dict
from hub.model import Command, CommandResult, CommandStatus, Event, Record

if TYPE_CHECKING:
    from hub.cluster.link import NatsLink
    from hub.core import Hub

_log = Logger(namespace="hub.cluster.edge")

#: how often subscriptions of devices whose session went elsewhere are dropped
SWEEP_INTERVAL = 5.0


class EdgePort:
    """What the transports of an edge node see as the hub. Devices, identity and the
    registry are the node Hub's (the shared configuration and platform store); data goes
    to JetStream; presence and alarms are the cores'."""

    def __init__(self, hub: Hub, link: NatsLink) -> None:
        self.hub = hub
        self.link = link
        self.settings = link.settings
        self.clock = hub.clock
        self.metrics = hub.metrics
        self.targets: dict[str, CommandTarget] = {}
        self._subs: dict[str, Any] = {}  # device -> its command subscription
        self._subscribing: set[str] = set()
        self._waiting: set[str] = set()  # commands received, not on the wire yet
        self._inboxes: dict[str, str] = {}  # command id -> the requester's inbox (its steps)
        self._sweeper: Any = None

    def _loop(self) -> asyncio.AbstractEventLoop:
        return getattr(self.clock, "_asyncioEventloop", None) or asyncio.get_event_loop()

    def _run(self, coro: Any) -> defer.Deferred:
        return defer.Deferred.fromFuture(asyncio.ensure_future(coro, loop=self._loop()))

    # -- devices: the node hub's
    def devices(self, transport: str) -> Sequence[Any]:
        return self.hub.devices(transport)

    def device(self, device_id: str) -> Any:
        return self.hub.device(device_id)

    def resolve(self, transport: str, address_key: Any, identity: str | None = None) -> Any:
        return self.hub.registry.resolve(transport, address_key, identity)

    def watch_devices(self, transport: str,
                      listener: Callable[[DeviceChange], None]) -> Callable[[], None]:
        return self.hub.watch_devices(transport, listener)

    # -- data: to JetStream
    def ingest(self, device: str, records: Sequence[Record],
               received_at: float | None = None) -> defer.Deferred:
        return self.ingest_many(((device, records),), received_at)

    def ingest_many(self, batch: Sequence[tuple[str, Sequence[Record]]],
                    received_at: float | None = None) -> defer.Deferred:
        now = self.clock.seconds() if received_at is None else received_at
        messages = []
        for device, records in batch:
            self._holding(device)
            messages.append((self.settings.subject_in(device_token(device)),
                             encode_records(device, records, now)))
        self.metrics.inc("cluster.published", len(messages))
        return self._run(self._publish(messages))

    async def _publish(self, messages: list[tuple[str, bytes]]) -> int:
        if not self.link.connected.is_set():
            self.metrics.inc("cluster.publish_refused", len(messages))
            raise ConnectionError("NATS link down: not acknowledged")
        js = self.link.js
        futures = [await js.publish_async(subject, data, stream=self.settings.stream)
                   for subject, data in messages]
        try:
            acks = await asyncio.wait_for(asyncio.gather(*futures),
                                          self.settings.publish_timeout)
        except BaseException:
            self.metrics.inc("cluster.publish_failed", len(messages))
            for f in futures:
                f.cancel()
            raise
        return acks[-1].seq if acks else 0

    def record_events(self, events: Iterable[Event]) -> defer.Deferred:
        """Events a transport decides itself (a broker link lost) are the edge's own:
        its node journal keeps them."""
        return self.hub.record_events(events)

    def heartbeat(self, device: str, ts: float | None = None) -> None:
        """A sign of life for the device's core; fire and forget (a lost heartbeat is the
        next one's to make up, as on a wire)."""
        self._holding(device)
        now = self.clock.seconds() if ts is None else ts
        self._fire(self.settings.subject_in(device_token(device)), encode_heartbeat(device, now))

    def set_offline_after(self, device: str, seconds: float | None) -> None:
        self._fire(self.settings.subject_in(device_token(device)),
                   encode_offline_after(device, seconds))

    def _fire(self, subject: str, data: bytes) -> None:
        nc = self.link.nc
        if nc is None or not self.link.connected.is_set():
            return
        asyncio.ensure_future(nc.publish(subject, data), loop=self._loop())

    # -- commands
    def register_command_target(self, transport: str, target: CommandTarget) -> None:
        self.targets[transport] = target

    def unregister_command_target(self, transport: str) -> None:
        self.targets.pop(transport, None)

    def command_sent(self, command: Command) -> None:
        self._waiting.discard(command.id)
        self._step(command, {"step": "sent"})

    def command_queued(self, command: Command, detail: str, again: bool = False) -> None:
        self._step(command, {"step": "queued", "detail": detail, "again": again})

    def command_waiting(self, command_id: str) -> bool:
        return command_id in self._waiting

    def resume_commands(self, devices: Sequence[str], since: float) -> int:
        """Commands outlive no edge: the node that accepted one ends it (timed out) if its
        edge goes away, so there is nothing to resume here."""
        return 0

    def _step(self, command: Command, body: dict[str, Any]) -> None:
        inbox = self._inboxes.get(command.id)
        if inbox is not None:
            self._fire(inbox, orjson.dumps(body))

    def holds(self, device_id: str) -> bool:
        """Whether this edge can carry a command to the device now: it has the device's
        session, or (a broker shared between edges) it is connected to the broker."""
        device = self.hub.device(device_id)
        if device is None:
            return False
        target = self.targets.get(device.transport or "")
        if target is None:
            return False
        if _shared(target):
            return bool(target.broker_connected())
        if not isinstance(target, GatewaySource):
            return True
        return any(g.connected and device_id in g.devices for g in target.gateways())

    def _holding(self, device: str) -> None:
        if device in self._subs or device in self._subscribing or self.link.nc is None:
            return
        self._subscribing.add(device)
        self._run(self._subscribe(device)).addErrback(
            lambda f: _log.failure("cannot subscribe to commands of {device}", f,
                                   device=device))

    async def _subscribe(self, device: str) -> None:
        try:
            subject = self.settings.subject_cmd(device_token(device))

            async def on_command(msg: Any) -> None:
                await self._on_command(device, msg)

            # A device behind a shared broker subscription is no edge's alone: every edge
            # that saw it subscribes in one queue group, so NATS hands each command to
            # one of them (a device with a session of its own has one subscriber that
            # answers, and a stale one that stays silent).
            known = self.hub.device(device)
            target = self.targets.get(known.transport or "") if known is not None else None
            queue = f"{self.settings.prefix}_edges" if _shared(target) else ""
            self._subs[device] = await self.link.nc.subscribe(subject, queue=queue,
                                                              cb=on_command)
        finally:
            self._subscribing.discard(device)

    async def _on_command(self, device_id: str, msg: Any) -> None:
        if not self.holds(device_id):
            self.metrics.inc("cluster.commands_not_held")
            return
        command = command_from_dict(orjson.loads(msg.data))
        device = self.hub.device(device_id)
        target = self.targets[device.transport or ""]
        self._inboxes[command.id] = msg.reply
        self._waiting.add(command.id)
        self.metrics.inc("cluster.commands_carried")
        _log.info("command {id} ({action}) for {device} carried by {node}", id=command.id,
                  action=command.action, device=device_id, node=self.settings.node)
        d = defer.maybeDeferred(target.send_command, device, command)
        d.addTimeout(command.ttl, self.clock)

        def ok(result: Any) -> CommandResult:
            if isinstance(result, CommandResult):
                return result
            return CommandResult(command.id, command.device, CommandStatus.SUCCEEDED,
                                 self.clock.seconds())

        def failed(f: Any) -> CommandResult:
            if f.check(defer.TimeoutError, defer.CancelledError):
                return CommandResult(command.id, command.device, CommandStatus.TIMED_OUT,
                                     self.clock.seconds(), f"no answer within {command.ttl:g} s")
            return CommandResult(command.id, command.device, CommandStatus.FAILED,
                                 self.clock.seconds(),
                                 f"{f.type.__name__}: {f.getErrorMessage()}")

        def ended(result: CommandResult) -> None:
            self._waiting.discard(command.id)
            self._inboxes.pop(command.id, None)
            # in the ledger too: the node waiting for it may be gone
            ledger_put(self.link, command, "ended", result)
            self._fire(msg.reply, orjson.dumps({"step": "result",
                                                "result": result_to_dict(result)}))

        d.addCallbacks(ok, failed).addCallback(ended)

    def start(self) -> None:
        from twisted.internet.task import LoopingCall

        self._sweeper = LoopingCall(self.sweep)
        self._sweeper.clock = self.clock
        self._sweeper.start(SWEEP_INTERVAL, now=False)

    def stop(self) -> None:
        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()

    def sweep(self) -> None:
        """Drop the command subscriptions of devices whose session is gone from here."""
        held: set[str] = set()
        for name, target in self.targets.items():
            if _shared(target):
                if target.broker_connected():
                    held.update(d for d in self._subs
                                if getattr(self.hub.device(d), "transport", None) == name)
            elif isinstance(target, GatewaySource):
                for g in target.gateways():
                    if g.connected:
                        held.update(g.devices)
            else:
                held.update(self._subs)
        for device in [d for d in self._subs if d not in held]:
            sub = self._subs.pop(device)
            self._run(sub.unsubscribe()).addErrback(lambda f: None)
        self.metrics.set("cluster.command_subscriptions", len(self._subs))


def _shared(target: Any) -> bool:
    """Whether ``target`` reaches its devices through a broker that every edge shares (an
    ``mqtt`` transport with ``shared_group``)."""
    return bool(getattr(target, "shared", False))
