"""Built-in plugin: ``hub simulate mqtt``, detectors publishing JSON through an MQTT broker
and answering commands, for commissioning, demos and tests::

    hub simulate mqtt --broker 127.0.0.1:1883 --count 100 --rate 50 --scenario overheat \\
        --username dev --password-env MQTT_PASSWORD

Devices are ``<prefix>0001`` .. (``--prefix``, default ``sim-``). Each publishes, in turn at
``--rate`` messages/s in all, on ``esm/<id>/up`` at QoS 1::

    {"ts": 1767225600123, "leak": 35, "temp": [25.3, 24.8], "v": [220.1, 219.8, 220.4],
     "alarm": {"leak": 0, "temp1": 0}, "fault": {"probe2": 0}}

and answers every command it receives on ``esm/<id>/down`` on the response topic (or
``esm/<id>/ack``) with ``{"id": <command id>, "status": "ok"}`` and the request's MQTT 5
correlation data. The json_map model that reads this format is in the README ("MQTT").
Scenarios: ``normal``; ``overheat`` (T1 of every tenth device climbs to 95 °C and back
over ``--period``); ``leak`` (residual current of every tenth device climbs to 600 mA).

``--model modbus`` plays a 4G DTU in MQTT mode instead, for the ``modbus_payload`` model:
each message is the raw RTU response frames of one round of the register map's polls
(``--map``, slave ``--slave``), answered by :class:`plugins.simulators.dtu.slave.SimulatedSlave`
with the ``hub simulate dtu`` scenarios (``leak`` is its ``leakage``); a write command is
answered with the slave's echo (or Modbus exception) on the ack topic.

Every device publishes a retained ``online`` on ``esm/<id>/status`` (``--topic-status``)
once connected, and a retained ``offline`` when the simulator stops.

One paho client carries every simulated device (a load generator, not a device farm);
for rates beyond a few thousand messages/s use scripts/bench_mqtt.py. A broker that cannot
be reached, or that refuses the connection, is one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import signal
import sys
import threading
import time
from typing import Any

from hub import hookimpl
from plugins.simulators.cli_args import add_run_options, endpoint, positive, simulate_parser
from plugins.simulators.scenario import Scenario, Wave, leakage, overheat

__all__ = ["SCENARIOS", "device_ids", "hub_add_commands", "payload", "scenario"]

SCENARIOS = ("normal", "overheat", "leak")
_DTU_SCENARIO = {"normal": "normal", "overheat": "overheat", "leak": "leakage"}


def device_ids(prefix: str, count: int) -> list[str]:
    """``count`` ids ``<prefix>0001``, ``<prefix>0002``, ... (at least four digits)."""
    width = max(4, len(str(count)))
    return [f"{prefix}{i:0{width}d}" for i in range(1, count + 1)]


@functools.lru_cache(maxsize=1 << 16)  # one per device: built once, not per message
def scenario(index: int, name: str = "normal", period: float = 60.0) -> Scenario:
    """What device number ``index`` measures: every tenth device has the episode of ``name``
    (T1 from 25 to 95 °C, or residual current from 30 to 600 mA, and back, along a wave of
    ``period`` s whose phase differs per device); the others, and ``normal``, stay normal."""
    if index % 10 or name == "normal":
        return Scenario()
    shape = Wave(period, index / 7)
    episode = (overheat(shape, base=25.0) if name == "overheat"
               else leakage(shape, peak=600.0, swing=0.0, base=30.0))
    return Scenario(_DTU_SCENARIO[name], shape, episodes=(episode,))


def payload(index: int, now: float, scenario_name: str = "normal", period: float = 60.0,
            rng: random.Random | None = None) -> dict[str, Any]:
    """The JSON document device number ``index`` publishes at ``now``."""
    rng = rng or random
    sc = scenario(index, scenario_name, period)
    leak = sc.value("residual_current", "L1", now, rng.uniform(-1, 1))
    t1 = sc.value("temperature", "T1", now, rng.uniform(-1, 1))
    t2 = sc.value("temperature", "T2", now, rng.uniform(-1, 1))
    return {
        "ts": int(now * 1000),
        "leak": round(leak),
        "temp": [round(t1, 1), round(t2, 1)],
        "v": [round(sc.value("voltage", p, now, rng.uniform(-1, 1)), 1) for p in "ABC"],
        "alarm": {"leak": int(leak >= 500), "temp1": int(t1 >= 90)},
        "fault": {"probe2": 0},
    }


class ModbusDevices:
    """The ``--model modbus`` payloads: one simulated RTU slave per device, polled with the
    register map's plan each time the device publishes."""

    def __init__(self, args: argparse.Namespace, ids: list[str]) -> None:
        from plugins.devices.modbus.model import ModbusMapModel
        from plugins.devices.modbus.registermap import load_map
        from plugins.protocols.modbus import rtu
        from plugins.simulators.dtu.slave import Scenario as DtuScenario
        from plugins.simulators.dtu.slave import SimulatedSlave, SlaveLayout

        regmap = load_map(args.map)
        assert regmap is not None
        layout = SlaveLayout(regmap)
        scenario = DtuScenario(_DTU_SCENARIO[args.scenario], args.period)
        self.requests = [rtu.read_request(args.slave, p.function, p.address, p.count)
                         for p in ModbusMapModel(regmap).plan()]
        self.slaves = {d: SimulatedSlave(layout, args.slave, scenario, seed=f"{args.seed}/{d}")
                       for d in ids}
        self.t0 = time.monotonic()

    def payload(self, device: str) -> bytes:
        slave, t = self.slaves[device], time.monotonic() - self.t0
        return b"".join(slave.handle(r, t) or b"" for r in self.requests)

    def answer(self, device: str, request: bytes) -> bytes | None:
        return self.slaves[device].handle(request, time.monotonic() - self.t0)


class Simulator:
    """One paho client publishing for every device and answering their commands."""

    def __init__(self, args: argparse.Namespace, ids: list[str]) -> None:
        import paho.mqtt.client as mqtt

        self.args = args
        self.ids = ids
        self.index = {d: i for i, d in enumerate(ids, 1)}
        self.rng = random.Random(args.seed)
        self.modbus = ModbusDevices(args, ids) if args.model == "modbus" else None
        self.published = 0
        self.commands = 0
        self.connected = threading.Event()
        self.refused: str | None = None
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"hub-sim-{os.getpid()}", protocol=mqtt.MQTTv5)
        if args.username:
            password = os.environ.get(args.password_env) if args.password_env else None
            self.client.username_pw_set(args.username, password)
        if args.cafile:
            self.client.tls_set(ca_certs=args.cafile, certfile=args.cert, keyfile=args.key)
        self.client.max_inflight_messages_set(1000)  # far below 65,535 message ids
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            self.refused = str(reason)
            self.connected.set()
            return
        client.subscribe(self.args.topic_down.replace("{device}", "+"), qos=1)
        for device in self.ids:  # retained: whoever subscribes later still sees it
            client.publish(self.args.topic_status.replace("{device}", device), "online",
                           qos=1, retain=True)
        self.connected.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        head, tail = self.args.topic_down.split("{device}")
        device = msg.topic[len(head):len(msg.topic) - len(tail)]
        if device not in self.index:
            return
        props = getattr(msg, "properties", None)
        corr = getattr(props, "CorrelationData", None)
        topic = getattr(props, "ResponseTopic", None) or \
            self.args.topic_ack.replace("{device}", device)
        out = Properties(PacketTypes.PUBLISH)
        if corr:
            out.CorrelationData = corr
        if self.modbus is not None:
            answer = self.modbus.answer(device, msg.payload)
            if answer is None:  # not a frame for this slave: a real one stays silent
                return
            client.publish(topic, answer, qos=1, properties=out if corr else None)
            self.commands += 1
            return
        try:
            body = json.loads(msg.payload)
            cid = body.get("id") if isinstance(body, dict) else None
        except ValueError:
            cid = None
        client.publish(topic, json.dumps({"id": cid, "status": "ok"}), qos=1,
                       properties=out if corr else None)
        self.commands += 1

    def run(self, stop: threading.Event) -> str | None:
        """Publish until ``stop``; the reason it could not start, else ``None``."""
        host, port = self.args.broker
        try:
            self.client.connect(host, port)
        except (OSError, ValueError) as e:  # refused, unreachable, TLS handshake, bad host
            return f"cannot connect to {host}:{port}: {getattr(e, 'strerror', None) or e}"
        self.client.loop_start()
        if not self.connected.wait(30) or self.refused is not None:
            self.client.loop_stop()
            return (f"{host}:{port} refused the connection: {self.refused}" if self.refused
                    else f"no answer from {host}:{port} within 30 s")
        print(f"mqtt-sim: {len(self.ids)} devices ({self.ids[0]}..{self.ids[-1]}), scenario "
              f"{self.args.scenario}, {self.args.rate:g} msg/s to {host}:{port}", flush=True)
        interval = 1.0 / self.args.rate
        t0 = time.monotonic()
        n = 0
        last_status = t0
        while not stop.is_set():
            due = t0 + n * interval
            wait = due - time.monotonic()
            if wait > 0 and stop.wait(wait):
                break
            device = self.ids[n % len(self.ids)]
            if self.modbus is not None:
                body: bytes | str = self.modbus.payload(device)
            else:
                body = json.dumps(payload(self.index[device], time.time(), self.args.scenario,
                                          self.args.period, self.rng), separators=(",", ":"))
            self.client.publish(self.args.topic_up.replace("{device}", device), body, qos=1)
            n += 1
            self.published = n
            if time.monotonic() - last_status >= self.args.status_interval:
                last_status = time.monotonic()
                print(self.status_line(), flush=True)
        infos = [self.client.publish(self.args.topic_status.replace("{device}", d), "offline",
                                     qos=1, retain=True) for d in self.ids]
        for info in infos:
            try:
                info.wait_for_publish(5)
            except (RuntimeError, ValueError):
                break  # the link is gone: the retained "online" stays, presence decides
        self.client.disconnect()
        self.client.loop_stop()
        return None

    def status_line(self) -> str:
        return f"mqtt-sim: published {self.published}, answered {self.commands} commands"


def _slave(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 247:
        raise argparse.ArgumentTypeError(f"{text!r} is not a slave address 1..247")
    return int(text)


def cmd_simulate_mqtt(args: argparse.Namespace) -> int:
    if args.count < 1:
        print("mqtt-sim: --count must be at least 1", file=sys.stderr)
        return 2
    from hub.validate import ConfigError

    try:
        sim = Simulator(args, device_ids(args.prefix, args.count))
    except ConfigError as e:
        print(f"mqtt-sim: {'; '.join(e.errors)}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as e:  # a TLS file paho cannot load, a bad register map
        print(f"mqtt-sim: {e}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    timer = threading.Timer(args.duration, stop.set) if args.duration else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    error = sim.run(stop)
    if timer is not None:
        timer.cancel()
    if error is not None:
        print(f"mqtt-sim: {error}", file=sys.stderr)
        return 1
    print(sim.status_line(), flush=True)
    return 0


@hookimpl
def hub_add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = simulate_parser(
        subparsers, "mqtt", help="simulated detectors publishing JSON through an MQTT broker",
        description="Simulated detectors that publish JSON readings at QoS 1 through an "
        f"MQTT broker and answer commands; scenarios {', '.join(SCENARIOS)}.")
    p.add_argument("--broker", required=True, type=endpoint, metavar="HOST:PORT")
    p.add_argument("--count", type=int, default=1, help="devices to simulate (default 1)")
    p.add_argument("--model", choices=("json", "modbus"), default="json",
                   help="payload format (json: the README's json_map example; modbus: raw "
                   "RTU response frames for the modbus_payload model)")
    p.add_argument("--map", default="conf/devices/efd-example.yaml",
                   help="register map of --model modbus (default conf/devices/efd-example.yaml)")
    p.add_argument("--slave", type=_slave, default=1, metavar="1..247",
                   help="RTU slave address of --model modbus (default 1)")
    p.add_argument("--rate", type=positive, default=1.0,
                   help="messages per second over all devices (default 1)")
    p.add_argument("--scenario", choices=SCENARIOS, default="normal")
    p.add_argument("--period", type=positive, default=60.0, metavar="S",
                   help="scenario period in seconds (default 60)")
    p.add_argument("--prefix", default="sim-", help="device id prefix (default sim-)")
    p.add_argument("--username")
    p.add_argument("--password-env", metavar="VAR",
                   help="environment variable holding the password (never on the command line)")
    p.add_argument("--cafile", help="CA certificate: connect with TLS")
    p.add_argument("--cert", help="client certificate (with --cafile)")
    p.add_argument("--key", help="client key (with --cert)")
    p.add_argument("--topic-up", default="esm/{device}/up")
    p.add_argument("--topic-down", default="esm/{device}/down")
    p.add_argument("--topic-ack", default="esm/{device}/ack")
    p.add_argument("--topic-status", default="esm/{device}/status")
    p.add_argument("--seed", type=int, default=0)
    add_run_options(p)
    p.set_defaults(func=cmd_simulate_mqtt)
