"""One simulated LwM2M client over aiocoap: its UDP socket, its registration, the server's
observations, and queue-mode sleep.

Each endpoint owns one aiocoap server context (one UDP socket): the LwM2M server sends its
requests to the address a registration came from, so endpoints cannot share a socket. A
context costs little (2,000 in a process take about a second to create and 30 MB), and all
endpoints of a process share its event loop.

Queue mode imitates an NB-IoT module in PSM: it can only receive during ``window`` seconds
after it last sent something. While it sleeps, datagrams to its socket are dropped without
an answer (the socket stays bound, as the module keeps its IP address, so the server sees
silence rather than an ICMP error) and nothing is sent; it wakes every ``update_interval``
seconds to send a registration Update, then sends the notifications that are due, then stays
awake for the window. An alarm contact that changes while asleep wakes it at once, as a fire
detector would. The observations survive sleep, as LwM2M asks.

Over 500 lines on purpose: registration, observation and sleep share one endpoint's state
and timers (a wake-up sends the Update, then the due notifications, then opens the window),
and split across modules they would only pass that state back and forth.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiocoap
import aiocoap.resource
from aiocoap import CON, Code, Message
from aiocoap.numbers import ContentFormat as CoapFormat
from aiocoap.numbers.constants import Unreliable

from hub.contracts.lwm2m import ContentFormat, Lwm2mValue, Path
from plugins.simulators.lwm2m import codec
from plugins.simulators.lwm2m.firmware import DOWNLOADING, StateError
from plugins.simulators.lwm2m.objects import (
    OBJECTS,
    BadRequest,
    Lwm2mError,
    SimDevice,
    link_payload,
    registration_query,
)

__all__ = ["Endpoint", "EndpointOptions", "Stats", "describe", "open_context"]

_log = logging.getLogger("hub.lwm2m_sim")
LINK_FORMAT = 40
RETRY_FIRST, RETRY_CAP = 2.0, 60.0  # s between failed registrations, doubling
UPDATE_TIME = 0.3  # s a firmware update (flash and restart) takes
PULL_SZX = 5  # pull downloads ask for 512-byte blocks
PULL_TIMEOUT, PULL_RETRIES = 20.0, 5  # per block; blocks without an answer before result 4


@dataclass(frozen=True)
class EndpointOptions:
    """What every endpoint of a run shares."""

    server: tuple[str, int]
    lifetime: int = 300
    interval: float = 10.0  # notify at least this often (and sample this often)
    content_format: int = ContentFormat.LWM2M_TLV
    queue: bool = False
    update_interval: float = 60.0  # queue mode: seconds asleep between wakes
    window: float = 10.0  # queue mode: seconds it can receive after it last sent
    bind_host: str = "127.0.0.1"
    confirmable: bool = True  # notifications as CON (acknowledged) or NON

    def __post_init__(self) -> None:
        if self.content_format not in codec.SUPPORTED:
            raise ValueError(f"content format {self.content_format} not supported")
        if self.lifetime < 1 or self.interval <= 0 or self.window <= 0:
            raise ValueError("lifetime, interval and window must be positive")


@dataclass
class Stats:
    """Counters shared by the endpoints of one process (for status lines and the bench)."""

    registered: int = 0  # endpoints holding a registration now
    registrations: int = 0  # 2.01 Created received
    register_failures: int = 0
    updates: int = 0
    update_failures: int = 0
    deregistrations: int = 0
    reads: int = 0
    writes: int = 0
    executes: int = 0
    observations: int = 0  # active now
    notifications: int = 0
    #: notifications merged into one still waiting to be sent (it leaves with the latest values)
    coalesced: int = 0
    dropped_asleep: int = 0  # datagrams that reached a sleeping endpoint
    sleeps: int = 0
    reboots: int = 0
    firmware_blocks: int = 0  # blocks fetched (pull)
    firmware_drops: int = 0  # sleeps in the middle of a firmware transfer
    first_register_sent: float | None = None  # wall clock
    last_registration: float | None = None  # wall clock of the latest 2.01
    #: wall clock of each endpoint's first 2.01 (re-registrations not included)
    first_registered_at: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


async def open_context(site: Any, host: str, port: int = 0) -> aiocoap.Context:
    """An aiocoap context serving ``site`` on one UDP socket of ``host`` (``port`` 0: any),
    a port no other socket holds."""
    # aiocoap sets SO_REUSEPORT on every server socket, and Linux gives a port-0 bind with
    # SO_REUSEPORT an ephemeral port that another SO_REUSEPORT socket of the same user may
    # already hold (122 of 2,000 endpoint sockets shared a port here). Datagrams to a
    # shared port all reach one of its sockets (the kernel hashes the sender's address), so
    # one endpoint of each pair never heard its 2.01 while the other got both and answered
    # the hub's requests for both devices. aiocoap's documented switch turns it off; it is
    # read at every bind and it is process-wide, which suits a load generator: a server
    # bound to a fixed port in the same process then refuses a second bind loudly instead
    # of sharing its traffic.
    os.environ["AIOCOAP_REUSE_PORT"] = "0"
    return await aiocoap.Context.create_server_context(site, bind=(host, port),
                                                       transports=["udp6"])


def _interface(ctx: aiocoap.Context) -> Any:
    # aiocoap exposes no public handle on a context's socket; both uses below are guarded
    return ctx.request_interfaces[0].token_interface.message_interface


def _pending(ctx: aiocoap.Context) -> int:
    """CONs this context sent and has not had acknowledged, plus those queued behind them
    (aiocoap sends one at a time per peer). Private state, hence the guard."""
    try:
        mm = ctx.request_interfaces[0].token_interface
        return len(mm._active_exchanges) + sum(len(b) for b in mm._backlogs.values())
    except (AttributeError, IndexError, TypeError):
        return 0


async def _answer(response: asyncio.Future, timeout: float) -> Message:
    """``response`` within ``timeout``, leaving the future itself alone. Cancelling it
    (what a bare ``wait_for`` does on timeout) made aiocoap raise InvalidStateError into
    the loop when the request's answer or its retransmission error came later: the
    tracebacks in the simulator's log under load."""
    response.add_done_callback(lambda f: f.cancelled() or f.exception())
    return await asyncio.wait_for(asyncio.shield(response), timeout)


class _Observation:
    __slots__ = ("fmt", "last", "last_sent", "path", "servobs")

    def __init__(self, path: Path, fmt: int, servobs: Any) -> None:
        self.path = path
        self.fmt = fmt
        self.servobs = servobs
        self.last: tuple | None = None
        self.last_sent = 0.0


def _parse_path(request: Message) -> Path:
    try:
        return tuple(int(p) for p in request.opt.uri_path if p != "")
    except ValueError:
        raise Lwm2mError(f"path {'/'.join(request.opt.uri_path)} is not numeric") from None


class _Root(aiocoap.resource.ObservableResource, aiocoap.resource.PathCapable):
    """Every LwM2M path of one endpoint: reads, writes, executes, discover, observe."""

    def __init__(self, endpoint: Endpoint) -> None:
        super().__init__()
        self.ep = endpoint
        self.observations: dict[int, _Observation] = {}

    async def needs_blockwise_assembly(self, request: Message) -> bool:
        return False  # every payload here fits one datagram

    async def add_observation(self, request: Message, servobs: Any) -> None:
        # aiocoap calls the cancellation callback of every observation it offered, so
        # accept all and let render() refuse bad paths (which ends the observation)
        key = id(servobs)
        try:
            path = _parse_path(request)
            fmt = request.opt.accept if request.opt.accept is not None else None
        except Lwm2mError:
            servobs.accept(lambda: None)
            return
        if request.code != Code.GET or not self.ep.device.observable(path):
            servobs.accept(lambda: None)
            return
        obs = _Observation(path, int(fmt) if fmt is not None else self.ep.options.content_format,
                           servobs)
        obs.last_sent = self.ep.loop.time()
        self.observations[key] = obs
        self.ep.stats.observations += 1

        def cancel() -> None:
            if self.observations.pop(key, None) is not None:
                self.ep.stats.observations -= 1

        servobs.accept(cancel)

    async def render(self, request: Message) -> Message:
        try:
            return self.ep.handle(request, _parse_path(request))
        except Lwm2mError as e:
            return Message(code=Code(e.code), payload=str(e).encode()[:200])

    def get_link_description(self) -> dict | None:
        return None


class Endpoint:
    """One simulated LwM2M client; :meth:`run` registers it and keeps it registered."""

    def __init__(self, device: SimDevice, options: EndpointOptions, stats: Stats,
                 offset: float = 0.0) -> None:
        self.device = device
        self.options = options
        self.stats = stats
        self.offset = offset  # s before the first sample, to spread the fleet's ticks
        self.loop = asyncio.get_event_loop()
        self.ctx: aiocoap.Context | None = None
        self.root = _Root(self)
        self.port = 0
        self.location: tuple[str, ...] | None = None
        self.awake = True
        self.last_send = 0.0
        self.started = 0.0
        self._wakeup = asyncio.Event()
        self._why: str | None = None  # "reboot" or "update" when _wakeup was set
        self._alarm = False
        self._sleep_timer: asyncio.TimerHandle | None = None
        self._tick_timer: asyncio.TimerHandle | None = None
        self._stopping = False
        self._ever_registered = False
        #: observations with a notification to send, in the order they became due
        self._due: dict[int, _Observation] = {}
        #: the observation whose notification was handed to aiocoap and is not yet on the wire
        self._handed: int | None = None
        #: caps the registrations in flight across a fleet (set by the fleet)
        self.register_slots: asyncio.Semaphore | None = None
        self._download: asyncio.Task | None = None  # a pull firmware download under way

    # ------------------------------------------------------------------ socket

    async def open(self) -> None:
        """Bind the endpoint's socket (again on the same port after a reboot)."""
        self.ctx = await open_context(self.root, self.options.bind_host, self.port)
        mi = _interface(self.ctx)
        self.port = mi._local_port()
        receive, send = mi.datagram_msg_received, mi.send

        # The gate: a sleeping module's radio is off. Instance attributes shadow the methods
        # the socket transport calls, so this needs no change to aiocoap.
        def gated_receive(data: bytes, ancdata: Any, flags: int, address: Any) -> None:
            if self.awake:
                receive(data, ancdata, flags, address)
                if self._due:  # perhaps the ACK of the notification in flight
                    self._send_due()
            else:
                self.stats.dropped_asleep += 1

        def gated_send(message: Message) -> None:
            if message.mtype == CON and message.code.is_response():
                self._handed = None  # on the wire now: aiocoap counts it as pending
            if self.awake:
                self.last_send = self.loop.time()
                send(message)

        mi.datagram_msg_received = gated_receive
        mi.send = gated_send

    async def close(self) -> None:
        ctx, self.ctx = self.ctx, None
        if ctx is not None:
            obs = len(self.root.observations)
            self.root.observations.clear()
            self._due.clear()
            self._handed = None
            self.stats.observations -= obs
            await ctx.shutdown()

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Register, then keep the registration fresh until cancelled or :meth:`stop`."""
        self.started = self.loop.time()
        if self.ctx is None:
            await self.open()
        self._tick_timer = self.loop.call_later(self.offset, self._tick)
        failures = 0
        while not self._stopping:
            if self.location is None:
                if not await self.register():
                    failures += 1
                    await asyncio.sleep(min(RETRY_CAP, RETRY_FIRST * 2 ** (failures - 1)))
                    continue
                failures = 0
                self.notify(force=True)  # observations a rebooted device lost are gone anyway
                self._arm_sleep()
            await self._wait(self._update_delay())
            why, self._why = self._why, None
            if self._stopping:
                break
            if why == "reboot":
                await self._reboot()
                continue
            self.wake()
            if not await self.update():
                self.location = None
                self.stats.registered -= 1
                continue
            self.notify(force=True)
            self._arm_sleep()

    def _update_delay(self) -> float:
        if self.options.queue:
            return self.options.update_interval
        return self.device.lifetime * 0.5

    async def _wait(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), delay)
        self._wakeup.clear()

    def poke(self, why: str) -> None:
        """Ask :meth:`run` to act now: ``"update"`` (send an Update) or ``"reboot"``."""
        if self._why != "reboot":
            self._why = why
        self._wakeup.set()

    async def stop(self, deregister: bool = True) -> None:
        self._stopping = True
        self._wakeup.set()
        for timer in (self._tick_timer, self._sleep_timer):
            if timer is not None:
                timer.cancel()
        if deregister and self.location is not None and self.ctx is not None:
            self.wake()
            msg = Message(code=Code.DELETE, uri=self._server_uri())
            msg.opt.uri_path = self.location
            with contextlib.suppress(Exception):
                resp = await _answer(self.ctx.request(msg).response, 5)
                if resp.code == Code.DELETED:
                    self.stats.deregistrations += 1
            self.location = None
            self.stats.registered -= 1
        await self.close()

    # ------------------------------------------------------------------ registration

    def _server_uri(self) -> str:
        host, port = self.options.server
        return f"coap://{f'[{host}]' if ':' in host else host}:{port}"

    async def register(self) -> bool:
        assert self.ctx is not None
        self.wake()
        msg = Message(code=Code.POST, uri=self._server_uri() + "/rd",
                      content_format=CoapFormat(LINK_FORMAT),
                      payload=link_payload(self.options.content_format).encode())
        msg.opt.uri_query = registration_query(self.device.endpoint, self.device.lifetime,
                                               self.options.queue)
        if self.stats.first_register_sent is None:
            self.stats.first_register_sent = time.time()
        try:
            if self.register_slots is None:
                resp = await self.ctx.request(msg).response
            else:
                async with self.register_slots:
                    resp = await self.ctx.request(msg).response
        except Exception as e:  # timeouts, ICMP errors: try again later
            self.stats.register_failures += 1
            self.stats.error(type(e).__name__)
            return False
        if resp.code != Code.CREATED or not resp.opt.location_path:
            self.stats.register_failures += 1
            self.stats.error(f"register {resp.code}")
            return False
        self.location = tuple(resp.opt.location_path)
        self.stats.registrations += 1
        self.stats.registered += 1
        self.stats.last_registration = time.time()
        if not self._ever_registered:
            self._ever_registered = True
            self.stats.first_registered_at.append(self.stats.last_registration)
        return True

    async def update(self) -> bool:
        """Send a registration Update; False when the server no longer knows us."""
        assert self.ctx is not None and self.location is not None
        msg = Message(code=Code.POST, uri=self._server_uri())
        msg.opt.uri_path = self.location
        msg.opt.uri_query = (f"lt={self.device.lifetime}",)
        try:
            resp = await self.ctx.request(msg).response
        except Exception as e:
            self.stats.update_failures += 1
            self.stats.error(type(e).__name__)
            return True  # unreachable is not "unknown": keep the registration, try later
        if resp.code == Code.CHANGED:
            self.stats.updates += 1
            return True
        self.stats.update_failures += 1
        self.stats.error(f"update {resp.code}")
        return False

    async def _reboot(self) -> None:
        # A reboot forgets everything volatile: observations, the registration location.
        self.stats.reboots += 1
        if self.location is not None:
            self.location = None
            self.stats.registered -= 1
        await asyncio.sleep(0.05)  # let the 2.04 to the Execute go out first
        await self.close()
        await self.open()
        self.wake()

    # ------------------------------------------------------------------ queue mode

    def wake(self) -> None:
        self.awake = True
        self.last_send = self.loop.time()  # the window counts from now at the latest

    def _arm_sleep(self) -> None:
        if not self.options.queue or self._stopping:
            return
        if self._sleep_timer is not None:
            self._sleep_timer.cancel()
        due = self.last_send + self.options.window
        self._sleep_timer = self.loop.call_at(due, self._maybe_sleep)

    def _maybe_sleep(self) -> None:
        self._sleep_timer = None
        if self.loop.time() - self.last_send >= self.options.window * 0.999:
            if self.awake:
                self.awake = False
                self.stats.sleeps += 1
        else:
            self._arm_sleep()

    # ------------------------------------------------------------------ requests

    def handle(self, request: Message, path: Path) -> Message:
        """The answer to one request from the server (aiocoap sends it)."""
        dev, opts = self.device, self.options
        now = self.loop.time()
        if request.code == Code.GET:
            self.stats.reads += 1
            accept = request.opt.accept
            if accept is not None and int(accept) == LINK_FORMAT:
                return self._discover(path)
            fmt = int(accept) if accept is not None else opts.content_format
            if fmt not in codec.SUPPORTED:
                return Message(code=Code.NOT_ACCEPTABLE)
            if fmt == ContentFormat.TEXT and len(path) != 3:
                return Message(code=Code.NOT_ACCEPTABLE)
            return self._content(path, fmt, now)
        if request.code in (Code.PUT, Code.POST) and path[:2] == (5, 0) and len(path) == 3:
            return self._firmware(request, path)
        if request.code in (Code.PUT, Code.POST):
            if request.code == Code.POST and len(path) == 3:
                self.stats.executes += 1
                action = dev.execute(path)
                self.poke(action)
                return Message(code=Code.CHANGED)
            if request.code == Code.PUT and not request.payload and request.opt.uri_query:
                return Message(code=Code.CHANGED)  # Write-Attributes: accepted, not applied
            self.stats.writes += 1
            dev.check_writable(path)
            cf = request.opt.content_format
            if cf is None:
                raise BadRequest("a write needs a Content-Format")
            try:
                values = codec.decode(int(cf), request.payload, path)
            except codec.CodecError as e:
                raise BadRequest(str(e)) from None
            changed = dev.write(path, values)
            if (1, 0, 1) in changed:
                self.poke("update")
            if changed:
                self.loop.call_soon(self.notify)
            return Message(code=Code.CHANGED)
        return Message(code=Code.METHOD_NOT_ALLOWED)

    # ------------------------------------------------------------------ firmware (/5/0)

    def _firmware(self, request: Message, path: Path) -> Message:
        """Writes and the Execute of object 5 (see :mod:`.firmware`); reads go the common
        way."""
        fw = self.device.firmware
        try:
            if request.code == Code.POST and path == (5, 0, 2):
                self.stats.executes += 1
                fw.execute()
                self.loop.call_later(UPDATE_TIME, self._finish_update)
                self.loop.call_soon(self.notify)
                return Message(code=Code.CHANGED)
            if request.code == Code.PUT and path == (5, 0, 0):
                self.stats.writes += 1
                block = request.opt.block1
                num, more = (block.block_number, block.more) if block is not None else (0,
                                                                                        False)
                fw.push_block(num, more, request.payload)
                self.loop.call_soon(self.notify)
                if fw.should_drop():
                    self._drop(fw.behaviour.sleep_for)  # this block's answer is lost too
                resp = Message(code=Code.CONTINUE if more else Code.CHANGED)
                if block is not None:
                    resp.opt.block1 = block
                return resp
            if request.code == Code.PUT and path == (5, 0, 1):
                self.stats.writes += 1
                cf = request.opt.content_format
                try:
                    values = codec.decode(int(cf) if cf is not None else ContentFormat.TEXT,
                                          request.payload, path)
                except codec.CodecError as e:
                    raise BadRequest(str(e)) from None
                uri = values[0].value if values else ""
                if isinstance(uri, bytes):
                    uri = uri.decode("utf-8", "replace")
                if self._download is not None:
                    self._download.cancel()
                    self._download = None
                if fw.write_uri(str(uri or "")):
                    self._download = self.loop.create_task(self._pull(str(uri)))
                self.loop.call_soon(self.notify)
                return Message(code=Code.CHANGED)
        except StateError as e:
            return Message(code=Code.METHOD_NOT_ALLOWED, payload=str(e).encode()[:200])
        return Message(code=Code.METHOD_NOT_ALLOWED)

    def _drop(self, seconds: float) -> None:
        """Fall asleep now, in the middle of a transfer, and come back after ``seconds``
        with an Update (an NB-IoT module losing coverage, then finding it again)."""
        self.awake = False
        self.stats.sleeps += 1
        self.stats.firmware_drops += 1
        if self._sleep_timer is not None:
            self._sleep_timer.cancel()
            self._sleep_timer = None

        def back() -> None:
            if self._stopping:
                return
            self.wake()
            self.poke("update")
        self.loop.call_later(seconds, back)

    async def _pull(self, uri: str) -> None:
        """Fetch the package block by block (Block2), resuming after a sleep."""
        fw = self.device.firmware
        failures = 0
        # the server's address as the first answer came from, for every later block: a
        # request by URI alone has aiocoap resolve the host again (getaddrinfo in a worker
        # thread), which took half of a simulator's samples during a 200-device download
        remote = None
        try:
            while fw.state == DOWNLOADING and fw.uri == uri and not self._stopping:
                if fw.should_drop():
                    self._drop(fw.behaviour.sleep_for)
                    await asyncio.sleep(fw.behaviour.sleep_for)
                    continue
                if not self.awake:
                    self.wake()
                msg = Message(code=Code.GET, uri=uri)
                if remote is not None and remote[0] is self.ctx:  # not after a reboot
                    msg.remote = remote[1]
                msg.opt.block2 = (fw.blocks, False, PULL_SZX)
                assert self.ctx is not None
                try:
                    resp = await _answer(
                        self.ctx.request(msg, handle_blockwise=False).response, PULL_TIMEOUT)
                except Exception:  # noqa: BLE001 - no answer: try again, then give up
                    failures += 1
                    if failures >= PULL_RETRIES:
                        fw.download_failed()
                        break
                    await asyncio.sleep(1.0)
                    continue
                if not resp.code.is_successful():
                    fw.download_failed()
                    break
                failures = 0
                remote = (self.ctx, resp.remote)
                block = resp.opt.block2
                self.stats.firmware_blocks += 1
                fw.add_block(resp.payload, bool(block is not None and block.more))
        finally:
            self._download = None
            self.loop.call_soon(self.notify)

    def _finish_update(self) -> None:
        self.device.firmware.finish_update()
        self.notify()
        self.poke("update")  # back from the restart: tell the server

    def _content(self, path: Path, fmt: int, now: float,
                 values: list[Lwm2mValue] | None = None) -> Message:
        if values is None:
            values = self.device.read(path, now - self.started, time.time(), time.time())
        try:
            payload = codec.encode(fmt, values, path)
        except codec.CodecError:
            return Message(code=Code.NOT_ACCEPTABLE)
        return Message(code=Code.CONTENT, content_format=CoapFormat(fmt), payload=payload)

    def _discover(self, path: Path) -> Message:
        links = []
        for (o, i), resources in sorted(OBJECTS.items()):
            if (o, i)[:len(path)] != path[:2] or len(path) > 3:
                continue
            links.append(f"</{o}/{i}>")
            links += [f"</{o}/{i}/{r}>" for r in sorted(resources)
                      if len(path) < 3 or r == path[2]]
        if not links:
            return Message(code=Code.NOT_FOUND)
        return Message(code=Code.CONTENT, content_format=CoapFormat(LINK_FORMAT),
                       payload=",".join(links).encode())

    # ------------------------------------------------------------------ notifications

    def _tick(self) -> None:
        self._tick_timer = self.loop.call_later(self.options.interval, self._tick)
        if self.location is None or self._stopping:
            return
        if not self.awake:
            # asleep: only an alarm wakes the module before its next Update
            alarm = bool(self.device.sample(self.loop.time() - self.started,
                                            time.time())[(3200, 0, 5500)])
            if alarm != self._alarm:
                self._alarm = alarm
                self.wake()
                self.notify(force=True)
                self._arm_sleep()
            return
        self.notify()

    def notify(self, force: bool = False) -> None:
        """Queue a notification of every observation whose values changed, or whose last
        notification is an interval old (``force``: all), and send the first. An
        observation already waiting is not queued twice: it leaves once, with the latest
        values (counted as coalesced), so a slow server slows the fleet instead of
        growing queues."""
        if not self.awake or not self.root.observations or self.ctx is None:
            return
        now = self.loop.time()
        sample = self.device.sample(now - self.started, time.time())
        self._alarm = bool(sample[(3200, 0, 5500)])
        for key, obs in self.root.observations.items():
            if key in self._due:
                self.stats.coalesced += 1
                continue
            if not force and now - obs.last_sent < self.options.interval \
                    and _values_key(sample, obs.path) == obs.last:
                continue
            # the tick it is due for, not the moment it leaves: sent later, it would
            # otherwise seem less than an interval old at the next tick and skip it
            obs.last_sent = now
            self._due[key] = obs
        self._send_due()

    def _send_due(self) -> None:
        """Send queued notifications: confirmable ones one at a time, each rendered as it
        leaves. CoAP sends one CON at a time to a peer (NSTART = 1); rendered all at once,
        the 15th notification of a tick would carry values and a timestamp of the tick
        while it waited for 14 round trips in aiocoap's backlog, which a sensor reporting
        its current state does not do (and the bench would date that wait as the
        hub's)."""
        if not self.awake or self.ctx is None:
            return
        observations = self.root.observations
        confirmable = self.options.confirmable
        while self._due:
            if confirmable and ((self._handed is not None and self._handed in observations)
                                or _pending(self.ctx)):
                return  # the next goes when this one is acknowledged (or given up)
            key = next(iter(self._due))
            obs = self._due.pop(key)
            if key not in observations:
                continue
            now = self.loop.time()
            # stamped when rendered: the bench dates its commit from this
            wall = time.time()
            sample = self.device.sample(now - self.started, wall)
            n = len(obs.path)
            values = [Lwm2mValue(p, x, wall) for p, x in sorted(sample.items())
                      if p[:n] == obs.path]
            msg = self._content(obs.path, obs.fmt, now, values)
            if not confirmable:
                msg.transport_tuning = Unreliable()
            obs.last = tuple(v.value for v in values)
            obs.servobs.trigger(msg)
            self.stats.notifications += 1
            if confirmable:
                self._handed = key


def _values_key(sample: dict[Path, Any], path: Path) -> tuple:
    n = len(path)
    return tuple(x for p, x in sorted(sample.items()) if p[:n] == path)


def describe(stats: Stats, total: int, clock: Callable[[], float] = time.time) -> str:
    """One status line."""
    errors = ", ".join(f"{k} {v}" for k, v in sorted(stats.errors.items()))
    return (f"lwm2m-sim: {stats.registered}/{total} registered ({stats.registrations} "
            f"registrations, {stats.register_failures} failed), {stats.updates} updates, "
            f"{stats.observations} observations, {stats.notifications} notifications "
            f"({stats.coalesced} coalesced), {stats.reads} reads, {stats.writes} writes, "
            f"{stats.executes} executes, {stats.sleeps} sleeps, {stats.dropped_asleep} "
            f"dropped asleep, {stats.reboots} reboots{f'; errors: {errors}' if errors else ''}")
