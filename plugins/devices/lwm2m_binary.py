"""Built-in plugin: the ``lwm2m_binary`` device model, for NB-IoT detectors that carry their
own frames in LwM2M object 19 (BinaryAppDataContainer, the "transparent mode" of CTWing
and OneNET) and leave the decoding to a model that reads bytes::

    models:
      nb-efd-frames:
        type: lwm2m_binary
        frames:                                # the model that decodes each frame, inline
          type: modbus_payload                 # any device model type that decodes bytes
          map: conf/devices/efd-example.yaml
        uplink: /19/0/0                        # observed; every resource instance is a frame
        downlink: /19/1/0                      # commands are written here (instance 0)

``frames`` names a device model type and gives its options, checked by that type (errors
name ``models.<id>.frames.<key>``). An uplink value that is not opaque bytes is an error;
an empty one is skipped. A ``downlink`` on a resource (``/19/1/0``, a multiple resource)
is written whole with the frame as its instance 0, the form Leshan and wakaama accept (and
LwM2M 1.0, which has no Write on a resource instance); ``/19/1/0/0`` writes the instance
itself (LwM2M 1.1). A frame's time is its value's own ``ts`` (SenML), else the uplink
instance's 2 Data Creation Time, else ``received_at``; the frame model may still use a time
the frame carries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hub import hookimpl
from hub.contracts import DecodeError, DeviceModel, DeviceModelType
from hub.contracts.lwm2m import Lwm2mOperation, Lwm2mValue, Path
from hub.model import Command, Record
from hub.validate import Invalid, Section, describe
from plugins.devices.lwm2m_options import check_time, parse_path, path_text

__all__ = ["BinaryOptions", "Lwm2mBinaryModel", "check_options", "factory"]

_CREATION_TIME = 2  # resource 2 of an object 19 instance: Data Creation Time
_NOT_FRAMES = ("lwm2m_binary", "lwm2m_ipso")


@dataclass(frozen=True)
class BinaryOptions:
    frame_type: DeviceModelType
    frame_options: Any
    uplink: Path = (19, 0, 0)
    downlink: Path = (19, 1, 0)


def _model_types() -> dict[str, DeviceModelType]:
    """The device model types the hub has. ``check_options`` sees only its section, so the
    types are collected again, the way the hub does (same entry points, same environment
    switches); a type registered only in-process is not found here."""
    from hub.pluginmanager import PluginError, make_plugins

    try:
        return make_plugins().models
    except PluginError as e:
        raise Invalid(f"cannot list the device model types: {e}") from None


def check_options(section: Section) -> BinaryOptions | None:
    """``frames`` (required: ``{type: <model type>, ...its options}``), ``uplink`` and
    ``downlink`` (resource or resource-instance paths)."""
    uplink = section.get("uplink", lambda v: parse_path(v, (3, 4)), (19, 0, 0))
    downlink = section.get("downlink", lambda v: parse_path(v, (3, 4)), (19, 1, 0))
    frames = _frames(section)
    section.finish(allowed_extra=("comment",))
    if frames is None or uplink is None or downlink is None:
        return None
    return BinaryOptions(frames[0], frames[1], uplink, downlink)


def _frames(section: Section) -> tuple[DeviceModelType, Any] | None:
    raw = section.raw("frames")
    if raw is None:
        return None
    where = section.path / "frames"
    if not isinstance(raw, dict) or "type" not in raw:
        section.checker.error(where, "expected the frame model inline: {type: <device model "
                              f"type>, ...its options}} (e.g. {{type: modbus_payload, map: "
                              f"conf/devices/efd-example.yaml}}); got {describe(raw)}")
        return None
    inner = Section(section.checker, where, raw)
    type_name = inner.get("type", _frame_type_name)
    if type_name is None:
        return None
    types = section.checker.check(where / "type", _model_types, default=None)
    if types is None:
        return None
    t = types.get(type_name)
    if t is None:
        section.checker.error(where / "type", f"{type_name!r} is not a known device model "
                              f"type (known: {', '.join(sorted(types))}; see `hub plugins`)")
        return None
    errors = len(section.checker.errors)
    options = section.checker.check(where, t.check_options, inner)
    return None if len(section.checker.errors) > errors else (t, options)


def _frame_type_name(v: Any) -> str:
    if not isinstance(v, str):
        raise Invalid(f"expected a device model type, got {describe(v)}")
    if v in _NOT_FRAMES:
        raise Invalid(f"{v} decodes LwM2M values, not frames: name a model type that "
                      "decodes bytes (modbus_payload, json_map, a vendor's)")
    return v


class Lwm2mBinaryModel:
    """Frames in object 19, decoded and encoded by ``frames`` (any :class:`DeviceModel`)."""

    def __init__(self, frames: DeviceModel, uplink: Path = (19, 0, 0),
                 downlink: Path = (19, 1, 0)) -> None:
        self.frames = frames
        self.uplink = uplink
        self.downlink = downlink
        self.heartbeat_interval = getattr(frames, "heartbeat_interval", None)
        self.timeout_count = getattr(frames, "timeout_count", None)

    @property
    def actions(self) -> frozenset[str]:
        """What the frame model can encode (every action, if it does not say)."""
        from hub.model import COMMAND_ACTIONS

        return frozenset(getattr(self.frames, "actions", COMMAND_ACTIONS))

    def observe_paths(self, registered: Sequence[Path]) -> list[Path]:
        """The uplink instance (``/19/0``): its notifications carry every frame resource
        instance and the creation time."""
        return [self.uplink[:2]]

    def decode_values(self, device: str, values: Sequence[Lwm2mValue],
                      received_at: float) -> list[Record]:
        """The records of every frame at the uplink path, in the order the values came;
        other values are skipped. Raises :class:`DecodeError` naming the path of a value
        that is not bytes or a frame the frame model refuses."""
        n = len(self.uplink)
        base = received_at
        for v in values:
            if v.path == self.uplink[:2] + (_CREATION_TIME,):
                t = check_time(_time(v.value), v.path)
                base = t if t is not None else base
        out: list[Record] = []
        for v in values:
            if v.path[:n] != self.uplink or v.value in (None, b""):
                continue
            if not isinstance(v.value, bytes):
                raise DecodeError(f"{path_text(v.path)}: expected opaque bytes, got "
                                  f"{type(v.value).__name__} {v.value!r:.40}",
                                  str(v.value).encode()[:64])
            ts = check_time(v.ts, v.path) or base
            try:
                out += self.frames.decode(device, v.value, ts)
            except DecodeError as e:
                raise DecodeError(f"{path_text(v.path)}: {e}", e.excerpt, e.offset) from None
        return out

    def decode(self, device: str, payload: bytes, received_at: float) -> list[Record]:
        """A frame sent as a plain CoAP uplink: the frame model's records."""
        return list(self.frames.decode(device, payload, received_at))

    def encode_operations(self, device: str, command: Command) -> list[Lwm2mOperation]:
        """One write of the frame model's bytes for ``command`` to the downlink path."""
        return [Lwm2mOperation("write", self.downlink,
                               self.frames.encode_command(device, command))]

    def encode_command(self, device: str, command: Command) -> bytes:
        return self.frames.encode_command(device, command)


def _time(x: Any) -> float | None:
    """A Time value (epoch seconds) as the codec gave it; untyped TLV is a big-endian int.
    ``None`` for a value of another type; ``inf`` for an integer beyond any float (which
    :func:`check_time` then refuses)."""
    if isinstance(x, bytes) and len(x) in (1, 2, 4, 8):
        x = int.from_bytes(x, "big", signed=True)
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        try:
            return float(x)
        except OverflowError:
            return math.inf if x > 0 else -math.inf
    return None


def factory(options: BinaryOptions | None) -> Lwm2mBinaryModel:
    if options is None:
        raise ValueError("the lwm2m_binary model needs its frame model: declare it under "
                         "models: with type: lwm2m_binary and frames: {type: ..., ...}")
    frames = options.frame_type.factory(options.frame_options)
    return Lwm2mBinaryModel(frames, options.uplink, options.downlink)


@hookimpl
def hub_register_device_models() -> list[DeviceModelType]:
    return [DeviceModelType("lwm2m_binary", factory, check_options,
                            "device frames carried in LwM2M object 19 (/19/0/0 up, "
                            "/19/1/0 down), decoded by another device model")]
