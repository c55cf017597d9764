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


# -- across a restart: the outbox gives the windows back from its attempt log ---------------

def _outbox_with_voice(store, clock, placed, monkeypatch):
    """An outbox whose ``call`` channel is a real ``aliyun_voice`` provider; its HTTP
    request is answered OK without a socket, each request noted in ``placed``."""
    from twisted.internet import defer

    from hub.alarmdesk.channels import Outbox, SmsChannel
    from hub.alarmdesk.settings import NotifySettings
    from plugins.sinks.sms_cloud import aliyun_voice, http_client

    def request(agent, reactor, method, url, headers, body, timeout):
        placed.append(clock.seconds())
        return defer.succeed(http_client.HttpResponse(
            200, {}, b'{"Code": "OK", "CallId": "116012354148^1"}'))

    monkeypatch.setattr(aliyun_voice.http_client, "request", request)
    options = aliyun_voice.AliyunVoiceOptions(
        "LTAI-test", "s3cret", {"alarm": aliyun_voice.VoiceTemplate("TTS_1", ("text",))})
    provider = aliyun_voice.AliyunVoiceProvider(options, clock, nonce=lambda: "n")
    settings = NotifySettings(retry_initial=20.0, retry_max=20.0, attempts=10)
    return Outbox(clock, store, {"call": SmsChannel(provider)}, settings)


def test_the_windows_hold_across_a_restart(tmp_path, monkeypatch):
    from twisted.internet.task import Clock

    from hub.alarmdesk.policy import Notification
    from hub.store import SqliteStore

    path = str(tmp_path / "platform.sqlite")
    clock = Clock()
    clock.advance(1_000_000)
    placed: list[float] = []
    store = SqliteStore(path)
    store.open()
    box = _outbox_with_voice(store, clock, placed, monkeypatch)
    box.resume()
    first = Notification(1, 0, "call", "+8613800138000", "alarm", "d1 hot")
    assert box.claim([first], clock.seconds()) == [True]
    box.deliver(first)
    assert len(placed) == 1 and store.notifications(1)[0]["status"] == "sent"
    box.stop()
    store.close()  # the hub stops: the in-memory windows are gone

    clock.advance(30)  # within the minute of the first call
    store = SqliteStore(path)
    store.open()
    box = _outbox_with_voice(store, clock, placed, monkeypatch)
    box.resume()
    second = Notification(2, 0, "call", "13800138000", "alarm", "d2 hot")  # same number
    assert box.claim([second], clock.seconds()) == [True]
    box.deliver(second)
    assert len(placed) == 1  # not placed: 1 a minute holds after the restart
    [row] = store.notifications(2)
    log = store.notify_attempts(row["id"])
    assert row["status"] == "pending" and "LocalFlowControl" in log[0]["answer"]
    clock.advance(20)  # the retry, 50 s after the first call: still refused
    assert len(placed) == 1
    clock.advance(20)  # 70 s after it: placed
    assert len(placed) == 2 and store.notifications(2)[0]["status"] == "sent"
    box.stop()
    store.close()

    # a third start: the refusals on our side are not calls (only the two placed count)
    clock.advance(3600)  # both in the 24-hour window; the refusals at 30 and 50 s are not
    store = SqliteStore(path)
    store.open()
    box = _outbox_with_voice(store, clock, placed, monkeypatch)
    box.resume()
    provider = box.channels["call"].provider
    assert [round(t - 1_000_000) for t in provider.limits.calls["13800138000"]] == [0, 70]
    assert "per 86400 s" not in (provider.limits.refused("13800138000", clock.seconds())
                                 or "")
    box.stop()
    store.close()
