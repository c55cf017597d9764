"""Firmware repository and OTA campaigns (README "Firmware updates (OTA)").

Firmware belongs to a project, or to every project (global: no ``project``). A project's
image is read with any role there and uploaded or deleted by its managers; a global image
is read by anyone signed in and uploaded or deleted by platform admins. A campaign takes
only an image its project sees (its own or a global one). Campaigns are started, paused,
resumed and cancelled by operators (or above) of their project; every act is in the signed
audit log before it takes effect. An image is the raw request body
(``application/octet-stream``), its metadata in the query; the body is streamed to disk
within ``api.ota.max_image_kb`` (not ``api.max_body_kb``: the API's guard lets this one
route's body through unread).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field

from hub.api.deps import Caller, Ctx, OrgTree, forbidden, invalid, not_found
from hub.api.guard import DRAIN_LIMIT
from hub.api.routes_alarms import check_act, check_read, project_node, readable_projects
from hub.api.schemas import ERRORS, Strict
from hub.ota.images import ImageError
from hub.ota.manager import CampaignError
from hub.ota.version import SCHEMES, VersionError, parse
from hub.store.base import ROOT_ID, Conflict
from hub.store.firmware import CampaignDevice, Firmware

router = APIRouter(prefix="/api", tags=["ota"])

#: the upload route whose body the API's guard passes through unread (hub.api.app)
UPLOAD = ("POST", "/api/firmware")

FirmwareId = Annotated[int, Path(ge=1, le=2**62)]
CampaignId = Annotated[int, Path(ge=1, le=2**62)]
DeviceId = Annotated[str, Path(min_length=1, max_length=64)]
Delivery = Literal["pull", "push"]


class CampaignIn(Strict):
    project: str = Field(max_length=64)
    firmware_id: int = Field(ge=1, le=2**62)
    name: str = Field(default="", max_length=128)
    models: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None, max_length=100, description="only devices of these models")
    from_versions: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None, max_length=100,
        description="only devices known to run one of these versions (compared exactly)")
    devices: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None, max_length=100_000, description="only these devices")
    canary: int = Field(default=1, ge=0, le=10_000, description="devices of the first wave")
    batch: int = Field(default=50, ge=1, le=100_000, description="devices of each later wave")
    failure_bound: float = Field(default=0.1, ge=0, le=1,
                                 description="pause when a wave's failed share exceeds this")
    delivery: Delivery | None = Field(default=None,
                                      description="pull or push; default the firmware's")


class CampaignOut(BaseModel):
    id: int
    project: str
    firmware_id: int
    version: str
    name: str
    state: Literal["running", "paused", "cancelled", "finished"]
    delivery: Delivery
    canary: int
    batch: int
    failure_bound: float
    wave: int
    reason: str
    created_by: str
    created_ts: float
    updated_ts: float
    progress: dict[str, int]


class HistoryOut(BaseModel):
    seq: int
    device: str
    ts: float
    phase: str
    detail: str


class ActIn(Strict):
    note: str = Field(default="", max_length=1000)


def _scope(caller: Any, tree: Any, project: str | None) -> set[str] | None:
    """The projects a list covers: the caller's readable ones, or the one asked for."""
    projects = readable_projects(caller, tree)
    if project is not None:
        projects = {project} if projects is None or project in projects else set()
    return projects


def _manager(ctx: Any) -> Any:
    ota = getattr(ctx, "ota", None)
    if ota is None:
        raise HTTPException(503, "firmware updates are not running")
    return ota


async def _firmware(ctx: Any, caller: Any, tree: Any, firmware_id: int) -> Any:
    fw = await ctx.run(ctx.store.firmware, firmware_id)
    if fw is None:
        raise not_found("firmware")
    if fw.project is not None:  # a global image is everyone's to read
        check_read(caller, tree, fw.project, "firmware")
    return fw


def _check_manager(caller: Any, tree: Any, project: str | None) -> None:
    if project is None:
        if not caller.can(tree, ROOT_ID, "admin"):
            raise forbidden("global firmware (no project) is managed by platform admins")
        return
    check_read(caller, tree, project, "project")
    if not caller.can(tree, project_node(tree, project), "manager"):
        raise forbidden("firmware is managed by managers of the project")


async def _drain(request: Request) -> None:
    """Read what is left of a refused upload (bounded) so the client reads the answer."""
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > DRAIN_LIMIT:
                return
    except Exception:  # noqa: BLE001 - the client went away: nothing to answer
        return


async def _campaign(ctx: Any, caller: Any, tree: Any, campaign_id: int, act: bool) -> Any:
    c = await ctx.run(ctx.store.campaign, campaign_id)
    if c is None:
        raise not_found("campaign")
    (check_act if act else check_read)(caller, tree, c.project, "campaign")
    return c


async def _campaign_out(ctx: Any, c: Any) -> CampaignOut:
    fw = await ctx.run(ctx.store.firmware, c.firmware_id)
    ota = getattr(ctx, "ota", None)
    progress = ota.progress(c.id) if ota is not None else await ctx.run(
        ctx.store.campaign_progress, c.id)
    return CampaignOut(**{k: v for k, v in c.as_dict().items()
                          if k in CampaignOut.model_fields}, version=fw.version if fw else "",
                       progress=progress)


# ---------------------------------------------------------------- firmware

@router.post("/firmware", response_model=Firmware, status_code=201, responses={
    **ERRORS, 413: {"description": "larger than api.ota.max_image_kb (api.max_body_kb does "
                                   "not apply)"}},
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
async def upload_firmware(
    request: Request, caller: Caller, tree: OrgTree, ctx: Ctx,
    version: Annotated[str, Query(min_length=1, max_length=64)],
    models: Annotated[str, Query(min_length=1, max_length=1000,
                                 description="device models it fits, comma-separated")],
    scheme: Annotated[str, Query(description=f"one of {', '.join(SCHEMES)}")] = "auto",
    delivery: Delivery = "pull",
    notes: Annotated[str, Query(max_length=4000)] = "",
    signature: Annotated[str | None, Query(max_length=200, description="Ed25519 signature "
                                           "over the image, hex or base64")] = None,
    project: Annotated[str | None, Query(
        max_length=64, description="the project it is for; none: every project (admins "
                                   "only)")] = None,
) -> Firmware:
    """Add an image (the raw body, up to ``api.ota.max_image_kb``) to a project's firmware
    repository (manager or above) or, without ``project``, to every project's (admin). Its
    SHA-256 is computed as it streams to disk and, with vendor keys configured, its
    signature checked; an image refused leaves nothing stored."""
    if project is not None and project not in tree.by_code:
        raise not_found("project")
    _check_manager(caller, tree, project)
    ota = _manager(ctx)
    model_list = sorted({m.strip() for m in models.split(",") if m.strip()})
    if not model_list:
        raise invalid("name at least one model", "query", "models")
    try:
        parse(version, scheme)
    except VersionError as e:
        raise invalid(str(e), "query", "version") from None
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > ota.images.max_image:
        await _drain(request)
        raise HTTPException(413, str(ota.images.too_big(int(declared))))
    upload = await ctx.run(ota.images.upload)
    try:
        # chunks are written from the loop: page-cache writes of at most 64 KiB each;
        # the fsync (and a signature check) run in a worker thread
        async for chunk in request.stream():
            upload.write(chunk)
        checked = await ctx.run(upload.finish, signature)
    except ImageError as e:
        upload.discard()
        if e.status == 413:
            await _drain(request)
        raise HTTPException(e.status, str(e)) from None
    except BaseException:
        upload.discard()
        raise
    where = project or "global"
    try:
        await ctx.audit(caller.name, "firmware.uploaded", where, {
            "project": project, "version": version, "models": model_list,
            "sha256": checked.sha256, "size": checked.size, "signed": checked.signed,
            "delivery": delivery})
        fw = await ctx.run(ota.keep_upload, project, model_list, version, scheme, delivery,
                           upload, checked, notes, caller.name)
    except Conflict:
        owner = f"project {project}" if project else "the global repository"
        raise HTTPException(409, f"{owner} has firmware {version} already") from None
    finally:
        upload.discard()  # kept: moved away already; otherwise nothing stays
    return fw


@router.get("/firmware", response_model=list[Firmware], responses=ERRORS)
async def list_firmware(caller: Caller, tree: OrgTree, ctx: Ctx,
                        project: Annotated[str | None, Query(max_length=64)] = None
                        ) -> list[Firmware]:
    """The images the caller's projects see: their own and the global ones (``project``:
    one project's own and the global ones)."""
    projects = _scope(caller, tree, project)
    rows = await ctx.run(ctx.store.firmware_list, projects)
    return rows


@router.get("/firmware/{firmware_id}", response_model=Firmware, responses=ERRORS)
async def get_firmware(firmware_id: FirmwareId, caller: Caller, tree: OrgTree,
                       ctx: Ctx) -> Firmware:
    return await _firmware(ctx, caller, tree, firmware_id)


@router.delete("/firmware/{firmware_id}", status_code=204, responses=ERRORS)
async def delete_firmware(firmware_id: FirmwareId, caller: Caller, tree: OrgTree,
                          ctx: Ctx) -> None:
    """Remove an image no campaign used (409 otherwise); manager or above."""
    fw = await _firmware(ctx, caller, tree, firmware_id)
    _check_manager(caller, tree, fw.project)
    ota = _manager(ctx)
    await ctx.audit(caller.name, "firmware.deleted", fw.project or "global",
                    {"project": fw.project, "firmware_id": fw.id, "version": fw.version})
    try:
        await ctx.run(ota.delete_firmware, fw)
    except Conflict as e:
        raise HTTPException(409, str(e)) from None


# ---------------------------------------------------------------- campaigns

@router.post("/ota/campaigns", response_model=CampaignOut, status_code=201, responses=ERRORS)
async def start_campaign(body: CampaignIn, caller: Caller, tree: OrgTree,
                         ctx: Ctx) -> CampaignOut:
    """Start updating the selected devices of a project, canary wave first; operator or
    above in the project."""
    if body.project not in tree.by_code:
        raise not_found("project")
    check_act(caller, tree, body.project, "campaign")
    ota = _manager(ctx)
    fw = await _firmware(ctx, caller, tree, body.firmware_id)
    if fw.project is not None and fw.project != body.project:
        # another project's image, even one the caller reads elsewhere, is not this one's
        raise invalid(f"firmware {fw.id} belongs to project {fw.project}", "body",
                      "firmware_id")
    for v in body.from_versions or ():
        try:
            parse(v, fw.scheme)
        except VersionError as e:
            raise invalid(str(e), "body", "from_versions") from None
    if not ota.select(body.project, fw, body.models, body.from_versions, body.devices):
        raise HTTPException(422, "no device matches (project, models the image fits, "
                                 "from_versions; devices at the target version or in another "
                                 "running campaign are left out)")
    await ctx.audit(caller.name, "ota.campaign.created", body.project, {
        **body.model_dump(), "version": fw.version, "sha256": fw.sha256})
    try:
        c = ota.create(body.project, fw, body.name or f"{fw.version}", models=body.models,
                       from_versions=body.from_versions, devices=body.devices,
                       canary=body.canary, batch=body.batch,
                       failure_bound=body.failure_bound, delivery=body.delivery,
                       by=caller.name)
    except CampaignError as e:
        raise HTTPException(e.status, str(e)) from None
    return await _campaign_out(ctx, c)


@router.get("/ota/campaigns", response_model=list[CampaignOut], responses=ERRORS)
async def list_campaigns(caller: Caller, tree: OrgTree, ctx: Ctx,
                         project: Annotated[str | None, Query(max_length=64)] = None
                         ) -> list[CampaignOut]:
    projects = _scope(caller, tree, project)
    rows = await ctx.run(ctx.store.campaigns, projects)
    return [await _campaign_out(ctx, c) for c in rows]


@router.get("/ota/campaigns/{campaign_id}", response_model=CampaignOut, responses=ERRORS)
async def get_campaign(campaign_id: CampaignId, caller: Caller, tree: OrgTree,
                       ctx: Ctx) -> CampaignOut:
    """A campaign and its progress (devices per phase)."""
    return await _campaign_out(ctx, await _campaign(ctx, caller, tree, campaign_id, False))


@router.get("/ota/campaigns/{campaign_id}/devices", response_model=list[CampaignDevice],
            responses=ERRORS)
async def campaign_devices(campaign_id: CampaignId, caller: Caller, tree: OrgTree,
                           ctx: Ctx) -> list[CampaignDevice]:
    """Every device of the campaign: its wave, phase, attempts and the device's result."""
    await _campaign(ctx, caller, tree, campaign_id, False)
    if getattr(ctx, "ota", None) is not None:
        await ctx.ota.flush().asFuture(asyncio.get_running_loop())
    return await ctx.run(ctx.store.campaign_devices, campaign_id)


@router.get("/ota/campaigns/{campaign_id}/devices/{device_id}/history",
            response_model=list[HistoryOut], responses=ERRORS)
async def device_history(campaign_id: CampaignId, device_id: DeviceId, caller: Caller,
                         tree: OrgTree, ctx: Ctx) -> list[HistoryOut]:
    """One device's phases in the campaign, oldest first."""
    await _campaign(ctx, caller, tree, campaign_id, False)
    rows = await ctx.run(ctx.store.ota_history, campaign_id, device_id)
    return [HistoryOut(**r) for r in rows]


async def _act(ctx: Any, caller: Any, tree: Any, campaign_id: int, act: str,
               note: str) -> CampaignOut:
    c = await _campaign(ctx, caller, tree, campaign_id, True)
    ota = _manager(ctx)
    allowed = {"pause": ("running",), "resume": ("paused",),
               "cancel": ("running", "paused")}[act]
    if c.state not in allowed:
        raise HTTPException(409, f"campaign {c.id} is {c.state}; {act} needs it "
                                 f"{' or '.join(allowed)}")
    await ctx.audit(caller.name, f"ota.campaign.{act}", str(c.id),
                    {"project": c.project, "note": note})
    try:
        if act == "pause":
            c = ota.pause(c.id, note or f"paused by {caller.name}")
        elif act == "resume":
            c = ota.resume(c.id)
        else:
            c = ota.cancel(c.id, note or f"cancelled by {caller.name}")
    except CampaignError as e:
        raise HTTPException(e.status, str(e)) from None
    return await _campaign_out(ctx, c)


@router.post("/ota/campaigns/{campaign_id}/pause", response_model=CampaignOut,
             responses=ERRORS)
async def pause_campaign(campaign_id: CampaignId, body: ActIn, caller: Caller, tree: OrgTree,
                         ctx: Ctx) -> CampaignOut:
    """No further wave starts; devices under way finish. Operator or above."""
    return await _act(ctx, caller, tree, campaign_id, "pause", body.note)


@router.post("/ota/campaigns/{campaign_id}/resume", response_model=CampaignOut,
             responses=ERRORS)
async def resume_campaign(campaign_id: CampaignId, body: ActIn, caller: Caller,
                          tree: OrgTree, ctx: Ctx) -> CampaignOut:
    """Go on with the next wave (the paused wave's failures are accepted)."""
    return await _act(ctx, caller, tree, campaign_id, "resume", body.note)


@router.post("/ota/campaigns/{campaign_id}/cancel", response_model=CampaignOut,
             responses=ERRORS)
async def cancel_campaign(campaign_id: CampaignId, body: ActIn, caller: Caller,
                          tree: OrgTree, ctx: Ctx) -> CampaignOut:
    """Stop: devices not yet flashing end as cancelled (their firmware state is reset)."""
    return await _act(ctx, caller, tree, campaign_id, "cancel", body.note)
