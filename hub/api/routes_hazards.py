"""Hazards (隐患): open (by hand or from an alarm), list, detail with history and files,
transitions 排查 → 整改 → 验收 → 销号 (409 with the allowed ones otherwise), attachments;
and the statistics of alarms and hazards for a project and period.

Reading needs any role on the hazard's project, opening and moving one needs operator.
Attachments are sent as the raw body (``Content-Type`` the file's type, ``name`` in the
query), checked by their first bytes: another type is a 415, more than the limit a 413;
nothing is stored then. Files live under ``<state_dir>/hazards/<id>/``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse

from hub.alarmdesk.hazards import (
    SEVERITIES,
    STATES,
    TRANSITIONS,
    IllegalTransition,
    check_transition,
)
from hub.alarmdesk.inspections import inspection_stats
from hub.alarmdesk.stats import alarm_stats, hazard_stats
from hub.api import uploads
from hub.api.deps import (
    Caller,
    Ctx,
    IdleTimeout,
    LastEventId,
    OrgTree,
    ResumeAfter,
    invalid,
    not_found,
    resume_after,
)
from hub.api.routes_alarms import change_stream, check_act, check_read, readable_projects
from hub.api.schemas import ERRORS, Strict
from hub.store.hazards import Hazard

router = APIRouter(prefix="/api", tags=["hazards"])

MAX_FILE = uploads.MAX_FILE
StateName = Literal["found", "rectifying", "checked", "closed"]
HazardId = Annotated[int, Path(ge=1, le=2**62)]


class HazardIn(Strict):
    project: str | None = Field(default=None, max_length=64,
                                description="the project's code (or give alarm_id)")
    alarm_id: int | None = Field(default=None, ge=1, le=2**62,
                                 description="open it from this alarm (project and device "
                                             "come from it)")
    device: str = Field(default="", max_length=64)
    category: str = Field(min_length=1, max_length=64)
    severity: str = Field(default=SEVERITIES[0], max_length=32,
                          description=f"one of {', '.join(SEVERITIES)}")
    description: str = Field(min_length=1, max_length=4000)
    deadline: float | None = Field(default=None, ge=0, le=1e11)
    responsible: str = Field(default="", max_length=128)
    note: str = Field(default="", max_length=1000)


class TransitionIn(Strict):
    to: StateName
    note: str = Field(default="", max_length=1000)


class BatchTransitionIn(TransitionIn):
    ids: list[Annotated[int, Field(ge=1, le=2**62)]] = Field(min_length=1, max_length=500)


class HazardOut(BaseModel):
    id: int
    project: str
    device: str
    alarm_id: int | None
    category: str
    severity: str
    description: str
    state: StateName
    deadline: float | None
    responsible: str
    created_by: str
    created_ts: float
    updated_ts: float
    closed_ts: float | None
    overdue: bool = False


class StepOut(BaseModel):
    seq: int
    ts: float
    by: str
    from_state: str | None
    to_state: str
    note: str


class FileOut(BaseModel):
    id: int
    name: str
    content_type: str
    size: int
    sha256: str
    by: str
    ts: float


class HazardDetail(HazardOut):
    history: list[StepOut]
    files: list[FileOut]


def _out(h: Hazard, now: float) -> HazardOut:
    overdue = h.state != "closed" and h.deadline is not None and h.deadline < now
    return HazardOut(**h.as_dict(), overdue=overdue)


async def _hazard(ctx: Any, caller: Any, tree: Any, hazard_id: int, act: bool) -> Hazard:
    h = await ctx.run(ctx.store.hazard, hazard_id)
    if h is None:
        raise not_found("hazard")
    (check_act if act else check_read)(caller, tree, h.project, "hazard")
    return h


@router.post("/hazards", response_model=HazardOut, status_code=201, responses=ERRORS)
async def open_hazard(body: HazardIn, caller: Caller, tree: OrgTree, ctx: Ctx) -> HazardOut:
    """Open a hazard record (state ``found``, 排查): by hand for a project, or from an
    alarm; operator or above in the project."""
    project, device = body.project, body.device
    if body.alarm_id is not None:
        alarm = await ctx.run(ctx.store.alarm, body.alarm_id)
        if alarm is None:
            raise not_found("alarm")
        check_read(caller, tree, alarm.project, "alarm")
        project, device = alarm.project, device or alarm.device
    if project is None:
        raise invalid("give project or alarm_id", "body", "project")
    if project not in tree.by_code:
        raise not_found("project")
    check_act(caller, tree, project, "hazard")
    if body.severity not in SEVERITIES:
        raise invalid(f"severity is one of {', '.join(SEVERITIES)}", "body", "severity")
    now = ctx.hub.clock.seconds()
    details = {"project": project, "device": device, "alarm_id": body.alarm_id,
               "category": body.category, "severity": body.severity,
               "deadline": body.deadline, "responsible": body.responsible}
    await ctx.audit(caller.name, "hazard.opened", project, details)
    h = await ctx.run(ctx.store.hazard_add, project, device, body.alarm_id, body.category,
                      body.severity, body.description, body.deadline, body.responsible,
                      caller.name, now, body.note)
    ctx.desk.poke()
    return _out(h, now)


@router.get("/hazards", response_model=list[HazardOut], responses=ERRORS)
async def list_hazards(
    caller: Caller, tree: OrgTree, ctx: Ctx,
    state: StateName | None = None,
    project: Annotated[str | None, Query(max_length=64)] = None,
    overdue: bool = False,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[HazardOut]:
    """Hazards in id order, in the caller's scope; ``overdue``: open past their deadline."""
    projects = readable_projects(caller, tree)
    if project is not None:
        projects = {project} if projects is None or project in projects else set()
    now = ctx.hub.clock.seconds()
    rows = await ctx.run(ctx.store.hazards, projects, state=state,
                         overdue_at=now if overdue else None, after_id=after, limit=limit)
    return [_out(h, now) for h in rows]


@router.get("/hazards/stream", responses={**ERRORS, 200: {
    "description": "Server-Sent Events: `event: hazard`, `id:` the transition's seq, `data:` "
                   "the transition (as in a hazard's history) with the hazard after it under "
                   "`hazard`",
    "content": {"text/event-stream": {"schema": {"type": "string"}}}}})
async def stream_hazards(
    caller: Caller, tree: OrgTree, ctx: Ctx,
    after: ResumeAfter = None,
    idle_timeout: IdleTimeout = None,
    last_event_id: LastEventId = None,
) -> EventSourceResponse:
    """Every hazard opened or moved in the caller's scope, as it is stored."""
    projects = readable_projects(caller, tree)
    after = resume_after(after, last_event_id)
    if after is None:
        after = await ctx.run(ctx.store.last_hazard_change)

    async def render(row: dict[str, Any]) -> dict[str, Any]:
        h = await ctx.run(ctx.store.hazard, row["hazard_id"])
        now = ctx.hub.clock.seconds()
        return {**row, "hazard": _out(h, now).model_dump() if h else None}

    return change_stream(ctx, "hazard",
                         lambda cursor: ctx.store.hazard_changes(cursor, projects), render,
                         after, idle_timeout)


@router.get("/hazards/{hazard_id}", response_model=HazardDetail, responses=ERRORS)
async def get_hazard(hazard_id: HazardId, caller: Caller, tree: OrgTree,
                     ctx: Ctx) -> HazardDetail:
    h = await _hazard(ctx, caller, tree, hazard_id, act=False)
    history = await ctx.run(ctx.store.hazard_history, hazard_id)
    files = await ctx.run(ctx.store.hazard_files, hazard_id)
    return HazardDetail(**_out(h, ctx.hub.clock.seconds()).model_dump(),
                        history=[StepOut(**s) for s in history],
                        files=[FileOut(**f) for f in files])


@router.post("/hazards/{hazard_id}/transitions", response_model=HazardOut, responses={
    **ERRORS, 409: {"description": "not allowed from the hazard's state; `detail.allowed` "
                                   "lists the states it may go to"}})
async def move_hazard(hazard_id: HazardId, body: TransitionIn, caller: Caller,
                      tree: OrgTree, ctx: Ctx) -> HazardOut:
    """found → rectifying → checked → closed; checked → rectifying (the check failed);
    rectifying → found (inspect again). Operator or above."""
    h = await _hazard(ctx, caller, tree, hazard_id, act=True)
    try:  # checked before it is audited; the store checks again in its transaction
        check_transition(h.state, body.to)
        await ctx.audit(caller.name, f"hazard.{body.to}", str(hazard_id),
                        {"project": h.project, "from": h.state, "to": body.to,
                         "note": body.note})
        moved = await ctx.run(ctx.store.hazard_move, hazard_id, body.to, caller.name,
                              ctx.hub.clock.seconds(), body.note)
    except IllegalTransition as e:
        raise HTTPException(409, {"message": str(e), "state": e.state,
                                  "allowed": list(e.allowed)}) from None
    ctx.desk.poke()
    return _out(moved, ctx.hub.clock.seconds())


@router.post("/hazards/transitions", response_model=list[HazardOut], responses={
    **ERRORS, 409: {"description": "one hazard may not make the move (none moved); "
                                   "`detail.allowed` per id"}})
async def move_hazards(body: BatchTransitionIn, caller: Caller, tree: OrgTree,
                       ctx: Ctx) -> list[HazardOut]:
    """The same transition for many hazards (batch handling, 隐患批量处理): all are checked
    first, so one out of scope (404), a missing role (403) or an illegal move (409) moves
    none."""
    hazards = [await _hazard(ctx, caller, tree, i, act=True) for i in dict.fromkeys(body.ids)]
    refused = {h.id: list(TRANSITIONS[h.state]) for h in hazards
               if body.to not in TRANSITIONS[h.state]}
    if refused:
        raise HTTPException(409, {"message": f"not every hazard may go to {body.to}",
                                  "allowed": {str(k): v for k, v in refused.items()}})
    out = []
    for h in hazards:
        out.append(await move_hazard(h.id, TransitionIn(to=body.to, note=body.note), caller,
                                     tree, ctx))
    return out


@router.post("/hazards/{hazard_id}/files", response_model=FileOut, status_code=201,
             responses={**ERRORS, **uploads.RESPONSES}, openapi_extra=uploads.BODY)
async def add_file(hazard_id: HazardId, request: Request, caller: Caller, tree: OrgTree,
                   ctx: Ctx,
                   name: Annotated[str, Query(min_length=1, max_length=128,
                                              pattern=r"^[^/\\\x00]+$")] = "file") -> FileOut:
    """Attach a photo or document (the raw body; JPEG, PNG or PDF, at most 1 MiB)."""
    h = await _hazard(ctx, caller, tree, hazard_id, act=True)
    up, now, path = await uploads.receive(request, ctx, caller.name, "hazard.file_added",
                                          str(hazard_id), {"project": h.project, "name": name},
                                          "hazards", str(hazard_id))
    file_id = await ctx.run(ctx.store.hazard_file_add, hazard_id, name, up.content_type,
                            len(up.data), up.sha256, path, caller.name, now)
    return FileOut(id=file_id, name=name, content_type=up.content_type, size=len(up.data),
                   sha256=up.sha256, by=caller.name, ts=now)


@router.get("/hazards/{hazard_id}/files/{file_id}", response_class=FileResponse,
            responses={**ERRORS, **uploads.DOWNLOAD})
async def get_file(hazard_id: HazardId, file_id: uploads.FileId, caller: Caller,
                   tree: OrgTree, ctx: Ctx) -> FileResponse:
    await _hazard(ctx, caller, tree, hazard_id, act=False)
    return await uploads.send(ctx, ctx.store.hazard_files, hazard_id, file_id, "file")


# ---------------------------------------------------------------- statistics

class StatsOut(BaseModel):
    project: str | None
    since: float | None
    until: float | None
    alarms: dict[str, Any]
    hazards: dict[str, Any]
    inspections: dict[str, Any] = Field(
        default={}, description="tasks due in the period: by state, done (late ones too), "
                                "missed, completion and on-time rates, problems found")


@router.get("/stats/alarms", response_model=StatsOut, responses=ERRORS)
async def stats(caller: Caller, tree: OrgTree, ctx: Ctx,
                project: Annotated[str | None, Query(max_length=64)] = None,
                since: Annotated[float | None, Query(ge=0, le=1e11)] = None,
                until: Annotated[float | None, Query(ge=0, le=1e11)] = None) -> StatsOut:
    """For the caller's projects (or one) and a period (by raise / opening time): alarms
    and faults by kind, severity, state and code, time to acknowledge and to close (median
    and p90, seconds); hazards by state, category and severity, time to close, overdue;
    inspection tasks falling due in the period: completion (done / due and settled),
    on time, missed, problems found."""
    projects = readable_projects(caller, tree)
    if project is not None:
        projects = {project} if projects is None or project in projects else set()
    rows = await ctx.run(ctx.store.alarm_times, projects, since, until)
    hazards = await ctx.run(ctx.store.hazards, projects, since=since, until=until,
                            limit=1_000_000)
    tasks = await ctx.run(ctx.store.inspection_times, projects, since, until)
    now = ctx.hub.clock.seconds()
    return StatsOut(project=project, since=since, until=until, alarms=alarm_stats(rows),
                    hazards=hazard_stats(hazards, now),
                    inspections=inspection_stats(tasks, now))


__all__ = ["STATES", "router"]
