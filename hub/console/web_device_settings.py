"""The device page's alarm settings: what the running device applies (each alarm type's set
point, warning, hysteresis and delays, its heartbeat and rated current) and, for a device
created through the API, its set points changed there by a manager of its project.

The change is the API's own ``PATCH /api/devices/{id}`` called with the user's principal:
the checks of a YAML device's settings, the roles and the audit log are the API's. PATCH
replaces the stored settings, so the form keeps every other stored setting as it is.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from hub.api import routes_devices
from hub.api.schemas import DevicePatch
from hub.console.forms import problem, redirect
from hub.console.web import ctx_of, device_page, error_page, posted
from hub.model import ALARM_RULES, QUANTITIES

router = APIRouter(include_in_schema=False)


def settings_rows(d: Any, every: bool = False) -> list[dict[str, Any]]:
    """The running device's enabled alarm types (``every``: each type of the standard, the
    others with ``alarm`` None), in the standard's order, with the unit of the quantity
    each watches and the range the standard allows for its set point."""
    running = d.settings.alarms
    names = [*ALARM_RULES, *sorted(set(running) - set(ALARM_RULES))]
    rows = []
    for rule in names:
        th = running.get(rule)
        if th is None and not every:
            continue
        r = ALARM_RULES.get(rule)
        q = QUANTITIES.get(r.quantity) if r is not None else None
        rows.append({"rule": rule, "unit": q.unit if q is not None else "",
                     "low": r.low if r is not None else None,
                     "high": r.high if r is not None else None,
                     **({"alarm": None} if th is None else {
                         "alarm": th.alarm, "warning": th.warning,
                         "hysteresis": th.hysteresis, "delay": th.delay,
                         "clear_delay": th.clear_delay})})
    return rows


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


@router.post("/devices/{device_id}/settings")
async def change_settings(request: Request, device_id: str) -> Response:
    s, form, t = await posted(request)
    ctx = ctx_of(request)
    try:
        d = await routes_devices.get_device(device_id[:64], s.principal, s.tree, ctx)
    except HTTPException as e:
        return error_page(request, t, s, e, "error.no_device")
    values = {k: str(v).strip() for k, v in form.items() if k.startswith("alarm.")}
    errors: dict[str, str] = {}
    stored = await ctx.run(ctx.store.get_device, d.id) if d.source == "api" else None
    if stored is None:
        errors["form"] = t("settings.in_config")
        return device_page(request, t, s, d, errors, values)
    settings = dict(stored.settings or {})
    alarms = {k: dict(v) for k, v in (settings.get("alarms") or {}).items()}
    running = d.settings.alarms
    for rule in ALARM_RULES:
        raw = values.get(f"alarm.{rule}")
        if raw is None:
            continue
        th = running.get(rule)
        if raw == "":  # back to the hub's defaults (off, where there is none)
            if th is not None:
                alarms.pop(rule, None)
            continue
        value = _number(raw)
        if value is None:
            errors[f"alarm.{rule}"] = t("form.not_number")
        elif th is None or value != th.alarm:
            alarms[rule] = {**alarms.get(rule, {}), "alarm": value}
    if errors:
        return device_page(request, t, s, d, errors, values)
    if alarms != (settings.get("alarms") or {}):
        if alarms:
            settings["alarms"] = alarms
        else:
            settings.pop("alarms", None)
        try:
            await routes_devices.update_device(d.id, DevicePatch(settings=settings),
                                               s.principal, s.tree, ctx)
        except HTTPException as e:
            errors["form"] = problem(e.detail)
            return device_page(request, t, s, d, errors, values)
    return redirect(f"/devices/{d.id}", saved=1)
