"""Sans-IO MQTT 3.1.1 / 5.0 client codec: the packets a subscribing hub sends and receives.

Only the client's side of the protocol, and only what the ``mqtt`` transport uses: CONNECT,
SUBSCRIBE, PUBLISH (QoS 0/1, both ways), PUBACK, PINGREQ and DISCONNECT out; CONNACK,
SUBACK, PUBLISH, PUBACK, PINGRESP and DISCONNECT in. No I/O and no clock: :class:`Decoder`
turns bytes into packet objects, the ``encode_*`` functions turn arguments into bytes.

Why not paho: paho's Python packet handling costs about 37 µs per received QoS 1 message on
the development machine, more than the hub's whole budget at 20,000 msg/s. Decoding a
PUBLISH here is a few slices of one buffer (see ``scripts/bench_mqtt.py``).

References: MQTT Version 3.1.1 (OASIS Standard, 2014) §2–3 and MQTT Version 5.0 (OASIS
Standard, 2019) §2–3; section numbers below are of 5.0 unless marked.

Just over 500 lines, on purpose: the decoder and the encoders share the packet types, the
property table and the reason codes, and each half is read against the other.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

__all__ = [
    "ConnAck", "Decoder", "Disconnect", "Oversized", "PingResp", "ProtocolError", "PubAck",
    "Publish",
    "SubAck", "encode_connect", "encode_disconnect", "encode_pingreq", "encode_puback",
    "encode_publish", "encode_subscribe",
]

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK = 1, 2, 3, 4, 8, 9
PINGREQ, PINGRESP, DISCONNECT = 12, 13, 14

PINGREQ_BYTES = b"\xc0\x00"

# 5.0 §2.2.2.2: property identifier -> value type. "b" byte, "h" two-byte int, "i" four-byte
# int, "v" variable byte int, "s" UTF-8 string, "d" binary data, "p" UTF-8 string pair.
_PROPERTY_TYPES: dict[int, str] = {
    0x01: "b", 0x02: "i", 0x03: "s", 0x08: "s", 0x09: "d", 0x0B: "v", 0x11: "i", 0x12: "s",
    0x13: "h", 0x15: "s", 0x16: "d", 0x17: "b", 0x18: "i", 0x19: "b", 0x1A: "s", 0x1C: "s",
    0x1F: "s", 0x21: "h", 0x22: "h", 0x23: "h", 0x24: "b", 0x25: "b", 0x26: "p", 0x27: "i",
    0x28: "b", 0x29: "b", 0x2A: "b",
}
RESPONSE_TOPIC, CORRELATION_DATA, SESSION_EXPIRY = 0x08, 0x09, 0x11
SERVER_KEEP_ALIVE, REASON_STRING, RECEIVE_MAXIMUM, TOPIC_ALIAS = 0x13, 0x1F, 0x21, 0x23
MAXIMUM_PACKET_SIZE = 0x27
USER_PROPERTY = 0x26

#: 5.0 §2.4 reason codes as the log shows them (the ones a broker sends a subscriber).
REASONS: dict[int, str] = {
    0x00: "Success", 0x01: "Granted QoS 1", 0x02: "Granted QoS 2", 0x04: "Disconnect with Will",
    0x80: "Unspecified error", 0x81: "Malformed Packet", 0x82: "Protocol Error",
    0x83: "Implementation specific error", 0x84: "Unsupported Protocol Version",
    0x85: "Client Identifier not valid", 0x86: "Bad User Name or Password",
    0x87: "Not authorized", 0x88: "Server unavailable", 0x89: "Server busy", 0x8A: "Banned",
    0x8B: "Server shutting down", 0x8C: "Bad authentication method",
    0x8D: "Keep Alive timeout", 0x8E: "Session taken over", 0x8F: "Topic Filter invalid",
    0x90: "Topic Name invalid", 0x93: "Receive Maximum exceeded", 0x95: "Packet too large",
    0x97: "Quota exceeded", 0x99: "Payload format invalid", 0x9A: "Retain not supported",
    0x9B: "QoS not supported", 0x9C: "Use another server", 0x9D: "Server moved",
    0x9E: "Shared Subscriptions not supported", 0x9F: "Connection rate exceeded",
    0xA0: "Maximum connect time", 0xA2: "Wildcard Subscriptions not supported",
}
#: 3.1.1 §3.2.2.3 CONNACK return codes.
V311_CONNACK: dict[int, str] = {
    0: "Connection Accepted", 1: "unacceptable protocol version",
    2: "identifier rejected", 3: "server unavailable", 4: "bad user name or password",
    5: "not authorized",
}


def reason_text(code: int, v5: bool = True) -> str:
    if not v5:
        return V311_CONNACK.get(code, f"return code {code}")
    return REASONS.get(code, f"reason code 0x{code:02X}")


class ProtocolError(ValueError):
    """The broker sent bytes that are not valid MQTT; the connection must be closed."""


# ---------------------------------------------------------------------------- packets in


@dataclass(slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int
    packet_id: int | None
    retain: bool = False
    dup: bool = False
    correlation: bytes | None = None
    response_topic: str | None = None
    #: a topic that is not UTF-8, as it came (``topic`` then shows it with backslash
    #: escapes); only from a decoder with ``lenient_topics``
    raw_topic: bytes | None = None


@dataclass(slots=True)
class Oversized:
    """A PUBLISH longer than the decoder's limit: its header and the start of its payload;
    the rest of its bytes were skipped. Acknowledging it lets the stream go on (an
    unacknowledged message would come back on every new connection)."""

    topic: str
    qos: int
    packet_id: int | None
    size: int  # the packet's remaining length
    excerpt: bytes


@dataclass(slots=True)
class ConnAck:
    session_present: bool
    reason: int  # 5.0 reason code, or the 3.1.1 return code
    properties: dict[int, Any] = field(default_factory=dict)


@dataclass(slots=True)
class SubAck:
    packet_id: int
    reasons: list[int]


@dataclass(slots=True)
class PubAck:
    packet_id: int
    reason: int = 0


@dataclass(slots=True)
class PingResp:
    pass


@dataclass(slots=True)
class Disconnect:
    reason: int = 0
    properties: dict[int, Any] = field(default_factory=dict)


Packet = Union[Publish, Oversized, ConnAck, SubAck, PubAck, PingResp, Disconnect]

_HEAD = 64  # payload bytes an Oversized keeps for the log


class Decoder:
    """Incremental decoder of what a broker sends a client.

    ``feed(data)`` returns every packet completed by ``data``, in order, and keeps the rest
    for the next call. A malformed packet raises :class:`ProtocolError` (the caller closes
    the connection; MQTT has no way to resynchronise a byte stream). A PUBLISH longer than
    ``max_packet`` is not buffered: once its header is in, it comes out as
    :class:`Oversized` and the rest of its bytes are skipped as they arrive, so a broker
    that ignores (or, in 3.1.1, cannot be told) our Maximum Packet Size costs one message,
    not the connection.

    A topic that is not UTF-8 is a malformed packet (§1.5.4), but closing the connection
    over it makes the broker send the same message again on the next one, for ever. With
    ``lenient_topics`` such a PUBLISH comes out with :attr:`Publish.raw_topic` set, so the
    client can count it, log it and acknowledge it.
    """

    def __init__(self, v5: bool, max_packet: int = 1 << 20, lenient_topics: bool = False,
                 publish: Callable[..., Any] | None = None) -> None:
        self.v5 = v5
        self.max_packet = max_packet
        self.lenient_topics = lenient_topics
        #: what a PUBLISH comes out as: called with :class:`Publish`'s fields in order (a
        #: client may build its own record of a message here instead of copying one)
        self.publish: Callable[..., Any] = publish or Publish
        self._buf = b""
        self._skip = 0  # bytes of an oversized PUBLISH still to come and be dropped

    def feed(self, data: bytes) -> list[Packet]:
        if self._skip:
            n = min(self._skip, len(data))
            self._skip -= n
            data = data[n:]
        buf = self._buf + data if self._buf else data
        out: list[Packet] = []
        pos, end = 0, len(buf)
        v5 = self.v5
        while end - pos >= 2:
            first = buf[pos]
            # remaining length: 1-4 bytes, 7 bits each (§1.5.5); one byte is the common case
            b = buf[pos + 1]
            if b < 0x80:
                length, body = b, pos + 2
            else:
                length, mult, i = b & 0x7F, 128, pos + 2
                while True:
                    if i >= end:
                        self._buf = buf[pos:]
                        return out
                    b = buf[i]
                    length += (b & 0x7F) * mult
                    i += 1
                    if b < 0x80:
                        break
                    mult *= 128
                    if mult > 128 ** 3:
                        raise ProtocolError("remaining length longer than 4 bytes")
                body = i
            stop = body + length
            if length > self.max_packet:
                if first >> 4 != PUBLISH:
                    raise ProtocolError(f"packet of {length} bytes exceeds the limit of "
                                        f"{self.max_packet}")
                big = _oversized(first, buf, body, stop, end, length, v5,
                                 self.lenient_topics)
                if big is None:
                    break  # its header is not complete yet
                out.append(big)
                if stop > end:
                    self._skip = stop - end
                    self._buf = b""
                    return out
                pos = stop
                continue
            if stop > end:
                break
            kind = first >> 4
            if kind == PUBLISH:
                out.append(_publish(first, buf, body, stop, v5, self.lenient_topics,
                                    self.publish))
            elif kind == PUBACK:
                out.append(_puback(buf, body, stop, v5))
            elif kind == CONNACK:
                out.append(_connack(buf, body, stop, v5))
            elif kind == SUBACK:
                out.append(_suback(buf, body, stop, v5))
            elif kind == PINGRESP:
                out.append(PingResp())
            elif kind == DISCONNECT:
                out.append(_disconnect(buf, body, stop, v5))
            else:
                raise ProtocolError(f"unexpected packet type {kind} from the broker")
            pos = stop
        self._buf = buf[pos:] if pos < end else b""
        return out


def _need(buf: bytes, pos: int, n: int, stop: int, what: str) -> None:
    if pos + n > stop:
        raise ProtocolError(f"{what} runs past the end of its packet")


def _string(buf: bytes, pos: int, stop: int, what: str) -> tuple[str, int]:
    _need(buf, pos, 2, stop, what)
    n = (buf[pos] << 8) | buf[pos + 1]
    pos += 2
    _need(buf, pos, n, stop, what)
    try:
        return buf[pos:pos + n].decode("utf-8"), pos + n
    except UnicodeDecodeError as e:
        raise ProtocolError(f"{what} is not valid UTF-8") from e


def _varint(buf: bytes, pos: int, stop: int) -> tuple[int, int]:
    value, mult = 0, 1
    for _ in range(4):
        _need(buf, pos, 1, stop, "a variable byte integer")
        b = buf[pos]
        pos += 1
        value += (b & 0x7F) * mult
        if b < 0x80:
            return value, pos
        mult *= 128
    raise ProtocolError("variable byte integer longer than 4 bytes")


def _properties(buf: bytes, pos: int, stop: int) -> tuple[dict[int, Any], int]:
    n, pos = _varint(buf, pos, stop)
    end = pos + n
    if end > stop:
        raise ProtocolError("properties run past the end of their packet")
    props: dict[int, Any] = {}
    while pos < end:
        ident = buf[pos]
        pos += 1
        kind = _PROPERTY_TYPES.get(ident)
        if kind is None:
            raise ProtocolError(f"unknown property identifier 0x{ident:02X}")
        if kind == "b":
            _need(buf, pos, 1, end, "a byte property")
            value: Any = buf[pos]
            pos += 1
        elif kind == "h":
            _need(buf, pos, 2, end, "a two-byte property")
            value = (buf[pos] << 8) | buf[pos + 1]
            pos += 2
        elif kind == "i":
            _need(buf, pos, 4, end, "a four-byte property")
            value = int.from_bytes(buf[pos:pos + 4], "big")
            pos += 4
        elif kind == "v":
            value, pos = _varint(buf, pos, end)
        elif kind == "s":
            value, pos = _string(buf, pos, end, f"property 0x{ident:02X}")
        elif kind == "d":
            _need(buf, pos, 2, end, "binary data")
            m = (buf[pos] << 8) | buf[pos + 1]
            _need(buf, pos + 2, m, end, "binary data")
            value, pos = bytes(buf[pos + 2:pos + 2 + m]), pos + 2 + m
        else:  # a string pair; user properties may repeat
            k, pos = _string(buf, pos, end, "a user property")
            v, pos = _string(buf, pos, end, "a user property")
            props.setdefault(ident, []).append((k, v))
            continue
        props[ident] = value
    return props, end


def _publish(first: int, buf: bytes, pos: int, stop: int, v5: bool,
             lenient_topics: bool = False, make: Callable[..., Any] = Publish) -> Any:
    qos = (first >> 1) & 3
    if qos == 3:
        raise ProtocolError("PUBLISH with QoS 3")
    _need(buf, pos, 2, stop, "the topic name")
    n = (buf[pos] << 8) | buf[pos + 1]
    pos += 2
    _need(buf, pos, n, stop, "the topic name")
    raw_topic = None
    try:
        topic = buf[pos:pos + n].decode("utf-8")
    except UnicodeDecodeError as e:
        if not lenient_topics:
            raise ProtocolError("topic name is not valid UTF-8") from e
        raw_topic = bytes(buf[pos:pos + n])
        topic = raw_topic.decode("utf-8", "backslashreplace")
    pos += n
    packet_id = None
    if qos:
        _need(buf, pos, 2, stop, "the packet identifier")
        packet_id = (buf[pos] << 8) | buf[pos + 1]
        pos += 2
        if packet_id == 0:
            raise ProtocolError("PUBLISH with packet identifier 0")
    correlation = response = None
    if v5:
        if pos < stop and buf[pos] == 0:  # no properties: the usual case, no dict built
            pos += 1
        else:
            props, pos = _properties(buf, pos, stop)
            correlation = props.get(CORRELATION_DATA)
            response = props.get(RESPONSE_TOPIC)
            if TOPIC_ALIAS in props:  # we announce Topic Alias Maximum 0 (§3.3.2.3.4)
                raise ProtocolError("PUBLISH with a topic alias we did not allow")
    return make(topic, buf[pos:stop], qos, packet_id, bool(first & 1), bool(first & 8),
                correlation, response, raw_topic)


def _oversized(first: int, buf: bytes, pos: int, stop: int, end: int, length: int,
               v5: bool, lenient_topics: bool = False) -> Oversized | None:
    """The header of a PUBLISH too long to buffer, or ``None`` until enough of it is in."""
    qos = (first >> 1) & 3
    if qos == 3:
        raise ProtocolError("PUBLISH with QoS 3")
    if end - pos < 2:
        return None
    n = (buf[pos] << 8) | buf[pos + 1]
    head = pos + 2 + n + (2 if qos else 0)
    if head > stop:
        raise ProtocolError("the topic name runs past the end of its packet")
    if end < min(head + _HEAD, stop):
        return None
    try:
        topic = buf[pos + 2:pos + 2 + n].decode("utf-8")
    except UnicodeDecodeError as e:
        if not lenient_topics:
            raise ProtocolError("topic name is not valid UTF-8") from e
        # skipped and acknowledged all the same; the escapes only show it in the log
        topic = buf[pos + 2:pos + 2 + n].decode("utf-8", "backslashreplace")
    packet_id = (buf[head - 2] << 8) | buf[head - 1] if qos else None
    if qos and not packet_id:
        raise ProtocolError("PUBLISH with packet identifier 0")
    if v5:  # the properties are skipped if they are in the buffer, else shown as payload
        try:
            _, after = _properties(buf, head, min(stop, end))
            head = after
        except ProtocolError:
            pass
    return Oversized(topic, qos, packet_id, length, bytes(buf[head:min(head + _HEAD, end)]))


def _puback(buf: bytes, pos: int, stop: int, v5: bool) -> PubAck:
    _need(buf, pos, 2, stop, "the packet identifier")
    packet_id = (buf[pos] << 8) | buf[pos + 1]
    reason = buf[pos + 2] if v5 and stop - pos > 2 else 0
    return PubAck(packet_id, reason)


def _connack(buf: bytes, pos: int, stop: int, v5: bool) -> ConnAck:
    _need(buf, pos, 2, stop, "CONNACK")
    present, reason = bool(buf[pos] & 1), buf[pos + 1]
    props: dict[int, Any] = {}
    if v5 and stop - pos > 2:
        props, _ = _properties(buf, pos + 2, stop)
    return ConnAck(present, reason, props)


def _suback(buf: bytes, pos: int, stop: int, v5: bool) -> SubAck:
    _need(buf, pos, 2, stop, "the packet identifier")
    packet_id = (buf[pos] << 8) | buf[pos + 1]
    pos += 2
    if v5:
        _, pos = _properties(buf, pos, stop)
    return SubAck(packet_id, list(buf[pos:stop]))


def _disconnect(buf: bytes, pos: int, stop: int, v5: bool) -> Disconnect:
    if not v5 or pos >= stop:
        return Disconnect()
    reason = buf[pos]
    props: dict[int, Any] = {}
    if stop - pos > 1:
        props, _ = _properties(buf, pos + 1, stop)
    return Disconnect(reason, props)


# ---------------------------------------------------------------------------- packets out


def _encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _str(s: str) -> bytes:
    raw = s.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise ValueError("string longer than 65,535 bytes")
    return struct.pack(">H", len(raw)) + raw


def _bin(b: bytes) -> bytes:
    if len(b) > 0xFFFF:
        raise ValueError("binary data longer than 65,535 bytes")
    return struct.pack(">H", len(b)) + b


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + _encode_varint(len(body)) + body


def _props(items: list[bytes]) -> bytes:
    raw = b"".join(items)
    return _encode_varint(len(raw)) + raw


def encode_connect(client_id: str, *, keepalive: int, clean: bool, v5: bool,
                   username: str | None = None, password: str | None = None,
                   session_expiry: int = 0, receive_maximum: int = 0,
                   maximum_packet_size: int = 0) -> bytes:
    """CONNECT (§3.1). Clean start off plus a session expiry (5.0) or clean session off
    (3.1.1) keeps the subscription and its QoS 1 queue while the hub is away. A Maximum
    Packet Size (5.0 §3.1.2.11.4) has the broker discard longer messages instead of
    sending them."""
    flags = 0x02 if clean else 0
    if username is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    body = _str("MQTT") + bytes((5 if v5 else 4, flags)) + struct.pack(">H", keepalive)
    if v5:
        props = []
        if session_expiry:
            props.append(bytes((SESSION_EXPIRY,)) + struct.pack(">I", session_expiry))
        if receive_maximum:
            props.append(bytes((RECEIVE_MAXIMUM,)) + struct.pack(">H", receive_maximum))
        if maximum_packet_size:
            props.append(bytes((MAXIMUM_PACKET_SIZE,)) + struct.pack(">I", maximum_packet_size))
        body += _props(props)
    body += _str(client_id)
    if username is not None:
        body += _str(username)
    if password is not None:
        body += _bin(password.encode("utf-8"))
    return _packet(CONNECT << 4, body)


def encode_subscribe(packet_id: int, filters: list[tuple[str, int]], *, v5: bool) -> bytes:
    body = struct.pack(">H", packet_id) + (b"\x00" if v5 else b"")
    for topic_filter, qos in filters:
        body += _str(topic_filter) + bytes((qos,))
    return _packet((SUBSCRIBE << 4) | 0x02, body)


def encode_publish(topic: str, payload: bytes, *, qos: int, packet_id: int | None, v5: bool,
                   correlation: bytes | None = None, response_topic: str | None = None,
                   retain: bool = False) -> bytes:
    body = _str(topic)
    if qos:
        if not packet_id:
            raise ValueError("a QoS 1 PUBLISH needs a packet identifier")
        body += struct.pack(">H", packet_id)
    if v5:
        props = []
        if response_topic:
            props.append(bytes((RESPONSE_TOPIC,)) + _str(response_topic))
        if correlation:
            props.append(bytes((CORRELATION_DATA,)) + _bin(correlation))
        body += _props(props)
    return _packet((PUBLISH << 4) | (qos << 1) | int(retain), body + payload)


_PUBACK = struct.Struct(">BBH")


def encode_puback(packet_id: int) -> bytes:
    # reason code Success with no properties may be left out (5.0 §3.4.2.1): 3.1.1's form
    return _PUBACK.pack(PUBACK << 4, 2, packet_id)


def encode_pubacks(packet_ids: Sequence[int]) -> bytes:
    """:func:`encode_puback` of each of ``packet_ids``, back to back: one commit's acks in
    one write. Each PUBACK is 0x40 0x02 and the id, so it packs as one 32-bit integer."""
    if not packet_ids:
        return b""
    if min(packet_ids) < 1 or max(packet_ids) > 0xFFFF:
        raise ValueError("a packet identifier is 1-65535")
    head = (PUBACK << 28) | (2 << 16)
    return struct.pack(f">{len(packet_ids)}I", *[head | i for i in packet_ids])


def encode_pingreq() -> bytes:
    return PINGREQ_BYTES


def encode_disconnect() -> bytes:
    # both versions: no reason code means 0x00 Normal disconnection (5.0 §3.14.2.1)
    return bytes((DISCONNECT << 4, 0))
