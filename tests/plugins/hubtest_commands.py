"""A toy vendor transport that carries commands, installed by the tests as its own
distribution (``hubtest-commands``).

* transport ``cmd_line``: a device connects and sends its id on the first line; a command
  reaches it as ``cmd <command id> <action>``, and the device answers ``done <command id>``
  or ``fail <command id> <reason>``.
* device model ``silent_demo``: a device that only takes commands.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.application.internet import StreamServerEndpointService
from twisted.internet import defer, endpoints
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver

from hub import hookimpl
from hub.contracts import DecodeError, DeviceModelType, TransportType
from hub.model import CommandResult, CommandStatus
from hub.validate import Section, integer

_log = Logger(namespace="hubtest.commands")


class SilentModel:
    heartbeat_interval = None
    timeout_count = None

    def decode(self, device, payload, received_at):
        raise DecodeError("this device sends no data", payload[:32])

    def encode_command(self, device, command):
        return f"cmd {command.id} {command.action}".encode()


@dataclass(frozen=True)
class Options:
    port: int


def check_options(section: Section) -> Options:
    opts = Options(section.get("port", integer(0, 65535)))
    section.finish()
    return opts


class DeviceLine(LineOnlyReceiver):
    delimiter = b"\n"
    device = None

    def lineReceived(self, line):
        f = self.factory
        text = line.decode(errors="replace").strip()
        if self.device is None:
            self.device = f.hub.resolve(f.name, text)
            if self.device is None:
                self.transport.loseConnection()
            else:
                f.connections[self.device.id] = self
                _log.info("cmd_line: {device} connected", device=self.device.id)
            return
        verb, _, rest = text.partition(" ")
        command_id, _, reason = rest.partition(" ")
        d = f.waiting.pop(command_id, None)
        if d is not None:
            status = CommandStatus.SUCCEEDED if verb == "done" else CommandStatus.FAILED
            d.callback(CommandResult(command_id, self.device.id, status,
                                     f.hub.clock.seconds(), reason))

    def connectionLost(self, reason=None):
        if self.device is not None and self.factory.connections.get(self.device.id) is self:
            del self.factory.connections[self.device.id]


class LineFactory(Factory):
    protocol = DeviceLine

    def __init__(self, hub, name):
        self.hub = hub
        self.name = name
        self.connections: dict[str, DeviceLine] = {}
        self.waiting: dict[str, defer.Deferred] = {}


class CommandLineService(StreamServerEndpointService):
    def __init__(self, hub, name, endpoint):
        self.factory = LineFactory(hub, name)
        super().__init__(endpoint, self.factory)
        self.hub = hub
        self.transport_name = name

    def startService(self):
        super().startService()
        self.hub.commands.register_target(self.transport_name, self)

    def stopService(self):
        self.hub.commands.unregister_target(self.transport_name)
        return super().stopService()

    def send_command(self, device, command):
        conn = self.factory.connections.get(device.id)
        if conn is None:
            return defer.fail(RuntimeError(f"{device.id} is not connected"))
        d = self.factory.waiting[command.id] = defer.Deferred()
        conn.sendLine(device.model.encode_command(device.id, command))
        self.hub.commands.mark_sent(command)
        return d


def make_service(hub, name, options: Options):
    from twisted.internet import reactor

    ep = endpoints.TCP4ServerEndpoint(reactor, options.port, interface="127.0.0.1")
    return CommandLineService(hub, name, ep)


@hookimpl
def hub_register_transport_types():
    return [TransportType("cmd_line", make_service, check_options,
                          "test: commands as text lines over TCP")]


@hookimpl
def hub_register_device_models():
    return [DeviceModelType("silent_demo", lambda options: SilentModel())]
