"""Daily, weekly and monthly project reports kept by the hub (README "Reports"): listed,
made now (operator or above in the project), downloaded. Made on a schedule by
:class:`hub.reports.schedule.ReportScheduler` (started with the API,
:func:`start_scheduler`); kept in ``<state_dir>/reports`` (:mod:`hub.reports.archive`).
Every make and download is in the audit log."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel

from hub.api.context import ApiContext
from hub.api.deps import Caller, Ctx, OrgTree, forbidden, invalid, not_found
from hub.api.routes_analysis import grading_sources, project_devices, settings, with_rollups
from hub.api.schemas import ERRORS
from hub.reports.archive import ReportArchive, StoredReport, make_documents, reports_dir, summary
from hub.reports.data import LABELS, last_period
from hub.reports.render import FORMATS
from hub.reports.schedule import Project, ReportScheduler

router = APIRouter(prefix="/api", tags=["reports"])

Kind = Literal["daily", "weekly", "monthly"]
Format = Literal["html", "pdf", "xlsx"]


class StoredReportOut(BaseModel):
    kind: str
    period: str
    format: str
    size: int
    created: float
    url: str


def archive(ctx: ApiContext) -> ReportArchive:
    return ReportArchive(reports_dir(ctx.hub.config.state_dir))


def _out(project_id: int, r: StoredReport) -> StoredReportOut:
    return StoredReportOut(kind=r.kind, period=r.period, format=r.format, size=r.size,
                           created=r.created, url=download_path(project_id, r.kind, r.period,
                                                                r.format))


def download_path(project_id: int, kind: str, period: str, fmt: str) -> str:
    return (f"/api/projects/{project_id}/reports/download?kind={kind}&period={period}"
            f"&format={fmt}")


def _period(ctx: ApiContext, kind: str, period: str | None) -> str:
    tz = settings(ctx).tz_offset
    if period is None:
        return last_period(kind, ctx.hub.clock.seconds(), tz)
    if not re.match(LABELS[kind], period):
        raise invalid(f"period of a {kind} report: " + {"daily": "YYYY-MM-DD", "weekly":
                      "YYYY-Www", "monthly": "YYYY-MM"}[kind], "query", "period")
    return period


async def make(ctx: ApiContext, project_id: int, code: str, devices: list[str], title: str,
               kind: str, period: str, formats: tuple[str, ...]) -> tuple[Any, list]:
    """Make and keep the documents of one report (a worker thread does the work)."""
    index = await ctx.device_index()
    names = {d: index.by_id[d].name for d in devices if d in index.by_id}
    s = settings(ctx)
    store = archive(ctx)
    sources = grading_sources(ctx)

    def build(rollups: Any) -> tuple[Any, list]:
        report, docs = make_documents(ctx._reader(), rollups, s, code, names, title, kind,
                                      period, formats, sources)
        return report, store.save(code, kind, period, docs)
    return await with_rollups(ctx, build)


@router.get("/projects/{project_id}/reports", response_model=list[StoredReportOut],
            responses=ERRORS)
async def list_reports(project_id: int, caller: Caller, tree: OrgTree, ctx: Ctx,
                       kind: Annotated[Kind | None, Query()] = None) -> list[StoredReportOut]:
    """The reports kept for a project, newest period first."""
    code, _ = await project_devices(ctx, caller, tree, project_id)
    found = await ctx.run(archive(ctx).list, code, kind)
    return [_out(project_id, r) for r in found]


@router.post("/projects/{project_id}/reports", response_model=list[StoredReportOut],
             status_code=201, responses=ERRORS)
async def make_report(project_id: int, caller: Caller, tree: OrgTree, ctx: Ctx,
                      kind: Annotated[Kind, Query()] = "daily",
                      period: Annotated[str | None, Query(
                          max_length=10, description="YYYY-MM-DD, YYYY-Www or YYYY-MM "
                          "(local); default: the last whole one")] = None,
                      format: Annotated[list[Format] | None, Query()] = None,
                      ) -> list[StoredReportOut]:
    """Make a report now and keep it (replacing one of the same period); operator or
    above in the project."""
    code, devices = await project_devices(ctx, caller, tree, project_id)
    if not caller.can(tree, project_id, "operator"):
        raise forbidden("making reports needs the operator role in the project")
    label = _period(ctx, kind, period)
    formats = tuple(dict.fromkeys(format or settings(ctx).reports.formats))
    await ctx.audit(caller.name, "report.made", code, {"kind": kind, "period": label,
                                                       "formats": list(formats)})
    _, stored = await make(ctx, project_id, code, devices, tree.nodes[project_id].name,
                           kind, label, formats)
    return [_out(project_id, r) for r in stored]


@router.get("/projects/{project_id}/reports/download", responses={
    **ERRORS, 200: {"content": {t.split(";")[0]: {} for t in FORMATS.values()},
                    "description": "the document"}}, response_class=Response)
async def download_report(project_id: int, caller: Caller, tree: OrgTree, ctx: Ctx,
                          kind: Annotated[Kind, Query()] = "daily",
                          period: Annotated[str | None, Query(max_length=10)] = None,
                          format: Annotated[Format, Query()] = "pdf") -> Response:
    """A kept report (404 when it was not made: see POST)."""
    code, _ = await project_devices(ctx, caller, tree, project_id)
    label = _period(ctx, kind, period)
    body = await ctx.run(archive(ctx).read, code, kind, label, format)
    if body is None:
        raise not_found(f"{kind} report {label} as {format}")
    await ctx.audit(caller.name, "report.downloaded", code, {"kind": kind, "period": label,
                                                             "format": format})
    return Response(body, media_type=FORMATS[format], headers={
        "Content-Disposition": f'attachment; filename="report-{code}-{kind}-{label}.{format}"'})


def scheduled_since(root: str, now: float) -> float:
    """When reports were first scheduled here (``<root>/.since``, written now if absent)."""
    import os

    path = os.path.join(root, ".since")
    try:
        with open(path, encoding="ascii") as f:
            return float(f.read().strip())
    except (FileNotFoundError, ValueError):
        os.makedirs(root, exist_ok=True)
        with open(path, "w", encoding="ascii") as f:
            f.write(f"{now:.0f}\n")
        return now


def start_scheduler(ctx: ApiContext, base_url: str) -> ReportScheduler | None:
    """The schedule of the configured reports, on the hub's clock; pushes a summary and a
    link through the alarm desk's channels (``reports.notify``). Registers the API's
    grading sources for the hub's journal, so the rollups sink's daily grades deduct
    hazards and near set points as the API's grades do (until the scheduler stops)."""
    import asyncio

    from twisted.internet import defer

    from hub.alarmdesk.channels import push_text
    from hub.analysis import inputs

    s = settings(ctx)
    if not s.configured:
        return None
    journal = ctx.hub.journal
    inputs.register(journal, grading_sources(ctx))
    store = archive(ctx)
    first = s.reports.formats[0]

    def projects() -> list[Project]:
        nodes = ctx.store.nodes()
        counts: dict[str, int] = {}
        index = ctx._index  # the last index the API built; None before any request
        if index is None:
            from hub.api.views import DeviceIndex, all_devices

            index = DeviceIndex(all_devices(ctx.hub, ctx.store.devices()))
        for d in index.by_id.values():
            counts[d.project] = counts.get(d.project, 0) + 1
        return [Project(n.id, n.code, n.name, counts.get(n.code, 0)) for n in nodes
                if n.kind == "project" and n.code]

    def have(p: Project, kind: str, period: str) -> bool:
        return store.exists(p.code, kind, period, first)

    def produce(p: Project, kind: str, period: str) -> defer.Deferred:
        async def run() -> Any:
            index = await ctx.device_index()
            devices = sorted(d.id for d in index.by_id.values() if d.project == p.code)
            report, _ = await make(ctx, p.id, p.code, devices, p.name, kind, period,
                                   s.reports.formats)
            return report
        return defer.Deferred.fromFuture(asyncio.ensure_future(run()))

    def notify(p: Project, kind: str, period: str, report: Any) -> Any:
        link = base_url.rstrip("/") + download_path(p.id, kind, period, first)
        text = summary(report, link)
        return defer.DeferredList([d for channel, recipients in s.reports.notify
                                   for d in push_text(ctx.desk.channels, channel, recipients,
                                                      text, p.code, f"{kind}:{period}")],
                                  consumeErrors=True)
    sched = ReportScheduler(ctx.hub.clock, s.reports, s.tz_offset, projects, have, produce,
                            notify, interval=s.reports.check_interval,
                            not_before=scheduled_since(store.root,
                                                               ctx.hub.clock.seconds()),
                            on_stop=lambda: inputs.unregister(journal))
    sched.startService()
    return sched
