"""Analysis: energy per device and project (hour/day/month/year, time-of-use split, cost,
load curve, advice), safety grades with their deductions, and long-range history from the
rollups (never a scan of raw readings). Same scoping as the devices: a device or project
outside the caller's scope is 404."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from hub.analysis.energy import (
    advice,
    by_period,
    cost,
    load_curve,
    period_key,
    project_energy,
    split_tou,
    width_for,
)
from hub.analysis.grading import Grade, grade_project, journal_grade
from hub.analysis.inputs import GradingSources, store_sources
from hub.analysis.inputs import grading_inputs as inputs_of
from hub.analysis.load import LoadRate, load_advice, load_rates
from hub.analysis.settings import AnalysisSettings, analysis_settings, with_devices
from hub.api.authz import Principal, Tree
from hub.api.context import ApiContext
from hub.api.deps import Caller, Ctx, OrgTree, invalid, not_found
from hub.api.routes_devices import device_in_scope
from hub.api.schemas import ERRORS, HistoryOut, HistoryPoint
from hub.rollups.store import DAY, HOUR, RollupStore

router = APIRouter(prefix="/api", tags=["analysis"])
T = TypeVar("T")

#: default range of energy and grades: the last 30 days
DEFAULT_RANGE = 30 * DAY
Since = Annotated[float | None, Query(ge=0, le=1e11, description="UTC epoch s; default: "
                                      "30 days before until")]
Until = Annotated[float | None, Query(ge=0, le=1e11, description="UTC epoch s; default: now")]


class LoadRateOut(BaseModel):
    device: str
    rated: str = Field(description="the rated currents compared (README \"Load rate\")")
    hours: int = Field(description="hours with current readings on rated channels")
    peak_rate: float | None = Field(description="highest hourly maximum ÷ rating")
    mean_rate: float | None = Field(description="mean of the most loaded channel's hourly "
                                    "mean ÷ rating")
    overload_hours: int = Field(description="hours whose mean current exceeded the rating")
    heavy_hours: int = Field(description="hours whose mean reached 80 % of the rating")
    peak_amperes: float | None = None
    peak_channel: str = ""


class EnergyOut(BaseModel):
    subject: str
    period: Literal["hour", "day", "month", "year"]
    since: float
    until: float
    unit: str = "kWh"
    energy: dict[str, float]  # local period label -> kWh
    total: float
    tou: dict[str, float]  # 尖峰 / 峰 / 平 / 谷 -> kWh
    cost: float
    load_w: dict[str, float]  # local period label -> mean active power (W)
    advice: list[str]
    load_rate: list[LoadRateOut] = []  # devices with a configured rated current


class DeductionOut(BaseModel):
    rule: str
    points: float
    reason: str
    device: str
    code: str


class GradeOut(BaseModel):
    subject: str
    since: float
    until: float
    score: float
    grade: str
    deductions: list[DeductionOut]
    devices: list[GradeOut] = []


def settings(ctx: ApiContext) -> AnalysisSettings:
    """The analysis settings of the configuration, for the devices running now (their set
    points and rated currents): made again after the registry changes."""
    s = getattr(ctx, "_analysis", None)
    if s is None:
        base = getattr(ctx, "_analysis_base", None)
        if base is None:
            base = ctx._analysis_base = analysis_settings(ctx.hub.config)  # type: ignore[attr-defined]
            ctx.hub.registry.watch(lambda _change: setattr(ctx, "_analysis", None))
        s = ctx._analysis = with_devices(base, ctx.hub.registry)  # type: ignore[attr-defined]
    return s


def _store(ctx: ApiContext) -> RollupStore | None:
    """This worker thread's read-only rollup store; None while no rollups exist."""
    store = getattr(ctx._local, "rollups", None)
    if store is None:
        path = settings(ctx).path
        if not os.path.exists(path):
            return None
        store = ctx._local.rollups = RollupStore(path, readonly=True)
        with ctx._readers_lock:  # closed with the journal readers
            ctx._readers.append(store)  # type: ignore[arg-type]
    return store


async def with_rollups(ctx: ApiContext, fn: Callable[[RollupStore | None], T]) -> T:
    return await ctx.run(lambda: fn(_store(ctx)))


def _range(since: float | None, until: float | None) -> tuple[float, float]:
    end = time.time() if until is None else until
    start = end - DEFAULT_RANGE if since is None else since
    if end <= start:
        raise invalid("until must be after since", "query", "until")
    return start, end


async def project_devices(ctx: ApiContext, caller: Principal, tree: Tree,
                          project_id: int) -> tuple[str, list[str]]:
    n = tree.nodes.get(project_id)
    if n is None or n.kind != "project" or not caller.can_read(tree, project_id):
        raise not_found("project")
    index = await ctx.device_index()
    return n.code, sorted(d.id for d in index.by_id.values() if d.project == n.code)


# ------------------------------------------------------------------- energy


def energy_of(store: RollupStore | None, subject: str, devices: list[str], period: str,
              since: float, until: float, s: AnalysisSettings) -> EnergyOut:
    tz = store.tz_offset if store is not None else s.tz_offset
    if store is None:
        buckets: dict[float, float] = {}
        hourly: dict[float, float] = {}
        load: dict[float, float] = {}
        pf = None
    else:
        width = width_for(period)
        buckets = project_energy(store, devices, width, since, until)
        hourly = buckets if width == HOUR else project_energy(store, devices, HOUR, since,
                                                               until)
        load = load_curve(store, devices, width, since, until)
        pfs = [b for d in devices
               for b in store.buckets(d, "power_factor", "", DAY, since, until)]
        pf = sum(b.mean * b.count for b in pfs) / sum(b.count for b in pfs) if pfs else None
    tou = split_tou(hourly, tz, s.tou)
    rates: list[LoadRate] = ([] if store is None else
                             load_rates(store, s.reports.rated, devices, since, until))
    loads: dict[str, list[float]] = {}
    for start, w in load.items():
        loads.setdefault(period_key(start, tz, period), []).append(w)
    per = by_period(buckets, tz, period)
    return EnergyOut(subject=subject, period=period, since=since, until=until,
                     energy={k: round(v, 6) for k, v in per.items()},
                     total=round(sum(per.values()), 6),
                     tou={k: round(v, 6) for k, v in tou.items()},
                     cost=round(cost(tou, s.tou), 2),
                     load_w={k: round(sum(v) / len(v), 3) for k, v in loads.items()},
                     advice=advice(hourly, tz, pf, s.tou) + load_advice(rates),
                     load_rate=[LoadRateOut(**r.__dict__) for r in rates])


Period = Annotated[Literal["hour", "day", "month", "year"], Query()]


@router.get("/devices/{device_id}/energy", response_model=EnergyOut, responses=ERRORS)
async def device_energy(device_id: str, caller: Caller, tree: OrgTree, ctx: Ctx,
                        period: Period = "day", since: Since = None,
                        until: Until = None) -> EnergyOut:
    """kWh of one device per local hour/day/month/year, time-of-use split and cost, mean
    load, advice; from the rollups."""
    start, end = _range(since, until)
    d = await device_in_scope(ctx, caller, tree, device_id)
    s = settings(ctx)
    return await with_rollups(ctx, lambda st: energy_of(st, d.id, [d.id], period, start,
                                                        end, s))


@router.get("/projects/{project_id}/energy", response_model=EnergyOut, responses=ERRORS)
async def project_energy_route(project_id: int, caller: Caller, tree: OrgTree, ctx: Ctx,
                               period: Period = "day", since: Since = None,
                               until: Until = None) -> EnergyOut:
    """As the device's, summed over the project's devices."""
    start, end = _range(since, until)
    code, devices = await project_devices(ctx, caller, tree, project_id)
    s = settings(ctx)
    return await with_rollups(ctx, lambda st: energy_of(st, code, devices, period, start,
                                                        end, s))


# ------------------------------------------------------------------- grades


def grade_out(g: Grade) -> GradeOut:
    return GradeOut(subject=g.subject, since=g.since, until=g.until, score=g.score,
                    grade=g.grade, deductions=[DeductionOut(rule=d.rule, points=round(
                        d.points, 3), reason=d.reason, device=d.device, code=d.code)
                        for d in g.deductions],
                    devices=[grade_out(x) for x in g.devices])


def grading_sources(ctx: ApiContext) -> GradingSources:
    """Where grading rules 6-8 read (:mod:`hub.analysis.inputs`): the platform store's
    hazards and stored devices, the configuration's set points."""
    return store_sources(ctx.store, settings(ctx).set_points)


async def grading_inputs(ctx: ApiContext, project: str, devices: list[str], since: float,
                         until: float) -> tuple[dict[str, list], list]:
    """Rules 6-8 of the grading: the project's hazards, readings near set points."""
    s = settings(ctx)
    sources = grading_sources(ctx)
    return await with_rollups(ctx, lambda st: inputs_of(sources, devices, since, until,
                                                        s.grading, st, project))


@router.get("/devices/{device_id}/grade", response_model=GradeOut, responses=ERRORS)
async def device_grade(device_id: str, caller: Caller, tree: OrgTree, ctx: Ctx,
                       since: Since = None, until: Until = None) -> GradeOut:
    """The safety grade (优 / 良好 / 一般隐患 / 严重隐患) of a device over a period, with
    the deductions behind it (README "Safety grading")."""
    start, end = _range(since, until)
    d = await device_in_scope(ctx, caller, tree, device_id)
    scheme = settings(ctx).grading
    extra, _ = await grading_inputs(ctx, d.project, [d.id], start, end)
    g = await ctx.journal(lambda j: journal_grade(j, d.id, start, end, scheme,
                                                  extra=extra[d.id]))
    return grade_out(g)


def project_grade(j: Any, code: str, devices: list[str], since: float, until: float,
                  s: AnalysisSettings, extra: tuple[dict[str, list], list] | None = None
                  ) -> Grade:
    per, own = extra or ({}, [])
    return grade_project(code, [journal_grade(j, d, since, until, s.grading,
                                              extra=per.get(d, ()))
                                for d in devices], s.grading, own)


@router.get("/projects/{project_id}/grade", response_model=GradeOut, responses=ERRORS)
async def project_grade_route(project_id: int, caller: Caller, tree: OrgTree, ctx: Ctx,
                              since: Since = None, until: Until = None) -> GradeOut:
    """The project's grade and each device's."""
    start, end = _range(since, until)
    code, devices = await project_devices(ctx, caller, tree, project_id)
    s = settings(ctx)
    extra = await grading_inputs(ctx, code, devices, start, end)
    g = await ctx.journal(lambda j: project_grade(j, code, devices, start, end, s, extra))
    return grade_out(g)


# ------------------------------------------------------------------- long history


def history_from_rollups(store: RollupStore, device: str, quantity: str,
                         channel: str | None, since: float, until: float,
                         points: int) -> HistoryOut:
    width = (until - since) / points
    size = DAY if width >= DAY else HOUR
    rows = store.buckets(device, quantity, channel, size, since // size * size, until)
    merged: dict[int, list[float]] = {}
    for b in rows:
        i = min(max(int((b.start - since) / width), 0), points - 1)
        m = merged.get(i)
        if m is None:
            merged[i] = [b.min, b.max, b.mean * b.count, b.count]
        else:
            m[0], m[1] = min(m[0], b.min), max(m[1], b.max)
            m[2] += b.mean * b.count
            m[3] += b.count
    return HistoryOut(device=device, quantity=quantity, channel=channel, bucket_seconds=width,
                      raw_points=len(rows), source="rollups",
                      points=[HistoryPoint(ts=since + i * width, min=m[0], max=m[1],
                                           avg=m[2] / m[3], n=int(m[3]))
                              for i, m in sorted(merged.items())])


async def long_history(ctx: ApiContext, device: str, quantity: str, channel: str | None,
                       since: float, until: float, points: int) -> HistoryOut | None:
    """The history from rollups when each point spans an hour or more and rollups are
    kept; None otherwise (the caller reads raw readings)."""
    if (until - since) / points < HOUR or not settings(ctx).configured:
        return None

    def query(store: RollupStore | None) -> HistoryOut | None:
        if store is None:
            return None
        return history_from_rollups(store, device, quantity, channel, since, until, points)
    return await with_rollups(ctx, query)


# ------------------------------------------------------------------- reports


@router.get("/projects/{project_id}/reports/monthly", responses={
    **ERRORS, 200: {"content": {t: {} for t in ("text/html", "application/pdf",
                                                  "application/vnd.openxmlformats-"
                                                  "officedocument.spreadsheetml.sheet")},
                    "description": "the report"}}, response_class=Response)
async def monthly_report(project_id: int, caller: Caller, tree: OrgTree, ctx: Ctx,
                         month: Annotated[str | None, Query(
                             pattern=r"^\d{4}-(0[1-9]|1[0-2])$",
                             description="YYYY-MM, local; default: this month")] = None,
                         format: Annotated[Literal["html", "pdf", "xlsx"], Query()] = "html",
                         ) -> Response:
    """A project's monthly report: safety grade and its reasons, alarms and faults and
    their handling, energy and time of use, load, device online rates; as HTML, PDF or
    Excel."""
    from hub.reports.data import build_report, current_month, month_range
    from hub.reports.render import FORMATS, render

    code, devices = await project_devices(ctx, caller, tree, project_id)
    s = settings(ctx)
    month = month or current_month(time.time(), s.tz_offset)
    try:
        since, until = month_range(month, s.tz_offset)
    except ValueError as e:
        raise invalid(str(e), "query", "month") from None
    index = await ctx.device_index()
    names = {d: index.by_id[d].name for d in devices}
    title = tree.nodes[project_id].name
    sources = grading_sources(ctx)

    def build(store: RollupStore | None) -> bytes:
        j = ctx._reader()
        report = build_report(j, store, code, names, since, until, s, month, title,
                              sources=sources)
        return render(report, format)
    body = await with_rollups(ctx, build)
    filename = f"report-{code}-{month}.{format}"
    return Response(body, media_type=FORMATS[format], headers={
        "Content-Disposition": f'attachment; filename="{filename}"'})


# ------------------------------------------------------------------- power quality


class PowerQualityIndexOut(BaseModel):
    index: str
    samples: int
    p95: float | None
    maximum: float | None
    low: float | None
    limit: str
    above_share: float
    passed: bool | None


class PowerQualityOut(BaseModel):
    device: str
    since: float
    until: float
    indices: list[PowerQualityIndexOut]


@router.get("/devices/{device_id}/power-quality", response_model=PowerQualityOut,
            responses=ERRORS)
async def power_quality(device_id: str, caller: Caller, tree: OrgTree, ctx: Ctx,
                        since: Since = None, until: Until = None,
                        nominal_voltage: Annotated[float, Query(gt=0, le=1e6)] = 220.0,
                        nominal_kv: Annotated[float, Query(gt=0)] = 0.38,
                        three_phase: bool = False,
                        short_circuit_mva: Annotated[float | None, Query(
                            gt=0, description="minimum short-circuit capacity at the point "
                            "of common coupling (default: GB/T 14549's reference)")] = None,
                        user_mva: Annotated[float | None, Query(
                            gt=0, description="the user's agreed capacity")] = None,
                        supply_mva: Annotated[float | None, Query(
                            gt=0, description="the supply equipment's capacity")] = None,
                        ) -> PowerQualityOut:
    """Voltage deviation, three-phase unbalance, voltage THD and frequency deviation over
    a period (default: the last 7 days) against GB/T 12325, 15543, 14549 and 15945, and
    each harmonic-current order the device reports against GB/T 14549 table 2 scaled to
    the given capacities: 95 % values, maxima, time above the limit, pass/fail."""
    from hub.analysis.power_quality import THD_LIMITS, assess_device

    end = time.time() if until is None else until
    start = end - 7 * DAY if since is None else since
    if end <= start:
        raise invalid("until must be after since", "query", "until")
    if nominal_kv not in THD_LIMITS:
        raise invalid(f"nominal_kv: one of {sorted(THD_LIMITS)}", "query", "nominal_kv")
    d = await device_in_scope(ctx, caller, tree, device_id)
    if (user_mva is None) != (supply_mva is None):
        raise invalid("give user_mva and supply_mva together", "query", "user_mva")
    results = await ctx.journal(lambda j: assess_device(
        j, d.id, start, end, nominal_voltage, nominal_kv, three_phase, short_circuit_mva,
        user_mva, supply_mva))
    return PowerQualityOut(device=d.id, since=start, until=end, indices=[
        PowerQualityIndexOut(**r.__dict__) for r in results])
