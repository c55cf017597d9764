"""The console's settings (系统设置): the user's own account and language, users and their
roles (only roles the user may grant, only where), projects, devices and notification
policies: forms on the API's own route functions, whose validation errors are shown next
to the fields they concern.

A form that fails is rendered again with what was typed and the errors (status 422, or the
API's own 403/409 as a message on top); one that succeeds redirects (post/redirect/get).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, ValidationError

from hub.api import routes_devices, routes_notify, routes_org, routes_users
from hub.api.schemas import (
    DeviceIn,
    DevicePatch,
    GrantIn,
    ProjectIn,
    ProjectPatch,
    UserIn,
    UserPatch,
)
from hub.api.security import MIN_PASSWORD
from hub.console.auth import Session, check_post
from hub.console.forms import detail_errors, field_errors, problem
from hub.console.render import render
from hub.console.web import ctx_of, need, project_list, translator
from hub.store.base import ROLES

router = APIRouter(include_in_schema=False)

TABS = ("account", "users", "projects", "devices", "notify")
PROJECT_TEXT = ("name", "type", "address", "region", "leader", "safety_officer")


def grantable(s: Session) -> tuple[list[str], list[Any]]:
    """The roles the user may grant somewhere, and the nodes where it may grant any."""
    tree = s.tree
    nodes = [n for n in tree.nodes.values()
             if s.principal.rank_at(tree, n.id) >= ROLES["manager"]]
    top = max((s.principal.rank_at(tree, n.id) for n in nodes), default=0)
    roles = [r for r, rank in ROLES.items() if rank <= top]
    nodes.sort(key=lambda n: tree.path(n.id))
    return roles, nodes


async def _form(request: Request, s: Session) -> dict[str, str]:
    form = await request.form()
    await check_post(request, s, str(form.get("csrf", "")))
    return {k: str(v).strip() for k, v in form.items() if k != "csrf"}


def _clean(values: dict[str, str], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: values[k] for k in keys if values.get(k, "") != ""}


def _number(values: dict[str, str], key: str, errors: dict[str, str], t: Any,
            integer: bool = False) -> float | int | None:
    raw = values.get(key, "")
    if raw == "":
        return None
    try:
        return int(raw) if integer else float(raw)
    except ValueError:
        errors[key] = t("form.not_number")
        return None


async def _call(errors: dict[str, str], fn: Any, *args: Any, **kw: Any) -> Any:
    """The API route's answer; its refusal recorded in ``errors`` (by field, or under
    ``form``)."""
    try:
        return await fn(*args, **kw)
    except HTTPException as e:
        fields = detail_errors(e.detail) if e.status_code == 422 else {}
        errors.update(fields or {"form": problem(e.detail)})
        return None


def _model(errors: dict[str, str], cls: type[BaseModel], **values: Any) -> Any:
    try:
        return cls(**values)
    except ValidationError as e:
        errors.update(field_errors(e))
        return None


async def _page(request: Request, s: Session, tab: str, errors: dict[str, str] | None = None,
                values: dict[str, str] | None = None, done: str = "") -> Response:
    ctx = ctx_of(request)
    t = translator(request)
    roles, nodes = grantable(s)
    data: dict[str, Any] = {}
    projects = await project_list(s)
    if tab == "users" and nodes:
        data["users"] = await routes_users.list_users(s.principal, s.tree, ctx)
    if tab == "devices":
        code = (values or {}).get("project") or request.query_params.get("project", "")
        if code not in {p.code for p in projects}:  # not one of the user's: the first
            code = projects[0].code if projects else ""
        data["project"] = code
        if code:
            data["devices"] = (await routes_devices.list_devices(
                s.principal, s.tree, ctx, q=None, project=code, model=None, transport=None,
                online=None, alarm=None, source=None, offset=0, limit=500)).items
            data["may_manage"] = s.can(code, "manager")
            data["rated"] = {d.id: rated_text(d.settings)
                             for d in await ctx.run(ctx.store.devices) if d.project == code}
    if tab == "notify":
        code = request.query_params.get("project", "") or (values or {}).get("project", "") \
            or (projects[0].code if projects else "")
        p = next((p for p in projects if p.code == code), projects[0] if projects else None)
        data["project"] = p
        if p is not None:
            data["policy"] = await routes_notify.get_policy(p.id, s.principal, s.tree, ctx)
            data["may_manage"] = s.can(p.code, "manager")
        data["channels"] = sorted(ctx.settings.notify.channels)
    if tab == "account" and s.principal.user_id is not None:
        data["lang"] = await ctx.run(ctx.store.user_language, s.principal.user_id)
    status = 422 if errors else 200
    return render(request, f"settings_{tab}.html", t, s, status_code=status, tab=tab,
                  tabs=TABS, errors=errors or {}, v=values or {}, roles=roles, nodes=nodes,
                  projects=projects, tree=s.tree,
                  done=t("settings.done") if done else "", min_password=MIN_PASSWORD,
                  unit_nodes=[n for n in nodes if n.kind != "project"], **data)


async def _submit(request: Request, s: Session, tab: str, v: dict[str, str],
                  errors: dict[str, str], body: Any, fn: Any, *args: Any,
                  again: dict[str, str] | None = None,
                  fields: Callable[[dict[str, str]], dict[str, str]] | None = None,
                  **query: str) -> Response:
    """``fn(*args, body, caller, tree, ctx)`` (an API route) when the form made a body;
    then the page again with the errors (put on the form's ``fields``, if given, and
    ``again``, else what was typed), or on to the tab."""
    if body is not None:
        await _call(errors, fn, *args, body, s.principal, s.tree, ctx_of(request))
    if errors and fields is not None:
        errors = fields(errors)
    if errors:
        return await _page(request, s, tab, errors, v if again is None else again)
    return _done(tab, **query)


def _done(tab: str, **query: str) -> Response:
    q = urlencode({**query, "done": "1"})
    return RedirectResponse(f"/settings/{tab}?{q}", status_code=303)


@router.get("/settings")
async def settings_home(request: Request) -> Response:
    return RedirectResponse("/settings/account", status_code=303)


@router.get("/settings/{tab}")
async def settings_tab(request: Request, tab: str, done: str = "") -> Response:
    s = await need(request)
    if tab not in TABS:
        raise HTTPException(404, "no such settings page")
    return await _page(request, s, tab, done=done)


# ------------------------------------------------------------------ own account

@router.post("/settings/account")
async def account_save(request: Request) -> Response:
    s = await need(request)
    v = await _form(request, s)
    t = translator(request)
    errors: dict[str, str] = {}
    if s.principal.user_id is None:
        raise HTTPException(403, "an API key has no account")
    changes: dict[str, Any] = {"display_name": v.get("display_name", "")}
    if v.get("password"):
        if v.get("password") != v.get("password2"):
            errors["password2"] = t("settings.password_mismatch")
        changes["password"] = v["password"]
    body = _model(errors, UserPatch, **changes)
    if body is not None and not errors:
        await _call(errors, routes_users.update_user, s.principal.user_id, body, s.principal,
                    s.tree, ctx_of(request))
    if errors:
        v.pop("password", None)
        v.pop("password2", None)
        return await _page(request, s, "account", errors, v)
    return _done("account")


# ------------------------------------------------------------------ users and roles

@router.post("/settings/users")
async def user_create(request: Request) -> Response:
    s = await need(request)
    v = await _form(request, s)
    errors: dict[str, str] = {}
    node = _number(v, "node_id", errors, translator(request), integer=True)
    body = _model(errors, UserIn, name=v.get("name", ""), password=v.get("password", ""),
                  display_name=v.get("display_name", ""), role=v.get("role", ""),
                  node_id=node or 0)
    v.pop("password", None)
    return await _submit(request, s, "users", v, errors, body, routes_users.create_user)


@router.post("/settings/users/{user_id}")
async def user_change(request: Request, user_id: int) -> Response:
    """One of a user's buttons: disable, enable, unlock, add a role, revoke a role."""
    s = await need(request)
    v = await _form(request, s)
    ctx = ctx_of(request)
    errors: dict[str, str] = {}
    op = v.get("op", "")
    if op in ("disable", "enable", "unlock"):
        patch = UserPatch(unlock=True) if op == "unlock" else UserPatch(disabled=op == "disable")
        await _call(errors, routes_users.update_user, user_id, patch, s.principal, s.tree, ctx)
    elif op == "grant":
        node = _number(v, "node_id", errors, translator(request), integer=True)
        body = _model(errors, GrantIn, role=v.get("role", ""), node_id=node or 0)
        if body is not None:
            await _call(errors, routes_users.add_grant, user_id, body, s.principal, s.tree,
                        ctx)
    elif op == "revoke":
        await _call(errors, routes_users.remove_grant, user_id,
                    int(v.get("grant_id", "0") or 0), s.principal, s.tree, ctx)
    else:
        raise HTTPException(422, "unknown operation")
    if errors:
        errors = {"form": "; ".join(errors.values())}
        return await _page(request, s, "users", errors, {"user_id": str(user_id)})
    return _done("users")


# ------------------------------------------------------------------ projects

def _project_values(v: dict[str, str], errors: dict[str, str], t: Any) -> dict[str, Any]:
    out: dict[str, Any] = {k: v[k] for k in PROJECT_TEXT if k in v}
    for k in ("latitude", "longitude"):
        if k in v:
            out[k] = _number(v, k, errors, t)
    return out


@router.post("/settings/projects")
async def project_create(request: Request) -> Response:
    s = await need(request)
    v = await _form(request, s)
    t = translator(request)
    errors: dict[str, str] = {}
    fields = _project_values(v, errors, t)
    unit = _number(v, "unit_id", errors, t, integer=True)
    body = _model(errors, ProjectIn, code=v.get("code", ""), unit_id=unit or 1,
                  **{k: x for k, x in fields.items() if x not in ("", None)}) \
        if not errors else None
    return await _submit(request, s, "projects", v, errors, body, routes_org.create_project)


@router.post("/settings/projects/{project_id}")
async def project_change(request: Request, project_id: int) -> Response:
    s = await need(request)
    v = await _form(request, s)
    t = translator(request)
    errors: dict[str, str] = {}
    fields = _project_values(v, errors, t)
    if not fields.get("name"):
        fields.pop("name", None)
    body = _model(errors, ProjectPatch, **fields) if not errors else None
    return await _submit(request, s, "projects", v, errors, body, routes_org.update_project,
                         project_id, again={**v, "edit": str(project_id)})


# ------------------------------------------------------------------ devices

def _address(text: str) -> Any:
    """A device address as typed: JSON ({"dtu": "X", "slave": 1}, a number) or a string."""
    if not text:
        return None
    if text[:1] in "{[0123456789-":
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def _rated(text: str) -> Any:
    """A rated current as typed: amperes, or JSON parts ({"channels": {"A": 100}})."""
    text = text.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text  # the API's check says what is wrong with it


def rated_text(settings: dict[str, Any] | None) -> str:
    """A stored device's rating as the form shows it (what :func:`_rated` reads back)."""
    rated = (settings or {}).get("rated")
    if rated is None:
        return ""
    return f"{rated:g}" if isinstance(rated, int | float) else json.dumps(rated)


def _settings_errors(errors: dict[str, str]) -> dict[str, str]:
    # the only setting these forms edit: a refusal of the settings is the rating's
    if "settings" in errors:
        errors.setdefault("rated", errors.pop("settings"))
    return errors


@router.post("/settings/devices")
async def device_create(request: Request) -> Response:
    s = await need(request)
    v = await _form(request, s)
    errors: dict[str, str] = {}
    rated = _rated(v.get("rated", ""))
    body = _model(errors, DeviceIn, id=v.get("id", ""), name=v.get("name", ""),
                  project=v.get("project", ""), model=v.get("model", ""),
                  transport=v.get("transport", ""), address=_address(v.get("address", "")),
                  location=v.get("location", ""),
                  settings={} if rated is None else {"rated": rated})
    return await _submit(request, s, "devices", v, errors, body,
                         routes_devices.create_device, fields=_settings_errors,
                         project=v.get("project", ""))


@router.post("/settings/devices/{device_id}")
async def device_change(request: Request, device_id: str) -> Response:
    s = await need(request)
    v = await _form(request, s)
    ctx = ctx_of(request)
    errors: dict[str, str] = {}
    changes = _clean(v, ("name", "location", "model", "transport"))
    if v.get("address"):
        changes["address"] = _address(v["address"])
    stored = await ctx.run(ctx.store.get_device, device_id[:64])
    if stored is not None and "rated" in v and v["rated"].strip() != rated_text(stored.settings):
        # PATCH replaces the settings: keep the others (alarms, heartbeat) as stored
        settings = {k: x for k, x in (stored.settings or {}).items() if k != "rated"}
        rated = _rated(v["rated"])
        changes["settings"] = settings if rated is None else {**settings, "rated": rated}
    body = _model(errors, DevicePatch, **changes)
    return await _submit(request, s, "devices", v, errors, body,
                         routes_devices.update_device, device_id[:64],
                         again={**v, "edit": device_id}, fields=_settings_errors,
                         project=v.get("project", ""))


# ------------------------------------------------------------------ notification policies

@router.post("/settings/notify/{project_id}")
async def policy_save(request: Request, project_id: int) -> Response:
    s = await need(request)
    v = await _form(request, s)
    t = translator(request)
    errors: dict[str, str] = {}
    code = v.get("project", "")
    if v.get("op") == "delete":
        await _call(errors, routes_notify.delete_policy, project_id, s.principal, s.tree,
                    ctx_of(request))
    else:
        steps = []
        for i in range(3):
            channel = v.get(f"step{i}_channel", "")
            if not channel:
                continue
            delay = _number(v, f"step{i}_delay", errors, t) or 0
            steps.append({"delay": delay * 60, "channel": channel,
                          "recipients": [r.strip() for r in
                                         v.get(f"step{i}_recipients", "").split(",")
                                         if r.strip()],
                          "role": v.get(f"step{i}_role") or None})
        repeat = _number(v, "repeat", errors, t)
        quiet = {"start": v["quiet_start"], "end": v["quiet_end"]} \
            if v.get("quiet_start") and v.get("quiet_end") else None
        storm = _number(v, "storm_limit", errors, t, integer=True)
        body = _model(errors, routes_notify.PolicyIn, steps=steps,
                      repeat_interval=repeat * 60 if repeat else None, quiet_hours=quiet,
                      **({"storm_limit": storm} if storm else {})) if not errors else None
        if body is not None:
            await _call(errors, routes_notify.put_policy, project_id, body, s.principal,
                        s.tree, ctx_of(request))
    if errors:
        return await _page(request, s, "notify", errors, v)
    return _done("notify", project=code)
