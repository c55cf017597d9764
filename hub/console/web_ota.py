"""The console's firmware updates (固件升级): the firmware repository (listed; images
uploaded and deleted by managers), OTA campaigns with their progress (started, paused,
resumed and cancelled by operators, each act confirmed), a campaign's devices and each
device's history in it.

Every read and act is the API's own route function (:mod:`hub.api.routes_ota`) with the
user's principal: scope, roles, the image checks (413, 415, 422) and the audit log are the
API's; the console turns its refusals into sentences.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from hub.api import routes_ota as api
from hub.console.forms import fetch_one, field_errors, problem, redirect
from hub.console.render import render
from hub.console.web import ctx_of, error_page, need, posted, project_list, translator
from hub.ota.machine import Phase
from hub.ota.version import SCHEMES

router = APIRouter(include_in_schema=False)

ACTS = ("pause", "resume", "cancel")
#: the acts a campaign's state allows (the API's own rule, offered accordingly)
ALLOWED = {"running": ("pause", "cancel"), "paused": ("resume", "cancel")}
#: phases in the order a device goes through them; the last four are final
PHASES = tuple(p.value for p in Phase)
FAILED = ("failed", "timed_out")


def _refusal(t: Any, e: HTTPException) -> str:
    key = {413: "ota.too_large", 415: "ota.bad_type", 409: "ota.conflict",
           503: "ota.not_running"}.get(e.status_code)
    reason = problem(e.detail)
    return t(key, reason=reason) if key else t("ota.refused", reason=reason)


def summary(progress: dict[str, int]) -> dict[str, int]:
    """Devices in all, succeeded, failed (or timed out), cancelled, and still under way;
    ``done`` (and ``pct`` of all) are those that went through, succeeded or failed: a
    cancelled device was not updated, so a campaign cancelled early shows how little it did
    rather than a full bar."""
    total = sum(progress.values())
    ok = progress.get("succeeded", 0)
    bad = sum(progress.get(p, 0) for p in FAILED)
    gone = progress.get("cancelled", 0)
    return {"total": total, "ok": ok, "failed": bad, "cancelled": gone,
            "pending": total - ok - bad - gone, "done": ok + bad,
            "pct": round(100 * (ok + bad) / total) if total else 0}


class _Body:
    """What :func:`hub.api.routes_ota.upload_firmware` reads of its request: the image."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.headers: dict[str, str] = {}

    async def body(self) -> bytes:
        return self._data

    async def stream(self):  # noqa: ANN201 - as Starlette's Request.stream
        yield self._data


@router.get("/firmware")
async def firmware_page(request: Request, project: str = "", error: str = "",
                        done: str = "") -> Response:
    s = await need(request)
    ctx = ctx_of(request)
    t = translator(request)
    project = project[:64]
    firmware = await api.list_firmware(s.principal, s.tree, ctx, project=project or None)
    campaigns = await api.list_campaigns(s.principal, s.tree, ctx, project=project or None)
    projects = await project_list(s)
    operable = [p for p in projects if s.can(p.code, "operator")]
    notice = {"uploaded": t("ota.uploaded"), "deleted": t("ota.deleted"),
              "started": t("ota.started")}.get(done, "")
    return render(request, "firmware.html", t, s, firmware=sorted(
        firmware, key=lambda f: -f.uploaded_ts), campaigns=sorted(
        campaigns, key=lambda c: -c.created_ts), sums={c.id: summary(c.progress)
                                                      for c in campaigns},
        projects=projects, f={"project": project}, schemes=SCHEMES,
        managed=[p for p in projects if s.can(p.code, "manager")],
        may_manage={p.code for p in projects if s.can(p.code, "manager")},
        operable=operable, startable=[fw for fw in firmware
                                      if fw.project is None
                                      or fw.project in {p.code for p in operable}],
        error=error[:500], notice=notice)


@router.post("/firmware")
async def firmware_upload(request: Request) -> Response:
    """The upload form (multipart): the file is handed to the API's upload as its body."""
    s, form, t = await posted(request)
    project = str(form.get("project", ""))[:64]
    image = form.get("image")
    data = await image.read() if hasattr(image, "read") else b""
    try:
        await api.upload_firmware(
            _Body(data), s.principal, s.tree, ctx_of(request),  # type: ignore[arg-type]
            project=project, version=str(form.get("version", "")).strip()[:64],
            models=str(form.get("models", "")).strip()[:1000],
            scheme=str(form.get("scheme", "auto"))[:16],
            delivery="push" if form.get("delivery") == "push" else "pull",
            notes=str(form.get("notes", ""))[:4000],
            signature=str(form.get("signature", "")).strip()[:200] or None)
    except HTTPException as e:
        return redirect("/firmware", project=project, error=_refusal(t, e))
    return redirect("/firmware", project=project, done="uploaded")


@router.post("/firmware/{firmware_id}/delete")
async def firmware_delete(request: Request, firmware_id: int) -> Response:
    s, form, t = await posted(request)
    if not 1 <= firmware_id <= 2**62:
        raise HTTPException(404, "no firmware")
    try:
        await api.delete_firmware(firmware_id, s.principal, s.tree, ctx_of(request))
    except HTTPException as e:
        if e.status_code == 404:
            raise
        return redirect("/firmware", error=_refusal(t, e))
    return redirect("/firmware", done="deleted")


def _int(value: Any, default: int) -> int:
    text = str(value or "").strip()
    return int(text) if text else default


@router.post("/firmware/campaigns")
async def campaign_new(request: Request) -> Response:
    s, form, t = await posted(request)
    try:
        fw_id = _int(form.get("firmware_id"), 0)
        bound = str(form.get("failure_bound", "")).strip()
        delivery = str(form.get("delivery", ""))
        body = api.CampaignIn(
            project=str(form.get("project", ""))[:64], firmware_id=fw_id,
            name=str(form.get("name", ""))[:128],
            canary=_int(form.get("canary"), 1), batch=_int(form.get("batch"), 50),
            failure_bound=float(bound) / 100 if bound else 0.1,
            delivery=delivery if delivery in ("pull", "push") else None)  # type: ignore[arg-type]
        c = await api.start_campaign(body, s.principal, s.tree, ctx_of(request))
    except ValidationError as e:
        msg = "; ".join(f"{t('ota.' + k) if t.has('ota.' + k) else k}: {v}"
                        for k, v in field_errors(e).items())
        return redirect("/firmware", error=msg)
    except ValueError:
        return redirect("/firmware", error=t("form.invalid"))
    except HTTPException as e:
        return redirect("/firmware", error=_refusal(t, e))
    return RedirectResponse(f"/firmware/campaigns/{c.id}?done=started", status_code=303)


@router.get("/firmware/campaigns/{campaign_id}")
async def campaign_page(request: Request, campaign_id: int, error: str = "",
                        done: str = "") -> Response:
    s = await need(request)
    t = translator(request)
    ctx = ctx_of(request)
    try:
        c = await fetch_one(api.get_campaign, campaign_id, s, ctx_of(request))
    except HTTPException as e:
        return error_page(request, t, s, e, "ota.no_campaign")
    devices = await api.campaign_devices(campaign_id, s.principal, s.tree, ctx)
    index = await ctx.device_index()
    notice = t("ota.done_" + done) if done in (*ACTS, "started") else ""
    return render(request, "campaign.html", t, s, c=c, sum=summary(c.progress),
                  devices=devices, names=index.by_id, phases=PHASES,
                  acts=ALLOWED.get(c.state, ()) if s.can(c.project, "operator") else (),
                  error=error[:500], notice=notice)


@router.post("/firmware/campaigns/{campaign_id}/{act}")
async def campaign_act(request: Request, campaign_id: int, act: str) -> Response:
    s, form, t = await posted(request)
    here = f"/firmware/campaigns/{campaign_id}"
    if act not in ACTS or not 1 <= campaign_id <= 2**62:
        raise HTTPException(404, "no such act")
    do = {"pause": api.pause_campaign, "resume": api.resume_campaign,
          "cancel": api.cancel_campaign}[act]
    try:
        await do(campaign_id, api.ActIn(note=str(form.get("note", ""))[:1000]),
                 s.principal, s.tree, ctx_of(request))
    except HTTPException as e:
        if e.status_code == 404:
            raise
        return redirect(here, error=_refusal(t, e))
    return redirect(here, done=act)


@router.get("/firmware/campaigns/{campaign_id}/devices/{device_id}")
async def device_history(request: Request, campaign_id: int, device_id: str) -> Response:
    s = await need(request)
    t = translator(request)
    ctx = ctx_of(request)
    try:
        c = await fetch_one(api.get_campaign, campaign_id, s, ctx_of(request))
        rows = await api.device_history(campaign_id, device_id[:64], s.principal, s.tree, ctx)
    except HTTPException as e:
        return error_page(request, t, s, e, "ota.no_campaign")
    index = await ctx.device_index()
    return render(request, "campaign_device.html", t, s, c=c, device=device_id[:64],
                  d=index.by_id.get(device_id[:64]), rows=rows, quote=quote)
