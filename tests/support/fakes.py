"""A simulated two-device hub configuration and a fake command target, for tests that
build a hub in-process."""

from __future__ import annotations

CONFIG = {
    "presence": {"heartbeat_interval": 10, "timeout_count": 3},
    "alarms": {"warning_ratio": 0.9, "defaults": {
        "temperature": {"alarm": 80, "hysteresis": 2},
    }},
    "transports": {"sim": {"type": "simulator", "interval": 3600}},
    "devices": [
        {"id": "d1", "model": "simulated", "transport": "sim", "address": "normal"},
        {"id": "d2", "model": "simulated", "transport": "sim", "address": "silent",
         "heartbeat": {"interval": 5, "timeout_count": 2}},
    ],
}


class FakeTarget:
    """A transport's command side, answering as told (the wire is the transports' issue)."""

    def __init__(self, answer):
        self.answer = answer
        self.sent = []

    def send_command(self, device, command):
        from twisted.internet import defer

        self.sent.append((device.id, command.action))
        if self.answer == "never":
            return defer.Deferred()
        if self.answer == "refuse":
            return defer.fail(RuntimeError("device answered exception 02"))
        return defer.succeed(None)

