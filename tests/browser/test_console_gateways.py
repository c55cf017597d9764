"""The console's gateways (网关) in headless Chromium against a real hub: reached from the
monitoring page, each gateway's kind, connection in words and icon, last heard and the
devices behind it, filtered; English; a viewer of p2 seeing only p2's. Screenshots at
desktop and phone width."""

from __future__ import annotations

import re

import pytest

from tests.support.console_browser import console_hub, logged_in, phone_shot
from tests.support.services import wait_until

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with console_hub(tmp_path_factory.mktemp("console-gw")) as h:
        yield h


def _heard(hub) -> list[dict]:
    def look():
        with hub.client(hub.root) as c:
            gws = c.get("/api/gateways").json()
        return gws if gws and all(g["last_seen"] for g in gws) else None
    return wait_until(look, 30, interval=0.2, what="every gateway heard")


def test_gateways_listed_and_filtered_from_the_monitoring_area(hub, browse, shots):
    gws = _heard(hub)
    b = logged_in(browse, "mgr1")
    p = b.page
    p.goto("/devices")
    p.click("#to-gateways")
    p.wait_for_url(re.compile(r"/gateways$"))
    assert p.inner_text("h1") == "网关"
    assert p.get_attribute("header nav a[aria-current=page]", "href") == "/devices"
    mine = sorted(g["id"] for g in gws if any(d.startswith("d1") for d in g["devices"]))
    shown = p.eval_on_selector_all("#gateways-table tr[data-gateway]",
                                   "rs => rs.map(r => r.dataset.gateway)")
    assert "d1" in shown and "d2" not in shown, (shown, mine)
    row = p.locator("#gateways-table tr[data-gateway=d1]")
    text = row.inner_text()
    assert "模拟器" in text and "● 已连接" in text
    assert row.locator("a[href='/devices/d1']").count() == 1
    assert f"{len(shown)} 个网关" in p.inner_text("#gw-summary")
    p.screenshot(path=shots / "gateways-desktop.png", full_page=True)
    phone_shot(browse, "mgr1", "/gateways", shots / "gateways-phone.png")
    # filters: a kind there is none of, then disconnected ones only
    p.select_option("select[name=kind]", "dtu")
    p.click("form.filters button[type=submit]")
    p.wait_for_url(re.compile(r"kind=dtu"))
    assert p.locator("#gateways-table tr[data-gateway]").count() == 0
    assert "没有符合条件的网关" in p.inner_text("#gateways-table")
    p.goto("/gateways?connected=1&q=D1")
    assert p.eval_on_selector_all("#gateways-table tr[data-gateway]",
                                  "rs => rs.map(r => r.dataset.gateway)") == ["d1"]


def test_english_and_a_viewer_of_p2_sees_only_p2s(hub, browse):
    _heard(hub)
    b = logged_in(browse, "view2")
    p = b.page
    p.goto("/gateways")
    assert p.eval_on_selector_all("#gateways-table tr[data-gateway]",
                                  "rs => rs.map(r => r.dataset.gateway)") == ["d2"]
    p.select_option("#lang", "en")
    p.wait_for_selector("html[lang='en']", state="attached")
    assert p.inner_text("h1") == "Gateways"
    assert "● Connected" in p.inner_text("#gateways-table tr[data-gateway=d2]")
