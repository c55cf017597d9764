"""The FastAPI application: routers, the request guard, the docs served from the package."""

from __future__ import annotations

import os

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from hub import __version__, console
from hub.api import (
    routes_alarms,
    routes_analysis,
    routes_audit,
    routes_auth,
    routes_devices,
    routes_events,
    routes_gateways,
    routes_hazards,
    routes_inspections,
    routes_notify,
    routes_ops,
    routes_org,
    routes_ota,
    routes_reports,
    routes_users,
)
from hub.api.context import ApiContext
from hub.api.guard import Guard
from hub.api.routes_ops import Exporter
from hub.api.stream import EventFeed

STATIC = os.path.join(os.path.dirname(__file__), "static")

DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hub API</title>
<link rel="icon" href="/api/static/swagger-ui/favicon-32x32.png">
<link rel="stylesheet" href="/api/static/swagger-ui/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/api/static/swagger-ui/swagger-ui-bundle.js"></script>
<script src="/api/static/docs-init.js"></script></body></html>
"""


def create_app(ctx: ApiContext) -> Guard:
    """The ASGI application of ``ctx`` (the FastAPI app wrapped in the guard)."""
    app = FastAPI(title="hub API", version=__version__,
                  description="The northbound API of the hub: accounts, projects, devices, "
                  "data, events and commands. Authenticate with "
                  "`Authorization: Bearer <token>` (POST /api/auth/login) or an API key.",
                  openapi_url="/api/openapi.json", docs_url=None, redoc_url=None)
    app.state.ctx = ctx
    ctx.exporter = Exporter(ctx.hub.metrics)
    ctx.feed = EventFeed(ctx)
    for module in (routes_auth, routes_users, routes_org, routes_devices, routes_gateways,
                   routes_events, routes_alarms, routes_notify, routes_hazards, routes_audit,
                   routes_ops, routes_analysis, routes_reports,
                   routes_ota, routes_inspections):
        app.include_router(module.router)
    app.mount("/api/static", StaticFiles(directory=STATIC), name="static")
    console.mount(app)  # the web console under / (hub.console)

    from hub.store.postgres import StoreUnavailable, unavailable_response

    app.add_exception_handler(StoreUnavailable, unavailable_response)

    @app.get("/api/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(DOCS_PAGE)

    from hub.api.routes_ota import UPLOAD

    guarded = Guard(app, ctx.settings.max_body, observe=ctx.exporter.observe,
                    hsts=bool(ctx.settings.tls_cert), changed=ctx.principals.changed,
                    streamed=frozenset({UPLOAD}))
    guarded.fastapi = app  # type: ignore[attr-defined]
    return guarded
