"""SMS texts: phone numbers, part counting, Chinese templates, units, time zones."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from hub.model import Event, EventKind, EventState, Level
from hub.validate import Invalid
from plugins.sinks.sms import textparts
from plugins.sinks.sms.phones import normalise
from plugins.sinks.sms.routing import Route, Router, message_kind
from plugins.sinks.sms.templates import DeviceInfo, Renderer, check_template, duration

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z = 08:00 in Shanghai
BOX = DeviceInfo("1号配电箱", "A栋1层", "campus-a", "配电房")


@pytest.mark.parametrize("raw, e164", [
    ("13800138000", "+8613800138000"),
    (13800138000, "+8613800138000"),
    ("138-0013-8000", "+8613800138000"),
    ("+86 138 0013 8000", "+8613800138000"),
    ("008613800138000", "+8613800138000"),
    ("+85291234567", "+85291234567"),
    ("+14155550123", "+14155550123"),
])
def test_phone_numbers_are_normalised_to_e164(raw, e164):
    assert normalise(raw) == e164


@pytest.mark.parametrize("raw", ["1380013800", "23800138000", "+8602112345678", "abc", None,
                                 "+0123456789"])
def test_bad_phone_numbers_are_refused(raw):
    with pytest.raises(Invalid):
        normalise(raw)


def test_part_counting_gsm7_and_ucs2():
    assert textparts.parts("a" * 160) == 1 and textparts.parts("a" * 161) == 2
    assert textparts.parts("a" * 306) == 2 and textparts.parts("a" * 307) == 3
    assert textparts.units("a€") == 3  # an extension character takes two septets
    assert textparts.parts("中" * 70) == 1 and textparts.parts("中" * 71) == 2
    assert textparts.parts("中" * 134) == 2 and textparts.parts("中" * 135) == 3
    assert textparts.parts("a" * 69 + "°") == 1  # ° is not GSM-7: the whole text is UCS-2
    assert textparts.parts("a" * 70 + "°") == 2
    assert textparts.units("😀") == 2  # outside the BMP: a surrogate pair in UCS-2/UTF-16
    cut = textparts.fit("中" * 300, 2)
    assert cut.endswith("…") and textparts.parts(cut) == 2 and len(cut) == 134
    assert textparts.parts(textparts.fit("中" * 100, 1, reserved=8) + "中" * 8) == 1


def alarm(**kw):
    base = dict(device="efd-1", kind=EventKind.ALARM, code="temperature",
                state=EventState.RAISED, ts=T0, level=Level.ALARM, channel="T1", id="e1",
                value=92.5, set_point=80.0)
    return Event(**{**base, **kw})


def test_alarm_text_in_chinese_with_unit_set_point_and_local_time():
    r = Renderer({}, ZoneInfo("Asia/Shanghai"))
    text = r.text("alarm", r.fields(alarm(), "alarm", BOX))
    assert text == ("【电气火灾报警】A栋1层 1号配电箱T1温度报警：温度92.5°C，设定值80°C，级别报警。"
                    "时间2026-01-01 08:00:00")
    assert textparts.parts(text) == 1


def test_residual_current_and_phases_and_other_time_zone():
    r = Renderer({}, ZoneInfo("Europe/Berlin"))
    e = alarm(code="residual_current", channel="L1", value=350.0, set_point=300.0)
    f = r.fields(e, "alarm", BOX)
    assert f["reading"] == "剩余电流350mA，设定值300mA"
    assert f["time"] == "2026-01-01 01:00:00" and f["tz"] == "Europe/Berlin"
    f = r.fields(alarm(code="overvoltage", channel="A", value=265.2, set_point=242.0), "alarm",
                 BOX)
    assert f["where"] == "A栋1层 1号配电箱A相" and f["reading"] == "电压265.2V，设定值242V"


def test_recovery_says_how_long_it_lasted():
    r = Renderer({}, ZoneInfo("Asia/Shanghai"))
    e = alarm(state=EventState.CLEARED, ts=T0 + 3725, raised_ts=T0, value=78.0)
    text = r.text("recovery", r.fields(e, "recovery", BOX))
    assert text == ("【已恢复】A栋1层 1号配电箱T1温度报警已恢复，持续1小时2分。"
                    "时间2026-01-01 09:02:05")
    assert [duration(s) for s in (0, 45, 312, 3600, 93600)] == [
        "0秒", "45秒", "5分12秒", "1小时", "1天2小时"]


def test_offline_fault_and_device_flags():
    r = Renderer({}, ZoneInfo("Asia/Shanghai"))
    off = Event("efd-1", EventKind.FAULT, "offline", EventState.RAISED, T0, Level.FAULT,
                id="o1", value=T0 - 180)
    assert message_kind(off) == "offline"
    assert r.text("offline", r.fields(off, "offline", BOX)).startswith(
        "【设备离线】A栋1层 1号配电箱已离线")
    arc = alarm(code="fault_arc", channel="", value=1.0, set_point=None)
    f = r.fields(arc, "alarm", BOX)
    assert f["what"] == "故障电弧报警" and f["reading"] == "见平台"  # a flag has no value
    short = Event("efd-1", EventKind.FAULT, "channel_short", EventState.RAISED, T0,
                  Level.FAULT, "T2", id="f1")
    assert r.text("fault", r.fields(short, "fault", BOX)).startswith(
        "【设备故障】A栋1层 1号配电箱T2通道短路")


def test_custom_template_and_its_errors():
    assert check_template("alarm", "{device}{what}{value}{unit}") == "{device}{what}{value}{unit}"
    with pytest.raises(Invalid, match="not a field"):
        check_template("alarm", "{device}{colour}")
    with pytest.raises(Invalid, match="not a field"):
        check_template("summary", "{device}")
    with pytest.raises(Invalid):
        check_template("alarm", "{device")
    r = Renderer({"alarm": "{device}：{quantity}{value}{unit}"}, ZoneInfo("Asia/Shanghai"))
    assert r.text("alarm", r.fields(alarm(), "alarm", BOX)) == "1号配电箱：温度92.5°C"


def test_summary_lists_what_fits_then_counts():
    r = Renderer({}, ZoneInfo("Asia/Shanghai"), max_parts=2)
    entries = [("alarm", f"{i}号配电箱温度报警9{i}°C") for i in range(1, 20)]
    f = r.summary(entries, T0)
    text = r.text("summary", f)
    assert f["count"] == "19" and f["counts"] == "报警19" and "等19条" in text
    assert textparts.parts(text) <= 2 and "1号配电箱温度报警91°C" in text


def test_routing_by_project_kind_level_and_group():
    router = Router([
        Route(("duty",), kinds=frozenset({"alarm"}), projects=frozenset({"campus-a"})),
        Route(("mgr",), levels=frozenset({"fault"}), groups=frozenset({"配电房"})),
    ], {"duty": ("+8613800138000",), "mgr": ("+8613900139000", "+8613800138000")})
    matched = router.matching("alarm", alarm(), BOX)
    assert [i for i, _ in matched] == [0]
    off = alarm(kind=EventKind.FAULT, code="offline", level=Level.FAULT)
    assert [i for i, _ in router.matching("offline", off, BOX)] == [1]
    assert router.matching("alarm", alarm(), DeviceInfo("x", project="campus-b")) == []
    assert router.phones(["duty", "mgr"]) == ["+8613800138000", "+8613900139000"]
