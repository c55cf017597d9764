"""Every contract between the hub and its plugins, in one place.

Transports and device models meet only here: a device model imports ``hub.contracts`` (and
``hub.model`` for the canonical records), never a transport; a transport drives a model
through one of these protocols and talks to the hub only through :class:`TransportPort`.

========================  ==================================================================
:mod:`.device`            :class:`DeviceModel`, :class:`DecodeError`, :class:`EncodeError`
:mod:`.polled`            :class:`PolledDeviceModel` (devices the hub polls over a serial
                          line: Modbus RTU, DL/T 645 behind a DTU), :class:`StreamFramer`,
                          :class:`FrameError`, :func:`check_unit`
:mod:`.lwm2m`             :class:`Lwm2mModel`, :class:`Lwm2mValue`, :class:`Lwm2mOperation`,
                          :class:`ContentFormat`
:mod:`.transport`         :class:`TransportPort` (the hub as a transport sees it),
                          :class:`CommandTarget`, :class:`DeviceInfo`
:mod:`.sink`              :class:`SinkPort` (the hub as a sink sees it: clock, metrics, the
                          journal as :class:`SinkJournal`, its own fault events, devices);
                          the sink framework that uses it is :mod:`hub.sinks`
:mod:`.sms`               :class:`SmsProvider`, :class:`SmsMessage`, :class:`SendResult`
:mod:`.plugin`            what hooks return: :class:`TransportType`,
                          :class:`DeviceModelType`, :class:`SinkType`,
                          :class:`SmsProviderType`
========================  ==================================================================

The protocols are ``typing.Protocol``: implement them structurally, no base class needed.
"""

from hub.contracts.device import DecodeError, DeviceModel, EncodeError
from hub.contracts.lwm2m import (
    ContentFormat,
    Lwm2mModel,
    Lwm2mOperation,
    Lwm2mValue,
    Path,
    Value,
)
from hub.contracts.plugin import (
    DeviceModelType,
    SinkType,
    SmsProviderType,
    TransportType,
    accept_no_options,
    default_address,
)
from hub.contracts.polled import (
    NEED_DATA,
    FrameError,
    PolledDeviceModel,
    ResponseFrame,
    StreamFramer,
    check_unit,
    register_unit_form,
)
from hub.contracts.sink import SinkJournal, SinkPort
from hub.contracts.sms import SendResult, SmsMessage, SmsProvider
from hub.contracts.transport import (
    CommandTarget,
    DeviceChange,
    DeviceInfo,
    Gateway,
    GatewaySource,
    TransportPort,
)

__all__ = [
    "NEED_DATA",
    "CommandTarget",
    "ContentFormat",
    "DecodeError",
    "DeviceChange",
    "DeviceInfo",
    "DeviceModel",
    "DeviceModelType",
    "EncodeError",
    "FrameError",
    "Lwm2mModel",
    "Lwm2mOperation",
    "Lwm2mValue",
    "Path",
    "PolledDeviceModel",
    "ResponseFrame",
    "SendResult",
    "SinkJournal",
    "SinkPort",
    "SinkType",
    "SmsMessage",
    "SmsProvider",
    "SmsProviderType",
    "StreamFramer",
    "Gateway",
    "GatewaySource",
    "TransportPort",
    "TransportType",
    "Value",
    "accept_no_options",
    "check_unit",
    "default_address",
    "register_unit_form",
]
