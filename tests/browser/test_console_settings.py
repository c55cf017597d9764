"""The console's settings in headless Chromium against a real hub: a manager creates a
user (only the roles and places it may grant are offered; the API's password policy is
shown at the field), edits a project and adds a device with the API's validation errors
inline, sees a policy refused; an operator's language is kept with the account and used
at login on a fresh browser; a viewer of p2 sees nothing of p1."""

from __future__ import annotations

import io
import re

import pytest

from tests.support.console_browser import console_hub, logged_in, phone_shot

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with console_hub(tmp_path_factory.mktemp("console-settings")) as h:
        yield h



def options(page, selector: str) -> list[str]:
    return page.eval_on_selector_all(f"{selector} option", "os => os.map(o => o.value)")


def test_a_manager_creates_a_user_with_only_what_it_may_grant(hub, browse, shots):
    b = logged_in(browse, "mgr1")
    p = b.page
    p.goto("/settings/users")
    assert options(p, "#new-user #f-role") == ["viewer", "auditor", "operator", "manager"]
    assert options(p, "#new-user #f-node_id") == [str(hub.ids["p1"])]
    p.fill("#new-user #f-name", "duty7")
    p.fill("#new-user #f-password", "short")
    p.click("#create-user")
    p.wait_for_selector("#f-password[aria-invalid=true]")
    assert "10" in p.inner_text("[data-error-for=password]")
    assert p.input_value("#new-user #f-name") == "duty7"  # what was typed stays
    b.problems = [x for x in b.problems if "422" not in x]
    p.fill("#new-user #f-password", "Night-shift-4711")
    p.select_option("#new-user #f-role", "operator")
    p.click("#create-user")
    p.wait_for_selector("#flash-notice")
    assert "值班员 @ platform / U1 / 项目 p1" in p.inner_text("tr[data-user=duty7]")
    p.screenshot(path=shots / "settings-users-desktop.png", full_page=True)
    phone_shot(browse, "mgr1", "/settings/users", shots / "settings-users-phone.png")


def test_project_and_device_forms_show_the_apis_errors_inline(hub, browse, shots):
    b = logged_in(browse, "mgr1")
    p = b.page
    p.goto("/settings/projects")
    p.click("tr[data-project=p1] summary")
    pid = hub.ids["p1"]
    p.fill(f"#p{pid}f-latitude", "95")
    p.click("tr[data-project=p1] form button[type=submit]")
    p.wait_for_selector(f"#p{pid}f-latitude[aria-invalid=true]")
    assert "90" in p.inner_text(f"#p{pid}f-latitude-err")
    p.fill(f"#p{pid}f-latitude", "31.2")
    p.fill(f"#p{pid}f-longitude", "121.5")
    p.click("tr[data-project=p1] form button[type=submit]")
    p.wait_for_selector("#flash-notice")
    assert "31.2, 121.5" in p.inner_text("tr[data-project=p1]")
    p.goto("/settings/devices?project=p1")
    p.fill("#new-device #f-id", "bad id!")
    p.fill("#new-device #f-name", "四号箱")
    p.fill("#new-device #f-model", "simulated")
    p.fill("#new-device #f-transport", "demo")
    p.fill("#new-device #f-address", "leakage")
    p.click("#create-device")
    p.wait_for_selector("#new-device #f-id[aria-invalid=true]")
    p.fill("#new-device #f-id", "d4")
    p.fill("#new-device #f-address", "no-such-profile")
    p.click("#create-device")
    p.wait_for_selector("#new-device [data-error-for=address]")
    assert "profile" in p.inner_text("#new-device [data-error-for=address]")
    p.fill("#new-device #f-address", "leakage")
    p.fill("#new-device #f-rated", "-63")
    p.click("#create-device")
    p.wait_for_selector("#new-device [data-error-for=rated]")
    assert "positive number of amperes" in p.inner_text("#new-device [data-error-for=rated]")
    p.fill("#new-device #f-rated", "63")
    p.click("#create-device")
    p.wait_for_selector("#flash-notice")
    assert "四号箱" in p.inner_text("tr[data-device=d4]")
    p.click("tr[data-device=d4] summary")
    assert p.input_value("#d-d4f-rated") == "63"
    p.fill("#d-d4f-location", "4F 配电间")
    p.fill("#d-d4f-rated", '{"channels": {"A": 100, "B": 100, "C": 100}}')
    p.click("tr[data-device=d4] form button[type=submit]")
    p.wait_for_selector("#flash-notice")
    assert "4F 配电间" in p.inner_text("tr[data-device=d4]")
    p.screenshot(path=shots / "settings-devices-desktop.png", full_page=True)
    p.goto("/settings/notify?project=p1")
    p.click("#save-policy")  # no channel picked: the API wants at least one step
    p.wait_for_selector("#form-error")
    assert "通知步骤" in p.inner_text("#form-error")
    b.problems = [x for x in b.problems if "422" not in x]
    with hub.client(hub.root) as c:
        d4 = c.get("/api/devices/d4").json()
    assert (d4["name"], d4["location"]) == ("四号箱", "4F 配电间")
    assert d4["settings"]["stored"] == {"rated": {"channels": {"A": 100, "B": 100, "C": 100}}}
    assert d4["settings"]["rated"] == "A 100 A, B 100 A, C 100 A"


def test_a_manager_changes_an_api_device_s_set_points_on_its_page(hub, browse, shots):
    with hub.client(hub.root) as c:
        r = c.post("/api/devices", json={
            "id": "d6", "name": "六号箱", "project": "p1", "model": "simulated",
            "transport": "demo", "address": "silent",
            "settings": {"heartbeat": {"interval": 30, "timeout_count": 4}, "rated": 40}})
        assert r.status_code == 201, r.text
    b = logged_in(browse, "op1")  # an operator sees the settings, and no form
    b.page.goto("/devices/d6")
    assert b.page.locator("#alarm-settings tr[data-rule]").count() == 0  # none enabled
    assert b.page.locator("#alarm-settings input").count() == 0
    assert "40 A" in b.page.inner_text("#device-heartbeat")
    assert "30" in b.page.inner_text("#device-heartbeat")
    b = logged_in(browse, "mgr1")
    p = b.page
    p.goto("/devices/d1")  # a device of the configuration file: changed there
    assert p.locator("#alarm-settings input").count() == 0
    assert "配置文件" in p.inner_text("#device-settings")
    p.goto("/devices/d6")
    p.fill("#f-alarm\\.temperature", "abc")
    p.click("#save-settings")
    p.wait_for_selector("[data-error-for='alarm.temperature']")
    p.fill("#f-alarm\\.temperature", "200")  # above the standard's 140 °C
    p.click("#save-settings")
    p.wait_for_selector("#form-error")
    assert "temperature" in p.inner_text("#form-error")
    manager = b
    p.fill("#f-alarm\\.temperature", "70")
    p.click("#save-settings")
    p.wait_for_selector("#flash-notice")
    assert p.input_value("#f-alarm\\.temperature") == "70"
    p.screenshot(path=shots / "device-settings-desktop.png", full_page=True)
    with hub.client(hub.root) as c:
        d6 = c.get("/api/devices/d6").json()["settings"]
    # the other stored settings are kept; the running device applies the new set point
    assert d6["stored"] == {"alarms": {"temperature": {"alarm": 70.0}},
                            "heartbeat": {"interval": 30.0, "timeout_count": 4},
                            "rated": 40.0}
    assert d6["alarms"]["temperature"]["alarm"] == 70.0
    # the operator's page shows the alarm now switched on
    b = logged_in(browse, "op1")
    b.page.goto("/devices/d6")
    assert "70 °C" in b.page.inner_text("#alarm-settings tr[data-rule=temperature]")
    p.fill("#f-alarm\\.temperature", "")  # empty: back to the default, here off
    p.click("#save-settings")
    p.wait_for_selector("#flash-notice")
    # off the device's pages before it goes (their charts would ask for its history: 404)
    p.goto("/settings/devices")
    b.page.goto("/settings/devices")
    with hub.client(hub.root) as c:
        d6 = c.get("/api/devices/d6").json()["settings"]
        assert "alarms" not in d6["stored"] and "temperature" not in d6["alarms"]
        assert c.delete("/api/devices/d6").status_code == 204
    # the two refusals were meant (Chromium reports each 422 as a console error, at times
    # after the page showed it: filtered at the end, not right after)
    manager.problems = [x for x in manager.problems if "422" not in x]


def test_the_language_is_kept_with_the_account(hub, browse):
    b = logged_in(browse, "op1")
    p = b.page
    p.goto("/settings/users")
    assert p.locator("#no-users-role").count() == 1  # an operator manages no users
    p.goto("/settings/account")
    p.select_option("#account-lang", "en")
    p.click("#save-lang")
    p.wait_for_selector("html[lang='en']", state="attached")
    fresh = logged_in(browse, "op1")  # another browser, no language cookie
    assert fresh.page.inner_text("h1") == "Home"
    assert fresh.page.get_attribute("html", "lang") == "en"


def test_a_viewer_of_p2_sees_nothing_of_p1(hub, browse):
    b = logged_in(browse, "view2")
    p = b.page
    p.goto("/settings/projects")
    assert p.eval_on_selector_all("#projects-table tr[data-project]",
                                  "rs => rs.map(r => r.dataset.project)") == ["p2"]
    assert p.locator("#new-project").count() == 0
    p.goto("/settings/devices")
    assert options(p, "select[name=project]") == ["p2"]
    assert p.locator("#new-device").count() == 0
    p.goto("/settings/notify?project=p1")
    assert re.sub(r"\s+", "", p.inner_text("#policy h2")).startswith("项目p2")


def plan_png() -> bytes:
    """A small floor plan: three rooms drawn on white."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (800, 500), "white")
    draw = ImageDraw.Draw(img)
    for box in ((20, 20, 380, 480), (380, 20, 780, 250), (380, 250, 780, 480)):
        draw.rectangle(box, outline="black", width=4)
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def test_floor_plan_upload_place_and_live_state(hub, browse, shots):
    b = logged_in(browse, "mgr1")
    p = b.page
    p.goto("/projects/p1")
    assert p.locator("#no-plan").count() == 1
    p.set_input_files("#upload-file", {"name": "plan.txt", "mimeType": "image/png",
                                        "buffer": b"no image"})
    p.click("#plan-upload button[type=submit]")
    p.wait_for_selector("#upload-state.err:has-text('不支持的图片类型')")
    b.problems = [x for x in b.problems if "status of 415" not in x]
    p.set_input_files("#upload-file", {"name": "一层.png", "mimeType": "image/png",
                                        "buffer": plan_png()})
    p.click("#plan-upload button[type=submit]")
    p.wait_for_selector("#plan img")
    # by mouse: choose d1, click the left room
    p.select_option("#place-device", "d1")
    box = p.locator("#plan img").bounding_box()
    p.mouse.click(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.5)
    p.wait_for_selector("#plan a[data-spot=d1]")
    # by keyboard: efd-1 at 70 % across, 30 % down
    p.select_option("#place-device", "efd-1")
    p.fill("#place-x", "70")
    p.fill("#place-y", "30")
    p.focus("#place-submit")
    p.keyboard.press("Enter")
    p.wait_for_selector("#plan a[data-spot=efd-1]")
    style = p.get_attribute("#plan a[data-spot=efd-1]", "style")
    assert "left:70.0%" in style.replace(" ", "") and "top:30.0%" in style.replace(" ", "")
    # d1 overheats once every 30 s: its spot turns to alarm by itself, with the word too
    p.wait_for_selector("#plan a[data-spot=d1][data-state=alarm]", timeout=60_000)
    assert "报警" in p.inner_text("#plan a[data-spot=d1]")
    p.screenshot(path=shots / "project-plan-desktop.png", full_page=True)
    phone = logged_in(browse, "op1", width=390)
    phone.page.goto("/projects/p1")
    phone.page.wait_for_selector("#plan a[data-spot=d1]")
    assert phone.page.locator("#place-form").count() == 0  # an operator places nothing
    phone.page.screenshot(path=shots / "project-plan-phone.png", full_page=True)
    view = logged_in(browse, "view2")
    assert view.page.goto("/projects/p1").status == 404
    assert view.page.context.request.get(f"{hub.url}/ui/projects/p1/plan.img").status == 404
    view.problems = []  # the 404s are the point
    acts = [e["action"] for e in hub.audit("--device", "p1")]
    assert acts.count("floor_plan.placed") == 2 and "floor_plan.uploaded" in acts
