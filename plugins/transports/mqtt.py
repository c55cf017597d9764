"""Built-in plugin: the ``mqtt`` transport — the hub as a client of an MQTT broker
(Mosquitto on site, EMQX in the cloud) that detectors and 4G DTUs publish through.

::

    transports:
      broker:
        type: mqtt
        host: 127.0.0.1
        port: 8883
        tls: {ca_file: /etc/hub/ca.pem, cert_file: /etc/hub/hub.pem, key_file: /etc/hub/hub.key}
        username: hub                          # or a client certificate, or both
        password: {env: MQTT_PASSWORD}
        client_id: hub-1                       # stable: the broker keeps its session by it
        topics: {uplink: "esm/{device}/up", status: "esm/{device}/status",
                 command: "esm/{device}/down", result: "esm/{device}/ack"}
        shared_group: hubs                     # optional: $share/hubs/... splits the stream
    devices:
      - {id: efd-7, model: acme, transport: broker, address: "861234567890007"}

A device's ``address`` is what stands for ``{device}`` in its topics (default: its id).

How the promises are kept:

* **At-least-once.** Subscriptions are QoS 1 on a persistent session (MQTT 5 clean start
  off with a session expiry, or MQTT 3.1.1 clean session off), so what devices publish while
  the hub is away waits in the broker. paho runs with ``manual_ack=True``: a PUBLISH is
  acknowledged only after :meth:`hub.core.Hub.ingest`'s Deferred fired, i.e. after its
  records are committed to the journal. Acks leave in the order the messages arrived
  (MQTT 4.6); a hub killed before the commit is sent the message again. A batch the
  journal refuses drops that connection (see :meth:`MqttService._refused`): unacked, it
  would hold back every later ack.
* **paho never blocks the reactor.** paho's network loop runs in one thread per broker
  connection (our own loop around ``Client.loop()``, for jittered backoff). Received messages
  go into a deque and the reactor is woken once per batch (``callFromThread``), so records
  reach the reactor thread in arrival order, hence in order per device.
* **Untrusted input.** A topic whose device part is not in the registry is refused and
  counted (``registry.refused``, ``mqtt.refused``); oversized or undecodable payloads are
  counted (``mqtt.decode_errors``) and logged with the topic and an excerpt; such messages
  are acknowledged (there is nothing to keep) and the connection goes on. Packets over
  :attr:`MqttOptions.max_packet` are discarded by an MQTT 5 broker (Maximum Packet Size) or
  skipped by the native decoder (``mqtt.oversized``).
* **Link down.** Reconnects with exponential backoff and jitter; resubscribes; the gauge
  ``mqtt.connected`` and a fault event ``broker_link`` (device ``hub``) mark the outage.
* **Commands.** The device model encodes; the payload is published to the command topic
  with the command id as MQTT 5 correlation data and the result topic as response topic
  (models with a JSON format also carry the id in the payload). A message on the result
  topic completes the command; none within ``command_timeout`` → timed out.

The broker must not drop what the hub has not acknowledged: see the README section "MQTT"
(``max_queued_messages``).
"""

from __future__ import annotations

import random
import select
import socket
import ssl
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from twisted.application.service import Service
from twisted.internet import defer, threads
from twisted.logger import Logger

from hub import hookimpl
from hub.contracts import DecodeError, EncodeError, TransportType
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
from hub.validate import Invalid, Section, boolean, choice, describe, integer, number, string

_log = Logger(namespace="hub.mqtt")

EXCERPT = 64  # bytes of a bad payload shown in the log


def _excerpt(data: bytes) -> str:
    """A payload for a log line: text if it is printable UTF-8, else hex."""
    cut = data[:EXCERPT]
    more = " …" if len(data) > EXCERPT else ""
    try:
        text = cut.decode("utf-8")
        if text.isprintable():
            return repr(text) + more
    except UnicodeDecodeError:
        pass
    return cut.hex(" ") + more


# ---------------------------------------------------------------------------- topics


class TopicTemplate:
    """``esm/{device}/up``: the subscription filter ``esm/+/up``, the topic of one device,
    and the device part of a received topic."""

    def __init__(self, template: str) -> None:
        if template.count("{device}") != 1:
            raise Invalid(f"{template!r} must contain {{device}} exactly once")
        if any(c in template.replace("{device}", "") for c in "+#{}") or not template:
            raise Invalid(f"{template!r} may hold no wildcards or other placeholders")
        levels = template.split("/")
        if "{device}" not in levels:
            raise Invalid(f"{template!r}: {{device}} must be a whole topic level")
        self.template = template
        self.filter = template.replace("{device}", "+")
        head, tail = template.split("{device}")
        self._head, self._tail = head, tail

    def topic(self, device: str) -> str:
        return self._head + device + self._tail

    def match(self, topic: str) -> str | None:
        """The device part of ``topic``, or ``None`` if the topic is not of this template."""
        head, tail = self._head, self._tail
        if len(topic) <= len(head) + len(tail) or not topic.startswith(head) \
                or not topic.endswith(tail):
            return None
        part = topic[len(head):len(topic) - len(tail)]
        return None if "/" in part else part


def _template(v: Any) -> TopicTemplate:
    return TopicTemplate(string()(v))


def _optional_template(v: Any) -> TopicTemplate | None:
    """A template, or ``null`` to switch that kind of message off."""
    return None if v is None else _template(v)


# ---------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class TlsOptions:
    ca_file: str | None = None  # None: the system's trust store
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False  # skip the host name check (test rigs only)


@dataclass(frozen=True)
class MqttOptions:
    host: str = "127.0.0.1"
    port: int | None = None  # 1883, or 8883 with TLS
    tls: TlsOptions | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a log line
    client_id: str | None = None  # default hub-<transport name>
    protocol: str = "5"  # "5" or "3.1.1"
    keepalive: int = 60
    session_expiry: int = 7 * 86400  # s the broker keeps the session while the hub is away
    uplink: TopicTemplate = field(default_factory=lambda: TopicTemplate("esm/{device}/up"))
    status: TopicTemplate | None = field(
        default_factory=lambda: TopicTemplate("esm/{device}/status"))
    command: TopicTemplate = field(default_factory=lambda: TopicTemplate("esm/{device}/down"))
    result: TopicTemplate | None = field(
        default_factory=lambda: TopicTemplate("esm/{device}/ack"))
    shared_group: str | None = None
    connections: int = 1
    receive_maximum: int = 1000  # unacknowledged QoS 1 messages the broker may send us
    max_payload: int = 65536
    command_timeout: float = 30.0
    reconnect_initial: float = 1.0
    reconnect_max: float = 60.0
    engine: str = "paho"  # or "native": our own codec on the reactor (see mqtt_native)

    @property
    def broker_port(self) -> int:
        return self.port or (8883 if self.tls else 1883)

    @property
    def max_packet(self) -> int:
        """The longest packet we take: a max_payload payload plus room for its topic and
        properties. MQTT 5 tells the broker (Maximum Packet Size), which then discards
        longer messages; longer ones that still come are skipped and acknowledged. Between
        max_payload and this, a payload is refused as a decode error with its device."""
        return min(self.max_payload + 65536 + 8, 268_435_460)


def _readable_file(v: Any) -> str:
    """A path the hub can read now: a missing CA or key is a configuration error at check
    time, not a reconnect loop at run time."""
    path = string()(v)
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as e:
        raise Invalid(f"cannot read {path!r}: {e.strerror or e}") from None
    return path


def _tls(section: Section) -> TlsOptions | None:
    raw = section.raw("tls", None)
    if raw is None or raw is False:
        return None
    if raw is True:
        return TlsOptions()
    s = section.section("tls")
    opts = TlsOptions(
        ca_file=s.get("ca_file", _readable_file, None),
        cert_file=s.get("cert_file", _readable_file, None),
        key_file=s.get("key_file", _readable_file, None),
        insecure=s.get("insecure", boolean, False))
    s.finish()
    if ("cert_file" in s) != ("key_file" in s):
        section.checker.error(s.path, "cert_file and key_file go together")
        return opts
    if ("cert_file" in s and opts.cert_file is None) or ("key_file" in s
                                                          and opts.key_file is None):
        return opts  # unreadable: said already
    # the files exist; whether they are PEM that OpenSSL takes is the next question
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for key, load in (("ca_file", lambda: ctx.load_verify_locations(cafile=opts.ca_file)),
                      ("cert_file", lambda: ctx.load_cert_chain(opts.cert_file,
                                                                opts.key_file))):
        if getattr(opts, key) is None:
            continue
        try:
            load()
        except (ssl.SSLError, OSError) as e:
            what = "a CA certificate" if key == "ca_file" else "a certificate and its key"
            why = (e.reason or e.strerror or str(e)) if isinstance(e, ssl.SSLError) else e
            section.checker.error(s.path / key, f"{getattr(opts, key)!r} is not {what} in "
                                  f"PEM, or they do not match ({why})" if key == "cert_file"
                                  else f"{opts.ca_file!r} is not {what} in PEM ({why})")
    return opts


def check_options(section: Section) -> MqttOptions:
    """Check ``transports.<name>`` of type ``mqtt``; every error names its key path."""
    d = MqttOptions()
    topics = section.section("topics")
    opts = MqttOptions(
        host=section.get("host", string(), d.host),
        port=section.get("port", integer(1, 65535), None),
        tls=_tls(section),
        username=section.get("username", string(), None),
        password=section.get("password", string(), None),
        client_id=section.get("client_id", string(r"[0-9A-Za-z_.:\-]{1,64}",
                                                  "a client id of 1-64 letters, digits, _.:-"),
                              None),
        protocol=str(section.get("protocol", lambda v: choice("5", "3.1.1")(str(v)), "5")),
        keepalive=section.get("keepalive", integer(5, 65535), d.keepalive),
        session_expiry=section.get("session_expiry", integer(0, 0xFFFFFFFF), d.session_expiry),
        uplink=topics.get("uplink", _template, d.uplink),
        status=topics.get("status", _optional_template, d.status),
        command=topics.get("command", _template, d.command),
        result=topics.get("result", _optional_template, d.result),
        shared_group=section.get("shared_group", string(r"[^/+#$]{1,64}", "a group name "
                                                        "without / + # $"), None),
        connections=section.get("connections", integer(1, 64), 1),
        receive_maximum=section.get("receive_maximum", integer(1, 65535), d.receive_maximum),
        max_payload=section.get("max_payload", integer(16, 256 << 20), d.max_payload),
        command_timeout=section.get("command_timeout", number(0.1, 86400, "s"), 30.0),
        reconnect_initial=section.get("reconnect_initial", number(0.01, 600, "s"), 1.0),
        reconnect_max=section.get("reconnect_max", number(0.1, 3600, "s"), 60.0),
        engine=section.get("engine", choice("paho", "native"), d.engine),
    )
    topics.finish()
    section.finish()
    if opts.password is not None and opts.username is None:
        section.checker.error(section.path / "password", "a password needs a username")
    if opts.connections > 1 and opts.shared_group is None:
        section.checker.error(section.path / "connections", "several connections need "
                              "shared_group, or each would receive every message")
    if opts.session_expiry == 0 and opts.protocol == "5":
        _log.warn("mqtt session_expiry 0: messages published while the hub is away are lost")
    return opts


def check_address(address: Any) -> str:
    """A device's topic id: a string (or number) that fits in one topic level."""
    if isinstance(address, int) and not isinstance(address, bool):
        address = str(address)
    if not isinstance(address, str) or not address:
        raise Invalid(f"expected the device's id in its topics, got {describe(address)}")
    if any(c in address for c in "/+#\x00"):
        raise Invalid(f"{address!r} cannot be one topic level (no / + #)")
    return address


# ---------------------------------------------------------------------------- one connection


def _no_op(*args: Any) -> None:
    return None


class _BufferedClient(mqtt.Client):
    """paho's client reading the socket 64 KiB at a time.

    paho reads each packet's fixed header a byte per ``recv()`` (three or more system calls
    per message); this serves those reads from one buffer. :meth:`buffered` tells the loop
    that packets are waiting although the socket may not be readable any more.
    """

    _rbuf = b""
    _rpos = 0

    def _sock_recv(self, bufsize: int) -> bytes:
        buf, pos = self._rbuf, self._rpos
        if pos >= len(buf):
            buf = super()._sock_recv(65536)  # BlockingIOError when nothing is there
            pos = 0
            if not buf:
                self._rbuf, self._rpos = b"", 0
                return b""  # end of stream: paho sees the connection lost
        out = buf[pos:pos + bufsize]
        self._rbuf, self._rpos = buf, pos + len(out)
        return out

    def buffered(self) -> bool:
        """Whether received bytes wait in our buffer or in the TLS layer."""
        if self._rpos < len(self._rbuf):
            return True
        sock = self._sock
        return bool(sock is not None and hasattr(sock, "pending") and sock.pending())

    def reset_buffer(self) -> None:
        """Forget what the previous connection left unread."""
        self._rbuf, self._rpos = b"", 0


@dataclass
class _Received:
    """One PUBLISH on its way to the reactor, then waiting for its turn to be acked."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    correlation: bytes | None
    session: int = 0  # the link it came on: its mid means nothing on the next one
    done: bool = False
    oversized: int = 0  # a packet of this many bytes was skipped; payload is its start


class Connection:
    """One paho client and the thread that runs its network loop."""

    def __init__(self, service: MqttService, index: int) -> None:
        self.service = service
        self.index = index
        opts = service.options
        self.name = service.transport_name + (f"#{index}" if opts.connections > 1 else "")
        base = opts.client_id or f"hub-{service.transport_name}"
        self.client_id = base + (f"-{index}" if opts.connections > 1 else "")
        self.v5 = opts.protocol == "5"
        self.client = _BufferedClient(
            mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
            protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311,
            clean_session=None if self.v5 else False, manual_ack=True)
        if opts.username is not None:
            self.client.username_pw_set(opts.username, opts.password)
        if opts.tls is not None:
            ctx = ssl.create_default_context(cafile=opts.tls.ca_file)
            if opts.tls.cert_file:
                ctx.load_cert_chain(opts.tls.cert_file, opts.tls.key_file)
            if opts.tls.insecure:
                ctx.check_hostname = False
            self.client.tls_set_context(ctx)
        # our commands are few; the default of 20 in flight is plenty and keeps ids unique
        self.client.max_inflight_messages_set(20)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        # paho's "external loop" mode: our thread selects and calls loop_read/loop_write.
        # Without the register hook paho would write to the socket straight from whichever
        # thread calls ack() or publish() (the reactor), racing our loop thread; with it,
        # the packet is queued and the hook wakes our select.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.client.on_socket_register_write = self._wake
        self.client.on_socket_unregister_write = _no_op
        self._inbox: deque[_Received] = deque()
        self._wake_pending = False
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._filters: list[str] = []
        self._session_ok = False  # paho's thread only: a CONNACK accepted since last backoff
        # (reason, backoff) of a link the reactor asked to drop; read by paho's thread
        self._drop: tuple[str, float] | None = None
        # bumped by paho's thread when a link drops, read by the reactor before an ack: a
        # message id of an old link must never ack a message of the new one
        self.link_number = 0
        self.acks: deque[_Received] = deque()  # reactor thread only
        self.connected = False
        self.ever_connected = False

    # -- paho's thread ---------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"mqtt-{self.name}",
                                        daemon=True)
        self._thread.start()

    def _connect_properties(self) -> Any:
        if not self.v5:
            return None
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.service.options.session_expiry
        props.ReceiveMaximum = self.service.options.receive_maximum
        props.MaximumPacketSize = self.service.options.max_packet
        return props

    def _run(self) -> None:
        """Connect, serve the socket until the link drops, wait (backoff with jitter), again."""
        opts = self.service.options
        delay = opts.reconnect_initial
        first = True
        while not self._stopping.is_set():
            self.client.reset_buffer()
            try:
                if first:
                    kwargs: dict[str, Any] = {"keepalive": opts.keepalive}
                    if self.v5:
                        kwargs.update(clean_start=False, properties=self._connect_properties())
                    self.client.connect(opts.host, opts.broker_port, **kwargs)
                    first = False
                else:
                    self.client.reconnect()
            except (OSError, ssl.SSLError, ValueError) as e:
                self.service.from_thread(self.service.link_error, self, str(e))
            else:
                self._serve()
                drop, self._drop = self._drop, None
                if drop is not None:
                    delay = drop[1]
                elif self._session_ok:
                    delay = opts.reconnect_initial  # it worked: start the backoff again
                self._session_ok = False
            if self._stopping.is_set():
                break
            # jitter spreads the hubs (and connections) that lost one broker at one instant
            self._stopping.wait(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, opts.reconnect_max)
        if self.client.want_write():
            self.client.loop_write()  # the DISCONNECT stop() queued; paho then closes

    def _serve(self) -> None:
        """paho's loop, reading every packet already received before select() again: paho's
        own loop reads one packet per select() and its header a byte per recv()."""
        client = self.client
        sock = client.socket()
        wake = self._wake_r
        ok = mqtt.MQTT_ERR_SUCCESS
        while sock is not None and not self._stopping.is_set():
            ready = client.buffered()
            wlist = [sock] if client.want_write() else []
            try:
                readable, writable, _ = select.select([sock, wake], wlist, [],
                                                      0 if ready else 0.5)
            except (OSError, ValueError):
                return  # the socket was closed under us (disconnect)
            if wake in readable:
                try:
                    wake.recv(4096)
                except BlockingIOError:
                    pass
            if ready or sock in readable:
                for _ in range(1000):  # bounded, so acks and pings get their turn
                    if client.loop_read() != ok:
                        return
                    if not client.buffered():
                        break
            if client.want_write() and client.loop_write() != ok:
                return
            if client.loop_misc() != ok:
                return
            sock = client.socket()

    def _wake(self, *args: Any) -> None:
        try:
            self._wake_w.send(b"w")
        except (BlockingIOError, OSError):
            pass  # already awake (the buffer is full), or stopping

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            self.service.from_thread(self.service.link_error, self,
                                     f"connection refused: {reason}")
            return
        self._session_ok = True
        opts = self.service.options
        share = f"$share/{opts.shared_group}/" if opts.shared_group else ""
        filters = [opts.uplink.filter]
        filters += [t.filter for t in (opts.status, opts.result) if t is not None]
        self._filters = [share + f for f in filters]
        client.subscribe([(f, 1) for f in self._filters])
        self.service.from_thread(self.service.link_up, self,
                                 bool(getattr(flags, "session_present", False)))

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any,
                      properties: Any) -> None:
        failed = [f"{f} ({r})" for f, r in zip(self._filters, reasons, strict=False)
                  if r.is_failure]
        self.service.from_thread(self.service.subscribed, self, self._filters, failed)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        self.link_number += 1
        # paho reports a dropped socket as reason 0x80 "Unspecified error", which reads like
        # the broker's verdict; say which of the two it was
        drop = self._drop
        if drop is not None:
            why = f"dropped by the hub: {drop[0]}"
        elif getattr(flags, "is_disconnect_packet_from_server", False):
            why = f"the broker sent DISCONNECT: {reason}"
        else:
            why = "connection lost" if str(reason) == "Unspecified error" else str(reason)
        self.service.from_thread(self.service.link_down, self, why)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        props = getattr(msg, "properties", None)
        corr = getattr(props, "CorrelationData", None) if props is not None else None
        item = _Received(msg.topic, msg.payload, msg.mid, msg.qos, corr, self.link_number)
        with self._lock:
            self._inbox.append(item)
            if self._wake_pending:
                return
            self._wake_pending = True
        # one wake-up per batch: at high rates the reactor drains many messages per call
        self.service.from_thread(self._drain)

    # -- the reactor's thread --------------------------------------------------------------

    def _drain(self) -> None:
        with self._lock:
            items = list(self._inbox)
            self._inbox.clear()
            self._wake_pending = False
        self.service.deliver(self, items)

    def finished_all(self, items: list[_Received]) -> None:
        for item in items:
            item.done = True
        self.finished(items[-1])

    def finished(self, item: _Received) -> None:
        """``item`` may be acknowledged; acks leave in arrival order."""
        item.done = True
        acks = self.acks
        while acks and acks[0].done:
            done = acks.popleft()
            if done.session == self.link_number:  # else the broker sends it again anyway
                self.client.ack(done.mid, done.qos)

    def drop(self, reason: str, delay: float) -> None:
        """Close the current link and connect again after about ``delay`` seconds; the
        broker then sends every message not acknowledged yet again. paho's thread sends the
        DISCONNECT (the register-write hook wakes it) and closes the socket."""
        if not self.connected or self._drop is not None:
            return
        self._drop = (reason, delay)
        self.client.disconnect()

    def publish(self, topic: str, payload: bytes, correlation: bytes | None,
                response_topic: str | None) -> None:
        props = None
        if self.v5 and (correlation or response_topic):
            props = Properties(PacketTypes.PUBLISH)
            if correlation:
                props.CorrelationData = correlation
            if response_topic:
                props.ResponseTopic = response_topic
        info = self.client.publish(topic, payload, qos=1, properties=props)
        if info.rc != 0:
            raise ConnectionError(f"publish to {topic} failed: rc {info.rc}")

    def stop(self) -> defer.Deferred:
        self._stopping.set()
        try:
            self.client.disconnect()
        except Exception:  # noqa: BLE001 - already down: nothing to say goodbye to
            pass
        self._wake()
        thread = self._thread
        if thread is None:
            return defer.succeed(None)
        return threads.deferToThread(thread.join, 10)


# ---------------------------------------------------------------------------- the service


@dataclass
class _Pending:
    command: Command
    device: Any
    payload: bytes
    deferred: defer.Deferred
    timer: Any = None


class MqttService(Service):
    """The ``mqtt`` transport: broker connections, uplink ingest, status, commands."""

    def __init__(self, hub: Any, name: str, options: MqttOptions, reactor: Any = None) -> None:
        self.hub = hub
        self.transport_name = name
        self.options = options
        self._reactor = reactor
        self.connections: list[Connection] = []
        self.pending: dict[str, _Pending] = {}
        self._link_event: Event | None = None
        # consecutive failed ingests per connection index: the reconnect backoff after them
        self._ingest_failures: dict[int, int] = {}

    # -- lifecycle -------------------------------------------------------------------------

    def startService(self) -> None:
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = reactor
        super().startService()
        self.hub.metrics.set("mqtt.connected", 0, transport=self.transport_name)
        if self.options.engine == "native":
            from plugins.transports.mqtt_native import NativeConnection

            engine: Any = NativeConnection
        else:
            engine = Connection
        self.connections = [engine(self, i) for i in range(self.options.connections)]
        for c in self.connections:
            c.start()
        self.hub.commands.register_target(self.transport_name, self)
        _log.info("{transport}: connecting to {host}:{port} as {client} ({tls})",
                  transport=self.transport_name, host=self.options.host,
                  port=self.options.broker_port, client=self.connections[0].client_id,
                  tls="TLS" if self.options.tls else "no TLS")

    @defer.inlineCallbacks
    def stopService(self):
        super().stopService()
        self.hub.commands.unregister_target(self.transport_name)
        yield defer.gatherResults([c.stop() for c in self.connections], consumeErrors=True)
        for p in list(self.pending.values()):
            self._complete(p, CommandStatus.FAILED, "the hub is stopping")

    def deliver(self, conn: Any, items: list[_Received]) -> None:
        """Received PUBLISHes of ``conn``, in arrival order, in the reactor thread."""
        handle = self.handle
        acks = conn.acks
        kinds: dict[str, int] = {}
        uplinks: list[tuple[_Received, str, Any]] = []
        for item in items:
            if item.qos > 0:
                acks.append(item)
            kind = handle(conn, item, uplinks)
            if kind is not None:
                kinds[kind] = kinds.get(kind, 0) + 1
        if uplinks:
            self._ingest(conn, uplinks)
        metrics = self.hub.metrics
        for kind, n in kinds.items():  # once per batch: labelled counters cost µs each
            metrics.inc("mqtt.messages", n, transport=self.transport_name, kind=kind)

    def _ingest(self, conn: Any, uplinks: list[tuple[_Received, str, Any]]) -> None:
        """The decoded uplinks of one delivery, in one journal append; acked after it."""
        try:
            d = self.hub.ingest_many([(device, records) for _, device, records in uplinks])
        except Exception:  # noqa: BLE001 - the same remedy as a failed commit
            d = defer.fail()

        def committed(_: Any) -> None:
            self._ingest_failures.pop(conn.index, None)
            conn.finished_all([item for item, _, _ in uplinks])

        d.addCallbacks(committed, self._refused, errbackArgs=(conn, uplinks))

    def _refused(self, failure: Any, conn: Any, uplinks: list[tuple[_Received, str, Any]]) -> None:
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

    def link_up(self, conn: Connection, session_present: bool) -> None:
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

    def subscribed(self, conn: Connection, filters: list[str], failed: list[str]) -> None:
        if failed:
            self.hub.metrics.inc("mqtt.subscribe_errors", transport=self.transport_name)
            _log.error("{transport}: the broker refused the subscriptions {failed}",
                       transport=conn.name, failed=", ".join(failed))
        else:
            _log.info("{transport}: subscribed to {filters}", transport=conn.name,
                      filters=", ".join(filters))

    def link_down(self, conn: Connection, reason: str) -> None:
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

    def link_error(self, conn: Connection, reason: str) -> None:
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

    def handle(self, conn: Connection, item: _Received,
               uplinks: list[tuple[_Received, str, Any]]) -> str | None:
        """One received PUBLISH, in the reactor thread: its kind if it came from a known
        device (``uplink``, ``status``, ``result``), else ``None``. A decoded uplink is added
        to ``uplinks`` (ingested and acked with the rest of its delivery). Never raises."""
        try:
            return self._handle(conn, item, uplinks)
        except Exception:  # a bug here must cost one message, not the connection
            self.hub.metrics.inc("mqtt.internal_errors", transport=self.transport_name)
            _log.failure("{transport}: error handling a message on {topic}: {payload}",
                         transport=conn.name, topic=item.topic, payload=_excerpt(item.payload))
            conn.finished(item)
            return None

    def _handle(self, conn: Connection, item: _Received,
                uplinks: list[tuple[_Received, str, Any]]) -> str | None:
        opts = self.options
        metrics = self.hub.metrics
        topic = item.topic
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
        if kind == "status":
            self._status(conn, item, device)
        elif kind == "result":
            self._result(conn, item, device)
        else:
            self._uplink(conn, item, device, uplinks)
        return kind

    def _uplink(self, conn: Connection, item: _Received, device: Any,
                uplinks: list[tuple[_Received, str, Any]]) -> None:
        payload = item.payload
        try:
            if len(payload) > self.options.max_payload:
                raise DecodeError(f"payload of {len(payload)} bytes exceeds max_payload "
                                  f"{self.options.max_payload}", payload[:EXCERPT])
            records = device.model.decode(device.id, payload, self.hub.clock.seconds())
        except DecodeError as e:
            self._bad_payload(conn, item, device, e)
            return
        uplinks.append((item, device.id, records))

    def _bad_payload(self, conn: Connection, item: _Received, device: Any,
                     error: Exception) -> None:
        self.hub.metrics.inc("mqtt.decode_errors", transport=self.transport_name,
                             model=device.model_name)
        excerpt = getattr(error, "excerpt", b"") or item.payload
        _log.warn("{transport}: bad payload from {device} on {topic}: {error}; payload "
                  "{payload}", transport=conn.name, device=device.id, topic=item.topic,
                  error=error, payload=_excerpt(excerpt))
        conn.finished(item)

    def _status(self, conn: Connection, item: _Received, device: Any) -> None:
        text = item.payload[:64].decode("utf-8", "replace").strip().lower()
        if "offline" in text or text in ("0", "false", "lost"):
            # a last will: presence decides offline by its own timer; say what we heard
            _log.info("{transport}: {device} says it is offline ({text!r})",
                      transport=conn.name, device=device.id, text=text)
        else:
            self.hub.heartbeat(device.id)
        conn.finished(item)

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
        self.hub.commands.mark_sent(command)
        pending.timer = self.hub.clock.callLater(
            min(self.options.command_timeout, command.ttl), self._complete, pending,
            CommandStatus.TIMED_OUT, f"no result on the result topic within "
            f"{min(self.options.command_timeout, command.ttl):g} s")
        return d

    def _result(self, conn: Connection, item: _Received, device: Any) -> None:
        model = device.model
        decode = getattr(model, "decode_command_result", None)
        cid = item.correlation.decode("utf-8", "replace") if item.correlation else None
        outcome = None
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

    def _complete(self, pending: _Pending, status: CommandStatus, detail: str) -> None:
        self.pending.pop(pending.command.id, None)
        if pending.timer is not None and pending.timer.active():
            pending.timer.cancel()
        if not pending.deferred.called:
            pending.deferred.callback(CommandResult(pending.command.id, pending.command.device,
                                                    status, self.hub.clock.seconds(), detail))


@hookimpl
def hub_register_transport_types() -> list[TransportType]:
    return [TransportType("mqtt", MqttService, check_options,
                          "an MQTT broker (paho-mqtt): uplink, status, commands; QoS 1 acked "
                          "after the journal commit", check_address=check_address)]
