"""A simulated month through the hub's real ingest path, on a task.Clock: three simulated
meters (fixed seed) report every 15 minutes through the ``simulator`` transport, the
``simulated`` device model decodes their frames, the hub evaluates alarms (temperature set
point 60 °C), presence decides offline and online, the journal commits, the rollups sink
folds. The monthly report's energy and grades are checked against values computed by hand
from what the meters did, not from the rollups."""

from __future__ import annotations

import random

import pytest

from hub.analysis.energy import TouSchedule
from hub.analysis.grading import GradingScheme
from hub.analysis.inputs import config_sources
from hub.analysis.settings import AnalysisSettings, config_set_points
from hub.reports.data import build_report, month_range
from hub.rollups import RollupOptions, RollupSink
from hub.sinks import SinkPort
from hub.testing import build_hub
from plugins.simulators.demo import SimulatorOptions, SimulatorService

TZ = 8 * 3600
MONTH = "2026-01"
START, END = month_range(MONTH, TZ)
STEP = 900.0
TICKS = int((END - START) / STEP)  # 2976
HOT = [(3 + 7 * i) * 96 + 40 for i in range(4)]  # m1: 70 °C for 4 ticks (1 h) from these
RESET = 1500  # m2's meter is replaced before this tick: its counter starts again at 0
SILENT = (960, 960 + 192)  # m3 sends nothing for 2 days (ticks 960-1151)
HEARTBEAT = {"interval": STEP, "timeout_count": 3}


class Meter:
    """A simulated meter as the demo transport drives it (``frame(t)``, ``silent(t)``):
    energy counter, power and cable temperature, as the ``simulated`` model reads them."""

    def __init__(self, name: str, seed: int) -> None:
        self.name = name
        self.rng = random.Random(seed)
        self.counter = 1000.0
        self.increments: list[float] = []  # kWh counted each tick, for the test
        self.sent = 0

    def silent(self, t: float) -> bool:
        return self.name == "m3" and SILENT[0] <= self._tick(t) < SILENT[1]

    @staticmethod
    def _tick(t: float) -> int:
        return round((t - START) / STEP)

    def frame(self, t: float) -> bytes | None:
        k = self._tick(t)
        hour = ((t + TZ) % 86400) / 3600
        kw = 2.0 + self.rng.random() * 3 if 8 <= hour < 20 else 0.5
        if self.name == "m2" and k == RESET:
            self.counter = 0.0
        add = kw * STEP / 3600
        self.counter += add  # out of reach, it still counts
        self.increments.append(add)
        if self.silent(t):
            return None
        self.sent += 1
        hot = self.name == "m1" and any(h <= k < h + 4 for h in HOT)
        temp = 70.0 if hot else 25.0 + self.rng.random() * 5
        return (f"active_energy={self.counter:.4f};active_power={kw * 1000:.1f};"
                f"temperature/T1={temp:.2f}").encode()


CONFIG = {
    "journal": {"commit_interval_ms": 20},
    "transports": {"meters": {"type": "simulator", "interval": STEP, "period": 86400}},
    "devices": [
        {"id": d, "name": name, "project": "p1", "model": "simulated", "transport": "meters",
         "address": profile, "heartbeat": HEARTBEAT,  # a profile each (unique addresses)
         "alarms": {"temperature": {"alarm": 60, "delay": 0}}}
        for d, name, profile in (("m1", "一号配电箱", "normal"), ("m2", "二号配电箱", "overheat"),
                                 ("m3", "三号配电箱", "leakage"))],
}


@pytest.fixture(scope="module")
def month(tmp_path_factory):
    from twisted.internet.task import Clock

    clock = Clock()
    clock.advance(START)
    hub = build_hub(CONFIG, str(tmp_path_factory.mktemp("month") / "var"), clock=clock)
    hub.open()
    sink = RollupSink(SinkPort.from_hub(hub), "rollups",
                      RollupOptions(worker="inline", batch_size=20_000))
    sink.startService()
    meters = {d: Meter(d, seed) for seed, d in enumerate(("m1", "m2", "m3"), 18)}
    sim = SimulatorService(hub, "meters", SimulatorOptions(STEP, 86400.0))
    sim.devices.update(meters)  # the transport's simulated devices are these meters
    sim.startService()  # the first frames now, at START
    for _ in range(TICKS - 1):
        clock.advance(STEP)
    sim.stopService()
    clock.advance(STEP)  # the month ends: commits and the sink's last fold
    for _ in range(20):
        clock.advance(1.0)
    assert sink.tail.cursor == hub.journal.last_seq()
    s = AnalysisSettings("", TZ, GradingScheme(), TouSchedule(), True)
    report = build_report(hub.journal, sink.store, "p1",
                          {d["id"]: d["name"] for d in CONFIG["devices"]}, START, END, s,
                          MONTH, "示范园区", sources=config_sources(
                              config_set_points(hub.config)))
    yield hub, sink, meters, report
    sink.stopService()
    hub.close()


def test_the_month_went_through_the_ingest_path(month):
    hub, _, meters, _ = month
    assert [m.sent for m in meters.values()] == [TICKS, TICKS, TICKS - (SILENT[1] - SILENT[0])]
    alarms = [e for e in hub.journal.events("m1", START) if e.code == "temperature"]
    # each hot hour: the alarm raised at its first frame, cleared at the next cool one
    assert [(e.state.value, e.level.value, e.ts) for e in alarms] == [
        (state, "alarm", START + (h + 4 * (state == "cleared")) * STEP)
        for h in HOT for state in ("raised", "cleared")]
    assert all(e.source != "device" for e in alarms)  # decided by the hub's alarm engine


def test_energy_by_hand(month):
    _, _, meters, r = month
    # the first frame of each meter is its baseline; every later tick adds its increment,
    # m2's replaced meter too (a counter that falls started again from 0), and m3's
    # first frame after its silence carries the two days it counted meanwhile
    by_hand = sum(sum(m.increments[1:]) for m in meters.values())
    assert r.energy_total == pytest.approx(by_hand, abs=0.01)  # 4 decimals per frame
    per = {row.device: row.kwh for row in r.devices}
    for d, m in meters.items():
        assert per[d] == pytest.approx(sum(m.increments[1:]), abs=0.005)
    assert sum(r.tou.values()) == pytest.approx(by_hand, abs=0.01)


def test_grades_by_hand(month):
    _, _, _, r = month
    grades = {g.subject: g for g in r.grade.devices}
    # m1: 4 fire alarms (4 × 10 = 40, the cap), 4 h in alarm × 2 = 8, 4 never acknowledged
    # × 3 = 12, and 4 h at ≥ 80 % of its 60 °C set point × 0.5 = 2: 100 - 62 = 38
    assert grades["m1"].score == 38.0 and grades["m1"].grade == "严重隐患"
    assert sorted((d.rule, d.points) for d in grades["m1"].deductions) == [
        ("alarm_time", 8.0), ("alarms", 40.0), *[("late_ack", 3.0)] * 4,
        ("near_set_point", 2.0)]
    assert grades["m2"].score == 100.0  # its meter reset costs nothing
    # m3: silent from tick 960; offline at its last frame + 3 × 900 s, online again at its
    # next frame (tick 1152): (1152 - 959) × 900 - 2700 s of the month's 2976 × 900 s
    offline = ((SILENT[1] - (SILENT[0] - 1)) * STEP - 3 * STEP) / (TICKS * STEP)
    assert grades["m3"].score == round(100 - 20 * offline, 1)
    m3 = next(d for d in r.devices if d.device == "m3")
    assert m3.online_rate == pytest.approx(1 - offline)
    assert r.alarms == 4 and r.alarms_by_level == {"alarm": 4}
    assert r.unacknowledged == 4 and r.faults_by_type == {"设备离线": 1}
    # the project: the mean is more than 20 above its worst device (38): 58, 严重隐患
    assert (r.grade.score, r.grade.grade) == (58.0, "严重隐患")


def test_the_documents_carry_the_hand_computed_numbers(month, tmp_path_factory):
    import io
    import shutil
    import subprocess

    from openpyxl import load_workbook

    from hub.reports.render import render_pdf, render_xlsx

    _, _, meters, r = month
    by_hand = sum(sum(m.increments[1:]) for m in meters.values())
    wb = load_workbook(io.BytesIO(render_xlsx(r)))
    summary = {row[0]: row[1] for row in wb["概要"].iter_rows(values_only=True)}
    assert summary["用电量 (kWh)"] == pytest.approx(by_hand, abs=0.01)
    assert (summary["安全评分"], summary["安全评级"], summary["报警次数"]) == (58.0, "严重隐患", 4)
    out = tmp_path_factory.mktemp("documents")
    pdf = out / "report-simulated-2026-01.pdf"
    pdf.write_bytes(render_pdf(r))
    if shutil.which("pdftotext") is None:
        pytest.skip("poppler-utils not installed (scripts/install-system-deps.sh)")
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                          text=True, check=True).stdout
    assert f"本月用电 {r.energy_total:,.2f} kWh" in text and "严重隐患" in text
    subprocess.run(["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "2", str(pdf),
                    str(out / "page")], check=True)  # kept for people to look at
    assert len(list(out.glob("page*.png"))) == 2
