"""The live stream (Server-Sent Events) of events, command results and, on request, readings,
resumable from a journal seq.

One feed per API reads new event and command result records (and readings while a
subscriber wants them) from the journal once (on a worker thread, when
the writer's committed seq moved) and hands them to every subscriber's queue; subscribers
filter by what they may see. A subscriber that resumes (``after`` or ``Last-Event-ID``)
first registers with the feed, then reads the journal from its seq up to where the feed
stood, then takes the queue from there: nothing is missed between the two, nothing is
sent twice. A subscriber too slow to keep its queue under ``MAX_QUEUE`` is ended (it
resumes from its last id), so one stuck client cannot grow the hub's memory.

The fan-out shares the loop with ingest, so each record costs the subscribers as little as
it can: the feed wakes on the journal's commit (not a poll), encodes a record's SSE frame
once for all, and puts it only in the queues of subscribers whose ``keep`` accepts it (a
memoised device → visible lookup), so 1,000 subscribers of one project do not each wake
for every other project's record.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from sse_starlette import ServerSentEvent
from twisted.logger import Logger

from hub.api.schemas import CommandResultOut, StreamReadingOut
from hub.api.views import event_out, reading_out
from hub.model import CommandResult, Event, Reading

if TYPE_CHECKING:
    from hub.api.context import ApiContext

_log = Logger(namespace="hub.api.stream")

POLL = 0.1  # s between looks at the journal's committed seq when it cannot wake the feed
BATCH = 5000
MAX_QUEUE = 10_000
FANOUT_SLICE = 100  # streams woken per loop turn


#: what every subscriber gets; readings only on request (``readings=true``)
KINDS = frozenset({"event", "command_result"})
WITH_READINGS = KINDS | {"reading"}

Record = Event | CommandResult | Reading
Item = tuple[int, Record, bytes]  # seq, record, its SSE frame


def _records_after(journal, seq: int, kinds: frozenset[str]) -> list:
    return journal.read(seq, limit=BATCH, kinds=set(kinds))


def encode(seq: int, record: Event | CommandResult | Reading) -> tuple[str, str]:
    """The SSE event name and data of a journal record."""
    if isinstance(record, Event):
        return "event", event_out(record, seq).model_dump_json()
    if isinstance(record, CommandResult):
        return "command_result", CommandResultOut(
            seq=seq, command_id=record.command_id, device=record.device,
            status=record.status.value, ts=record.ts, detail=record.detail).model_dump_json()
    return "reading", StreamReadingOut(seq=seq, device=record.device,
                                       **reading_out(record).model_dump()).model_dump_json()


def frame(seq: int, record: Record) -> bytes:
    """The SSE frame (``id:``, ``event:``, ``data:``) of a journal record."""
    name, data = encode(seq, record)
    return ServerSentEvent(data=data, event=name, id=str(seq)).encode()


class Overflow(Exception):
    pass


class Subscriber:
    """One stream's queue; ``keep`` says which records it takes (None: all)."""

    def __init__(self, readings: bool = False,
                 keep: Callable[[Record], bool] | None = None) -> None:
        self.queue: asyncio.Queue[Item | None] = asyncio.Queue()
        self.overflowed = False
        self.readings = readings
        self.keep = keep

    def put(self, item: Item) -> bool:
        """Queue ``item`` if this subscriber keeps it; whether it was queued."""
        if self.overflowed:
            return False
        if self.keep is not None and not self.keep(item[1]):
            return False
        if self.queue.qsize() >= MAX_QUEUE:
            self.overflowed = True
            self.queue.put_nowait(None)
            return False
        self.queue.put_nowait(item)
        return True

    async def get(self) -> Item:
        item = await self.queue.get()
        if item is None:
            raise Overflow()
        return item


class EventFeed:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self.seq = ctx.hub.journal.last_seq()
        self.subscribers: set[Subscriber] = set()
        self.readers = 0  # subscribers that want readings
        self._task: asyncio.Task | None = None

    def subscribe(self, readings: bool = False, keep: Callable[[Record], bool] | None = None
                  ) -> tuple[Subscriber, int]:
        """A new subscriber and the seq from which the feed will hand it records (after)."""
        sub = Subscriber(readings, keep)
        if not self.subscribers:
            self.seq = self.ctx.hub.journal.last_seq()
        self.subscribers.add(sub)
        self.readers += readings
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return sub, self.seq

    def unsubscribe(self, sub: Subscriber) -> None:
        if sub in self.subscribers:
            self.subscribers.discard(sub)
            self.readers -= sub.readings

    async def _run(self) -> None:
        try:
            while self.subscribers:
                last = self.ctx.hub.journal.last_seq()
                if last > self.seq:
                    after = self.seq
                    with_readings = self.readers > 0
                    batch = await self.ctx.journal(
                        _records_after, after, WITH_READINGS if with_readings else KINDS)
                    if self.readers and not with_readings:
                        continue  # one came for readings meanwhile: read this stretch again
                    subs = list(self.subscribers)
                    readers = [s for s in subs if s.readings]
                    # moved before the fan-out yields: a subscriber that comes meanwhile is
                    # not in ``subs`` and reads this batch from the journal instead
                    self.seq = batch[-1][0] if len(batch) == BATCH else max(last, after)
                    woken = 0
                    for seq, record in batch:
                        targets = readers if isinstance(record, Reading) else subs
                        if not targets:
                            continue
                        # encoded once for every subscriber: 1,000 of them share the work
                        item = (seq, record, frame(seq, record))
                        for sub in targets:
                            woken += sub.put(item)
                            if woken >= FANOUT_SLICE:
                                # each woken stream sends on this loop turn: let the loop
                                # serve its sockets (ingest, requests) between slices
                                woken = 0
                                await asyncio.sleep(0)
                    continue
                await self._next_commit(last)
        except Exception:  # the feed ends; its subscribers end with it and resume
            _log.failure("the event stream feed failed")
            for sub in list(self.subscribers):
                sub.overflowed = True
                sub.queue.put_nowait(None)

    async def _next_commit(self, seq: int) -> None:
        """Until a commit takes the journal past ``seq`` (or :data:`POLL`, as a backstop)."""
        when_past = getattr(self.ctx.hub.journal, "when_past", None)
        if when_past is None:
            await asyncio.sleep(POLL)
            return
        d = when_past(seq)
        try:
            await asyncio.wait_for(d.asFuture(asyncio.get_running_loop()), POLL * 10)
        except TimeoutError:
            pass

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


async def catch_up(ctx: ApiContext, after: int, until: int, keep: Callable[[object], bool],
                   readings: bool = False) -> list[tuple[int, object]]:
    """Records with ``after < seq <= until`` that ``keep`` accepts, from the journal."""
    out: list[tuple[int, object]] = []
    cursor = after
    kinds = WITH_READINGS if readings else KINDS
    while cursor < until:
        start = cursor
        batch = await ctx.journal(_records_after, start, kinds)
        if not batch:
            break
        for seq, event in batch:
            if seq > until:
                return out
            cursor = seq
            if keep(event):
                out.append((seq, event))
        if len(batch) < BATCH:
            break
    return out
