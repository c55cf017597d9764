"""A test distribution implementing every hook, to show each one is called as documented."""

from __future__ import annotations

from twisted.application.internet import TimerService

from hub import hookimpl
from hub.contracts import DeviceModelType, EncodeError, SinkType, TransportType
from hub.model import Reading
from hub.validate import Section, integer, number

calls: list[tuple] = []


class MemorySink(TimerService):
    """The sink contract in miniature: read from the cursor, deliver, then advance it."""

    def __init__(self, hub, name, options):
        super().__init__(1.0, self.poll)
        self.clock = hub.clock
        self.hub, self.name_, self.batch = hub, name, options
        self.delivered: list = []

    def poll(self):
        journal = self.hub.journal
        records = journal.read(journal.get_cursor(self.name_), self.batch)
        if records:
            self.delivered += [r for _, r in records]
            journal.set_cursor(self.name_, records[-1][0])


def sink_options(section: Section) -> int:
    batch = section.get("batch", integer(1, 10000), 100)
    section.finish()
    return batch


class Idle(TimerService):
    def __init__(self, hub, name, options):
        super().__init__(3600, lambda: None)
        self.clock = hub.clock
        calls.append(("transport_built", name))


@hookimpl
def hub_register_transport_types():
    return [TransportType("idle", Idle)]


class Scaled:
    """Big-endian u16 register × factor = residual current in mA."""

    heartbeat_interval = None
    timeout_count = None

    def __init__(self, factor):
        self.factor = factor

    def decode(self, device, payload, received_at):
        return [Reading(device, "residual_current", int.from_bytes(payload[:2], "big")
                        * self.factor, received_at, "L1")]

    def encode_command(self, device, command):
        raise EncodeError("read-only")


def scaled_options(section: Section) -> float:
    factor = section.get("factor", number(0.001, 1000))
    section.finish()
    return factor


@hookimpl
def hub_register_device_models():
    return [DeviceModelType("scaled", Scaled, scaled_options)]


@hookimpl
def hub_register_sink_types():
    return [SinkType("memory", MemorySink, sink_options)]


@hookimpl
def hub_add_commands(subparsers):
    p = subparsers.add_parser("hello", help="say hello")
    p.add_argument("--name", default="world")
    p.set_defaults(func=lambda args: calls.append(("hello", args.name)) or 7)


@hookimpl
def hub_startup(hub):
    calls.append(("startup", hub.config.name))


@hookimpl
def hub_shutdown(hub):
    calls.append(("shutdown", hub.journal.last_seq()))


@hookimpl
def hub_event_recorded(event):
    calls.append(("event", event.code, event.state.value))


@hookimpl
def hub_device_online(device, ts):
    calls.append(("online", device))


@hookimpl
def hub_device_offline(device, ts, last_seen):
    calls.append(("offline", device))


@hookimpl
def hub_command_finished(command, result):
    calls.append(("command", command.action, result.status.value))
