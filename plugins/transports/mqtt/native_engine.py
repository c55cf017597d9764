"""The ``native`` engine of the ``mqtt`` transport: one broker connection as a Twisted
protocol over :mod:`plugins.transports.codec`, in the reactor thread.

It offers the service exactly what the paho engine's ``Connection`` offers (``start``,
``stop``, ``finished``, ``publish``, the link flags) and keeps the same promises: QoS 1 on a
persistent session, PUBACK only once the records are committed and in arrival order,
reconnect with exponential backoff and jitter. What it saves is paho's thread and its
per-packet Python work: bytes from the socket are decoded in one pass, messages go to the
service in the same call, and PUBACKs of one commit leave in one write.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet import defer, protocol
from twisted.internet import ssl as tssl
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol, wrapClientTLS
from twisted.logger import Logger
from twisted.python.failure import Failure

from hub.supervisor import Supervisor
from plugins.transports.mqtt import codec
from plugins.transports.mqtt.engine import EngineBase, Received

if TYPE_CHECKING:
    from plugins.transports.mqtt.options import MqttOptions
    from plugins.transports.mqtt.service import MqttService

_log = Logger(namespace="hub.mqtt")

_ACKS = codec.encode_pubacks


def _received(topic: str, payload: bytes, qos: int, packet_id: int | None, retain: bool,
              dup: bool, correlation: bytes | None, response_topic: str | None,
              raw_topic: bytes | None) -> Received:
    """What the decoder makes of a PUBLISH (a :class:`codec.Publish`'s fields): the
    service's :class:`Received` at once, not a Publish copied into one; its link is set on
    delivery (:meth:`NativeConnection.received`)."""
    return Received(topic, payload, packet_id or 0, qos, correlation, 0, False, 0, raw_topic)
READ_SIZE = 16384  # bytes per socket read (see _connection_made)


def tls_options(opts: MqttOptions) -> Any:
    """pyOpenSSL client options from the transport's ``tls`` section."""
    t = opts.tls
    assert t is not None
    if t.ca_file:
        with open(t.ca_file, "rb") as f:
            pems = f.read()
        certs = [tssl.Certificate.loadPEM(block + b"-----END CERTIFICATE-----\n")
                 for block in pems.split(b"-----END CERTIFICATE-----") if b"BEGIN" in block]
        trust = tssl.trustRootFromCertificates(certs)
    else:
        trust = tssl.platformTrust()
    client = None
    if t.cert_file and t.key_file:
        with open(t.cert_file, "rb") as f:
            cert = f.read()
        with open(t.key_file, "rb") as f:
            key = f.read()
        client = tssl.PrivateCertificate.loadPEM(cert + b"\n" + key)
    if t.insecure:
        # the chain is still verified; only the host name check is skipped (test rigs)
        kwargs: dict[str, Any] = {"trustRoot": trust}
        if client is not None:
            kwargs.update(privateKey=client.privateKey.original, certificate=client.original)
        return tssl.CertificateOptions(**kwargs)
    return tssl.optionsForClientTLS(opts.host, trustRoot=trust, clientCertificate=client)


def describe_failure(failure: Any) -> str:
    """A connection failure for a log line: OpenSSL's error stack as its reasons (e.g.
    "TLS: certificate verify failed"), anything else as its message."""
    from OpenSSL import SSL

    e = failure.value
    if isinstance(e, SSL.Error) and e.args and isinstance(e.args[0], list):
        reasons = [r[2] for r in e.args[0] if isinstance(r, tuple) and len(r) == 3 and r[2]]
        if reasons:
            return "TLS: " + "; ".join(dict.fromkeys(reversed(reasons)))
    return failure.getErrorMessage() or type(e).__name__


class _Protocol(protocol.Protocol):
    def __init__(self, conn: NativeConnection) -> None:
        self.conn = conn
        self.decoder = codec.Decoder(conn.v5, max_packet=conn.service.options.max_packet,
                                     lenient_topics=True, publish=_received)
        self.accepted = False
        self.closing = False  # dropped by us: what still arrives belongs to a dead link
        self.disconnect_reason: str | None = None
        self.last_rx = 0.0
        self._timer: Any = None

    # Every entry point from the reactor goes through conn.guarded: an exception there would
    # be logged by Twisted and the engine would carry on without its loop (no reconnect, no
    # acks); the supervisor restarts it instead.

    def connectionMade(self) -> None:
        self.conn.guarded(self._connection_made)

    def _connection_made(self) -> None:
        conn = self.conn
        if conn._stopping or self is not conn._current:  # stopped or crashed meanwhile
            self.transport.loseConnection()
            return
        # Twisted reads up to 64 KiB at a time: a thousand small messages decoded and
        # journaled in one reactor callback, tens of ms during which the shared loop (the
        # API's requests) waits. Smaller reads give the loop back more often.
        if hasattr(self.transport, "bufferSize"):
            self.transport.bufferSize = READ_SIZE
        opts = conn.service.options
        self.last_rx = conn.clock.seconds()
        self.transport.write(codec.encode_connect(
            conn.client_id, keepalive=opts.keepalive, clean=False, v5=conn.v5,
            username=opts.username, password=opts.password,
            session_expiry=opts.session_expiry if conn.v5 else 0,
            receive_maximum=opts.receive_maximum if conn.v5 else 0,
            maximum_packet_size=opts.max_packet if conn.v5 else 0))
        self._keepalive = opts.keepalive
        self._schedule()

    # keep-alive: PINGREQ every half period; nothing heard for 1.5 periods means a dead link
    # (MQTT 3.1.2.10: the broker drops us after 1.5 periods of silence from our side)
    def _schedule(self) -> None:
        self._timer = self.conn.clock.callLater(self._keepalive / 2, self.conn.guarded,
                                                self._tick)

    def _tick(self) -> None:
        if self.conn.clock.seconds() - self.last_rx > 1.5 * self._keepalive:
            self.disconnect_reason = "no answer from the broker within 1.5 keep-alive periods"
            self.transport.abortConnection()
            return
        self.transport.write(codec.PINGREQ_BYTES)
        self._schedule()

    def dataReceived(self, data: bytes) -> None:
        self.conn.guarded(self._data_received, data)

    def _data_received(self, data: bytes) -> None:
        if self.closing:
            return
        conn = self.conn
        try:
            packets = self.decoder.feed(data)
        except codec.ProtocolError as e:
            conn.service.hub.metrics.inc("mqtt.protocol_errors",
                                         transport=conn.service.transport_name)
            _log.error("{transport}: the broker sent invalid MQTT ({error}); dropping the "
                       "connection", transport=conn.name, error=e)
            self.disconnect_reason = f"protocol error: {e}"
            self.transport.abortConnection()
            return
        self.last_rx = conn.clock.seconds()
        publishes = None
        for p in packets:
            if type(p) is Received or type(p) is codec.Oversized:
                if publishes is None:
                    publishes = []
                publishes.append(p)
                continue
            if publishes:  # keep the order of packets: messages before what follows them
                conn.received(publishes)
                publishes = None
            if type(p) is codec.PubAck:
                continue  # our commands are QoS 1 fire-and-forget; results come by topic
            if type(p) is codec.ConnAck:
                self._connack(p)
            elif type(p) is codec.SubAck:
                conn.suback(p)
            elif type(p) is codec.Disconnect:
                self.disconnect_reason = (f"the broker sent DISCONNECT: "
                                          f"{codec.reason_text(p.reason)}")
                self.transport.loseConnection()
        if publishes:
            conn.received(publishes)

    def _connack(self, p: codec.ConnAck) -> None:
        conn = self.conn
        if p.reason != 0:
            self.disconnect_reason = "refused"
            conn.service.link_error(conn, "connection refused: "
                                    f"{codec.reason_text(p.reason, conn.v5)}")
            self.transport.loseConnection()
            return
        keepalive = p.properties.get(codec.SERVER_KEEP_ALIVE)
        if keepalive:  # 5.0 §3.2.2.3.14: the server's value wins
            self._keepalive = keepalive
        self.accepted = True
        conn.accepted(self, p.session_present)

    def write_acks(self, packet_ids: list[int]) -> None:
        self.transport.write(_ACKS(packet_ids))

    def connectionLost(self, reason: Any) -> None:
        self.conn.guarded(self._connection_lost, reason)

    def _connection_lost(self, reason: Any) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        why = self.disconnect_reason or describe_failure(reason)
        self.conn.lost(self, why)


class NativeConnection(EngineBase):
    """One broker connection on the reactor; see the module docstring."""

    service: MqttService

    def __init__(self, service: MqttService, index: int) -> None:
        super().__init__(service, index)
        opts = service.options
        self.clock = service.hub.clock
        self.reactor = service._reactor
        self._proto: _Protocol | None = None  # the accepted (CONNACK) link
        self._current: _Protocol | None = None  # the latest attempt, accepted or not
        self._filters: list[str] = []
        self._stopping = False
        self._retry: Any = None
        self._delay = opts.reconnect_initial
        self._next_id = 0
        self._closed: defer.Deferred | None = None
        self.supervisor: Supervisor | None = None
        self._life: defer.Deferred | None = None  # one run: fails when the engine crashes

    # -- connecting ------------------------------------------------------------------------

    def start(self) -> None:
        """Run under a supervisor (see :mod:`hub.supervisor`): a bug in a callback of this
        engine is logged, counted and the connection started again."""
        self.supervisor = self.service.supervise(self, "native engine", self._run,
                                                 self._crashed)
        self.supervisor.start()

    def _run(self) -> defer.Deferred:
        """One run: connect and reconnect until :meth:`stop`, or until :meth:`crashed`."""
        self._life = life = defer.Deferred()
        self._delay = self.service.options.reconnect_initial
        self.guarded(self._connect)
        return life

    def guarded(self, fn: Callable[..., object], *args: Any) -> None:
        """``fn(*args)``, for a call from the reactor; an exception ends this run."""
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 - whatever it is, the supervisor takes it
            self.crashed(Failure())

    def crashed(self, failure: Failure) -> None:
        """End this run with ``failure``: close the link without a word (the broker sends
        again what we did not ack) and leave the restart to the supervisor."""
        life = self._life
        if life is None or life.called:
            _log.failure("{transport}: error after the engine stopped", failure,
                         transport=self.name)
            return
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        proto, self._current, self._proto = self._current, None, None
        if proto is not None:
            proto.closing = True
            if proto._timer is not None and proto._timer.active():
                proto._timer.cancel()
            if proto.transport is not None:
                try:
                    proto.transport.abortConnection()
                except Exception:  # noqa: BLE001 - closed already: what we wanted
                    pass
        life.errback(failure)

    def _crashed(self, failure: Failure) -> None:
        self.link_number += 1
        self.service.link_down(self, f"the native engine crashed "
                                     f"({failure.type.__name__}: {failure.getErrorMessage()})")

    def _connect(self) -> None:
        self._retry = None
        opts = self.service.options
        endpoint: Any = HostnameEndpoint(self.reactor, opts.host, opts.broker_port,
                                         timeout=max(opts.keepalive, 10))
        if opts.tls is not None:
            try:
                endpoint = wrapClientTLS(tls_options(opts), endpoint)
            except Exception as e:  # noqa: BLE001 - unreadable CA or key: say so, retry
                self._failed(f"TLS set-up failed: {e}")
                return
        proto = self._current = _Protocol(self)
        d = connectProtocol(endpoint, proto)
        d.addErrback(lambda f: self.guarded(self._connect_failed, proto, f))

    def _connect_failed(self, proto: _Protocol, failure: Any) -> None:
        if proto is self._current:  # else a run that crashed meanwhile tried it
            self._failed(describe_failure(failure))

    def _failed(self, reason: str) -> None:
        self.service.link_error(self, reason)
        self._again()

    def _again(self) -> None:
        if self._stopping:
            return
        opts = self.service.options
        # jitter spreads the hubs (and connections) that lost one broker at one instant
        self._retry = self.clock.callLater(self._delay * random.uniform(0.5, 1.0),
                                           self.guarded, self._connect)
        self._delay = min(self._delay * 2, opts.reconnect_max)

    def accepted(self, proto: _Protocol, session_present: bool) -> None:
        self._proto = proto
        self._delay = self.service.options.reconnect_initial
        self._filters = self.service.options.subscriptions()
        proto.transport.write(codec.encode_subscribe(
            self._packet_id(), [(f, 1) for f in self._filters], v5=self.v5))
        self.service.link_up(self, session_present)

    def suback(self, p: codec.SubAck) -> None:
        failed = [f"{f} ({codec.reason_text(r)})"
                  for f, r in zip(self._filters, p.reasons, strict=False) if r >= 0x80]
        self.service.subscribed(self, self._filters, failed)

    def lost(self, proto: _Protocol, reason: str) -> None:
        if proto is not self._current:
            return  # the link of a run that crashed: the supervisor restarts
        if proto is self._proto:
            self._proto = None
        self.link_number += 1
        if proto.accepted:
            self.service.link_down(self, reason)
        elif proto.disconnect_reason != "refused":
            self.service.link_error(self, reason)
        if self._closed is not None and not self._closed.called:
            self._closed.callback(None)
        self._again()

    # -- messages --------------------------------------------------------------------------

    def received(self, packets: list[Received | codec.Oversized]) -> None:
        link = self.link_number
        items = []
        for p in packets:
            if type(p) is Received:
                p.session = link
                items.append(p)
            else:
                items.append(Received(p.topic, p.excerpt, p.packet_id or 0, p.qos, None, link,
                                      oversized=p.size))
        self.service.deliver(self, items)

    def finished(self, item: Any) -> None:
        """``item`` may be acknowledged; acks leave in arrival order, one write per sweep."""
        item.done = True
        acks = self.acks
        if not acks or not acks[0].done:
            return
        ids = []
        link = self.link_number
        while acks and acks[0].done:
            done = acks.popleft()
            if done.session == link:  # else the broker sends it again anyway
                ids.append(done.mid)
        if ids and self._proto is not None:
            self._proto.write_acks(ids)

    def drop(self, reason: str, delay: float) -> None:
        """Close the current link and connect again after about ``delay`` seconds; the
        broker then sends every message not acknowledged yet again."""
        proto = self._proto
        if proto is None or proto.closing:
            return
        proto.closing = True
        proto.disconnect_reason = f"dropped by the hub: {reason}"
        self._delay = delay
        proto.transport.write(codec.encode_disconnect())
        proto.transport.loseConnection()

    def _packet_id(self) -> int:
        self._next_id = self._next_id % 0xFFFF + 1
        return self._next_id

    def publish(self, topic: str, payload: bytes, correlation: bytes | None,
                response_topic: str | None) -> None:
        if self._proto is None:
            raise ConnectionError(f"publish to {topic} failed: not connected")
        self._proto.transport.write(codec.encode_publish(
            topic, payload, qos=1, packet_id=self._packet_id(), v5=self.v5,
            correlation=correlation if self.v5 else None,
            response_topic=response_topic if self.v5 else None))

    def stop(self) -> defer.Deferred:
        if self.supervisor is not None:
            self.supervisor.stop()
        life, self._life = self._life, None
        if life is not None and not life.called:
            life.callback(None)
        self._stopping = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        proto = self._current
        if proto is None or proto.transport is None or not proto.transport.connected:
            return defer.succeed(None)
        self._closed = defer.Deferred()
        proto.disconnect_reason = "the hub is stopping"
        proto.transport.write(codec.encode_disconnect())
        proto.transport.loseConnection()
        return self._closed
