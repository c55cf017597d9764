"""A stand-in MQTT broker for what a real one will not do: send a subscriber a PUBLISH whose
topic is not UTF-8 (Mosquitto drops the publisher of such a packet; a broker that does not
check, or a bit flipped on the way, can still hand it to the hub).

It serves one client at a time on loopback, in a thread: CONNACK (no session), SUBACK
granting QoS 1, PINGRESP; :meth:`FakeBroker.publish` sends a QoS 1 PUBLISH with the topic as
raw bytes, and the packet ids of the client's PUBACKs are collected in ``acked``."""

from __future__ import annotations

import socket
import threading

from plugins.transports.mqtt.codec import _encode_varint as _varint


class FakeBroker:
    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.acked: list[int] = []
        self._acks = threading.Condition()  # woken at each PUBACK
        self.subscribed = threading.Event()
        self._client: socket.socket | None = None
        self._v5 = True
        self._lock = threading.Lock()
        self._stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                self._client = client
            try:
                self._session(client)
            except OSError:
                pass
            finally:
                client.close()

    def _read(self, sock: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise OSError("closed")
            data += chunk
        return data

    def _session(self, sock: socket.socket) -> None:
        while True:
            first = self._read(sock, 1)[0]
            length, mult = 0, 1
            while True:
                b = self._read(sock, 1)[0]
                length += (b & 0x7F) * mult
                mult *= 128
                if b < 0x80:
                    break
            body = self._read(sock, length)
            kind = first >> 4
            if kind == 1:  # CONNECT: protocol level after the name "MQTT"
                self._v5 = body[6] == 5
                self._send(bytes([0x20, 3, 0, 0, 0]) if self._v5 else bytes([0x20, 2, 0, 0]))
            elif kind == 8:  # SUBSCRIBE: grant QoS 1 to each filter
                pos = 2
                if self._v5:
                    pos += 1 + body[2]  # properties (short here)
                n = 0
                while pos < len(body):
                    pos += 2 + int.from_bytes(body[pos:pos + 2], "big") + 1
                    n += 1
                rest = body[:2] + (b"\x00" if self._v5 else b"") + bytes([1] * n)
                self._send(bytes([0x90]) + _varint(len(rest)) + rest)
                self.subscribed.set()
            elif kind == 4:  # PUBACK
                with self._acks:
                    self.acked.append(int.from_bytes(body[:2], "big"))
                    self._acks.notify_all()
            elif kind == 12:  # PINGREQ
                self._send(bytes([0xD0, 0]))
            elif kind == 14:  # DISCONNECT
                return

    def _send(self, data: bytes) -> None:
        with self._lock:
            if self._client is not None:
                self._client.sendall(data)

    def publish(self, topic: bytes, payload: bytes, packet_id: int) -> None:
        body = len(topic).to_bytes(2, "big") + topic + packet_id.to_bytes(2, "big")
        body += (b"\x00" if self._v5 else b"") + payload
        self._send(bytes([0x32]) + _varint(len(body)) + body)

    def wait_acked(self, ids: set[int], timeout: float = 30) -> None:
        with self._acks:
            if not self._acks.wait_for(lambda: ids <= set(self.acked), timeout):
                raise AssertionError(f"PUBACKs {sorted(ids - set(self.acked))} never came; "
                                     f"got {self.acked}")

    def close(self) -> None:
        self._stop = True
        self._server.close()
        with self._lock:
            if self._client is not None:
                try:
                    self._client.close()
                except OSError:
                    pass
