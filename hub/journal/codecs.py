"""Rows and records: the JSON forms of events, commands, results, acknowledgements and
deliveries in the journal's ``data`` column, and the decoders of stored rows."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from hub.journal.schema import KIND_ACK, KIND_COMMAND, KIND_DELIVERY, KIND_EVENT, KIND_RESULT
from hub.model import (
    Acknowledgement,
    Command,
    CommandResult,
    CommandStatus,
    Delivery,
    DeliveryStatus,
    Event,
    Quality,
)

QUALITY = {q.value: q for q in Quality}


def dumps(d: Mapping[str, Any]) -> str:
    """Compact JSON for the ``data`` column; Chinese messages stay readable and short."""
    return json.dumps(d, ensure_ascii=False, separators=(",", ":"))


def command_to_dict(c: Command) -> dict[str, Any]:
    """The JSON-ready form of a :class:`Command`."""
    return {
        "id": c.id,
        "device": c.device,
        "action": c.action,
        "ts": c.ts,
        "channel": c.channel,
        "params": dict(c.params),
        "requested_by": c.requested_by,
        "ttl": c.ttl,
    }


def command_from_dict(d: Mapping[str, Any]) -> Command:
    """Rebuild a :class:`Command` written by :func:`command_to_dict`."""
    return Command(
        id=d["id"],
        device=d["device"],
        action=d["action"],
        ts=d["ts"],
        channel=d.get("channel", ""),
        params=d.get("params") or {},
        requested_by=d.get("requested_by", ""),
        ttl=d.get("ttl", 60.0),
    )


def result_to_dict(r: CommandResult) -> dict[str, Any]:
    """The JSON-ready form of a :class:`CommandResult`."""
    return {
        "command_id": r.command_id,
        "device": r.device,
        "status": CommandStatus(r.status).value,
        "ts": r.ts,
        "detail": r.detail,
    }


def result_from_dict(d: Mapping[str, Any]) -> CommandResult:
    """Rebuild a :class:`CommandResult` written by :func:`result_to_dict`."""
    return CommandResult(
        command_id=d["command_id"],
        device=d["device"],
        status=CommandStatus(d["status"]),
        ts=d["ts"],
        detail=d.get("detail", ""),
    )


def ack_to_dict(a: Acknowledgement) -> dict[str, Any]:
    """The JSON-ready form of an :class:`Acknowledgement`."""
    return {"event_id": a.event_id, "by": a.by, "ts": a.ts, "device": a.device,
            "note": a.note}


def ack_from_dict(d: Mapping[str, Any]) -> Acknowledgement:
    return Acknowledgement(event_id=d["event_id"], by=d["by"], ts=d["ts"], device=d["device"],
                           note=d.get("note", ""))


def delivery_to_dict(r: Delivery) -> dict[str, Any]:
    """The JSON-ready form of a :class:`Delivery`."""
    return {"sink": r.sink, "target": r.target, "status": DeliveryStatus(r.status).value,
            "ts": r.ts, "device": r.device, "event_ids": list(r.event_ids),
            "items": list(r.items), "message_id": r.message_id, "detail": r.detail,
            "key": r.key}


def delivery_from_dict(d: Mapping[str, Any]) -> Delivery:
    return Delivery(sink=d["sink"], target=d["target"], status=DeliveryStatus(d["status"]),
                    ts=d["ts"], device=d.get("device", "hub"),
                    event_ids=tuple(d.get("event_ids") or ()), items=tuple(d.get("items") or ()),
                    message_id=d.get("message_id", ""), detail=d.get("detail", ""),
                    key=d.get("key", ""))


def decode_event(data: str) -> Event:
    return Event.from_dict(json.loads(data))


DECODE = {
    KIND_EVENT: decode_event,
    KIND_COMMAND: lambda data: command_from_dict(json.loads(data)),
    KIND_RESULT: lambda data: result_from_dict(json.loads(data)),
    KIND_ACK: lambda data: ack_from_dict(json.loads(data)),
    KIND_DELIVERY: lambda data: delivery_from_dict(json.loads(data)),
}
