"""The analysis routes on a running hub: grades with their reasons, energy and load from
the rollups, long-range history read from rollups; scoping (the authorisation matrix in
test_api_authz covers every route, these check the answers)."""

from __future__ import annotations

import time

import pytest

from tests.support.api_hub import populated_hub
from tests.support.services import wait_until


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with populated_hub(tmp_path_factory.mktemp("analysis")) as hub:
        yield hub


def _wait(fn, what, timeout=30.0):
    return wait_until(fn, timeout, interval=0.2, what=what)


def test_device_and_project_grades_say_why(api):
    with api.client(api.login("op1")) as op:
        # d1 runs hot (alarm at 45 °C, no delay): a fire-class alarm, unacknowledged
        # (readings near its set point may grade it down first, while it warms up)
        def graded():
            r = op.get("/api/devices/d1/grade").json()
            return any(d["code"] == "temperature" and d["rule"] == "alarms"
                       for d in r["deductions"]) and r
        g = _wait(graded, "d1 was never graded down for its alarm")
        assert g["subject"] == "d1" and g["score"] < 100
        assert g["grade"] in ("优", "良好", "一般隐患", "严重隐患")
        p = op.get(f"/api/projects/{api.ids['p1']}/grade").json()
        assert p["subject"] == "p1"
        assert sorted(x["subject"] for x in p["devices"]) == ["d1", "efd-1"]
        assert p["score"] <= min(x["score"] for x in p["devices"]) + 20
        bad = op.get("/api/devices/d1/grade", params={"since": 100, "until": 50})
        assert bad.status_code == 422


def test_energy_load_and_long_history_come_from_rollups(api):
    with api.client(api.login("op1")) as op:
        now = time.time()

        def history():
            r = op.get("/api/devices/d1/history", params={
                "quantity": "active_power", "since": now - 20 * 86400, "until": now + 3600,
                "points": 20})
            assert r.status_code == 200, r.text
            doc = r.json()
            return doc["points"] and doc
        doc = _wait(history, "the rollups never held d1's power")
        assert doc["source"] == "rollups" and doc["bucket_seconds"] >= 3600
        assert all(p["min"] <= p["avg"] <= p["max"] for p in doc["points"])
        short = op.get("/api/devices/d1/history", params={
            "quantity": "active_power", "since": now - 60, "points": 20}).json()
        assert short["source"] == "readings"
        e = op.get("/api/devices/d1/energy", params={"period": "hour"}).json()
        assert e["unit"] == "kWh" and set(e["tou"]) == {"尖峰", "峰", "平", "谷"}
        assert e["load_w"] and all(v > 0 for v in e["load_w"].values())
        pq = op.get("/api/devices/d1/power-quality").json()
        assert [i["index"] for i in pq["indices"]] == [
            "voltage_deviation", "voltage_unbalance", "voltage_thd", "frequency_deviation"]
        volts = pq["indices"][0]
        assert volts["samples"] > 0 and volts["passed"] in (True, False)
        p = op.get(f"/api/projects/{api.ids['p1']}/energy", params={"period": "month"})
        assert p.status_code == 200 and p.json()["subject"] == "p1"
    with api.client(api.login("view2")) as other:
        assert other.get("/api/devices/d1/energy").status_code == 404
        assert other.get(f"/api/projects/{api.ids['p1']}/grade").status_code == 404


def test_a_rated_current_kept_with_an_api_device_gives_its_load_rate(api):
    from tests.support.api_hub import ROOT_PASSWORD

    body = {"id": "api-rated-1", "name": "额定", "project": "p1", "model": "simulated",
            "transport": "demo", "address": "leakage", "settings": {"rated": 63}}
    with api.client(api.login("root", ROOT_PASSWORD)) as root:
        bad = root.post("/api/devices", json={**body, "settings": {"rated": {
            "channels": {"A": -5}}}})
        assert bad.status_code == 422 and "rated.channels.A" in bad.text, bad.text
        both = root.post("/api/devices", json={**body, "settings": {"rated": {
            "current": 10, "capacity_kva": 50}}})
        assert both.status_code == 422 and "not both" in both.text, both.text
        assert root.get("/api/devices/api-rated-1").status_code == 404  # nothing stored
        r = root.post("/api/devices", json=body)
        assert r.status_code == 201, r.text
        shown = root.get("/api/devices/api-rated-1").json()["settings"]
        assert shown["stored"] == {"rated": 63.0} and shown["rated"] == "63 A"

        def rated():
            e = root.get("/api/devices/api-rated-1/energy", params={"period": "hour"}).json()
            return [x for x in e["load_rate"] if x["hours"]]
        [rate] = _wait(rated, "no load rate for the API device's rating")
        assert rate["device"] == "api-rated-1" and rate["rated"] == "63 A"
        assert 0 < rate["peak_rate"] and rate["peak_amperes"] == pytest.approx(
            rate["peak_rate"] * 63, rel=1e-3)
        # a rating in parts replaces it: every phase at 100 A
        assert root.patch("/api/devices/api-rated-1", json={"settings": {"rated": {
            "channels": {"A": 100, "B": 100, "C": 100}}}}).status_code == 200
        [rate] = _wait(lambda: [x for x in rated() if "100 A" in x["rated"]],
                       "the changed rating was not used")
        assert rate["rated"].startswith("A 100 A")
        assert root.delete("/api/devices/api-rated-1").status_code == 204


def test_monthly_report_as_pdf_and_excel(api, tmp_path):
    import io
    import shutil
    import subprocess

    from openpyxl import load_workbook

    p1 = api.ids["p1"]
    with api.client(api.login("aud1")) as aud:
        r = aud.get(f"/api/projects/{p1}/reports/monthly", params={"format": "pdf"})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/pdf"
        assert "attachment" in r.headers["content-disposition"]
        pdf = tmp_path / "p1.pdf"
        pdf.write_bytes(r.content)
        if shutil.which("pdftotext"):
            text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True,
                                  text=True, check=True).stdout
            assert "项目 p1 电气火灾监控月度报告" in text and "一号箱" in text
        x = aud.get(f"/api/projects/{p1}/reports/monthly", params={"format": "xlsx"})
        wb = load_workbook(io.BytesIO(x.content))
        summary = {row[0]: row[1] for row in wb["概要"].iter_rows(values_only=True)}
        assert summary["项目"] == "p1" and summary["报警次数"] >= 1
        bad = aud.get(f"/api/projects/{p1}/reports/monthly", params={"month": "2026-13"})
        assert bad.status_code == 422


def test_reports_are_made_listed_downloaded_and_audited(api):
    p1 = api.ids["p1"]
    with api.client(api.login("aud1")) as aud:  # an auditor reads but does not make
        assert aud.get(f"/api/projects/{p1}/reports").status_code == 200
        r = aud.post(f"/api/projects/{p1}/reports", params={"kind": "daily"})
        assert r.status_code == 403, r.text
    with api.client(api.login("op1")) as op:
        r = op.post(f"/api/projects/{p1}/reports", params={"kind": "weekly",
                                                          "format": ["pdf", "xlsx"]})
        assert r.status_code == 201, r.text
        made = r.json()
        assert sorted(x["format"] for x in made) == ["pdf", "xlsx"]
        period = made[0]["period"]
        assert "-W" in period and made[0]["size"] > 1000
        listed = op.get(f"/api/projects/{p1}/reports", params={"kind": "weekly"}).json()
        assert {(x["kind"], x["period"], x["format"]) for x in listed} == {
            ("weekly", period, "pdf"), ("weekly", period, "xlsx")}
        pdf = op.get(made[0]["url"] if made[0]["format"] == "pdf" else made[1]["url"])
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
        assert pdf.headers["content-type"] == "application/pdf"
        missing = op.get(f"/api/projects/{p1}/reports/download",
                         params={"kind": "daily", "period": "2020-01-01"})
        assert missing.status_code == 404
        bad = op.post(f"/api/projects/{p1}/reports", params={"kind": "weekly",
                                                            "period": "2026-01"})
        assert bad.status_code == 422 and "YYYY-Www" in bad.text
    acts = {(e["actor"], e["action"]) for e in api.audit()}
    assert ("op1", "report.made") in acts and ("op1", "report.downloaded") in acts
