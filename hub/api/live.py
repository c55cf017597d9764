"""Devices of the platform store in the running hub's registry.

A device created through the API is checked like a YAML device (its transport's
``check_address`` gives the address key) and added to the registry and to presence at once,
with the hub-wide alarm defaults. Transports that ask the registry per frame (the simulator,
``mqtt``) see a new or deleted device from their next frame; ``coap_lwm2m`` finds a new
endpoint at its next registration. Stored devices are loaded before the transports start.

Not yet: ``coap_lwm2m`` keeps its endpoint index, so a deleted endpoint still counts until a
restart; ``tcp_dtu`` indexes the slaves behind each DTU once; an open session of a deleted
device is not closed. Each needs the transport to be told (a registry-change hook).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.config import DeviceSettings
from hub.store import Device as StoredDevice
from hub.validate import Invalid

if TYPE_CHECKING:
    from hub.core import Hub
    from hub.registry import Device


class DeviceRefused(ValueError):
    """The device cannot run here (unknown model or transport, bad address)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def registry_device(hub: Hub, d: StoredDevice) -> Device:
    """The registry's device for a stored one, checked as the configuration checks."""
    section = hub.config.transports.get(d.transport)
    if section is None:
        raise DeviceRefused("transport", f"unknown transport {d.transport!r} (configured: "
                            f"{', '.join(hub.config.transports) or 'none'})")
    if d.model not in hub.models:
        model_type = hub.plugins.models.get(d.model)
        if model_type is None:
            raise DeviceRefused("model", f"unknown model {d.model!r}")
        # a model type used by name, as a YAML device may (it has no options)
        hub.models[d.model] = model_type.factory(None)
    try:
        key = hub.plugins.transports[section.type].check_address(d.address)
    except (Invalid, ValueError, TypeError) as e:
        raise DeviceRefused("address", f"bad address for a {section.type} device: {e}") \
            from None
    settings = DeviceSettings(
        id=d.id, model=d.model, transport=d.transport, address=d.address, address_key=key,
        name=d.name, location=d.location, project=d.project,
        alarms={k: v for k, v in hub.config.alarm_defaults.items() if v.enabled})
    return hub.registry._from_settings(settings)  # the one place YAML devices are made too


def clashes(hub: Hub, device: Device) -> str | None:
    """Why ``device`` cannot join the registry, or None."""
    if device.id in hub.registry:
        return f"a device {device.id!r} is already running"
    for other in hub.registry.on_transport(device.transport or ""):
        if other.address_key == device.address_key and other.id != device.id:
            return f"device {other.id!r} already has this address on {device.transport!r}"
    return None


def go_live(hub: Hub, device: Device) -> None:
    hub.registry.add(device)
    hub.presence.track([device.id])


def go_away(hub: Hub, device_id: str) -> None:
    if device_id in hub.registry:
        hub.registry.remove(device_id)
        hub.presence.untrack(device_id)


def load_stored(hub: Hub, stored: list[StoredDevice]) -> list[str]:
    """Put the stored devices in the registry (before the transports start); the problems of
    those that cannot run, one line each."""
    problems = []
    for d in stored:
        try:
            device = registry_device(hub, d)
        except DeviceRefused as e:
            problems.append(f"device {d.id!r} of the platform store: {e}")
            continue
        why = clashes(hub, device)
        if why:
            problems.append(f"device {d.id!r} of the platform store: {why}")
            continue
        hub.registry.add(device)  # presence tracks every registry device at open
    return problems
