"""The live stream of events (Server-Sent Events), resumable from a journal seq.

One feed per API reads new event records from the journal once (on a worker thread, when
the writer's committed seq moved) and hands them to every subscriber's queue; subscribers
filter by what they may see. A subscriber that resumes (``after`` or ``Last-Event-ID``)
first registers with the feed, then reads the journal from its seq up to where the feed
stood, then takes the queue from there: nothing is missed between the two, nothing is
sent twice. A subscriber too slow to keep its queue under ``MAX_QUEUE`` is ended (it
resumes from its last id), so one stuck client cannot grow the hub's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.logger import Logger

from hub.api.views import event_out
from hub.model import Event

if TYPE_CHECKING:
    from hub.api.context import ApiContext

_log = Logger(namespace="hub.api.stream")

POLL = 0.1  # s between looks at the journal's committed seq
BATCH = 5000
MAX_QUEUE = 10_000


def _events_after(journal, seq: int) -> list:
    return journal.read(seq, limit=BATCH, kinds={"event"})


class Overflow(Exception):
    pass


class Subscriber:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[int, Event, str] | None] = asyncio.Queue()
        self.overflowed = False

    def put(self, item: tuple[int, Event, str]) -> None:
        if self.overflowed:
            return
        if self.queue.qsize() >= MAX_QUEUE:
            self.overflowed = True
            self.queue.put_nowait(None)
            return
        self.queue.put_nowait(item)

    async def get(self) -> tuple[int, Event, str]:
        item = await self.queue.get()
        if item is None:
            raise Overflow()
        return item


class EventFeed:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self.seq = ctx.hub.journal.last_seq()
        self.subscribers: set[Subscriber] = set()
        self._task: asyncio.Task | None = None

    def subscribe(self) -> tuple[Subscriber, int]:
        """A new subscriber and the seq from which the feed will hand it events (after)."""
        sub = Subscriber()
        if not self.subscribers:
            self.seq = self.ctx.hub.journal.last_seq()
        self.subscribers.add(sub)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return sub, self.seq

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    async def _run(self) -> None:
        try:
            while self.subscribers:
                last = self.ctx.hub.journal.last_seq()
                if last > self.seq:
                    after = self.seq
                    batch = await self.ctx.journal(_events_after, after)
                    for seq, event in batch:
                        # encoded once for every subscriber: 1,000 of them share the work
                        item = (seq, event, event_out(event, seq).model_dump_json())
                        for sub in list(self.subscribers):
                            sub.put(item)  # type: ignore[arg-type]
                    self.seq = batch[-1][0] if len(batch) == BATCH else max(last, after)
                    continue
                await asyncio.sleep(POLL)
        except Exception:  # the feed ends; its subscribers end with it and resume
            _log.failure("the event stream feed failed")
            for sub in list(self.subscribers):
                sub.overflowed = True
                sub.queue.put_nowait(None)

    async def stop(self) -> None:
        """End every subscriber's stream (the API is stopping) and the feed."""
        for sub in list(self.subscribers):
            sub.overflowed = True
            sub.queue.put_nowait(None)
        self.subscribers.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


async def catch_up(ctx: ApiContext, after: int, until: int,
                   keep: Callable[[Event], bool]) -> list[tuple[int, Event]]:
    """Events with ``after < seq <= until`` that ``keep`` accepts, from the journal."""
    out: list[tuple[int, Event]] = []
    cursor = after
    while cursor < until:
        start = cursor
        batch = await ctx.journal(_events_after, start)
        if not batch:
            break
        for seq, event in batch:
            if seq > until:
                return out
            cursor = seq
            if keep(event):  # type: ignore[arg-type]
                out.append((seq, event))  # type: ignore[arg-type]
        if len(batch) < BATCH:
            break
    return out
