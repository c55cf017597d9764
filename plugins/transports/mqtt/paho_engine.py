"""The ``paho`` engine of the ``mqtt`` transport: one broker connection served by paho-mqtt in
a thread of its own (see :class:`Connection`)."""

from __future__ import annotations

import random
import select
import socket
import ssl
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from twisted.internet import defer
from twisted.logger import Logger

from hub.supervisor import Supervisor, run_in_thread
from plugins.transports.mqtt.engine import EngineBase, Received

if TYPE_CHECKING:
    from plugins.transports.mqtt.service import MqttService

_log = Logger(namespace="hub.mqtt")

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

class Connection(EngineBase):
    """One paho client and the thread that runs its network loop."""

    service: MqttService

    def __init__(self, service: MqttService, index: int) -> None:
        super().__init__(service, index)
        opts = service.options
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
        self._inbox: deque[Received] = deque()
        self._wake_pending = False
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.supervisor: Supervisor | None = None
        self._dialled = False  # connect() got through once: reconnect() from then on
        self._filters: list[str] = []
        self._session_ok = False  # paho's thread only: a CONNACK accepted since last backoff
        # (reason, backoff) of a link the reactor asked to drop; read by paho's thread
        self._drop: tuple[str, float] | None = None

    # -- paho's thread ---------------------------------------------------------------------

    def start(self) -> None:
        """Start paho's thread under a supervisor: should it die (a bug in paho or in our
        callbacks), it is logged, counted and started again (see :mod:`hub.supervisor`)."""
        self.supervisor = self.service.supervise(self, "paho engine", self._start_thread,
                                                 self._crashed)
        self.supervisor.start()

    def _start_thread(self) -> defer.Deferred:
        return run_in_thread(self.service._reactor, self._main, f"mqtt-{self.name}")

    def _main(self) -> None:
        try:
            self._run()
        except BaseException:
            # the broker must see this link end, or it would wait for our acks on it until
            # the keep-alive runs out; the restart's reconnect() opens a new socket
            sock = self.client.socket()
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass
            raise

    def _crashed(self, failure: Any) -> None:
        """After paho's thread died, in the reactor thread (so nothing races us on the
        client): the link is down, whatever paho's state says."""
        self.link_number += 1
        self._session_ok = False
        self._drop = None
        self.service.link_down(self, f"the paho engine's thread crashed "
                                     f"({failure.type.__name__}: {failure.getErrorMessage()})")

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
        while not self._stopping.is_set():
            self.client.reset_buffer()
            try:
                if not self._dialled:
                    kwargs: dict[str, Any] = {"keepalive": opts.keepalive}
                    if self.v5:
                        kwargs.update(clean_start=False, properties=self._connect_properties())
                    self.client.connect(opts.host, opts.broker_port, **kwargs)
                    self._dialled = True
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
        self._filters = self.service.options.subscriptions()
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
        try:
            topic, bad = msg.topic, None
        except UnicodeDecodeError:
            # paho decodes the topic on each read of .topic; the bytes are only in _topic.
            # Raising here would end paho's loop and this thread (issue 12): the service
            # counts, logs and acknowledges the message instead.
            bad = bytes(getattr(msg, "_topic", b""))
            topic = bad.decode("utf-8", "backslashreplace")
        item = Received(topic, msg.payload, msg.mid, msg.qos, corr, self.link_number,
                        bad_topic=bad)
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

    def finished(self, item: Received) -> None:
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
        """Fires when paho's thread has ended (or after 10 s if it hangs)."""
        ended = self.supervisor.stop() if self.supervisor is not None else defer.succeed(None)
        self._stopping.set()
        try:
            self.client.disconnect()
        except Exception:  # noqa: BLE001 - already down: nothing to say goodbye to
            pass
        self._wake()
        ended.addTimeout(10, self.service._reactor)
        ended.addErrback(lambda f: _log.warn("{transport}: paho's thread did not end within "
                                             "10 s", transport=self.name))
        return ended

