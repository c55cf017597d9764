"""The ``mqtt`` transport against a real Mosquitto (never a mock): `hub run` as a process,
devices played by paho clients and by ``mosquitto_pub`` (a client we did not write), the
journal read back read-only.

Covered: ingest at QoS 1 with acks after the commit, TLS with a client certificate, unknown
devices and bad payloads (counted, logged, the link goes on), a command round trip and a
command timeout, a broker restart mid-stream, messages published while the hub is away
(persistent session), and SIGKILL of the hub mid-stream (nothing lost, duplicates allowed).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from twisted.internet.task import Clock

from hub.journal import Journal
from hub.validate import Checker, Path, Section
from plugins.transports import mqtt as transport
from tests.conftest import HERE, write_distribution
from tests.hubproc import BIN, HubProcess
from tests.services import Mosquitto, TestPki, free_port, wait_until
from tests.services import mosquitto as mosquitto  # noqa: F401  (the fixture)

CWD = str(BIN.parent.parent)
MOSQUITTO_PUB = "/usr/bin/mosquitto_pub"

MODEL = {
    "type": "json_map",
    "timestamp": {"path": "ts", "format": "epoch_ms"},
    "points": [{"path": "leak", "quantity": "residual_current", "channel": "L1"},
               {"path": "t1", "quantity": "temperature", "channel": "T1", "scale": 0.1}],
    "alarms": [{"path": "alarm", "code": "residual_current", "channel": "L1"}],
    "commands": {"reset": {"cmd": "reset"}, "silence": {"cmd": "mute"}},
    "result": {"id": "cid", "status": "code", "ok": [0], "detail": "msg"},
}


def write_config(tmp_path, broker: Mosquitto, **options) -> str:
    transport_options = {"type": "mqtt", "host": "127.0.0.1", "port": broker.port,
                         "username": "hub", "password": {"env": "HUBTEST_MQTT_PASSWORD"},
                         "client_id": "hub-test", "reconnect_initial": 0.2,
                         "reconnect_max": 1, "engine": os.environ.get("HUBTEST_MQTT_ENGINE"),
                         **options}
    transport_options = {k: v for k, v in transport_options.items() if v is not None}
    config = {
        "hub": {"state_dir": str(tmp_path / "var")},
        "journal": {"commit_interval_ms": 5},
        "models": {"acme": MODEL},
        "transports": {"broker": transport_options},
        "devices": [{"id": f"dev-{i}", "model": "acme", "transport": "broker",
                     "address": f"dev-{i}"} for i in (1, 2)],
    }
    path = tmp_path / "hub.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return str(path)


@pytest.fixture(autouse=True, params=["paho", "native"])
def engine(request, monkeypatch) -> str:
    """Every test runs with both engines: they keep the same promises."""
    monkeypatch.setenv("HUBTEST_MQTT_ENGINE", request.param)
    return request.param


@pytest.fixture(autouse=True)
def _password(monkeypatch):
    monkeypatch.setenv("HUBTEST_MQTT_PASSWORD", "hub-secret")


def start_hub(config: str) -> HubProcess:
    hub = HubProcess(config, CWD)
    hub.wait_for("broker: subscribed to")
    return hub


def readings(tmp_path, device: str | None = None) -> list:
    journal = Journal(str(tmp_path / "var" / "journal.sqlite"), clock=Clock(), readonly=True)
    journal.open()
    try:
        return [r for _, r in journal.read(0, 10_000_000, {"reading"})
                if device is None or r.device == device]
    finally:
        journal.close()


def wait_for_values(tmp_path, device: str, values: set[float], timeout: float = 30) -> list:
    """Wait until every residual-current value in ``values`` of ``device`` is journaled."""
    latest: list = []

    def done() -> bool:
        latest[:] = [r for r in readings(tmp_path, device) if r.quantity == "residual_current"]
        return values <= {r.value for r in latest}

    try:
        wait_until(done, timeout, interval=0.1, what="readings in the journal")
    except TimeoutError:
        missing = values - {r.value for r in latest}
        raise AssertionError(f"{len(missing)} of {len(values)} values never arrived, e.g. "
                             f"{sorted(missing)[:10]}") from None
    return latest


class Device:
    """A device (or a fleet) publishing through the broker with paho, as user ``dev``."""

    def __init__(self, broker: Mosquitto, client_id: str = "", v5: bool = True) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311)
        self.client.username_pw_set("dev", "dev-secret")
        self.client.max_inflight_messages_set(100)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes | str, qos: int = 1) -> None:
        info = self.client.publish(topic, payload, qos=qos)
        info.wait_for_publish(10)

    def publish_values(self, device: str, values, ts0: int = 1_767_225_600_000) -> None:
        infos = [self.client.publish(f"esm/{device}/up",
                                     json.dumps({"ts": ts0 + int(v), "leak": v}), qos=1)
                 for v in values]
        for info in infos:
            info.wait_for_publish(30)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def metrics(tmp_path) -> dict:
    with open(tmp_path / "var" / "metrics.json", encoding="utf-8") as f:
        doc = json.load(f)
    return {(m["name"], tuple(sorted(m["labels"].items()))): m["value"] for m in doc["metrics"]}


# ---------------------------------------------------------------------------- options


def options(data: dict) -> tuple[object, list[str]]:
    checker = Checker()
    opts = transport.check_options(Section(checker, Path("hub.yaml", ("transports", "b")),
                                           data))
    return opts, checker.errors


def test_topic_templates():
    t = transport.TopicTemplate("esm/{device}/up")
    assert t.filter == "esm/+/up"
    assert t.topic("dev-1") == "esm/dev-1/up"
    assert t.match("esm/dev-1/up") == "dev-1"
    for other in ("esm/dev-1/down", "esm//up", "esm/a/b/up", "xesm/dev-1/up"):
        assert t.match(other) is None
    for bad in ("esm/up", "esm/{device}/{device}", "esm/#/{device}", "esm/x{device}/up"):
        with pytest.raises(transport.Invalid):
            transport.TopicTemplate(bad)


def test_option_errors_name_their_key_paths():
    _, errs = options({"port": 70000, "password": "x", "topics": {"uplink": "up"},
                       "connections": 2, "tls": {"cert_file": "a.pem"}, "qos": 2})
    text = "\n".join(errs)
    for expected in ("transports.b.port: 70000 is outside 1..65535",
                     "transports.b.topics.uplink: 'up' must contain {device}",
                     "transports.b.password: a password needs a username",
                     "transports.b.connections: several connections need shared_group",
                     "transports.b.tls: cert_file and key_file go together",
                     "transports.b.qos: is not a known key here"):
        assert expected in text, text
    opts, errs = options({"tls": True, "topics": {"status": None}, "shared_group": "hubs",
                          "connections": 2})
    assert errs == [] and opts.broker_port == 8883 and opts.status is None


def test_tls_files_are_checked_when_the_configuration_is(tmp_path):
    """A missing or unreadable CA, certificate or key is an error naming its key path at
    check time (`hub check`), not an exception when the transport starts."""
    pki = TestPki(str(tmp_path / "pki"))
    cert, key = pki.issue("hub-client", "hub")
    _, other_key = pki.issue("other", "other")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    missing = str(tmp_path / "missing.pem")
    _, errs = options({"tls": {"ca_file": missing, "cert_file": missing, "key_file": key}})
    assert errs == [f"hub.yaml: transports.b.tls.ca_file: cannot read {missing!r}: No such "
                    "file or directory",
                    f"hub.yaml: transports.b.tls.cert_file: cannot read {missing!r}: No such "
                    "file or directory"], errs
    _, errs = options({"tls": {"ca_file": str(junk), "cert_file": cert, "key_file": other_key}})
    assert len(errs) == 2, errs
    assert errs[0].startswith(f"hub.yaml: transports.b.tls.ca_file: {str(junk)!r} is not a CA "
                              "certificate in PEM"), errs
    assert errs[1].startswith(f"hub.yaml: transports.b.tls.cert_file: {cert!r} is not a "
                              "certificate and its key in PEM, or they do not match"), errs
    opts, errs = options({"tls": {"ca_file": pki.ca_path, "cert_file": cert, "key_file": key}})
    assert errs == [] and opts.tls.key_file == key


# ---------------------------------------------------------------------------- the real broker


def test_ingest_unknown_device_and_bad_payloads_with_mosquitto_pub(mosquitto, tmp_path):
    """mosquitto_pub publishes as the devices: good messages are journaled; an unknown
    device and undecodable payloads are refused, counted and logged with the topic, and the
    link carries on."""
    hub = start_hub(write_config(tmp_path, mosquitto))
    try:
        lines = "\n".join(json.dumps({"ts": 1_767_225_600_000 + i, "leak": i, "t1": 250})
                          for i in range(1, 51)) + "\n"
        pub = [MOSQUITTO_PUB, "-h", "127.0.0.1", "-p", str(mosquitto.port), "-u", "dev", "-P",
               "dev-secret", "-q", "1"]
        subprocess.run([*pub, "-t", "esm/dev-1/up", "-l"], input=lines, text=True, check=True,
                       timeout=30)
        subprocess.run([*pub, "-t", "esm/intruder/up", "-m", '{"leak": 1}'], check=True,
                       timeout=30)
        subprocess.run([*pub, "-t", "esm/dev-2/up", "-m", "{not json"], check=True, timeout=30)
        subprocess.run([*pub, "-t", "esm/dev-2/up", "-m", '{"leak": "high"}'], check=True,
                       timeout=30)
        subprocess.run([*pub, "-t", "esm/dev-2/up", "-m", '{"leak": 7, "alarm": 1}'],
                       check=True, timeout=30)
        hub.wait_for("refused a message from unknown device 'intruder' on esm/intruder/up")
        line = hub.wait_for("bad payload from dev-2 on esm/dev-2/up")
        assert "not JSON" in line and "'{not json'" in line
        hub.wait_for("bad payload from dev-2 on esm/dev-2/up: leak: expected a number")
        hub.wait_for("alarm residual_current raised on dev-2")
        got = wait_for_values(tmp_path, "dev-1", set(map(float, range(1, 51))))
        assert len(got) == 50  # one delivery each: every PUBACK went out after its commit
        assert sorted(r.ts for r in got) == [1_767_225_600 + i / 1000 for i in range(1, 51)]
        assert wait_for_values(tmp_path, "dev-2", {7.0})
    finally:
        assert hub.stop() == 0
    m = metrics(tmp_path)
    assert m[("mqtt.refused", (("transport", "broker"),))] == 1
    assert m[("registry.refused", (("transport", "broker"),))] == 1
    assert m[("mqtt.decode_errors", (("model", "acme"), ("transport", "broker")))] == 2
    assert not any(r.device == "intruder" for r in readings(tmp_path))


@pytest.fixture
def ingest_fault(site_dir):
    """tests/plugins/hubtest_ingest_fault.py installed: ``HUBTEST_INGEST_FAULT`` makes the
    hub's first ingest fail."""
    write_distribution(site_dir, "hubtest-ingest-fault",
                       {"ingest_fault": "hubtest_ingest_fault"},
                       {"hubtest_ingest_fault": (HERE / "plugins" / "hubtest_ingest_fault.py")
                        .read_text()})


@pytest.mark.parametrize("fault", ["commit", "raise"])
def test_a_failed_ingest_reconnects_and_the_broker_sends_again(mosquitto, tmp_path, monkeypatch,
                                                             ingest_fault, fault):
    """The journal refuses a batch once (a failed commit, or ingest_many raising): the hub
    counts and logs it, drops the link and reconnects, and the broker sends the unacked
    messages again, so every value arrives. A receive window of 20 is what a stuck ack
    queue would fill for good."""
    monkeypatch.setenv("HUBTEST_INGEST_FAULT", fault)
    hub = start_hub(write_config(tmp_path, mosquitto, receive_maximum=20))
    dev = Device(mosquitto)
    try:
        dev.publish_values("dev-1", range(1, 201))
        line = hub.wait_for("journal refused")
        assert "reconnecting so the broker sends them again" in line
        hub.wait_for("dropped by the hub: journal refused")
        wait_for_values(tmp_path, "dev-1", set(map(float, range(1, 201))))
        dev.publish_values("dev-1", range(201, 221))  # and the new link carries on
        wait_for_values(tmp_path, "dev-1", set(map(float, range(1, 221))))
    finally:
        dev.close()
        assert hub.stop() == 0
    m = metrics(tmp_path)
    assert m[("mqtt.ingest_errors", (("transport", "broker"),))] >= 1


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_message_far_over_max_payload_costs_only_itself(mosquitto, tmp_path, engine,
                                                          protocol):
    """A 300 KB payload (over max_payload + 64 KiB): with MQTT 5 the hub's Maximum Packet
    Size has Mosquitto discard it; with 3.1.1 the hub skips it (native: counted as
    oversized; paho: a decode error), logs the topic and an excerpt, and acknowledges it.
    Either way the link stays up and the next message arrives."""
    hub = start_hub(write_config(tmp_path, mosquitto, protocol=protocol))
    big = tmp_path / "big.json"
    big.write_text('{"leak": 1, "pad": "' + "x" * 300_000 + '"}')
    pub = [MOSQUITTO_PUB, "-h", "127.0.0.1", "-p", str(mosquitto.port), "-u", "dev", "-P",
           "dev-secret", "-q", "1", "-V", "5" if protocol == "5" else "mqttv311",
           "-t", "esm/dev-1/up"]
    try:
        subprocess.run([*pub, "-f", str(big)], check=True, timeout=30)
        subprocess.run([*pub, "-m", '{"leak": 42}'], check=True, timeout=30)
        wait_for_values(tmp_path, "dev-1", {42.0})
        if protocol == "3.1.1":
            line = hub.wait_for("skipped a message of" if engine == "native" else
                                "bad payload from dev-1 on esm/dev-1/up")
            assert "esm/dev-1/up" in line and "'{\"leak\": 1, \"pad\": \"xxx" in line, line
        hub.drain()
        assert not any("link down" in line for line in hub.lines), "".join(hub.lines)
        if protocol == "5":  # the broker discarded it: the hub never saw it
            assert not any("bad payload" in line or "skipped" in line for line in hub.lines)
    finally:
        assert hub.stop() == 0
    assert {r.value for r in readings(tmp_path, "dev-1")} == {42.0}
    m = metrics(tmp_path)
    oversized = m.get(("mqtt.oversized", (("transport", "broker"),)), 0)
    assert oversized == (1 if protocol == "3.1.1" and engine == "native" else 0)


def test_tls_with_a_client_certificate(mosquitto, tmp_path):
    """The hub authenticates with a certificate from the test CA on the TLS listener."""
    cert, key = mosquitto.pki.issue("hub-client", "hub")
    config = write_config(tmp_path, mosquitto, port=mosquitto.tls_port, username=None,
                          password=None, tls={"ca_file": mosquitto.pki.ca_path,
                                              "cert_file": cert, "key_file": key})
    hub = start_hub(config)
    dev = Device(mosquitto)
    try:
        assert any("(TLS)" in line for line in hub.lines)
        dev.publish_values("dev-2", range(1, 21))
        wait_for_values(tmp_path, "dev-2", set(map(float, range(1, 21))))
    finally:
        dev.close()
        assert hub.stop() == 0
    assert "u'hub'" in mosquitto.log()  # the certificate's common name became the user


def test_tls_refuses_an_unknown_ca(mosquitto, tmp_path):
    """A broker whose certificate the hub's CA did not sign is not talked to; the hub keeps
    retrying and says why."""
    other = TestPki(str(tmp_path / "other-pki"))
    cert, key = other.issue("hub-client", "hub")
    config = write_config(tmp_path, mosquitto, port=mosquitto.tls_port, username=None,
                          password=None, tls={"ca_file": other.ca_path, "cert_file": cert,
                                              "key_file": key})
    hub = HubProcess(config, CWD)
    try:
        line = hub.wait_for("broker: cannot connect to")
        assert "certificate verify failed" in line.lower()
        hub.wait_for("fault broker_link raised on hub")
    finally:
        assert hub.stop() == 0


class Responder:
    """The device side of commands: answers every command on its down topic on the response
    topic, echoing the correlation data (MQTT 5), with result code ``code``."""

    def __init__(self, broker: Mosquitto, device: str, code: int = 0) -> None:
        self.received: list[tuple[dict, bytes | None]] = []
        self.code = code
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{device}-cmd",
                                  protocol=mqtt.MQTTv5)
        self.client.username_pw_set("dev", "dev-secret")
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect("127.0.0.1", broker.port)
        self.client.subscribe(f"esm/{device}/down", qos=1)
        self.client.loop_start()
        assert subscribed.wait(10)

    def _on_message(self, client, userdata, msg) -> None:
        body = json.loads(msg.payload)
        corr = getattr(msg.properties, "CorrelationData", None)
        self.received.append((body, corr))
        props = Properties(PacketTypes.PUBLISH)
        props.CorrelationData = corr
        answer = {"cid": body["id"], "code": self.code, "msg": "done" if not self.code else
                  "locked"}
        client.publish(msg.properties.ResponseTopic, json.dumps(answer), qos=1,
                       properties=props)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def hub_command(config: str, device: str, action: str, ttl: float = 10) -> dict:
    out = subprocess.run([str(BIN / "hub"), "command", "-c", config, "--device", device,
                          action, "--json", "--ttl", str(ttl), "--by", "tester"], cwd=CWD,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode in (0, 1), out.stderr
    return json.loads(out.stdout)


def test_command_round_trip_failure_and_timeout(mosquitto, tmp_path):
    """A command goes down with its correlation id; the device's result completes it; a
    refusal fails it; silence times it out."""
    config = write_config(tmp_path, mosquitto, command_timeout=1.5)
    hub = start_hub(config)
    responder = Responder(mosquitto, "dev-1")
    try:
        result = hub_command(config, "dev-1", "reset")
        assert (result["ok"], result["status"]) == (True, "succeeded"), result
        (body, corr), = responder.received
        assert body == {"cmd": "reset", "id": result["command_id"]}
        assert corr == result["command_id"].encode()
        responder.code = 3
        refused = hub_command(config, "dev-1", "silence")
        assert (refused["status"], refused["detail"]) == ("failed", "locked"), refused
        unsupported = hub_command(config, "dev-1", "trip")
        assert unsupported["status"] == "failed" and "not supported" in unsupported["detail"]
        silent = hub_command(config, "dev-2", "reset")  # nobody listens for dev-2
        assert silent["status"] == "timed_out", silent
    finally:
        responder.close()
        assert hub.stop() == 0
    journal = Journal(str(tmp_path / "var" / "journal.sqlite"), clock=Clock(), readonly=True)
    journal.open()
    lifecycle = [r for _, r in journal.read(0, 100_000, {"command", "command_result"})]
    journal.close()
    reset = next(r for r in lifecycle if getattr(r, "action", None) == "reset"
                 and r.device == "dev-1")
    assert [r.status.value for r in lifecycle
            if getattr(r, "command_id", None) == reset.id] == ["sent", "succeeded"]


class SteadyPublisher:
    """A device publishing ``values`` at QoS 1 without pause, as a real one would through
    a broker restart: a persistent session of its own, paho's reconnect, at most 20 messages
    in flight, and paho's resend of whatever the broker had not acknowledged. ``reached``
    is set once ``pause_at`` values were acknowledged; past ``hold_at`` it publishes only
    once ``go`` is set (so the broker can be stopped before the stream is over)."""

    def __init__(self, broker: Mosquitto, device: str, values: range, pause_at: int,
                 hold_at: int) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{device}-pub",
                                  protocol=mqtt.MQTTv311, clean_session=False)
        self.client.username_pw_set("dev", "dev-secret")
        self.client.reconnect_delay_set(1, 2)
        self.client.max_inflight_messages_set(20)
        self.window = threading.Semaphore(20)
        self.acked = 0
        self.reached, self.go, self.done = threading.Event(), threading.Event(), threading.Event()
        self.client.on_publish = self._on_publish
        self.device, self.values, self.pause_at, self.hold_at = device, values, pause_at, hold_at
        self.error: BaseException | None = None
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _on_publish(self, client, userdata, mid, reason, properties) -> None:
        self.acked += 1
        if self.acked >= self.pause_at:
            self.reached.set()
        if self.acked == len(self.values):
            self.done.set()
        self.window.release()

    def _run(self) -> None:
        try:
            for n, v in enumerate(self.values):
                if n == self.hold_at:
                    assert self.go.wait(60), "never told to go on"
                assert self.window.acquire(timeout=60), "no PUBACK for 60 s"
                self.client.publish(f"esm/{self.device}/up",
                                    json.dumps({"ts": 1_767_225_600_000 + v, "leak": v}), qos=1)
        except BaseException as e:  # noqa: BLE001 - reported by the test thread
            self.error = e
            self.done.set()

    def close(self) -> None:
        self.go.set()
        self.client.disconnect()
        self.client.loop_stop()


def test_broker_restart_and_messages_published_while_the_hub_is_away(tmp_path):
    """The broker is stopped mid-stream, while a device is still publishing at QoS 1 and
    the hub has messages in flight; the hub reconnects (backoff), resubscribes and goes on,
    and every value arrives (duplicates allowed, losses not). Its persistent session keeps
    what devices publish while the hub itself is down."""
    broker = Mosquitto(str(tmp_path / "mosquitto"), persistence=True).start()
    config = write_config(tmp_path, broker)
    hub = start_hub(config)
    try:
        total = 3000
        dev = SteadyPublisher(broker, "dev-1", range(1, total + 1), pause_at=500,
                              hold_at=1000)
        try:
            assert dev.reached.wait(60), "the publisher never got 500 messages acknowledged"
            hub.drain()
            broker.stop()  # 500..1000 acknowledged by now: mid-stream, some in flight
            dev.go.set()
            assert not dev.done.is_set()
            hub.wait_for("broker: broker link down")
            hub.wait_for("fault broker_link raised on hub")
            assert len(readings(tmp_path, "dev-1")) < total
            broker.start()
            # the fault clears on CONNACK, the subscription follows: their log lines may
            # cross
            hub.wait_for_all("broker: subscribed to", "fault broker_link cleared on hub")
            assert dev.done.wait(120), f"the publisher stalled at {dev.acked} acknowledged"
            assert dev.error is None, dev.error
        finally:
            dev.close()
        got = wait_for_values(tmp_path, "dev-1", set(map(float, range(1, total + 1))),
                              timeout=60)
        assert len(got) >= total
    finally:
        assert hub.stop() == 0
    try:
        dev = Device(broker)  # the hub is away: the broker queues for its session
        dev.publish_values("dev-1", range(5001, 5201))
        dev.close()
        before = len(readings(tmp_path, "dev-1"))
        hub = start_hub(config)
        try:
            got = wait_for_values(tmp_path, "dev-1", set(map(float, range(5001, 5201))))
            assert len(got) == before + 200  # nothing twice: acked after its commit
        finally:
            assert hub.stop() == 0
    finally:
        broker.stop()


def test_sigkill_between_receipt_and_commit_loses_nothing(tmp_path):
    """SIGKILL while a stream arrives; after a restart every message published at QoS 1 is
    in the journal (duplicates allowed, losses not)."""
    broker = Mosquitto(str(tmp_path / "mosquitto"), persistence=True).start()
    # a slow commit widens the window between receipt and commit
    config = write_config(tmp_path, broker)
    data = yaml.safe_load(open(config, encoding="utf-8"))
    data["journal"]["commit_interval_ms"] = 200
    with open(config, "w", encoding="utf-8") as f:
        yaml.safe_dump(data, f)
    hub = start_hub(config)
    total = 3000
    dev = Device(broker)
    try:
        publisher = threading.Thread(target=dev.publish_values,
                                     args=("dev-1", range(1, total + 1)))
        publisher.start()
        wait_until(lambda: len(readings(tmp_path, "dev-1")) >= 200, 30, what="200 readings")
        os.kill(hub.proc.pid, signal.SIGKILL)
        hub.proc.wait(10)
        publisher.join(60)
        assert not publisher.is_alive()
        before = len(readings(tmp_path, "dev-1"))
        assert before < total, "the kill came too late to test anything"
        hub = start_hub(config)
        got = wait_for_values(tmp_path, "dev-1", set(map(float, range(1, total + 1))),
                              timeout=60)
        assert len(got) >= total
    finally:
        dev.close()
        if hub.proc.poll() is None:
            assert hub.stop() == 0
        broker.stop()


def test_shared_subscription_over_several_connections(mosquitto, tmp_path):
    """Two connections of one hub in a $share group split one stream; nothing is lost."""
    config = write_config(tmp_path, mosquitto, connections=2, shared_group="hubs")
    hub = HubProcess(config, CWD)
    dev = Device(mosquitto)
    try:
        lines = [hub.wait_for("subscribed to $share/hubs/esm/+/up") for _ in range(2)]
        assert sorted(line.split("] ")[1].split(":")[0] for line in lines) == [
            "broker#0", "broker#1"]
        dev.publish_values("dev-1", range(1, 501))
        got = wait_for_values(tmp_path, "dev-1", set(map(float, range(1, 501))))
        assert len(got) == 500
    finally:
        dev.close()
        assert hub.stop() == 0


def test_readme_mqtt_configuration_is_valid(monkeypatch):
    """The MQTT example of the README passes the configuration check."""
    import re
    from pathlib import Path

    from hub.config import check_config
    from hub.pluginmanager import make_plugins

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", readme, flags=re.S)
                 if "type: mqtt" in b)
    monkeypatch.setenv("MQTT_PASSWORD", "s3cret")
    monkeypatch.chdir(Path(__file__).parent.parent)
    # written for conf/hub.yaml: its map is relative to conf/
    cfg = check_config(yaml.safe_load(block), "conf/hub.yaml", make_plugins())
    assert [d.address_key for d in cfg.devices] == ["861234567890007", "861234567890008"]
    assert repr(cfg.transports["broker"].options.password) == "Secret(env:MQTT_PASSWORD)"


SIM_MODEL = {
    "type": "json_map",
    "timestamp": {"path": "ts", "format": "epoch_ms"},
    "points": [{"path": "leak", "quantity": "residual_current", "channel": "L1"},
               {"path": "temp[0]", "quantity": "temperature", "channel": "T1"},
               {"path": "temp[1]", "quantity": "temperature", "channel": "T2"},
               {"path": "v[0]", "quantity": "voltage", "channel": "A"},
               {"path": "v[1]", "quantity": "voltage", "channel": "B"},
               {"path": "v[2]", "quantity": "voltage", "channel": "C"}],
    "alarms": [{"path": "alarm.leak", "code": "residual_current", "channel": "L1"},
               {"path": "alarm.temp1", "code": "temperature", "channel": "T1"}],
    "faults": [{"path": "fault.probe2", "code": "channel_open", "channel": "T2"}],
    "commands": {"reset": {"cmd": "reset"}},
}


def test_hub_simulate_mqtt_publishes_and_answers_commands(mosquitto, tmp_path):
    """`hub simulate mqtt` as devices: its readings reach the journal of `hub run`, and a
    command sent to one of its devices succeeds."""
    config = write_config(tmp_path, mosquitto)
    data = yaml.safe_load(open(config, encoding="utf-8"))
    data["models"] = {"sim": SIM_MODEL}
    data["devices"] = [{"id": d, "model": "sim", "transport": "broker", "address": d}
                       for d in ("sim-0001", "sim-0002", "sim-0003")]
    with open(config, "w", encoding="utf-8") as f:
        yaml.safe_dump(data, f)
    hub = start_hub(config)
    sim = subprocess.Popen(
        [str(BIN / "hub"), "simulate", "mqtt", "--broker", f"127.0.0.1:{mosquitto.port}",
         "--count", "3", "--rate", "60", "--username", "dev", "--password-env",
         "HUBTEST_DEV_PASSWORD", "--status-interval", "1"],
        env={**os.environ, "HUBTEST_DEV_PASSWORD": "dev-secret"}, cwd=CWD,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "mqtt-sim: 3 devices (sim-0001..sim-0003)" in sim.stdout.readline()
        wait_until(lambda: {r.device for r in readings(tmp_path)} >= {"sim-0001", "sim-0002",
                                                                    "sim-0003"},
                   30, what="readings of the three simulated devices")
        result = hub_command(config, "sim-0002", "reset")
        assert (result["ok"], result["status"]) == (True, "succeeded"), result
    finally:
        sim.send_signal(signal.SIGTERM)
        out, _ = sim.communicate(timeout=30)
        assert hub.stop() == 0
    assert sim.returncode == 0, out
    assert "answered 1 commands" in out.splitlines()[-1]
    latest = {(r.device, r.quantity, r.channel) for r in readings(tmp_path)}
    assert ("sim-0001", "voltage", "C") in latest


def test_hub_simulate_mqtt_says_in_one_line_that_it_cannot_connect(tmp_path, engine):
    """No broker at the address: one line on stderr naming it, exit status 1, no
    traceback."""
    if engine != "paho":
        pytest.skip("the simulator has one engine")
    port = free_port()  # nothing listens there
    out = subprocess.run([str(BIN / "hub"), "simulate", "mqtt", "--broker", f"127.0.0.1:{port}",
                          "--duration", "5"], cwd=CWD, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1, out
    assert out.stderr.strip() == f"mqtt-sim: cannot connect to 127.0.0.1:{port}: Connection " \
        "refused", out.stderr
    assert "Traceback" not in out.stdout + out.stderr


def test_hub_simulate_mqtt_modbus_frames_commands_and_retained_status(mosquitto, tmp_path):
    """`hub simulate mqtt --model modbus` plays DTUs in MQTT mode: raw RTU answers to the
    map's polls, decoded by modbus_payload; a trip is echoed by the simulated slave; each
    device's retained status says online while it runs and offline after."""
    config = write_config(tmp_path, mosquitto)
    data = yaml.safe_load(open(config, encoding="utf-8"))
    data["models"] = {"efd": {"type": "modbus_payload", "map": "conf/devices/efd-example.yaml"}}
    data["devices"] = [{"id": d, "model": "efd", "transport": "broker", "address": d}
                       for d in ("efd-0001", "efd-0002")]
    with open(config, "w", encoding="utf-8") as f:
        yaml.safe_dump(data, f)
    hub = start_hub(config)
    sim = subprocess.Popen(
        [str(BIN / "hub"), "simulate", "mqtt", "--model", "modbus", "--prefix", "efd-",
         "--broker", f"127.0.0.1:{mosquitto.port}", "--count", "2", "--rate", "20",
         "--username", "dev", "--password-env", "HUBTEST_DEV_PASSWORD"],
        env={**os.environ, "HUBTEST_DEV_PASSWORD": "dev-secret"}, cwd=CWD,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "mqtt-sim: 2 devices (efd-0001..efd-0002)" in sim.stdout.readline()
        wait_until(lambda: {(r.device, r.quantity) for r in readings(tmp_path)} >= {
            ("efd-0001", "temperature"), ("efd-0002", "voltage")}, 30,
            what="readings of both simulated DTUs")
        assert retained(mosquitto, "esm/efd-0002/status") == b"online"
        result = hub_command(config, "efd-0001", "trip")
        assert (result["ok"], result["status"]) == (True, "succeeded"), result
    finally:
        sim.send_signal(signal.SIGTERM)
        out, _ = sim.communicate(timeout=30)
        assert hub.stop() == 0
    assert sim.returncode == 0, out
    assert "answered 1 commands" in out.splitlines()[-1]
    assert retained(mosquitto, "esm/efd-0001/status") == b"offline"
    volts = [r.value for r in readings(tmp_path, "efd-0002") if r.quantity == "voltage"]
    assert volts and all(200 < v < 240 for v in volts), volts


def retained(broker: Mosquitto, topic: str) -> bytes:
    """The retained message on ``topic``, as a new subscriber gets it."""
    out = subprocess.run(["/usr/bin/mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port),
                          "-u", "dev", "-P", "dev-secret", "-t", topic, "-C", "1", "-W", "10",
                          "--retained-only"], capture_output=True, timeout=30)
    assert out.returncode == 0, out
    return out.stdout.rstrip(b"\n")


def test_raw_modbus_frames_and_oversized_payloads_from_mosquitto_pub(mosquitto, tmp_path):
    """A 4G DTU in MQTT mode publishes the RTU answer it read (binary, from a file with
    mosquitto_pub -f): the modbus_payload model decodes it with the register map; a payload
    over max_payload is refused with its topic and an excerpt."""
    from plugins.devices.modbus.model import ModbusMapModel
    from plugins.protocols.modbus import rtu

    config = write_config(tmp_path, mosquitto, max_payload=256)
    data = yaml.safe_load(open(config, encoding="utf-8"))
    data["models"]["efd"] = {"type": "modbus_payload", "map": "conf/devices/efd-example.yaml"}
    data["devices"].append({"id": "efd-1", "model": "efd", "transport": "broker",
                            "address": "861234567890123"})
    with open(config, "w", encoding="utf-8") as f:
        yaml.safe_dump(data, f)
    poll = ModbusMapModel.from_file("conf/devices/efd-example.yaml").plan()[0]
    regs = [35, 253, 0x7FFF, 240, 251, 0, 0, 0, 2205] + [0] * poll.count
    frame = rtu.read_response(1, poll.function, rtu.pack_registers(regs[:poll.count]))
    (tmp_path / "frame.bin").write_bytes(frame)
    hub = start_hub(config)
    pub = [MOSQUITTO_PUB, "-h", "127.0.0.1", "-p", str(mosquitto.port), "-u", "dev", "-P",
           "dev-secret", "-q", "1"]
    try:
        subprocess.run([*pub, "-t", "esm/861234567890123/up", "-f", str(tmp_path / "frame.bin")],
                       check=True, timeout=30)
        subprocess.run([*pub, "-t", "esm/dev-1/up", "-m", '{"leak": 1}' + " " * 300],
                       check=True, timeout=30)
        line = hub.wait_for("bad payload from dev-1 on esm/dev-1/up")
        assert "exceeds max_payload 256" in line
        wait_until(lambda: any(r.device == "efd-1" for r in readings(tmp_path)), 30,
                   what="readings of efd-1")
    finally:
        assert hub.stop() == 0
    latest = {(r.quantity, r.channel): r.value for r in readings(tmp_path, "efd-1")}
    assert latest[("temperature", "T1")] == pytest.approx(25.3)
    assert latest[("voltage", "A")] == pytest.approx(220.5)
    assert ("temperature", "T2") not in latest  # 0x7FFF: probe not fitted


# ---------------------------------------------------------------------------- supervision


@pytest.fixture
def engine_crash(site_dir):
    """tests/plugins/hubtest_mqtt_crash.py installed: ``HUBTEST_MQTT_CRASH=N`` makes the
    engine raise once, while handling the N-th received message."""
    write_distribution(site_dir, "hubtest-mqtt-crash", {"mqtt_crash": "hubtest_mqtt_crash"},
                       {"hubtest_mqtt_crash": (HERE / "plugins" / "hubtest_mqtt_crash.py")
                        .read_text()})


def journal_events(tmp_path, code: str) -> list:
    journal = Journal(str(tmp_path / "var" / "journal.sqlite"), clock=Clock(), readonly=True)
    journal.open()
    try:
        return [e for _, e in journal.read(0, 10_000_000, {"event"}) if e.code == code]
    finally:
        journal.close()


def test_an_engine_that_dies_is_logged_counted_faulted_and_restarted(mosquitto, tmp_path,
                                                                    monkeypatch, engine_crash,
                                                                    engine):
    """A bug inside the engine's loop (injected: an exception while it handles the 20th
    message; with paho that ends paho's thread, as the non-UTF-8 topic of issue 12 did) is
    logged with its traceback, counted in mqtt.crashes, raises a component_crashed fault and
    marks the link down; the supervisor starts the engine again, every value published
    before and after the crash arrives, and the fault clears once it stays up."""
    monkeypatch.setenv("HUBTEST_MQTT_CRASH", "20")
    hub = start_hub(write_config(tmp_path, mosquitto))
    dev = Device(mosquitto)
    try:
        dev.publish_values("dev-1", range(1, 51))
        crash = hub.wait_for(f"broker ({engine} engine): crashed (RuntimeError: injected:")
        assert "restarting in" in crash
        hub.wait_for("Traceback")
        hub.wait_for("injected: ")  # the traceback's last line
        hub.wait_for(f"broker link down (the {engine} engine")
        hub.wait_for("broker: subscribed to")  # the restarted engine
        wait_for_values(tmp_path, "dev-1", set(map(float, range(1, 51))))
        dev.publish_values("dev-1", range(51, 101))  # after the crash: ingest goes on
        wait_for_values(tmp_path, "dev-1", set(map(float, range(1, 101))))
        hub.wait_for(f"broker ({engine} engine): running again")  # 2 s: 10 × 0.2 s
        wait_until(lambda: len(journal_events(tmp_path, "component_crashed")) == 2, 30,
                   what="the fault raised and cleared")
    finally:
        dev.close()
        assert hub.stop() == 0
    raised, cleared = journal_events(tmp_path, "component_crashed")
    assert raised.state.value == "raised" and cleared.state.value == "cleared"
    assert raised.device == "hub" and cleared.id == raised.id
    assert "RuntimeError: injected" in raised.message
    assert journal_events(tmp_path, "broker_link")  # the link was down meanwhile
    m = metrics(tmp_path)
    assert m[("mqtt.crashes", (("transport", "broker"),))] == 1
    assert m[("mqtt.disconnects", (("transport", "broker"),))] >= 1  # link_down: gauge 0
    assert m[("mqtt.connected", (("transport", "broker"),))] == 0  # stopped: gauge at 0
    crashes = [line for line in hub.lines if "[hub.supervisor#error]" in line]
    assert len(crashes) == 1, crashes


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_topic_that_is_not_utf8_is_counted_logged_and_acked(tmp_path, engine, protocol):
    """Issue 12: a PUBLISH whose topic is not UTF-8 (a broker that does not check sends it;
    Mosquitto refuses the publisher, so a stand-in broker does) used to kill paho's thread
    with UnicodeDecodeError: the link looked up, nothing more was ingested. Now either engine
    counts it (mqtt.bad_topics), logs its bytes, acknowledges it, and the next message on
    the same link is journaled."""
    from tests.peers.mqtt_broker import FakeBroker

    broker = FakeBroker()
    config = {"type": "mqtt", "host": "127.0.0.1", "port": broker.port, "protocol": protocol,
              "client_id": "hub-test", "engine": engine}
    path = tmp_path / "hub.yaml"
    path.write_text(yaml.safe_dump({
        "hub": {"state_dir": str(tmp_path / "var")}, "journal": {"commit_interval_ms": 5},
        "models": {"acme": MODEL}, "transports": {"broker": config},
        "devices": [{"id": "dev-1", "model": "acme", "transport": "broker",
                     "address": "dev-1"}]}))
    hub = start_hub(str(path))
    try:
        assert broker.subscribed.wait(30)
        broker.publish(b"esm/\xff\xfedev/up", b'{"leak": 1}', packet_id=1)
        broker.publish(b"esm/dev-1/up", b'{"leak": 2}', packet_id=2)
        broker.wait_acked({1, 2})
        wait_for_values(tmp_path, "dev-1", {2.0})
        line = hub.wait_for("dropped a message whose topic is not UTF-8")
        assert "65 73 6d 2f ff fe" in line and "'{\"leak\": 1}'" in line, line
        hub.drain()
        assert not any("link down" in ln or "crashed" in ln for ln in hub.lines), \
            "".join(hub.lines)
    finally:
        assert hub.stop() == 0
        broker.close()
    m = metrics(tmp_path)
    assert m[("mqtt.bad_topics", (("transport", "broker"),))] == 1
    assert m.get(("mqtt.crashes", (("transport", "broker"),)), 0) == 0
