"""The Alibaba voice provider's per-number limits (1 a minute, 5 an hour, 20 in 24 hours,
as https://help.aliyun.com/document_detail/393519.html publishes them), on injected time."""

from __future__ import annotations

from plugins.sinks.sms_cloud.aliyun_voice import LIMITS, NumberLimits


def place(limits: NumberLimits, number: str, now: float) -> bool:
    if limits.refused(number, now) is not None:
        return False
    limits.record(number, now)
    return True


def test_published_limits():
    assert LIMITS == ((60.0, 1), (3600.0, 5), (86400.0, 20))


def test_one_a_minute():
    lim = NumberLimits()
    assert place(lim, "13800138000", 0)
    assert not place(lim, "13800138000", 59)
    assert "per 60 s" in lim.refused("13800138000", 59)
    assert place(lim, "13800138001", 59)  # another number is its own
    assert place(lim, "13800138000", 60.5)


def test_five_an_hour_and_twenty_a_day():
    lim = NumberLimits()
    placed = [t for t in range(0, 3600, 61) if place(lim, "n", t)]
    assert placed == [0, 61, 122, 183, 244]
    assert place(lim, "n", 3600.5)  # the first one left the hour
    day = NumberLimits()
    count = sum(place(day, "n", t) for t in range(0, 86400, 700))
    assert count == 20
    assert "per 86400 s" in day.refused("n", 86399)
    assert place(day, "n", 86400 + 1)
