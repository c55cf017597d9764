"""Fakes for driving the sans-IO DTU session: devices, an I/O recorder, Modbus poll bytes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from plugins.devices.modbus import ModbusMapModel
from plugins.protocols.modbus import rtu
from plugins.transports.tcp_dtu.session import DtuSession

IMEI = "861234567890123"


MODEL = ModbusMapModel.from_file("conf/devices/efd-example.yaml")


@dataclass
class Device:
    id: str
    address_key: tuple[str, int]
    model: Any = MODEL
    model_name: str = "efd"
    transport: str = "dtu"
    address: Any = None
    provisioned: bool = False


DEVICES = [Device("efd-1", (IMEI, 1)), Device("efd-2", (IMEI, 2))]


@dataclass
class FakeIO:
    """Records what the session asks; timers are a dict of key → delay."""

    devices: dict[str, list[Device]] = field(default_factory=lambda: {IMEI: DEVICES})
    writes: list[bytes] = field(default_factory=list)
    timers: dict[Any, float] = field(default_factory=dict)
    closed: str | None = None
    ingested: list[tuple[str, int | None]] = field(default_factory=list)
    beats: list[tuple[str, float]] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)
    sessions: dict[str, DtuSession] = field(default_factory=dict)

    def write(self, data): self.writes.append(data)
    def close(self, abort=False): self.closed = "abort" if abort else "close"
    def peer(self): return "10.0.0.1:5000"
    def set_timer(self, key, delay): self.timers[key] = delay
    def reset_timer(self, key, delay):
        if key in self.timers:
            self.timers[key] = delay
    def cancel_timer(self, key): self.timers.pop(key, None)
    def cancel_timers(self): self.timers.clear()
    def devices_of(self, dtu_id): return self.devices.get(dtu_id, [])
    def claim(self, dtu_id, session): return self.sessions.pop(dtu_id, None)
    def release(self, dtu_id, session): pass
    def ingest(self, device, records, slave): self.ingested.append((device, slave))
    def heartbeat(self, device, now): self.beats.append((device, now))
    def command_sent(self, command): self.sent.append(command.id)
    def command_result(self, run, result): self.results.append(result)
    def round_trip(self, ms): pass


def poll_request(slave):
    return MODEL.request(slave, MODEL.plan()[0])


def poll_answer(slave, value=35):
    poll = MODEL.plan()[0]
    return rtu.read_response(slave, poll.function, rtu.pack_registers([value] * poll.count))


