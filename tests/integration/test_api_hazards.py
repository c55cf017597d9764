"""Hazards through the API: opened from d1's alarm, moved 排查 → 整改 → 验收 (rejected) →
整改 → 验收 → 销号, illegal moves answered 409 with the allowed ones, attachments checked
(413/415, nothing stored), and the statistics of the project."""

from __future__ import annotations

import json
import os
import time

import httpx
import pytest

from tests.support.api_hub import populated_hub
from tests.support.services import wait_until

PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with populated_hub(tmp_path_factory.mktemp("hazards")) as hub:
        yield hub


def _alarm(client):
    items = wait_until(
        lambda: client.get("/api/alarms", params={"device": "d1"}).json()["items"], 30,
        interval=0.2, what="d1's alarm record")
    return items[0]


def test_the_hazard_workflow(api):
    with api.client(api.login("op1")) as op, api.client(api.login("aud1")) as aud, \
            api.client(api.login("view2")) as other:
        alarm = _alarm(op)
        assert op.post(f"/api/alarms/{alarm['id']}/actions",
                       json={"action": "acknowledge"}).status_code == 200
        body = {"alarm_id": alarm["id"], "category": "电气线路", "severity": "重大",
                "description": "terminal at 80 °C", "deadline": time.time() + 86400,
                "responsible": "张工"}
        assert aud.post("/api/hazards", json=body).status_code == 403
        assert op.post("/api/hazards", json={**body, "severity": "huge"}).status_code == 422
        assert op.post("/api/hazards", json={"category": "x", "description": "y"}
                       ).status_code == 422
        assert op.post("/api/hazards", json={"project": "nowhere", "category": "x",
                                              "description": "y"}).status_code == 404
        r = op.post("/api/hazards", json=body)
        assert r.status_code == 201, r.text
        h = r.json()
        assert (h["state"], h["project"], h["device"], h["alarm_id"]) == (
            "found", "p1", "d1", alarm["id"])
        hid = h["id"]
        assert other.get(f"/api/hazards/{hid}").status_code == 404
        assert other.post(f"/api/hazards/{hid}/transitions", json={"to": "rectifying"}
                          ).status_code == 404

        r = op.post(f"/api/hazards/{hid}/transitions", json={"to": "closed"})
        assert r.status_code == 409
        assert r.json()["detail"]["allowed"] == ["rectifying"]
        for to, note in (("rectifying", "work order 17"), ("checked", "fixed"),
                         ("rectifying", "still warm: rejected"), ("checked", "re-fixed"),
                         ("closed", "accepted")):
            r = op.post(f"/api/hazards/{hid}/transitions", json={"to": to, "note": note})
            assert r.status_code == 200, r.text
        assert r.json()["closed_ts"] is not None
        r = op.post(f"/api/hazards/{hid}/transitions", json={"to": "found"})
        assert r.status_code == 409 and r.json()["detail"]["allowed"] == []
        assert op.post(f"/api/hazards/{hid}/transitions", json={"to": "gone"}
                       ).status_code == 422

        # attachments
        up = op.post(f"/api/hazards/{hid}/files", params={"name": "现场.png"}, content=PNG,
                     headers={"Content-Type": "image/png"})
        assert up.status_code == 201, up.text
        lie = op.post(f"/api/hazards/{hid}/files", params={"name": "x.png"},
                      content=b"MZ\x90\x00" + bytes(64), headers={"Content-Type": "image/png"})
        assert lie.status_code == 415
        exe = op.post(f"/api/hazards/{hid}/files", content=b"#!/bin/sh\n",
                      headers={"Content-Type": "application/x-sh"})
        assert exe.status_code == 415
        big = op.post(f"/api/hazards/{hid}/files", content=b"%PDF-" + bytes(1024 * 1024),
                      headers={"Content-Type": "application/pdf"})
        assert big.status_code == 413
        folder = api.dir / "var" / "hazards" / str(hid)
        assert len(os.listdir(folder)) == 1
        got = aud.get(f"/api/hazards/{hid}/files/{up.json()['id']}")
        assert got.status_code == 200 and got.content == PNG
        assert op.get(f"/api/hazards/{hid}/files/999").status_code == 404

        detail = op.get(f"/api/hazards/{hid}").json()
        assert [(s["from_state"], s["to_state"]) for s in detail["history"]] == [
            (None, "found"), ("found", "rectifying"), ("rectifying", "checked"),
            ("checked", "rectifying"), ("rectifying", "checked"), ("checked", "closed")]
        assert all(s["by"] == "op1" for s in detail["history"])
        assert [f["name"] for f in detail["files"]] == ["现场.png"]

        # an overdue one, opened by hand
        late = op.post("/api/hazards", json={"project": "p1", "category": "消防通道",
                                             "description": "blocked", "deadline": 1.0})
        assert late.status_code == 201 and late.json()["overdue"]
        overdue = op.get("/api/hazards", params={"overdue": True}).json()
        assert [x["id"] for x in overdue] == [late.json()["id"]]
        assert other.get("/api/hazards").json() == []

        # batch handling: checked whole
        more = [op.post("/api/hazards", json={"project": "p1", "category": "标识",
                                              "description": f"sign {i}"}).json()["id"]
                for i in range(3)]
        r = op.post("/api/hazards/transitions", json={"ids": [*more, hid], "to": "rectifying"})
        assert r.status_code == 409 and r.json()["detail"]["allowed"] == {str(hid): []}
        assert {x["state"] for x in (op.get(f"/api/hazards/{m}").json() for m in more)} == {
            "found"}
        assert other.post("/api/hazards/transitions", json={"ids": more, "to": "rectifying"}
                          ).status_code == 404
        r = op.post("/api/hazards/transitions", json={"ids": more, "to": "rectifying",
                                                      "note": "one work order"})
        assert r.status_code == 200 and [x["state"] for x in r.json()] == ["rectifying"] * 3
        assert op.post("/api/hazards/transitions", json={"ids": [], "to": "checked"}
                       ).status_code == 422

        stats = op.get("/api/stats/alarms", params={"project": "p1"}).json()
        assert stats["alarms"]["total"] >= 1 and stats["alarms"]["by_kind"]["alarm"] >= 1
        assert stats["alarms"]["time_to_acknowledge"]["count"] >= 1
        assert stats["alarms"]["time_to_acknowledge"]["median"] >= 0
        assert stats["hazards"]["by_state"] == {"closed": 1, "found": 1, "rectifying": 3}
        assert stats["hazards"]["overdue"] == 1
        assert stats["hazards"]["time_to_close"]["count"] == 1
        empty = other.get("/api/stats/alarms", params={"project": "p1"}).json()
        assert empty["alarms"]["total"] == 0 and empty["hazards"]["total"] == 0
        # the live stream of hazard changes, resumed from the start, scoped
        token = api.login("op1")
        with httpx.Client(base_url=api.url, timeout=30,
                          headers={"Authorization": f"Bearer {token}"}) as c, \
                c.stream("GET", "/api/hazards/stream",
                         params={"after": 0, "idle_timeout": 1}) as s:
            seen = [json.loads(line[5:]) for line in s.iter_lines()
                    if line.startswith("data:")]
        mine = [(x["from_state"], x["to_state"]) for x in seen if x["hazard_id"] == hid]
        assert mine == [(None, "found"), ("found", "rectifying"), ("rectifying", "checked"),
                        ("checked", "rectifying"), ("rectifying", "checked"),
                        ("checked", "closed")]
        assert seen[-1]["hazard"]["project"] == "p1"
        with httpx.Client(base_url=api.url, timeout=30, headers={
                "Authorization": f"Bearer {api.login('view2')}"}) as c, \
                c.stream("GET", "/api/hazards/stream",
                         params={"after": 0, "idle_timeout": 1}) as s:
            assert not [line for line in s.iter_lines() if line.startswith("data:")]
    acts = {(e["actor"], e["action"]) for e in api.audit()}
    for action in ("hazard.opened", "hazard.rectifying", "hazard.checked", "hazard.closed",
                   "hazard.file_added"):
        assert ("op1", action) in acts
