"""The console's pages and the small endpoints their scripts call.

Every page and endpoint gets its data by calling the API's own route functions with the
console user's principal (``hub.api.routes_*``): what a user sees and may do in the console
is exactly what the API lets the same user see and do, with no second copy of the rules.
Pages are rendered on the server; htmx swaps the partials (``/ui/...``) in place, and
``static/console.js`` draws the chart and the map and listens to the live stream.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from hub.api import routes_auth, routes_devices, routes_events, routes_org
from hub.api.schemas import AckIn, CommandIn, LoginIn
from hub.console.auth import (
    LANG,
    PRE_CSRF,
    SESSION,
    Session,
    check_post,
    new_pre_csrf,
    session_of,
    session_of_token,
    set_cookie,
)
from hub.console.i18n import LANGUAGES, Translator, choose
from hub.console.render import render

router = APIRouter(include_in_schema=False)

#: the remote-control actions the device page offers (the simulator and most detectors)
ACTIONS = ("reset", "silence", "self_test", "trip", "close")
#: history ranges offered on the device page, in seconds
RANGES = {"1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
QUANTITIES = ("temperature", "residual_current", "voltage", "current", "active_power")
FINAL = {"succeeded", "failed", "timed_out", "expired", "rejected"}
#: events scanned at most for this month's counts on the home page
COUNT_BUDGET = 50_000


def translator(request: Request) -> Translator:
    return Translator(choose(request.cookies.get(LANG)))


async def need(request: Request) -> Session:
    """The logged-in user, or 401: a page then redirects to the login (hub.console.mount)."""
    s = await session_of(request)
    if s is None:
        raise HTTPException(401, "log in")
    return s


async def posted(request: Request) -> tuple[Session, Any, Translator]:
    """A console form's post: the logged-in user (401 without), the form with its CSRF
    token checked (403 on a wrong one), and the user's translator."""
    s = await need(request)
    form = await request.form()
    await check_post(request, s, str(form.get("csrf", "")))
    return s, form, translator(request)


def error_page(request: Request, t: Translator, s: Session, e: HTTPException,
               message: str) -> Response:
    """The error page for the API's refusal ``e`` of a record's page (its status; the
    ``message`` key in the user's words)."""
    return render(request, "error.html", t, s, status_code=e.status_code, message=t(message))


def ctx_of(request: Request) -> Any:
    return request.app.state.ctx


# ------------------------------------------------------------------ login and language

@router.get("/login")
async def login_page(request: Request, error: str | None = None) -> Response:
    token = new_pre_csrf()
    resp = render(request, "login.html", translator(request), None, csrf=token, error=error)
    set_cookie(resp, request, PRE_CSRF, token, max_age=3600)
    return resp


_LOCKED_UNTIL = re.compile(r"until (\S+) \(UTC\)")


@router.post("/login")
async def login(request: Request, username: str = Form(max_length=128),
                password: str = Form(max_length=256), csrf: str = Form(max_length=128),
                next: str = Form("/", max_length=512)) -> Response:
    await check_post(request, None, csrf)
    t = translator(request)
    ctx = ctx_of(request)
    try:
        out = await routes_auth.login(LoginIn(username=username, password=password),
                                      request, ctx)
    except HTTPException as e:
        detail = str(e.detail)
        if e.status_code == 423:
            m = _LOCKED_UNTIL.search(detail)
            until = datetime.fromisoformat(m.group(1)).timestamp() if m else None
            msg = t("login.locked", until=t.datetime(until))
        elif e.status_code == 429:
            msg = t("login.throttled", seconds=e.headers.get("Retry-After", "?")
                    if e.headers else "?")
        elif "disabled" in detail:
            msg = t("login.disabled")
        else:
            msg = t("login.bad")
        token = new_pre_csrf()
        resp = render(request, "login.html", t, None, csrf=token, error=msg,
                      username=username, status_code=e.status_code)
        set_cookie(resp, request, PRE_CSRF, token, max_age=3600)
        return resp
    target = next if next.startswith("/") and not next.startswith("//") else "/"
    resp = RedirectResponse(target, status_code=303)
    set_cookie(resp, request, SESSION, out.access_token, max_age=out.expires_in)
    resp.delete_cookie(PRE_CSRF, path="/")
    # the account's language, on whatever browser it logs in from (the cookie is only the
    # fallback for an account that never chose one)
    s = await session_of_token(request, out.access_token)
    if s is not None and s.principal.user_id is not None:
        lang = await ctx.run(ctx.store.user_language, s.principal.user_id)
        if lang in LANGUAGES:
            set_cookie(resp, request, LANG, lang, max_age=365 * 86400, http_only=False)
    return resp


@router.post("/logout")
async def logout(request: Request, csrf: str = Form(max_length=128)) -> Response:
    s = await session_of(request)
    if s is not None:
        await check_post(request, s, csrf)
        ctx = ctx_of(request)
        await routes_auth.logout(s.principal, ctx)
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(SESSION, path="/")
    return resp


@router.post("/lang")
async def set_language(request: Request, lang: str = Form(max_length=16),
                       csrf: str = Form(max_length=128),
                       back: str = Form("/", max_length=512)) -> Response:
    s = await session_of(request)
    await check_post(request, s, csrf)
    if lang not in LANGUAGES:
        raise HTTPException(422, "unknown language")
    if s is not None and s.principal.user_id is not None:
        ctx = ctx_of(request)
        await ctx.run(ctx.store.set_user_language, s.principal.user_id, lang)
    target = back if back.startswith("/") and not back.startswith("//") else "/"
    resp = RedirectResponse(target, status_code=303)
    set_cookie(resp, request, LANG, lang, max_age=365 * 86400, http_only=False)
    return resp


# ------------------------------------------------------------------ pages

async def _devices(ctx: Any, s: Session, *, project: str | None = None,
                   online: bool | None = None, alarm: str | None = None, q: str | None = None,
                   offset: int = 0, limit: int = 100) -> Any:
    return await routes_devices.list_devices(
        s.principal, s.tree, ctx, q=q, project=project, model=None, transport=None,
        online=online, alarm=alarm, source=None, offset=offset, limit=limit)


async def _projects(s: Session) -> list[Any]:
    return await routes_org.list_projects(s.principal, s.tree, q=None, region=None,
                                          unit_id=None, limit=500, offset=0)


#: the user's projects (for the other page modules)
project_list = _projects


async def _events(ctx: Any, s: Session, **f: Any) -> Any:
    args = {"after": 0, "limit": 100, "kind": None, "level": None, "state": None,
            "device": None, "project": None, "since": None, "until": None, **f}
    return await routes_events.list_events(s.principal, s.tree, ctx, **args)


async def month_counts(ctx: Any, s: Session, now: float) -> dict[str, int]:
    """Alarms and faults raised since the first of this month (local time), in scope."""
    start = datetime.fromtimestamp(now).astimezone().replace(
        day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()
    counts = {"alarm": 0, "fault": 0}
    after, scanned = 0, 0
    while scanned < COUNT_BUDGET:
        p = await _events(ctx, s, after=after, limit=1000, state="raised", since=start)
        for e in p.items:
            if e.kind in counts:
                counts[e.kind] += 1
        scanned += 1000
        if p.next_after >= p.last_seq or p.next_after == after:
            break
        after = p.next_after
    return counts


@router.get("/")
async def home(request: Request) -> Response:
    s = await need(request)
    ctx = ctx_of(request)
    online = (await _devices(ctx, s, online=True, limit=1)).total
    total = (await _devices(ctx, s, limit=1)).total
    projects = await _projects(s)
    active = await routes_events.active_events(s.principal, s.tree, ctx, kind=None)
    index = await ctx.device_index()
    rank = {"ok": 0, "fault": 1, "alarm": 2}
    by_project: dict[str, str] = {}  # a project's worst state: alarm > fault > ok
    for e in active:
        d = index.by_id.get(e.device)
        if d is not None and e.kind in rank:
            by_project[d.project] = max(by_project.get(d.project, "ok"), e.kind,
                                        key=rank.__getitem__)
    t = translator(request)
    labels = {"ok": t("state.ok"), "alarm": t("kind.alarm"), "fault": t("kind.fault")}
    points = []
    for p in projects:
        state = by_project.get(p.code, "ok")
        points.append({"name": p.name, "code": p.code, "lat": p.latitude, "lon": p.longitude,
                       "state": state, "state_label": labels[state],
                       "href": f"/projects/{p.code}"})
    return render(request, "home.html", t, s,
                  online=online, offline=total - online, total=total,
                  counts=await month_counts(ctx, s, time.time()), map_points=points,
                  queue=await _queue(ctx, s))


async def _queue(ctx: Any, s: Session) -> list[dict[str, Any]]:
    active = await routes_events.active_events(s.principal, s.tree, ctx, kind=None)
    index = await ctx.device_index()
    rows = []
    for e in sorted(active, key=lambda e: -e.ts):
        d = index.by_id.get(e.device)
        rows.append({"e": e, "name": d.name if d else e.device,
                     "location": d.location if d else "",
                     "may_ack": d is not None and s.can(d.project, "operator")})
    return rows


@router.get("/ui/queue")
async def queue_partial(request: Request) -> Response:
    s = await need(request)
    return render(request, "partials/queue.html", translator(request), s,
                  queue=await _queue(ctx_of(request), s))


@router.get("/devices")
async def devices(request: Request, project: str | None = None, online: str | None = None,
                  alarm: str | None = None, q: str | None = None, offset: int = 0) -> Response:
    s = await need(request)
    ctx = ctx_of(request)
    on = {"1": True, "0": False}.get(online or "")
    alarm = alarm if alarm in ("alarm", "fault", "any", "none") else None
    offset = max(0, min(offset, 10**9))
    page_ = await _devices(ctx, s, project=project or None, online=on, alarm=alarm,
                           q=(q or None) and q[:128], offset=offset, limit=50)
    return render(request, "devices.html", translator(request), s, page=page_,
                  projects=await _projects(s),
                  f={"project": project or "", "online": online or "", "alarm": alarm or "",
                     "q": q or ""})


@router.get("/devices/{device_id}")
async def device(request: Request, device_id: str) -> Response:
    s = await need(request)
    ctx = ctx_of(request)
    t = translator(request)
    try:
        d = await routes_devices.get_device(device_id, s.principal, s.tree, ctx)
    except HTTPException as e:
        return error_page(request, t, s, e, "error.no_device")
    return device_page(request, t, s, d, done=t("settings.done")
                       if request.query_params.get("saved") else "")


def device_page(request: Request, t: Translator, s: Session, d: Any,
                errors: dict[str, str] | None = None, values: dict[str, str] | None = None,
                done: str = "") -> Response:
    """A device's page (``d``: the API's device detail), with the errors and values of a
    refused settings form."""
    from hub.console.web_device_settings import settings_rows

    # one curve per quantity and channel; the most watched quantities first
    order = {q: i for i, q in enumerate(QUANTITIES)}
    series = sorted({(r.quantity, r.channel) for r in d.readings},
                    key=lambda x: (order.get(x[0], len(order)), x[0], x[1]))
    if not series:
        series = [(q, "") for q in QUANTITIES]
    return render(request, "device.html", t, s, status_code=422 if errors else 200, d=d,
                  actions=ACTIONS, may_command=s.can(d.project, "operator"),
                  may_manage=s.can(d.project, "manager"), ranges=list(RANGES),
                  series=series, errors=errors or {},
                  rules=settings_rows(d, every=s.can(d.project, "manager")
                                      and d.source == "api"),
                  v=values or {}, done=done)


@router.get("/ui/devices/{device_id}/live")
async def device_live(request: Request, device_id: str) -> Response:
    s = await need(request)
    d = await routes_devices.get_device(device_id, s.principal, s.tree, ctx_of(request))
    return render(request, "partials/device_live.html", translator(request), s, d=d,
                  may_command=s.can(d.project, "operator"))


@router.get("/ui/devices/{device_id}/history")
async def device_history(request: Request, device_id: str, quantity: str = "temperature",
                         range: str = "1h", channel: str | None = None) -> Response:
    s = await need(request)
    now = time.time()
    out = await routes_devices.history(device_id, s.principal, s.tree, ctx_of(request),
                                       quantity=quantity, since=now - RANGES.get(range, 3600),
                                       until=now, channel=channel or None, points=300)
    return JSONResponse(out.model_dump())


@router.get("/ui/stream")
async def stream(request: Request, device: str | None = None,
                 readings: str = "") -> Response:
    """The page's live stream: events and command results; with a device (its page),
    that device's readings too, so its values change as they are committed."""
    s = await need(request)
    device = (device or None) and device[:64]
    return await routes_events.stream_events(
        s.principal, s.tree, ctx_of(request), after=None, kind=None, device=device,
        project=None, idle_timeout=None, readings=bool(device) and readings == "1",
        last_event_id=request.headers.get("last-event-id"))


@router.post("/ui/devices/{device_id}/commands")
async def command(request: Request, device_id: str, action: str = Form(max_length=64),
                  csrf: str = Form(max_length=128)) -> Response:
    s = await need(request)
    await check_post(request, s, csrf)
    t = translator(request)
    try:
        state = await routes_events.send_command(
            device_id, CommandIn(action=action), s.principal, s.tree, ctx_of(request))
    except HTTPException as e:
        if e.status_code == 404:
            raise
        return render(request, "partials/command.html", t, s, c=None,
                      error=t("command.refused", reason=_reason(e.detail)))
    return render(request, "partials/command.html", t, s, c=state, final=FINAL)


def _reason(detail: Any) -> str:
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        return str(detail[0].get("msg", ""))
    return str(detail)


@router.get("/ui/commands/{command_id}")
async def command_state(request: Request, command_id: str) -> Response:
    s = await need(request)
    state = await routes_events.get_command(command_id[:64], s.principal, s.tree,
                                            ctx_of(request))
    return render(request, "partials/command.html", translator(request), s, c=state,
                  final=FINAL)


@router.post("/ui/events/{event_id}/ack")
async def ack(request: Request, event_id: str, csrf: str = Form(max_length=128),
              note: str = Form("", max_length=1000)) -> Response:
    s = await need(request)
    await check_post(request, s, csrf)
    t = translator(request)
    try:
        await routes_events.acknowledge(event_id[:128], AckIn(note=note), s.principal,
                                        s.tree, ctx_of(request))
    except HTTPException as e:
        return HTMLResponse(f'<span class="err">{t("ack.refused")}</span>',
                            status_code=200 if e.status_code != 404 else 404)
    return HTMLResponse(f'<span class="ok">{t("ack.done")}</span>')


@router.get("/events/log")
async def events(request: Request, kind: str | None = None, state: str | None = None,
                 device: str | None = None, project: str | None = None,
                 after: int = 0) -> Response:
    s = await need(request)
    kind = kind if kind in ("alarm", "fault", "state", "notice") else None
    state = state if state in ("raised", "cleared", "notice") else None
    p = await _events(ctx_of(request), s, after=max(0, min(after, 2**62)), limit=50,
                      kind=kind, state=state, device=(device or None) and device[:64],
                      project=(project or None) and project[:64])
    return render(request, "events.html", translator(request), s, p=p,
                  projects=await _projects(s),
                  f={"kind": kind or "", "state": state or "", "device": device or "",
                     "project": project or ""})


@router.get("/projects")
async def projects(request: Request) -> Response:
    s = await need(request)
    ctx = ctx_of(request)
    rows = []
    for p in await _projects(s):
        page_ = await _devices(ctx, s, project=p.code, limit=500)
        rows.append({"p": p, "devices": page_.total,
                     "online": sum(1 for d in page_.items if d.online),
                     "alarms": sum(d.active_alarms for d in page_.items)})
    return render(request, "projects.html", translator(request), s, rows=rows)
