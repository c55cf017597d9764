"""Inspection (巡查): plans per project (the items to check and how often), the tasks the
desk generates from them as each period begins, results recorded (each item ``ok``,
``problem`` or ``not-applicable``; a problem may open a hazard at once), missed tasks
flagged, and a live stream of it all.

Reading needs any role on the project; recording a task's results and adding photos of
its items need operator; plans are made and changed by managers. Every act is audited
before it is stored. Photos follow the hazards' upload rules (:mod:`hub.api.uploads`) and
live under ``<state_dir>/inspections/<task id>/``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from hub.alarmdesk.hazards import SEVERITIES
from hub.alarmdesk.inspections import FREQUENCIES, ITEM_RESULTS, MONTHLY, NOMINAL_MONTH
from hub.api import uploads
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
from hub.api.routes_alarms import (
    change_stream,
    check_act,
    check_read,
    project_node,
    readable_projects,
)
from hub.api.schemas import ERRORS, Strict
from hub.store.inspections import TaskState

router = APIRouter(prefix="/api/inspections", tags=["inspections"])

PlanId = Annotated[int, Path(ge=1, le=2**62)]
TaskId = Annotated[int, Path(ge=1, le=2**62)]
Item = Annotated[str, Field(min_length=1, max_length=200)]
Frequency = Annotated[float | Literal["hourly", "daily", "weekly", "monthly"], Field(
    description="seconds between tasks (600 to 366 days), or hourly, daily, weekly, "
                "monthly (by the calendar: the same day of each month, clamped to the "
                "month's length, at the same local time)")]


def _every(v: float | str) -> tuple[float, str]:
    """(``every`` as stored, ``frequency``: ``monthly`` or empty)."""
    if v == MONTHLY:
        return NOMINAL_MONTH, MONTHLY
    every = FREQUENCIES[v] if isinstance(v, str) else float(v)
    if not 600 <= every <= 366 * 86400:
        raise invalid("every is 600 s to 366 days, or hourly, daily, weekly, monthly",
                      "body", "every")
    return every, ""


def _default_grace(every: float, frequency: str) -> float:
    """The whole period: for a monthly plan 0, read as until the next period begins."""
    return 0.0 if frequency == MONTHLY else every


class PlanIn(Strict):
    project: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=128)
    items: list[Item] = Field(min_length=1, max_length=100, description="what to check")
    every: Frequency
    grace: float | None = Field(default=None, ge=60, le=366 * 86400,
                                description="s after a period begins to do its task "
                                            "(default: the whole period)")
    start: float | None = Field(default=None, ge=0, le=1e11,
                                description="when the first period begins (default: now)")
    assignee: str = Field(default="", max_length=128)
    utc_offset_minutes: int | None = Field(
        default=None, ge=-720, le=840,
        description="monthly plans: the local time their calendar follows, fixed with the "
                    "plan (default: the project policy's, else 480)")


class PlanPatch(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=128)
    items: list[Item] | None = Field(default=None, min_length=1, max_length=100)
    every: Frequency | None = None
    grace: float | None = Field(default=None, ge=60, le=366 * 86400)
    assignee: str | None = Field(default=None, max_length=128)
    active: bool | None = None


class PlanOut(BaseModel):
    id: int
    project: str
    name: str
    items: list[str]
    every: float = Field(description="seconds (a monthly plan: a nominal 30 days)")
    frequency: str = Field(default="", description="monthly, or empty: every `every` s")
    utc_offset_minutes: int = 480
    grace: float = Field(description="s to do a task (0: until the next period begins)")
    start_ts: float
    next_ts: float
    assignee: str
    active: bool
    created_by: str
    created_ts: float
    updated_ts: float


class ItemResult(Strict):
    item: str = Field(min_length=1, max_length=200)
    result: Literal["ok", "problem", "not-applicable"]
    note: str = Field(default="", max_length=1000)


class HazardFromTask(Strict):
    category: str = Field(min_length=1, max_length=64)
    severity: str = Field(default=SEVERITIES[0], max_length=32)
    description: str = Field(min_length=1, max_length=4000)
    device: str = Field(default="", max_length=64)
    deadline: float | None = Field(default=None, ge=0, le=1e11)
    responsible: str = Field(default="", max_length=128)


class ResultIn(Strict):
    results: list[ItemResult] = Field(max_length=100, description="one per item checked")
    note: str = Field(default="", max_length=2000)
    hazard: HazardFromTask | None = Field(
        default=None, description="open a hazard (排查) for the problem found")


class TaskOut(BaseModel):
    id: int
    plan_id: int
    project: str
    plan_name: str
    due_ts: float
    deadline_ts: float
    state: Literal["open", "done", "missed"]
    done_by: str
    done_ts: float | None
    late: bool
    results: list[dict[str, Any]]
    problems: int
    note: str
    hazard_id: int | None
    items: list[str]
    assignee: str


class PhotoOut(BaseModel):
    id: int
    task_id: int
    item: str
    name: str
    content_type: str
    size: int
    sha256: str
    by: str
    ts: float


class TaskDetail(TaskOut):
    photos: list[PhotoOut] = Field(description="photos of the task's items, oldest first")


def _photo(f: dict[str, Any]) -> PhotoOut:
    return PhotoOut(**{k: v for k, v in f.items() if k != "path"})


async def _plan(ctx: Any, caller: Any, tree: Any, plan_id: int) -> dict[str, Any]:
    plan = await ctx.run(ctx.store.plan, plan_id)
    if plan is None:
        raise not_found("inspection plan")
    check_read(caller, tree, plan["project"], "inspection plan")
    return plan


def _manage(caller: Any, tree: Any, project: str) -> None:
    if not caller.can(tree, project_node(tree, project), "manager"):
        raise forbidden("inspection plans are set by the project's managers")


def _scope(caller: Any, tree: Any, project: str | None) -> set[str] | None:
    projects = readable_projects(caller, tree)
    if project is not None:
        projects = {project} if projects is None or project in projects else set()
    return projects


@router.post("/plans", response_model=PlanOut, status_code=201, responses=ERRORS)
async def create_plan(body: PlanIn, caller: Caller, tree: OrgTree, ctx: Ctx) -> PlanOut:
    """A plan for a project (manager or above): its first task is due at ``start``."""
    if body.project not in tree.by_code:
        raise not_found("project")
    check_read(caller, tree, body.project, "project")
    _manage(caller, tree, body.project)
    every, frequency = _every(body.every)
    grace = body.grace if body.grace is not None else _default_grace(every, frequency)
    now = ctx.hub.clock.seconds()
    start = body.start if body.start is not None else now
    offset = body.utc_offset_minutes
    if offset is None:
        policy = await ctx.run(ctx.store.policy, body.project)
        offset = int((policy or {}).get("utc_offset_minutes", 480))
    await ctx.audit(caller.name, "inspection.plan_created", body.project,
                    {"project": body.project, "name": body.name, "every": every,
                     "grace": grace, "items": body.items, "assignee": body.assignee}
                    | ({"frequency": frequency, "utc_offset_minutes": offset}
                       if frequency else {}))
    plan, _ = await ctx.run(ctx.store.plan_add, body.project, body.name, body.items, every,
                            grace, start, body.assignee, caller.name, now, frequency, offset)
    ctx.desk.plans_changed()
    return PlanOut(**plan)


@router.get("/plans", response_model=list[PlanOut], responses=ERRORS)
async def list_plans(caller: Caller, tree: OrgTree, ctx: Ctx,
                     project: Annotated[str | None, Query(max_length=64)] = None,
                     active: bool = False,
                     after: Annotated[int, Query(ge=0, le=2**62)] = 0,
                     limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[PlanOut]:
    rows = await ctx.run(ctx.store.plans, _scope(caller, tree, project), active_only=active,
                         after_id=after, limit=limit)
    return [PlanOut(**p) for p in rows]


@router.get("/plans/{plan_id}", response_model=PlanOut, responses=ERRORS)
async def get_plan(plan_id: PlanId, caller: Caller, tree: OrgTree, ctx: Ctx) -> PlanOut:
    return PlanOut(**await _plan(ctx, caller, tree, plan_id))


@router.patch("/plans/{plan_id}", response_model=PlanOut, responses=ERRORS)
async def change_plan(plan_id: PlanId, body: PlanPatch, caller: Caller, tree: OrgTree,
                      ctx: Ctx) -> PlanOut:
    """Change a plan (manager or above); ``active: false`` stops its tasks (the periods it
    is idle are skipped, not missed); a new ``every`` counts from now."""
    plan = await _plan(ctx, caller, tree, plan_id)
    _manage(caller, tree, plan["project"])
    changes = body.model_dump(exclude_none=True)
    if "every" in changes:
        changes["every"], changes["frequency"] = _every(changes["every"])
        if "grace" not in changes and plan["grace"] == _default_grace(plan["every"],
                                                                     plan["frequency"]):
            changes["grace"] = _default_grace(changes["every"], changes["frequency"])
    if not changes:
        raise invalid("change at least one field", "body")
    await ctx.audit(caller.name, "inspection.plan_changed", str(plan_id),
                    {"project": plan["project"], **changes})
    plan, _ = await ctx.run(ctx.store.plan_update, plan_id, changes, caller.name,
                            ctx.hub.clock.seconds())
    ctx.desk.plans_changed()
    return PlanOut(**plan)


@router.get("/tasks", response_model=list[TaskOut], responses=ERRORS)
async def list_tasks(caller: Caller, tree: OrgTree, ctx: Ctx,
                     project: Annotated[str | None, Query(max_length=64)] = None,
                     state: Literal["open", "done", "missed"] | None = None,
                     plan: Annotated[int | None, Query(ge=1, le=2**62)] = None,
                     since: Annotated[float | None, Query(ge=0, le=1e11)] = None,
                     until: Annotated[float | None, Query(ge=0, le=1e11)] = None,
                     after: Annotated[int, Query(ge=0, le=2**62)] = 0,
                     limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[TaskOut]:
    """Tasks in id order (``since``/``until`` by when they fall due), in the caller's
    scope; ``state=missed`` lists the ones not done in time."""
    rows = await ctx.run(ctx.store.tasks, _scope(caller, tree, project), state=state,
                         plan_id=plan, since=since, until=until, after_id=after, limit=limit)
    return [TaskOut(**t) for t in rows]


@router.get("/stream", responses={**ERRORS, 200: {
    "description": "Server-Sent Events: `event: inspection`, `id:` the change's seq, `data:` "
                   "the change (`action`: plan.created, plan.updated, task.created, "
                   "task.missed, task.done) with the task after it under `task`",
    "content": {"text/event-stream": {"schema": {"type": "string"}}}}})
async def stream_inspections(caller: Caller, tree: OrgTree, ctx: Ctx,
                             after: ResumeAfter = None, idle_timeout: IdleTimeout = None,
                             last_event_id: LastEventId = None) -> Any:
    projects = readable_projects(caller, tree)
    after = resume_after(after, last_event_id)
    if after is None:
        after = await ctx.run(ctx.store.last_inspection_change)

    async def render(row: dict[str, Any]) -> dict[str, Any]:
        task = await ctx.run(ctx.store.task, row["task_id"]) if row["task_id"] else None
        return {**row, "task": TaskOut(**task).model_dump() if task else None}

    return change_stream(ctx, "inspection",
                         lambda cursor: ctx.store.inspection_changes(cursor, projects),
                         render, after, idle_timeout)


async def _task(ctx: Any, caller: Any, tree: Any, task_id: int, act: bool
                ) -> dict[str, Any]:
    task = await ctx.run(ctx.store.task, task_id)
    if task is None:
        raise not_found("inspection task")
    (check_act if act else check_read)(caller, tree, task["project"], "inspection task")
    return task


@router.get("/tasks/{task_id}", response_model=TaskDetail, responses=ERRORS)
async def get_task(task_id: TaskId, caller: Caller, tree: OrgTree, ctx: Ctx) -> TaskDetail:
    task = await _task(ctx, caller, tree, task_id, act=False)
    photos = await ctx.run(ctx.store.inspection_files, task_id)
    return TaskDetail(**task, photos=[_photo(f) for f in photos])


@router.post("/tasks/{task_id}/files", response_model=PhotoOut, status_code=201,
             responses={**ERRORS, **uploads.RESPONSES}, openapi_extra=uploads.BODY)
async def add_photo(task_id: TaskId, request: Request, caller: Caller, tree: OrgTree,
                    ctx: Ctx,
                    item: Annotated[str, Query(min_length=1, max_length=200,
                                               description="the plan's item it shows")],
                    name: Annotated[str, Query(min_length=1, max_length=128,
                                               pattern=r"^[^/\\\x00]+$")] = "photo"
                    ) -> PhotoOut:
    """A photo (or document) of one item of the task (operator or above; the raw body,
    JPEG, PNG or PDF, at most 1 MiB), before or after its results are recorded."""
    task = await _task(ctx, caller, tree, task_id, act=True)
    if item not in task["items"]:
        raise invalid(f"not an item of the plan: {item!r}", "query", "item")
    up, now, path = await uploads.receive(
        request, ctx, caller.name, "inspection.photo_added", str(task_id),
        {"project": task["project"], "plan_id": task["plan_id"], "item": item, "name": name},
        "inspections", str(task_id))
    file_id = await ctx.run(ctx.store.inspection_file_add, task_id, item, name,
                            up.content_type, len(up.data), up.sha256, path, caller.name, now)
    return PhotoOut(id=file_id, task_id=task_id, item=item, name=name,
                    content_type=up.content_type, size=len(up.data), sha256=up.sha256,
                    by=caller.name, ts=now)


@router.get("/tasks/{task_id}/files/{file_id}", response_class=FileResponse,
            responses={**ERRORS, **uploads.DOWNLOAD})
async def get_photo(task_id: TaskId, file_id: uploads.FileId, caller: Caller,
                    tree: OrgTree, ctx: Ctx) -> FileResponse:
    await _task(ctx, caller, tree, task_id, act=False)
    return await uploads.send(ctx, ctx.store.inspection_files, task_id, file_id, "photo")


@router.post("/tasks/{task_id}/result", response_model=TaskOut, responses={
    **ERRORS, 409: {"description": "the task was recorded already"}})
async def record_result(task_id: TaskId, body: ResultIn, caller: Caller, tree: OrgTree,
                        ctx: Ctx) -> TaskOut:
    """Record what was found (operator or above). A missed task may still be recorded: it
    is then ``late``. With ``hazard`` a hazard (排查, found) is opened and linked."""
    task = await ctx.run(ctx.store.task, task_id)
    if task is None:
        raise not_found("inspection task")
    check_act(caller, tree, task["project"], "inspection task")
    if task["state"] == "done":
        raise HTTPException(409, f"task {task_id} was recorded already by {task['done_by']}")
    unknown = [r.item for r in body.results if r.item not in task["items"]]
    if unknown:
        raise invalid(f"not an item of the plan: {unknown[0]!r}", "body", "results")
    if body.hazard is not None and body.hazard.severity not in SEVERITIES:
        raise invalid(f"severity is one of {', '.join(SEVERITIES)}", "body", "hazard",
                      "severity")
    results = [r.model_dump() for r in body.results]
    now = ctx.hub.clock.seconds()
    await ctx.audit(caller.name, "inspection.task_done", str(task_id), {
        "project": task["project"], "plan_id": task["plan_id"], "late": task["state"] ==
        "missed", "problems": sum(r["result"] == "problem" for r in results),
        "hazard": body.hazard.model_dump() if body.hazard else None})
    hazard_id = None
    if body.hazard is not None:
        h = body.hazard
        hazard = await ctx.run(ctx.store.hazard_add, task["project"], h.device, None,
                               h.category, h.severity, h.description, h.deadline,
                               h.responsible, caller.name, now,
                               f"found by inspection task {task_id}")
        hazard_id = hazard.id
    try:
        done, _ = await ctx.run(ctx.store.task_record, task_id, results, body.note,
                                caller.name, now, hazard_id)
    except TaskState as e:
        raise HTTPException(409, str(e)) from None
    ctx.desk.poke()
    return TaskOut(**done)


__all__ = ["ITEM_RESULTS", "router"]
