"""Devices of the platform store in the running hub's registry.

A device created through the API is checked like a YAML device (its transport's
``check_address`` gives the address key) and added to the registry and to presence at once,
with the hub-wide alarm defaults overridden by its own ``settings`` (``alarms`` and
``heartbeat``, checked by the configuration's own checks). The registry tells the running
transports of each change (:meth:`hub.registry.Registry.watch`): ``tcp_dtu`` polls a new
slave of a connected DTU at once, stops polling a deleted one and closes the DTU's session
when it was its last device, and accepts a new DTU id at its next connect; ``coap_lwm2m``
updates its endpoint index and ends a deleted device's registration; ``mqtt`` fails a
deleted device's pending commands; the simulator forgets a deleted device's state. Stored
devices are loaded before the transports start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hub.alarms import Threshold
from hub.config import DeviceSettings, stored_device_settings
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
    alarms, interval, count, rated = device_settings(hub, d.settings or {})
    settings = DeviceSettings(
        id=d.id, model=d.model, transport=d.transport, address=d.address, address_key=key,
        name=d.name, location=d.location, project=d.project, alarms=alarms,
        heartbeat_interval=interval, timeout_count=count, rated=rated)
    return hub.registry.build(settings)  # the one place YAML devices are made too


def device_settings(hub: Hub, raw: dict[str, Any]
                    ) -> tuple[dict[str, Threshold], float | None, int | None, Any]:
    """A stored device's ``alarms`` (over the hub-wide defaults), ``heartbeat`` and
    ``rated`` current, checked as a YAML device's; :class:`DeviceRefused` names the first
    problem."""
    try:
        return stored_device_settings(raw, hub.config.alarm_defaults)
    except ValueError as e:
        raise DeviceRefused("settings", str(e)) from None


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


def change(hub: Hub, device: Device) -> None:
    """Put a changed device in the registry in place of the old one (the transports are told
    one change, not a removal and an addition)."""
    if device.id in hub.registry:
        hub.registry.replace(device)
        hub.presence.reschedule(device.id)
    else:
        go_live(hub, device)


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
