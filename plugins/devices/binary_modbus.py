"""Built-in plugin: the ``modbus_payload`` device model, for detectors whose 4G DTU in MQTT
mode publishes exactly the bytes it read from the RS-485 line: one or more Modbus RTU
response frames per message.

The decoding is :class:`plugins.devices.modbus.ModbusMapModel`'s (the same YAML register
map as ``modbus_map``); this model only unwraps the payload::

    models:
      efd-mqtt: {type: modbus_payload, map: conf/devices/efd-example.yaml,
                 encoding: raw, slave: 1}

``encoding``: ``raw`` (binary payload), ``hex`` (hex digits, spaces allowed) or ``base64``,
as DTUs variously publish. A payload holding several frames (a DTU that batches its polls)
is split with the RTU framer; bytes between frames that are no frame are an error.
Commands encode to the map's single write request for ``slave``; the device's echo on the
ack topic is checked by :meth:`ModbusPayloadModel.decode_command_result`.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from hub import hookimpl
from hub.contracts import DecodeError, DeviceModelType
from hub.model import Command, Record
from hub.validate import Section, choice, integer
from plugins.devices import modbus
from plugins.devices.json_map import CommandOutcome
from plugins.devices.modbus.model import ModbusMapModel
from plugins.devices.modbus.registermap import RegisterMap
from plugins.protocols.modbus import rtu
from plugins.protocols.modbus.framer import scan_frames

__all__ = ["ModbusPayloadModel", "PayloadOptions", "check_options"]


@dataclass(frozen=True)
class PayloadOptions:
    regmap: RegisterMap
    encoding: str = "raw"
    slave: int = 1


def check_options(section: Section) -> PayloadOptions | None:
    """``map`` (and ``poll_interval``/``max_gap``) as for ``modbus_map``, plus ``encoding``
    and ``slave``."""
    encoding = section.get("encoding", choice("raw", "hex", "base64"), "raw")
    slave = section.get("slave", integer(1, 247), 1)
    regmap = modbus.check_options(section)  # reads map, poll_interval, max_gap; finishes
    if regmap is None:
        return None
    return PayloadOptions(regmap, encoding or "raw", slave or 1)


class ModbusPayloadModel:
    """RTU frames carried in MQTT payloads, decoded by the register map's model."""

    def __init__(self, options: PayloadOptions) -> None:
        self.options = options
        self.inner = ModbusMapModel(options.regmap)
        self.heartbeat_interval = self.inner.heartbeat_interval
        self.timeout_count = self.inner.timeout_count

    def unwrap(self, payload: bytes) -> bytes:
        """The raw bytes of a payload in the configured encoding; :class:`DecodeError`."""
        enc = self.options.encoding
        if enc == "raw":
            return payload
        try:
            if enc == "hex":
                return bytes.fromhex(payload.decode("ascii"))
            return base64.b64decode(payload, validate=True)
        except (UnicodeDecodeError, ValueError, binascii.Error) as e:
            raise DecodeError(f"payload is not {enc}: {e}", payload[:rtu.EXCERPT]) from None

    def decode(self, device: str, payload: bytes, received_at: float) -> list[Record]:
        """Records of every response frame in the payload; raises :class:`DecodeError` for
        a payload that is not wholly valid frames (CRC, length, an unplanned read)."""
        data = self.unwrap(payload)
        if len(data) < 5:
            raise DecodeError(f"{len(data)} bytes is too short for an RTU frame", data)
        try:
            return self.inner.decode(device, data, received_at)
        except DecodeError as whole:
            frames = scan_frames(data)
            if len(frames) < 2 or sum(len(f.raw) for f in frames) != len(data):
                raise whole from None
        out: list[Record] = []
        for frame in frames:  # a DTU that publishes several polls' answers in one message
            out += self.inner.decode(device, frame.raw, received_at)
        return out

    @property
    def actions(self) -> frozenset[str]:
        return self.inner.actions

    def encode_command(self, device: str, command: Command) -> bytes:
        """The map's single write request for ``command``, addressed to ``slave``, in the
        payload encoding."""
        frame = self.inner.encode_command(device, command, self.options.slave)
        if self.options.encoding == "hex":
            return frame.hex().encode()
        if self.options.encoding == "base64":
            return base64.b64encode(frame)
        return frame

    def decode_command_result(self, payload: bytes, sent: bytes | None = None) -> CommandOutcome:
        """The device's answer to a write: its echo (success) or a Modbus exception.
        ``sent`` is the published command payload, checked against the echo when given."""
        data = self.unwrap(payload)
        try:
            if sent is not None:
                self.inner.check_write_response(self.unwrap(sent), data)
            else:
                rtu.parse_frame(data)  # raises ModbusException for an exception answer
        except DecodeError as e:
            return CommandOutcome(None, False, str(e))
        return CommandOutcome(None, True, "")


def factory(options: Any) -> ModbusPayloadModel:
    if options is None:
        raise ValueError("the modbus_payload model needs a register map: declare it under "
                         "models: with type: modbus_payload and map: PATH")
    return ModbusPayloadModel(options)


@hookimpl
def hub_register_device_models() -> list[DeviceModelType]:
    return [DeviceModelType("modbus_payload", factory, check_options,
                            "Modbus RTU response frames carried in MQTT payloads "
                            "(decoded by a modbus_map register map)")]
