"""The LwM2M-model contract: between the ``coap_lwm2m`` transport, its content codecs, the
LwM2M simulator and LwM2M device models. Vendors writing an LwM2M device model implement
:class:`Lwm2mModel` and import only this module (never the transport).

A path is a tuple of integers: ``(object,)``, ``(object, instance)``,
``(object, instance, resource)`` or ``(object, instance, resource, resource_instance)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Literal, Protocol, Union, runtime_checkable

__all__ = ["ContentFormat", "Lwm2mModel", "Lwm2mOperation", "Lwm2mValue", "Path", "Value"]

if TYPE_CHECKING:
    from hub.model import Command, Record

Path = tuple[int, ...]
#: A decoded LwM2M value. TLV carries no types: without a known resource type a TLV value
#: stays ``bytes`` (see ``resources.py`` for the types of the objects we know).
Value = Union[int, float, str, bool, bytes, None]


class ContentFormat(IntEnum):
    """CoAP Content-Format numbers an LwM2M server meets (IANA registry)."""

    TEXT = 0
    LINK_FORMAT = 40
    OPAQUE = 42
    CBOR = 60
    SENML_JSON = 110
    SENML_CBOR = 112
    LWM2M_TLV = 11542
    LWM2M_JSON = 11543
    LWM2M_CBOR = 11544
    OLD_TLV = 1542  # pre-registration numbers some LwM2M 1.0 devices still send
    OLD_JSON = 1543


@dataclass(frozen=True, slots=True)
class Lwm2mValue:
    """One resource (or resource instance) value; ``ts`` is the time the payload gave it
    (UTC epoch seconds), ``None`` when the payload had none."""

    path: Path
    value: Value
    ts: float | None = None


@dataclass(frozen=True, slots=True)
class Lwm2mOperation:
    """One LwM2M downlink operation a model asks the transport to perform.

    ``write``: ``value`` is written to ``path`` (a resource); the transport picks the
    content format the device announced (TLV or SenML JSON). ``execute``: ``value`` is the
    optional argument string. ``read``: ``value`` is unused.
    """

    kind: Literal["read", "write", "execute"]
    path: Path
    value: Value = None


@runtime_checkable
class Lwm2mModel(Protocol):
    """What an LwM2M device model offers the ``coap_lwm2m`` transport.

    ``observe_paths`` chooses, from the object instances the device registered (its link
    payload, e.g. ``[(3, 0), (3303, 0), (3317, 1)]``), the paths the hub observes after each
    registration. ``decode_values`` turns decoded values (from a notification or a read
    response) into canonical records; it raises :class:`hub.contracts.DecodeError` on values it
    cannot interpret and never does I/O. ``encode_operations`` turns a command into LwM2M
    operations, performed in order, or raises :class:`hub.contracts.EncodeError`.

    ``decode`` (plain CoAP uplink, e.g. ``POST /up/{imei}`` with an opaque payload) follows
    :class:`hub.contracts.DeviceModel`; a model that has no such uplink raises ``DecodeError``.
    """

    heartbeat_interval: float | None
    timeout_count: int | None

    def observe_paths(self, registered: Sequence[Path]) -> list[Path]: ...

    def decode_values(self, device: str, values: Sequence[Lwm2mValue],
                      received_at: float) -> Sequence[Record]: ...

    def encode_operations(self, device: str, command: Command) -> list[Lwm2mOperation]: ...

    def decode(self, device: str, payload: bytes, received_at: float) -> Sequence[Record]: ...
