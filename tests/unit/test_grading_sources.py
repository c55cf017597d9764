"""One function gathers grading rules 6-8 (open hazards, overdue rectifications, readings
near set points) for everything that grades: the rollups sink's scheduled daily grades
find the API's sources registered for the hub's journal and deduct what the API deducts;
``hub report`` reads the platform store's hazards; reports carry power quality."""

from __future__ import annotations

import contextlib
import io

import pytest
from twisted.internet.task import Clock

from hub.analysis import inputs
from hub.analysis.grading import GradingScheme, journal_grade
from hub.analysis.schedule import stored_grades
from hub.model import Reading
from hub.rollups import RollupOptions, RollupSink
from hub.rollups.sink import GRADE_CHECK_INTERVAL
from hub.sinks import DeviceInfo
from hub.store.sqlite import SqliteStore
from hub.testing import SinkHarness

DAY = 86400.0
D = 1_767_571_200.0  # 2026-01-05 00:00 UTC (tz_offset 0 below)
S = GradingScheme()


@pytest.fixture
def platform(tmp_path):
    with contextlib.closing(SqliteStore(str(tmp_path / "platform.sqlite"))) as store:
        store.open()
        yield store


def test_the_sinks_daily_grades_deduct_what_the_api_deducts(tmp_path, platform):
    clock = Clock()
    clock.advance(D + 3600)
    h = SinkHarness(str(tmp_path / "var"), [DeviceInfo("d1", "一号箱", project="p1")],
                    clock)
    sink = h.start(RollupSink(h.port, "rollups", RollupOptions(tz_offset_hours=0)))
    # 4 hours of the day at 50 °C: ≥ 80 % of the set point 60 -> 4 × 0.5 = 2 points
    h.feed([Reading("d1", "temperature", 50.0 if hour < 4 else 30.0, D + hour * 3600 + 60,
                    "T1") for hour in range(24)])
    # an open 一般 hazard (5) whose deadline passed 3 whole days before the day's end
    # (5 + 3 × 1 = 8): 100 - 2 - 5 - 8 = 85, 良好
    platform.hazard_add("p1", "d1", None, "接线", "一般", "端子松动", D - 2 * DAY, "bob",
                        "alice", D - 3 * DAY)
    sources = inputs.store_sources(platform, {"d1": {"temperature": 60.0}})
    inputs.register(h.journal, sources)
    try:
        clock.advance(DAY)  # the day ends; the sink folds and, on its timer, grades it
        h.run(GRADE_CHECK_INTERVAL, step=60)
        assert stored_grades(sink.store, "d1") == [(D, 85.0, "良好")]
        # what the API computes for the same day, through the same function
        per, _ = inputs.grading_inputs(sources, ["d1"], D, D + DAY, S, sink.store, "p1")
        api = journal_grade(h.journal, "d1", D, D + DAY, S, extra=per["d1"])
        assert (api.score, sorted(d.rule for d in api.deductions)) == (
            85.0, ["hazards", "near_set_point", "overdue"])
    finally:
        inputs.unregister(h.journal)
    assert inputs.sources_for(h.journal) is None
    clock.advance(DAY)  # without the API's sources: the events alone (none: 100)
    h.run(GRADE_CHECK_INTERVAL, step=60)
    assert stored_grades(sink.store, "d1")[-1] == (D + DAY, 100.0, "优")
    h.close()


def test_hub_report_reads_the_platform_stores_hazards(tmp_path, capsys):
    from hub.cli import main
    from tests.support.report_cli import report_config, seed_journal

    config = report_config(tmp_path, {"tz_offset_hours": 0}, api={"port": 0})
    seed_journal(tmp_path, [Reading("d1", "active_energy", 10.0 + i, D + i * 3600)
                            for i in range(24)])
    var = tmp_path / "var"
    assert main(["rollups", "rebuild", "-c", str(config)]) == 0
    args = ["report", "daily", "-c", str(config), "--project", "p1", "--period",
            "2026-01-05", "--format", "html", "-o", str(tmp_path / "r.html")]
    assert main(args) == 0
    assert "优 (100.0)" in capsys.readouterr().err  # no platform store yet
    store = SqliteStore(str(var / "platform.sqlite"))
    store.open()
    store.hazard_add("p1", "d1", None, "接线", "重大", "端子烧蚀", None, "bob", "alice",
                     D - DAY)
    store.close()
    assert main(args) == 0
    assert "良好 (85.0)" in capsys.readouterr().err  # 重大: 15
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "端子" not in page and "隐患 #1（重大，接线）未销号" in page


def test_reports_assess_the_configured_buses_with_the_apis_code(tmp_path):
    import shutil
    import subprocess

    from openpyxl import load_workbook

    from hub.analysis.energy import TouSchedule
    from hub.analysis.power_quality import assess_device
    from hub.analysis.settings import AnalysisSettings
    from hub.reports.data import build_report
    from hub.reports.render import render_html, render_pdf, render_xlsx
    from hub.reports.schedule import ReportSchedule

    h = SinkHarness(str(tmp_path / "var"))
    week = [D + k * 6048 for k in range(100)]  # 100 samples over 7 days
    # 10 of 100 phase-voltage samples at 240 V (+9.1 %): the 95 % value is +9.1 % -> fail;
    # THD: 4 of 100 at 6 % (limit 5 %): the 95 % value is 3 % -> pass, 4 % of the time above
    h.feed([Reading("b1", "voltage", 240.0 if k % 10 == 0 else 220.0, ts, ph)
            for k, ts in enumerate(week) for ph in "ABC"]
           + [Reading("b1", "voltage_thd", 6.0 if k % 25 == 0 else 3.0, ts)
              for k, ts in enumerate(week)])
    s = AnalysisSettings("", 0, S, TouSchedule(), True, ReportSchedule.from_mapping(
        {"power_quality": {"b1": {"nominal_voltage": 220, "three_phase": True}}}))
    r = build_report(h.journal, None, "p1", {"b1": "进线柜", "d2": "二号箱"}, D, D + 7 * DAY,
                     s, "2026-W02", kind="weekly")
    assert list(r.power_quality) == ["b1"]  # d2 is not a configured bus
    assert r.power_quality["b1"] == assess_device(h.journal, "b1", D, D + 7 * DAY, 220.0,
                                                  0.38, True)
    got = {x.index: (x.p95, x.above_share, x.passed) for x in r.power_quality["b1"]}
    assert got["voltage_deviation"] == (pytest.approx(9.0909, abs=1e-3), 0.1, False)
    assert got["voltage_thd"] == (3.0, 0.04, True)
    assert got["voltage_unbalance"][2] is True and got["frequency_deviation"][2] is None
    page = render_html(r)
    assert "<h2>电能质量</h2>" in page and "电压总谐波畸变率 (%)" in page
    assert page.count("不合格") == 1 and "无数据" in page
    wb = load_workbook(io.BytesIO(render_xlsx(r)))
    rows = list(wb["电能质量"].iter_rows(min_row=2, values_only=True))
    assert ("b1", "电压总谐波畸变率 (%)", 100, 3.0) == rows[2][:4] and rows[2][-1] == "合格"
    assert rows[0][-1] == "不合格" and rows[0][2] == 300
    pdf = tmp_path / "pq.pdf"
    pdf.write_bytes(render_pdf(r))
    if shutil.which("pdftotext") is not None:
        text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                              text=True, check=True).stdout
        assert "电能质量" in text and "不合格" in text
    h.close()


def test_hub_report_takes_the_project_s_api_devices_and_their_ratings(tmp_path, capsys):
    from hub.cli import main
    from hub.store import Device
    from tests.support.report_cli import report_config, seed_journal

    config = report_config(tmp_path, {"tz_offset_hours": 0}, api={"port": 0})
    seed_journal(tmp_path, [Reading("api-1", "current", 40.0 + i, D + i * 3600, "A")
                            for i in range(24)])
    store = SqliteStore(str(tmp_path / "var" / "platform.sqlite"))
    store.open()
    for dev, project, settings in (("api-1", "p1", {"rated": 50}),
                                   ("api-2", "p2", {"rated": 10}),
                                   ("api-3", "p1", {"rated": -1})):  # no longer checks
        store.add_device(Device(dev, f"箱 {dev}", project, "simulated", "demo",
                                settings=settings))
    store.close()
    assert main(["rollups", "rebuild", "-c", str(config)]) == 0
    out = tmp_path / "r.xlsx"
    assert main(["report", "daily", "-c", str(config), "--project", "p1", "--period",
                 "2026-01-05", "--format", "xlsx", "-o", str(out)]) == 0
    assert "device api-3: stored settings not used" in capsys.readouterr().err
    from openpyxl import load_workbook

    wb = load_workbook(out)
    devices = {r[0] for r in wb["设备"].iter_rows(min_row=2, values_only=True)}
    rows = list(wb["负载率"].iter_rows(values_only=True))
    # 40..63 A against 50 A: peak 63 / 50, 13 hours above the rating (51..63 A)
    assert rows[1][:3] == ("api-1", "箱 api-1", "50 A") and rows[1][3] == 1.26
    assert rows[1][5] == 13 and len(rows) == 2  # api-2 is p2's
    assert devices == {"d1", "api-1", "api-3"}
