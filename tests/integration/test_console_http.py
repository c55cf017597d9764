"""The web console over plain HTTP against a real hub: pages scoped exactly as the API
scopes the same user, CSRF and cookie rules, the command endpoint's authorisation, the
assets served from the package (no CDN)."""

from __future__ import annotations

import re

import httpx
import pytest

from hub.console import routers
from tests.support.api_hub import PASSWORD, populated_hub

#: console routes anyone may call, and why (every other one needs a session)
PUBLIC = {
    ("GET", "/login"): "the login form",
    ("POST", "/login"): "logging in (its CSRF token comes with the form)",
    ("POST", "/lang"): "the language of the login page too",
    ("GET", "/favicon.ico"): "asked for by the browser on any document",
}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with populated_hub(tmp_path_factory.mktemp("console-http")) as h:
        yield h


def console(hub, name: str) -> tuple[httpx.Client, str]:
    """A logged-in console client and its CSRF token."""
    c = httpx.Client(base_url=hub.url, timeout=30)
    page = c.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    r = c.post("/login", data={"username": name, "password": PASSWORD, "csrf": token})
    assert r.status_code == 303, r.text
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie
    home = c.get("/")
    assert home.status_code == 200
    return c, re.search(r'name="csrf" value="([^"]+)"', home.text).group(1)


def test_pages_are_scoped_like_the_api(hub):
    viewer, _ = console(hub, "view2")
    api = hub.client(hub.login("view2"))
    api_ids = {d["id"] for d in api.get("/api/devices").json()["items"]}
    page = viewer.get("/devices").text
    assert set(re.findall(r'data-device="([^"]+)"', page)) == api_ids == {"d2"}
    assert viewer.get("/devices/d1").status_code == 404
    assert viewer.get("/ui/devices/d1/history").status_code == 404
    assert viewer.get("/ui/devices/d1/live").status_code == 404
    assert viewer.get("/ui/devices/d2/history").status_code == 200
    assert "项目 p1" not in viewer.get("/projects").text
    assert "项目 p2" in viewer.get("/projects").text


def test_commands_need_the_operator_role_and_a_csrf_token(hub):
    viewer, vtoken = console(hub, "view2")
    r = viewer.post("/ui/devices/d2/commands", data={"action": "reset", "csrf": vtoken})
    assert r.status_code == 200 and "命令未发送" in r.text  # the API's 403, shown
    op, token = console(hub, "op1")
    assert op.post("/ui/devices/d2/commands",
                   data={"action": "reset", "csrf": token}).status_code == 404
    assert op.post("/ui/devices/efd-1/commands",
                   data={"action": "reset", "csrf": "forged"}).status_code == 403
    assert op.post("/ui/devices/efd-1/commands", data={"action": "reset", "csrf": token},
                   headers={"origin": "https://evil.example"}).status_code == 403
    r = op.post("/ui/devices/efd-1/commands", data={"action": "reset", "csrf": token})
    assert r.status_code == 200 and 'data-status="' in r.text


def test_login_needs_its_csrf_token_and_logout_ends_the_session(hub):
    c = httpx.Client(base_url=hub.url, timeout=30)
    r = c.post("/login", data={"username": "op1", "password": PASSWORD, "csrf": "x"})
    assert r.status_code == 403
    op, token = console(hub, "op1")
    session = op.cookies.get("hub_session")
    assert op.post("/logout", data={"csrf": token}).status_code == 303
    assert op.get("/").status_code == 303
    # the API's session is revoked too, not only the cookie dropped
    assert hub.client(session).get("/api/auth/me").status_code == 401


def test_assets_are_served_from_the_package_and_pages_load_nothing_else(hub):
    op, _ = console(hub, "op1")
    for path in ("/static/vendor/htmx/htmx.min.js", "/static/vendor/echarts/echarts.min.js",
                 "/static/vendor/leaflet/leaflet.js", "/static/vendor/leaflet/leaflet.css",
                 "/static/console.js", "/static/console.css"):
        assert op.get(path).status_code == 200, path
    # asked for by a browser on any document without an icon link, logged in or not
    icon = httpx.get(hub.url + "/favicon.ico", timeout=30)
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"
    assert icon.content.lstrip().startswith(b"<svg")
    for page in ("/", "/devices", "/devices/d1", "/events", "/projects"):
        html = op.get(page)
        assert html.status_code == 200, page
        assert "script-src 'self'" in html.headers["content-security-policy"]
        assert not re.findall(r'(?:src|href)="(?:https?:)?//', html.text), page


def test_every_console_route_needs_a_session_but_the_public_ones(hub):
    """Without a session every console route is refused or sends to the login; a form
    missing its fields may be refused (422) before the session is looked at, which gives
    nothing away either. The routes come from the console's own routers, so a new one is
    in this matrix at once."""
    routes = {(m, r.path) for router in routers() for r in router.routes for m in r.methods}
    routes.add(("GET", "/favicon.ico"))
    assert set(PUBLIC) <= routes
    with httpx.Client(base_url=hub.url, timeout=30) as anon:
        for method, path in sorted(routes):
            url = re.sub(r"{(\w+)}", lambda m: "csv" if m[1] == "fmt" else "1", path)
            r = anon.request(method, url, follow_redirects=True)
            if (method, path) in PUBLIC:
                assert r.status_code < 500, (method, path, r.status_code)
            elif r.history:  # an alias may redirect first (/projects/x/plan): to the login
                assert r.url.path == "/login", (method, path, str(r.url))
            else:
                assert r.status_code in (401, 403, 422), (method, path, r.status_code)
