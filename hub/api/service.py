"""The API as a Twisted service: uvicorn serves it on the reactor's own asyncio loop.

``uvicorn.Server.serve()`` runs as an asyncio task on the loop Twisted's asyncio reactor
drives; there is no second process and no thread for HTTP. Signals stay Twisted's: the
server installs no handlers (SIGINT/SIGTERM stop the reactor, which stops this service,
which asks uvicorn to finish its requests and close). The socket is bound here, before
uvicorn starts, so the port (0 in tests: any free one) is known at once and a port in use
fails the hub's start with a clear error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import uvicorn
from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger

from hub.alarmdesk.desk import AlarmDesk
from hub.api.app import create_app
from hub.api.context import ApiContext
from hub.api.live import load_stored
from hub.api.settings import ApiSettings
from hub.ota.manager import OtaManager
from hub.store.health import StoreHealth
from hub.store.settings import open_store

if TYPE_CHECKING:
    from hub.core import Hub

_log = Logger(namespace="hub.api")

START_TIMEOUT = 10.0
LAG_PROBE = 0.02  # s between looks at the loop's lateness


async def probe_loop_lag(observe: Callable[[float], None], interval: float = LAG_PROBE) -> None:
    """Observe how late the loop wakes a sleeper, forever (a long callback shows as lag)."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + interval
        await asyncio.sleep(interval)
        observe(max(0.0, loop.time() - due))


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # Twisted owns the signals
        yield


class ApiService(Service):
    name = "api"

    def __init__(self, hub: Hub, settings: ApiSettings) -> None:
        self.hub = hub
        self.settings = settings
        # devices created through the API join the registry before any transport starts
        health = StoreHealth(hub) if settings.store.backend != "sqlite" else None
        self.store = open_store(settings.store, on_health=health)
        _log.info("platform store: {store}", store=settings.store.describe())
        self._problems = load_stored(hub, self.store.devices())
        self.desk = getattr(hub, "desk_factory", AlarmDesk)(hub, self.store, settings.notify)
        self.ctx: ApiContext | None = None
        self.server: _Server | None = None
        self.port: int | None = None
        self._task: asyncio.Task | None = None
        self.reports: Any = None
        self._probe: asyncio.Task | None = None

    @property
    def url(self) -> str:
        host = self.settings.host
        if ":" in host:
            host = f"[{host}]"
        return f"{self.settings.scheme}://{host}:{self.port}/"

    def _loop(self) -> asyncio.AbstractEventLoop:
        # the asyncio reactor's loop: the one that runs while the reactor runs
        return getattr(self.hub.clock, "_asyncioEventloop", None) or asyncio.get_event_loop()

    def startService(self) -> defer.Deferred:
        return defer.Deferred.fromFuture(self._loop().create_task(self._start()))

    async def _start(self) -> None:
        s = self.settings
        for problem in self._problems:
            _log.warn("{problem}; it does not run until fixed", problem=problem)
        self.ctx = ApiContext(self.hub, s, self.store)
        self.ctx.desk = self.desk
        # firmware campaigns; taken up once the transports run (their drivers carry them)
        self.ctx.ota = OtaManager(self.hub, self.store, s.ota, self.hub.config.state_dir)
        self.hub.ota = self.ctx.ota  # `hub ota` reaches it through the admin socket
        self.hub.clock.callLater(0, self.ctx.ota.start)
        family = socket.AF_INET6 if ":" in s.host else socket.AF_INET
        # proto given explicitly: asyncio turns Nagle off (TCP_NODELAY) only on sockets that
        # say IPPROTO_TCP, and with Nagle on every keep-alive answer waits ~40 ms for the
        # client's delayed ACK
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((s.host, s.port))
            sock.listen(1024)
            sock.setblocking(False)
        except OSError as e:
            sock.close()
            self.store.close()
            raise RuntimeError(f"API cannot listen on {s.host}:{s.port}: {e.strerror}") from None
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            create_app(self.ctx), lifespan="off", log_config=None, access_log=False,
            server_header=False, proxy_headers=False, timeout_graceful_shutdown=5,
            ssl_certfile=s.tls_cert, ssl_keyfile=s.tls_key, ws="none")
        # uvicorn logs through stdlib logging; the hub logs through Twisted (which
        # observes stdlib's root logger): keep its chatter at warnings
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
        self.server = _Server(config)
        self._task = asyncio.ensure_future(self.server.serve(sockets=[sock]))
        waited = 0.0
        while not self.server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise RuntimeError("the API server stopped while starting")
            if waited > START_TIMEOUT:
                raise RuntimeError("the API server did not start in time")
            await asyncio.sleep(0.01)
            waited += 0.01
        await self.ctx.device_index()  # built now, not by the first requests
        self._probe = asyncio.ensure_future(probe_loop_lag(self.ctx.exporter.loop_lag.observe))
        self.desk.startService()
        from hub.api.routes_reports import start_scheduler  # scheduled reports
        self.reports = start_scheduler(self.ctx, self.url)
        Service.startService(self)
        _log.info("API listening on {url} (docs {url}api/docs)", url=self.url)
        if self.store.count_users() == 0:
            _log.info("no users yet: hub users add --role admin NAME (with -c {config})",
                      config=self.hub.config.file)

    def stopService(self) -> defer.Deferred:
        Service.stopService(self)
        return defer.Deferred.fromFuture(self._loop().create_task(self._stop()))

    async def _stop(self) -> None:
        if self.ctx is not None and self.ctx.ota is not None:
            await self.ctx.ota.stop().asFuture(asyncio.get_running_loop())
        if self.reports is not None:
            self.reports.stopService()
        if self._probe is not None:
            self._probe.cancel()
        if self.ctx is not None and self.ctx.feed is not None:
            await self.ctx.feed.stop()  # open streams end, so uvicorn need not wait for them
        if self.server is not None and self._task is not None:
            self.server.should_exit = True
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 10)
            except TimeoutError:
                self.server.force_exit = True
                await self._task
        if self.ctx is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.ctx.close)
        if self.desk.running:
            await self.desk.stopService().asFuture(asyncio.get_running_loop())
        self.store.close()
