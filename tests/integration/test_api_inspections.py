"""Inspection (巡查) through a running hub: a manager makes a plan, the desk generates its
task at once, an operator records the results (a problem opening a hazard), recording it
twice is a 409, bad input is a 4xx that says why, other projects see nothing, the live
stream and the statistics show it, every act is audited; ``hub inspections`` does the same
from the command line; a policy's hazard reminders are checked."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.api_hub import hub_cli, populated_hub
from tests.support.services import wait_until


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    # a webhook channel nobody listens on: the policy test only needs a channel name
    notify = {"notify": {"channels": {"hook": {"type": "webhook", "secret": "s3cret-value",
                                               "url": "http://127.0.0.1:9/hook"}}}}
    with populated_hub(tmp_path_factory.mktemp("inspections"), notify) as hub:
        yield hub


def test_plan_task_result_hazard_stats_stream(api):
    with api.client(api.login("mgr1")) as mgr, api.client(api.login("op1")) as op, \
            api.client(api.login("aud1")) as aud, api.client(api.login("view2")) as other:
        body = {"project": "p1", "name": "配电箱巡查", "items": ["箱门完好", "端子温度"],
                "every": "daily", "grace": 8 * 3600, "assignee": "op1"}
        assert op.post("/api/inspections/plans", json=body).status_code == 403
        assert mgr.post("/api/inspections/plans", json={**body, "every": 5}).status_code == 422
        assert mgr.post("/api/inspections/plans", json={**body, "project": "nowhere"}
                        ).status_code == 404
        assert mgr.post("/api/inspections/plans", json={**body, "items": []}
                        ).status_code == 422
        r = mgr.post("/api/inspections/plans", json=body)
        assert r.status_code == 201, r.text
        plan = r.json()
        assert (plan["every"], plan["grace"], plan["active"]) == (86400, 8 * 3600, True)
        assert other.get(f"/api/inspections/plans/{plan['id']}").status_code == 404
        tasks = wait_until(lambda: op.get("/api/inspections/tasks",
                                          params={"plan": plan["id"]}).json(), 10,
                           what="the plan's first task")
        task = tasks[0]
        assert (task["state"], task["items"], task["plan_name"]) == (
            "open", ["箱门完好", "端子温度"], "配电箱巡查")
        assert task["deadline_ts"] - task["due_ts"] == 8 * 3600
        tid = task["id"]
        result = {"results": [{"item": "箱门完好", "result": "ok"},
                              {"item": "端子温度", "result": "problem", "note": "62 °C"}],
                  "note": "found on the round",
                  "hazard": {"category": "电气线路", "severity": "重大",
                             "description": "terminal hot", "device": "d1"}}
        assert aud.post(f"/api/inspections/tasks/{tid}/result", json=result
                        ).status_code == 403
        assert other.post(f"/api/inspections/tasks/{tid}/result", json=result
                          ).status_code == 404
        bad = op.post(f"/api/inspections/tasks/{tid}/result",
                      json={"results": [{"item": "屋顶", "result": "ok"}]})
        assert bad.status_code == 422 and "屋顶" in bad.text
        assert op.post(f"/api/inspections/tasks/{tid}/result", json={
            "results": [{"item": "箱门完好", "result": "maybe"}]}).status_code == 422
        r = op.post(f"/api/inspections/tasks/{tid}/result", json=result)
        assert r.status_code == 200, r.text
        done = r.json()
        assert (done["state"], done["problems"], done["late"], done["done_by"]) == (
            "done", 1, False, "op1")
        hazard = op.get(f"/api/hazards/{done['hazard_id']}").json()
        assert (hazard["state"], hazard["severity"], hazard["device"]) == ("found", "重大", "d1")
        again = op.post(f"/api/inspections/tasks/{tid}/result", json=result)
        assert again.status_code == 409 and "recorded already" in again.text
        r = mgr.patch(f"/api/inspections/plans/{plan['id']}", json={"active": False})
        assert r.status_code == 200 and r.json()["active"] is False
        assert mgr.patch(f"/api/inspections/plans/{plan['id']}", json={}).status_code == 422
        stats = op.get("/api/stats/alarms", params={"project": "p1"}).json()["inspections"]
        assert (stats["done"], stats["missed"], stats["completion"]) == (1, 0, 1.0)
        assert stats["problems_found"] == 1
        assert other.get("/api/stats/alarms", params={"project": "p1"}
                         ).json()["inspections"]["total"] == 0
        assert other.get("/api/inspections/tasks").json() == []
    with httpx.Client(base_url=api.url, timeout=30, headers={
            "Authorization": f"Bearer {api.login('op1')}"}) as c, \
            c.stream("GET", "/api/inspections/stream",
                     params={"after": 0, "idle_timeout": 1}) as s:
        seen = [json.loads(line[5:]) for line in s.iter_lines() if line.startswith("data:")]
    assert [x["action"] for x in seen if x["plan_id"] == plan["id"]] == [
        "plan.created", "task.created", "task.done", "plan.updated"]
    assert [x["task"]["state"] for x in seen if x["action"] == "task.done"] == ["done"]
    acts = {(e["actor"], e["action"]) for e in api.audit()}
    assert {("mgr1", "inspection.plan_created"), ("op1", "inspection.task_done"),
            ("mgr1", "inspection.plan_changed"), ("hub", "inspection.task.created")} <= acts


def test_the_command_line(api):
    made = hub_cli(api.config, "inspections", "add-plan", "--project", "p1", "--name", "消防通道",
                   "--item", "通道畅通", "--every", "weekly", "--by", "tester")
    assert made.returncode == 0, made.stderr
    plans = [json.loads(line) for line in
             hub_cli(api.config, "inspections", "plans", "--json").stdout.splitlines()]
    plan = [p for p in plans if p["name"] == "消防通道"][0]
    assert plan["every"] == 7 * 86400
    with api.client(api.login("op1")) as op:
        # the running hub's desk generates the task at its next pass
        tasks = wait_until(lambda: op.get("/api/inspections/tasks",
                                          params={"plan": plan["id"]}).json(), 45,
                           interval=0.5, what="the CLI plan's task")
    rec = hub_cli(api.config, "inspections", "record", str(tasks[0]["id"]), "--ok", "通道畅通",
                  "--by", "tester")
    assert rec.returncode == 0, rec.stderr
    again = hub_cli(api.config, "inspections", "record", str(tasks[0]["id"]), "--ok", "通道畅通")
    assert again.returncode != 0 and "recorded already" in again.stderr + again.stdout
    listed = [json.loads(line) for line in hub_cli(
        api.config, "inspections", "tasks", "--plan", str(plan["id"]), "--json"
    ).stdout.splitlines()]
    assert [t["state"] for t in listed] == ["done"]
    bad = hub_cli(api.config, "inspections", "add-plan", "--project", "p1", "--name", "x",
                  "--item", "a", "--every", "often")
    assert bad.returncode != 0 and "often" in bad.stderr


def test_policy_hazard_reminders_are_checked(api):
    with api.client(api.login("mgr1")) as mgr:
        pid = mgr.get("/api/projects").json()[0]["id"]
        r = mgr.put(f"/api/projects/{pid}/notification-policy", json={
            "steps": [{"delay": 0, "channel": "hook", "recipients": ["13800138000"]}],
            "hazard_reminders": {"before": 3600, "after": 0, "repeat": 86400, "step": 3}})
        assert r.status_code == 422 and "hazard_reminders.step" in r.text
        r = mgr.put(f"/api/projects/{pid}/notification-policy", json={
            "steps": [{"delay": 0, "channel": "hook", "recipients": ["13800138000"]}],
            "hazard_reminders": {"before": 3600, "after": 0}})
        assert r.status_code == 200, r.text
        assert r.json()["hazard_reminders"]["before"] == 3600


PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)


def test_monthly_plans_and_photos_of_items(api):
    """A monthly plan (by the calendar, in the project's local time, fixed with the plan);
    photos of a task's items under the hazards' upload rules: 413/415 with nothing stored,
    an item not of the plan 422, operators only, audited, listed with the task."""
    import os
    from datetime import datetime, timedelta, timezone

    with api.client(api.login("mgr1")) as mgr, api.client(api.login("op1")) as op, \
            api.client(api.login("aud1")) as aud, api.client(api.login("view2")) as other:
        cst = timezone(timedelta(hours=8))
        start = datetime(2026, 1, 31, 9, 0, tzinfo=cst).timestamp()
        r = mgr.post("/api/inspections/plans", json={
            "project": "p1", "name": "月度检查", "items": ["配电柜", "线路"],
            "every": "monthly", "start": start})
        assert r.status_code == 201, r.text
        plan = r.json()
        assert (plan["frequency"], plan["utc_offset_minutes"], plan["grace"]) == (
            "monthly", 480, 0)
        tasks = wait_until(lambda: op.get("/api/inspections/tasks",
                                          params={"plan": plan["id"], "limit": 1000}).json(),
                           10, what="the monthly plan's tasks")
        due = [datetime.fromtimestamp(t["due_ts"], cst) for t in tasks[:4]]
        assert [(d.month, d.day, d.hour) for d in due] == [
            (1, 31, 9), (2, 28, 9), (3, 31, 9), (4, 30, 9)]
        # done within the month: the deadline is the next period's start
        assert tasks[0]["deadline_ts"] == tasks[1]["due_ts"]
        assert mgr.post("/api/inspections/plans", json={
            "project": "p1", "name": "x", "items": ["a"], "every": "fortnightly"}
        ).status_code == 422

        tid = tasks[-1]["id"]
        url = f"/api/inspections/tasks/{tid}/files"
        png = {"Content-Type": "image/png"}
        assert aud.post(url, params={"item": "配电柜"}, content=PNG, headers=png
                        ).status_code == 403
        assert other.post(url, params={"item": "配电柜"}, content=PNG, headers=png
                          ).status_code == 404
        wrong = op.post(url, params={"item": "屋顶"}, content=PNG, headers=png)
        assert wrong.status_code == 422 and "屋顶" in wrong.text
        lie = op.post(url, params={"item": "配电柜"}, content=b"MZ\x90\x00" + bytes(64),
                      headers=png)
        assert lie.status_code == 415 and "Content-Type" in lie.text
        big = op.post(url, params={"item": "线路"}, content=b"%PDF-" + bytes(1024 * 1024),
                      headers={"Content-Type": "application/pdf"})
        assert big.status_code == 413
        folder = api.dir / "var" / "inspections" / str(tid)
        assert not folder.exists()  # nothing stored by a refused upload
        up = op.post(url, params={"item": "配电柜", "name": "柜门.png"}, content=PNG,
                     headers=png)
        assert up.status_code == 201, up.text
        assert (up.json()["item"], up.json()["size"]) == ("配电柜", len(PNG))
        assert len(os.listdir(folder)) == 1
        got = aud.get(f"{url}/{up.json()['id']}")
        assert got.status_code == 200 and got.content == PNG
        assert other.get(f"{url}/{up.json()['id']}").status_code == 404
        assert op.get(f"{url}/999").status_code == 404
        detail = aud.get(f"/api/inspections/tasks/{tid}").json()
        assert [(p["item"], p["name"], p["by"]) for p in detail["photos"]] == [
            ("配电柜", "柜门.png", "op1")]
        r = op.post(f"/api/inspections/tasks/{tid}/result", json={"results": [
            {"item": "配电柜", "result": "problem", "note": "see the photo"},
            {"item": "线路", "result": "ok"}]})
        assert r.status_code == 200, r.text
        # a photo may follow the results
        assert op.post(url, params={"item": "线路"}, content=PNG, headers=png
                       ).status_code == 201
    acts = [(e["actor"], e["action"], e["subject"]) for e in api.audit()]
    assert acts.count(("op1", "inspection.photo_added", str(tid))) == 2
