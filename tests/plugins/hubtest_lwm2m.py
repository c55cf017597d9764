"""Test-only device models for the ``coap_lwm2m`` transport, installed by the tests as the
distribution ``hubtest-lwm2m`` (the real ``lwm2m_ipso`` model is written elsewhere).

* ``hubtest_lwm2m`` (an LwM2M model): observes ``/3303/<i>/5700`` of every registered
  temperature instance i (channel T<i+1>); commands: reset → execute /3/0/4, trip/close →
  write /3312/0/5850, self_test → read /3303/0/5700. Plain uplink: ``T1=23.5``.
* ``hubtest_coap_plain`` (a plain model): uplink ``T1=23.5``; a command is ``CMD:<action>``.
"""

from __future__ import annotations

from hub import hookimpl
from hub.contracts import DecodeError, DeviceModelType, EncodeError
from hub.contracts.lwm2m import Lwm2mOperation
from hub.model import Reading


def _text_uplink(device, payload, received_at):
    try:
        key, _, value = payload.decode("ascii").partition("=")
        return [Reading(device, "temperature", float(value), received_at, key)]
    except (UnicodeDecodeError, ValueError):
        raise DecodeError("not CHANNEL=VALUE", payload[:16]) from None


class TestLwm2mModel:
    heartbeat_interval = None
    timeout_count = None

    def observe_paths(self, registered):
        return [(3303, p[1], 5700) for p in registered if len(p) == 2 and p[0] == 3303]

    def decode_values(self, device, values, received_at):
        out = []
        for v in values:
            if len(v.path) == 3 and v.path[0] == 3303 and v.path[2] == 5700:
                if isinstance(v.value, bool) or not isinstance(v.value, (int, float)):
                    raise DecodeError(f"temperature is {v.value!r}")
                out.append(Reading(device, "temperature", float(v.value), v.ts or received_at,
                                   f"T{v.path[1] + 1}"))
        return out

    def encode_operations(self, device, command):
        if command.action == "reset":
            return [Lwm2mOperation("execute", (3, 0, 4))]
        if command.action in ("trip", "close"):
            return [Lwm2mOperation("write", (3312, 0, 5850), command.action == "close")]
        if command.action == "self_test":
            return [Lwm2mOperation("read", (3303, 0, 5700))]
        raise EncodeError(f"{command.action} is not supported")

    def decode(self, device, payload, received_at):
        return _text_uplink(device, payload, received_at)


class PlainModel:
    heartbeat_interval = None
    timeout_count = None

    def decode(self, device, payload, received_at):
        return _text_uplink(device, payload, received_at)

    def encode_command(self, device, command):
        return f"CMD:{command.action}".encode()


@hookimpl
def hub_register_device_models():
    return [DeviceModelType("hubtest_lwm2m", lambda options: TestLwm2mModel()),
            DeviceModelType("hubtest_coap_plain", lambda options: PlainModel())]
