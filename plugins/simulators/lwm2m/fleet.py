"""Many simulated endpoints in one process, and the load loop the benchmark uses to find
the ceiling of a bare aiocoap server with the same client machinery."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict

from aiocoap import Code, Message

from plugins.simulators.lwm2m.endpoint import (
    Endpoint,
    EndpointOptions,
    Stats,
    describe,
    open_context,
)
from plugins.simulators.lwm2m.firmware import Behaviour
from plugins.simulators.lwm2m.objects import SimDevice
from plugins.simulators.scenario import Scenario

__all__ = ["IMEI_BASE", "Fleet", "flood", "imeis"]

IMEI_BASE = 861234567890000


def imeis(base: int, count: int) -> list[str]:
    """``count`` 15-digit IMEIs from ``base``."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if not (10**14 <= base and base + count - 1 < 10**15):
        raise ValueError(f"IMEIs {base}..{base + count - 1} are not all 15 digits")
    return [str(base + i) for i in range(count)]


class Fleet:
    """The endpoints of one process. ``scenario`` gives each IMEI its scenario."""

    def __init__(self, options: EndpointOptions, ids: Sequence[str],
                 scenario: Callable[[str], Scenario], *, ramp: float = 200.0,
                 concurrency: int = 64) -> None:
        self.options = options
        self.stats = Stats()
        self.ramp = ramp  # registrations started per second
        # outstanding registrations at most: a burst beyond the server's socket buffer is
        # dropped and retried only after CoAP's 2-3 s retransmission timeout
        self.slots = asyncio.Semaphore(concurrency)
        n = len(ids)
        self.endpoints = [
            Endpoint(SimDevice(i, scenario(i), lifetime=options.lifetime, queue=options.queue),
                     options, self.stats, offset=options.interval * k / n)
            for k, i in enumerate(ids)]
        for ep in self.endpoints:
            ep.register_slots = self.slots
        self._tasks: list[asyncio.Task] = []

    def set_firmware(self, version: str, behaviours: Sequence[Behaviour]) -> None:
        """The firmware version each endpoint starts with, and how each treats an update."""
        for ep, behaviour in zip(self.endpoints, behaviours, strict=True):
            ep.device.firmware.version = version
            ep.device.firmware.behaviour = behaviour

    async def open(self) -> None:
        """Bind every endpoint's socket (before the clock of a measured start runs)."""
        for ep in self.endpoints:
            await ep.open()

    async def start(self) -> None:
        """Start every endpoint, ``ramp`` per second."""
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for k, ep in enumerate(self.endpoints):
            delay = t0 + k / self.ramp - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self._tasks.append(asyncio.create_task(ep.run(), name=ep.device.endpoint))

    def status_line(self) -> str:
        return describe(self.stats, len(self.endpoints))

    def summary(self) -> dict:
        return {**asdict(self.stats), "endpoints": len(self.endpoints)}

    async def stop(self, timeout: float = 10.0) -> None:
        """De-register every endpoint (within ``timeout``) and close the sockets."""
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        stops = [asyncio.create_task(ep.stop()) for ep in self.endpoints]
        done, pending = await asyncio.wait(stops, timeout=timeout)
        for t in pending:
            t.cancel()
        await asyncio.gather(*stops, return_exceptions=True)
        for ep in self.endpoints:
            with contextlib.suppress(Exception):
                await ep.close()


async def flood(target: tuple[str, int], contexts: int, duration: float, warmup: float = 1.0,
                bind_host: str = "127.0.0.1", payload: bytes = b"") -> dict:
    """``contexts`` aiocoap contexts, made as endpoints make theirs, each sending CON POSTs
    to ``coap://target/n`` back to back for ``duration`` s; counts the answers received
    after ``warmup`` s. One request in flight per context, as CoAP's NSTART = 1 asks."""
    host, port = target
    uri = f"coap://{host}:{port}/n"
    ctxs = [await open_context(None, bind_host) for _ in range(contexts)]
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    start, end = t0 + warmup, t0 + warmup + duration
    counts = {"answered": 0, "failed": 0}

    async def one(ctx) -> None:
        remote = None
        while (now := loop.time()) < end:
            msg = Message(code=Code.POST, uri=uri, payload=payload)
            if remote is not None:
                # the answer's address: resolving the URI each time costs aiocoap a
                # getaddrinfo in a thread, more than the request itself
                msg.remote = remote
            try:
                resp = await ctx.request(msg).response
                ok = resp.code.is_successful()
                remote = resp.remote
            except Exception:
                ok = False
            if loop.time() >= start and now >= start:
                counts["answered" if ok else "failed"] += 1

    wall0, cpu0 = time.time(), time.process_time()
    await asyncio.gather(*(one(c) for c in ctxs))
    cpu = time.process_time() - cpu0
    for c in ctxs:
        await c.shutdown()
    return {**counts, "window_s": duration, "wall_start": wall0 + warmup, "cpu_s": cpu}
