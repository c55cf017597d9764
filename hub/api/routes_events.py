"""Events (alarms, faults, state changes) with filters and cursor paging, acknowledgements,
and commands to devices with their lifecycle.

Paging follows the journal: ``after`` is a journal seq and each page answers ``next_after``;
a client that keeps it misses nothing and sees nothing twice. A page scans at most
``SCAN_BUDGET`` events, so a filter that matches little answers a short (even empty) page
with a ``next_after`` that moved on: keep asking while ``next_after < last_seq``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query
from sse_starlette import EventSourceResponse

from hub.api.authz import Principal, Tree
from hub.api.context import ApiContext
from hub.api.deps import (
    Caller,
    Ctx,
    IdleTimeout,
    LastEventId,
    OrgTree,
    ResumeAfter,
    forbidden,
    invalid,
    not_found,
    resume_after,
)
from hub.api.routes_devices import device_in_scope, visible_devices
from hub.api.schemas import (
    ERRORS,
    AckIn,
    AckOut,
    CommandIn,
    CommandOut,
    EventOut,
    EventPage,
)
from hub.api.stream import Overflow, catch_up, frame
from hub.api.views import active_by_device, event_out
from hub.commands import CommandError, new_command_id
from hub.model import Acknowledgement, Command, CommandResult, Event, EventKind

router = APIRouter(prefix="/api", tags=["events and commands"])

SCAN_BUDGET = 20_000
MEMO = 100_000  # devices a stream's filter remembers
KIND = Annotated[str | None, Query(pattern="^(alarm|fault|state|notice)$")]


async def _device_projects(ctx: ApiContext, caller: Principal, tree: Tree) -> set[str]:
    """Ids of the devices whose events the caller sees ("hub" for platform-wide readers)."""
    ids = set(await visible_devices(ctx, caller, tree))
    if caller.can_read(tree, 1):
        ids.add("hub")
    return ids


@router.get("/events", response_model=EventPage, responses=ERRORS)
async def list_events(
    caller: Caller, tree: OrgTree, ctx: Ctx,
    after: Annotated[int, Query(ge=0, le=2**62, description="journal seq to start after")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    kind: KIND = None,
    level: Annotated[str | None, Query(pattern="^(info|warning|alarm|fault)$")] = None,
    state: Annotated[str | None, Query(pattern="^(raised|cleared|notice)$")] = None,
    device: Annotated[str | None, Query(max_length=64)] = None,
    project: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[float | None, Query(ge=0, le=1e11)] = None,
    until: Annotated[float | None, Query(ge=0, le=1e11)] = None,
) -> EventPage:
    """Events in journal order after ``after``, filtered, in the caller's scope."""
    allowed = await _device_projects(ctx, caller, tree)
    if project is not None:
        devices = await visible_devices(ctx, caller, tree)
        allowed = {k for k, d in devices.items() if d.project == project}
    if device is not None:
        allowed &= {device}

    def keep(e: Event) -> bool:
        return (e.device in allowed and (kind is None or e.kind.value == kind)
                and (level is None or e.level.value == level)
                and (state is None or e.state.value == state)
                and (since is None or e.ts >= since) and (until is None or e.ts <= until))

    def scan(j) -> EventPage:
        last = j.last_seq()
        cursor, scanned, out = after, 0, []
        while len(out) < limit and scanned < SCAN_BUDGET:
            batch = j.read(cursor, limit=min(1000, SCAN_BUDGET - scanned), kinds={"event"})
            if not batch:
                cursor = max(cursor, last)
                break
            for seq, e in batch:
                cursor = seq
                scanned += 1
                if keep(e):
                    out.append(event_out(e, seq))
                    if len(out) >= limit:
                        break
        return EventPage(items=out, next_after=cursor, last_seq=max(last, cursor))
    if not allowed:
        return EventPage(items=[], next_after=after, last_seq=after)
    return await ctx.journal(scan)


@router.get("/events/active", response_model=list[EventOut], responses=ERRORS)
async def active_events(caller: Caller, tree: OrgTree, ctx: Ctx,
                        kind: KIND = None) -> list[EventOut]:
    """Alarms and faults raised and not cleared, in the caller's scope."""
    allowed = await _device_projects(ctx, caller, tree)
    return [event_out(e) for dev, events in active_by_device(ctx.hub).items()
            if dev in allowed for e in events if kind is None or e.kind.value == kind]


@router.get("/events/stream", responses={**ERRORS, 200: {
    "description": "Server-Sent Events, `id:` the journal seq: `event: event` (`data:` an "
                   "event as in GET /api/events), `event: command_result` (a command's "
                   "progress), with `readings=true` `event: reading`",
    "content": {"text/event-stream": {"schema": {"type": "string"}}}}})
async def stream_events(
    caller: Caller, tree: OrgTree, ctx: Ctx,
    after: ResumeAfter = None,
    kind: KIND = None,
    device: Annotated[str | None, Query(max_length=64)] = None,
    project: Annotated[str | None, Query(max_length=64)] = None,
    idle_timeout: IdleTimeout = None,
    readings: Annotated[bool, Query(description="readings too (many: filter by device "
                                    "or project)")] = False,
    last_event_id: LastEventId = None,
) -> EventSourceResponse:
    """Events and command results (and readings, if asked) as they are committed, for the
    devices the caller sees; reconnect with ``Last-Event-ID`` (or ``after``) to miss
    nothing. ``kind`` filters events only."""
    keep = await _stream_filter(ctx, caller, tree, kind, device, project)
    after = resume_after(after, last_event_id)
    sub, feed_seq = ctx.feed.subscribe(readings, keep)

    async def events():
        try:
            cursor = feed_seq if after is None else after
            if cursor < feed_seq:
                for seq, r in await catch_up(ctx, cursor, feed_seq, keep, readings):
                    yield frame(seq, r)  # type: ignore[arg-type]
                cursor = feed_seq
            loop = asyncio.get_running_loop()
            last = loop.time()
            while True:
                # idle means nothing *for this subscriber*: the feed puts only what it keeps
                wait = None if idle_timeout is None else idle_timeout - (loop.time() - last)
                if wait is not None and wait <= 0:
                    return
                try:
                    if wait is None:
                        seq, _, data = await sub.get()
                    else:  # a timeout, not wait_for: no task per record
                        async with asyncio.timeout(wait):
                            seq, _, data = await sub.get()
                except TimeoutError:
                    return
                except Overflow:
                    yield {"event": "end", "data": json.dumps(
                        {"reason": "too far behind or the hub is stopping; reconnect with "
                                   "Last-Event-ID", "last_seq": cursor})}
                    return
                if seq <= cursor:
                    continue
                cursor = seq
                last = loop.time()
                yield data
        finally:
            ctx.feed.unsubscribe(sub)

    return EventSourceResponse(events(), ping=15)


async def _stream_filter(ctx: ApiContext, caller: Principal, tree: Tree, kind: str | None,
                         device: str | None, project: str | None
                         ) -> Callable[[object], bool]:
    """Which records a stream keeps: those of devices the caller sees (as at its start),
    narrowed to ``device`` and ``project``; ``kind`` narrows events only. Memoised by
    device: the feed asks it for every record and every subscriber."""
    index = await ctx.device_index()
    readable = caller.readable_nodes(tree)
    platform = caller.can_read(tree, 1)
    seen: dict[str, bool] = {}

    def visible(dev: str) -> bool:
        if device is not None and dev != device:
            return False
        if dev == "hub":
            return platform and project is None
        d = index.by_id.get(dev)
        return d is not None and tree.node_of_project(d.project) in readable and \
            (project is None or d.project == project)

    def keep(r: object) -> bool:
        dev = r.device  # type: ignore[attr-defined]
        ok = seen.get(dev)
        if ok is None:
            ok = visible(dev)
            if len(seen) < MEMO:
                seen[dev] = ok
        if not ok:
            return False
        return kind is None or not isinstance(r, Event) or r.kind.value == kind

    return keep


@router.post("/events/{event_id}/ack", response_model=AckOut, status_code=201,
             responses={**ERRORS, 409: {"description": "not an alarm or fault"}})
async def acknowledge(event_id: Annotated[str, Path(max_length=128)], body: AckIn,
                      caller: Caller, tree: OrgTree, ctx: Ctx) -> AckOut:
    """Acknowledge an alarm or fault with a note (``hub events ack`` through the API):
    operator or above in the device's project."""
    event = await ctx.journal(lambda j: j.event(event_id))
    if event is None or event.device not in await _device_projects(ctx, caller, tree):
        raise not_found("event")
    devices = await visible_devices(ctx, caller, tree)
    node = tree.node_of_project(devices[event.device].project) if event.device in devices \
        else 1
    if not caller.can(tree, node, "operator"):
        raise forbidden("acknowledging needs the operator role on the project")
    if event.kind not in (EventKind.ALARM, EventKind.FAULT):
        raise HTTPException(409, f"event {event_id} is a {event.kind.value} event; only alarms "
                            "and faults are acknowledged")
    hub = ctx.hub
    ack = Acknowledgement(event_id, caller.name, hub.clock.seconds(), event.device, body.note)
    # audited first, on disk, like a command: no acknowledgement without its entry
    await ctx.audit(caller.name, "event.acknowledged", event_id, {
        "device": event.device, "code": event.code, "kind": event.kind.value,
        "channel": event.channel, "note": body.note})
    seq = await hub.journal.append([ack]).asFuture(asyncio.get_running_loop())
    return AckOut(event_id=event_id, device=event.device, seq=seq)


# ---------------------------------------------------------------- commands

@router.post("/devices/{device_id}/commands", response_model=CommandOut, status_code=202,
             responses={**ERRORS, 409: {"description": "the device takes no commands now"},
                        422: {"description": "bad action or parameters"}})
async def send_command(device_id: str, body: CommandIn, caller: Caller, tree: OrgTree,
                       ctx: Ctx) -> CommandOut:
    """Reset, silence, self-test, restart, trip/close, set a threshold, switch a channel:
    operator or above in the device's project. Audited before it is sent; 202 with the
    command's state, or its end with ``wait``."""
    d = await device_in_scope(ctx, caller, tree, device_id)
    if not caller.can(tree, tree.node_of_project(d.project), "operator"):
        raise forbidden("commands need the operator role on the device's project")
    if d.id not in ctx.hub.registry:
        raise HTTPException(409, "this device does not run in the hub (see the hub's log)")
    hub = ctx.hub
    now = hub.clock.seconds()
    command = Command(new_command_id(), d.id, body.action, now, channel=body.channel,
                      params=dict(body.params), requested_by=caller.name, ttl=body.ttl)
    try:
        done = hub.commands.execute(command)
    except CommandError as e:
        raise invalid(str(e), "body") from None
    # where to find its lifecycle in the journal after a restart
    await ctx.run(ctx.store.add_command, command.id, d.id, now, body.ttl)
    state = CommandOut(id=command.id, device=d.id, action=body.action, channel=body.channel,
                       params=dict(body.params), requested_by=caller.name, status="pending")
    state.move("pending", now)
    if command.id in hub.commands.queued:
        state.move("queued", hub.clock.seconds(), "waits for the device's next uplink")
    ctx.track(state)

    def ended(result):
        state.move(result.status.value, hub.clock.seconds(), result.detail)
        return result

    def broke(failure):
        state.move("failed", hub.clock.seconds(), failure.getErrorMessage())

    done.addCallbacks(ended, broke)
    if body.wait and command.id not in hub.commands.queued:
        future = done.asFuture(asyncio.get_running_loop())
        try:
            await asyncio.wait_for(asyncio.shield(future), body.ttl + 5)
        except TimeoutError:
            pass
    return state


@router.get("/commands/{command_id}", response_model=CommandOut, responses=ERRORS)
async def get_command(command_id: Annotated[str, Path(max_length=64)], caller: Caller,
                      tree: OrgTree, ctx: Ctx) -> CommandOut:
    """A command started through the API and its lifecycle (queued, pending, sent,
    succeeded, failed, timed out): while the hub runs from memory, after a restart from the
    journal's command and command result records."""
    state = ctx.commands.get(command_id)
    if state is None:
        state = await _journaled_command(ctx, command_id)
    if state is None:
        raise not_found("command")
    await device_in_scope(ctx, caller, tree, state.device)
    return state


#: how long after its start a command's results are looked for (it may resume after a restart)
RESULT_HORIZON = 86400.0


async def _journaled_command(ctx: ApiContext, command_id: str) -> CommandOut | None:
    found = await ctx.run(ctx.store.command, command_id)
    if found is None:
        return None
    device, ts, ttl = found
    records = await ctx.journal(lambda j: j.command_records(device, ts - 1,
                                                            ts + ttl + RESULT_HORIZON))
    state: CommandOut | None = None
    for _seq, r in records:
        if isinstance(r, Command) and r.id == command_id:
            state = CommandOut(id=r.id, device=r.device, action=r.action, channel=r.channel,
                               params=dict(r.params), requested_by=r.requested_by,
                               status="pending")
            state.move("pending", r.ts)
        elif state is not None and isinstance(r, CommandResult) and \
                r.command_id == command_id:
            state.move(r.status.value, r.ts, r.detail)
    return state
