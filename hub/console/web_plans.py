"""A project's page with its floor plan (平面图): an image uploaded per project (type and
size checked by content, as hazard attachments are), the project's devices placed on it
by clicking, each shown with its live state by colour, icon and text.

The plan and the places live in the platform store (:mod:`hub.store.console`), the image
under ``<state_dir>/floorplans/``. Uploading and placing need the manager role on the
project (the API's own check) and are written to the signed audit log like the API's acts.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from hub.alarmdesk.hazards import file_type
from hub.api import routes_devices, routes_events
from hub.api.routes_hazards import MAX_FILE
from hub.console.auth import Session, check_post
from hub.console.render import render
from hub.console.web import ctx_of, need, project_list, translator

router = APIRouter(include_in_schema=False)

MAX_PLAN = MAX_FILE  # bytes, as a hazard photo (the API refuses larger bodies anyway)
PLAN_TYPES = ("image/png", "image/jpeg")
ICONS = {"alarm": "⚠", "fault": "⚙", "off": "✕", "ok": "✓"}


async def _project(s: Session, code: str) -> Any:
    for p in await project_list(s):
        if p.code == code:
            return p
    raise HTTPException(404, "no project (or not in your scope)")


async def device_states(request: Request, s: Session, code: str) -> list[dict[str, Any]]:
    """The project's devices with their worst live state: alarm > fault > offline > ok."""
    ctx = ctx_of(request)
    page = await routes_devices.list_devices(
        s.principal, s.tree, ctx, q=None, project=code, model=None, transport=None,
        online=None, alarm=None, source=None, offset=0, limit=500)
    active = await routes_events.active_events(s.principal, s.tree, ctx, kind=None)
    kinds: dict[str, set[str]] = {}
    for e in active:
        kinds.setdefault(e.device, set()).add(e.kind)
    out = []
    for d in page.items:
        k = kinds.get(d.id, set())
        state = "alarm" if "alarm" in k else "fault" if "fault" in k else \
            "off" if d.online is False else "ok"
        out.append({"d": d, "state": state, "icon": ICONS[state]})
    return out


async def _plan_values(request: Request, s: Session, code: str) -> dict[str, Any]:
    ctx = ctx_of(request)
    plan = await ctx.run(ctx.store.floor_plan, code)
    spots = await ctx.run(ctx.store.floor_spots, code)
    states = await device_states(request, s, code)
    return {"plan": plan, "spots": spots, "states": states,
            "placed": [x for x in states if x["d"].id in spots]}


@router.get("/projects/{code}")
async def project_page(request: Request, code: str) -> Response:
    s = await need(request)
    t = translator(request)
    try:
        p = await _project(s, code[:64])
    except HTTPException:
        return render(request, "error.html", t, s, status_code=404,
                      message=t("error.no_project"))
    values = await _plan_values(request, s, p.code)
    return render(request, "project.html", t, s, p=p, may_manage=s.can(p.code, "manager"),
                  max_plan=MAX_PLAN // (1024 * 1024), **values)


@router.get("/projects/{code}/plan")
async def plan_link(request: Request, code: str) -> Response:
    from fastapi.responses import RedirectResponse
    return RedirectResponse(f"/projects/{code}#plan", status_code=303)


@router.get("/ui/projects/{code}/plan")
async def plan_partial(request: Request, code: str) -> Response:
    s = await need(request)
    p = await _project(s, code[:64])
    return render(request, "partials/plan.html", translator(request), s, p=p,
                  may_manage=s.can(p.code, "manager"), **await _plan_values(request, s, p.code))


@router.get("/ui/projects/{code}/plan.img")
async def plan_image(request: Request, code: str) -> Response:
    s = await need(request)
    p = await _project(s, code[:64])
    ctx = ctx_of(request)
    plan = await ctx.run(ctx.store.floor_plan, p.code)
    if plan is None or not os.path.exists(plan["path"]):
        raise HTTPException(404, "no floor plan")
    return FileResponse(plan["path"], media_type=plan["content_type"])


@router.post("/ui/projects/{code}/plan")
async def plan_upload(request: Request, code: str, name: str = "plan") -> Response:
    """The image as the raw body, as a hazard's photo: PNG or JPEG by content."""
    s = await need(request)
    await check_post(request, s, None)
    t = translator(request)
    p = await _project(s, code[:64])
    if not s.can(p.code, "manager"):
        return JSONResponse({"error": t("plan.need_manager")}, status_code=403)
    data = await request.body()
    if len(data) > MAX_PLAN:
        return JSONResponse({"error": t("plan.too_large", mb=MAX_PLAN // (1024 * 1024))},
                            status_code=413)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    ext = file_type(content_type, data[:16]) if content_type in PLAN_TYPES else None
    if ext is None:
        return JSONResponse({"error": t("plan.bad_type")}, status_code=415)
    ctx = ctx_of(request)
    digest = hashlib.sha256(data).hexdigest()
    folder = os.path.join(ctx.hub.config.state_dir, "floorplans")
    path = os.path.join(folder, f"{p.code}-{digest[:16]}.{ext}")

    def write() -> None:
        os.makedirs(folder, exist_ok=True)
        with open(path + ".tmp", "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(path + ".tmp", path)
    await ctx.audit(s.name, "floor_plan.uploaded", p.code,
                    {"name": name[:128], "sha256": digest, "size": len(data)})
    await ctx.run(write)
    await ctx.run(ctx.store.set_floor_plan, p.code, name[:128], content_type, len(data),
                  digest, path, s.name, ctx.hub.clock.seconds())
    return JSONResponse({"ok": True})


@router.post("/ui/projects/{code}/spots")
async def place(request: Request, code: str, device: str = Form(max_length=64),
                csrf: str = Form(max_length=128), x: float | None = Form(None),
                y: float | None = Form(None)) -> Response:
    """Put a device on the plan at (x, y), fractions of its width and height; without
    x and y, take it off."""
    s = await need(request)
    await check_post(request, s, csrf)
    p = await _project(s, code[:64])
    if not s.can(p.code, "manager"):
        raise HTTPException(403, "placing devices needs the manager role on the project")
    ctx = ctx_of(request)
    d = await routes_devices.get_device(device, s.principal, s.tree, ctx)
    if d.project != p.code:
        raise HTTPException(404, "no such device in this project")
    if (x is None) != (y is None) or any(v is not None and not 0 <= v <= 1 for v in (x, y)):
        raise HTTPException(422, "x and y are fractions of the plan (0 to 1), both or none")
    await ctx.audit(s.name, "floor_plan.placed", p.code, {"device": d.id, "x": x, "y": y})
    await ctx.run(ctx.store.set_floor_spot, p.code, d.id, x, y)
    return await plan_partial(request, code)
