"""What the routes share: the hub, the platform store, a journal reader off the loop, the
organisation tree, login throttles and the commands started through the API."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from hub.api.authz import Tree
from hub.api.schemas import CommandOut
from hub.api.security import FailureCounter, Throttle
from hub.api.settings import ApiSettings
from hub.store import PlatformStore

if TYPE_CHECKING:
    from hub.core import Hub
    from hub.journal import Journal

T = TypeVar("T")

#: commands started through the API whose lifecycle stays readable from memory
MAX_TRACKED_COMMANDS = 10_000
#: how long a token's caller is known without asking the store again (s): a revocation
#: through this API takes effect at once (any change ends every cached caller), one made
#: by ``hub users`` in another process within this time
PRINCIPAL_TTL = 2.0
MAX_PRINCIPALS = 10_000


class PrincipalCache:
    """Callers by token hash for :data:`PRINCIPAL_TTL`: a request's authentication then
    costs a dict lookup on the loop instead of a store query on a worker thread (a thread
    hop that waits for the GIL while ingest keeps the loop busy).

    ``generation`` moves after every request that may change users, grants, sessions or
    keys (the guard calls :meth:`changed` when such a request ends); a lookup begun
    before it is not cached, so a revocation cannot be undone by a read in flight."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, ttl: float = PRINCIPAL_TTL) -> None:
        self.clock = clock
        self.wall = wall
        self.ttl = ttl
        self.generation = 0
        self._entries: dict[str, tuple[Any, float, float]] = {}

    def get(self, key: str) -> Any:
        entry = self._entries.get(key)
        if entry is None:
            return None
        principal, until, wall_until = entry
        if self.clock() >= until or self.wall() >= wall_until:
            del self._entries[key]
            return None
        return principal

    def put(self, key: str, principal: Any, expires: float, generation: int) -> None:
        """Keep ``principal`` (found at ``generation``) until the TTL or ``expires`` (wall
        time: a session's end) passes, whichever is first."""
        if generation != self.generation:
            return
        if len(self._entries) >= MAX_PRINCIPALS:
            self._entries.clear()
        self._entries[key] = (principal, self.clock() + self.ttl, expires)

    def changed(self) -> None:
        self.generation += 1
        self._entries.clear()


class ApiContext:
    """One per running API. ``now`` is wall time for tokens (the hub's clock is the reactor,
    which is wall time too; tests of the API run on a real loop)."""

    def __init__(self, hub: Hub, settings: ApiSettings, store: PlatformStore,
                 now: Callable[[], float] = time.time) -> None:
        self.hub = hub
        self.settings = settings
        self.store = store
        self.now = now
        # Store calls, password hashing and journal queries run here, never on the loop.
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="hub-api")
        self._local = threading.local()
        self._readers: list[Journal] = []
        self._readers_lock = threading.Lock()
        self._tree: Tree | None = None
        self._devices: list[Any] | None = None
        self._loading: asyncio.Future | None = None
        self._index: Any = None
        self._index_key: tuple[int, int] = (0, 0)
        self.account_failures = FailureCounter(
            Throttle(settings.lockout_failures, settings.lockout_seconds))
        self.address_failures = FailureCounter(
            Throttle(settings.address_failures, settings.address_window))
        self.commands: OrderedDict[str, CommandOut] = OrderedDict()
        # several nodes on one PostgreSQL store: a logout or revocation on another node must
        # end the caller here at once, so nothing is cached (a store query per request)
        self.principals = PrincipalCache(
            wall=now, ttl=PRINCIPAL_TTL if settings.store.backend == "sqlite" else 0.0)
        self.exporter: Any = None  # set by hub.api.app.create_app
        self.feed: Any = None  # the live event stream (hub.api.stream), set there too
        self.desk: Any = None  # the alarm desk (hub.alarmdesk.desk), set by the service
        self.ota: Any = None  # firmware campaigns (hub.ota.manager), set by the service too

    @property
    def auth_generation(self) -> int:
        return self.principals.generation

    # ------------------------------------------------------------ threads

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(fn, *args, **kwargs))

    def _reader(self) -> Journal:
        """A read-only journal connection of this worker thread (SQLite connections stay
        in the thread that made them; WAL gives each query a consistent snapshot)."""
        j = getattr(self._local, "journal", None)
        if j is None:
            from twisted.internet.task import Clock

            from hub.journal import Journal

            j = Journal(self.hub.config.journal.path, clock=Clock(), readonly=True)
            j.open()
            with self._readers_lock:
                self._readers.append(j)
            view = getattr(self.hub, "journal_view", None)  # cluster: any partition's data
            j = self._local.journal = j if view is None else view(j)
        return j

    async def journal(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(journal, *args)`` on a worker thread's read-only journal."""
        return await self.run(lambda: fn(self._reader(), *args, **kwargs))

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        with self._readers_lock:
            for j in self._readers:
                try:
                    j.close()
                except Exception:  # a reader of a closing hub: nothing left to lose
                    pass
            self._readers.clear()

    # ------------------------------------------------------------ the tree

    async def tree(self) -> Tree:
        if self._tree is None:
            self._tree = Tree(await self.run(self.store.nodes))
        return self._tree

    def tree_changed(self) -> None:
        self._tree = None

    # ------------------------------------------------------------ stored devices

    async def stored_devices(self) -> list[Any]:
        """The platform store's devices, cached: every device list and scope check needs
        them, and only the API changes them (``devices_changed`` after each change)."""
        while self._devices is None:
            # one load for every request that finds none: concurrent loads would each
            # leave a new list, and each new list rebuilds the index (10,000 devices)
            if self._loading is None or self._loading.done():
                self._loading = asyncio.ensure_future(self.run(self.store.devices))
            loading = self._loading
            devices = await asyncio.shield(loading)
            if self._loading is loading and self._devices is None:
                self._devices = devices
        return self._devices

    def devices_changed(self) -> None:
        self._devices = None
        self._loading = None  # a load begun before the change may miss it
        self._index = None

    async def device_index(self) -> Any:
        """Every device the API shows (:class:`hub.api.views.DeviceIndex`), rebuilt when the
        store's devices change or the registry grows or shrinks (auto-provisioning)."""
        from hub.api.views import DeviceIndex, all_devices

        stored = await self.stored_devices()
        key = (len(self.hub.registry), id(stored))
        if self._index is None or self._index_key != key:
            self._index = DeviceIndex(all_devices(self.hub, stored))
            self._index_key = key
        return self._index

    # ------------------------------------------------------------ commands

    def track(self, state: CommandOut) -> None:
        self.commands[state.id] = state
        while len(self.commands) > MAX_TRACKED_COMMANDS:
            self.commands.popitem(last=False)

    # ------------------------------------------------------------ audit

    async def audit(self, actor: str, action: str, subject: str,
                    details: dict[str, Any]) -> None:
        """Record an act in the signed audit log and wait for its commit."""
        d = self.hub.audit.record(actor, action, subject, {**details, "via": "api"})
        await d.asFuture(asyncio.get_running_loop())
