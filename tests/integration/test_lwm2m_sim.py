"""The LwM2M simulator (``hub simulate lwm2m``) against a small real aiocoap LwM2M server
over loopback UDP: registration, reads in TLV/SenML/text, observe, relay write, execute,
queue mode, scenario ramps; and a read from libcoap's client, which we did not write."""

from __future__ import annotations

import asyncio
import json
import shutil
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiocoap
import aiocoap.resource
import pytest
from aiocoap import Code, Message
from aiocoap.numbers.constants import Unreliable

from hub.contracts.lwm2m import Lwm2mValue
from plugins.simulators.lwm2m import codec
from plugins.simulators.lwm2m.endpoint import EndpointOptions, open_context
from plugins.simulators.lwm2m.fleet import Fleet, imeis
from plugins.simulators.lwm2m.objects import (
    ALARM_RESIDUAL_MA,
    ALARM_TEMPERATURE_C,
    SimDevice,
    link_payload,
)
from plugins.simulators.scenario import Ramp, Scenario
from tests.support.hubproc import CLI_TIMEOUT
from tests.support.services import async_wait_until

ROOT = Path(__file__).resolve().parents[2]
TLV, SENML, TEXT = 11542, 110, 0
WAIT = 5.0  # s: the bound on any wait for the other side


class ResourceDirectory(aiocoap.resource.Resource, aiocoap.resource.PathCapable):
    """A LwM2M server's registration interface: records every Register, Update and
    De-register as ``(kind, path, query, payload, remote hostinfo)`` in a queue."""

    def __init__(self) -> None:
        super().__init__()
        self.events: asyncio.Queue = asyncio.Queue()
        self.next_id = 0
        #: when set, the hostinfo of the endpoints under test: others are refused unrecorded
        #: (a port reused from an earlier test may still hear that test's retransmissions,
        #: and parallel runs on a shared machine made that happen)
        self.only: set[str] | None = None

    async def render(self, request: Message) -> Message:
        if self.only is not None and request.remote.hostinfo not in self.only:
            return Message(code=Code.FORBIDDEN)
        path = request.opt.uri_path
        event = (path, request.opt.uri_query, request.payload, request.remote.hostinfo,
                 request.opt.content_format)
        if request.code == Code.POST and path == ("rd",):
            self.next_id += 1
            await self.events.put(("register", *event))
            return Message(code=Code.CREATED, location_path=("rd", str(self.next_id)))
        if request.code == Code.POST and len(path) == 2:
            await self.events.put(("update", *event))
            return Message(code=Code.CHANGED)
        if request.code == Code.DELETE:
            await self.events.put(("deregister", *event))
            return Message(code=Code.DELETED)
        return Message(code=Code.NOT_FOUND)

    async def next(self, kind: str, timeout: float = WAIT) -> tuple:
        async def wanted() -> tuple:
            while True:
                e = await self.events.get()
                if e[0] == kind:
                    return e
        return await asyncio.wait_for(wanted(), timeout)


class Harness:
    """The server and one running fleet of simulated endpoints."""

    def __init__(self, rd: ResourceDirectory, ctx: aiocoap.Context, fleet: Fleet) -> None:
        self.rd, self.ctx, self.fleet = rd, ctx, fleet
        self.ep = fleet.endpoints[0]

    def uri(self, path: str, ep: int = 0) -> str:
        return f"coap://127.0.0.1:{self.fleet.endpoints[ep].port}{path}"

    async def request(self, code: Code, path: str, timeout: float = WAIT, **kw) -> Message:
        return await asyncio.wait_for(
            self.ctx.request(Message(code=code, uri=self.uri(path), **kw)).response, timeout)


def run(test: Callable[[Harness], Awaitable[None]], count: int = 1,
        scenario: Scenario | None = None, **options) -> None:
    """Start the server and ``count`` endpoints, run ``test``, stop both."""
    async def main() -> None:
        rd = ResourceDirectory()
        ctx = await open_context(rd, "127.0.0.1")
        port = ctx.request_interfaces[0].token_interface.message_interface._local_port()
        opts = EndpointOptions(server=("127.0.0.1", port), **options)
        fleet = Fleet(opts, imeis(861234567890000, count),
                      lambda imei: scenario or Scenario("normal", seed=imei), ramp=1000)
        await fleet.open()
        rd.only = {f"127.0.0.1:{ep.port}" for ep in fleet.endpoints}
        await fleet.start()
        try:
            await asyncio.wait_for(test(Harness(rd, ctx, fleet)), 30)
        finally:
            await fleet.stop(timeout=3)
            await ctx.shutdown()

    asyncio.run(main())


def tlv_values(payload: bytes, base: tuple[int, ...]) -> dict[tuple[int, ...], object]:
    return {v.path: v.value for v in codec.decode(TLV, payload, base)}


# ---------------------------------------------------------------------------- registration


def test_registration_payload_and_query():
    async def test(h: Harness) -> None:
        _, path, query, payload, remote, cf = await h.rd.next("register")
        assert path == ("rd",) and cf == 40
        assert query == ("ep=urn:imei:861234567890000", "lt=300", "lwm2m=1.1", "b=U")
        links = payload.decode().split(",")
        assert links[0] == '</>;rt="oma.lwm2m";ct=11542'
        for obj in ("</1/0>", "</3/0>", "</3303/0>", "</3303/3>", "</3316/2>", "</3317/2>",
                    "</3317/10>", "</3328/0>", "</3331/0>", "</3312/0>", "</3200/0>"):
            assert obj in links
        assert remote == f"127.0.0.1:{h.ep.port}"  # requests come from the endpoint's socket
        _, path2, *_ = await h.rd.next("register")  # the second endpoint, next IMEI
        assert path2 == ("rd",)
        await async_wait_until(lambda: h.fleet.stats.registered == 2, WAIT,
                               what="both endpoints' 2.01")
        await h.fleet.stop()
        kinds = {(await h.rd.next("deregister"))[1] for _ in range(2)}
        assert kinds == {("rd", "1"), ("rd", "2")}

    run(test, count=2)


def test_queue_mode_registers_with_q_and_updates():
    async def test(h: Harness) -> None:
        _, _, query, *_ = await h.rd.next("register")
        assert query[-1] == "Q" and "b=U" in query
        _, path, query, *_ = await h.rd.next("update")
        assert path == ("rd", "1") and query == ("lt=300",)

    run(test, queue=True, update_interval=0.3, window=0.2)


# ---------------------------------------------------------------------------- reads


def test_reads_in_tlv_senml_and_text():
    async def test(h: Harness) -> None:
        await h.rd.next("register")
        r = await h.request(Code.GET, "/3303/0")
        assert r.code == Code.CONTENT and r.opt.content_format == TLV
        assert b"\xe3\x16\x45Cel" in r.payload  # resource 5701 (16-bit id), 3 bytes "Cel"
        assert 24 <= tlv_values(r.payload, (3303, 0))[(3303, 0, 5700)] <= 26
        # read by hand too: resource 5700 (0x1644) with a 4- or 8-byte big-endian float
        if r.payload.startswith(b"\xe4\x16\x44"):
            (t1,) = struct.unpack(">f", r.payload[3:7])
        else:
            assert r.payload.startswith(b"\xe8\x16\x44\x08")
            (t1,) = struct.unpack(">d", r.payload[4:12])
        assert 24 <= t1 <= 26

        r = await h.request(Code.GET, "/3317/10", accept=SENML)
        assert r.opt.content_format == SENML
        doc = json.loads(r.payload)
        assert doc[0]["bn"] == "/3317/10/" and isinstance(doc[0]["t"], float)
        by_name = {d["n"]: d for d in doc}
        assert 20 <= by_name["5700"]["v"] <= 40
        assert by_name["5701"]["vs"] == "mA" and by_name["5750"]["vs"] == "residual"

        r = await h.request(Code.GET, "/3316/1/5700", accept=TEXT)
        assert 215 <= float(r.payload) <= 225

        r = await h.request(Code.GET, "/3")  # the whole object: instances wrapped in TLVs
        assert r.payload[0] == 0x08 and r.payload[1] == 0  # object instance 0, 8-bit length
        device = tlv_values(r.payload, (3,))
        assert device[(3, 0, 0)] == "Hub Simulator" and (3, 0, 4) not in device

        assert (await h.request(Code.GET, "/3303/7")).code == Code.NOT_FOUND
        assert (await h.request(Code.GET, "/3/0/4")).code == Code.METHOD_NOT_ALLOWED
        assert (await h.request(Code.GET, "/3303/0", accept=60)).code == Code.NOT_ACCEPTABLE
        r = await h.request(Code.GET, "/3312", accept=40)  # Discover
        assert r.payload == b"</3312/0>,</3312/0/5850>"

    run(test)


def test_senml_is_the_default_with_format_senml():
    async def test(h: Harness) -> None:
        _, _, _, payload, *_ = await h.rd.next("register")
        assert payload.startswith(b'</>;rt="oma.lwm2m";ct=110,')
        r = await h.request(Code.GET, "/3331/0/5700")
        assert r.opt.content_format == SENML
        (rec,) = json.loads(r.payload)
        assert rec["bn"] + rec.get("n", "") == "/3331/0/5700" and rec["v"] >= 12_000_000

    run(test, content_format=SENML)


# ------------------------------------------------------------------ observe, write, execute


def test_observe_notifies_every_interval():
    async def test(h: Harness) -> None:
        await h.rd.next("register")
        req = h.ctx.request(Message(code=Code.GET, uri=h.uri("/3303/0"), observe=0,
                                    accept=SENML))
        first = await asyncio.wait_for(req.response, WAIT)
        assert first.opt.observe == 0
        seen = []
        async for n in req.observation:
            seen.append(json.loads(n.payload)[0]["t"])
            if len(seen) == 3:
                break
        assert seen == sorted(seen) and len(set(seen)) == 3
        req.observation.cancel()

    run(test, interval=0.2)


def test_relay_write_opens_the_breaker_and_currents_drop():
    async def test(h: Harness) -> None:
        await h.rd.next("register")
        req = h.ctx.request(Message(code=Code.GET, uri=h.uri("/3317/0"), observe=0,
                                    accept=SENML))
        first = await asyncio.wait_for(req.response, WAIT)
        assert json.loads(first.payload)[0]["v"] > 5
        # TLV: resource 5850 (0x16DA, 16-bit id), 1 byte, false
        r = await h.request(Code.PUT, "/3312/0/5850", payload=b"\xe1\x16\xda\x00",
                            content_format=TLV)
        assert r.code == Code.CHANGED and not h.ep.device.relay_closed
        async for n in req.observation:  # the change is notified without waiting a tick
            if json.loads(n.payload)[0]["v"] == 0:
                break
        r = await h.request(Code.GET, "/3312/0/5850", accept=TEXT)
        assert r.payload == b"0"
        assert (await h.request(Code.GET, "/3328/0/5700", accept=TEXT)).payload == b"0.0"
        # SenML write (partial update of the instance) closes it again
        r = await h.request(Code.POST, "/3312/0", content_format=SENML,
                            payload=b'[{"bn":"/3312/0/","n":"5850","vb":true}]')
        assert r.code == Code.CHANGED and h.ep.device.relay_closed
        r = await h.request(Code.PUT, "/3303/0/5700", payload=b"\xe1\x16\x44\x00",
                            content_format=TLV)
        assert r.code == Code.METHOD_NOT_ALLOWED  # a sensor value is read-only
        r = await h.request(Code.PUT, "/3312/0/5850", payload=b"\xe1\x16\xda\x07",
                            content_format=TLV)
        assert r.code == Code.BAD_REQUEST and h.ep.device.relay_closed
        req.observation.cancel()

    run(test, interval=5)


def test_object_19_carries_frames_up_and_takes_multiple_resource_writes_down():
    """/19/0 holds the device's own frame (its measurements as JSON) and its creation time;
    /19/1/0 is a multiple resource: a TLV multiple resource (or SenML /19/1/0/<n>) is taken,
    a bare single-resource TLV refused with 4.00, as Leshan and wakaama do."""
    async def test(h: Harness) -> None:
        await h.rd.next("register")
        r = await h.request(Code.GET, "/19/0", accept=TLV)
        # raw bytes, not our decoder: object-less instance 0 → multiple resource 0 (0x88
        # with an 8-bit length) → resource instance 0 (0x48 or 0x50, the frame)
        assert r.payload[:2] == b"\x88\x00" and r.payload[3:5] in (b"\x48\x00", b"\x50\x00")
        values = tlv_values(r.payload, (19, 0))
        doc = json.loads(values[(19, 0, 0, 0)])
        assert len(doc["T"]) == 4 and doc["relay"] == 1 and doc["leak"] >= 0
        assert abs(values[(19, 0, 2)] - time.time()) < 60
        trip = b'{"cmd":"trip"}'
        single = bytes([0xC8, 0, len(trip)]) + trip  # what the hub used to send
        r = await h.request(Code.PUT, "/19/1/0", payload=single, content_format=TLV)
        assert r.code == Code.BAD_REQUEST and b"multiple" in r.payload
        assert h.ep.device.relay_closed and h.ep.device.state.downlinks == []
        inner = bytes([0x48, 0, len(trip)]) + trip
        r = await h.request(Code.PUT, "/19/1/0", payload=bytes([0x88, 0, len(inner)]) + inner,
                            content_format=TLV)
        assert r.code == Code.CHANGED and not h.ep.device.relay_closed
        r = await h.request(Code.PUT, "/19/1/0", content_format=SENML,
                            payload=b'[{"bn":"/19/1/0/","n":"0","vd":"eyJjbWQiOiJjbG9zZSJ9"}]')
        assert r.code == Code.CHANGED and h.ep.device.relay_closed
        assert h.ep.device.state.downlinks == [trip, b'{"cmd":"close"}']
        r = await h.request(Code.PUT, "/19/0/0", payload=bytes([0x88, 0, len(inner)]) + inner,
                            content_format=TLV)
        assert r.code == Code.METHOD_NOT_ALLOWED  # the uplink container is the device's

    run(test)


def test_execute_reboot_registers_again():
    async def test(h: Harness) -> None:
        await h.rd.next("register")
        r = await h.request(Code.POST, "/3/0/4")
        assert r.code == Code.CHANGED
        _, path, query, *_ = await h.rd.next("register")
        assert path == ("rd",) and query[0] == "ep=urn:imei:861234567890000"
        assert h.ep.stats.reboots == 1
        assert (await h.request(Code.GET, "/3/0/9", accept=TEXT)).code == Code.CONTENT
        r = await h.request(Code.POST, "/1/0/8")  # registration update trigger
        assert r.code == Code.CHANGED
        await h.rd.next("update")

    run(test)


# ---------------------------------------------------------------------------- queue mode


def test_queue_mode_does_not_answer_while_asleep_and_answers_in_the_window():
    async def test(h: Harness) -> None:
        await h.rd.next("register")
        r = await h.request(Code.GET, "/3/0/9", accept=TEXT)  # in the window
        assert r.code == Code.CONTENT
        await async_wait_until(lambda: not h.ep.awake, WAIT, what="the window's end")
        with pytest.raises(TimeoutError):
            # NON: a CON would be retransmitted, and hold back later requests to this peer
            # (NSTART = 1) until it times out
            await h.request(Code.GET, "/3/0/9", accept=TEXT, timeout=1.0,
                            transport_tuning=Unreliable())
        assert h.ep.stats.dropped_asleep >= 1
        await h.rd.next("update")  # it woke up: the server may talk to it now
        r = await h.request(Code.GET, "/3/0/9", accept=TEXT)
        assert r.code == Code.CONTENT

    run(test, queue=True, update_interval=2.0, window=0.5)


# ---------------------------------------------------------------------------- scenarios


def test_scenario_ramps_cross_the_thresholds_and_come_back():
    ramp = Ramp(delay=10, up=20, hold=10, down=20, every=0)
    hot = SimDevice("861234567890000", Scenario("overheat", ramp, "x"))
    leak = SimDevice("861234567890001", Scenario("leakage", ramp, "x"))
    t1 = [hot.sample(t, 0)[(3303, 0, 5700)] for t in range(0, 80)]
    i0 = [leak.sample(t, 0)[(3317, 10, 5700)] for t in range(0, 80)]
    assert t1[0] < 40 and max(t1) > ALARM_TEMPERATURE_C and t1[-1] < 40
    assert i0[0] < 40 and max(i0) > ALARM_RESIDUAL_MA and i0[-1] < 40
    above = [t for t, x in enumerate(t1) if x > ALARM_TEMPERATURE_C]
    assert 20 < above[0] < 30 and 40 < above[-1] < 55  # on the ramps, not at their ends
    assert hot.sample(35, 0)[(3200, 0, 5500)] and not hot.sample(5, 0)[(3200, 0, 5500)]
    repeating = Scenario("overheat", Ramp(every=100), "x")
    assert repeating.value("temperature", "T1", 150) > 80  # repeats
    with pytest.raises(ValueError):
        Ramp(delay=50, up=50, hold=50, down=50, every=100)


def test_overheat_alarm_contact_is_notified_live():
    async def test(h: Harness) -> None:
        await h.rd.next("register")
        req = h.ctx.request(Message(code=Code.GET, uri=h.uri("/3200/0/5500"), observe=0,
                                    accept=TEXT))
        states = [(await asyncio.wait_for(req.response, WAIT)).payload]
        async for n in req.observation:
            if n.payload != states[-1]:
                states.append(n.payload)
            if states[-2:] == [b"1", b"0"]:
                break
        assert states[:3] == [b"0", b"1", b"0"]
        req.observation.cancel()

    ramp = Ramp(delay=0.3, up=0.4, hold=0.3, down=0.4, every=0)
    run(test, scenario=Scenario("overheat", ramp, "x"), interval=0.05)


# ---------------------------------------------------------------------------- codecs


def test_tlv_matches_the_wakaama_vector():
    payload = codec.encode(TLV, [Lwm2mValue((3, 0, 0), "Open Mobile Alliance")], (3, 0))
    assert payload.hex(" ").upper().startswith("C8 00 14 4F 70 65 6E 20 4D")
    assert codec.decode(TLV, payload, (3, 0)) == [
        Lwm2mValue((3, 0, 0), "Open Mobile Alliance")]
    assert link_payload(TLV).startswith('</>;rt="oma.lwm2m";ct=11542,</1/0>,</3/0>,')


def test_imeis_are_fifteen_digits():
    assert imeis(861234567890000, 2) == ["861234567890000", "861234567890001"]
    with pytest.raises(ValueError):
        imeis(999999999999999, 2)


def test_endpoint_sockets_hold_their_ports_alone():
    """A port-0 bind with SO_REUSEPORT (aiocoap's default) may be given a port another such
    socket holds, and then one of the two endpoints hears nothing; the simulator's sockets
    must not set it, so the kernel hands every one a port of its own."""
    import socket

    async def main() -> None:
        ctxs = [await open_context(None, "127.0.0.1") for _ in range(50)]
        try:
            socks = [ctx.request_interfaces[0].token_interface.message_interface.transport
                     .get_extra_info("socket") for ctx in ctxs]
            assert [s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) for s in socks] == \
                [0] * len(socks)
            assert len({s.getsockname()[1] for s in socks}) == len(socks)
        finally:
            for ctx in ctxs:
                await ctx.shutdown()

    asyncio.run(main())


# ------------------------------------------------------------------ peers we did not write


@pytest.mark.skipif(shutil.which("coap-client-notls") is None, reason="libcoap3-bin missing")
def test_libcoap_client_reads_the_simulator():
    async def test(h: Harness) -> None:
        await h.rd.next("register")
        proc = await asyncio.create_subprocess_exec(
            "coap-client-notls", "-m", "get", "-A", "110", "-B", "5", h.uri("/3303/1"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 10)
        doc = json.loads(out)
        assert doc[0]["bn"] == "/3303/1/" and {d["n"] for d in doc} == {"5700", "5701"}
        proc = await asyncio.create_subprocess_exec(
            "coap-client-notls", "-m", "put", "-t", "0", "-e", "0", "-B", "5",
            h.uri("/3312/0/5850"), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        await asyncio.wait_for(proc.communicate(), 10)
        assert not h.ep.device.relay_closed

    run(test)


def test_cli_registers_and_deregisters():
    async def main() -> None:
        rd = ResourceDirectory()
        ctx = await open_context(rd, "127.0.0.1")
        port = ctx.request_interfaces[0].token_interface.message_interface._local_port()
        proc = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "hub"), "simulate", "lwm2m",
            "--server", f"127.0.0.1:{port}", "--count", "3", "--imei-base", "861234567890100",
            "--duration", "1.5", "--status-interval", "0.5", cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            # the bound covers the simulator's start, which a loaded machine stretched past
            # 20 s (an interpreter and the hub's imports)
            eps = {(await rd.next("register", CLI_TIMEOUT))[2][0] for _ in range(3)}
            assert eps == {f"ep=urn:imei:86123456789010{i}" for i in range(3)}
            for _ in range(3):
                await rd.next("deregister", 20)
            out, _ = await asyncio.wait_for(proc.communicate(), 60)
        finally:
            if proc.returncode is None:
                proc.kill()
            await ctx.shutdown()
        assert proc.returncode == 0, out.decode()
        summary = json.loads(out.decode().rsplit("lwm2m-sim: summary ", 1)[1])
        assert summary["registrations"] == 3 and summary["deregistrations"] == 3

    asyncio.run(main())
