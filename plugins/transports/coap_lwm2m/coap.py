"""The aiocoap side of the transport: the server's one resource, requests to devices with a
deadline, and observations. asyncio stays inside this module and :mod:`.service`; the rest of
the package is sans-IO.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiocoap
from aiocoap import Code, Message
from aiocoap.numbers.constants import TransportTuning
from aiocoap.resource import Resource
from twisted.logger import Logger

from hub.contracts.lwm2m import Path

from .downlink_queue import NoAnswer

_log = Logger(namespace="hub.coap_lwm2m")

#: RegistrationError codes → CoAP response codes
CODES = {
    "bad_request": Code.BAD_REQUEST,
    "forbidden": Code.FORBIDDEN,
    "not_found": Code.NOT_FOUND,
    "precondition_failed": Code.PRECONDITION_FAILED,
    "too_large": Code.REQUEST_ENTITY_TOO_LARGE,
    "internal": Code.INTERNAL_SERVER_ERROR,
}


def uri_path(path: Path) -> tuple[str, ...]:
    return tuple(str(p) for p in path)


def code_text(code: Any) -> str:
    """``4.04 Not Found``."""
    return f"{code.dotted} {code.name_printable}" if hasattr(code, "dotted") else str(code)


class Root(Resource):
    """The server's only resource: every request goes to ``handler`` (the transport), which
    routes by path itself (``/rd``, ``/rd/<id>``, the uplink path) and returns the response."""

    def __init__(self, handler: Callable[[Message], Awaitable[Message]],
                 raw: Callable[[Message], bool] = lambda request: False) -> None:
        super().__init__()
        self._handler = handler
        self._raw = raw

    async def needs_blockwise_assembly(self, request: Message) -> bool:
        # firmware images are cut into blocks by the handler itself, statelessly, so a
        # download resumes after hours (aiocoap's cache forgets within minutes)
        return not self._raw(request)

    async def render(self, request: Message) -> Message:
        return await self._handler(request)


class Deadline(TransportTuning):
    """Retransmissions that end within a request's ``timeout``.

    aiocoap keeps retransmitting a confirmable request after its caller stopped waiting
    (it has no way to withdraw one) for up to ~93 s (RFC 7252's MAX_TRANSMIT_WAIT), and
    sends nothing else to that peer meanwhile (NSTART = 1): every later request queues
    behind it. A queue-mode device that went back to sleep during a request thus had its
    next window's requests (the OTA step after the download, the read of /3/0/3) held for
    a minute and a half each, timing out here one after another while each added one more
    message to aiocoap's backlog. With two transmissions spread over ``timeout`` the
    exchange ends when the caller gives up, and the next request goes out at once.
    """

    MAX_RETRANSMIT = 1

    def __init__(self, timeout: float) -> None:
        # the exchange lasts at most ACK_TIMEOUT * ACK_RANDOM_FACTOR * (2 ** (R + 1) - 1)
        self.ACK_TIMEOUT = timeout / (self.ACK_RANDOM_FACTOR * (2 ** (self.MAX_RETRANSMIT + 1)
                                                                - 1))


_deadlines: dict[float, Deadline] = {}


def deadline(timeout: float) -> Deadline:
    """The (shared) :class:`Deadline` of ``timeout``."""
    found = _deadlines.get(timeout)
    if found is None:
        found = _deadlines[timeout] = Deadline(timeout)
    return found


async def answer(response: asyncio.Future, timeout: float) -> Message:
    """``response`` within ``timeout``, without cancelling it: aiocoap sets a result or
    an error on it later (a late answer, the retransmissions running out) and raises
    InvalidStateError into the loop when the future was cancelled meanwhile."""
    response.add_done_callback(_retrieve)
    return await asyncio.wait_for(asyncio.shield(response), timeout)


def _retrieve(f: asyncio.Future) -> None:
    if not f.cancelled():
        f.exception()  # an abandoned request's error is expected: not "never retrieved"


async def exchange(ctx: aiocoap.Context, remote: Any, code: Code, path: Path,
                   payload: bytes = b"", content_format: int | None = None,
                   timeout: float = 20.0) -> Message:
    """One request to a device at ``remote`` (the address of its latest message, so the
    answer passes its NAT); its response, whatever the code. Raises :class:`NoAnswer` when
    nothing came back within ``timeout`` (the device went back to sleep)."""
    msg = Message(code=code, uri_path=uri_path(path), payload=payload)
    if content_format is not None:
        msg.opt.content_format = content_format
    msg.remote = remote
    msg.transport_tuning = deadline(timeout)
    request = ctx.request(msg)
    try:
        return await answer(request.response, timeout)
    except (TimeoutError, aiocoap.error.TimeoutError) as e:
        raise NoAnswer(f"no answer to {code} /{'/'.join(uri_path(path))} within "
                       f"{timeout:g} s") from e
    except aiocoap.error.NetworkError as e:
        raise NoAnswer(f"{code} /{'/'.join(uri_path(path))}: {e}") from e


class Observations:
    """The hub's observations of each device, one asyncio task per observed path.

    ``on_value(device, path, message)`` gets the first response and every notification;
    ``on_end(device, path, reason)`` is told when an observation ends other than by
    :meth:`cancel` (the device refused it, reset it or went silent); the next Update or
    Register starts it again.
    """

    def __init__(self, on_value: Callable[[str, Path, Message], None],
                 on_end: Callable[[str, Path, str], None], timeout: float,
                 max_setups: int = 256) -> None:
        self._on_value = on_value
        self._on_end = on_end
        self._timeout = timeout
        self._tasks: dict[str, dict[Path, asyncio.Task]] = {}
        # Observations being set up at once. A burst of registrations (every device of a
        # site after a power cut) would otherwise start thousands of exchanges together;
        # they then time out in the socket queues and are retried, and the registrations
        # themselves wait behind them. Queued set-ups cost nothing but a waiting task.
        self._max_setups = max_setups
        self._setups: asyncio.Semaphore | None = None
        # A device's set-ups queue here, outside the semaphore: aiocoap sends one request
        # at a time to a peer (NSTART = 1), so the 15 set-ups of one device held 15 slots
        # while 14 waited, and 256 slots kept one exchange in flight for each of 17
        # devices. One slot per device keeps 256 devices going.
        self._device_turn: dict[str, asyncio.Lock] = {}

    def count(self) -> int:
        return sum(len(t) for t in self._tasks.values())

    def observed(self, device: str) -> list[Path]:
        return list(self._tasks.get(device, ()))

    def start(self, ctx: aiocoap.Context, loop: asyncio.AbstractEventLoop, device: str,
              remote: Any, paths: list[Path]) -> None:
        """Observe ``paths`` of ``device`` at ``remote``, replacing its observations."""
        self.cancel(device)
        tasks = self._tasks[device] = {}
        for path in paths:
            tasks[path] = loop.create_task(self._run(ctx, device, remote, path))

    def add(self, ctx: aiocoap.Context, loop: asyncio.AbstractEventLoop, device: str,
            remote: Any, paths: list[Path]) -> None:
        """Observe ``paths`` of ``device`` besides those observed already (an observation
        that ended is started again; a live one is left alone)."""
        tasks = self._tasks.setdefault(device, {})
        for path in paths:
            if path not in tasks:
                tasks[path] = loop.create_task(self._run(ctx, device, remote, path))

    def cancel(self, device: str) -> None:
        for task in self._tasks.pop(device, {}).values():
            task.cancel()
        self._device_turn.pop(device, None)

    def cancel_all(self) -> None:
        for device in list(self._tasks):
            self.cancel(device)

    async def _run(self, ctx: aiocoap.Context, device: str, remote: Any, path: Path) -> None:
        if self._setups is None:
            self._setups = asyncio.Semaphore(self._max_setups)
        setups = self._setups
        observation = None
        reason = "ended"
        turn = self._device_turn.get(device)
        if turn is None:
            turn = self._device_turn[device] = asyncio.Lock()
        try:
            async with turn, setups:
                msg = Message(code=Code.GET, uri_path=uri_path(path), observe=0)
                msg.remote = remote
                msg.transport_tuning = deadline(self._timeout)
                request = ctx.request(msg)
                # held here: aiocoap keeps only a weak reference
                observation = request.observation
                # cancelled on a timeout, not shielded: aiocoap then drops the request's
                # runner; a shielded one would later report the end of an observation
                # cancelled meanwhile, which aiocoap raises as a RuntimeError
                first = await asyncio.wait_for(request.response, self._timeout)
            self._on_value(device, path, first)
            if not first.code.is_successful():
                reason = f"refused with {code_text(first.code)}"
                return
            if first.opt.observe is None or observation is None:
                reason = "not observable (read once)"
                return
            async for note in observation:
                self._on_value(device, path, note)
        except asyncio.CancelledError:
            reason = ""
            raise
        except (TimeoutError, aiocoap.error.TimeoutError):
            reason = f"no answer within {self._timeout:g} s"
        except aiocoap.error.Error as e:
            reason = f"{type(e).__name__}: {e}"
        finally:
            if observation is not None and not observation.cancelled:
                observation.cancel()
            tasks = self._tasks.get(device)
            if reason and tasks is not None and tasks.get(path) is asyncio.current_task():
                del tasks[path]
                if not tasks:
                    del self._tasks[device]
            if reason:
                self._on_end(device, path, reason)
