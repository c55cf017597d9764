"""Load rate against the rated current configured per device or circuit (README "Load
rate"): hand-computed from hourly rollups, the configuration's checks naming the key
path, the advice, and the rates in the energy answer of the API and in the reports."""

from __future__ import annotations

import io
import math

import pytest

from hub.analysis.load import (
    LoadRate,
    Rating,
    load_advice,
    load_rates,
    rating_from,
    ratings_from,
)
from hub.reports.schedule import ReportSchedule
from hub.rollups import HOUR, RollupStore

DAY = 86400.0

#: (channel, hour, amperes): hour 0: B averages 110 A of 100 (overload), peaks at 130;
#: hour 1: A averages 80 A (heavy); hour 2: light
READINGS = [("A", 0, 50.0), ("A", 0, 70.0), ("B", 0, 90.0), ("B", 0, 130.0), ("C", 0, 10.0),
            ("A", 1, 80.0), ("A", 1, 80.0), ("B", 1, 40.0), ("C", 1, 40.0),
            ("A", 2, 20.0)]


def rollups(tmp_path, readings=READINGS, device="d1") -> RollupStore:
    store = RollupStore(str(tmp_path / "r.sqlite"), tz_offset=0)
    ids = {"A": 1, "B": 2, "C": 3}
    names = {i: (device, ch, "current") for ch, i in ids.items()}
    rows = [(k + 1, 0, ids[ch], hour * HOUR + 60 + k, amps, None, None)
            for k, (ch, hour, amps) in enumerate(readings)]
    store.apply(rows, names.__getitem__)
    return store


def test_peak_mean_overload_and_heavy_hours_by_hand(tmp_path):
    store = rollups(tmp_path)
    [r] = load_rates(store, {"d1": Rating(channels={"A": 100, "B": 100, "C": 100})},
                     ["d1", "unrated"], 0, DAY)
    # per hour the most loaded channel's mean / rating: 1.1 (B), 0.8 (A), 0.2 (A)
    assert r.mean_rate == pytest.approx((1.1 + 0.8 + 0.2) / 3, abs=1e-4)
    assert (r.peak_rate, r.peak_amperes, r.peak_channel) == (1.3, 130.0, "B")
    assert (r.hours, r.overload_hours, r.heavy_hours) == (3, 1, 2)
    assert r.rated == "A 100 A, B 100 A, C 100 A"
    # one rating for every channel: 200 A -> nothing above 80 %
    [r] = load_rates(store, {"d1": Rating(200.0)}, ["d1"], 0, DAY)
    assert (r.peak_rate, r.overload_hours, r.heavy_hours) == (0.65, 0, 0)
    assert r.mean_rate == pytest.approx((0.55 + 0.4 + 0.1) / 3, abs=1e-4)
    # a range without readings: no rates, no hours
    [r] = load_rates(store, {"d1": Rating(200.0)}, ["d1"], DAY, 2 * DAY)
    assert (r.hours, r.peak_rate, r.mean_rate) == (0, None, None)
    store.close()


def test_ratings_from_configuration():
    assert rating_from(63, "rated.b") == Rating(63.0)
    assert rating_from({"channels": {"L1": 32}}, "rated.b").of("L1") == 32.0
    cap = rating_from({"capacity_kva": 50, "voltage": 400}, "rated.b")
    assert cap.current == pytest.approx(50_000 / (math.sqrt(3) * 400))  # 72.17 A
    assert rating_from({"capacity_kva": 11, "voltage": 220, "phases": 1},
                       "rated.b").current == pytest.approx(50.0)
    mixed = rating_from({"current": 63, "channels": {"N": 100}}, "rated.b")
    assert (mixed.of("A"), mixed.of("N")) == (63.0, 100.0)


@pytest.mark.parametrize("bad, path", [
    ({"box-1": -5}, "rated.box-1: a positive number of amperes"),
    ({"box-1": {"current": "x"}}, "rated.box-1.current: a positive number"),
    ({"box-1": {"channels": {"A": 0}}}, "rated.box-1.channels.A: a positive number"),
    ({"box-1": {"current": 10, "capacity_kva": 5}}, "rated.box-1: current or capacity_kva"),
    ({"box-1": {"capacity_kva": 5, "phases": 2}}, "rated.box-1.phases: 1 or 3"),
    ({"box-1": {"amps": 5}}, "rated.box-1: unknown keys ['amps']"),
    ({"box-1": {}}, "rated.box-1: give current, channels or capacity_kva"),
    ([1, 2], "rated: a mapping of device id"),
])
def test_a_wrong_rating_names_its_key_path(bad, path):
    with pytest.raises(ValueError) as e:
        ReportSchedule.from_mapping({"rated": bad})
    assert str(e.value).startswith(path)


def test_the_hub_configuration_check_names_the_whole_path(tmp_path, capsys):
    import yaml

    from hub.cli import main

    config = tmp_path / "hub.yaml"
    config.write_text(yaml.safe_dump({
        "hub": {"state_dir": "var"},
        "sinks": {"rollups": {"type": "rollups", "reports": {"rated": {"box-1": {
            "current": 0}}}}}}), encoding="utf-8")
    with pytest.raises(SystemExit) as e:
        main(["check", "-c", str(config)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "sinks.rollups.reports" in err
    assert "rated.box-1.current: a positive number of amperes, not 0" in err
    good = ReportSchedule.from_mapping({"rated": {"box-1": 63}})
    assert ratings_from({"box-1": 63}) == good.rated


def test_advice_names_overload_heavy_and_light_circuits():
    rates = [LoadRate("d1", "100 A", 10, 1.3, 0.7, 4, 6),
             LoadRate("d2", "63 A", 10, 0.85, 0.5, 0, 3),
             LoadRate("d3", "63 A", 10, 0.15, 0.05, 0, 0)]
    text = load_advice(rates, {"d1": "一号箱"})
    assert text[0].startswith("一号箱 过载 4 小时") and "峰值负载率 130%" in text[0]
    assert text[1].startswith("d2 重载 3 小时")
    assert text[2].startswith("1 个回路平均负载率低于 20%（d3）")
    assert load_advice([LoadRate("d4", "63 A", 0, None, None, 0, 0)]) == []


def test_the_energy_answer_and_the_reports_carry_load_rates(tmp_path):
    from openpyxl import load_workbook

    from hub.analysis.energy import TouSchedule
    from hub.analysis.grading import GradingScheme
    from hub.analysis.settings import AnalysisSettings
    from hub.api.routes_analysis import energy_of
    from hub.reports.data import build_report
    from hub.reports.render import render_html, render_xlsx

    store = rollups(tmp_path)
    s = AnalysisSettings("", 0, GradingScheme(), TouSchedule(), True,
                         ReportSchedule.from_mapping({"rated": {"d1": {"channels": {
                             "A": 100, "B": 100, "C": 100}}}}))
    out = energy_of(store, "d1", ["d1"], "day", 0, DAY, s)
    assert [(x.device, x.peak_rate, x.overload_hours) for x in out.load_rate] == [
        ("d1", 1.3, 1)]
    assert any(a.startswith("d1 过载 1 小时") for a in out.advice)

    class NoEvents:
        def events(self, *a, **k):
            return []

        def acknowledgements(self, *a, **k):
            return []
    r = build_report(NoEvents(), store, "p1", {"d1": "一号箱"}, 0, DAY, s, "1970-01-01",
                     kind="daily")
    assert [(x.device, x.heavy_hours) for x in r.load] == [("d1", 2)]
    assert any(a.startswith("一号箱 过载 1 小时") for a in r.advice)
    page = render_html(r)
    assert "负载率" in page and "130.0%" in page and "70.0%" in page
    wb = load_workbook(io.BytesIO(render_xlsx(r)))
    rows = list(wb["负载率"].iter_rows(values_only=True))
    assert rows[1][:7] == ("d1", "一号箱", "A 100 A, B 100 A, C 100 A", 1.3,
                           pytest.approx(0.7, abs=1e-4), 1, 2)
    store.close()


def test_a_device_s_own_rating_in_the_configuration_file(tmp_path, capsys):
    import yaml

    from hub.analysis.settings import analysis_settings, with_devices
    from hub.cli import main
    from hub.config import load_config
    from hub.pluginmanager import make_plugins

    def write(rated):
        config = tmp_path / "hub.yaml"
        config.write_text(yaml.safe_dump({
            "hub": {"state_dir": "var"},
            "transports": {"demo": {"type": "simulator"}},
            "devices": [{"id": "box-1", "model": "simulated", "transport": "demo",
                         "address": "normal", "rated": rated,
                         "alarms": {"temperature": {"alarm": 70}}}],
            "sinks": {"rollups": {"type": "rollups", "reports": {"rated": {
                "box-1": 10, "box-2": 32}}}}}), encoding="utf-8")
        return config
    with pytest.raises(SystemExit):
        main(["check", "-c", str(write({"channels": {"A": 0}}))])
    assert "devices[0].rated.channels.A: a positive number of amperes, not 0" in \
        capsys.readouterr().err
    config = load_config(str(write({"capacity_kva": 50})), make_plugins())
    [box] = config.devices
    assert box.rated.current == pytest.approx(72.17, abs=0.01)
    # the device's own rating wins over reports.rated; other devices keep theirs; the
    # set points are the devices' own
    s = with_devices(analysis_settings(config), config.devices)
    assert s.reports.rated["box-1"] is box.rated
    assert s.reports.rated["box-2"] == Rating(32.0)
    assert s.set_points["box-1"]["temperature"] == 70.0


def test_rating_text_says_the_whole_rating():
    from hub.analysis.load import rating_text

    assert rating_text(Rating(63.0)) == "63 A"
    assert rating_text(Rating(channels={"L1": 32.0, "A": 100.0})) == "A 100 A, L1 32 A"
    assert rating_text(Rating(63.0, {"L1": 32.0})) == "63 A, L1 32 A"
