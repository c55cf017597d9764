"""The ``api.notify`` section: channels checked like the rest of the configuration."""

from __future__ import annotations

from hub.alarmdesk.settings import parse_notify
from hub.pluginmanager import make_plugins
from hub.validate import Checker, Path, Section


def _parse(notify):
    checker = Checker(make_plugins())
    api = Section(checker, Path("hub.yaml", ("api",)), {"notify": notify})
    out = parse_notify(api)
    return out, checker.errors


def test_webhook_and_provider_channels():
    out, errors = _parse({"channels": {
        "hook": {"type": "webhook", "url": "https://gw.example/a", "secret": "long-enough"},
        "gw": {"type": "sms", "provider": {"type": "http", "url": "http://127.0.0.1:9/send",
                                           "body": {"to": "{phone}", "text": "{text}"}}}},
        "retry": {"initial": 1, "max": 10, "attempts": 4}})
    assert errors == []
    assert out.channels["hook"].type == "webhook" and out.channels["gw"].provider_type == "http"
    assert (out.retry_initial, out.retry_max, out.attempts) == (1, 10, 4)


def test_bad_channels_are_reported():
    _, errors = _parse({"channels": {
        "a": {"type": "pager"},
        "b": {"type": "webhook", "url": "ftp://x", "secret": "short"},
        "c": {"type": "voice", "provider": {"type": "nobody"}},
        "d": {"type": "sms"}},
        "retri": {}})
    text = "\n".join(errors)
    for fragment in ("api.notify.channels.a.type", "channels.b.url", "channels.b.secret",
                     "'nobody' is not a known SMS provider", "channels.d.provider",
                     "retri"):
        assert fragment in text, (fragment, text)
