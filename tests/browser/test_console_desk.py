"""The console's alarm records and hazards in headless Chromium against a real hub: the
filtered list, a batch acknowledgement with one confirmation, an alarm's detail with its
reading curve, a hazard opened from it and moved on (only the allowed moves offered, the
409 of a stale page shown), photo upload with the 413 and 415 messages, English, and a
viewer of project p2 seeing nothing of p1. Screenshots at desktop and phone width."""

from __future__ import annotations

import re

import pytest

from tests.support.console_browser import console_hub, logged_in, phone_shot
from tests.support.services import wait_until

pytestmark = pytest.mark.browser

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00"
       b"\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\x00\x05\x00"
       b"\x01\xff\x89\x99=\x1d\x00\x00\x00\x00IEND\xaeB`\x82")


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with console_hub(tmp_path_factory.mktemp("console-desk")) as h:
        yield h



def p1_alarms(hub, n: int) -> list[dict]:
    """Wait for at least ``n`` unacknowledged temperature alarm records in p1 (d1 overheats
    once every 30 s cycle of the simulator)."""
    def look():
        with hub.client(hub.root) as c:
            items = c.get("/api/alarms", params={"project": "p1", "limit": 1000}).json()["items"]
        fresh = [a for a in items if a["acked_by"] is None and a["code"] == "temperature"]
        return fresh if len(fresh) >= n else None
    return wait_until(look, 100, interval=0.5, what=f"{n} alarms in p1")


def test_batch_acknowledge_from_the_list(hub, browse, shots):
    alarms = p1_alarms(hub, 1)
    with hub.client(hub.root) as c:
        ids = [a["id"] for a in c.get("/api/alarms", params={"project": "p1"}).json()["items"]
               if a["acked_by"] is None][:2]
    b = logged_in(browse, "op1")
    p = b.page
    p.goto("/events?project=p1")
    assert p.inner_text("h1").startswith("报警记录")
    for i in ids:
        p.check(f"tr[data-alarm='{i}'] input[name=ids]")
    assert p.inner_text("#batch-count") == f"已选 {len(ids)} 条"
    p.select_option("#batch-action", "acknowledge")
    p.fill("#batch input[name=note]", "批量确认测试")
    seen: list[str] = []
    p.once("dialog", lambda d: (seen.append(d.message), d.accept()))
    p.click("#batch-submit")
    p.wait_for_selector("#flash-notice")
    assert seen == [f"确定对已选的 {len(ids)} 条报警执行“确认”？"]
    assert f"{len(ids)} 条" in p.inner_text("#flash-notice")
    with hub.client(hub.root) as c:
        for i in ids:
            assert c.get(f"/api/alarms/{i}").json()["acked_by"] == "op1"
    p.screenshot(path=shots / "alarms-desktop.png", full_page=True)
    phone_shot(browse, "op1", "/events?project=p1", shots / "alarms-phone.png")
    assert alarms


def test_nothing_ticked_asks_for_a_pick(hub, browse):
    p1_alarms(hub, 1)
    b = logged_in(browse, "op1")
    p = b.page
    p.goto("/events?project=p1")
    seen: list[str] = []
    p.once("dialog", lambda d: (seen.append(d.message), d.accept()))
    p.click("#batch-submit")
    assert seen == ["请先勾选至少一条报警。"]
    assert "/events" in p.url


def test_alarm_detail_then_hazard_through_its_workflow(hub, browse, shots):
    a = p1_alarms(hub, 1)[0]
    b = logged_in(browse, "op1")
    p = b.page
    p.goto(f"/alarms/{a['id']}")
    p.wait_for_selector("#chart canvas")
    # a page's CSP forbids eval: wait on selectors, not on wait_for_function's polling
    p.wait_for_selector("#chart[data-points]:not([data-points='0'])")
    assert "温度" in p.inner_text("main") or "过温" in p.inner_text("main")
    p.screenshot(path=shots / "alarm-desktop.png", full_page=True)
    p.fill("#hazard-form textarea[name=description]", "配电箱接线端子过热")
    p.fill("#hazard-form input[name=responsible]", "李四")
    p.click("#hazard-form button[type=submit]")
    p.wait_for_url(re.compile(r"/hazards/\d+\?done=opened"))
    hid = int(re.search(r"/hazards/(\d+)", p.url).group(1))
    assert p.get_attribute("#hazard-state", "data-state") == "found"
    assert p.eval_on_selector_all("#moves button[data-to]", "bs => bs.map(b => b.dataset.to)") \
        == ["rectifying"]
    p.click("#moves button[data-to=rectifying]")
    p.wait_for_url(re.compile(r"done=moved"))
    assert p.inner_text("#hazard-state") == "整改"
    assert p.eval_on_selector_all("#moves button[data-to]", "bs => bs.map(b => b.dataset.to)") \
        == ["checked", "found"]
    # someone else moves it on meanwhile: this page's offer is stale, the 409 is shown
    with hub.client(hub.root) as c:
        assert c.post(f"/api/hazards/{hid}/transitions", json={"to": "checked"}).status_code \
            == 200
    p.click("#moves button[data-to=found]")
    p.wait_for_selector("#flash-error")
    assert "只能转到" in p.inner_text("#flash-error") and "销号" in p.inner_text("#flash-error")
    assert p.inner_text("#hazard-state") == "验收"
    # a photo, then a file that is no image (415) and one too large (413)
    p.set_input_files("#upload-file", {"name": "现场.png", "mimeType": "image/png",
                                        "buffer": PNG})
    p.click("#upload button[type=submit]")
    p.wait_for_selector("#files img")
    p.set_input_files("#upload-file", {"name": "fake.png", "mimeType": "image/png",
                                        "buffer": b"not a png at all"})
    p.click("#upload button[type=submit]")
    p.wait_for_selector("#upload-state.err")
    assert "不支持的文件类型" in p.inner_text("#upload-state")
    p.set_input_files("#upload-file", {"name": "big.png", "mimeType": "image/png",
                                        "buffer": PNG + b"\0" * (1024 * 1024)})
    p.click("#upload button[type=submit]")
    p.wait_for_selector("#upload-state.err:has-text('太大')")
    b.problems = [x for x in b.problems if "status of 41" not in x]  # the 413/415 are the point
    p.screenshot(path=shots / "hazard-desktop.png", full_page=True)
    phone = logged_in(browse, "op1", width=390)
    phone.page.goto(f"/hazards/{hid}")
    phone.page.screenshot(path=shots / "hazard-phone.png", full_page=True)
    phone.page.goto("/hazards?state=checked")
    assert phone.page.locator(f"tr[data-hazard='{hid}']").count() == 1
    phone.page.screenshot(path=shots / "hazards-phone.png", full_page=True)
    with hub.client(hub.root) as c:
        h = c.get(f"/api/hazards/{hid}").json()
    assert h["alarm_id"] == a["id"] and [f["name"] for f in h["files"]] == ["现场.png"]


def test_english_and_a_viewer_of_p2_sees_nothing_of_p1(hub, browse):
    a = p1_alarms(hub, 1)[0]
    with hub.client(hub.root) as c:
        hz = c.post("/api/hazards", json={"project": "p1", "category": "线路老化",
                                           "description": "p1 only"}).json()
    b = logged_in(browse, "view2")
    p = b.page
    p.goto("/events")
    devices = p.eval_on_selector_all("#alarms-table tr[data-alarm] td:nth-child(4) a",
                                     "as => as.map(a => a.getAttribute('href'))")
    assert all(d.endswith("d2") for d in devices), devices
    assert p.locator("#batch").count() == 0  # a viewer acts on nothing
    assert p.goto(f"/alarms/{a['id']}").status == 404
    assert p.goto(f"/hazards/{hz['id']}").status == 404
    p.goto("/hazards?state=found")
    assert p.locator(f"tr[data-hazard='{hz['id']}']").count() == 0
    b.problems = [x for x in b.problems if "404" not in x and "/alarms/" not in x
                  and "/hazards/" not in x]
    p.select_option("#lang", "en")
    p.wait_for_selector("html[lang='en']", state="attached")
    assert p.inner_text("h1") == "Hazards"
    assert p.inner_text("nav.tabs a[data-state=found]").startswith("Found")
