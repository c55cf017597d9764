"""What travels over NATS: subjects, device tokens, the partition function, messages.

Edges publish a device's *decoded records*, not raw frames: a DTU's Modbus answer means
nothing without the request it answers (the session state lives on the edge), the device
model needs no socket, and the core then runs exactly the path of the single process
(presence, alarms, journal) on canonical records. Messages are JSON (orjson): a few hundred
bytes, readable with ``nats sub``, and no schema compiler between the roles.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from hub.model import Event, Quality, Reading, Record

_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_QUALITY = {q.value: q for q in Quality}


def device_token(device: str) -> str:
    """``device`` as one subject token: letters, digits, ``_`` and ``-`` stay; every other
    byte (``.`` would split the token, ``*``/``>`` are wildcards) becomes ``~XX``."""
    raw = device.encode()
    if all(b in _SAFE for b in raw):
        return device
    return "".join(chr(b) if b in _SAFE else f"~{b:02X}" for b in raw)


def token_device(token: str) -> str:
    """The inverse of :func:`device_token`."""
    if "~" not in token:
        return token
    out = bytearray()
    i = 0
    while i < len(token):
        if token[i] == "~":
            out.append(int(token[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(ord(token[i]))
            i += 1
    return out.decode()


def partition_of(token: str, partitions: int) -> int:
    """The partition nats-server's ``{{partition(n,1)}}`` mapping gives ``token``: FNV-1a
    (32 bit) of its bytes modulo ``n`` (server/subject_transform.go). A core needs it to
    know which devices its partitions hold (presence watches only those); publishing
    never does (the server maps the subject)."""
    h = 0x811C9DC5
    for b in token.encode():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h % partitions


def encode_records(device: str, records: Sequence[Record], received_at: float) -> bytes:
    """One device's records as one message, in their order (an event a device reports and
    the readings around it are evaluated in the order the model gave them)."""
    out: list[Any] = []
    for r in records:
        if type(r) is Reading:
            q = r.quality
            out.append([r.quantity, r.channel, r.value, r.ts,
                        None if q is Quality.GOOD else Quality(q).value])
        else:
            out.append(r.to_dict())
    return orjson.dumps({"d": device, "t": received_at, "r": out})


def encode_heartbeat(device: str, ts: float) -> bytes:
    return orjson.dumps({"d": device, "h": ts})


def encode_offline_after(device: str, seconds: float | None) -> bytes:
    return orjson.dumps({"d": device, "o": seconds, "x": 1})


def decode(data: bytes) -> dict[str, Any]:
    """A message as a dict: ``d`` the device and one of ``r`` (records, with ``t`` the time
    the edge received them), ``h`` (a heartbeat's time) or ``x`` (``o``: the device's own
    offline timeout, or ``None``)."""
    msg = orjson.loads(data)
    recs = msg.get("r")
    if recs is not None:
        device = msg["d"]
        msg["r"] = [Reading(device, r[0], r[2], r[3], r[1],
                            Quality.GOOD if r[4] is None else _QUALITY[r[4]])
                    if type(r) is list else Event.from_dict(r) for r in recs]
    return msg
