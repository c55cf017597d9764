"""The sans-IO MQTT codec of the ``native`` engine, against the byte examples of the MQTT
specifications (OASIS MQTT 3.1.1, 2014; MQTT 5.0, 2019). The engine's behaviour against a
real broker is in tests/test_mqtt.py, where every test runs with both engines."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plugins.transports.mqtt import codec


@pytest.mark.parametrize("value, encoded", [
    # MQTT 3.1.1 §2.2.3 Table 2.4 "Size of Remaining Length field" (its bounds)
    (0, "00"), (127, "7f"), (128, "8001"), (16383, "ff7f"), (16384, "808001"),
    (2097151, "ffff7f"), (2097152, "80808001"), (268435455, "ffffff7f"),
])
def test_remaining_length_examples_of_the_specification(value, encoded):
    assert codec._encode_varint(value).hex() == encoded
    # and the decoder reads it in a packet header: a PINGRESP-type-free packet would be
    # invalid, so read it through the properties' variable byte integer
    assert codec._varint(bytes.fromhex(encoded), 0, len(encoded) // 2) == (value, len(encoded) // 2)


def test_connect_variable_header_example_of_3_1_1():
    """3.1.1 §3.1.2.10 Figure 3.6 (non-normative): protocol name "MQTT", level 4, flags
    0xCE (user name, password, will retain 0, will QoS 1, will flag, clean session) and keep
    alive 10. We never send a will, so check the header with our own flags: user name +
    password (0xC0), clean session off, keep alive 10."""
    packet = codec.encode_connect("c", keepalive=10, clean=False, v5=False,
                                  username="u", password="p")
    assert packet[0] == 0x10
    body = packet[2:]
    assert body[:10] == bytes([0x00, 0x04, 0x4D, 0x51, 0x54, 0x54, 0x04, 0xC0, 0x00, 0x0A])
    assert body[10:] == b"\x00\x01c\x00\x01u\x00\x01p"
    assert packet[1] == len(body)


def test_connect_v5_carries_session_expiry_and_receive_maximum():
    packet = codec.encode_connect("hub", keepalive=60, clean=False, v5=True,
                                  session_expiry=604800, receive_maximum=1000)
    body = packet[2:]
    assert body[6] == 5 and body[7] == 0x00  # level 5; clean start off, no credentials
    # properties: length 8 = 0x11 + 4 bytes, 0x21 + 2 bytes (MQTT 5.0 §3.1.2.11)
    assert body[10:19] == bytes([8, 0x11, 0x00, 0x09, 0x3A, 0x80, 0x21, 0x03, 0xE8])
    assert body[19:] == b"\x00\x03hub"


def test_publish_variable_header_example_of_3_1_1():
    """3.1.1 §3.3.2.3 Figure 3.11 (non-normative): topic "a/b", packet identifier 10."""
    packet = codec.encode_publish("a/b", b"", qos=1, packet_id=10, v5=False)
    assert packet == bytes([0x32, 7, 0x00, 0x03, 0x61, 0x2F, 0x62, 0x00, 0x0A])
    (p,) = codec.Decoder(v5=False).feed(packet)
    assert (p.topic, p.packet_id, p.qos, p.payload) == ("a/b", 10, 1, b"")


def test_subscribe_payload_example_of_3_1_1():
    """3.1.1 §3.8.3.1 Figure 3.22 (non-normative): filters "a/b" (QoS 1) and "c/d" (QoS 2)
    after packet identifier 10; fixed header 0x82 (§3.8.1: reserved bits 0010)."""
    packet = codec.encode_subscribe(10, [("a/b", 1), ("c/d", 2)], v5=False)
    assert packet == bytes([0x82, 14, 0x00, 0x0A, 0x00, 0x03, 0x61, 0x2F, 0x62, 0x01,
                            0x00, 0x03, 0x63, 0x2F, 0x64, 0x02])


def test_suback_payload_example_of_3_1_1():
    """3.1.1 §3.9.3.1 Figure 3.26 (non-normative): return codes 0, 1, 2 and 0x80 (failure)."""
    (p,) = codec.Decoder(v5=False).feed(bytes([0x90, 6, 0x00, 0x0A, 0x00, 0x01, 0x02, 0x80]))
    assert p == codec.SubAck(10, [0, 1, 2, 0x80])


def test_puback_pingreq_disconnect_bytes():
    assert codec.encode_puback(0x1234) == bytes([0x40, 0x02, 0x12, 0x34])  # §3.4
    assert codec.encode_pingreq() == bytes([0xC0, 0x00])  # §3.12
    assert codec.encode_disconnect() == bytes([0xE0, 0x00])  # §3.14


def test_v5_publish_with_correlation_data_and_response_topic_round_trips():
    packet = codec.encode_publish("esm/d1/down", b'{"a":1}', qos=1, packet_id=7, v5=True,
                                  correlation=b"cmd-1", response_topic="esm/d1/ack")
    (p,) = codec.Decoder(v5=True).feed(packet)
    assert (p.topic, p.payload, p.packet_id, p.correlation, p.response_topic) == (
        "esm/d1/down", b'{"a":1}', 7, b"cmd-1", "esm/d1/ack")


def test_v5_connack_properties_and_disconnect_reason():
    # CONNACK: session present, success, properties: Server Keep Alive 30, a reason string
    connack = bytes([0x20, 10, 0x01, 0x00, 7, 0x13, 0x00, 0x1E, 0x1F, 0x00, 0x01, 0x78])
    disconnect = bytes([0xE0, 2, 0x8B, 0x00])  # Server shutting down, no properties
    ack, bye = codec.Decoder(v5=True).feed(connack + disconnect)
    assert ack.session_present and ack.reason == 0
    assert ack.properties == {codec.SERVER_KEEP_ALIVE: 30, codec.REASON_STRING: "x"}
    assert bye.reason == 0x8B
    assert codec.reason_text(bye.reason) == "Server shutting down"
    assert codec.reason_text(4, v5=False) == "bad user name or password"


def test_packets_split_at_every_byte_boundary():
    stream = b"".join(
        codec.encode_publish(f"esm/d{i}/up", bytes(range(i * 3)), qos=i % 2,
                             packet_id=i + 1 if i % 2 else None, v5=True) for i in range(40))
    stream += bytes([0xD0, 0x00])  # PINGRESP
    whole = codec.Decoder(v5=True).feed(stream)
    assert len(whole) == 41
    for cut in range(1, len(stream)):
        d = codec.Decoder(v5=True)
        assert d.feed(stream[:cut]) + d.feed(stream[cut:]) == whole


def test_a_long_payload_uses_a_multi_byte_remaining_length():
    payload = bytes(200_000)
    packet = codec.encode_publish("t", payload, qos=0, packet_id=None, v5=False)
    assert packet[1] & 0x80 and packet[2] & 0x80 and not packet[3] & 0x80
    d = codec.Decoder(v5=False)
    out = [p for i in range(0, len(packet), 4096) for p in d.feed(packet[i:i + 4096])]
    assert [p.payload for p in out] == [payload]


@pytest.mark.parametrize("v5, data, message", [
    (False, bytes([0x36, 3, 0, 1, 0x61]), "QoS 3"),
    (False, bytes([0x32, 5, 0, 1, 0x61, 0, 0]), "packet identifier 0"),
    (False, bytes([0x30, 3, 0, 2, 0xFF]), "topic name"),
    (False, bytes([0x30, 4, 0, 2, 0xC3, 0x28]), "UTF-8"),
    (False, bytes([0x10, 0]), "unexpected packet type 1"),
    (False, bytes([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]), "longer than 4 bytes"),
    (True, bytes([0x30, 6, 0, 1, 0x61, 2, 0x99, 0x00]), "unknown property"),
    (True, bytes([0x30, 7, 0, 1, 0x61, 3, 0x23, 0, 1]), "topic alias"),
])
def test_malformed_packets_raise_protocol_errors(v5, data, message):
    with pytest.raises(codec.ProtocolError, match=message):
        codec.Decoder(v5=v5).feed(data)


def test_a_packet_over_the_limit_that_is_no_publish_is_refused_before_it_is_buffered():
    with pytest.raises(codec.ProtocolError, match="exceeds the limit of 1000"):
        codec.Decoder(v5=False, max_packet=1000).feed(bytes([0x90, 0x80, 0x80, 0x01]))


@pytest.mark.parametrize("v5", [False, True])
def test_a_publish_over_the_limit_is_skipped_and_the_stream_goes_on(v5):
    """An oversized PUBLISH comes out as Oversized (topic, packet id, the start of its
    payload) and its bytes are dropped as they arrive, never buffered whole; the packets
    after it decode, at every cut of the stream."""
    big = codec.encode_publish("esm/d1/up", b"A" * 300_000, qos=1, packet_id=9, v5=v5,
                               correlation=b"c" if v5 else None)
    small = codec.encode_publish("esm/d1/up", b"ok", qos=1, packet_id=10, v5=v5)
    stream = small + big + small + bytes([0xD0, 0x00])
    expected = [codec.Publish("esm/d1/up", b"ok", 1, 10),
                codec.Oversized("esm/d1/up", 1, 9, len(big) - 4, b"A" * 64),
                codec.Publish("esm/d1/up", b"ok", 1, 10), codec.PingResp()]
    assert codec.Decoder(v5=v5, max_packet=1000).feed(stream) == expected
    for cut in [*range(1, 40), len(small) + 80, len(stream) - 20, *range(5000, 300_000, 70_001)]:
        d = codec.Decoder(v5=v5, max_packet=1000)
        assert d.feed(stream[:cut]) + d.feed(stream[cut:]) == expected, cut
    d = codec.Decoder(v5=v5, max_packet=1000)
    out = []
    for i in range(0, len(stream), 4096):
        out += d.feed(stream[i:i + 4096])
        assert len(d._buf) < 5000  # never the whole oversized packet
    assert out == expected


def test_connect_v5_carries_the_maximum_packet_size():
    packet = codec.encode_connect("hub", keepalive=60, clean=False, v5=True,
                                  maximum_packet_size=131_080)
    body = packet[2:]
    # properties: length 5 = 0x27 + four-byte integer (MQTT 5.0 §3.1.2.11.4)
    assert body[10:16] == bytes([5, 0x27, 0x00, 0x02, 0x00, 0x08])


@settings(max_examples=400, deadline=None)
@given(st.booleans(), st.binary(max_size=300))
def test_arbitrary_bytes_only_ever_raise_protocol_error(v5, data):
    d = codec.Decoder(v5=v5)
    try:
        d.feed(data)
    except codec.ProtocolError:
        pass


@pytest.mark.parametrize("v5", [False, True])
def test_a_lenient_decoder_hands_over_a_topic_that_is_not_utf8(v5):
    """The transport's decoder: a topic that is not UTF-8 comes out with its bytes, so the
    message can be acknowledged (closing the link would have the broker send it again for
    ever); the packets around it decode as usual, also when it is oversized."""
    def publish(topic: bytes, payload: bytes, packet_id: int) -> bytes:
        body = len(topic).to_bytes(2, "big") + topic + packet_id.to_bytes(2, "big")
        body += (b"\x00" if v5 else b"") + payload
        return bytes([0x32]) + codec._encode_varint(len(body)) + body

    good = codec.encode_publish("esm/d1/up", b"ok", qos=1, packet_id=3, v5=v5)
    stream = publish(b"esm/\xc3\x28/up", b"x", 1) + good + publish(b"a\xff", b"B" * 2000, 2)
    out = codec.Decoder(v5=v5, max_packet=1000, lenient_topics=True).feed(stream)
    assert out[0] == codec.Publish("esm/\\xc3(/up", b"x", 1, 1, raw_topic=b"esm/\xc3\x28/up")
    assert out[1] == codec.Publish("esm/d1/up", b"ok", 1, 3)
    assert type(out[2]) is codec.Oversized and out[2].topic == "a\\xff"
    assert out[2].packet_id == 2
    with pytest.raises(codec.ProtocolError, match="UTF-8"):
        codec.Decoder(v5=v5).feed(stream)
