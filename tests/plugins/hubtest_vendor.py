"""A toy vendor plugin, installed by the tests as its own distribution (``hubtest-vendor``)
through real entry-point metadata. It doubles as the example in the README.

* transport ``line_tcp``: a device connects, sends its id on the first line, then one JSON
  frame per line; the transport answers ``ok <seq>`` once the frame is committed to the
  journal, or ``error <reason>`` for a frame the model rejects (the connection stays up).
* device model ``json_demo``: a frame is ``{"temperature/T1": 25.0, "alarm/fault_arc": 1}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from twisted.application.internet import StreamServerEndpointService
from twisted.internet import endpoints
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineOnlyReceiver

from hub import hookimpl
from hub.contracts import DecodeError, DeviceModelType, EncodeError, TransportType
from hub.model import Event, EventKind, EventState, Reading
from hub.validate import Section, integer, string


class JsonDemoModel:
    heartbeat_interval = None
    timeout_count = None

    def decode(self, device, payload, received_at):
        try:
            obj = json.loads(payload)
        except ValueError as e:
            raise DecodeError(f"not JSON: {e}", payload[:32]) from None
        if not isinstance(obj, dict):
            raise DecodeError("not a JSON object", payload[:32])
        out = []
        for key, value in obj.items():
            quantity, _, channel = key.partition("/")
            if quantity == "alarm":  # a flag the device evaluates itself
                out.append(Event(device, EventKind.ALARM, channel,
                                 EventState.RAISED if value else EventState.CLEARED,
                                 received_at, source="device"))
            else:
                out.append(Reading(device, quantity, float(value), received_at, channel))
        return out

    def encode_command(self, device, command):
        raise EncodeError("no commands")


@dataclass(frozen=True)
class LineOptions:
    host: str
    port: int


def check_options(section: Section) -> LineOptions:
    opts = LineOptions(section.get("host", string(), "127.0.0.1"),
                       section.get("port", integer(0, 65535)))
    section.finish()
    return opts


class DeviceLine(LineOnlyReceiver):
    delimiter = b"\n"
    device = None

    def lineReceived(self, line):
        hub = self.factory.hub
        if self.device is None:
            self.device = hub.resolve(self.factory.name, line.decode(errors="replace").strip())
            if self.device is None:
                self.transport.loseConnection()
            return
        try:
            records = self.device.model.decode(self.device.id, line, hub.clock.seconds())
        except DecodeError as e:
            hub.metrics.inc("transport.decode_errors", transport=self.factory.name)
            self.sendLine(f"error {e}".encode())
            return
        d = hub.ingest(self.device.id, records)
        d.addCallback(lambda seq: self.sendLine(f"ok {seq}".encode()))


class LineFactory(Factory):
    protocol = DeviceLine

    def __init__(self, hub, name):
        self.hub = hub
        self.name = name


def make_service(hub, name, options: LineOptions):
    from twisted.internet import reactor

    ep = endpoints.TCP4ServerEndpoint(reactor, options.port, interface=options.host)
    return StreamServerEndpointService(ep, LineFactory(hub, name))


@hookimpl
def hub_register_transport_types():
    return [TransportType("line_tcp", make_service, check_options, "test: JSON lines over TCP")]


@hookimpl
def hub_register_device_models():
    return [DeviceModelType("json_demo", lambda options: JsonDemoModel())]
