"""Alarm records: list and detail with their history, acknowledge, assign, comment and
handle (acknowledge + cause + action taken), one at a time or in batches, and the live
stream of their changes.

Scope as everywhere: a record belongs to its device's project; reading needs any role
there, acting needs operator. A record outside the caller's scope answers 404. A batch is
checked whole before anything is done: one id out of scope is a 404 and nothing changes.
Every act is audited before it is stored; an acknowledgement also goes to the journal for
each event of the record (so ``hub events`` and the sinks' escalations see it).
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse

from hub.alarmdesk.lifecycle import AlarmRecord, IllegalAct, apply_act
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
    not_found,
    resume_after,
)
from hub.api.schemas import ERRORS, Strict
from hub.model import Acknowledgement
from hub.store.base import ROOT_ID

router = APIRouter(prefix="/api/alarms", tags=["alarms"])

StateName = Literal["active-unacknowledged", "active-acknowledged", "cleared-unacknowledged",
                    "cleared-acknowledged"]
ActionName = Literal["acknowledge", "assign", "comment", "handle"]
MAX_BATCH = 500
LOOK = 5.0  # s between looks at the store when nothing woke a stream


class AlarmOut(BaseModel):
    id: int
    device: str
    project: str
    kind: str
    code: str
    channel: str
    severity: Literal["pre-alarm", "alarm", "fault"]
    state: StateName
    open: bool
    first_ts: float
    last_ts: float
    cleared_ts: float | None = None
    acked_by: str | None = None
    acked_ts: float | None = None
    assignee: str | None = None
    cause: str | None = None
    action_taken: str | None = None
    count: int
    message: str = ""
    value: float | None = None
    events: list[str] = []


class ChangeOut(BaseModel):
    seq: int = Field(description="orders every change of every record (the stream's id)")
    alarm_id: int
    project: str
    ts: float
    by: str
    action: str
    note: str
    details: dict[str, Any]


class AlarmDetail(AlarmOut):
    history: list[ChangeOut]


class AlarmPage(BaseModel):
    items: list[AlarmOut]
    next_after: int = Field(description="the last id of this page: ask again with after=")


class ActIn(Strict):
    action: ActionName
    note: str = Field(default="", max_length=1000)
    assignee: str = Field(default="", max_length=128, description="for assign")
    cause: str = Field(default="", max_length=1000, description="for handle")
    action_taken: str = Field(default="", max_length=1000, description="for handle")


class BatchIn(ActIn):
    ids: list[int] = Field(min_length=1, max_length=MAX_BATCH)


class ActOut(BaseModel):
    alarm: AlarmOut
    changed: bool = Field(description="false when the act changed nothing (acknowledging "
                                      "an acknowledged alarm)")


def alarm_out(r: AlarmRecord) -> AlarmOut:
    return AlarmOut(**r.as_dict())


# ---------------------------------------------------------------- scope

def project_node(tree: Tree, project: str) -> int:
    return tree.node_of_project(project) if project else ROOT_ID


def readable_projects(caller: Principal, tree: Tree) -> set[str] | None:
    """Project codes the caller reads; None: every project (a platform-wide reader)."""
    if caller.can_read(tree, ROOT_ID):
        return None
    readable = caller.readable_nodes(tree)
    return {code for code, node in tree.by_code.items() if node in readable}


def check_read(caller: Principal, tree: Tree, project: str, what: str) -> None:
    if not caller.can_read(tree, project_node(tree, project)):
        raise not_found(what)


def check_act(caller: Principal, tree: Tree, project: str, what: str) -> None:
    check_read(caller, tree, project, what)
    if not caller.can(tree, project_node(tree, project), "operator"):
        raise forbidden(f"{what}s are handled by operators of the project")


# ---------------------------------------------------------------- reading

@router.get("", response_model=AlarmPage, responses=ERRORS)
async def list_alarms(
    caller: Caller, tree: OrgTree, ctx: Ctx,
    after: Annotated[int, Query(ge=0, le=2**62, description="id to start after")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    state: StateName | None = None,
    open: Annotated[bool, Query(description="only records not closed")] = False,
    kind: Literal["alarm", "fault"] | None = None,
    device: Annotated[str | None, Query(max_length=64)] = None,
    project: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[float | None, Query(ge=0, le=1e11)] = None,
    until: Annotated[float | None, Query(ge=0, le=1e11)] = None,
) -> AlarmPage:
    """Alarm and fault records in id order, filtered, in the caller's scope."""
    projects = readable_projects(caller, tree)
    if project is not None:
        projects = {project} if projects is None or project in projects else set()
    rows = await ctx.run(ctx.store.alarms, projects, open_only=open, state=state,
                         device=device, kind=kind, since=since, until=until, after_id=after,
                         limit=limit)
    return AlarmPage(items=[alarm_out(r) for r in rows],
                     next_after=rows[-1].id if rows else after)


@router.get("/stream", responses={**ERRORS, 200: {
    "description": "Server-Sent Events: `event: alarm`, `id:` the change's seq, `data:` the "
                   "change (as in an alarm's history) with the record after it under `alarm`",
    "content": {"text/event-stream": {"schema": {"type": "string"}}}}})
async def stream_alarms(
    caller: Caller, tree: OrgTree, ctx: Ctx,
    after: ResumeAfter = None,
    idle_timeout: IdleTimeout = None,
    last_event_id: LastEventId = None,
) -> EventSourceResponse:
    """Every change of an alarm record in the caller's scope as it is stored; reconnect
    with ``Last-Event-ID`` to miss nothing."""
    projects = readable_projects(caller, tree)
    after = resume_after(after, last_event_id)
    if after is None:
        after = await ctx.run(ctx.store.last_alarm_change)

    async def render(row: dict[str, Any]) -> dict[str, Any]:
        record = await ctx.run(ctx.store.alarm, row["alarm_id"])
        return {**row, "alarm": alarm_out(record).model_dump() if record else None}

    return change_stream(ctx, "alarm", lambda cursor: ctx.store.alarm_changes(cursor, projects),
                         render, after, idle_timeout)


def change_stream(ctx: ApiContext, event: str, fetch: Any, render: Any, after: int,
                  idle_timeout: float | None) -> EventSourceResponse:
    """SSE of stored changes after ``after``: ``fetch(cursor)`` (on a worker thread) gives
    rows with a ``seq``, ``render(row)`` their data. Woken by the desk's listeners; acts
    made by ``hub alarms`` (another process) are seen within ``LOOK`` seconds."""
    pulse = asyncio.Event()
    desk = ctx.desk

    def wake(_record: Any, _change: Any) -> None:
        pulse.set()

    desk.listeners.append(wake)

    async def changes():
        cursor, idle = after, 0.0
        try:
            while True:
                pulse.clear()
                rows = await ctx.run(fetch, cursor)
                for row in rows:
                    cursor = row["seq"]
                    yield {"id": str(cursor), "event": event,
                           "data": json.dumps(await render(row), ensure_ascii=False)}
                if rows:
                    idle = 0.0
                    continue
                wait = LOOK if idle_timeout is None else min(LOOK, idle_timeout - idle)
                try:
                    await asyncio.wait_for(pulse.wait(), max(wait, 0.01))
                except TimeoutError:
                    idle += wait
                    if idle_timeout is not None and idle >= idle_timeout:
                        return
        finally:
            if wake in desk.listeners:
                desk.listeners.remove(wake)

    return EventSourceResponse(changes(), ping=15)


@router.get("/{alarm_id}", response_model=AlarmDetail, responses=ERRORS)
async def get_alarm(alarm_id: Annotated[int, Path(ge=1, le=2**62)], caller: Caller,
                    tree: OrgTree, ctx: Ctx) -> AlarmDetail:
    """A record with its whole history (who did what, when, with which note)."""
    record = await ctx.run(ctx.store.alarm, alarm_id)
    if record is None:
        raise not_found("alarm")
    check_read(caller, tree, record.project, "alarm")
    history = await ctx.run(ctx.store.alarm_history, alarm_id)
    return AlarmDetail(**record.as_dict(), history=[ChangeOut(**h) for h in history])


# ---------------------------------------------------------------- acting

async def _act(ctx: ApiContext, caller: Principal, records: list[AlarmRecord],
               body: ActIn) -> list[ActOut]:
    hub = ctx.hub
    now = hub.clock.seconds()
    kw = dict(assignee=body.assignee, cause=body.cause, action_taken=body.action_taken)
    planned = []
    for r in records:  # every act checked before any is audited or stored
        try:
            _, change = apply_act(r, body.action, caller.name, now, body.note, **kw)
        except IllegalAct as e:
            raise HTTPException(409, f"alarm {r.id}: {e}") from None
        planned.append((r, change))
    out = []
    for r, change in planned:
        if change is None:
            out.append(ActOut(alarm=alarm_out(r), changed=False))
            continue
        # audited first, on disk, like an acknowledgement of an event
        await ctx.audit(caller.name, f"alarm.{change.action}", str(r.id), {
            "device": r.device, "project": r.project, "code": r.code, "channel": r.channel,
            "note": body.note, **change.details})
        try:
            new, change = await ctx.run(ctx.store.alarm_act, r.id, body.action, caller.name,
                                        now, note=body.note, **kw)
        except IllegalAct as e:  # changed since it was read
            raise HTTPException(409, f"alarm {r.id}: {e}") from None
        if change is not None:
            ctx.desk.changed(new, change, via="api")
            if change.action in ("acknowledged", "handled") and new.active_events:
                acks = [Acknowledgement(e, caller.name, now, new.device, body.note)
                        for e in new.active_events]
                await hub.journal.append(acks).asFuture(asyncio.get_running_loop())
        out.append(ActOut(alarm=alarm_out(new), changed=change is not None))
    return out


async def _in_scope(ctx: ApiContext, caller: Principal, tree: Tree,
                    alarm_id: int) -> AlarmRecord:
    record = await ctx.run(ctx.store.alarm, alarm_id)
    if record is None:
        raise not_found("alarm")
    check_act(caller, tree, record.project, "alarm")
    return record


@router.post("/{alarm_id}/actions", response_model=ActOut, responses={
    **ERRORS, 409: {"description": "the alarm's state does not allow this act"}})
async def act(alarm_id: Annotated[int, Path(ge=1, le=2**62)], body: ActIn, caller: Caller,
              tree: OrgTree, ctx: Ctx) -> ActOut:
    """Acknowledge, assign (``assignee``), comment (``note``) or handle (``cause`` and
    ``action_taken``; acknowledges too): operator or above in the project."""
    record = await _in_scope(ctx, caller, tree, alarm_id)
    return (await _act(ctx, caller, [record], body))[0]


@router.post("/actions", response_model=list[ActOut], responses={
    **ERRORS, 409: {"description": "one alarm's state does not allow the act (none done)"}})
async def act_batch(body: BatchIn, caller: Caller, tree: OrgTree, ctx: Ctx) -> list[ActOut]:
    """The same act on many alarms (at most 500): all are checked first, so an id out of
    scope (404), a missing role (403) or an illegal act (409) does nothing at all."""
    records = []
    for alarm_id in dict.fromkeys(body.ids):
        records.append(await _in_scope(ctx, caller, tree, alarm_id))
    return await _act(ctx, caller, records, body)


__all__ = ["alarm_out", "change_stream", "check_act", "check_read", "readable_projects", "router"]
