"""The console's firmware updates (固件升级) in headless Chromium against a real hub with
LwM2M detectors (which never wake here, so a campaign stays in its first wave): a manager
uploads an image (the API's 413 and 422 shown as sentences), an operator starts a
campaign with its canary, batch and failure bound, sees its progress as a bar and
numbers, pauses, resumes and cancels it with confirmations, and reads a device's history;
a viewer of another project sees nothing of it. Screenshots at desktop and phone width."""

from __future__ import annotations

import re

import pytest

from plugins.simulators.lwm2m.firmware import make_image
from tests.support.api_hub import PASSWORD
from tests.support.console_browser import logged_in, phone_shot
from tests.support.ota import OtaHub

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    h = OtaHub(tmp_path_factory.mktemp("console-ota"), 4, api={"max_image_kb": 8})
    try:
        with h.client() as root:
            p1 = root.get("/api/projects").json()[0]["id"]
            r = root.post("/api/projects", json={"name": "项目 p2", "code": "p2"})
            assert r.status_code == 201, r.text
            for name, role, node in (("op1", "operator", p1), ("mgr1", "manager", p1),
                                     ("view2", "viewer", r.json()["id"])):
                made = root.post("/api/users", json={"name": name, "password": PASSWORD,
                                                     "role": role, "node_id": node})
                assert made.status_code == 201, made.text
        yield h
    finally:
        h.stop()


def _upload(p, version: str, image: bytes, models: str = "nb-efd") -> None:
    p.goto("/firmware")
    p.click("#upload-firmware summary")
    p.set_input_files("#fw-file", {"name": f"efd-{version}.bin",
                                   "mimeType": "application/octet-stream", "buffer": image})
    p.fill("#upload-firmware input[name=version]", version)
    p.fill("#upload-firmware input[name=models]", models)
    p.click("#upload-firmware button[type=submit]")
    p.wait_for_selector("#flash-error, #flash-notice")


def test_a_manager_uploads_firmware_and_refusals_are_sentences(hub, browse, shots):
    b = logged_in(browse, "mgr1")
    p = b.page
    p.click("header nav a[href='/firmware']")
    p.wait_for_url(re.compile(r"/firmware$"))
    assert p.inner_text("h1") == "固件升级"
    _upload(p, "2.0.0", make_image("2.0.0", 9000))
    assert p.inner_text("#flash-error").startswith("固件文件太大：")
    _upload(p, "2..0", make_image("2.0.0", 3000))
    assert p.inner_text("#flash-error").startswith("操作未完成：") and \
        "version" in p.inner_text("#flash-error")
    _upload(p, "2.0.0", make_image("2.0.0", 3000))
    assert p.inner_text("#flash-notice") == "固件已上传。"
    row = p.locator("#firmware-table tr[data-firmware]")
    assert row.count() == 1 and "2.0.0" in row.inner_text() and "nb-efd" in row.inner_text()
    with hub.client() as root:
        assert [f["version"] for f in root.get("/api/firmware").json()] == ["2.0.0"]
    # an operator neither uploads nor deletes
    op = logged_in(browse, "op1")
    op.page.goto("/firmware")
    assert op.page.locator("#upload-firmware").count() == 0
    assert op.page.locator("#firmware-table form").count() == 0
    assert op.page.locator("#new-campaign").count() == 1


def test_an_operator_runs_a_campaign_with_confirmations(hub, browse, shots):
    with hub.client() as root:
        if not root.get("/api/firmware").json():
            assert root.post("/api/firmware", params={"project": "p1", "version": "2.0.0",
                                                      "models": "nb-efd"},
                             content=make_image("2.0.0", 3000),
                             headers={"Content-Type": "application/octet-stream"}
                             ).status_code == 201
    b = logged_in(browse, "op1")
    p = b.page
    p.goto("/firmware")
    p.click("#new-campaign summary")
    p.fill("#new-campaign input[name=name]", "二号楼升级")
    p.fill("#new-campaign input[name=canary]", "1")
    p.fill("#new-campaign input[name=batch]", "2")
    p.fill("#new-campaign input[name=failure_bound]", "25")
    p.click("#new-campaign button[type=submit]")
    p.wait_for_url(re.compile(r"/firmware/campaigns/\d+\?done=started"))
    cid = int(re.search(r"/campaigns/(\d+)", p.url).group(1))
    with hub.client() as root:
        c = root.get(f"/api/ota/campaigns/{cid}").json()
    assert (c["canary"], c["batch"], c["failure_bound"], c["created_by"]) == (1, 2, 0.25, "op1")
    assert p.get_attribute("#campaign-state [data-state]", "data-state") == "running"
    assert "进行中" in p.inner_text("#campaign-state")
    assert "成功 0 / 共 4 台" in p.inner_text(".ota-progress")  # numbers beside the bar
    assert p.locator("#campaign-devices tr[data-device]").count() == 4
    p.screenshot(path=shots / "campaign-desktop.png", full_page=True)
    phone_shot(browse, "op1", f"/firmware/campaigns/{cid}", shots / "campaign-phone.png")
    # pause: refused confirmation does nothing; accepted, it pauses
    seen: list[str] = []
    p.once("dialog", lambda d: (seen.append(d.message), d.dismiss()))
    p.click("#campaign-acts button[data-act=pause]")
    assert seen and "二号楼升级" in seen[0]
    with hub.client() as root:
        assert root.get(f"/api/ota/campaigns/{cid}").json()["state"] == "running"
    p.once("dialog", lambda d: d.accept())
    p.click("#campaign-acts button[data-act=pause]")
    p.wait_for_url(re.compile(r"done=pause"))
    assert p.get_attribute("#campaign-state [data-state]", "data-state") == "paused"
    assert [x.get_attribute("data-act") for x in
            p.locator("#campaign-acts button").all()] == ["resume", "cancel"]
    p.once("dialog", lambda d: d.accept())
    p.click("#campaign-acts button[data-act=resume]")
    p.wait_for_url(re.compile(r"done=resume"))
    seen.clear()
    p.once("dialog", lambda d: (seen.append(d.message), d.accept()))
    p.click("#campaign-acts button[data-act=cancel]")
    p.wait_for_url(re.compile(r"done=cancel"))
    assert "二号楼升级" in seen[0]
    assert p.get_attribute("#campaign-state [data-state]", "data-state") == "cancelled"
    assert p.locator("#campaign-acts").count() == 0
    # no device woke, so none was updated: the bar shows that, not the cancelled as done
    with hub.client() as root:
        progress = root.get(f"/api/ota/campaigns/{cid}").json()["progress"]
    done = progress.get("succeeded", 0) + progress.get("failed", 0) + progress.get(
        "timed_out", 0)
    assert progress.get("cancelled", 0) >= 1
    bar = p.locator(".ota-progress progress")
    assert (bar.get_attribute("value"), bar.get_attribute("max")) == (str(done), "4")
    assert f"已完成 {round(100 * done / 4)}%" in p.inner_text(".ota-progress")
    assert "已取消" in p.inner_text(".ota-progress")
    # the list: state in words, progress as a bar with numbers
    p.goto("/firmware")
    row = p.locator(f"#campaigns-table tr[data-campaign='{cid}']")
    assert "已取消" in row.inner_text() and row.locator("progress").count() == 1
    assert row.locator("progress").get_attribute("value") == str(done)
    p.screenshot(path=shots / "firmware-desktop.png", full_page=True)
    phone_shot(browse, "op1", "/firmware", shots / "firmware-phone.png")
    # a device's history in the campaign
    p.goto(f"/firmware/campaigns/{cid}")
    dev = p.get_attribute("#campaign-devices tr[data-device]", "data-device")
    p.click(f"#campaign-devices tr[data-device='{dev}'] a")
    p.wait_for_url(re.compile(rf"/devices/{dev}$"))
    with hub.client() as root:
        history = root.get(f"/api/ota/campaigns/{cid}/devices/{dev}/history").json()
    assert p.locator("#ota-history li[data-phase]").count() == len(history)
    # a viewer of p2 sees nothing of it
    v = logged_in(browse, "view2")
    v.page.goto("/firmware")
    assert v.page.locator("#campaigns-table tr[data-campaign]").count() == 0
    assert v.page.locator("#firmware-table tr[data-firmware]").count() == 0
    assert v.page.locator("#new-campaign, #upload-firmware").count() == 0
    assert v.page.goto(f"/firmware/campaigns/{cid}").status == 404
    assert v.page.goto(f"/firmware/campaigns/{cid}/devices/{dev}").status == 404
    v.problems = [x for x in v.problems if "404" not in x and "/firmware/" not in x]
    v.page.goto("/firmware")
    v.page.select_option("#lang", "en")
    v.page.wait_for_selector("html[lang='en']", state="attached")
    assert v.page.inner_text("h1") == "Firmware updates"


def test_the_file_picker_speaks_the_consoles_language(hub, browse):
    """The browser draws a file input's button and "no file" text in its own language
    (English here): the console shows its own, in the user's language, and the button
    still opens the chooser."""
    b = logged_in(browse, "mgr1")
    p = b.page
    p.goto("/firmware")
    p.click("#upload-firmware summary")
    form = p.locator("#upload-firmware")
    assert form.locator(".file-pick").inner_text() == "选择文件"
    assert form.locator(".file-name").inner_text() == "未选择文件"
    box = p.locator("#fw-file").bounding_box()  # out of sight (opacity 0, 1 px), not gone
    assert box is not None and box["width"] <= 1 and box["height"] <= 1
    with p.expect_file_chooser() as chooser:
        form.locator(".file-pick").click()
    chooser.value.set_files({"name": "efd-3.0.0.bin", "mimeType": "application/octet-stream",
                             "buffer": make_image("3.0.0", 1000)})
    assert form.locator(".file-name").inner_text() == "efd-3.0.0.bin"
    p.select_option("#lang", "en")
    p.wait_for_selector("html[lang='en']", state="attached")
    p.click("#upload-firmware summary")
    assert form.locator(".file-pick").inner_text() == "Choose file"
    assert form.locator(".file-name").inner_text() == "No file chosen"
    p.select_option("#lang", "zh_CN")
    p.wait_for_selector("html[lang='zh-CN']", state="attached")
