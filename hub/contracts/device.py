"""The device-model contract: what every device model offers its transport.

A device model is pure code (sans-IO, like h11): bytes in, canonical records out; a
command in, bytes out. It opens no socket, reads no clock (the transport passes
``received_at``) and keeps no state a transport could not reset. Errors are values of a
small hierarchy: :class:`DecodeError` for input it cannot read, :class:`EncodeError` for a
command it cannot express.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from hub.model import Command, Record

__all__ = ["DecodeError", "DeviceModel", "EncodeError"]


class DecodeError(ValueError):
    """The bytes are not a valid frame for this model.

    ``excerpt`` is the offending bytes (the transport logs them as hex with the device id);
    the message says what was wrong and at which offset.
    """

    def __init__(self, message: str, excerpt: bytes = b"", offset: int | None = None) -> None:
        super().__init__(message)
        self.excerpt = excerpt
        self.offset = offset


class EncodeError(ValueError):
    """The model cannot express this command (unknown action, parameter out of range)."""


@runtime_checkable
class DeviceModel(Protocol):
    """The smallest contract every device model meets.

    ``decode`` turns one complete payload (a datagram, an MQTT message, a framed response)
    into canonical records for ``device``, stamped ``received_at`` unless the payload
    carries its own time. It raises :class:`DecodeError` on bad input and never does I/O.
    ``encode_command`` returns the bytes to send, or raises :class:`EncodeError`.

    ``heartbeat_interval`` and ``timeout_count`` are the model's presence defaults
    (T/CFPA 023-2023 6.3.3 i); a device's configuration overrides them. ``None`` means the
    hub-wide default applies.

    Optional fast path: a model may also offer ``decode_block(device, payload,
    received_at)``, returning the same records, where it can as one
    :class:`hub.blocks.ReadingBlock` (a message's readings: one device, one time, a value
    per key; itself a sequence of equal Readings). The MQTT transport calls it when present
    (``json_map`` has it); ``decode`` stays the general contract.

    Richer contracts build on this one: :class:`hub.contracts.PolledDeviceModel` (a device
    the hub polls over a serial line, e.g. Modbus RTU behind a DTU) and
    :class:`hub.contracts.Lwm2mModel` (LwM2M objects).
    """

    heartbeat_interval: float | None
    timeout_count: int | None

    def decode(self, device: str, payload: bytes, received_at: float) -> Sequence[Record]: ...

    def encode_command(self, device: str, command: Command) -> bytes: ...
