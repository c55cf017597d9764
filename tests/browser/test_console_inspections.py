"""The console's inspections (巡查) in headless Chromium against a real hub: a manager makes
a plan, the desk's tasks listed by state with the missed ones flagged, an operator records
a result where a problem opens a hazard, a plan changed, English, and a viewer of p2
seeing nothing of p1. Screenshots at desktop and phone width."""

from __future__ import annotations

import re
import time

import pytest

from tests.support.console_browser import console_hub, logged_in, phone_shot
from tests.support.services import wait_until

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with console_hub(tmp_path_factory.mktemp("console-insp")) as h:
        yield h


def _tasks(hub, plan: int, n: int, state: str | None = None) -> list[dict]:
    def look():
        with hub.client(hub.root) as c:
            params = {"plan": plan, **({"state": state} if state else {})}
            got = c.get("/api/inspections/tasks", params=params).json()
        return got if len(got) >= n else None
    return wait_until(look, 30, interval=0.2, what=f"{n} {state or ''} tasks of plan {plan}")


@pytest.fixture(scope="module")
def past_plan(hub) -> dict:
    """An hourly plan of p1 begun two hours ago with ten minutes to do each task: two
    tasks missed, one open."""
    with hub.client(hub.root) as c:
        r = c.post("/api/inspections/plans", json={
            "project": "p1", "name": "配电房日常巡查", "items": ["柜门关闭", "无异味", "温度正常"],
            "every": "hourly", "grace": 600, "start": time.time() - 2 * 3600 - 30,
            "assignee": "张三"})
        assert r.status_code == 201, r.text
        plan = r.json()
    _tasks(hub, plan["id"], 2, "missed")
    _tasks(hub, plan["id"], 1, "open")
    return plan


def test_a_manager_makes_a_plan_and_sees_missed_tasks_flagged(hub, browse, shots, past_plan):
    b = logged_in(browse, "mgr1")
    p = b.page
    p.goto("/hazards")
    p.click("#to-inspections")
    p.wait_for_url(re.compile(r"/inspections$"))
    assert p.inner_text("h1") == "巡查"
    p.click("#new-plan summary")
    p.select_option("#new-plan select[name=project]", "p1")
    p.fill("#new-plan input[name=name]", "消防通道周检")
    p.fill("#new-plan textarea[name=items]", "通道畅通\n\n应急照明有效\n")
    p.select_option("#new-plan select[name=every]", "weekly")
    p.click("#new-plan button[type=submit]")
    p.wait_for_selector("#flash-notice")
    assert p.inner_text("#flash-notice") == "巡查计划已创建。"
    with hub.client(hub.root) as c:
        made = [x for x in c.get("/api/inspections/plans").json() if x["name"] == "消防通道周检"]
    assert len(made) == 1 and made[0]["items"] == ["通道畅通", "应急照明有效"]
    assert made[0]["every"] == 7 * 86400 and made[0]["created_by"] == "mgr1"
    row = p.locator(f"#plans-table tr[data-plan='{made[0]['id']}']")
    assert "每周" in row.inner_text()
    # missed tasks: their tab counts them and each row says so in words, not colour only
    p.click("nav.tabs a[data-state=missed]")
    p.wait_for_url(re.compile(r"state=missed"))
    missed = p.locator("#tasks-table tr[data-state=missed]")
    assert missed.count() >= 2
    assert "⚠ 漏检" in missed.first.inner_text()
    assert "漏检" in p.inner_text("nav.tabs a[data-state=missed]")
    p.screenshot(path=shots / "inspections-desktop.png", full_page=True)
    phone_shot(browse, "mgr1", "/inspections?state=missed", shots / "inspections-phone.png")
    # the filter by plan keeps only its tasks
    p.select_option("select[name=plan]", str(past_plan["id"]))
    p.click("form.filters button[type=submit]")
    p.wait_for_url(re.compile(rf"plan={past_plan['id']}"))
    names = p.eval_on_selector_all("#tasks-table tr[data-task] td:nth-child(2) a",
                                   "as => as.map(a => a.textContent)")
    assert names and set(names) == {"配电房日常巡查"}


def test_a_plan_is_changed_by_its_manager_and_only_viewed_by_an_operator(hub, browse,
                                                                         past_plan):
    pid = past_plan["id"]
    b = logged_in(browse, "op1")
    b.page.goto(f"/inspections/plans/{pid}")
    assert b.page.locator("#plan-form").count() == 0
    assert "柜门关闭" in b.page.inner_text("main")
    assert b.page.locator("#new-plan").count() == 0  # an operator makes no plans
    m = logged_in(browse, "mgr1")
    p = m.page
    p.goto(f"/inspections/plans/{pid}")
    p.fill("#plan-form input[name=assignee]", "李四")
    p.fill("#plan-form textarea[name=items]", "柜门关闭\n无异味\n温度正常\n灭火器在位")
    p.click("#plan-form button[type=submit]")
    p.wait_for_selector("#flash-notice")
    with hub.client(hub.root) as c:
        got = c.get(f"/api/inspections/plans/{pid}").json()
    assert got["assignee"] == "李四" and got["items"][-1] == "灭火器在位"
    assert got["every"] == 3600 and got["active"] is True
    # the API's refusal is a sentence on the page: more than a year to do a task
    p.goto(f"/inspections/plans/{pid}")
    p.fill("#plan-form input[name=grace]", "9600")
    p.click("#plan-form button[type=submit]")
    p.wait_for_selector("#flash-error")
    assert p.inner_text("#flash-error").startswith("完成时限（小时）: ")


def test_an_operator_records_a_problem_that_opens_a_hazard(hub, browse, shots, past_plan):
    open_task = _tasks(hub, past_plan["id"], 1, "open")[0]
    b = logged_in(browse, "op1")
    p = b.page
    p.goto(f"/inspections?project=p1&plan={past_plan['id']}")
    p.click(f"#tasks-table tr[data-task='{open_task['id']}'] a.button")
    p.wait_for_url(re.compile(rf"/inspections/tasks/{open_task['id']}$"))
    items = open_task["items"]
    p.check("fieldset[data-item='1'] input[value=problem]")
    p.fill("fieldset[data-item='1'] input[name=n1]", "配电柜有焦糊味")
    p.click("#hazard-part summary")
    p.check("#open-hazard")
    p.fill("#hazard-part input[name=category]", "电气线路")
    p.fill("#hazard-part textarea[name=description]", "配电柜内有焦糊味，疑似接头过热")
    p.fill("#hazard-part input[name=responsible]", "王五")
    p.screenshot(path=shots / "inspection-task-desktop.png", full_page=True)
    phone_shot(browse, "op1", f"/inspections/tasks/{open_task['id']}",
               shots / "inspection-task-phone.png")
    p.click("#result-form button[type=submit]")
    p.wait_for_url(re.compile(r"/hazards/\d+\?done=opened"))
    hid = int(re.search(r"/hazards/(\d+)", p.url).group(1))
    with hub.client(hub.root) as c:
        task = c.get(f"/api/inspections/tasks/{open_task['id']}").json()
        hz = c.get(f"/api/hazards/{hid}").json()
    assert task["state"] == "done" and task["hazard_id"] == hid and task["done_by"] == "op1"
    assert [r["result"] for r in task["results"]] == ["ok", "problem"] + ["ok"] * (
        len(task["items"]) - 2)
    assert items[:3] == task["items"][:3]
    assert hz["project"] == "p1" and hz["category"] == "电气线路" and hz["responsible"] == "王五"
    # recorded: the page shows the results, no form; a second record is no longer offered
    p.goto(f"/inspections/tasks/{open_task['id']}")
    assert p.get_attribute("#task-state", "data-state") == "done"
    assert p.locator("#result-form").count() == 0
    assert "⚠ 发现问题" in p.inner_text("#results-table")
    # a missed task is flagged on its page and may still be recorded (late)
    missed = _tasks(hub, past_plan["id"], 1, "missed")[0]
    p.goto(f"/inspections/tasks/{missed['id']}")
    assert "漏检" in p.inner_text("#missed-note")
    p.click("#result-form button[type=submit]")
    p.wait_for_selector("#flash-notice")
    p.goto("/inspections?state=done&project=p1")
    row = p.locator(f"#tasks-table tr[data-task='{missed['id']}']")
    assert "补录" in row.inner_text()


def test_english_and_a_viewer_of_p2_sees_nothing_of_p1(hub, browse, past_plan):
    task = _tasks(hub, past_plan["id"], 1)[0]
    b = logged_in(browse, "view2")
    p = b.page
    p.goto("/inspections?state=missed")
    assert p.locator("#tasks-table tr[data-task]").count() == 0
    assert p.locator("#plans-table tr[data-plan]").count() == 0
    assert p.locator("#new-plan").count() == 0
    assert p.goto(f"/inspections/tasks/{task['id']}").status == 404
    assert p.goto(f"/inspections/plans/{past_plan['id']}").status == 404
    b.problems = [x for x in b.problems if "404" not in x and "/inspections/" not in x]
    p.goto("/inspections")
    p.select_option("#lang", "en")
    p.wait_for_selector("html[lang='en']", state="attached")
    assert p.inner_text("h1") == "Inspections"
    assert p.inner_text("nav.tabs a[data-state=missed]").startswith("⚠ Missed")


PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)


def test_a_monthly_plan_and_a_photo_of_an_item(hub, browse, past_plan):
    """A manager picks 每月 (monthly); an operator attaches a photo to one item of a task
    (the API's upload rules: a file that is no image is refused in words)."""
    m = logged_in(browse, "mgr1")
    p = m.page
    p.goto("/inspections")
    p.click("#new-plan summary")
    p.select_option("#new-plan select[name=project]", "p1")
    p.fill("#new-plan input[name=name]", "配电柜月检")
    p.fill("#new-plan textarea[name=items]", "柜体接地\n绝缘检测")
    p.select_option("#new-plan select[name=every]", "monthly")
    p.click("#new-plan button[type=submit]")
    p.wait_for_selector("#flash-notice")
    with hub.client(hub.root) as c:
        made = [x for x in c.get("/api/inspections/plans").json() if x["name"] == "配电柜月检"]
    assert len(made) == 1 and made[0]["frequency"] == "monthly"
    assert "每月" in p.locator(f"#plans-table tr[data-plan='{made[0]['id']}']").inner_text()
    p.goto(f"/inspections/plans/{made[0]['id']}")
    assert p.eval_on_selector("#plan-form select[name=every]", "s => s.value") == "monthly"

    task = _tasks(hub, past_plan["id"], 1)[0]
    b = logged_in(browse, "op1")
    p = b.page
    p.goto(f"/inspections/tasks/{task['id']}")
    p.select_option("#upload-item", task["items"][1])
    p.set_input_files("#upload-file", {"name": "现场.png", "mimeType": "image/png",
                                        "buffer": PNG})
    p.click("#upload button[type=submit]")
    p.wait_for_selector(f"#files li[data-item='{task['items'][1]}'] img")
    p.set_input_files("#upload-file", {"name": "fake.png", "mimeType": "image/png",
                                        "buffer": b"not a png at all"})
    p.click("#upload button[type=submit]")
    p.wait_for_selector("#upload-state.err")
    assert "不支持的文件类型" in p.inner_text("#upload-state")
    b.problems = [x for x in b.problems if "status of 415" not in x]  # the 415 is the point
    with hub.client(hub.root) as c:
        photos = c.get(f"/api/inspections/tasks/{task['id']}").json()["photos"]
    assert [(x["item"], x["name"], x["by"]) for x in photos] == [
        (task["items"][1], "现场.png", "op1")]
