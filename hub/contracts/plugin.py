"""What plugins contribute: named factories for transports, device models, sinks and SMS
providers.

A plugin returns instances of these from its ``hub_register_*`` hooks
(see :mod:`hub.hookspecs`). ``check_options`` runs while the configuration is validated,
before anything starts; it reads the type's options section through a
:class:`hub.validate.Section` and returns whatever object the factory wants (a dataclass is
usual). ``factory`` runs when the hub is built from a valid configuration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from twisted.application.service import IService

    from hub.contracts.device import DeviceModel
    from hub.contracts.sms import SmsProvider
    from hub.contracts.transport import TransportPort
    from hub.core import Hub
    from hub.validate import Section

__all__ = ["DeviceModelType", "SinkType", "SmsProviderType", "TransportType",
           "accept_no_options", "default_address"]


def accept_no_options(section: Section) -> None:
    """The default ``check_options``: the type takes no options; any key is an error."""
    section.finish()
    return None


def default_address(address: Any) -> Any:
    """A device address as a hashable key: a string stays a string, a mapping becomes its
    sorted items. Transports with structured addresses supply their own check."""
    from hub.validate import Invalid, describe

    if isinstance(address, (str, int)) and not isinstance(address, bool):
        return str(address)
    if isinstance(address, dict):
        return tuple(sorted((str(k), str(v)) for k, v in address.items()))
    raise Invalid(f"expected a string or a mapping, got {describe(address)}")


@dataclass(frozen=True)
class TransportType:
    """A transport: ``factory(port, name, options)`` returns a Twisted ``IService``.

    ``port`` is the hub seen from a transport (:class:`hub.contracts.TransportPort`):
    resolve a device, ingest its records, report presence and command progress, count.
    A transport uses nothing else of the hub."""

    name: str
    factory: Callable[[TransportPort, str, Any], IService]
    check_options: Callable[[Section], Any] = accept_no_options
    description: str = ""
    #: validates ``devices[].address`` for devices on this transport (raise
    #: :class:`hub.validate.Invalid`) and returns the hashable key the transport looks devices
    #: up by, e.g. ``("862...", 1)`` for a DTU id and a slave address.
    check_address: Callable[[Any], Any] = lambda address: default_address(address)


@dataclass(frozen=True)
class SinkType:
    """A sink: ``factory(hub, name, options)`` returns a Twisted ``IService`` that reads the
    journal from the cursor named ``name``."""

    name: str
    factory: Callable[[Hub, str, Any], IService]
    check_options: Callable[[Section], Any] = accept_no_options
    description: str = ""


@dataclass(frozen=True)
class DeviceModelType:
    """A device model: ``factory(options)`` returns an object following
    :class:`hub.contracts.DeviceModel` (or a richer contract its transport knows:
    :class:`hub.contracts.PolledDeviceModel`, :class:`hub.contracts.Lwm2mModel`)."""

    name: str
    factory: Callable[[Any], DeviceModel]
    check_options: Callable[[Section], Any] = accept_no_options
    description: str = ""


@dataclass(frozen=True)
class SmsProviderType:
    """An SMS provider: ``factory(options, reactor)`` returns a
    :class:`hub.contracts.SmsProvider`.

    ``check_options`` reads the ``provider`` section of an ``sms`` sink's options."""

    name: str
    factory: Callable[[Any, Any], SmsProvider]
    check_options: Callable[[Section], Any] = accept_no_options
    description: str = ""
