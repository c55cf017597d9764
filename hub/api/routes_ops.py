"""Operations: ``/metrics`` (Prometheus text), ``/healthz``, ``/readyz``. Unauthenticated,
like most exporters: they name no device and no person. Bind the API to loopback or a
management network, or put a proxy with authentication in front, where that matters."""

from __future__ import annotations

import re
from collections.abc import Iterator

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hub.api.deps import Ctx
from hub.api.schemas import Health
from hub.metrics import Metrics

router = APIRouter(tags=["operations"])

_BAD = re.compile(r"[^a-zA-Z0-9_]")


def prom_name(name: str) -> str:
    return "hub_" + _BAD.sub("_", name)


class HubCollector(Collector):
    """Every counter and gauge of :class:`hub.metrics.Metrics`, read at each scrape."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for m in self.metrics.snapshot():
            name = prom_name(m["name"])
            labels = {_BAD.sub("_", k): str(v) for k, v in m["labels"].items()}
            key = f"{name}:{m['type']}"
            fam = families.get(key)
            if fam is None:
                cls = CounterMetricFamily if m["type"] == "counter" else GaugeMetricFamily
                fam = families[key] = cls(name, f"hub metric {m['name']}",
                                          labels=sorted(labels))
            if sorted(labels) != list(fam._labelnames):
                continue  # one name, different label sets: Prometheus cannot mix them
            fam.add_metric([labels[k] for k in fam._labelnames], m["value"])
        yield from families.values()


LAG_BUCKETS = (.001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5)


class Exporter:
    """A private registry: the hub's metrics plus the API's request latency."""

    def __init__(self, metrics: Metrics) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(HubCollector(metrics))
        self.latency = Histogram("hub_api_request_seconds", "API request latency",
                                 ["method", "route", "status"], registry=self.registry,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1,
                                          2.5, 5, 10))
        # how late the shared loop runs a callback it was asked to run at a given time: the
        # floor under every request's latency while ingest shares the loop
        self.loop_lag = Histogram("hub_loop_lag_seconds", "asyncio loop lag (a probe's "
                                  "lateness)", registry=self.registry, buckets=LAG_BUCKETS)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.latency.labels(method, route, str(status)).observe(seconds)

    def text(self) -> bytes:
        return generate_latest(self.registry)


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}}})
async def metrics(ctx: Ctx) -> Response:
    """Every counter and gauge the hub keeps, in the Prometheus text format."""
    return Response(ctx.exporter.text(), media_type="text/plain; version=0.0.4; charset=utf-8")


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process answers."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(ctx: Ctx) -> Response:
    """The journal and the platform store answer queries."""
    checks: dict[str, str] = {}
    try:
        await ctx.journal(lambda j: j.last_seq())
        checks["journal"] = "ok"
    except Exception as e:  # reported, not raised: this is the health answer
        checks["journal"] = f"error: {e}"
    try:
        await ctx.run(ctx.store.count_users)
        checks["store"] = "ok"
    except Exception as e:
        checks["store"] = f"error: {e}"
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse(Health(status="ok" if ok else "unavailable", checks=checks)
                        .model_dump(), status_code=200 if ok else 503)
