"""The ``mqtt`` transport's Twisted service: it runs one engine connection per configured
connection, turns received messages into journal records (acking them after the commit),
raises and clears the ``broker_link`` fault, and carries commands with correlation ids.
The promises it keeps are in the package's docstring (:mod:`plugins.transports.mqtt`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from hub.contracts import DecodeError, DeviceChange, EncodeError, Gateway, TransportPort
from hub.model import (
    Command,
    CommandResult,
    CommandStatus,
    Event,
    EventKind,
    EventState,
    Level,
    event_id,
)
from hub.supervisor import Supervisor
from plugins.transports.mqtt.engine import EXCERPT, Engine, Received
from plugins.transports.mqtt.engine import excerpt as _excerpt
from plugins.transports.mqtt.options import MqttOptions

_log = Logger(namespace="hub.mqtt")

#: uplink topics whose device the service keeps at hand (one per device as a rule)
MAX_ROUTES = 100_000


@dataclass
class _Pending:
    command: Command
    device: Any
    payload: bytes
    deferred: defer.Deferred
    timer: Any = None


class MqttService(Service):
    """The ``mqtt`` transport: broker connections, uplink ingest, status, commands."""

    def __init__(self, hub: TransportPort, name: str, options: MqttOptions,
                 reactor: Any = None) -> None:
        self.hub = hub
        self.transport_name = name
        self.options = options
        self._reactor = reactor
        self.connections: list[Engine] = []
        self.pending: dict[str, _Pending] = {}
        self._link_event: Event | None = None
        # consecutive failed ingests per connection index: the reconnect backoff after them
        self._ingest_failures: dict[int, int] = {}
        # device id -> (reactor time of its last message, the status it last said): each
        # device is an MQTT client of the broker, and the gateway list shows these
        self.clients: dict[str, tuple[float, bool]] = {}
        # uplink topic -> (device id, its model's decode, device): see _uplink_route
        self._routes: dict[str, tuple[str, Callable[..., Any], Any]] = {}
        self._unwatch: Any = None

    @property
    def shared(self) -> bool:
        """Whether the broker splits the devices' messages between several clients
        (``shared_group``): then any of them can carry a command (a cluster edge takes a
        command for such a device whether or not it saw the device's last message)."""
        return self.options.shared_group is not None

    def broker_connected(self) -> bool:
        return any(c.connected for c in self.connections)

    # -- lifecycle -------------------------------------------------------------------------

    def startService(self) -> None:
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = reactor
        super().startService()
        self.hub.metrics.set("mqtt.connected", 0, transport=self.transport_name)
        if self.options.engine == "native":
            from plugins.transports.mqtt.native_engine import NativeConnection

            engine: Any = NativeConnection
        else:
            from plugins.transports.mqtt.paho_engine import Connection

            engine = Connection
        self.connections = [engine(self, i) for i in range(self.options.connections)]
        for c in self.connections:
            c.start()
        self.hub.register_command_target(self.transport_name, self)
        self._unwatch = self.hub.watch_devices(self.transport_name, self.device_changed)
        _log.info("{transport}: connecting to {host}:{port} as {client} ({tls})",
                  transport=self.transport_name, host=self.options.host,
                  port=self.options.broker_port, client=self.connections[0].client_id,
                  tls="TLS" if self.options.tls else "no TLS")

    @defer.inlineCallbacks
    def stopService(self):
        super().stopService()
        self.hub.unregister_command_target(self.transport_name)
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        yield defer.gatherResults([c.stop() for c in self.connections], consumeErrors=True)
        for p in list(self.pending.values()):
            self._complete(p, CommandStatus.FAILED, "the hub is stopping")

    def supervise(self, conn: Engine, what: str, run: Callable[[], defer.Deferred],
                  on_crash: Callable[[Failure], object]) -> Supervisor:
        """The supervisor of one engine connection's thread or loop: restarts with the
        reconnect backoff, healthy again after ten initial backoffs (1-60 s) without a
        crash. ``on_crash`` marks the link down (gauge, acks, ``broker_link``)."""
        opts = self.options
        return Supervisor(self.hub, "mqtt", f"{conn.name} ({what})", run,
                          labels={"transport": self.transport_name}, on_crash=on_crash,
                          initial=opts.reconnect_initial, maximum=opts.reconnect_max,
                          stable_after=min(60.0, max(1.0, 10 * opts.reconnect_initial)))

    def deliver(self, conn: Any, items: list[Received]) -> None:
        """Received PUBLISHes of ``conn``, in arrival order, in the reactor thread."""
        handle = self.handle
        acks = conn.acks
        kinds: dict[str, int] = {}
        uplinks: list[tuple[Received, str, Any]] = []
        # the usual message: an uplink on a topic seen before, of a device resolved then
        # (see _uplink_route); anything else, or a first time, goes the whole way (handle)
        routes = self._routes
        clients = self.clients
        now = self.hub.clock.seconds()
        max_payload = self.options.max_payload
        n_fast = 0
        for item in items:
            if item.qos > 0:
                acks.append(item)
            route = routes.get(item.topic)
            if route is not None and item.bad_topic is None and not item.oversized \
                    and len(item.payload) <= max_payload:
                device_id, decode, device = route
                seen = clients.get(device_id)
                clients[device_id] = (now, True if seen is None else seen[1])
                try:
                    records = decode(device_id, item.payload, now)
                except DecodeError as e:
                    self._bad_payload(conn, item, device, e)
                except Exception:  # noqa: BLE001 - as in handle: one message, not the link
                    self._internal_error(conn, item)
                    continue
                else:
                    uplinks.append((item, device_id, records))
                n_fast += 1
                continue
            kind = handle(conn, item, uplinks)
            if kind is not None:
                kinds[kind] = kinds.get(kind, 0) + 1
        if n_fast:
            kinds["uplink"] = kinds.get("uplink", 0) + n_fast
        if uplinks:
            self._ingest(conn, uplinks)
        metrics = self.hub.metrics
        for kind, n in kinds.items():  # once per batch: labelled counters cost µs each
            metrics.inc("mqtt.messages", n, transport=self.transport_name, kind=kind)

    def _ingest(self, conn: Any, uplinks: list[tuple[Received, str, Any]]) -> None:
        """The decoded uplinks of one delivery, in one journal append; acked after it."""
        try:
            d = self.hub.ingest_many([(device, records) for _, device, records in uplinks])
        except Exception:  # noqa: BLE001 - the same remedy as a failed commit
            d = defer.fail()

        def committed(_: Any) -> None:
            self._ingest_failures.pop(conn.index, None)
            conn.finished_all([item for item, _, _ in uplinks])

        d.addCallbacks(committed, self._refused, errbackArgs=(conn, uplinks))

    def _refused(self, failure: Any, conn: Any, uplinks: list[tuple[Received, str, Any]]) -> None:
        """The journal did not take these messages. Unacked, they would stay at the head of
        the in-order ack queue and hold back every later ack, until the broker's receive
        window is full and it sends nothing more on a link that looks healthy. So the link
        is dropped: the broker sends every unacked message again on the next one (at least
        once), after a backoff that grows while the journal keeps failing."""
        n = len(uplinks)
        self.hub.metrics.inc("mqtt.ingest_errors", n, transport=self.transport_name)
        _log.failure("{transport}: journal refused {n} messages; reconnecting so the broker "
                     "sends them again", failure, transport=conn.name, n=n)
        if uplinks[0][0].session != conn.link_number:
            return  # that link is gone already: the broker resends on the current one
        failures = self._ingest_failures.get(conn.index, 0) + 1
        self._ingest_failures[conn.index] = failures
        opts = self.options
        delay = min(opts.reconnect_initial * 2 ** (failures - 1), opts.reconnect_max)
        conn.drop(f"journal refused {n} messages", delay)

    def from_thread(self, fn: Any, *args: Any) -> None:
        """Run ``fn`` in the reactor thread (called from paho's threads)."""
        self._reactor.callFromThread(fn, *args)

    # -- link state ------------------------------------------------------------------------

    def link_up(self, conn: Engine, session_present: bool) -> None:
        conn.connected = True
        conn.ever_connected = True
        self.hub.metrics.set("mqtt.connected", sum(c.connected for c in self.connections),
                             transport=self.transport_name)
        _log.info("{transport}: connected to {host}:{port} as {client} (session present: "
                  "{present})", transport=conn.name, host=self.options.host,
                  port=self.options.broker_port, client=conn.client_id, present=session_present)
        if self._link_event is not None and all(c.connected for c in self.connections):
            raised, self._link_event = self._link_event, None
            now = self.hub.clock.seconds()
            self.hub.record_events([Event(
                "hub", EventKind.FAULT, "broker_link", EventState.CLEARED, now, Level.FAULT,
                id=raised.id, raised_ts=raised.ts, source="hub",
                message=f"{self.transport_name}: broker link restored")])

    def subscribed(self, conn: Engine, filters: list[str], failed: list[str]) -> None:
        if failed:
            self.hub.metrics.inc("mqtt.subscribe_errors", transport=self.transport_name)
            _log.error("{transport}: the broker refused the subscriptions {failed}",
                       transport=conn.name, failed=", ".join(failed))
        else:
            _log.info("{transport}: subscribed to {filters}", transport=conn.name,
                      filters=", ".join(filters))

    def link_down(self, conn: Engine, reason: str) -> None:
        was = conn.connected
        conn.connected = False
        self.hub.metrics.set("mqtt.connected", sum(c.connected for c in self.connections),
                             transport=self.transport_name)
        # unacked messages are the broker's to resend on the next session: forget them here
        conn.acks.clear()
        if not was or not self.running:
            return
        self.hub.metrics.inc("mqtt.disconnects", transport=self.transport_name)
        _log.warn("{transport}: broker link down ({reason}); reconnecting", transport=conn.name,
                  reason=reason)
        self._raise_link_fault(reason)

    def link_error(self, conn: Engine, reason: str) -> None:
        self.hub.metrics.inc("mqtt.connect_errors", transport=self.transport_name)
        _log.warn("{transport}: cannot connect to {host}:{port}: {reason}", transport=conn.name,
                  host=self.options.host, port=self.options.broker_port, reason=reason)
        if self.running:
            self._raise_link_fault(reason)

    def _raise_link_fault(self, reason: str) -> None:
        if self._link_event is not None:
            return
        now = self.hub.clock.seconds()
        ev = Event("hub", EventKind.FAULT, "broker_link", EventState.RAISED, now, Level.FAULT,
                   id=event_id("hub", "broker_link", "", Level.FAULT, now), source="hub",
                   message=f"{self.transport_name}: broker link down ({reason})")
        self._link_event = ev
        self.hub.record_events([ev])

    # -- messages in -----------------------------------------------------------------------

    def handle(self, conn: Engine, item: Received,
               uplinks: list[tuple[Received, str, Any]]) -> str | None:
        """One received PUBLISH, in the reactor thread: its kind if it came from a known
        device (``uplink``, ``status``, ``result``), else ``None``. A decoded uplink is added
        to ``uplinks`` (ingested and acked with the rest of its delivery). Never raises."""
        try:
            return self._handle(conn, item, uplinks)
        except Exception:  # a bug here must cost one message, not the connection
            self._internal_error(conn, item)
            return None

    def _internal_error(self, conn: Engine, item: Received) -> None:
        """In an ``except`` block: a bug cost ``item`` (counted, logged, acknowledged)."""
        self.hub.metrics.inc("mqtt.internal_errors", transport=self.transport_name)
        _log.failure("{transport}: error handling a message on {topic}: {payload}",
                     transport=conn.name, topic=item.topic, payload=_excerpt(item.payload))
        conn.finished(item)

    def _handle(self, conn: Engine, item: Received,
                uplinks: list[tuple[Received, str, Any]]) -> str | None:
        opts = self.options
        metrics = self.hub.metrics
        topic = item.topic
        if item.bad_topic is not None:
            metrics.inc("mqtt.bad_topics", transport=self.transport_name)
            _log.warn("{transport}: dropped a message whose topic is not UTF-8 ({raw}, shown "
                      "as {topic!r}), payload {payload}", transport=conn.name,
                      raw=item.bad_topic.hex(" "), topic=topic, payload=_excerpt(item.payload))
            conn.finished(item)
            return None
        if item.oversized:
            metrics.inc("mqtt.oversized", transport=self.transport_name)
            _log.warn("{transport}: skipped a message of {size} bytes on {topic} (over the "
                      "limit of {limit}); payload {payload}", transport=conn.name,
                      size=item.oversized, topic=topic, limit=opts.max_packet,
                      payload=_excerpt(item.payload))
            conn.finished(item)
            return None
        ident = opts.uplink.match(topic)
        kind = "uplink"
        if ident is None and opts.status is not None:
            ident, kind = opts.status.match(topic), "status"
        if ident is None and opts.result is not None:
            ident, kind = opts.result.match(topic), "result"
        if ident is None:
            metrics.inc("mqtt.unexpected_topics", transport=self.transport_name)
            _log.warn("{transport}: message on unexpected topic {topic}", transport=conn.name,
                      topic=topic)
            conn.finished(item)
            return None
        device = self.hub.resolve(self.transport_name, ident, identity=ident)
        if device is None:
            metrics.inc("mqtt.refused", transport=self.transport_name)
            _log.warn("{transport}: refused a message from unknown device {ident!r} on "
                      "{topic}", transport=conn.name, ident=ident, topic=topic)
            conn.finished(item)
            return None
        self.clients[device.id] = (self.hub.clock.seconds(),
                                   self.clients.get(device.id, (0.0, True))[1])
        if kind == "status":
            self._status(conn, item, device)
        elif kind == "result":
            self._result(conn, item, device)
        else:
            self._uplink(conn, item, device, uplinks)
            self._uplink_route(topic, device)
        return kind

    def _uplink_route(self, topic: str, device: Any) -> None:
        """Remember that uplinks on ``topic`` are ``device``'s: the next ones skip the topic
        match, the registry and the model lookup (:meth:`deliver`). Forgotten at any change
        of this transport's devices (:meth:`device_changed`), which is all that can make a
        topic another device's or a device another model's."""
        model = device.model
        decode = getattr(model, "decode_block", None) or model.decode
        if len(self._routes) >= MAX_ROUTES:
            self._routes.clear()
        self._routes[topic] = (device.id, decode, device)

    def _uplink(self, conn: Engine, item: Received, device: Any,
                uplinks: list[tuple[Received, str, Any]]) -> None:
        payload = item.payload
        try:
            if len(payload) > self.options.max_payload:
                raise DecodeError(f"payload of {len(payload)} bytes exceeds max_payload "
                                  f"{self.options.max_payload}", payload[:EXCERPT])
            model = device.model
            # a model's compact fast path when it has one (json_map: hub.blocks)
            decode = getattr(model, "decode_block", None) or model.decode
            records = decode(device.id, payload, self.hub.clock.seconds())
        except DecodeError as e:
            self._bad_payload(conn, item, device, e)
            return
        uplinks.append((item, device.id, records))

    def _bad_payload(self, conn: Engine, item: Received, device: Any,
                     error: Exception) -> None:
        self.hub.metrics.inc("mqtt.decode_errors", transport=self.transport_name,
                             model=device.model_name)
        excerpt = getattr(error, "excerpt", b"") or item.payload
        _log.warn("{transport}: bad payload from {device} on {topic}: {error}; payload "
                  "{payload}", transport=conn.name, device=device.id, topic=item.topic,
                  error=error, payload=_excerpt(excerpt))
        conn.finished(item)

    def _status(self, conn: Engine, item: Received, device: Any) -> None:
        text = item.payload[:64].decode("utf-8", "replace").strip().lower()
        if "offline" in text or text in ("0", "false", "lost"):
            # a last will: presence decides offline by its own timer; say what we heard
            _log.info("{transport}: {device} says it is offline ({text!r})",
                      transport=conn.name, device=device.id, text=text)
            self.clients[device.id] = (self.clients[device.id][0], False)
        else:
            self.clients[device.id] = (self.clients[device.id][0], True)
            self.hub.heartbeat(device.id)
        conn.finished(item)

    # -- devices and gateways --------------------------------------------------------------

    def device_changed(self, change: DeviceChange) -> None:
        """A deleted (or re-addressed) device's commands in flight fail now: their result
        would come from a device the hub no longer knows by that address."""
        self._routes.clear()
        if change.kind == "added":
            return
        old = change.previous if change.kind == "changed" else change.device
        if old is None or (change.kind == "changed"
                           and old.address_key == change.device.address_key):
            return
        self.clients.pop(old.id, None)
        for p in [p for p in self.pending.values() if p.device.id == old.id]:
            self._complete(p, CommandStatus.FAILED, "the device was deleted or re-addressed")

    def gateways(self) -> list[Gateway]:
        """Each device is its own MQTT client of the broker: connected while the broker
        link is up and its last status message did not say offline."""
        link = any(c.connected for c in self.connections)
        broker = f"{self.options.host}:{self.options.broker_port}"
        out = []
        for device in self.hub.devices(self.transport_name):
            seen, online = self.clients.get(device.id, (None, False))
            out.append(Gateway(
                id=str(device.address_key), transport=self.transport_name, kind="mqtt",
                auth="broker account and topic ACL", connected=link and seen is not None
                and online, address=broker if seen is not None else None, last_seen=seen,
                devices=(device.id,)))
        return out

    # -- commands --------------------------------------------------------------------------

    def send_command(self, device: Any, command: Command) -> defer.Deferred:
        """Encode ``command`` with the device's model and publish it; the Deferred fires
        with the :class:`CommandResult` that the device's result message (or the timeout)
        decides."""
        conn = next((c for c in self.connections if c.connected), None)
        if conn is None:
            return defer.fail(ConnectionError(f"{self.transport_name}: not connected to the "
                                              "broker"))
        try:
            payload = device.model.encode_command(device.id, command)
        except EncodeError as e:
            return defer.fail(e)
        ident = device.address_key
        response = self.options.result.topic(ident) if self.options.result else None

        def cancel(_: defer.Deferred) -> None:
            p = self.pending.pop(command.id, None)
            if p is not None and p.timer is not None and p.timer.active():
                p.timer.cancel()

        d: defer.Deferred = defer.Deferred(cancel)
        pending = _Pending(command, device, payload, d)
        self.pending[command.id] = pending
        try:
            conn.publish(self.options.command.topic(ident), payload, command.id.encode(),
                         response)
        except (ConnectionError, ValueError) as e:
            self.pending.pop(command.id, None)
            return defer.fail(e)
        self.hub.metrics.inc("mqtt.commands_published", transport=self.transport_name)
        self.hub.command_sent(command)
        pending.timer = self.hub.clock.callLater(
            min(self.options.command_timeout, command.ttl), self._complete, pending,
            CommandStatus.TIMED_OUT, f"no result on the result topic within "
            f"{min(self.options.command_timeout, command.ttl):g} s")
        return d

    def _result(self, conn: Engine, item: Received, device: Any) -> None:
        model = device.model
        decode = getattr(model, "decode_command_result", None)
        cid = item.correlation.decode("utf-8", "replace") if item.correlation else None
        outcome = None
        if cid is not None and cid not in self.pending and not self.options.shared_results:
            self._result_elsewhere(conn, item)  # before decoding: it may need what was sent
            return
        if decode is not None:
            sent = self.pending[cid].payload if cid in self.pending else None
            try:
                outcome = decode(item.payload, sent)
            except DecodeError as e:
                self._bad_payload(conn, item, device, e)
                return
            cid = cid or outcome.command_id
        if cid is None:
            # no id anywhere: the only command in flight for this device, if there is one
            mine = [k for k, p in self.pending.items() if p.device.id == device.id]
            cid = mine[0] if len(mine) == 1 else None
        pending = self.pending.get(cid) if cid is not None else None
        if pending is None and not self.options.shared_results:
            self._result_elsewhere(conn, item)
            return
        if pending is None or pending.device.id != device.id:
            self.hub.metrics.inc("mqtt.unmatched_results", transport=self.transport_name)
            _log.warn("{transport}: result from {device} matches no command in flight "
                      "(id {cid}): {payload}", transport=conn.name, device=device.id, cid=cid,
                      payload=_excerpt(item.payload))
            conn.finished(item)
            return
        if outcome is None:
            ok, detail = True, ""
        else:
            ok, detail = outcome.ok, outcome.detail
        self._complete(pending, CommandStatus.SUCCEEDED if ok else CommandStatus.FAILED, detail)
        conn.finished(item)

    def _result_elsewhere(self, conn: Engine, item: Received) -> None:
        """Results are not shared: each connection of each hub gets every result, and the
        one that published the command completes it; to the others it is no news."""
        self.hub.metrics.inc("mqtt.results_elsewhere", transport=self.transport_name)
        conn.finished(item)

    def _complete(self, pending: _Pending, status: CommandStatus, detail: str) -> None:
        self.pending.pop(pending.command.id, None)
        if pending.timer is not None and pending.timer.active():
            pending.timer.cancel()
        if not pending.deferred.called:
            pending.deferred.callback(CommandResult(pending.command.id, pending.command.device,
                                                    status, self.hub.clock.seconds(), detail))

