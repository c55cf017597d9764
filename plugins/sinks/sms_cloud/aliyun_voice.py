"""Provider ``aliyun_voice``: Alibaba Cloud 语音服务, Dyvmsapi ``SingleCallByTts`` (version
2017-05-25): a phone call that reads a text-to-speech template aloud.

Behind the SMS-provider contract like ``tencent_voice``: the message's kind picks
``TtsCode``; its params become ``TtsParam`` (JSON); ``CalledShowNumber`` is the number
shown (omitted: the provider's public pool); ``PlayTimes`` 1 to 3; ``OutId`` carries the
message key (at most 15 bytes, the provider's limit) back in the receipt. One call per
number, signed with V3 (:mod:`.aliyun_v3`). The answer's ``CallId`` is the message id;
codes are read as for SMS (:mod:`.aliyun`).

Published (https://help.aliyun.com/document_detail/393519.html): the provider limits calls
to one called number to 1 a minute, 5 an hour and 20 in 24 hours, a failed call counting
too. :class:`NumberLimits` keeps the same windows on our side, so a call past them is not
placed (it would only be refused and count against the number): it fails as a transient
error (code :data:`REFUSED_CODE`), and the caller's retries place it when the window
allows. The counts live in memory; the alarm desk's outbox gives them back at a start from
its attempt log (:meth:`AliyunVoiceProvider.restore_calls`), so they hold across restarts.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer

from hub import hookimpl
from hub.contracts import SendResult, SmsMessage, SmsProviderType
from hub.validate import Section, integer, number, string
from plugins.sinks.sms_cloud import aliyun, common, http_client

ACTION = "SingleCallByTts"
VERSION = "2017-05-25"
#: the error code of a call our side did not place (a limit would be broken)
REFUSED_CODE = "LocalFlowControl"
#: (window in seconds, calls allowed in it) per called number, as published
LIMITS: tuple[tuple[float, int], ...] = ((60.0, 1), (3600.0, 5), (86400.0, 20))

PERMANENT_CODES = frozenset({
    "isv.MOBILE_NUMBER_ILLEGAL", "isv.TTS_TEMPLATE_ILLEGAL", "isv.TEMPLATE_MISSING_PARAMETERS",
    "isv.PARAM_LENGTH_LIMIT", "isv.INVALID_PARAMETERS", "isv.DISPLAY_NUMBER_ILLEGAL",
    "isv.CALLEDNUMBER_ILLEGAL", "isv.BLACK_KEY_CONTROL_LIMIT",
})


@dataclass(frozen=True)
class VoiceTemplate:
    code: str  # TTS_...
    params: tuple[str, ...] | None = None


@dataclass(frozen=True)
class AliyunVoiceOptions:
    access_key_id: str
    access_key_secret: str
    templates: Mapping[str, VoiceTemplate]
    called_show_number: str = ""
    play_times: int = 2
    endpoint: str = "https://dyvmsapi.aliyuncs.com/"
    timeout: float = 10.0
    limits: tuple[tuple[float, int], ...] = LIMITS

    def __repr__(self) -> str:  # the credentials never reach a log
        return (f"AliyunVoiceOptions(endpoint={self.endpoint!r}, "
                f"called_show_number={self.called_show_number!r}, "
                f"templates={sorted(self.templates)})")


def _template(v: Any) -> VoiceTemplate:
    t = aliyun._template(v)
    return VoiceTemplate(t.code, t.params)


def check_options(s: Section) -> AliyunVoiceOptions:
    opts = AliyunVoiceOptions(
        access_key_id=s.get("access_key_id", common.maybe_secret),
        access_key_secret=s.get("access_key_secret", common.secret),
        templates=s.get("templates", common.kind_map(_template)),
        called_show_number=s.get("called_show_number", string(r"\d{5,15}", "a number"), ""),
        play_times=s.get("play_times", integer(1, 3), 2),
        endpoint=s.get("endpoint", common.url, "https://dyvmsapi.aliyuncs.com/"),
        timeout=s.get("timeout", number(0.1, 300, "s"), 10.0),
    )
    s.finish(allowed_extra=("type",))
    return opts


@dataclass
class NumberLimits:
    """Per-number call windows, sans-IO (``now`` passed in)."""

    limits: tuple[tuple[float, int], ...] = LIMITS
    calls: dict[str, deque[float]] = field(default_factory=dict)

    def refused(self, number: str, now: float) -> str | None:
        """Why a call to ``number`` now would break a limit, or None."""
        past = self.calls.get(number)
        if not past:
            return None
        longest = max(w for w, _ in self.limits)
        while past and past[0] <= now - longest:
            past.popleft()
        for window, allowed in self.limits:
            if sum(1 for t in past if t > now - window) >= allowed:
                return f"{allowed} call(s) per {window:g} s to {number} already placed"
        return None

    def record(self, number: str, now: float) -> None:
        self.calls.setdefault(number, deque()).append(now)

    @property
    def longest(self) -> float:
        return max(w for w, _ in self.limits)


class AliyunVoiceProvider:
    name = "aliyun_voice"
    refused_code = REFUSED_CODE

    def __init__(self, options: AliyunVoiceOptions, reactor: Any,
                 nonce: Callable[[], str] = lambda: uuid.uuid4().hex) -> None:
        self.options = options
        self._reactor = reactor
        self._nonce = nonce
        self._agent = http_client.make_agent(reactor, options.timeout)
        self.limits = NumberLimits(options.limits)

    def __repr__(self) -> str:
        return f"AliyunVoiceProvider({self.options!r})"

    def restore_calls(self, calls: Iterable[tuple[str, float]]) -> None:
        """Calls placed before a restart, ``(number as given, time)`` oldest first, so the
        windows hold across it."""
        for number_, ts in calls:
            self.limits.record(common.mainland(number_), ts)

    def api_params(self, message: SmsMessage, phone: str) -> dict[str, str] | str:
        o = self.options
        found = aliyun.template_for(o.templates, message, "voice template")
        if isinstance(found, str):
            return found
        code, param = found
        params = {"CalledNumber": common.mainland(phone), "TtsCode": code, "TtsParam": param,
                  "PlayTimes": str(o.play_times)}
        if o.called_show_number:
            params["CalledShowNumber"] = o.called_show_number
        out_id = message.key.encode("utf-8")[:15].decode("utf-8", "ignore")
        if out_id:
            params["OutId"] = out_id
        return params

    def build_request(self, message: SmsMessage, phone: str
                      ) -> tuple[str, dict[str, str], bytes] | str:
        params = self.api_params(message, phone)
        if isinstance(params, str):
            return params
        return aliyun.v3_request(self.options.endpoint, ACTION, VERSION, params,
                                 self.options.access_key_id, self.options.access_key_secret,
                                 self._reactor.seconds(), self._nonce())

    def send(self, message: SmsMessage) -> defer.Deferred:
        return common.gather(message, lambda phone: self._call(message, phone), self.name)

    def _call(self, message: SmsMessage, phone: str) -> Any:
        built = self.build_request(message, phone)
        if isinstance(built, str):
            return SendResult(phone, False, "", True, built)
        number_ = common.mainland(phone)
        now = self._reactor.seconds()
        why = self.limits.refused(number_, now)
        if why is not None:
            raise common.ProviderError(self.name, REFUSED_CODE, why)
        self.limits.record(number_, now)  # a failed call counts too
        url, headers, body = built
        d = http_client.request(self._agent, self._reactor, "POST", url, headers, body,
                                self.options.timeout)
        return d.addCallback(self._read, phone)

    def _read(self, response: http_client.HttpResponse, phone: str) -> SendResult:
        return aliyun.read_answer(self.name, response, phone, "CallId", PERMANENT_CODES)


def factory(options: AliyunVoiceOptions, reactor: Any) -> AliyunVoiceProvider:
    return AliyunVoiceProvider(options, reactor)


@hookimpl
def hub_register_sms_providers() -> list[SmsProviderType]:
    return [SmsProviderType("aliyun_voice", factory, check_options,
                            "Alibaba Cloud voice notification (Dyvmsapi SingleCallByTts)")]
