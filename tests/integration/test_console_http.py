"""The web console over plain HTTP against a real hub: pages scoped exactly as the API
scopes the same user, CSRF and cookie rules, the command endpoint's authorisation, the
assets served from the package (no CDN)."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.support.api_hub import PASSWORD, populated_hub


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
