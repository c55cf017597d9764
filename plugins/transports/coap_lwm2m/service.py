"""The ``coap_lwm2m`` transport as a Twisted service: an aiocoap server context in the
reactor's own asyncio loop, the LwM2M registration interface, observations, the plain CoAP
uplink, and commands held for sleeping devices.

How the promises are kept:

* **Known devices only.** An endpoint name resolves (bare IMEI, ``urn:imei:``,
  ``urn:imei-imsi:``, …; see :mod:`.endpoint`) to a registry device or is refused with 4.03
  and counted (``coap.unknown_endpoints``).
* **Presence by lifetime.** A registration's lifetime plus the grace is the device's
  offline timeout (:meth:`hub.contracts.TransportPort.set_offline_after`); every Register, Update,
  notification and uplink counts as a sign of life.
* **NAT rebinding.** Every message refreshes the device's address; observations move to a
  new address, and downlink always goes to the latest one.
* **Ack after commit.** A plain uplink is answered (2.04) only once its records are in the
  journal; a refused commit answers 5.00 and the device sends again. Notifications are
  acknowledged by aiocoap on receipt (CoAP gives the server no later moment), so the device
  must not rely on the ack of a notification for data it cannot send again.
* **Untrusted input.** A payload that does not decode is counted (``coap.decode_errors``),
  logged with the device and an excerpt in hex, and changes nothing else.
* **Queue mode.** See :mod:`.downlink_queue`; a queued command is journaled as pending and
  ``hub command`` answers "queued" at once.

Over 500 lines on purpose: registration, observation and downlink all act on the same
registration table, aiocoap context and per-device address, and their ordering rules
(observe after the 2.01, hold observations during a Register burst, queue commands for an
address another device took) are read best in one place. The sans-IO parts live beside it
(:mod:`.registration`, :mod:`.downlink_queue`, :mod:`.content`, :mod:`.endpoint`).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections import deque
from typing import Any

import aiocoap
from aiocoap import Code, Message
from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.logger import Logger

from hub.contracts import DecodeError, DeviceChange, EncodeError, Gateway, TransportPort
from hub.contracts.lwm2m import ContentFormat, Lwm2mModel, Lwm2mOperation, Lwm2mValue, Path
from hub.model import Command, CommandResult, CommandStatus

from . import content, endpoint, linkformat
from .coap import CODES, Observations, Root, code_text, exchange
from .downlink_queue import DownlinkQueue, Queued, QueueFull
from .options import PLACEHOLDER, CoapOptions
from .ota import FirmwareDriver, OtaWork
from .registration import (
    Registration,
    RegistrationError,
    RegistrationTable,
    parse_query,
)
from .resources import is_multiple

_log = Logger(namespace="hub.coap_lwm2m")

EXCERPT = 48  # bytes of a bad payload shown in the log
SWEEP_INTERVAL = 5.0
RESPONSE_FIRST = 0.05  # s between answering a device and sending it requests
#: A burst of Registers (every device of a site after a power cut) is answered first and
#: observed after: each observation set-up costs the hub as much as a Register, and 15 per
#: device took a third of the registration rate (1,115/s without observing, 650-850/s
#: with, 2,000 devices). A burst is BURST_REGISTERS Registers within BURST_QUIET s; the
#: set-ups wait until BURST_QUIET s pass without one, BURST_HOLD_MAX s at most.
BURST_REGISTERS = 20
BURST_QUIET = 0.2
BURST_HOLD_MAX = 5.0
#: Notifications' records go to the core together (one journal append and one Deferred
#: per batch, not per notification): a batch leaves after INGEST_DELAY s or at
#: INGEST_BATCH records, well inside the journal's own commit interval.
INGEST_DELAY = 0.005
INGEST_BATCH = 512
#: formats a write may use, in the order the transport prefers when the device said nothing
WRITE_FORMATS = (ContentFormat.LWM2M_TLV, ContentFormat.SENML_JSON, ContentFormat.SENML_CBOR,
                 ContentFormat.LWM2M_CBOR, ContentFormat.LWM2M_JSON)


def _hex(data: bytes) -> str:
    return data[:EXCERPT].hex(" ") + (" …" if len(data) > EXCERPT else "")


def _response(code: Code, text: str = "") -> Message:
    return Message(code=code, payload=text.encode("utf-8")[:200])


def _path_text(path: Path) -> str:
    return "/" + "/".join(str(p) for p in path)


class Lwm2mService(Service):
    """The ``coap_lwm2m`` transport of one hub."""

    def __init__(self, hub: TransportPort, name: str, options: CoapOptions,
                 reactor: Any = None) -> None:
        self.hub = hub
        self.transport_name = name
        self.options = options
        self._reactor = reactor
        self.context: aiocoap.Context | None = None
        self.firmware_context: aiocoap.Context | None = None  # firmware_port's socket
        self._loop: asyncio.AbstractEventLoop | None = None
        self.table = RegistrationTable(hub.clock, options.grace, options.default_lifetime,
                                       options.min_lifetime, options.max_lifetime,
                                       self._displaced)
        self.queue = DownlinkQueue(hub.clock, self._reachable, self._send, self.table.silent,
                                   options.attempts, options.max_queue, self._requeued)
        self.observations = Observations(self._on_value, self._on_observation_end,
                                         options.request_timeout)
        self._index: dict[str, Any] = {}  # address key -> device, for endpoint resolution
        self._sweep: task.LoopingCall | None = None
        self._unwatch: Any = None
        self._recent_registers: deque[float] = deque()
        self._held: list[tuple[Registration, bool]] = []  # observations a burst holds back
        self._held_since = 0.0
        self._release: Any = None  # the DelayedCall that lets them go
        self._batch: list[tuple[str, Any]] = []  # (device, records) waiting for the core
        self._batch_records = 0
        self._batch_call: Any = None
        self.ota = FirmwareDriver(self)  # firmware updates (hub.ota), found by the manager

    # -- lifecycle -------------------------------------------------------------------------

    @defer.inlineCallbacks
    def startService(self):
        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor
            self._reactor = reactor
        loop = getattr(reactor, "_asyncioEventloop", None)
        if loop is None:
            raise RuntimeError(f"{self.transport_name}: the coap_lwm2m transport needs Twisted's "
                               "asyncio reactor (`hub run` installs it)")
        # the reactor's loop, passed explicitly: before the reactor runs, asyncio's "current"
        # loop may be another one that never runs
        self._loop = loop
        opts = self.options
        self._index = {d.address_key: d for d in self.hub.devices(
            self.transport_name)}
        self._unwatch = self.hub.watch_devices(self.transport_name, self.device_changed)
        # aiocoap sets SO_REUSEPORT on its server socket unless told not to: a second hub
        # (or any SO_REUSEPORT socket) on this port would then bind too and silently take a
        # share of the devices' datagrams. Without it that second bind fails loudly.
        os.environ.setdefault("AIOCOAP_REUSE_PORT", "0")
        self.context = yield self._deferred(aiocoap.Context.create_server_context(
            Root(self._handle, self.ota.is_firmware_request), bind=(opts.host, opts.port),
            loop=loop, transports=["udp6"]))
        rcvbuf = self._grow_receive_buffer(opts.receive_buffer)
        if opts.firmware_port is not None:
            self.firmware_context = yield self._deferred(aiocoap.Context.create_server_context(
                Root(self._handle_firmware, lambda request: True),
                bind=(opts.host, opts.firmware_port), loop=loop, transports=["udp6"]))
            self.ota.serving_on(_bound_port(self.firmware_context))
        super().startService()
        self.hub.register_command_target(self.transport_name, self)
        self._sweep = task.LoopingCall(self._sweep_now)
        self._sweep.clock = self.hub.clock
        self._sweep.start(SWEEP_INTERVAL, now=False)
        self._metrics_gauges()
        _log.info("{transport}: LwM2M/CoAP server on udp {host} port {port} ({n} devices, "
                  "receive buffer {rcvbuf})", transport=self.transport_name, host=opts.host,
                  port=opts.port, n=len(self._index), rcvbuf=rcvbuf)
        self._resume_commands()

    def device_changed(self, change: DeviceChange) -> None:
        """The registry changed: the endpoint index follows; a deleted device's (or a
        renamed endpoint's) registration ends, and its observations with it."""
        old = change.previous if change.kind == "changed" else change.device
        if change.kind != "added" and old is not None:
            if getattr(self._index.get(old.address_key), "id", None) == old.id:
                del self._index[old.address_key]
            if change.kind == "removed" or old.address_key != change.device.address_key:
                self._end_registration(old.id)
        if change.kind != "removed":
            self._index[change.device.address_key] = change.device

    def gateways(self) -> list[Gateway]:
        """Each endpoint of the index (a device is its own gateway): registered or not."""
        out = []
        for key, device in list(self._index.items()):
            reg = self.table.get(device.id)
            expires = reg.expires_at(self.options.grace) if reg is not None else None
            live = reg is not None and reg.remote is not None and \
                (expires is None or expires >= self.hub.clock.seconds())
            out.append(Gateway(
                id=str(reg.endpoint if reg is not None else key), transport=self.transport_name,
                kind="lwm2m", auth="endpoint name", connected=live,
                address=_host(reg.remote) if live and reg is not None else None,
                last_seen=reg.last_heard if reg is not None else None, devices=(device.id,)))
        return out

    def _end_registration(self, device: str) -> None:
        reg = self.table.forget(device)
        self.observations.cancel(device)
        if reg is not None:
            self.hub.set_offline_after(device, None)
            self.hub.metrics.inc("coap.registrations_ended", transport=self.transport_name)
            _log.info("{transport}: registration of {device} ({ep}) ended: the device was "
                      "deleted or renamed", transport=self.transport_name, device=device,
                      ep=reg.endpoint)

    def _grow_receive_buffer(self, size: int) -> str:
        """Set the server socket's SO_RCVBUF; the size the kernel granted, for the log.

        Every datagram the kernel drops on a full buffer costs its sender CoAP's 2-3 s
        retransmission timeout, and with NSTART = 1 everything that device queued behind
        it waits too: at 2,000 notifying devices the default 208 KiB (about 270 datagrams,
        75 ms of traffic) overflowed at every pause of the loop (a commit, a collection)
        and made the latency's tail seconds long. aiocoap offers no handle on its socket,
        hence the private path and the guard."""
        if not size:
            return "as the system sets it"
        try:
            mi = self.context.request_interfaces[0].token_interface.message_interface
            sock = mi.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
            # Linux reports twice what it grants (bookkeeping included)
            return f"{sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2} bytes"
        except (AttributeError, IndexError, OSError) as e:
            _log.warn("{transport}: could not set the receive buffer to {size} bytes: {error}",
                      transport=self.transport_name, size=size, error=e)
            return "unchanged"

    @defer.inlineCallbacks
    def stopService(self):
        super().stopService()
        self._flush_ingest()
        self.hub.unregister_command_target(self.transport_name)
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        if self._sweep is not None and self._sweep.running:
            self._sweep.stop()
        if self._release is not None and self._release.active():
            self._release.cancel()
        self._release, self._held = None, []
        self.observations.cancel_all()
        # unfinished commands stay unfinished in the journal: the next start resumes them
        left = self.queue.drop_all()
        if left:
            _log.info("{transport}: {n} commands still queued; they resume at the next start",
                      transport=self.transport_name, n=len(left))
        ctx, self.context = self.context, None
        if ctx is not None:
            yield self._deferred(ctx.shutdown())
        fw_ctx, self.firmware_context = self.firmware_context, None
        if fw_ctx is not None:
            yield self._deferred(fw_ctx.shutdown())

    def _deferred(self, coro: Any) -> defer.Deferred:
        assert self._loop is not None
        return defer.Deferred.fromFuture(self._loop.create_task(coro))

    def _resume_commands(self) -> None:
        """Hand commands accepted before a restart and not finished back to the core."""
        devices = [d.id for d in self._index.values()]
        since = self.hub.clock.seconds() - self.options.resume_horizon
        n = self.hub.resume_commands(devices, since)
        if n:
            _log.info("{transport}: took up {n} unfinished commands from the journal",
                      transport=self.transport_name, n=n)

    def _sweep_now(self) -> None:
        for reg in self.table.expire():
            self.observations.cancel(reg.device)
            self.hub.metrics.inc("coap.registrations_expired", transport=self.transport_name)
            _log.info("{transport}: registration of {device} ({ep}) expired", device=reg.device,
                      transport=self.transport_name, ep=reg.endpoint)
        self.queue.expire()
        self._metrics_gauges()

    def _metrics_gauges(self) -> None:
        # each gauge walks every device: the sweep sets them, never a per-message path
        m, t = self.hub.metrics, self.transport_name
        m.set("coap.registered", len(self.table), transport=t)
        m.set("coap.observations", self.observations.count(), transport=t)
        m.set("coap.queued_commands", self.queue.waiting(), transport=t)

    # -- requests from devices -------------------------------------------------------------

    async def _handle(self, request: Message) -> Message:
        """Route one request; never raises (a bug costs this request a 5.00, not the
        server)."""
        try:
            path = tuple(request.opt.uri_path)
            if self.ota.is_firmware_request(request):
                return self.ota.serve(request)
            if path == ("rd",) and request.code == Code.POST:
                return await self._register(request)
            if len(path) == 2 and path[0] == "rd":
                if request.code == Code.POST:
                    return self._update(request, path[1])
                if request.code == Code.DELETE:
                    return self._deregister(request, path[1])
                return _response(Code.METHOD_NOT_ALLOWED)
            ident = self._uplink_ident(path)
            if ident is not None:
                if request.code not in (Code.POST, Code.PUT):
                    return _response(Code.METHOD_NOT_ALLOWED)
                return await self._uplink(request, ident)
            self.hub.metrics.inc("coap.not_found", transport=self.transport_name)
            return _response(Code.NOT_FOUND)
        except RegistrationError as e:
            self.hub.metrics.inc("coap.bad_requests", transport=self.transport_name)
            _log.warn("{transport}: refused {code} {path} from {remote}: {error}",
                      transport=self.transport_name, code=request.code,
                      path="/" + "/".join(request.opt.uri_path), remote=_remote(request),
                      error=e)
            return _response(CODES[e.code], str(e))
        except Exception:
            self.hub.metrics.inc("coap.internal_errors", transport=self.transport_name)
            _log.failure("{transport}: error handling {code} {path} from {remote}",
                         transport=self.transport_name, code=request.code,
                         path="/" + "/".join(request.opt.uri_path), remote=_remote(request))
            return _response(Code.INTERNAL_SERVER_ERROR)

    async def _handle_firmware(self, request: Message) -> Message:
        """The firmware socket (``firmware_port``) serves images only."""
        try:
            if self.ota.is_firmware_request(request):
                return self.ota.serve(request)
            return _response(Code.NOT_FOUND, "firmware images only on this port")
        except Exception:
            self.hub.metrics.inc("coap.internal_errors", transport=self.transport_name)
            _log.failure("{transport}: error serving firmware to {remote}",
                         transport=self.transport_name, remote=_remote(request))
            return _response(Code.INTERNAL_SERVER_ERROR)

    def _uplink_ident(self, path: tuple[str, ...]) -> str | None:
        template = self.options.uplink_path
        if template is None or len(path) != len(template):
            return None
        ident = None
        for want, got in zip(template, path, strict=True):
            if want == PLACEHOLDER:
                ident = got
            elif want != got:
                return None
        return ident

    def resolve(self, ep: str) -> Any:
        """The registry device an endpoint name stands for, or ``None``. Every candidate
        id is tried quietly; only the last resort goes through the registry's refusal
        counting and auto-provisioning."""
        candidates = endpoint.identities(ep) or [ep]
        for ident in candidates:
            device = self._index.get(ident)
            if device is not None:
                return device
        device = self.hub.resolve(self.transport_name, candidates[0], identity=candidates[0])
        if device is not None:
            self._index[device.address_key] = device
        return device

    def _refuse(self, request: Message, ep: str) -> Message:
        self.hub.metrics.inc("coap.unknown_endpoints", transport=self.transport_name)
        _log.warn("{transport}: refused unknown endpoint {ep!r} from {remote}",
                  transport=self.transport_name, ep=ep, remote=_remote(request))
        return _response(Code.FORBIDDEN, "unknown endpoint")

    def _links(self, request: Message) -> tuple[list[Path], int | None] | None:
        """The object paths of a Register/Update payload and the content format its root
        link announces; ``None`` for an Update without payload."""
        if not request.payload:
            return None
        links = linkformat.parse_links(request.payload)
        fmt = None
        for link in links:
            ct = link.attrs.get("ct")
            if link.path is None and isinstance(ct, str) and ct.isdigit():
                fmt = int(ct)
        return linkformat.registered_paths(links), fmt

    async def _register(self, request: Message) -> Message:
        params = parse_query(request.opt.uri_query)
        if not params.endpoint:
            raise RegistrationError("bad_request", "a Register needs ep=")
        device = self.resolve(params.endpoint)
        if device is None:
            return self._refuse(request, params.endpoint)
        try:
            paths, root_format = self._links(request) or ([], None)
        except DecodeError as e:
            raise RegistrationError("bad_request", str(e)) from None
        reg, old = self.table.register(device.id, params, paths, request.remote)
        if params.preferred_format is None and root_format is not None:
            reg.preferred_format = root_format
        if old is not None:
            self.observations.cancel(device.id)
        self.hub.metrics.inc("coap.registrations", transport=self.transport_name)
        now = self.hub.clock.seconds()
        recent = self._recent_registers
        recent.append(now)
        while recent[0] < now - BURST_QUIET:
            recent.popleft()
        _log.info("{transport}: {device} registered as {ep!r} at rd/{loc} from {remote} "
                  "(lifetime {lt:g} s, binding {b}{q}, LwM2M {v}, {n} objects)",
                  transport=self.transport_name, device=device.id, ep=params.endpoint,
                  loc=reg.location, remote=_remote(request), lt=reg.lifetime, b=reg.binding,
                  q=", queue mode" if reg.queue_mode else "", v=reg.lwm2m, n=len(paths))
        self._lifetime_changed(reg)
        self.hub.heartbeat(device.id)
        self._after_response(reg, observe=True)
        return Message(code=Code.CREATED, location_path=("rd", reg.location))

    def _update(self, request: Message, location: str) -> Message:
        params = parse_query(request.opt.uri_query)
        try:
            links = self._links(request)
        except DecodeError as e:
            raise RegistrationError("bad_request", str(e)) from None
        reg, moved = self.table.update(location, params, links[0] if links else None,
                                       request.remote)
        self.hub.metrics.inc("coap.updates", transport=self.transport_name)
        if moved:
            self.hub.metrics.inc("coap.address_changes", transport=self.transport_name)
            _log.info("{transport}: {device} now at {remote} (NAT rebinding)",
                      transport=self.transport_name, device=reg.device, remote=_remote(request))
        _log.debug("{transport}: update of {device} at rd/{loc}", transport=self.transport_name,
                   device=reg.device, loc=location)
        if params.lifetime is not None:
            self._lifetime_changed(reg)
        self.hub.heartbeat(reg.device)
        # a new address or object list: observe everything anew; otherwise renew only the
        # observations that ended (refused, reset, timed out) while the others live on
        self._after_response(reg, observe=True, only_ended=not (moved or links is not None))
        return Message(code=Code.CHANGED)

    def _deregister(self, request: Message, location: str) -> Message:
        reg = self.table.deregister(location)
        self.observations.cancel(reg.device)
        self.hub.metrics.inc("coap.deregistrations", transport=self.transport_name)
        self.hub.heartbeat(reg.device)
        _log.info("{transport}: {device} de-registered (rd/{loc})", transport=self.transport_name,
                  device=reg.device, loc=location)
        return Message(code=Code.DELETED)

    def _displaced(self, reg: Registration, by: str) -> None:
        """Another device now speaks from ``reg``'s address (a carrier NAT reused the
        binding): its observations there would be answered by the other device, and its
        commands would reach the wrong breaker. They wait until it speaks again."""
        self.observations.cancel(reg.device)
        self.hub.metrics.inc("coap.addresses_taken", transport=self.transport_name)
        _log.warn("{transport}: {device}'s address is now {other}'s; its requests wait until "
                  "it speaks again", transport=self.transport_name, device=reg.device,
                  other=by)

    def _lifetime_changed(self, reg: Registration) -> None:
        assert reg.lifetime is not None
        self.hub.set_offline_after(reg.device, reg.lifetime + self.options.grace(reg.lifetime))

    def _after_response(self, reg: Registration, observe: bool,
                        only_ended: bool = False) -> None:
        """Observe and send queued commands once the response has left: a device takes
        requests only after it knows it is registered."""
        def go() -> None:
            if not self.running or self.table.get(reg.device) is not reg:
                return
            if observe:
                self._observe_soon(reg, only_ended)
            self.queue.wake(reg.device)
        # a short delay lets the response leave first (UDP keeps no order, but a request
        # overtaking the 2.01 within the same host is then unlikely)
        self.hub.clock.callLater(RESPONSE_FIRST, go)

    def _in_burst(self, now: float) -> bool:
        recent = self._recent_registers
        return len(recent) >= BURST_REGISTERS and recent[-1] >= now - BURST_QUIET

    def _observe_soon(self, reg: Registration, only_ended: bool) -> None:
        """Observe now, or after the burst of Registers going on (see BURST_REGISTERS)."""
        now = self.hub.clock.seconds()
        if not self._held and not self._in_burst(now):
            self._observe(reg, only_ended)
            return
        if not self._held:
            self._held_since = now
        self._held.append((reg, only_ended))
        if self._release is None:
            self._release = self.hub.clock.callLater(BURST_QUIET, self._release_held)

    def _release_held(self) -> None:
        now = self.hub.clock.seconds()
        if self._in_burst(now) and now - self._held_since < BURST_HOLD_MAX:
            self._release = self.hub.clock.callLater(BURST_QUIET, self._release_held)
            return
        self._release = None
        held, self._held = self._held, []
        for reg, only_ended in held:
            if self.running and self.table.get(reg.device) is reg:
                self._observe(reg, only_ended)

    def _observe(self, reg: Registration, only_ended: bool = False) -> None:
        """Observe the paths the model chooses (``only_ended``: those not observed now)."""
        device = self._device(reg.device)
        if not self.options.observe or device is None or not _is_lwm2m(device.model):
            return
        try:
            paths = list(device.model.observe_paths(list(reg.paths)))
            paths += self.ota.extra_paths(reg.device)
        except Exception:
            _log.failure("{transport}: model {model} failed choosing paths to observe for "
                         "{device}", transport=self.transport_name, model=device.model_name,
                         device=reg.device)
            return
        if only_ended:
            live = set(self.observations.observed(reg.device))
            paths = [p for p in paths if p not in live]
            if paths and self.context is not None:
                self.observations.add(self.context, self._loop, reg.device, reg.remote, paths)
                _log.info("{transport}: observing {paths} on {device} again",
                          transport=self.transport_name, device=reg.device,
                          paths=", ".join(_path_text(p) for p in paths))
            return
        if paths and self.context is not None:
            self.observations.start(self.context, self._loop, reg.device, reg.remote, paths)
            _log.info("{transport}: observing {paths} on {device}", transport=self.transport_name,
                      paths=", ".join(_path_text(p) for p in paths), device=reg.device)

    async def _uplink(self, request: Message, ident: str) -> Message:
        device = self.resolve(ident)
        if device is None:
            return self._refuse(request, ident)
        reg, moved = self.table.uplink(device.id, request.remote)
        if moved:
            self.hub.metrics.inc("coap.address_changes", transport=self.transport_name)
        self.hub.metrics.inc("coap.uplinks", transport=self.transport_name)
        payload = request.payload
        now = self.hub.clock.seconds()
        try:
            if len(payload) > self.options.max_payload:
                raise DecodeError(f"payload of {len(payload)} bytes exceeds max_payload "
                                  f"{self.options.max_payload}", payload[:EXCERPT])
            records = device.model.decode(device.id, payload, now)
        except DecodeError as e:
            self._bad_payload(device, "uplink", e, payload)
            self.hub.heartbeat(device.id)
            self._after_response(reg, observe=False)
            return _response(Code.BAD_REQUEST, str(e))
        try:
            await self.hub.ingest(device.id, records).asFuture(self._loop)
        except Exception:
            self.hub.metrics.inc("coap.ingest_errors", transport=self.transport_name)
            _log.failure("{transport}: journal refused an uplink of {device}",
                         transport=self.transport_name, device=device.id)
            return _response(Code.INTERNAL_SERVER_ERROR, "not stored; send again")
        self._after_response(reg, observe=False)
        return Message(code=Code.CHANGED)

    # -- notifications and read responses --------------------------------------------------

    def _on_value(self, device_id: str, path: Path, message: Message) -> None:
        """A notification or a read response: decode, hand to the model, ingest. Never
        raises."""
        try:
            self.table.heard(device_id, message.remote)
            self.hub.metrics.inc("coap.notifications", transport=self.transport_name)
            if self.queue.waiting(device_id):  # it is awake now: its window is open
                self.queue.wake(device_id)
            if device_id in self.ota.lapsed:
                self.ota.heard(device_id)
            if path[0] == 5 and self.ota.notified(device_id, path, message):
                return
            if not message.code.is_successful():
                _log.warn("{transport}: {device} answered {code} on {path}",
                          transport=self.transport_name, device=device_id,
                          code=code_text(message.code), path=_path_text(path))
                return
            self._ingest_values(device_id, path, message)
        except Exception:
            self.hub.metrics.inc("coap.internal_errors", transport=self.transport_name)
            _log.failure("{transport}: error handling a notification of {device} on {path}",
                         transport=self.transport_name, device=device_id, path=_path_text(path))

    def _ingest_values(self, device_id: str, path: Path, message: Message) -> None:
        device = self._device(device_id)
        if device is None or not _is_lwm2m(device.model):
            self.hub.heartbeat(device_id)
            return
        fmt = message.opt.content_format
        if fmt is None:  # CoAP's default; LwM2M 1.0 devices send TLV for anything bigger
            fmt = ContentFormat.TEXT if len(path) >= 3 else ContentFormat.LWM2M_TLV
        now = self.hub.clock.seconds()
        payload = message.payload
        try:
            if len(payload) > self.options.max_payload:
                raise DecodeError(f"payload of {len(payload)} bytes exceeds max_payload "
                                  f"{self.options.max_payload}", payload[:EXCERPT])
            values = content.decode(int(fmt), payload, path, now=now)
            records = device.model.decode_values(device_id, values, now)
        except DecodeError as e:
            self._bad_payload(device, f"{_path_text(path)} (format {int(fmt)})", e, payload)
            self.hub.heartbeat(device_id)
            return
        self._batch.append((device_id, records))
        self._batch_records += len(records)
        if self._batch_records >= INGEST_BATCH:
            self._flush_ingest()
        elif self._batch_call is None:
            self._batch_call = self.hub.clock.callLater(INGEST_DELAY, self._flush_ingest)

    def _flush_ingest(self) -> None:
        """Hand the waiting notifications' records to the core in one batch."""
        if self._batch_call is not None and self._batch_call.active():
            self._batch_call.cancel()
        self._batch_call = None
        batch, self._batch, self._batch_records = self._batch, [], 0
        if batch:
            self.hub.ingest_many(batch).addErrback(self._not_journaled, batch)

    def _not_journaled(self, failure: Any, batch: list[tuple[str, Any]]) -> None:
        devices = sorted({device for device, _ in batch})
        _log.failure("{transport}: journal refused values of {devices}", failure,
                     transport=self.transport_name, devices=", ".join(devices))

    def _bad_payload(self, device: Any, where: str, error: Exception, payload: bytes) -> None:
        self.hub.metrics.inc("coap.decode_errors", transport=self.transport_name,
                             model=device.model_name)
        excerpt = getattr(error, "excerpt", b"") or payload
        _log.warn("{transport}: bad payload from {device} on {where}: {error}; payload "
                  "{payload}", transport=self.transport_name, device=device.id, where=where,
                  error=error, payload=_hex(excerpt))

    def _on_observation_end(self, device: str, path: Path, reason: str) -> None:
        self.hub.metrics.inc("coap.observe_errors", transport=self.transport_name)
        self.ota.observation_ended(device, path, reason)
        _log.warn("{transport}: observation of {path} on {device} {reason}; renewed at its "
                  "next update", transport=self.transport_name, path=_path_text(path),
                  device=device, reason=reason)

    # -- commands --------------------------------------------------------------------------

    def send_command(self, device: Any, command: Command) -> defer.Deferred:
        """Encode ``command`` now (a command the model cannot express fails at once), then
        send it in the device's next window; the Deferred fires with its result."""
        try:
            if _is_lwm2m(device.model):
                work: Any = list(device.model.encode_operations(device.id, command))
            else:
                work = device.model.encode_command(device.id, command)
        except EncodeError as e:
            return defer.fail(e)
        try:
            d, waiting = self.queue.submit(device.id, command, work)
        except QueueFull as e:
            return defer.fail(e)
        if waiting and self.hub.command_waiting(command.id) \
                and not self._reachable(device.id):
            self.hub.metrics.inc("coap.commands_queued", transport=self.transport_name)
            self.hub.command_queued(command, "queued until the device's next message "
                                          "(it sleeps or was not heard from recently)")
            _log.info("{transport}: command {id} {action} for {device} queued ({n} waiting)",
                      transport=self.transport_name, id=command.id, action=command.action,
                      device=device.id, n=self.queue.waiting(device.id))
        return d

    def _requeued(self, item: Queued) -> None:
        """A sent command got no answer: it waits again, and the journal says so."""
        if isinstance(item.work, OtaWork):
            return  # a firmware step: the OTA history records the campaign's progress
        self.hub.metrics.inc("coap.commands_queued", transport=self.transport_name)
        self.hub.command_queued(item.command, "no answer: queued again until the "
                                      "device's next message", again=True)
        _log.info("{transport}: command {id} {action} for {device} got no answer; queued "
                  "for its next message (attempt {n} of {of})", transport=self.transport_name,
                  id=item.command.id, action=item.command.action, device=item.device,
                  n=item.attempts, of=self.options.attempts)

    def _reachable(self, device: str) -> bool:
        return self.running and self.context is not None and self.table.reachable(
            device, self.options.queue_window, self.options.recent_traffic)

    def _send(self, item: Queued) -> defer.Deferred:
        if isinstance(item.work, OtaWork):
            return self._deferred(self.ota.run(item))
        self.hub.command_sent(item.command)
        self.hub.metrics.inc("coap.commands_sent", transport=self.transport_name)
        return self._deferred(self._perform(item))

    async def _perform(self, item: Queued) -> CommandResult:
        reg = self.table.get(item.device)
        if reg is None or self.context is None:
            raise RuntimeError("no registration")  # not reachable: the queue never asks
        timeout = self.options.request_timeout
        if isinstance(item.work, bytes):
            response = await exchange(self.context, reg.remote, Code.POST,
                                      tuple(self.options.downlink_path), item.work,
                                      ContentFormat.OPAQUE, timeout)
            return self._result(item, response, "POST /" + "/".join(self.options.downlink_path))
        for op in item.work:
            code, payload, fmt = self._request_of(reg, op)
            response = await exchange(self.context, reg.remote, code, op.path, payload, fmt,
                                      timeout)
            self.table.heard(item.device, response.remote)
            if not response.code.is_successful():
                return self._result(item, response, f"{op.kind} {_path_text(op.path)}")
            if op.kind == "read":
                self._ingest_values(item.device, op.path, response)
        return CommandResult(item.command.id, item.command.device, CommandStatus.SUCCEEDED,
                             self.hub.clock.seconds())

    def _request_of(self, reg: Registration, op: Lwm2mOperation) -> tuple[Code, bytes,
                                                                          int | None]:
        if op.kind == "read":
            return Code.GET, b"", None
        if op.kind == "execute":
            arg = "" if op.value is None else str(op.value)
            return Code.POST, arg.encode("utf-8"), (ContentFormat.TEXT if arg else None)
        fmt = reg.preferred_format if reg.preferred_format in WRITE_FORMATS else (
            ContentFormat.SENML_JSON if reg.lwm2m != "1.0" and reg.preferred_format is not None
            else ContentFormat.LWM2M_TLV)
        value = Lwm2mValue(op.path, op.value)
        if len(op.path) == 3 and is_multiple(op.path):
            # a multiple resource (19/x/0 Data) takes its instances, never a bare value:
            # TLV 0x8_ around 0x4_, as Leshan and wakaama require; a Write on the resource
            # path replaces it with instance 0, which LwM2M 1.0 devices accept too (1.0
            # has no Write on a resource instance path)
            value = Lwm2mValue(op.path + (0,), op.value)
        payload = content.encode(int(fmt), [value], op.path)
        return Code.PUT, payload, int(fmt)

    def _result(self, item: Queued, response: Message, what: str) -> CommandResult:
        ok = response.code.is_successful()
        detail = "" if ok else f"{what}: the device answered {code_text(response.code)}"
        return CommandResult(item.command.id, item.command.device,
                             CommandStatus.SUCCEEDED if ok else CommandStatus.FAILED,
                             self.hub.clock.seconds(), detail)

    def _device(self, device_id: str) -> Any:
        return self.hub.device(device_id)


_LWM2M_TYPES: dict[type, bool] = {}


def _is_lwm2m(model: Any) -> bool:
    """``isinstance(model, Lwm2mModel)``, once per model class: a runtime-checkable
    Protocol's isinstance walks its attributes (tens of µs) and this runs per message."""
    cls = type(model)
    known = _LWM2M_TYPES.get(cls)
    if known is None:
        known = _LWM2M_TYPES[cls] = isinstance(model, Lwm2mModel)
    return known


def _bound_port(ctx: aiocoap.Context) -> int:
    # aiocoap offers no handle on a context's socket (see _grow_receive_buffer)
    mi = ctx.request_interfaces[0].token_interface.message_interface
    return int(mi.transport.get_extra_info("socket").getsockname()[1])


def _host(remote: Any) -> str:
    try:
        return remote.hostinfo
    except Exception:  # noqa: BLE001 - only for display
        return str(remote)


def _remote(request: Message) -> str:
    remote = request.remote
    try:
        return remote.hostinfo
    except Exception:  # noqa: BLE001 - only for a log line
        return str(remote)
