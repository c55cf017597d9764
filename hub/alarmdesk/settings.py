"""The ``notify:`` part of the ``api:`` section: the channels notification policies name.

::

    api:
      notify:
        channels:
          sms:                      # a name policies use
            type: sms
            provider: {type: aliyun, ...}   # any SMS provider (`hub plugins`), as the sms sink
          call:
            type: voice             # aliyun_voice (Dyvmsapi SingleCallByTts) or tencent_voice
            provider: {type: aliyun_voice, ...}   # (VMS SendTtsVoice), behind the SMS contract
          duty-robot:
            type: webhook           # POST JSON, signed: X-Hub-Signature: sha256=HMAC(secret,
            url: https://oapi.example/robot   #   "<X-Hub-Timestamp>.<body>")
            secret: change-me
            timeout: 10
        retry: {initial: 5, max: 300, attempts: 8}

Policies themselves (steps, quiet hours, storm limits) are per project in the platform
store, edited through the API (PUT /api/projects/{id}/notification-policy).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hub.validate import Section, choice, integer, number, string


@dataclass(frozen=True)
class ChannelSettings:
    name: str
    type: str  # sms | webhook
    provider_type: str = ""
    provider: Any = None  # the SMS provider's checked options
    url: str = ""
    secret: str = ""
    timeout: float = 10.0


@dataclass(frozen=True)
class NotifySettings:
    channels: dict[str, ChannelSettings] = field(default_factory=dict)
    retry_initial: float = 5.0
    retry_max: float = 300.0
    attempts: int = 8


def parse_notify(api: Section) -> NotifySettings:
    s = api.section("notify")
    channels: dict[str, ChannelSettings] = {}
    chans = s.section("channels")
    for name, _ in list(chans.items()):
        c = chans.section(name)
        kind = c.get("type", choice("sms", "voice", "webhook"))
        if kind in ("sms", "voice"):  # a voice provider sits behind the SMS contract
            ptype, provider = _provider(c)
            channels[name] = ChannelSettings(name, "sms", ptype, provider)
        elif kind == "webhook":
            channels[name] = ChannelSettings(
                name, "webhook", url=c.get("url", string(r"https?://.+", "an http(s) URL")),
                secret=c.get("secret", string(r".{8,}", "at least 8 characters")),
                timeout=c.get("timeout", number(0.1, 300, "s"), 10.0))
        c.finish()
    chans.finish()
    retry = s.section("retry")
    out = NotifySettings(channels,
                         retry.get("initial", number(0.1, 3600, "s"), 5.0),
                         retry.get("max", number(0.1, 86400, "s"), 300.0),
                         retry.get("attempts", integer(1, 1000), 8))
    retry.finish()
    s.finish()
    return out


def _provider(s: Section) -> tuple[str, Any]:
    """The SMS provider of a channel, checked by the provider's plugin (as the sms sink's
    ``provider``)."""
    if "provider" not in s:
        s.checker.error(s.path / "provider", "is required ({type: <provider>, ...})")
        return "", None
    sec = s.section("provider")
    type_name = sec.get("type", string())
    types = getattr(s.checker.plugins, "sms_providers", None) or {}
    if type_name not in types:
        if types or s.checker.plugins is not None:
            s.checker.error(sec.path / "type", f"{type_name!r} is not a known SMS provider "
                            f"(known: {', '.join(sorted(types)) or 'none installed'})")
        return type_name or "", None
    return type_name, s.checker.check(sec.path, types[type_name].check_options, sec)
