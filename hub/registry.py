"""Which devices the hub knows, and how transports find them.

Devices are known before they are trusted: a transport asks :meth:`Registry.resolve` for the
identity a device presented (a DTU registration id plus slave address, an LwM2M endpoint
name, an MQTT topic's device part). Unknown identities are refused and counted
(``registry.refused``), unless an auto-provisioning rule (off by default) matches.

Devices change while the hub runs (the API adds, changes and removes them):
:meth:`Registry.watch` tells each listener of every :class:`hub.contracts.DeviceChange`,
synchronously, so the transports' own indexes follow at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from twisted.logger import Logger

from hub.alarms import Threshold
from hub.config import DeviceSettings, HubConfig, ProvisionRule
from hub.contracts import DeviceChange, DeviceModel
from hub.metrics import Metrics

_log = Logger(namespace="hub.registry")


@dataclass
class Device:
    """A device the hub accepts data from, with its model object and resolved settings."""

    id: str
    model_name: str
    model: DeviceModel
    transport: str | None
    address: Any
    address_key: Any
    name: str
    location: str = ""
    project: str = ""
    group: str = ""
    alarms: dict[str, Threshold] = field(default_factory=dict)
    heartbeat_interval: float = 60.0
    timeout_count: int = 3
    provisioned: bool = False
    #: its rated current (:class:`hub.analysis.load.Rating`) for the load rate, or None
    rated: Any = None

    @property
    def offline_after(self) -> float:
        """Seconds of silence after which the device is offline (interval × count)."""
        return self.heartbeat_interval * self.timeout_count


class UnknownDevice(LookupError):
    pass


class Registry:
    """Devices by id and by (transport, address key)."""

    def __init__(self, config: HubConfig, models: dict[str, DeviceModel],
                 metrics: Metrics) -> None:
        """``models`` maps every name a device may use (configured model instances and
        option-less model types) to its model object."""
        self._config = config
        self._models = models
        self._metrics = metrics
        self._by_id: dict[str, Device] = {}
        self._by_address: dict[tuple[str, Any], Device] = {}
        self._listeners: list[Callable[[DeviceChange], None]] = []
        for d in config.devices:
            self.add(self.build(d))

    def build(self, d: DeviceSettings, provisioned: bool = False) -> Device:
        """The registry's device for checked settings (a YAML device, a provisioned one, one
        of the platform store): its model object and heartbeat resolved. Not added."""
        model = self._models[d.model]
        presence = self._config.presence
        configured = self._config.models.get(d.model)
        # device setting > the model's section in hub.yaml > the model's own default > hub-wide
        interval = (d.heartbeat_interval or (configured and configured.heartbeat_interval)
                    or getattr(model, "heartbeat_interval", None))
        count = (d.timeout_count or (configured and configured.timeout_count)
                 or getattr(model, "timeout_count", None))
        return Device(
            id=d.id, model_name=d.model, model=model, transport=d.transport,
            address=d.address, address_key=d.address_key, name=d.name, location=d.location,
            project=d.project, group=d.group, alarms=d.alarms,
            heartbeat_interval=interval or presence.heartbeat_interval,
            timeout_count=count or presence.timeout_count, provisioned=provisioned,
            rated=d.rated,
        )

    def add(self, device: Device) -> None:
        self._put(device)
        self._tell(DeviceChange("added", device))

    def _put(self, device: Device) -> None:
        if device.id in self._by_id:
            raise ValueError(f"device {device.id!r} is already registered")
        self._by_id[device.id] = device
        if device.transport is not None:
            self._by_address[(device.transport, device.address_key)] = device

    def _pop(self, device_id: str) -> Device:
        device = self._by_id.pop(device_id)
        if self._by_address.get((device.transport, device.address_key)) is device:
            del self._by_address[(device.transport, device.address_key)]
        return device

    def remove(self, device_id: str) -> Device:
        """Forget a device (one deleted through the API); its data is refused from now."""
        device = self._pop(device_id)
        self._tell(DeviceChange("removed", device))
        return device

    def replace(self, device: Device) -> Device:
        """Put ``device`` in the place of the device with its id (changed through the API);
        returns the old one."""
        old = self._pop(device.id)
        try:
            self._put(device)
        except ValueError:
            self._put(old)
            raise
        self._tell(DeviceChange("changed", device, old))
        return old

    def watch(self, listener: Callable[[DeviceChange], None]) -> Callable[[], None]:
        """Tell ``listener`` of every change from now on; returns what stops it."""
        self._listeners.append(listener)

        def stop() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)
        return stop

    def _tell(self, change: DeviceChange) -> None:
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:  # one transport's bug must not stop the others hearing it
                _log.failure("a listener failed on {kind} of device {device}",
                             kind=change.kind, device=change.device.id)

    def __iter__(self) -> Iterator[Device]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, device_id: str) -> bool:
        return device_id in self._by_id

    def get(self, device_id: str) -> Device:
        try:
            return self._by_id[device_id]
        except KeyError:
            raise UnknownDevice(device_id) from None

    def on_transport(self, transport: str) -> list[Device]:
        return [d for d in self._by_id.values() if d.transport == transport]

    def resolve(self, transport: str, address_key: Any,
                identity: str | None = None) -> Device | None:
        """The device at ``address_key`` on ``transport``, or ``None`` (refused and counted).

        ``identity`` is the string the device presented (defaults to ``str(address_key)``);
        auto-provisioning rules match it and the new device takes it as its id.
        """
        device = self._by_address.get((transport, address_key))
        if device is not None:
            return device
        identity = identity if identity is not None else str(address_key)
        if self._config.provisioning_enabled:
            for rule in self._config.provisioning:
                if rule.transport == transport and rule.match.fullmatch(identity):
                    return self._provision(rule, transport, address_key, identity)
        self._metrics.inc("registry.refused", transport=transport)
        _log.warn("refused unknown device {identity!r} on {transport}",
                  identity=identity, transport=transport)
        return None

    def may_have_provisioned(self, device_id: str) -> bool:
        """Whether an auto-provisioning rule would have given a device this id (the id is
        the identity, or ``transport:identity`` when the identity was taken). Provisioned
        devices live only in the journal, so after a restart this is how the hub tells one
        from a device removed from the config."""
        if not self._config.provisioning_enabled:
            return False
        for rule in self._config.provisioning:
            identity = device_id
            prefix = f"{rule.transport}:"
            if identity.startswith(prefix):
                identity = identity[len(prefix):]
            if rule.match.fullmatch(identity):
                return True
        return False

    def _provision(self, rule: ProvisionRule, transport: str, address_key: Any,
                   identity: str) -> Device:
        device_id = identity if identity not in self._by_id else f"{transport}:{identity}"
        settings = DeviceSettings(
            id=device_id, model=rule.model, transport=transport, address=identity,
            address_key=address_key, name=rule.name.format(id=identity), project=rule.project,
            alarms={k: v for k, v in self._config.alarm_defaults.items() if v.enabled},
        )
        device = self.build(settings, provisioned=True)
        self.add(device)
        self._metrics.inc("registry.provisioned", transport=transport)
        _log.info("auto-provisioned device {device} ({identity!r} on {transport}, model {model})",
                  device=device_id, identity=identity, transport=transport, model=rule.model)
        return device
