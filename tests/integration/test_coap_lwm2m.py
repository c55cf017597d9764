"""The ``coap_lwm2m`` transport.

Sans-IO parts on a ``task.Clock``: options, the registration query, the registration table
(lifetime, queue mode, NAT, expiry), the downlink queue (order, window, retries, time to
live) and the core's additions (offline after a lifetime, commands queued and resumed).

Then `hub run` as a real process (it installs the asyncio reactor, as in production) against
real UDP sockets on 127.0.0.1: devices played by aiocoap contexts that both register and
answer the hub's requests, and by Debian's ``coap-client-notls``, a client we did not write.
Every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import re
import shutil
import struct
import subprocess
import time

import aiocoap
import pytest
import yaml
from aiocoap import Code, Message
from aiocoap import resource as coap_resource
from twisted.internet import defer
from twisted.internet.task import Clock

from hub.cli import admin_request
from hub.journal import Journal
from hub.model import Command, CommandResult, CommandStatus
from hub.validate import Checker, Path, Section
from plugins.transports.coap_lwm2m import options as coap_options
from plugins.transports.coap_lwm2m.downlink_queue import DownlinkQueue, NoAnswer, QueueFull
from plugins.transports.coap_lwm2m.registration import (
    Params,
    RegistrationError,
    RegistrationTable,
    parse_query,
)
from tests.support.distribution import PLUGINS, write_distribution
from tests.support.hubcli import CWD, hub_command, journal_records
from tests.support.hubproc import HubProcess
from tests.support.services import async_wait_until, free_udp_port

COAP_CLIENT = "/usr/bin/coap-client-notls"
IMEI1, IMEI2, IMSI1 = "861234567890123", "861234567890124", "460001234567890"

# ---------------------------------------------------------------------------- options


def options(data: dict) -> tuple[object, list[str]]:
    checker = Checker()
    opts = coap_options.check_options(Section(checker, Path("hub.yaml", ("transports", "nb")),
                                              data))
    return opts, checker.errors


def test_options_defaults_and_errors_name_their_key_paths():
    opts, errors = options({})
    assert errors == [] and opts.port == 5683 and opts.uplink_path == ("up", "{imei}")
    assert opts.grace(100) == 30 and opts.grace(3000) == 300  # max(30 s, 10 %)
    opts, errors = options({"uplink_path": None, "port": 0})
    assert errors == [] and opts.uplink_path is None
    assert opts.receive_buffer == 4 << 20
    _, errors = options({"port": 70000, "receive_buffer": -1, "uplink_path": "up/{id}",
                         "queue_window": 0, "lifetime_grace": -1, "colour": "red"})
    assert "hub.yaml: transports.nb.port: 70000 is outside 0..65535" in errors
    assert any(e.startswith("hub.yaml: transports.nb.receive_buffer: -1 is outside")
               for e in errors)
    assert any(e.startswith("hub.yaml: transports.nb.uplink_path: 'up/{id}' must hold "
                            "{imei}") for e in errors)
    assert any(e.startswith("hub.yaml: transports.nb.queue_window: 0 is outside") for e in errors)
    assert any(e.startswith("hub.yaml: transports.nb.lifetime_grace:") for e in errors)
    assert "hub.yaml: transports.nb.colour: is not a known key here" in errors
    _, errors = options({"uplink_path": "rd/{imei}"})
    assert errors and "shadow" in errors[0]


def test_check_address():
    assert coap_options.check_address(861234567890123) == IMEI1
    assert coap_options.check_address("urn:imei:" + IMEI1) == "urn:imei:" + IMEI1
    for bad in ("", "a b", "x/y", None, {"imei": 1}):
        with pytest.raises(coap_options.Invalid):
            coap_options.check_address(bad)


# ---------------------------------------------------------------------------- registration


def test_parse_query():
    p = parse_query(["ep=" + IMEI1, "lt=300", "lwm2m=1.1", "b=U", "Q", "pct=110", "apn=x"])
    assert p == Params(endpoint=IMEI1, lifetime=300.0, lwm2m="1.1", binding="U", queue=True,
                       preferred_format=110)
    assert parse_query(["b=UQ"]).binding == "UQ"
    for bad, code in ((["lt=ten"], "bad_request"), (["b=X"], "bad_request"),
                      (["lwm2m=2.0"], "precondition_failed"), (["ep="], "bad_request"),
                      (["pct=json"], "bad_request")):
        with pytest.raises(RegistrationError) as e:
            parse_query(bad)
        assert e.value.code == code, bad
    # numbers too long for float() or int(): a bad request, not an internal error
    for bad in (["lt=" + "9" * 400], ["pct=" + "1" * 5000], ["lt=" + "1" * 11],
                ["pct=000110"]):
        with pytest.raises(RegistrationError) as e:
            parse_query(bad)
        assert e.value.code == "bad_request" and len(str(e.value)) < 80, bad
    assert parse_query(["lt=9999999999", "pct=00110"]).lifetime == 9999999999.0


def test_an_update_keeps_queue_mode_under_1_1_and_changes_it_with_a_1_0_binding():
    """LwM2M 1.1: queue mode is the Register's Q parameter; an Update carries none, so an
    Update repeating b=U keeps it. LwM2M 1.0: queue mode is in the binding (UQ), so an
    Update to b=U turns it off."""
    clock = Clock()
    t = table(clock)
    reg, _ = t.register("efd-1", parse_query(["ep=a", "lwm2m=1.1", "b=U", "Q"]), [], "x")
    assert reg.queue_mode
    t.update(reg.location, parse_query(["lt=300", "b=U"]), None, "x")
    assert reg.queue_mode and reg.binding == "U"
    old, _ = t.register("efd-2", parse_query(["ep=b", "lwm2m=1.0", "b=UQ"]), [], "y")
    assert old.queue_mode
    t.update(old.location, parse_query(["b=U"]), None, "y")
    assert not old.queue_mode
    t.update(old.location, parse_query(["b=UQ"]), None, "y")
    assert old.queue_mode
    plain, _ = t.register("efd-3", parse_query(["ep=c", "lwm2m=1.1", "b=U"]), [], "z")
    t.update(plain.location, parse_query(["b=U", "Q"]), None, "z")
    assert plain.queue_mode  # a Q on an Update is not 1.1, but its meaning is plain


def table(clock: Clock) -> RegistrationTable:
    return RegistrationTable(clock, lambda lt: max(30.0, 0.1 * lt), default_lifetime=86400,
                             min_lifetime=10, max_lifetime=86400)


def test_registration_lifetime_queue_mode_nat_and_expiry():
    clock = Clock()
    clock.advance(1000)
    t = table(clock)
    reg, old = t.register("efd-1", parse_query(["ep=" + IMEI1, "lt=100", "b=UQ"]),
                          [(3, 0), (3303, 0)], "addr-1")
    assert old is None and reg.queue_mode and reg.lifetime == 100 and reg.location
    assert t.at(reg.location) is reg and t.get("efd-1") is reg
    assert t.reachable("efd-1", window=20)
    clock.advance(21)
    assert not t.reachable("efd-1", window=20)  # asleep after its window
    _, moved = t.update(reg.location, parse_query(["lt=200"]), None, "addr-2")
    assert moved and reg.remote == "addr-2" and reg.lifetime == 200
    assert t.reachable("efd-1", window=20)
    t.silent("efd-1")  # a request went unanswered: wait until it speaks again
    assert not t.reachable("efd-1", window=20)
    assert not t.heard("efd-1", "addr-2") and t.reachable("efd-1", window=20)
    # a non-queue device is reachable while registered; lifetimes are clamped
    reg2, _ = t.register("efd-2", parse_query(["ep=x", "lt=1"]), [], "addr-3")
    assert reg2.lifetime == 10 and not reg2.queue_mode
    clock.advance(39)  # 10 s + 30 s grace not yet over
    assert t.reachable("efd-2", window=20) and t.expire() == []
    clock.advance(2)
    assert not t.reachable("efd-2", window=20)
    assert t.expire() == [reg2] and t.get("efd-2") is None
    with pytest.raises(RegistrationError) as e:
        t.update(reg2.location, Params(), None, "addr-3")
    assert e.value.code == "not_found"
    # registering again (a reboot) replaces the old registration and its location
    new, old = t.register("efd-1", parse_query(["ep=" + IMEI1]), [], "addr-4")
    assert old is reg and t.at(reg.location) is None and new.lifetime == 86400
    assert t.deregister(new.location) is new and len(t) == 0
    with pytest.raises(RegistrationError):
        t.deregister(new.location)


def test_an_address_another_device_took_over_is_no_longer_the_first_devices():
    """A carrier NAT may hand the binding one module left to another: from then on the
    first device's requests (observations, a trip) must not go there, but wait until it
    speaks again from wherever it is."""
    clock = Clock()
    t = table(clock)
    told = []
    t.on_displaced = lambda reg, by: told.append((reg.device, by))
    a, _ = t.register("efd-1", parse_query(["ep=" + IMEI1, "b=U"]), [], "addr-1")
    b, _ = t.register("efd-2", parse_query(["ep=" + IMEI2, "b=U"]), [], "addr-2")
    assert t.reachable("efd-1", window=20) and told == []
    t.update(b.location, Params(), None, "addr-1")  # efd-2 now speaks from efd-1's address
    assert told == [("efd-1", "efd-2")] and a.remote is None and b.remote == "addr-1"
    assert not t.reachable("efd-1", window=20) and t.reachable("efd-2", window=20)
    t.heard("efd-1", "addr-9")  # it speaks again: reachable at its new address
    assert a.remote == "addr-9" and t.reachable("efd-1", window=20)
    t.heard("efd-2", "addr-2")  # moving back frees addr-1 without displacing anyone
    t.heard("efd-1", "addr-1")
    assert told == [("efd-1", "efd-2")] and b.remote == "addr-2"
    t.deregister(b.location)  # a device that left does not hold its address
    t.uplink("efd-3", "addr-2")
    assert told == [("efd-1", "efd-2")]


def test_a_device_without_queue_mode_silent_past_recent_traffic_is_not_reachable():
    """b=U without Q: reachable while recently heard (``recent``), then its commands wait
    for its next message, as for a sleeping device; any message opens it again."""
    clock = Clock()
    t = table(clock)
    reg, _ = t.register("efd-1", parse_query(["ep=" + IMEI1, "lt=86400", "b=U"]), [], "a")
    assert not reg.queue_mode
    clock.advance(59)
    assert t.reachable("efd-1", window=20, recent=60)
    clock.advance(2)
    assert not t.reachable("efd-1", window=20, recent=60)
    assert t.reachable("efd-1", window=20)  # no recent-traffic rule: the lifetime decides
    t.heard("efd-1", "a")
    assert t.reachable("efd-1", window=20, recent=60)


# ---------------------------------------------------------------------------- downlink queue


class Harness:
    """A DownlinkQueue whose sends the test answers by hand."""

    def __init__(self, clock: Clock, attempts: int = 2, max_queue: int = 3) -> None:
        self.clock = clock
        self.awake = False
        self.sent: list[tuple[str, defer.Deferred]] = []
        self.silent: list[str] = []
        self.q = DownlinkQueue(clock, lambda device: self.awake, self._send, self.silent.append,
                               attempts, max_queue)

    def _send(self, item):
        d = defer.Deferred()
        self.sent.append((item.command.action, d))
        return d

    def command(self, action: str, ttl: float = 60) -> Command:
        return Command(f"id-{action}", "efd-1", action, self.clock.seconds(), ttl=ttl)

    def ok(self, index: int) -> None:
        action, d = self.sent[index]
        d.callback(CommandResult(f"id-{action}", "efd-1", CommandStatus.SUCCEEDED,
                                 self.clock.seconds()))


def results(d: defer.Deferred) -> list:
    out: list = []
    d.addBoth(out.append)
    return out


def test_queue_sends_in_order_in_the_window_one_at_a_time():
    clock = Clock()
    h = Harness(clock)
    d1, waiting = h.q.submit("efd-1", h.command("trip"), b"")
    d2, _ = h.q.submit("efd-1", h.command("close"), b"")
    r1, r2 = results(d1), results(d2)
    assert waiting and h.sent == [] and h.q.waiting("efd-1") == 2
    h.awake = True
    h.q.wake("efd-1")
    assert [a for a, _ in h.sent] == ["trip"]  # the second waits for the first's answer
    h.ok(0)
    assert r1[0].status is CommandStatus.SUCCEEDED and [a for a, _ in h.sent] == ["trip", "close"]
    # no answer: the device fell asleep; the command is first again in the next window
    h.sent[1][1].errback(NoAnswer("silence"))
    assert h.silent == ["efd-1"] and r2 == [] and h.q.waiting("efd-1") == 1
    h.q.wake("efd-1")
    h.sent[2][1].errback(NoAnswer("silence"))  # second attempt of two
    assert r2[0].status is CommandStatus.TIMED_OUT and "2 attempts" in r2[0].detail


def test_queue_time_to_live_cancel_and_bounds():
    clock = Clock()
    h = Harness(clock)
    r1 = results(h.q.submit("efd-1", h.command("trip", ttl=10), b"")[0])
    d2, _ = h.q.submit("efd-1", h.command("close", ttl=3600), b"")
    clock.advance(11)
    h.awake = True
    h.q.wake("efd-1")
    assert r1[0].status is CommandStatus.TIMED_OUT and "time to live" in r1[0].detail
    assert [a for a, _ in h.sent] == ["close"]  # expired ones are never sent
    h.awake = False
    h.ok(0)
    ds = [h.q.submit("efd-1", h.command(a), b"")[0] for a in ("reset", "silence", "self_test")]
    with pytest.raises(QueueFull):
        h.q.submit("efd-1", h.command("trip"), b"")
    ds[1].addErrback(lambda f: None)
    ds[1].cancel()  # what the core does when the time to live runs out
    assert h.q.waiting("efd-1") == 2
    clock.advance(100)
    assert [i.command.action for i in h.q.expire()] == ["reset", "self_test"]
    assert h.q.waiting() == 0


# ---------------------------------------------------------------------------- core additions

CORE_CONFIG = {
    "transports": {"nb": {"type": "coap_lwm2m"}},
    "devices": [{"id": "efd-1", "model": "simulated", "transport": "nb", "address": IMEI1}],
}


def test_offline_after_a_lifetime_and_commands_queued_then_resumed(make_hub, hub_clock):
    hub = make_hub(CORE_CONFIG)
    hub.set_offline_after("efd-1", 40)  # default would be 60 × 3
    hub.heartbeat("efd-1")
    hub_clock.advance(41)
    assert [e.device for e in hub.presence.offline()] == ["efd-1"]

    class Sleepy:
        def __init__(self):
            self.got = []

        def send_command(self, device, command):
            self.got.append(command.id)
            hub.commands.mark_queued(command, "asleep")
            return defer.Deferred()

    target = Sleepy()
    hub.commands.register_target("nb", target)
    hub.commands.execute(Command("c-q", "efd-1", "trip", hub_clock.seconds(), ttl=5,
                                 requested_by="t"))
    assert hub.commands.queued == {"c-q"}
    hub_clock.advance(6)
    assert hub.commands.queued == set()  # timed out: no longer queued
    # commands accepted by a hub that then stopped: what has no final result comes back
    t0 = hub_clock.seconds()
    old = Command("c-old", "efd-1", "trip", t0, ttl=10, requested_by="t")
    keep = Command("c-keep", "efd-1", "reset", t0, ttl=3600, requested_by="t")
    done = Command("c-done", "efd-1", "close", t0, ttl=3600, requested_by="t")
    hub.journal.append([old, keep, done, CommandResult("c-done", "efd-1",
                                                       CommandStatus.SUCCEEDED, t0)])
    hub.journal.flush()
    assert [c.id for c in hub.journal.unfinished_commands(["efd-1"], t0)] == ["c-old", "c-keep"]
    hub_clock.advance(20)
    finished = [results(hub.commands.resume(c))
                for c in hub.journal.unfinished_commands(["efd-1"], t0)]
    hub_clock.advance(1)
    assert finished[0][0].status is CommandStatus.TIMED_OUT and "hub was down" in \
        finished[0][0].detail
    assert finished[1] == [] and target.got[-1] == "c-keep" and "c-keep" in hub.commands.queued
    hub_clock.advance(3600)
    hub_clock.advance(1)
    assert finished[1][0].status is CommandStatus.TIMED_OUT
    hub.journal.flush()
    statuses = [r.status.value for _, r in hub.journal.read(0, 1000, {"command_result"})
                if r.command_id == "c-keep"]
    assert statuses == ["pending", "timed_out"]


IPSO_CONFIG = {
    "models": {"nb-efd": {"type": "lwm2m_ipso"}},
    "transports": {"nb": {"type": "coap_lwm2m"}},
    "devices": [{"id": "efd-1", "model": "nb-efd", "transport": "nb", "address": IMEI1}],
}


class ClockedService:
    """The transport's service on the hub's ``task.Clock`` without sockets: requests to the
    device are Deferreds the test answers (the aiocoap exchange is the only part left out)."""

    @staticmethod
    def make(hub, **options):
        from plugins.transports.coap_lwm2m.service import Lwm2mService

        class Service(Lwm2mService):
            def _deferred(self, coro):
                coro.close()  # the aiocoap exchange; the test answers instead
                d = defer.Deferred()
                self.requests.append(d)
                return d

        svc = Service(hub, "nb", coap_options.CoapOptions(**options))
        svc.requests = []
        svc.running, svc.context = True, object()
        hub.commands.register_target("nb", svc)
        return svc


def lifecycle(hub, command_id: str) -> list[str]:
    hub.journal.flush()
    return [r.status.value for _, r in hub.journal.read(0, 1000, {"command_result"})
            if r.command_id == command_id]


def test_silent_unqueued_device_gets_commands_queued_and_a_no_answer_requeues_them(
        make_hub, hub_clock):
    """A b=U device not heard for longer than recent_traffic: the command is queued at once
    (`hub command` answers "queued"), not sent into a 20 s timeout. When a sent command gets
    no answer it is journaled as queued again, and sent again at the device's next message."""
    hub = make_hub(IPSO_CONFIG)
    svc = ClockedService.make(hub, recent_traffic=60, attempts=3)
    svc.table.register("efd-1", parse_query(["ep=" + IMEI1, "lt=86400", "b=U"]), [], "addr")
    hub_clock.advance(61)
    command = Command("c-1", "efd-1", "trip", hub_clock.seconds(), ttl=3600, requested_by="t")
    done = results(hub.commands.execute(command))
    assert svc.requests == [] and hub.commands.queued == {"c-1"}
    assert lifecycle(hub, "c-1") == ["pending"]
    svc.table.heard("efd-1", "addr")  # it spoke: its commands go out
    svc.queue.wake("efd-1")
    assert len(svc.requests) == 1 and hub.commands.queued == set()
    svc.requests[0].errback(NoAnswer("silence"))
    assert hub.commands.queued == {"c-1"} and done == []
    assert lifecycle(hub, "c-1") == ["pending", "sent", "pending"]
    svc.table.heard("efd-1", "addr")
    svc.queue.wake("efd-1")
    svc.requests[1].callback(CommandResult("c-1", "efd-1", CommandStatus.SUCCEEDED,
                                           hub_clock.seconds()))
    assert lifecycle(hub, "c-1") == ["pending", "sent", "pending", "sent", "succeeded"]
    assert done[0].status is CommandStatus.SUCCEEDED


def test_a_write_to_a_multiple_resource_carries_its_instance_0(make_hub):
    """/19/1/0 (Binary App Data Container Data) is a multiple resource: the frame goes as
    a TLV multiple resource (0x84 00) around resource instance 0 (0x42 00), the form Leshan
    and wakaama accept, never as a bare single-resource TLV (C2 00 ...)."""
    from hub.contracts.lwm2m import Lwm2mOperation

    svc = ClockedService.make(make_hub(IPSO_CONFIG))
    reg, _ = svc.table.register("efd-1", parse_query(["ep=" + IMEI1]), [], "addr")
    code, payload, fmt = svc._request_of(reg, Lwm2mOperation("write", (19, 1, 0), b"\x01\x02"))
    assert (code, payload, fmt) == (Code.PUT, bytes.fromhex("84 00 42 00 01 02"), 11542)
    _, payload, _ = svc._request_of(reg, Lwm2mOperation("write", (19, 1, 0, 0), b"\x01\x02"))
    assert payload == bytes.fromhex("42 00 01 02")  # an instance path (1.1) writes itself
    _, payload, _ = svc._request_of(reg, Lwm2mOperation("write", (3312, 0, 5850), False))
    assert payload == bytes.fromhex("e1 16 da 00")  # a single resource stays single


# ---------------------------------------------------------------------------- the live hub


@pytest.fixture
def lwm2m_models(site_dir):
    write_distribution(site_dir, "hubtest-lwm2m", {"hubtest_lwm2m": "hubtest_lwm2m"},
                       {"hubtest_lwm2m": (PLUGINS / "hubtest_lwm2m.py").read_text()})
    importlib.invalidate_caches()
    return site_dir


def write_config(tmp_path, port: int, **transport) -> str:
    config = {
        "hub": {"state_dir": str(tmp_path / "var")},
        "journal": {"commit_interval_ms": 5},
        "transports": {"nb": {"type": "coap_lwm2m", "host": "127.0.0.1", "port": port,
                              "request_timeout": 2, **transport}},
        "devices": [
            {"id": "efd-1", "model": "hubtest_lwm2m", "transport": "nb", "address": IMEI1},
            {"id": "efd-2", "model": "hubtest_coap_plain", "transport": "nb", "address": IMEI2},
        ],
    }
    path = tmp_path / "hub.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return str(path)


def start_hub(config: str) -> HubProcess:
    hub = HubProcess(config, CWD)
    hub.wait_for("hub hub started", timeout=30)
    return hub


def readings(tmp_path) -> list[float]:
    return [r.value for r in journal_records(tmp_path, {"reading"})]


def metrics(tmp_path) -> dict:
    with open(tmp_path / "var" / "metrics.json", encoding="utf-8") as f:
        doc = json.load(f)
    out: dict[str, float] = {}
    for m in doc["metrics"]:
        if m["labels"].get("transport") == "nb":
            out[m["name"]] = out.get(m["name"], 0) + m["value"]
    return out


async def until(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    await async_wait_until(predicate, timeout, what=what)


class Temperature(coap_resource.ObservableResource):
    def __init__(self) -> None:
        super().__init__()
        self.payload, self.format = b"21.5", 0

    async def render_get(self, request):
        return Message(payload=self.payload, content_format=self.format)

    def set(self, payload: bytes, fmt: int = 0) -> None:
        self.payload, self.format = payload, fmt
        self.updated_state()


class Recorder(coap_resource.Resource):
    def __init__(self, device: SimDevice, path: str) -> None:
        super().__init__()
        self.device, self.path = device, path

    async def render_put(self, request):
        self.device.requests.append(("PUT", self.path, request.payload,
                                     request.opt.content_format))
        return Message(code=Code.CHANGED)

    async def render_post(self, request):
        self.device.requests.append(("POST", self.path, request.payload,
                                     request.opt.content_format))
        return Message(code=Code.CHANGED)


class SimDevice:
    """An NB-IoT device played by aiocoap: one context that registers from its port and
    answers the hub's requests (observe, write, execute) on it."""

    def __init__(self, hub_port: int) -> None:
        self.hub_port = hub_port
        self.requests: list[tuple] = []
        self.temperature = Temperature()
        self.site = coap_resource.Site()
        self.site.add_resource(("3303", "0", "5700"), self.temperature)
        self.site.add_resource(("3", "0", "4"), Recorder(self, "/3/0/4"))
        self.site.add_resource(("3312", "0", "5850"), Recorder(self, "/3312/0/5850"))
        self.site.add_resource(("down",), Recorder(self, "/down"))
        self.ctx: aiocoap.Context | None = None
        self.location = ""

    async def start(self) -> SimDevice:
        self.ctx = await aiocoap.Context.create_server_context(
            self.site, bind=("127.0.0.1", 0), transports=["udp6"])
        return self

    async def rebind(self) -> None:
        """A new source port, as after a carrier NAT's mapping timed out."""
        old = self.ctx
        await self.start()
        await old.shutdown()

    async def close(self) -> None:
        if self.ctx is not None:
            await self.ctx.shutdown()

    async def request(self, code: Code, path: str, payload: bytes = b"",
                      fmt: int | None = None) -> Message:
        msg = Message(code=code, uri=f"coap://127.0.0.1:{self.hub_port}/{path}",
                      payload=payload)
        if fmt is not None:
            msg.opt.content_format = fmt
        return await asyncio.wait_for(self.ctx.request(msg).response, 10)

    async def register(self, ep: str, query: str = "lt=300&lwm2m=1.0&b=U",
                       links: bytes = b"</>;rt=\"oma.lwm2m\",</3/0>,</3303/0>") -> Message:
        r = await self.request(Code.POST, f"rd?ep={ep}&{query}", links, 40)
        if r.code == Code.CREATED:
            self.location = "/".join(r.opt.location_path)
        return r


def run(coro, timeout: float = 30.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_register_observe_update_nat_rebinding_deregister(lwm2m_models, tmp_path):
    """Register with each endpoint form; observations feed the journal (text and TLV); a
    malformed notification is counted; an Update from a new port moves the observations
    there; unknown endpoints get 4.03, unknown locations 4.04, bad bindings 4.00. The
    server socket gets the receive buffer asked for (as far as net.core.rmem_max allows)."""
    port = free_udp_port()
    config = write_config(tmp_path, port, receive_buffer=1 << 20)
    hub = start_hub(config)
    with open("/proc/sys/net/core/rmem_max") as f:
        granted = min(1 << 20, int(f.read()))
    assert f"(2 devices, receive buffer {granted} bytes)" in "".join(hub.lines)

    async def scenario():
        dev = await SimDevice(port).start()
        try:
            assert (await dev.register("urn:imei-imsi:000000000000000-" + IMSI1)).code == \
                Code.FORBIDDEN
            assert (await dev.register("12345", "b=X")).code == Code.BAD_REQUEST
            r = await dev.register(f"urn:imei:{IMEI1}")
            assert r.code == Code.CREATED and r.opt.location_path[0] == "rd"
            await asyncio.to_thread(hub.wait_for, "observing /3303/0/5700 on efd-1", 10)
            await until(lambda: dev.temperature._observations, what="the hub's observation")
            # one at a time: Observe sends only the latest state of a resource
            dev.temperature.set(b"22.5")
            await until(lambda: 22.5 in readings(tmp_path), what="the first notification")
            # TLV: resource 5700 (16-bit id) holding a 4-byte float
            dev.temperature.set(b"\xe4\x16\x44" + struct.pack(">f", 23.5), 11542)
            await until(lambda: 23.5 in readings(tmp_path), what="the TLV notification")
            dev.temperature.set(b"hot")  # not a float: counted, logged, nothing else
            await asyncio.to_thread(hub.wait_for, "bad payload from efd-1 on /3303/0/5700", 10)
            await dev.rebind()
            r = await dev.request(Code.POST, dev.location + "?lt=600")
            assert r.code == Code.CHANGED
            await asyncio.to_thread(hub.wait_for, "efd-1 now at", 10)
            await asyncio.to_thread(hub.wait_for, "observing /3303/0/5700 on efd-1", 10)
            await until(lambda: dev.temperature._observations, what="re-observation")
            dev.temperature.set(b"24.5")
            await until(lambda: 24.5 in readings(tmp_path), what="the notification after "
                        "rebinding")
            assert (await dev.request(Code.POST, "rd/nosuch")).code == Code.NOT_FOUND
            assert (await dev.request(Code.DELETE, dev.location)).code == Code.DELETED
            assert (await dev.request(Code.DELETE, dev.location)).code == Code.NOT_FOUND
        finally:
            await dev.close()

    try:
        run(scenario())
    finally:
        assert hub.stop() == 0
    values = [(r.device, r.channel, r.value) for r in journal_records(tmp_path, {"reading"})]
    assert values[:3] == [("efd-1", "T1", 21.5), ("efd-1", "T1", 22.5), ("efd-1", "T1", 23.5)]
    assert values[-1] == ("efd-1", "T1", 24.5)
    m = metrics(tmp_path)
    assert m["coap.registrations"] == 1 and m["coap.updates"] == 1
    assert m["coap.deregistrations"] == 1 and m["coap.unknown_endpoints"] == 1
    assert m["coap.address_changes"] == 1 and m["coap.bad_requests"] >= 3
    # "hot" twice: the notification, and the first answer of the re-observation
    assert m["coap.decode_errors"] == 2 and m["coap.notifications"] >= 4
    log = "".join(hub.lines)
    assert re.search(r"bad payload from efd-1 on /3303/0/5700 \(format 0\):.*payload 68 6f 74",
                     log)


def test_an_update_renews_ended_observations_and_bad_numbers_get_4_00(lwm2m_models,
                                                                       tmp_path):
    """One observation is refused (the device has no /3303/1/5700 yet) while /3303/0/5700
    lives on; the next Update observes /3303/1/5700 again, and its values arrive. A Register
    with a 400-digit lifetime or a 600-digit pct gets 4.00, counted, not a 5.00 (longer
    ones do not fit a datagram; parse_query is tested with 5,000 digits)."""
    port = free_udp_port()
    config = write_config(tmp_path, port)
    hub = start_hub(config)

    async def scenario():
        dev = await SimDevice(port).start()
        try:
            for query in ("lt=" + "9" * 400, "pct=" + "1" * 600):
                assert (await dev.register(IMEI1, query)).code == Code.BAD_REQUEST
            r = await dev.register(IMEI1, links=b"</3/0>,</3303/0>,</3303/1>")
            assert r.code == Code.CREATED
            await asyncio.to_thread(hub.wait_for, "observation of /3303/1/5700 on efd-1 "
                                    "refused with 4.04", 10)
            await until(lambda: dev.temperature._observations, what="the live observation")
            second = Temperature()
            second.payload = b"30.5"
            dev.site.add_resource(("3303", "1", "5700"), second)
            assert (await dev.request(Code.POST, dev.location)).code == Code.CHANGED
            await asyncio.to_thread(hub.wait_for, "observing /3303/1/5700 on efd-1 again", 10)
            await until(lambda: second._observations, what="the renewed observation")
            second.set(b"31.5")
            await until(lambda: 31.5 in readings(tmp_path), what="the renewed notification")
        finally:
            await dev.close()

    try:
        run(scenario())
    finally:
        assert hub.stop() == 0
    values = [(r.channel, r.value) for r in journal_records(tmp_path, {"reading"})]
    assert ("T2", 30.5) in values and ("T2", 31.5) in values and ("T1", 21.5) in values
    m = metrics(tmp_path)
    assert m["coap.bad_requests"] == 2 and m.get("coap.internal_errors", 0) == 0
    # the live observation of /3303/0/5700 was not restarted by the Update
    assert "".join(hub.lines).count("observing /3303/0/5700") == 1


def test_queue_mode_commands_wait_for_the_window_and_survive_a_restart(lwm2m_models, tmp_path):
    """A command for a device that is not listening is queued (`hub command` answers at
    once); the device's next Register sends it; its lifecycle is in the journal. Queued
    commands outlive a restart of the hub; expired ones end as timed out."""
    port = free_udp_port()
    config = write_config(tmp_path, port, queue_window=1)
    hub = start_hub(config)

    async def phase1():
        dev = await SimDevice(port).start()
        try:
            queued = await asyncio.to_thread(hub_command, config, "efd-1", "close")
            assert (queued["ok"], queued["status"]) == (True, "queued"), queued
            assert (await dev.register(IMEI1, "lt=300&lwm2m=1.1&b=U&Q")).code == Code.CREATED
            await until(lambda: dev.requests, what="the queued write")
            assert dev.requests[0][:2] == ("PUT", "/3312/0/5850")
            await asyncio.to_thread(hub.wait_for, f"command {queued['command_id']} for efd-1: "
                                    "succeeded", 10)
            assert (await dev.request(Code.DELETE, dev.location)).code == Code.DELETED
            # de-registered: this waits (straight to the socket)
            r = await asyncio.to_thread(admin_request, str(tmp_path / "var"), {
                "op": "command", "device": "efd-1", "action": "reset", "by": "tester",
                "ttl": 600}, 10)
            assert r["status"] == "queued", r
        finally:
            await dev.close()

    try:
        run(phase1())
    finally:
        assert hub.stop() == 0
    # a trip accepted before the hub went down whose time to live ran out while it was down:
    # written to the (stopped) hub's own journal rather than waited for on the wall clock
    wall = Clock()
    wall.advance(time.time())  # the journal dates what it stores by its clock
    journal = Journal(str(tmp_path / "var" / "journal.sqlite"), clock=wall)
    journal.open()
    journal.append([Command("c-trip", "efd-1", "trip", time.time() - 60, ttl=1.5,
                            requested_by="tester")])
    journal.close()
    hub = HubProcess(config, CWD)
    hub.wait_for_all("hub hub started", "took up 2 unfinished commands", timeout=30)

    async def phase2():
        dev = await SimDevice(port).start()
        try:
            assert (await dev.register(IMEI1, "lt=300&b=UQ")).code == Code.CREATED
            await until(lambda: dev.requests, what="the resumed command")
            assert dev.requests[0][:2] == ("POST", "/3/0/4")
            await asyncio.to_thread(hub.wait_for, "for efd-1: succeeded", 10)
        finally:
            await dev.close()

    try:
        run(phase2())
    finally:
        assert hub.stop() == 0
    lifecycle: dict[str, list[str]] = {}
    actions = {}
    for r in journal_records(tmp_path, {"command", "command_result"}):
        if isinstance(r, Command):
            actions[r.id] = r.action
        else:
            lifecycle.setdefault(actions[r.command_id], []).append(r.status.value)
    assert lifecycle["close"] == ["pending", "sent", "succeeded"]
    # queued before the restart, queued again after it, sent at the next Register
    assert lifecycle["reset"] == ["pending", "pending", "sent", "succeeded"]
    assert lifecycle["trip"] == ["timed_out"]
    assert "command c-trip for efd-1: timed_out its time to live ran out while the hub was " \
        "down" in "".join(hub.lines)


def test_plain_coap_uplink_and_downlink(lwm2m_models, tmp_path):
    """POST /up/<imei> is answered 2.04 after the commit; a bad payload gets 4.00 and is
    counted; a command for the plain device goes to its /down within its window."""
    port = free_udp_port()
    config = write_config(tmp_path, port, queue_window=5)
    hub = start_hub(config)

    async def scenario():
        dev = await SimDevice(port).start()
        try:
            assert (await dev.request(Code.POST, f"up/{IMEI2}", b"T1=21.5")).code == Code.CHANGED
            assert 21.5 in [r.value for r in journal_records(tmp_path, {"reading"})]
            assert (await dev.request(Code.POST, f"up/{IMEI2}", b"\xff\x00")).code == \
                Code.BAD_REQUEST
            assert (await dev.request(Code.POST, "up/999", b"T1=1")).code == Code.FORBIDDEN
            r = await asyncio.to_thread(admin_request, str(tmp_path / "var"), {
                "op": "command", "device": "efd-2", "action": "reset", "by": "tester",
                "ttl": 10}, 10)
            assert r["status"] == "succeeded", r
            assert dev.requests == [("POST", "/down", b"CMD:reset", 42)]
        finally:
            await dev.close()

    try:
        run(scenario())
    finally:
        assert hub.stop() == 0
    m = metrics(tmp_path)
    assert (m["coap.uplinks"], m["coap.decode_errors"], m["coap.unknown_endpoints"]) == (2, 1, 1)
    assert "bad payload from efd-2 on uplink" in "".join(hub.lines)
    assert "ff 00" in "".join(hub.lines)


def test_registration_lifetime_drives_presence(lwm2m_models, tmp_path):
    """No update within lifetime + grace: the device goes offline; its Update then gets
    4.04, it registers again and is online."""
    port = free_udp_port()
    config = write_config(tmp_path, port, lifetime_grace=0.5, lifetime_grace_ratio=0,
                          observe=False)
    hub = start_hub(config)

    async def scenario():
        dev = await SimDevice(port).start()
        try:
            assert (await dev.register(IMEI1, "lt=1&b=U")).code == Code.CREATED
            await asyncio.to_thread(hub.wait_for, "device efd-1 offline", 10)
            assert (await dev.request(Code.POST, dev.location)).code == Code.NOT_FOUND
            assert (await dev.register(IMEI1, "lt=300&b=U")).code == Code.CREATED
            await asyncio.to_thread(hub.wait_for, "device efd-1 online", 10)
        finally:
            await dev.close()

    try:
        run(scenario())
    finally:
        assert hub.stop() == 0
    offline = [e for e in journal_records(tmp_path, {"event"}) if e.code == "offline"]
    assert [e.state.value for e in offline] == ["raised", "cleared"]
    assert offline[0].set_point == 1.5


def test_a_second_hub_on_the_same_port_fails_to_start(lwm2m_models, tmp_path):
    """With aiocoap's default SO_REUSEPORT a second hub would bind the same UDP port and
    silently receive part of the devices' traffic; it must refuse to start instead."""
    port = free_udp_port()
    first = tmp_path / "a"
    second = tmp_path / "b"
    first.mkdir()
    second.mkdir()
    hub = start_hub(write_config(first, port, observe=False))
    other = None
    try:
        other = HubProcess(write_config(second, port, observe=False), CWD)
        other.wait_for("failed to start", timeout=30)
        assert other.stop() != 0  # it exited by itself; this collects the rest of its log
        assert "Address already in use" in "".join(other.lines)
    finally:
        if other is not None and other.proc.poll() is None:
            other.stop()  # it started after all (the test fails): do not leave it running
        assert hub.stop() == 0


@pytest.mark.skipif(shutil.which(COAP_CLIENT) is None, reason="needs Debian libcoap3-bin")
def test_coap_client_notls_registers_updates_and_deregisters(lwm2m_models, tmp_path):
    """libcoap's client (not ours) through Register, Update and De-register."""
    port = free_udp_port()
    config = write_config(tmp_path, port, observe=False)
    hub = start_hub(config)

    def coap(*args: str) -> str:
        out = subprocess.run([COAP_CLIENT, "-B", "5", "-v", "6", *args], capture_output=True,
                             text=True, timeout=20)
        return out.stdout + out.stderr

    try:
        out = coap("-m", "post", "-t", "40", "-e", "</3/0>,</3303/0>",
                   f"coap://127.0.0.1:{port}/rd?ep={IMEI1}&lt=300&lwm2m=1.0&b=U")
        assert "c:2.01" in out, out
        location = re.search(r"Location-Path:rd, Location-Path:(\w+)", out).group(1)
        out = coap("-m", "post", f"coap://127.0.0.1:{port}/rd/{location}?lt=600")
        assert "c:2.04" in out, out
        out = coap("-m", "delete", f"coap://127.0.0.1:{port}/rd/{location}")
        assert "c:2.02" in out, out
        out = coap("-m", "post", f"coap://127.0.0.1:{port}/rd?ep=urn:imei:999")
        assert "c:4.03" in out, out
    finally:
        assert hub.stop() == 0
    m = metrics(tmp_path)
    assert (m["coap.registrations"], m["coap.updates"], m["coap.deregistrations"],
            m["coap.unknown_endpoints"]) == (1, 1, 1, 1)
    assert "efd-1 de-registered" in "".join(hub.lines)


def test_a_burst_of_registers_is_answered_first_and_observed_after(make_hub, hub_clock):
    """A lone Register is observed right after its answer. In a burst (every device of a
    site after a power cut) the observations wait until Registers stop coming for
    BURST_QUIET s, then all start, in order; a burst that never ends holds them
    BURST_HOLD_MAX s at most."""
    from plugins.transports.coap_lwm2m import service

    base = 861234567800000
    hub = make_hub({**IPSO_CONFIG, "devices": [
        {"id": f"efd-{i}", "model": "nb-efd", "transport": "nb", "address": str(base + i)}
        for i in range(800)]})
    svc = ClockedService.make(hub)
    observed: list[str] = []
    svc._observe = lambda reg, only_ended=False: observed.append(reg.device)

    def register(i: int) -> None:
        msg = Message(code=Code.POST, uri_path=("rd",), uri_query=(f"ep={base + i}", "lt=300"),
                      payload=b"</3303/0>", content_format=40)
        msg.remote = f"addr-{i}"
        with pytest.raises(StopIteration) as answer:  # the coroutine never waits
            svc._register(msg).send(None)
        assert answer.value.value.code == Code.CREATED

    register(0)
    hub_clock.advance(service.RESPONSE_FIRST)
    assert observed == ["efd-0"]
    for i in range(1, 100):  # 100 per second
        register(i)
        hub_clock.advance(0.01)
    during = len(observed)
    assert during < 100
    hub_clock.advance(service.BURST_QUIET / 2)
    assert len(observed) == during  # still within the quiet time
    hub_clock.advance(service.BURST_QUIET)
    assert observed == [f"efd-{i}" for i in range(100)]
    # a burst that goes on for 7 s: the first held are let go after BURST_HOLD_MAX s
    for i in range(100, 800):
        register(i)
        hub_clock.advance(0.01)
        if i == 100 + int(100 * (service.BURST_HOLD_MAX - 1)):
            assert len(observed) < 150  # held for 4 s so far
    assert set(observed) >= {f"efd-{i}" for i in range(100, 500)}


def test_notifications_reach_the_journal_in_one_batch(make_hub, hub_clock):
    """Notifications arriving together go to the core as one batch (one journal append,
    one Deferred) INGEST_DELAY s after the first; stopping the transport hands over what
    waits."""
    from plugins.transports.coap_lwm2m import service

    hub = make_hub(IPSO_CONFIG)
    svc = ClockedService.make(hub)
    appends: list[int] = []
    append = hub.journal.append
    hub.journal.append = lambda records: appends.append(len(records)) or append(records)

    def notify(value: bytes) -> None:
        msg = Message(code=Code.CONTENT, payload=value, content_format=0)
        msg.remote = "addr"
        svc._on_value("efd-1", (3303, 0, 5700), msg)

    def journaled() -> list[float]:
        hub.journal.flush()
        return [r.value for _, r in hub.journal.read(0, 1000, {"reading"})]

    for value in (b"21.5", b"22.5", b"23.5"):
        notify(value)
    assert appends == [] and journaled() == []
    hub_clock.advance(service.INGEST_DELAY)
    assert appends == [3] and journaled() == [21.5, 22.5, 23.5]
    notify(b"24.5")
    svc.context = None  # no socket to close here
    svc.stopService()
    assert appends == [3, 1] and journaled() == [21.5, 22.5, 23.5, 24.5]


def test_observation_set_ups_take_one_slot_per_device():
    """aiocoap sends one request at a time to a device, so a device's set-ups go one after
    the other and take one of the max_setups slots between them: two slots serve two
    devices at once, not two set-ups of the same device of which one waits."""
    from plugins.transports.coap_lwm2m.coap import Observations

    class Ctx:
        def __init__(self) -> None:
            self.sent: list[tuple[str, tuple[str, ...]]] = []
            self.pending: list[asyncio.Future] = []

        def request(self, msg: Message):
            self.sent.append((msg.remote, tuple(msg.opt.uri_path)))
            fut = asyncio.get_running_loop().create_future()
            self.pending.append(fut)
            return type("Request", (), {"observation": None, "response": fut})()

    async def main() -> None:
        ctx, loop = Ctx(), asyncio.get_running_loop()
        values: list[str] = []
        obs = Observations(lambda device, path, m: values.append(device),
                           lambda *end: None, timeout=5, max_setups=2)
        paths = [(3303, 0), (3303, 1), (3303, 2)]
        obs.start(ctx, loop, "d1", "addr-1", paths)
        obs.start(ctx, loop, "d2", "addr-2", paths)
        for _ in range(5):
            await asyncio.sleep(0)
        assert ctx.sent == [("addr-1", ("3303", "0")), ("addr-2", ("3303", "0"))]
        ctx.pending[0].set_result(Message(code=Code.CONTENT, payload=b"1"))
        for _ in range(5):
            await asyncio.sleep(0)
        assert ctx.sent[2] == ("addr-1", ("3303", "1")) and values == ["d1"]
        obs.cancel_all()

    asyncio.run(main())


@pytest.mark.parametrize("announced, version", [
    ("1.0", "1.0"), ("1.0.0", "1.0"), ("1.0.2", "1.0"), ("1.1", "1.1"), ("1.1.1", "1.1"),
])
def test_lwm2m_version_with_a_patch_number_is_accepted(announced, version):
    """coap-node announces ``lwm2m=1.0.0``: a patch number does not change the version the
    transport follows (1.0's queue mode in the binding, 1.1's Q parameter)."""
    assert parse_query(["ep=a", f"lwm2m={announced}"]).lwm2m == version


@pytest.mark.parametrize("announced", ["1.2", "1.3.0", "2.0", "1", "1.0.0.0", "1.x", "1.01",
                                       "1.0.", "v1.0"])
def test_other_lwm2m_versions_are_refused_saying_which_are_spoken(announced):
    with pytest.raises(RegistrationError) as e:
        parse_query(["ep=a", f"lwm2m={announced}"])
    assert e.value.code == "precondition_failed"
    assert repr(announced) in str(e.value) and "1.0" in str(e.value) and "1.1" in str(e.value)
