"""nats-server (JetStream) and HAProxy on free loopback ports, for cluster-mode tests and
scripts/bench_cluster.py. Each stops by the process it started; a restart keeps the ports
and, for NATS, the JetStream store directory (that is what a server restart looks like)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import urllib.request

from tests.support.services import free_port, port_open, terminate, wait_until

NATS_BINARY = shutil.which("nats-server") or "/usr/sbin/nats-server"
HAPROXY_BINARY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def start_logged(argv: list[str], log_path: str, ready, what: str,
                 timeout: float) -> subprocess.Popen:
    """Start ``argv`` with its output appended to ``log_path``; wait until ``ready()``
    (failing at once if it exits, killing it if it never gets there)."""
    log = open(log_path, "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    log.close()

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited; see {log_path}")
        return ready()

    try:
        wait_until(up, timeout, what=what)
    except TimeoutError:
        proc.kill()
        proc.wait(timeout)
        raise
    return proc


class NatsServer:
    """One nats-server with JetStream and the partition mapping hub.cluster needs.

    Limits are set (a server sizes JetStream from the host's memory and disk otherwise).
    """

    def __init__(self, directory: str, partitions: int, prefix: str = "hub",
                 max_file: str = "1G", max_mem: str = "64M") -> None:
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.port = free_port()
        self.http_port = free_port()
        self.conf_path = os.path.join(directory, "nats.conf")
        self.log_path = os.path.join(directory, "nats.log")
        self.proc: subprocess.Popen | None = None
        mapping = (f'"{prefix}.in.*": '
                   f'"{prefix}.in.{{{{partition({partitions},1)}}}}.{{{{wildcard(1)}}}}"')
        with open(self.conf_path, "w") as f:
            f.write("\n".join([
                "server_name: hubtest",
                f"listen: 127.0.0.1:{self.port}",
                f"http: 127.0.0.1:{self.http_port}",
                f"jetstream {{ store_dir: {os.path.join(directory, 'js')!r}, "
                f"max_file_store: {max_file}, max_memory_store: {max_mem} }}",
                f"mappings = {{ {mapping} }}",
                "",
            ]))

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.http_port}/healthz?js-enabled-only=true",
                    timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def start(self, timeout: float = 20.0) -> NatsServer:
        if not os.path.exists(NATS_BINARY):
            raise RuntimeError("nats-server is not installed (make system-deps)")
        self.proc = start_logged([NATS_BINARY, "-c", self.conf_path], self.log_path,
                                 self.healthy, f"nats-server on port {self.port}", timeout)
        return self

    def stop(self, timeout: float = 20.0) -> None:
        """SIGINT: nats-server's clean stop (SIGTERM exits with 1)."""
        proc, self.proc = self.proc, None
        terminate(proc, timeout, signal.SIGINT)


class Haproxy:
    """HAProxy in TCP mode in front of ``backends`` (loopback ports): a backend that dies is
    marked down within ~200 ms and its sessions are shut, so DTUs dial again and land on
    another one."""

    def __init__(self, directory: str, backends: list[int]) -> None:
        os.makedirs(directory, exist_ok=True)
        self.port = free_port()
        self.conf_path = os.path.join(directory, "haproxy.cfg")
        self.log_path = os.path.join(directory, "haproxy.log")
        self.proc: subprocess.Popen | None = None
        servers = [f"    server edge{i} 127.0.0.1:{p}" for i, p in enumerate(backends)]
        with open(self.conf_path, "w") as f:
            f.write("\n".join([
                "global", "    maxconn 4000",  # more needs a higher fd limit than a test shell has
                "defaults", "    mode tcp", "    timeout connect 500ms",
                "    timeout client 10m", "    timeout server 10m", "    retries 2",
                "    option redispatch",
                "frontend dtus", f"    bind 127.0.0.1:{self.port}", "    default_backend edges",
                "backend edges", "    balance roundrobin",
                "    default-server check inter 200ms fastinter 100ms downinter 500ms fall 1 "
                "rise 2 on-marked-down shutdown-sessions",
                *servers, ""]))

    def start(self, timeout: float = 20.0) -> Haproxy:
        subprocess.run([HAPROXY_BINARY, "-c", "-q", "-f", self.conf_path], check=True,
                       capture_output=True, timeout=30)
        self.proc = start_logged([HAPROXY_BINARY, "-f", self.conf_path, "-db"],
                                 self.log_path, lambda: port_open(self.port), "haproxy",
                                 timeout)
        return self

    def stop(self, timeout: float = 20.0) -> None:
        proc, self.proc = self.proc, None
        terminate(proc, timeout)


# ---------------------------------------------------------------- a cluster of hub processes

EFD_MAP = os.path.join(os.path.dirname(__file__), "..", "..", "conf", "devices",
                       "efd-example.yaml")
FIRST_DTU = "861234500000000"


def node_config(tmp: str, name: str, nats_url: str, dtu_port: int, dtu_ids: list[str],
                partitions: int, lease_ttl: float = 3.0, poll_interval: float = 0.5) -> str:
    """The configuration file of one node (edge or core: the same sections; the role is
    chosen on the command line). Nodes share the partition directory (their partitions'
    journals move between cores through it) and nothing else."""
    import yaml

    config = {
        "hub": {"name": name, "state_dir": os.path.join(tmp, name)},
        "journal": {"commit_interval_ms": 5},
        "alarms": {"warning_ratio": 0,
                   "defaults": {"overvoltage": {"alarm": 250, "hysteresis": 2, "delay": 0}}},
        "models": {"efd": {"type": "modbus_map", "map": os.path.abspath(EFD_MAP)}},
        "transports": {"dtu": {"type": "tcp_dtu", "host": "127.0.0.1", "port": dtu_port,
                               "response_timeout": 1.0}},
        "devices": [{"id": f"efd-{dtu}", "model": "efd", "transport": "dtu",
                     "address": {"dtu": dtu, "slave": 1, "poll_interval": poll_interval}}
                    for dtu in dtu_ids],
        "cluster": {"nats": [nats_url], "node": name, "partitions": partitions,
                    "lease_ttl_s": lease_ttl, "max_mb": 256,
                    "partition_dir": os.path.join(tmp, "partitions")},
    }
    path = os.path.join(tmp, f"{name}.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(config, f, allow_unicode=True)
    return path


def partition_journals(tmp: str) -> list[str]:
    base = os.path.join(tmp, "partitions")
    if not os.path.isdir(base):
        return []
    return sorted(os.path.join(base, p, "journal.sqlite") for p in os.listdir(base)
                  if os.path.exists(os.path.join(base, p, "journal.sqlite")))


def journal_rows(tmp: str) -> tuple[list[tuple], list[dict]]:
    """Every reading ``(device, channel, quantity, ts)`` and every event (its JSON) in the
    partition journals, read-only while the cores run."""
    import json
    import sqlite3

    readings: list[tuple] = []
    events: list[dict] = []
    for path in partition_journals(tmp):
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            db.execute("PRAGMA busy_timeout = 5000")
            readings += db.execute(
                "SELECT device, channel, quantity, ts FROM readings").fetchall()
            events += [json.loads(d) for (d,) in
                       db.execute("SELECT data FROM records WHERE kind = 1 ORDER BY seq")]
        finally:
            db.close()
    return readings, events


def stream_records(url: str, stream: str = "HUB") -> list[tuple]:
    """Every reading in the stream as ``(device, channel, quantity, ts)``: what JetStream
    acknowledged to an edge, hence what a device may have been acknowledged for."""
    import asyncio

    import nats

    from hub.cluster.wire import decode

    async def read() -> list[tuple]:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            info = await js.stream_info(stream)
            out = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                try:
                    m = await js.get_msg(stream, seq)
                except nats.js.errors.NotFoundError:
                    continue
                body = decode(m.data)
                out += [(r.device, r.channel, r.quantity, r.ts) for r in body.get("r") or ()
                        if hasattr(r, "quantity")]
            return out
        finally:
            await nc.close()

    return asyncio.run(read())


def consumers_drained(nats_server: NatsServer, partitions: int, stream: str = "HUB") -> bool:
    """Whether every partition's consumer exists and has nothing pending or unacknowledged."""
    import asyncio

    import nats

    async def check() -> bool:
        nc = await nats.connect(nats_server.url)
        try:
            js = nc.jetstream()
            for p in range(partitions):
                try:
                    info = await js.consumer_info(stream, f"p{p}")
                except nats.js.errors.NotFoundError:
                    return False
                if info.num_pending or info.num_ack_pending:
                    return False
            return True
        finally:
            await nc.close()

    try:
        return asyncio.run(check())
    except OSError:
        return False


class Node:
    """One process of the cluster (``hub run --role ROLE -c config``, or the simulator);
    a thread copies its output lines into :attr:`lines`."""

    def __init__(self, name: str, role: str, argv: list[str], cwd: str) -> None:
        import threading

        self.name, self.role, self.cwd = name, role, cwd
        self.proc = subprocess.Popen(
            argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.lines: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        # also to <cwd>/<name>.log: pytest keeps the last runs' tmp_path to read after a failure
        with open(os.path.join(self.cwd, f"{self.name}.log"), "a", encoding="utf-8") as log:
            for line in self.proc.stdout:
                self.lines.append(line)
                log.write(line)
                log.flush()
        self.lines.append("")

    def logged(self, text: str) -> list[str]:
        return [line for line in list(self.lines) if text in line]

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        return wait_until(lambda: (self.logged(text) or [None])[0], timeout,
                          what=f"{self.name} logging {text!r}")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> int:
        terminate(self.proc, timeout)
        return self.proc.returncode


class Cluster:
    """nats-server, ``edges`` edge and ``cores`` core processes, HAProxy in front of the
    edges' DTU ports, and ``hub simulate dtu`` dialling HAProxy. :meth:`stop` ends what
    was started, in reverse."""

    def __init__(self, tmp: str, edges: int = 2, cores: int = 2, dtus: int = 12,
                 partitions: int = 8, period: float = 4.0, poll_interval: float = 0.5,
                 api: bool = False, pg_dsn: str | None = None,
                 webhook: str | None = None) -> None:
        self.tmp, self.partitions = tmp, partitions
        # the platform store: PostgreSQL at pg_dsn, or one SQLite file; webhook: the URL of
        # a notification channel "hook" for alarm policies
        self.pg_dsn, self.webhook = pg_dsn, webhook
        self.dtu_ids = [str(int(FIRST_DTU) + i) for i in range(dtus)]
        self.devices = [f"efd-{d}" for d in self.dtu_ids]
        self.nats = NatsServer(os.path.join(tmp, "nats"), partitions)
        self.edge_ports = [free_port() for _ in range(edges)]
        self.haproxy = Haproxy(os.path.join(tmp, "haproxy"), self.edge_ports)
        self.api_ports: dict[str, int] = {}
        self.configs: dict[str, str] = {}
        names = [f"edge{i + 1}" for i in range(edges)] + [f"core{i + 1}" for i in range(cores)]
        for i, name in enumerate(names):
            port = self.edge_ports[i] if name.startswith("edge") else free_port()
            self.configs[name] = node_config(tmp, name, self.nats.url, port, self.dtu_ids,
                                             partitions, poll_interval=poll_interval)
        if api:
            self._add_api()
        self.nodes: dict[str, Node] = {}
        self.sim: Node | None = None
        self.period = period

    def _add_api(self) -> None:
        import yaml

        store = os.path.join(self.tmp, "platform.sqlite")
        for name, path in self.configs.items():
            with open(path) as f:
                config = yaml.safe_load(f)
            self.api_ports[name] = free_port()
            config["api"] = {"port": self.api_ports[name], "store": store if self.pg_dsn is None
                             else {"backend": "postgresql", "dsn": self.pg_dsn}}
            if self.webhook is not None:
                config["api"]["notify"] = {
                    "channels": {"hook": {"type": "webhook", "url": self.webhook,
                                          "secret": "cluster-test"}},
                    "retry": {"initial": 0.2, "max": 1, "attempts": 30}}
            with open(path, "w") as f:
                yaml.safe_dump(config, f, allow_unicode=True)

    def start(self) -> Cluster:
        from tests.support.hubproc import BIN

        self.nats.start()
        for name, path in self.configs.items():
            role = name.rstrip("0123456789")
            self.nodes[name] = Node(name, role, [str(BIN / "hub"), "run", "-c", path,
                                                 "--role", role], self.tmp)
        for node in self.nodes.values():
            # under load a first connect may time out: then it logs "restored" instead
            wait_until(lambda n=node: n.logged("NATS connected") or n.logged(
                "NATS link restored"), 120, what=f"{node.name} connected to NATS")
            if node.role == "edge":
                node.wait_for("listening for DTUs", 30)
        wait_until(lambda: len(self.owners()) == self.partitions, 60,
                   what="every partition owned")
        self.haproxy.start()
        self.sim = Node("sim", "sim", [
            str(BIN / "hub"), "simulate", "dtu", "--connect", f"127.0.0.1:{self.haproxy.port}",
            "--id", self.dtu_ids[0], "--count", str(len(self.dtu_ids)), "--map",
            os.path.abspath(EFD_MAP), "--episode", "overvoltage", "--period", str(self.period)],
            self.tmp)
        return self

    def owners(self) -> dict[int, str]:
        """partition -> a live core whose own last word on it was "owned" (each core's log
        is in its own order; the logs of two cores are not comparable line by line)."""
        import re

        out: dict[int, str] = {}
        for name, node in self.nodes.items():
            if node.role != "core" or node.proc.poll() is not None:
                continue
            mine: dict[int, bool] = {}
            for line in list(node.lines):
                m = re.search(r"partition (\d+) (owned|released) by", line)
                if m:
                    mine[int(m.group(1))] = m.group(2) == "owned"
            out.update({p: name for p, owned in mine.items() if owned})
        return out

    def edge_of(self, dtu: str) -> str | None:
        """The live edge that last registered ``dtu`` (and did not see it leave since)."""
        holder = None
        for name, node in self.nodes.items():
            if node.role != "edge" or node.proc.poll() is not None:
                continue
            state = None
            for line in list(node.lines):
                if f"DTU {dtu} registered" in line:
                    state = "in"
                elif f"DTU {dtu} disconnected" in line:
                    state = "out"
            if state == "in":
                holder = name
        return holder

    def stop_sim(self) -> None:
        if self.sim is not None:
            self.sim.stop()

    def stop(self) -> dict[str, int]:
        codes = {}
        self.stop_sim()
        self.haproxy.stop()
        for name, node in reversed(list(self.nodes.items())):
            codes[name] = node.stop()
        self.nats.stop()
        return codes


# ------------------------------------------------- MQTT devices through a broker every edge shares

#: a json_map model of the MQTT devices below: one voltage per message, a level-style alarm,
#: a trip command answered with ``{"id": ..., "status": "ok"}``
MQTT_MODEL = {
    "type": "json_map",
    "timestamp": {"path": "ts", "format": "epoch_ms"},
    "points": [{"path": "v", "quantity": "voltage", "channel": "A"}],
    "alarms": [{"path": "alarm", "code": "overvoltage", "channel": "A"}],
    "commands": {"trip": {"cmd": "trip"}},
}


def add_mqtt(c: Cluster, broker_port: int, devices: list[str], *, user: str = "hub",
             password: str = "hub-secret", group: str = "edges",
             protocol: str = "5") -> None:
    """Give every node of ``c`` an ``mqtt`` transport ``broker`` (native engine) with a
    shared subscription, unshared results and its own client id (the broker keeps one
    session per client id: two edges under one id would take it from each other), and the
    MQTT ``devices`` (address = id). Call before :meth:`Cluster.start`."""
    import yaml

    for name, path in c.configs.items():
        with open(path) as f:
            config = yaml.safe_load(f)
        config["transports"]["broker"] = {
            "type": "mqtt", "engine": "native", "host": "127.0.0.1", "port": broker_port,
            "username": user, "password": password, "client_id": f"hub-{name}",
            "protocol": protocol, "shared_group": group, "shared_results": False,
            "keepalive": 10, "reconnect_initial": 0.2, "reconnect_max": 2,
            "command_timeout": 10}
        config.setdefault("models", {})["jsonv"] = MQTT_MODEL
        config["devices"] += [{"id": d, "model": "jsonv", "transport": "broker", "address": d}
                              for d in devices]
        with open(path, "w") as f:
            yaml.safe_dump(config, f, allow_unicode=True)
    c.mqtt_devices = list(devices)


def restart_node(c: Cluster, name: str) -> Node:
    """Start ``name`` again with its configuration (after a kill): same ports, same state
    directory, same MQTT client id."""
    from tests.support.hubproc import BIN

    role = name.rstrip("0123456789")
    node = c.nodes[name] = Node(name, role, [str(BIN / "hub"), "run", "-c", c.configs[name],
                                             "--role", role], c.tmp)
    return node


class MqttDevices:
    """MQTT devices on one paho client (MQTT 5) publishing QoS 1 ``{"ts", "v", "alarm"}``
    round-robin at ``rate`` messages/s in a thread; :attr:`acked` is every ``(device, ts)``
    the broker acknowledged (what a device may forget). Commands on ``esm/<id>/down`` are
    answered on ``esm/<id>/ack`` with the correlation data, unless :attr:`hold` is set:
    then they are only counted in :attr:`commands` (``device -> [command ids]``)."""

    def __init__(self, port: int, devices: list[str], rate: float = 40.0,
                 user: str = "dev", password: str = "dev-secret") -> None:
        import threading

        import paho.mqtt.client as mqtt

        self.devices, self.rate = devices, rate
        self.acked: set[tuple[str, float]] = set()
        self.sent = 0
        self.commands: dict[str, list[str]] = {}
        self.hold = False
        self.held: list[tuple[str, str, bytes | None]] = []  # (device, command id, corr.)
        self._mids: dict[int, tuple[str, float]] = {}
        self._early: dict[int, bool] = {}  # mid -> failed, of PUBACKs that came first
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="devices",
                                  protocol=mqtt.MQTTv5)
        self.client.username_pw_set(user, password)
        self.client.max_inflight_messages_set(1000)
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.on_connect = lambda cl, *_: cl.subscribe("esm/+/down", qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> MqttDevices:
        self._thread.start()
        return self

    def _run(self) -> None:
        import json
        import time

        i = 0
        t0 = time.monotonic()
        while not self._stop.is_set():
            device = self.devices[i % len(self.devices)]
            ts = round(time.time(), 3) + (i % len(self.devices)) * 1e-3  # unique per device
            v = 260.0 if (i // (len(self.devices) * 20)) % 2 else 220.0
            body = json.dumps({"ts": int(ts * 1000), "v": v, "alarm": int(v > 250)})
            # not under our lock: paho calls on_publish holding its own, which publish() needs
            info = self.client.publish(f"esm/{device}/up", body, qos=1)
            item = (device, int(ts * 1000) / 1000)
            with self._lock:
                self.sent += 1
                early = self._early.pop(info.mid, None)
                if early is None:
                    self._mids[info.mid] = item
                elif not early:
                    self.acked.add(item)
            i += 1
            # paced by the clock, not slept in a test: this is the devices' own rhythm
            self._stop.wait(max(0.0, t0 + i / self.rate - time.monotonic()))

    def _on_publish(self, client, userdata, mid, reason, properties) -> None:
        with self._lock:
            item = self._mids.pop(mid, None)
            if item is None:  # acknowledged before publish() returned its mid
                self._early[mid] = reason.is_failure
            elif not reason.is_failure:
                self.acked.add(item)

    def _on_message(self, client, userdata, msg) -> None:
        import json

        device = msg.topic.split("/")[1]
        body = json.loads(msg.payload)
        with self._lock:
            self.commands.setdefault(device, []).append(body.get("id"))
        corr = getattr(msg.properties, "CorrelationData", None)
        if self.hold:
            with self._lock:
                self.held.append((device, body.get("id"), corr))
            return
        self._answer(device, body.get("id"), corr)

    def _answer(self, device: str, command_id: str, corr: bytes | None) -> None:
        import json

        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.PUBLISH)
        if corr:
            props.CorrelationData = corr
        self.client.publish(f"esm/{device}/ack", json.dumps({"id": command_id,
                                                             "status": "ok"}), qos=1,
                            properties=props)

    def release(self, device: str) -> int:
        """Answer the held commands of ``device`` now; how many."""
        with self._lock:
            mine = [h for h in self.held if h[0] == device]
            self.held = [h for h in self.held if h[0] != device]
        for held in mine:
            self._answer(*held)
        return len(mine)

    def acked_now(self) -> set[tuple[str, float]]:
        with self._lock:
            return set(self.acked)

    def stop(self) -> None:
        """Stop publishing, wait until the broker acknowledged what was sent, disconnect."""
        from tests.support.services import wait_until

        self._stop.set()
        self._thread.join(10)
        wait_until(lambda: not self._mids, 20,
                   what=f"the broker's PUBACKs ({len(self._mids)} of {self.sent} missing: "
                        f"{sorted(self._mids.items())[:3]})")
        self.client.disconnect()
        self.client.loop_stop()


def add_admin(config: str, password: str) -> None:
    """``hub users add --role admin root`` into the platform store ``config`` names."""
    from tests.support.hubproc import BIN

    made = subprocess.run([str(BIN / "hub"), "users", "add", "--role", "admin", "root",
                           "--password-stdin", "-c", config], input=password + "\n",
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stdout + made.stderr


def add_dtu_device(c: Cluster, dtu: str) -> str:
    """Configure ``efd-<dtu>`` (slave 1 behind DTU ``dtu``) on every node, for a DTU the
    simulator does not play (a :class:`HeldDtu`). Call before :meth:`Cluster.start`."""
    import yaml

    for path in c.configs.values():
        with open(path) as f:
            config = yaml.safe_load(f)
        config["devices"].append({"id": f"efd-{dtu}", "model": "efd", "transport": "dtu",
                                  "address": {"dtu": dtu, "slave": 1, "poll_interval": 0.5}})
        with open(path, "w") as f:
            yaml.safe_dump(config, f, allow_unicode=True)
    return f"efd-{dtu}"


class HeldDtu:
    """One DTU on a blocking socket in a thread, through ``port`` (HAProxy): registers,
    answers polls from a simulated slave, and keeps every write request it gets in
    :attr:`writes` (each with the connection number it came on). With :attr:`move_on_write`
    it does not answer a write: it hangs up and dials again at once (through HAProxy, so it
    lands on the other edge), which is a DTU moving edges mid-command."""

    def __init__(self, port: int, dtu: str) -> None:
        import threading

        from plugins.devices.modbus.registermap import load_map
        from plugins.simulators.dtu.slave import DtuLine, Scenario, SimulatedSlave, SlaveLayout

        self.port, self.dtu = port, dtu
        layout = SlaveLayout(load_map(os.path.abspath(EFD_MAP)))
        self.line = DtuLine([SimulatedSlave(layout, 1, Scenario())])
        self.writes: list[tuple[int, bytes]] = []
        self.polls: list[int] = []  # the connection number of each read answered
        self.connections = 0
        self.move_on_write = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> HeldDtu:
        self._thread.start()
        return self

    def _run(self) -> None:
        import socket
        import time

        from plugins.simulators.dtu.slave import request_length

        t0 = time.monotonic()
        while not self._stop.is_set():
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
            except OSError:
                self._stop.wait(0.2)
                continue
            self.connections += 1
            n = self.connections
            sock.settimeout(0.2)
            sock.sendall(self.dtu.encode())
            buf = b""
            try:
                while not self._stop.is_set():
                    try:
                        data = sock.recv(4096)
                    except TimeoutError:
                        continue
                    if not data:
                        break
                    buf += data
                    moved = False
                    while (size := request_length(buf)) > 0:
                        request, buf = buf[:size], buf[size:]
                        if request[1] in (5, 6, 15, 16):
                            self.writes.append((n, request))
                            if self.move_on_write:
                                moved = True
                                break
                        else:
                            self.polls.append(n)
                        answers = self.line.receive(request, time.monotonic() - t0)
                        if answers:
                            sock.sendall(b"".join(answers))
                    if moved or size == 0:
                        break
            except OSError:
                pass
            finally:
                sock.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def assert_exits(c: Cluster, codes: dict[str, int]) -> None:
    """Every node stopped cleanly, or was the one a test killed (-9)."""
    for name, code in codes.items():
        assert code in (0, -9), f"{name} exited {code}:\n{''.join(c.nodes[name].lines[-60:])}"


class ApiClient:
    """The API of one node of ``c``, logged in as ``root``."""

    def __init__(self, c: Cluster, node: str, password: str) -> None:
        import httpx

        self.http = httpx.Client(base_url=f"http://127.0.0.1:{c.api_ports[node]}", timeout=30)
        token = self.http.post("/api/auth/login", json={"username": "root",
                                                        "password": password}).json()
        self.http.headers["Authorization"] = f"Bearer {token['access_token']}"

    def get(self, path: str, **params) -> dict:
        r = self.http.get(path, params=params)
        assert r.status_code == 200, (path, r.text)
        return r.json()

    def trip(self, device: str, ttl: int = 10, wait: bool = True) -> dict:
        r = self.http.post(f"/api/devices/{device}/commands",
                           json={"action": "trip", "ttl": ttl, "wait": wait})
        assert r.status_code == 202, r.text
        return r.json()

    def command(self, command_id: str) -> dict:
        return self.get(f"/api/commands/{command_id}")
