"""A monthly project report from a simulated month: its numbers against the rollups and
the journal, rendered as HTML, PDF (Chinese text checked with pdftotext, first pages
turned into PNGs with pdftoppm and kept next to the PDF) and Excel."""

from __future__ import annotations

import io
import random
import shutil
import subprocess

import pytest
from twisted.internet.task import Clock

from hub.analysis.energy import TouSchedule
from hub.analysis.grading import GradingScheme
from hub.analysis.settings import AnalysisSettings
from hub.model import Acknowledgement, Event, EventKind, EventState, Level, Reading
from hub.reports.data import build_report, month_range
from hub.reports.render import render_html, render_pdf, render_xlsx
from hub.rollups import DAY, RollupOptions, RollupSink
from hub.testing import SinkHarness

TZ = 8 * 3600
MONTH = "2026-01"
START, END = month_range(MONTH, TZ)
SETTINGS = AnalysisSettings("", TZ, GradingScheme(), TouSchedule(), True)


def simulate_month(h: SinkHarness, devices=("m1", "m2", "m3"), seed=18):
    """A fixed-seed month: every 15 min each device's energy counter, power and
    temperature; a few temperature alarms (some acknowledged), an offline spell, and a
    meter reset on m2."""
    rng = random.Random(seed)
    counters = dict.fromkeys(devices, 1000.0)
    step = 900
    batch = []
    for k in range(int((END - START) / step)):
        ts = START + k * step
        for d in devices:
            if d == "m2" and k == 1500:
                counters[d] = 0.0  # meter replaced
            kw = 2.0 + rng.random() * 3 if 8 <= ((ts + TZ) % DAY) / 3600 < 20 else 0.5
            counters[d] += kw * step / 3600
            batch += [Reading(d, "active_energy", round(counters[d], 3), ts),
                      Reading(d, "active_power", kw * 1000, ts),
                      Reading(d, "temperature", 25 + rng.random() * 10, ts, "T1")]
        if len(batch) > 5000:
            h.feed(batch)
            batch = []
    h.feed(batch)
    events = []
    for i in range(6):
        ts = START + (3 + i * 4) * DAY + 3600
        ev = Event("m1", EventKind.ALARM, "temperature", EventState.RAISED, ts, Level.ALARM,
                   "T1", id=f"t{i}", value=70.0, set_point=60.0)
        events += [ev, Event("m1", EventKind.ALARM, "temperature", EventState.CLEARED,
                             ts + 1800, Level.ALARM, "T1", id=f"t{i}", raised_ts=ts)]
        if i % 2 == 0:
            events.append(Acknowledgement(f"t{i}", "alice", ts + 600, "m1"))
    off = START + 10 * DAY
    events += [Event("m3", EventKind.FAULT, "offline", EventState.RAISED, off, Level.FAULT,
                     id="off1"),
               Event("m3", EventKind.FAULT, "offline", EventState.CLEARED, off + 2 * DAY,
                     Level.FAULT, id="off1", raised_ts=off)]
    h.feed(events)


@pytest.fixture(scope="module")
def month(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("month")
    clock = Clock()
    clock.advance(END + 3600)
    h = SinkHarness(str(tmp / "var"), clock=clock)
    sink = h.start(RollupSink(h.port, "rollups", RollupOptions(batch_size=20000)))
    simulate_month(h)
    h.run(3, step=0.5)
    assert h.cursor("rollups") == h.journal.last_seq()
    report = build_report(h.journal, sink.store, "p1",
                          {"m1": "一号配电箱", "m2": "二号配电箱", "m3": "三号配电箱"},
                          START, END, SETTINGS, MONTH, "示范园区")
    yield tmp, h, sink.store, report
    h.close()


def test_the_numbers_agree_with_rollups_and_journal(month):
    _, h, store, r = month
    total = sum(sum(store.energy(d, DAY, START, END).values()) for d in ("m1", "m2", "m3"))
    assert r.energy_total == pytest.approx(total, abs=1e-3)
    assert sum(r.energy_per_day.values()) == pytest.approx(total, abs=0.05)
    assert sum(r.tou.values()) == pytest.approx(total, abs=1e-3)
    assert len(r.energy_per_day) == 31
    assert r.alarms == 6 and r.alarms_by_type == {"温度": 6}
    assert (r.acknowledged, r.unacknowledged) == (3, 3)
    assert r.mean_ack_minutes == 10.0 and r.mean_clear_minutes == 30.0
    assert r.faults_by_type == {"设备离线": 1}
    assert r.online_rate == pytest.approx(1 - 2 / 31 / 3)
    m3 = next(d for d in r.devices if d.device == "m3")
    assert m3.online_rate == pytest.approx(1 - 2 / 31)
    # m1: 6 fire alarms (60, capped at 40) + 3 h in alarm × 2 + 3 never acknowledged × 3
    # = 55 -> 45; m2: 100 (its meter reset costs nothing); m3: offline 2 of 31 days × 20
    grades = {g.subject: g.score for g in r.grade.devices}
    assert grades == {"m1": 45.0, "m2": 100.0, "m3": pytest.approx(100 - 40 / 31, abs=0.05)}
    # the project: the mean (81.2) but at most 20 above its worst device
    assert (r.grade.score, r.grade.grade) == (65.0, "一般隐患")


def test_html_pdf_and_excel(month):
    tmp, _, _, r = month
    page = render_html(r)
    assert "示范园区 电气火灾监控月度报告" in page and page.count("<svg") >= 4
    pdf = render_pdf(r, page)
    assert pdf.startswith(b"%PDF")
    path = tmp / "report-2026-01.pdf"
    path.write_bytes(pdf)
    if shutil.which("pdftotext") is None:
        pytest.skip("poppler-utils not installed (scripts/install-system-deps.sh)")
    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True,
                          text=True, check=True).stdout
    assert "电气火灾监控月度报告" in text
    assert f"本月用电 {r.energy_total:,.2f} kWh" in text
    assert f"评级 {r.grade.grade}" in text or r.grade.grade in text
    assert "设备在线率" in text and "三号配电箱" in text
    subprocess.run(["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "2", str(path),
                    str(tmp / "report-page")], check=True)
    pngs = sorted(tmp.glob("report-page*.png"))
    assert pngs and all(p.stat().st_size > 5000 for p in pngs)

    from openpyxl import load_workbook
    wb = load_workbook(io.BytesIO(render_xlsx(r)))
    assert wb.sheetnames == ["概要", "扣分", "电能", "报警", "设备"]
    summary = {row[0]: row[1] for row in wb["概要"].iter_rows(values_only=True)}
    assert summary["用电量 (kWh)"] == r.energy_total
    assert summary["安全评级"] == r.grade.grade and summary["报警次数"] == 6
    days = list(wb["电能"].iter_rows(min_row=2, values_only=True))
    assert len(days) == 31
    assert sum(d[1] for d in days) == pytest.approx(sum(r.energy_per_day.values()))


def test_hub_report_monthly_on_the_cli(tmp_path, capsys):
    import yaml

    from hub.cli import main
    from hub.journal import Journal

    var = tmp_path / "var"
    var.mkdir()
    config = tmp_path / "hub.yaml"
    config.write_text(yaml.safe_dump({
        "hub": {"state_dir": "var"},
        "transports": {"demo": {"type": "simulator", "interval": 5}},
        "sinks": {"rollups": {"type": "rollups"}},
        "devices": [{"id": "d1", "name": "一号箱", "project": "p1", "model": "simulated",
                     "transport": "demo", "address": "normal"}]}, allow_unicode=True),
        encoding="utf-8")
    j = Journal(str(var / "journal.sqlite"), clock=Clock())
    j.open()
    j.append([Reading("d1", "active_energy", 10.0 + i, START + i * 3600) for i in range(48)])
    j.append([Event("d1", EventKind.ALARM, "temperature", EventState.RAISED, START + 7200,
                    Level.ALARM, "T1", id="a1")])
    j.flush()
    j.close()
    assert main(["rollups", "rebuild", "-c", str(config)]) == 0
    out = tmp_path / "r.html"
    assert main(["report", "monthly", "-c", str(config), "--project", "p1", "--month", MONTH,
                 "--format", "html", "-o", str(out), "--title", "测试园区"]) == 0
    assert "1 alarms, 47.00 kWh" in capsys.readouterr().err
    page = out.read_text(encoding="utf-8")
    assert "测试园区 电气火灾监控月度报告" in page and "一号箱" in page
    assert main(["report", "monthly", "-c", str(config), "--project", "nope"]) == 2
