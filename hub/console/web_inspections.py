"""The console's inspections (巡查), in the hazards area: plans per project (listed; made and
changed by managers), their tasks by state (open, done, missed) with filters, and a task's
result recorded item by item, where a problem found may open a hazard at once.

Every read and act is the API's own route function (:mod:`hub.api.routes_inspections`)
called with the user's principal: scope, roles, the 409 of a task recorded already and the
audit log are the API's.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from hub.alarmdesk.hazards import SEVERITIES
from hub.alarmdesk.inspections import FREQUENCIES, ITEM_RESULTS, MONTHLY, TASK_STATES
from hub.api import routes_inspections as api
from hub.console.auth import Session, check_post
from hub.console.forms import (
    fetch_one,
    field_errors,
    inline,
    problem,
    redirect,
    upload_answer,
)
from hub.console.render import render
from hub.console.web import ctx_of, error_page, need, posted, project_list, translator
from hub.console.web_desk import _deadline

router = APIRouter(include_in_schema=False)

SHOWN = 200
EVERY = {v: k for k, v in FREQUENCIES.items()}


def _refusal(t: Any, e: Exception) -> str:
    if isinstance(e, ValidationError):
        return "; ".join(f"{t('insp.' + k) if t.has('insp.' + k) else k}: {v}"
                         for k, v in field_errors(e).items())
    assert isinstance(e, HTTPException)
    return t("insp.refused", reason=problem(e.detail))


def _every_changed(every: str, p: Any) -> bool:
    if not every:
        return False
    if p.frequency == MONTHLY or every == MONTHLY:
        return every != p.frequency
    return FREQUENCIES.get(every) != p.every


def _items(text: str) -> list[str]:
    return [line.strip()[:200] for line in text.splitlines() if line.strip()]


async def _tasks(ctx: Any, s: Session, project: str, state: str | None,
                 plan: int | None) -> list[Any]:
    """The newest ``SHOWN`` tasks (the API lists them in id order)."""
    kept: list[Any] = []
    after = 0
    for _ in range(50):
        page = await api.list_tasks(s.principal, s.tree, ctx, project=project or None,
                                    state=state, plan=plan, since=None, until=None,  # type: ignore[arg-type]
                                    after=after, limit=1000)
        kept = (kept + page)[-SHOWN:]
        if len(page) < 1000:
            break
        after = page[-1].id
    return sorted(kept, key=lambda x: (-x.due_ts, -x.id))


@router.get("/inspections")
async def inspections(request: Request, state: str = "open", project: str = "",
                      plan: str = "", error: str = "", done: str = "") -> Response:
    s = await need(request)
    ctx = ctx_of(request)
    t = translator(request)
    state = state if state in TASK_STATES else "open"
    project = project[:64]
    plan_id = int(plan) if plan.isdigit() and 1 <= int(plan) <= 2**62 else None
    counts, rows = {}, []
    for st in TASK_STATES:
        items = await _tasks(ctx, s, project, st, plan_id)
        counts[st] = len(items)
        if st == state:
            rows = items
    plans = await api.list_plans(s.principal, s.tree, ctx, project=project or None,
                                 active=False, after=0, limit=1000)
    projects = await project_list(s)
    notice = {"created": t("insp.plan_created"), "changed": t("insp.plan_changed"),
              "recorded": t("insp.recorded")}.get(done, "")
    return render(request, "inspections.html", t, s, rows=rows, counts=counts, state=state,
                  states=TASK_STATES, plans=plans, projects=projects,
                  f={"project": project, "plan": plan_id or ""}, every=EVERY,
                  managed=[p for p in projects if s.can(p.code, "manager")],
                  may_manage={p.project: s.can(p.project, "manager") for p in plans},
                  error=error[:500], notice=notice)


@router.post("/inspections/plans")
async def plan_new(request: Request) -> Response:
    s, form, t = await posted(request)
    try:
        grace = str(form.get("grace", "")).strip()
        body = api.PlanIn(project=str(form.get("project", ""))[:64],
                          name=str(form.get("name", ""))[:128],
                          items=_items(str(form.get("items", ""))[:20000]),
                          every=str(form.get("every", "")),  # type: ignore[arg-type]
                          grace=float(grace) * 3600 if grace else None,
                          assignee=str(form.get("assignee", ""))[:128])
        await api.create_plan(body, s.principal, s.tree, ctx_of(request))
    except ValueError as e:  # ValidationError is one
        return redirect("/inspections", error=_refusal(t, e) if isinstance(e, ValidationError)
                   else t("form.invalid"))
    except HTTPException as e:
        return redirect("/inspections", error=_refusal(t, e))
    return redirect("/inspections", project=body.project, done="created")


@router.get("/inspections/plans/{plan_id}")
async def plan_page(request: Request, plan_id: int, error: str = "") -> Response:
    s = await need(request)
    t = translator(request)
    try:
        p = await fetch_one(api.get_plan, plan_id, s, ctx_of(request))
    except HTTPException as e:
        return error_page(request, t, s, e, "insp.no_plan")
    return render(request, "inspection_plan.html", t, s, p=p, every=EVERY,
                  may_manage=s.can(p.project, "manager"), error=error[:500], notice="")


@router.post("/inspections/plans/{plan_id}")
async def plan_change(request: Request, plan_id: int) -> Response:
    s, form, t = await posted(request)
    here = f"/inspections/plans/{plan_id}"
    try:
        p = await fetch_one(api.get_plan, plan_id, s, ctx_of(request))
        grace = str(form.get("grace", "")).strip()
        every = str(form.get("every", ""))
        body = api.PlanPatch(
            name=str(form.get("name", ""))[:128] or None,
            items=_items(str(form.get("items", ""))[:20000]) or None,
            every=every if _every_changed(every, p) else None,  # type: ignore[arg-type]
            grace=float(grace) * 3600 if grace else None,
            assignee=str(form.get("assignee", ""))[:128],
            active=form.get("active") == "1")
        await api.change_plan(plan_id, body, s.principal, s.tree, ctx_of(request))
    except ValueError as e:
        return redirect(here, error=_refusal(t, e) if isinstance(e, ValidationError)
                   else t("form.invalid"))
    except HTTPException as e:
        if e.status_code == 404:
            raise
        return redirect(here, error=_refusal(t, e))
    return redirect("/inspections", project=p.project, done="changed")


@router.get("/inspections/tasks/{task_id}")
async def task_page(request: Request, task_id: int, error: str = "") -> Response:
    s = await need(request)
    t = translator(request)
    try:
        task = await fetch_one(api.get_task, task_id, s, ctx_of(request))
    except HTTPException as e:
        return error_page(request, t, s, e, "insp.no_task")
    index = await ctx_of(request).device_index()
    devices = sorted((d for d in index.by_id.values() if d.project == task.project),
                     key=lambda d: d.name)[:500]
    return render(request, "inspection_task.html", t, s, task=task, results=ITEM_RESULTS,
                  severities=SEVERITIES, devices=devices,
                  may_act=s.can(task.project, "operator") and task.state != "done",
                  may_photo=s.can(task.project, "operator"), error=error[:500], notice="")


@router.post("/ui/inspections/tasks/{task_id}/files")
async def task_photo_upload(request: Request, task_id: int, item: str = "",
                            name: str = "photo") -> Response:
    """A photo of one item as the raw body (the API's own upload, its 413/415/422 as the
    user's words)."""
    s = await need(request)
    await check_post(request, s, None)
    return await upload_answer(translator(request), api.add_photo(
        task_id, request, s.principal, s.tree, ctx_of(request), item=item[:200],
        name=name[:128] or "photo"), "insp.refused")


@router.get("/ui/inspections/tasks/{task_id}/files/{file_id}")
async def task_photo(request: Request, task_id: int, file_id: int) -> Response:
    s = await need(request)
    if not (1 <= task_id <= 2**62 and 1 <= file_id <= 2**62):
        raise HTTPException(404, "no photo")
    return inline(await api.get_photo(task_id, file_id, s.principal, s.tree,
                                      ctx_of(request)))


@router.post("/inspections/tasks/{task_id}")
async def task_record(request: Request, task_id: int) -> Response:
    s, form, t = await posted(request)
    here = f"/inspections/tasks/{task_id}"
    try:
        task = await fetch_one(api.get_task, task_id, s, ctx_of(request))
        results = []
        for i, item in enumerate(task.items):
            r = str(form.get(f"r{i}", ""))
            if r:
                results.append(api.ItemResult(item=item, result=r,  # type: ignore[arg-type]
                                              note=str(form.get(f"n{i}", ""))[:1000]))
        if len(results) < len(task.items):
            return redirect(here, error=t("insp.every_item"))
        hazard = None
        if form.get("open_hazard") == "1":
            hazard = api.HazardFromTask(
                category=str(form.get("category", ""))[:64],
                severity=str(form.get("severity", SEVERITIES[0]))[:32],
                description=str(form.get("description", ""))[:4000],
                device=str(form.get("device", ""))[:64],
                deadline=_deadline(str(form.get("deadline", ""))[:10]),
                responsible=str(form.get("responsible", ""))[:128])
        body = api.ResultIn(results=results, note=str(form.get("note", ""))[:2000],
                            hazard=hazard)
        done = await api.record_result(task_id, body, s.principal, s.tree, ctx_of(request))
    except ValueError as e:
        return redirect(here, error=_refusal(t, e) if isinstance(e, ValidationError)
                   else t("hazard.bad_date"))
    except HTTPException as e:
        if e.status_code == 404:
            raise
        return redirect(here, error=_refusal(t, e))
    if done.hazard_id:
        return RedirectResponse(f"/hazards/{done.hazard_id}?done=opened", status_code=303)
    return redirect("/inspections", project=done.project, state="done", done="recorded")
