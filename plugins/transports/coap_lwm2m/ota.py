"""Firmware delivery over LwM2M object 5 for :mod:`hub.ota`: the image served block-wise at
a CoAP URI (pull), the Block1 write of /5/0/0 (push), and the other steps of a
:class:`hub.ota.machine.DeviceUpdate`, each waiting in the device's downlink queue like a
command (queue mode: it goes out in the device's next window, within the step's time to
live).

**Pull** serves ``GET /<firmware_path>/<token>`` with Block2 statelessly: every block is cut
from the image by its number, so a device that slept in the middle asks for block *n* hours
later and gets it (aiocoap's own Block2 cache forgets a response after about 90 s and would
answer 4.08). The response carries an ETag (the image's SHA-256, first 8 bytes) and Size2.

**Push** writes /5/0/0 one Block1 block per request and remembers the next block per device:
a device that stops answering mid-transfer gets the rest, from that block on, in its next
window (the step is queued again, up to the transport's ``attempts``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import aiocoap
from aiocoap import Code, Message
from aiocoap.optiontypes import BlockOption
from twisted.logger import Logger

from hub.contracts import DecodeError
from hub.contracts.lwm2m import ContentFormat, Lwm2mOperation, Path
from hub.model import Command, CommandResult, CommandStatus

from . import content
from .coap import answer, code_text, deadline, uri_path
from .downlink_queue import NoAnswer, Queued, QueueFull

if TYPE_CHECKING:
    from hub.ota.machine import DeviceUpdate, Step

    from .service import Lwm2mService

_log = Logger(namespace="hub.coap_lwm2m")

STATE, RESULT, VERSION = (5, 0, 3), (5, 0, 5), (3, 0, 3)
OBSERVED: tuple[Path, ...] = (STATE, RESULT)
#: renewals of a device's lapsed /5/0/3 and /5/0/5 observations per update at most: a
#: device that fetches blocks but drops every observation is not asked again at each block,
#: and each renewal holds the device's one exchange slot (NSTART = 1) while it is set up
MAX_RENEWALS = 3


class OtaWork:
    """One machine step in a device's downlink queue."""

    __slots__ = ("step", "update", "value")

    def __init__(self, update: DeviceUpdate, step: Step) -> None:
        self.update = update
        self.step = step
        self.value: Any = None


class FirmwareDriver:
    """The ``ota`` of one ``coap_lwm2m`` transport (see :class:`hub.ota.manager.FirmwareDriver`)."""

    def __init__(self, service: Lwm2mService) -> None:
        self.service = service
        opts = service.options
        self.path = tuple(opts.firmware_path)
        self.base_uri = opts.firmware_uri or _default_base(opts.host, opts.port)
        self.block_szx = opts.firmware_block.bit_length() - 5  # 16 → 0 ... 1024 → 6
        self._images: dict[str, tuple[bytes, bytes]] = {}  # token → (image, etag)
        self._by_sha: dict[str, bytes] = {}
        self._updates: dict[str, DeviceUpdate] = {}
        self._push_next: dict[tuple[str, str], int] = {}  # (device, sha256) → next block
        self._pending: dict[str, Any] = {}  # device → (Deferred, kind) of the queued step
        #: devices whose OTA observations ended other than by a refusal, to renew at their
        #: next sign of life; and the renewals so far per device
        self.lapsed: set[str] = set()
        self._renewals: dict[str, int] = {}
        self.blocks_served = 0
        self.bytes_served = 0

    # -- the manager's side ------------------------------------------------------------------

    def serving_on(self, port: int) -> None:
        """Images are served on a socket of their own at ``port`` (``firmware_port``)."""
        opts = self.service.options
        if not opts.firmware_uri:
            self.base_uri = _default_base(opts.host, port)

    def publish(self, sha256: str, image: bytes) -> str:
        token = sha256[:16]
        self._images[token] = (image, bytes.fromhex(sha256[:16]))
        self._by_sha[sha256] = image
        return f"{self.base_uri}/{'/'.join(self.path)}/{token}"

    def attach(self, device: str, update: DeviceUpdate) -> None:
        self._updates[device] = update
        svc = self.service
        reg = svc.table.get(device)
        # only a device listening now: a request to a sleeping one would hold its one
        # exchange slot (CoAP's NSTART = 1) until it timed out, and the update's first step
        # would wait behind it; a sleeping device is observed at its next Update instead
        if reg is not None and reg.remote is not None and svc.context is not None \
                and svc._reachable(device):
            svc.observations.add(svc.context, svc._loop, device, reg.remote, list(OBSERVED))

    def detach(self, device: str) -> None:
        update = self._updates.pop(device, None)
        self.lapsed.discard(device)
        self._renewals.pop(device, None)
        pending = self._pending.pop(device, None)
        if pending is not None and not pending[0].called and pending[1] != "reset":
            pending[0].cancel()  # a cancelled update's reset still goes out
        if update is not None:
            sha = getattr(update, "image_sha256", "")
            self._push_next.pop((device, sha), None)

    def attached(self, device: str) -> bool:
        return device in self._updates

    def perform(self, device: str, update: DeviceUpdate, step: Step) -> None:
        svc = self.service
        now = svc.hub.clock.seconds()
        command = Command(f"ota-{device}-{step.id}", device, f"ota_{step.kind}", now,
                          ttl=step.ttl, requested_by="ota")
        work = OtaWork(update, step)
        try:
            d, _ = svc.queue.submit(device, command, work)
        except QueueFull as e:
            update.step_done(step.id, "timed_out", detail=str(e))
            return
        self._pending[device] = (d, step.kind)

        def done(result: CommandResult) -> None:
            if self._pending.get(device, (None,))[0] is d:
                del self._pending[device]
            outcome = {CommandStatus.SUCCEEDED: "ok", CommandStatus.FAILED: "failed"}.get(
                result.status, "timed_out")
            update.step_done(step.id, outcome, work.value, result.detail)  # type: ignore[arg-type]

        d.addCallbacks(done, lambda f: None)

    # -- the transport's side ----------------------------------------------------------------

    def observation_ended(self, device: str, path: Path, reason: str) -> None:
        """An observation ended (not cancelled). One of /5/0/3 or /5/0/5 that the device
        did not refuse is observed again at the device's next sign of life (a block it
        fetches, a notification, a step in its window), not at its next Update: a request
        that went unanswered makes aiocoap end every exchange with the device, these
        observations too, and a device then finishing its download unobserved would
        leave the update waiting for a state it never hears. Never at once: the device
        did not answer, and asking again now would hold its exchange slot, before the
        update's own next step, for another request that times out."""
        if path not in OBSERVED or device not in self._updates or reason.startswith(
                ("refused", "not observable")):
            return
        self.lapsed.add(device)

    def heard(self, device: str) -> None:
        """A sign of life from ``device``: its lapsed OTA observations are renewed."""
        if device not in self.lapsed:
            return
        self.lapsed.discard(device)
        svc = self.service
        n = self._renewals.get(device, 0)
        reg = svc.table.get(device)
        if n >= MAX_RENEWALS or device not in self._updates or reg is None \
                or reg.remote is None or svc.context is None:
            return
        self._renewals[device] = n + 1
        svc.observations.add(svc.context, svc._loop, device, reg.remote, list(OBSERVED))
        svc.hub.metrics.inc("ota.observations_renewed", transport=svc.transport_name)
        _log.info("{transport}: observing /5/0/3 and /5/0/5 on {device} again (renewal {n})",
                  transport=svc.transport_name, device=device, n=n + 1)

    def extra_paths(self, device: str) -> list[Path]:
        """What an attached device has observed besides its model's paths."""
        return list(OBSERVED) if device in self._updates else []

    def is_firmware_request(self, request: Message) -> bool:
        p = tuple(request.opt.uri_path)
        return len(p) == len(self.path) + 1 and p[:len(self.path)] == self.path

    def serve(self, request: Message) -> Message:
        """One block of a published image (stateless Block2)."""
        if request.code != Code.GET:
            return Message(code=Code.METHOD_NOT_ALLOWED)
        found = self._images.get(request.opt.uri_path[-1])
        if found is None:
            return Message(code=Code.NOT_FOUND)
        if self.lapsed:
            device = self.service.table.device_at(request.remote)
            if device is not None:
                self.heard(device)
        image, etag = found
        want = request.opt.block2
        szx = min(want.size_exponent, self.block_szx) if want is not None else self.block_szx
        num = want.block_number if want is not None else 0
        if want is not None and want.size_exponent > szx:
            # the client asked for bigger blocks: the same bytes in our size (RFC 7959 2.4)
            num = num * (1 << (want.size_exponent - szx))
        size = 1 << (szx + 4)
        start = num * size
        if start >= len(image) and not (start == 0 and not image):
            return Message(code=Code.BAD_OPTION, payload=b"block beyond the image")
        chunk = image[start:start + size]
        more = start + size < len(image)
        msg = Message(code=Code.CONTENT, payload=chunk)
        msg.opt.content_format = ContentFormat.OPAQUE
        msg.opt.block2 = BlockOption.BlockwiseTuple(num, more, szx)
        msg.opt.size2 = len(image)
        msg.opt.etag = etag
        self.blocks_served += 1
        self.bytes_served += len(chunk)
        self.service.hub.metrics.inc("ota.blocks_served", transport=self.service.transport_name)
        return msg

    def notified(self, device: str, path: Path, message: Message) -> bool:
        """A notification (or read answer) of /5/0/3 or /5/0/5: to the device's update.
        True when it was one of these (the model does not see it)."""
        if path not in OBSERVED:
            return False
        update = self._updates.get(device)
        if update is None or not message.code.is_successful():
            return True
        value = _int_value(message, path)
        if value is not None:
            if path == STATE:
                update.reported(state=value)
            else:
                update.reported(result=value)
        return True

    async def run(self, item: Queued) -> CommandResult:
        """Perform one step (the service's queue calls this in the device's window)."""
        work: OtaWork = item.work
        svc = self.service
        reg = svc.table.get(item.device)
        if reg is None or svc.context is None:
            raise NoAnswer("not registered")
        self.heard(item.device)
        ctx, remote, timeout = svc.context, reg.remote, svc.options.request_timeout
        kind = work.step.kind

        def ok(detail: str = "") -> CommandResult:
            return CommandResult(item.command.id, item.device, CommandStatus.SUCCEEDED,
                                 svc.hub.clock.seconds(), detail)

        def refused(what: str, response: Message) -> CommandResult:
            return CommandResult(item.command.id, item.device, CommandStatus.FAILED,
                                 svc.hub.clock.seconds(),
                                 f"{what}: the device answered {code_text(response.code)}")

        if kind in ("read_version", "read_status"):
            values = []
            for path in ((VERSION,) if kind == "read_version" else OBSERVED):
                resp = await _request(ctx, remote, Code.GET, path, timeout=timeout)
                svc.table.heard(item.device, resp.remote)
                if not resp.code.is_successful():
                    return refused(f"read /{'/'.join(uri_path(path))}", resp)
                values.append(_text_value(resp, path) if path == VERSION
                              else _int_value(resp, path))
            work.value = values[0] if kind == "read_version" else tuple(values)
            return ok()
        if kind == "execute":
            resp = await _request(ctx, remote, Code.POST, (5, 0, 2), timeout=timeout)
            return ok() if resp.code.is_successful() else refused("execute /5/0/2", resp)
        if kind in ("reset", "write_uri"):
            if kind == "reset" and work.update.method == "push":
                resp = await _request(ctx, remote, Code.PUT, (5, 0, 0), b"",
                                      ContentFormat.OPAQUE, timeout)
            else:
                value = "" if kind == "reset" else str(work.step.value)
                code, payload, fmt = svc._request_of(reg, Lwm2mOperation("write", (5, 0, 1),
                                                                         value))
                resp = await _request(ctx, remote, code, (5, 0, 1), payload, fmt, timeout)
            svc.table.heard(item.device, resp.remote)
            return ok() if resp.code.is_successful() else refused(f"{kind} /5/0/1", resp)
        if kind == "push":
            return await self._push(item, ctx, remote, timeout, ok, refused)
        raise ValueError(f"unknown OTA step {kind}")

    async def _push(self, item: Queued, ctx: Any, remote: Any, timeout: float,
                    ok: Any, refused: Any) -> CommandResult:
        work: OtaWork = item.work
        sha = getattr(work.update, "image_sha256", "")
        image = self._by_sha.get(sha)
        if image is None:
            raise RuntimeError("the image is not published")
        szx = self.block_szx
        size = 1 << (szx + 4)
        key = (item.device, sha)
        num = self._push_next.get(key, 0)
        total = max(1, -(-len(image) // size))
        while num < total:
            chunk = image[num * size:(num + 1) * size]
            more = num + 1 < total
            msg = Message(code=Code.PUT, uri_path=uri_path((5, 0, 0)), payload=chunk)
            msg.opt.content_format = ContentFormat.OPAQUE
            msg.opt.block1 = BlockOption.BlockwiseTuple(num, more, szx)
            if num == 0:
                msg.opt.size1 = len(image)
            msg.remote = remote
            msg.transport_tuning = deadline(timeout)
            resp = await _await(ctx.request(msg, handle_blockwise=False).response, timeout,
                                f"block {num} of /5/0/0")
            self.service.table.heard(item.device, resp.remote)
            if not resp.code.is_successful():
                self._push_next.pop(key, None)
                return refused(f"block {num} of {total} to /5/0/0", resp)
            got = resp.opt.block1
            if got is not None and got.size_exponent < szx and num == 0:
                szx, size = got.size_exponent, 1 << (got.size_exponent + 4)  # it wants less
                total = max(1, -(-len(image) // size))
            num += 1
            self._push_next[key] = num
            self.service.hub.metrics.inc("ota.blocks_pushed",
                                         transport=self.service.transport_name)
        self._push_next.pop(key, None)
        return ok(f"{total} blocks written")


async def _request(ctx: aiocoap.Context, remote: Any, code: Code, path: Path,
                   payload: bytes = b"", content_format: int | None = None,
                   timeout: float = 20.0) -> Message:
    msg = Message(code=code, uri_path=uri_path(path), payload=payload)
    if content_format is not None:
        msg.opt.content_format = content_format
    msg.remote = remote
    msg.transport_tuning = deadline(timeout)
    return await _await(ctx.request(msg).response, timeout,
                        f"{code} /{'/'.join(uri_path(path))}")


async def _await(response: Any, timeout: float, what: str) -> Message:
    try:
        return await answer(response, timeout)
    except (TimeoutError, aiocoap.error.TimeoutError) as e:
        raise NoAnswer(f"no answer to {what} within {timeout:g} s") from e
    except aiocoap.error.NetworkError as e:
        raise NoAnswer(f"{what}: {e}") from e


def _values(message: Message, path: Path) -> list[Any]:
    fmt = message.opt.content_format
    if fmt is None:
        fmt = ContentFormat.TEXT
    try:
        return [v.value for v in content.decode(int(fmt), message.payload, path)
                if v.path[:3] == path]
    except DecodeError:
        return []


def _int_value(message: Message, path: Path) -> int | None:
    for v in _values(message, path):
        if isinstance(v, bool):
            return int(v)
        if isinstance(v, int):
            return v
        if isinstance(v, float) and v.is_integer():
            return int(v)
        if isinstance(v, bytes) and 1 <= len(v) <= 8:
            return int.from_bytes(v, "big", signed=True)
        if isinstance(v, str) and v.strip().isdigit():
            return int(v)
    return None


def _text_value(message: Message, path: Path) -> str | None:
    for v in _values(message, path):
        if isinstance(v, bytes):
            return v.decode("utf-8", "replace")
        if v is not None:
            return str(v)
    return None


def _default_base(host: str, port: int) -> str:
    if host in ("::", "0.0.0.0", ""):
        host = "127.0.0.1"
    return f"coap://{f'[{host}]' if ':' in host else host}:{port}"
