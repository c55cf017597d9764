"""What plugins contribute: named factories for transports, device models and sinks.

A plugin returns instances of these from its ``hub_register_*`` hooks
(see :mod:`hub.hookspecs`). ``check_options`` runs while the configuration is validated,
before anything starts; it reads the type's options section through a
:class:`hub.validate.Section` and returns whatever object the factory wants (a dataclass is
usual). ``factory`` runs when the hub is built from a valid configuration.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from twisted.application.service import IService

    from hub.core import Hub
    from hub.model import Command, Record
    from hub.validate import Section


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
    """A transport: ``factory(hub, name, options)`` returns a Twisted ``IService``."""

    name: str
    factory: Callable[[Hub, str, Any], IService]
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
    """A device model: ``factory(options)`` returns an object following :class:`DeviceModel`
    (or a richer protocol its transport knows, such as a Modbus polling plan)."""

    name: str
    factory: Callable[[Any], DeviceModel]
    check_options: Callable[[Section], Any] = accept_no_options
    description: str = ""


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
    """

    heartbeat_interval: float | None
    timeout_count: int | None

    def decode(self, device: str, payload: bytes, received_at: float) -> Sequence[Record]: ...

    def encode_command(self, device: str, command: Command) -> bytes: ...


# --------------------------------------------------------------------------------------------
# SMS providers (used by the ``sms`` sink; each provider is a small plugin of its own)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmsMessage:
    """One text to send to one or more phones.

    ``text`` is the message fully rendered by the sink (what a GSM modem or a local gateway
    sends as is). Cloud providers in mainland China only send pre-approved templates, so the
    same message also travels as ``template`` (the message kind: ``alarm``, ``fault``,
    ``offline``, ``recovery``, ``summary``; the provider maps it to its own template code)
    and ``params`` (the template's variables, all strings). ``key`` identifies the message
    for logs and for duplicate suppression on the provider's side where one exists.
    """

    phones: tuple[str, ...]  # E.164, e.g. "+8613800138000"
    text: str
    template: str
    params: Mapping[str, str]
    key: str


@dataclass(frozen=True)
class SendResult:
    """What the provider said about one phone number of a :class:`SmsMessage`.

    ``permanent`` marks a failure that a retry cannot mend (an invalid number, a template
    the provider rejected, a signature it refused): the sink records it and raises a fault
    instead of retrying.
    """

    phone: str
    ok: bool
    message_id: str = ""
    permanent: bool = False
    error: str = ""


@runtime_checkable
class SmsProvider(Protocol):
    """The one interface behind which every SMS provider sits.

    ``send`` returns a Deferred that fires with one :class:`SendResult` per phone of the
    message, in order. It errbacks only when the attempt as a whole failed in a way worth
    retrying (no connection, a timeout, an HTTP 5xx, a modem that does not answer): the
    sink then retries the whole message with backoff.

    Optional attributes the sink reads when present: ``max_parts`` (the most parts a text
    may take), ``reserved_chars`` (room the provider's signature takes in each text) and
    ``send_deadline`` (seconds a send handed over now may take, e.g. behind a queue; the
    sink then waits at least that long before it counts the attempt as failed).
    """

    name: str

    def send(self, message: SmsMessage) -> Any: ...


@dataclass(frozen=True)
class SmsProviderType:
    """An SMS provider: ``factory(options, reactor)`` returns an :class:`SmsProvider`.

    ``check_options`` reads the ``provider`` section of an ``sms`` sink's options."""

    name: str
    factory: Callable[[Any, Any], SmsProvider]
    check_options: Callable[[Section], Any] = accept_no_options
    description: str = ""
