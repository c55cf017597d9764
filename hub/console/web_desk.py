"""The console's alarm records (报警记录) and hazards (隐患管理): lists, details, single and
batch acts, hazards opened from an alarm, transitions and attachments.

As everywhere in the console, every read and act calls the API's own route function
(:mod:`hub.api.routes_alarms`, :mod:`hub.api.routes_hazards`) with the user's principal:
scope, roles, the 409 of an illegal act and the audit log are the API's.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import ValidationError

from hub.alarmdesk.hazards import SEVERITIES, STATES, TRANSITIONS
from hub.api import routes_alarms, routes_devices, routes_hazards
from hub.console.auth import Session, check_post
from hub.console.forms import field_errors, inline, problem, upload_answer
from hub.console.render import render
from hub.console.web import ctx_of, error_page, need, posted, project_list, translator

router = APIRouter(include_in_schema=False)

ALARM_STATES = ("active-unacknowledged", "active-acknowledged", "cleared-unacknowledged",
                "cleared-acknowledged")
BATCH_ACTS = ("acknowledge", "handle")
ACTS = ("acknowledge", "handle", "comment", "assign")
PERIODS = {"24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400, "all": None}
#: the newest records a list shows (narrow the filters for older ones)
SHOWN = 200
SCAN = 20_000
#: the quantity an alarm code is about (its curve on the detail page)
CODE_QUANTITY = {"temperature": "temperature", "residual_current": "residual_current",
                 "overcurrent": "current", "overvoltage": "voltage",
                 "undervoltage": "voltage"}
AROUND = 1800.0  # s of readings shown before and after an alarm
HAZARD_FIELDS = ("project", "device", "category", "severity", "description", "deadline",
                 "responsible")


def _back(path: str) -> str:
    return path if path.startswith("/") and not path.startswith("//") else "/"


# ------------------------------------------------------------------ alarm records

async def _alarm_rows(ctx: Any, s: Session, f: dict[str, str]) -> tuple[list[Any], bool]:
    """The newest ``SHOWN`` records matching the filters, newest first; and whether older
    ones were left out."""
    period = PERIODS.get(f["period"], PERIODS["7d"])
    since = time.time() - period if period else None
    kept: list[Any] = []
    after, scanned = 0, 0
    while scanned < SCAN:
        page = await routes_alarms.list_alarms(
            s.principal, s.tree, ctx, after=after, limit=1000, state=f["state"] or None,
            open=f["open"] == "1", kind=f["kind"] or None, device=f["device"] or None,
            project=f["project"] or None, since=since, until=None)
        kept.extend(page.items)
        kept = kept[-SHOWN - 1:]
        scanned += len(page.items)
        if len(page.items) < 1000:
            break
        after = page.next_after
    more = len(kept) > SHOWN
    return list(reversed(kept[-SHOWN:])), more


@router.get("/events")
async def alarms(request: Request, project: str = "", state: str = "", kind: str = "",
                 device: str = "", open: str = "", period: str = "7d", done: str = "",
                 n: int = 0, error: str = "") -> Response:
    s = await need(request)
    ctx = ctx_of(request)
    t = translator(request)
    f = {"project": project[:64], "state": state if state in ALARM_STATES else "",
         "kind": kind if kind in ("alarm", "fault") else "", "device": device[:64],
         "open": "1" if open == "1" else "", "period": period if period in PERIODS else "7d"}
    rows, more = await _alarm_rows(ctx, s, f)
    index = await ctx.device_index()
    may_act = {p: s.can(p, "operator") for p in {r.project for r in rows}}
    notice = t("alarms.done", n=n, action=t("act." + done)) if done in ACTS and n else ""
    return render(request, "alarms.html", t, s, rows=rows, more=more, f=f,
                  projects=await project_list(s), names=index.by_id, may_act=may_act,
                  any_act=any(may_act.values()), states=ALARM_STATES, periods=list(PERIODS),
                  acts=BATCH_ACTS, notice=notice, error=error[:500],
                  back=str(request.url.path) + ("?" + request.url.query
                                                if request.url.query else ""))


@router.post("/alarms/actions")
async def alarms_batch(request: Request) -> Response:
    """One act on the records ticked in the list: the API checks them all before doing
    any (one out of scope or in the wrong state: nothing is done, and the page says why)."""
    s, form, t = await posted(request)
    back = _back(str(form.get("back", "/alarms")))
    sep = "&" if "?" in back else "?"
    try:
        ids = [int(str(v)) for v in form.getlist("ids")][:routes_alarms.MAX_BATCH]
        body = routes_alarms.BatchIn(
            ids=ids, action=str(form.get("action", "")), note=str(form.get("note", "")),
            cause=str(form.get("cause", "")), action_taken=str(form.get("action_taken", "")))
    except (ValueError, ValidationError):
        msg = t("alarms.pick") if not form.getlist("ids") else t("form.invalid")
        return RedirectResponse(f"{back}{sep}{urlencode({'error': msg})}", status_code=303)
    try:
        out = await routes_alarms.act_batch(body, s.principal, s.tree, ctx_of(request))
    except HTTPException as e:
        msg = t("alarms.refused", reason=problem(e.detail))
        return RedirectResponse(f"{back}{sep}{urlencode({'error': msg})}", status_code=303)
    changed = sum(1 for o in out if o.changed)
    return RedirectResponse(f"{back}{sep}{urlencode({'done': body.action, 'n': changed})}",
                            status_code=303)


async def _alarm(request: Request, s: Session, alarm_id: int) -> Any:
    if not 1 <= alarm_id <= 2**62:
        raise HTTPException(404, "no alarm")
    return await routes_alarms.get_alarm(alarm_id, s.principal, s.tree, ctx_of(request))


@router.get("/alarms/{alarm_id}")
async def alarm_page(request: Request, alarm_id: int, error: str = "",
                     done: str = "") -> Response:
    s = await need(request)
    ctx = ctx_of(request)
    t = translator(request)
    try:
        a = await _alarm(request, s, alarm_id)
    except HTTPException as e:
        return error_page(request, t, s, e, "error.no_alarm")
    index = await ctx.device_index()
    hazards = [h for h in await routes_hazards.list_hazards(
        s.principal, s.tree, ctx, state=None, project=a.project, overdue=False, after=0,
        limit=1000) if h.alarm_id == a.id]
    return render(request, "alarm.html", t, s, a=a, d=index.by_id.get(a.device),
                  may_act=s.can(a.project, "operator"), acts=ACTS, hazards=hazards,
                  severities=SEVERITIES, error=error[:500],
                  notice=t("alarm.act_done", action=t("act." + done)) if done in ACTS else "",
                  quantity=CODE_QUANTITY.get(a.code))


@router.post("/alarms/{alarm_id}/actions")
async def alarm_act(request: Request, alarm_id: int, action: str = Form(max_length=32),
                    csrf: str = Form(max_length=128), note: str = Form("", max_length=2000),
                    cause: str = Form("", max_length=2000),
                    action_taken: str = Form("", max_length=2000),
                    assignee: str = Form("", max_length=256)) -> Response:
    s = await need(request)
    await check_post(request, s, csrf)
    t = translator(request)
    here = f"/alarms/{alarm_id}"
    try:
        body = routes_alarms.ActIn(action=action, note=note, cause=cause,  # type: ignore[arg-type]
                                   action_taken=action_taken, assignee=assignee)
        await routes_alarms.act(alarm_id, body, s.principal, s.tree, ctx_of(request))
    except ValidationError as e:
        msg = "; ".join(f"{k}: {v}" for k, v in field_errors(e).items())
        return RedirectResponse(f"{here}?{urlencode({'error': msg})}", status_code=303)
    except HTTPException as e:
        if e.status_code == 404:
            raise
        msg = t("alarms.refused", reason=problem(e.detail))
        return RedirectResponse(f"{here}?{urlencode({'error': msg})}", status_code=303)
    return RedirectResponse(f"{here}?done={action}", status_code=303)


@router.get("/ui/alarms/{alarm_id}/curve")
async def alarm_curve(request: Request, alarm_id: int) -> Response:
    """The readings of the alarm's quantity around it, and the alarm's span to mark."""
    s = await need(request)
    a = await _alarm(request, s, alarm_id)
    quantity = CODE_QUANTITY.get(a.code)
    if quantity is None:
        return JSONResponse({"points": [], "quantity": None})
    now = time.time()
    end = min(now, (a.cleared_ts or max(a.last_ts, now if a.open else a.last_ts)) + AROUND)
    since = a.first_ts - AROUND
    h = await routes_devices.history(a.device, s.principal, s.tree, ctx_of(request),
                                     quantity=quantity, since=since, until=max(end, since + 60),
                                     channel=a.channel or None, points=300)
    return JSONResponse({"quantity": quantity, "points": [p.model_dump() for p in h.points],
                         "from": a.first_ts, "to": a.cleared_ts or (now if a.open else a.last_ts),
                         "value": a.value})


@router.post("/alarms/{alarm_id}/hazard")
async def hazard_from_alarm(request: Request, alarm_id: int) -> Response:
    return await _hazard_post(request, f"/alarms/{alarm_id}", alarm_id=alarm_id,
                              project="")


# ------------------------------------------------------------------ hazards

def _deadline(text: str) -> float | None:
    """A date (YYYY-MM-DD) from the form: its end, local time."""
    if not text:
        return None
    day = datetime.strptime(text, "%Y-%m-%d")
    return day.replace(hour=23, minute=59, second=59).astimezone().timestamp()


async def _open_hazard(request: Request, s: Session, values: dict[str, Any],
                       back: str) -> Response:
    t = translator(request)
    try:
        deadline = _deadline(values.pop("deadline", ""))
    except ValueError:
        return RedirectResponse(f"{back}?{urlencode({'error': t('hazard.bad_date')})}",
                                status_code=303)
    try:
        body = routes_hazards.HazardIn(**{k: v for k, v in values.items()
                                          if v not in ("", None)}, deadline=deadline)
        h = await routes_hazards.open_hazard(body, s.principal, s.tree, ctx_of(request))
    except ValidationError as e:
        msg = "; ".join(f"{t('hazard.' + k) if t.has('hazard.' + k) else k}: {v}"
                        for k, v in field_errors(e).items())
        return RedirectResponse(f"{back}?{urlencode({'error': msg})}", status_code=303)
    except HTTPException as e:
        msg = t("hazard.refused", reason=problem(e.detail))
        return RedirectResponse(f"{back}?{urlencode({'error': msg})}", status_code=303)
    return RedirectResponse(f"/hazards/{h.id}?done=opened", status_code=303)


@router.get("/hazards")
async def hazards(request: Request, state: str = "found", project: str = "",
                  overdue: str = "", error: str = "") -> Response:
    s = await need(request)
    ctx = ctx_of(request)
    t = translator(request)
    state = state if state in STATES else "found"
    project = project[:64]
    counts, rows = {}, []
    for st in STATES:
        items = await routes_hazards.list_hazards(
            s.principal, s.tree, ctx, state=st, project=project or None,  # type: ignore[arg-type]
            overdue=overdue == "1", after=0, limit=1000)
        counts[st] = len(items)
        if st == state:
            rows = sorted(items, key=lambda h: -h.created_ts)
    projects = await project_list(s)
    index = await ctx.device_index()
    return render(request, "hazards.html", t, s, rows=rows, counts=counts, state=state,
                  states=STATES, f={"project": project, "overdue": overdue == "1"},
                  projects=projects, names=index.by_id, severities=SEVERITIES,
                  openable=[p for p in projects if s.can(p.code, "operator")], error=error)


@router.post("/hazards")
async def hazard_new(request: Request) -> Response:
    return await _hazard_post(request, "/hazards")


async def _hazard_post(request: Request, back: str, **fixed: Any) -> Response:
    """A hazard form (by hand, or from an alarm with ``fixed`` alarm_id)."""
    s, form, _ = await posted(request)
    values: dict[str, Any] = {k: str(form.get(k, ""))[:8000] for k in HAZARD_FIELDS}
    return await _open_hazard(request, s, {**values, **fixed}, back)


@router.get("/hazards/{hazard_id}")
async def hazard_page(request: Request, hazard_id: int, error: str = "",
                      done: str = "") -> Response:
    s = await need(request)
    ctx = ctx_of(request)
    t = translator(request)
    try:
        if not 1 <= hazard_id <= 2**62:
            raise HTTPException(404, "no hazard")
        h = await routes_hazards.get_hazard(hazard_id, s.principal, s.tree, ctx)
    except HTTPException as e:
        return error_page(request, t, s, e, "error.no_hazard")
    index = await ctx.device_index()
    notice = {"opened": t("hazard.opened"), "moved": t("hazard.moved")}.get(done, "")
    return render(request, "hazard.html", t, s, h=h, d=index.by_id.get(h.device),
                  may_act=s.can(h.project, "operator"), moves=TRANSITIONS[h.state],
                  severities=SEVERITIES,
                  error=error[:500], notice=notice)


@router.post("/hazards/{hazard_id}/move")
async def hazard_move(request: Request, hazard_id: int, to: str = Form(max_length=32),
                      csrf: str = Form(max_length=128),
                      note: str = Form("", max_length=2000)) -> Response:
    s = await need(request)
    await check_post(request, s, csrf)
    t = translator(request)
    here = f"/hazards/{hazard_id}"
    try:
        body = routes_hazards.TransitionIn(to=to, note=note)  # type: ignore[arg-type]
        await routes_hazards.move_hazard(hazard_id, body, s.principal, s.tree,
                                         ctx_of(request))
    except ValidationError:
        return RedirectResponse(f"{here}?{urlencode({'error': t('form.invalid')})}",
                                status_code=303)
    except HTTPException as e:
        if e.status_code == 409 and isinstance(e.detail, dict):
            allowed = [t("hstate." + a) for a in e.detail.get("allowed", [])]
            msg = t("hazard.conflict", state=t("hstate." + str(e.detail.get("state", ""))),
                    allowed="、".join(allowed) or t("hazard.none_allowed"))
        else:
            msg = t("hazard.refused", reason=problem(e.detail))
        return RedirectResponse(f"{here}?{urlencode({'error': msg})}", status_code=303)
    return RedirectResponse(f"{here}?done=moved", status_code=303)


@router.post("/ui/hazards/{hazard_id}/files")
async def hazard_upload(request: Request, hazard_id: int, name: str = "file") -> Response:
    """The photo as the raw body (the API's own upload: its 413 and 415 come back as
    the user's words)."""
    s = await need(request)
    await check_post(request, s, None)
    return await upload_answer(translator(request), routes_hazards.add_file(
        hazard_id, request, s.principal, s.tree, ctx_of(request), name=name[:128] or "file"),
        "hazard.refused")


@router.get("/ui/hazards/{hazard_id}/files/{file_id}")
async def hazard_file(request: Request, hazard_id: int, file_id: int) -> Response:
    s = await need(request)
    if not (1 <= hazard_id <= 2**62 and 1 <= file_id <= 2**62):
        raise HTTPException(404, "no file")
    return inline(await routes_hazards.get_file(hazard_id, file_id, s.principal, s.tree,
                                                ctx_of(request)))



