"""Provider ``tencent_voice``: Tencent Cloud 语音消息 (VMS), API 3.0 ``SendTtsVoice``
(version 2020-09-02): a phone call that reads a pre-approved template aloud.

It sits behind the SMS-provider contract (:class:`hub.contracts.SmsProvider`), so a
notification channel (or the ``sms`` sink) places calls with it as it sends texts: the
message's kind picks ``TemplateId``, ``params`` orders ``TemplateParamSet``. One signed POST
per number (``CalledNumber`` takes one E.164 number), signature v3 TC3-HMAC-SHA256 with
service ``vms`` (:mod:`.tencent_sign`). The answer's ``SendStatus.CallId`` is the message
id; errors are read as for SMS (:func:`.tencent.is_permanent`). ``PlayTimes`` is 1 to 3.

Published request (https://cloud.tencent.com/document/api/1128/51558)::

    POST / HTTP/1.1
    Host: vms.tencentcloudapi.com
    X-TC-Action: SendTtsVoice
    {"TemplateId": "4356", "TemplateParamSet": ["7652"], "PlayTimes": 2,
     "CalledNumber": "+8613788888888", "SessionContext": "sc-t", "VoiceSdkAppid": "1400006666"}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from twisted.internet import defer

from hub.contracts import SendResult, SmsMessage
from hub.validate import Section, integer, number, string
from plugins.sinks.sms_cloud import common, http_client, tencent

ACTION = "SendTtsVoice"
VERSION = "2020-09-02"
SERVICE = "vms"


@dataclass(frozen=True)
class VoiceOptions:
    secret_id: str
    secret_key: str
    voice_sdk_app_id: str
    templates: Any  # kind -> tencent.Template
    play_times: int = 2
    region: str = "ap-guangzhou"
    endpoint: str = "https://vms.tencentcloudapi.com/"
    timeout: float = 10.0

    def __repr__(self) -> str:  # the credentials never reach a log
        return (f"VoiceOptions(endpoint={self.endpoint!r}, "
                f"voice_sdk_app_id={self.voice_sdk_app_id!r}, templates={sorted(self.templates)})")


def check_options(s: Section) -> VoiceOptions:
    opts = VoiceOptions(
        secret_id=s.get("secret_id", common.maybe_secret),
        secret_key=s.get("secret_key", common.secret),
        voice_sdk_app_id=s.get("voice_sdk_app_id", string(r"\d+", "a numeric VoiceSdkAppid")),
        templates=s.get("templates", common.kind_map(tencent._template)),
        play_times=s.get("play_times", integer(1, 3), 2),
        region=s.get("region", string(r"[a-z0-9-]+", "a region such as ap-guangzhou"),
                     "ap-guangzhou"),
        endpoint=s.get("endpoint", common.url, "https://vms.tencentcloudapi.com/"),
        timeout=s.get("timeout", number(0.1, 300, "s"), 10.0),
    )
    s.finish(allowed_extra=("type",))
    return opts


def e164(phone: str) -> str:
    """``CalledNumber`` wants +<country><number>; a bare mainland number gets +86."""
    return phone if phone.startswith("+") else f"+86{phone}"


class TencentVoiceProvider:
    name = "tencent_voice"

    def __init__(self, options: VoiceOptions, reactor: Any) -> None:
        self.options = options
        self._reactor = reactor
        self._agent = http_client.make_agent(reactor, options.timeout)
        self._host = urlsplit(options.endpoint).netloc

    def build_request(self, message: SmsMessage, phone: str
                      ) -> tuple[dict[str, str], bytes] | str:
        """(headers, body) of the signed request for one number, or why there is none."""
        o = self.options
        template = o.templates.get(message.template)
        if template is None:
            return f"no voice template configured for message kind {message.template!r}"
        missing = [n for n in template.params if n not in message.params]
        if missing:
            return f"message has no parameter {missing[0]!r} for template {template.id}"
        body = json.dumps({
            "TemplateId": template.id,
            "TemplateParamSet": [message.params[n] for n in template.params],
            "PlayTimes": o.play_times, "CalledNumber": e164(phone),
            "SessionContext": message.key, "VoiceSdkAppid": o.voice_sdk_app_id,
        }, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return tencent.signed_headers(o.secret_id, o.secret_key, self._host, o.region, ACTION,
                                      VERSION, SERVICE, int(self._reactor.seconds()), body), body

    def send(self, message: SmsMessage) -> defer.Deferred:
        ds = [defer.maybeDeferred(self._call, message, p) for p in message.phones]
        d = defer.gatherResults(ds, consumeErrors=True)
        d.addErrback(lambda f: f.value.subFailure
                     if isinstance(f.value, defer.FirstError) else f)
        return d

    def _call(self, message: SmsMessage, phone: str) -> Any:
        built = self.build_request(message, phone)
        if isinstance(built, str):
            return SendResult(phone, False, "", True, built)
        headers, body = built
        d = http_client.request(self._agent, self._reactor, "POST", self.options.endpoint,
                                headers, body, self.options.timeout)
        return d.addCallback(self._read, phone)

    def _read(self, response: http_client.HttpResponse, phone: str) -> SendResult:
        answer, error = tencent.read_answer(self.name, response)
        if error is not None:
            code, text = error
            if tencent.is_permanent(code):
                return SendResult(phone, False, "", True, f"{code}: {text}")
            raise common.ProviderError(self.name, code, text)
        status = answer.get("SendStatus")
        if not isinstance(status, dict) or not status.get("CallId"):
            raise common.ProviderError(self.name, "NoCallId", "answer without SendStatus")
        return SendResult(phone, True, str(status["CallId"]))


def factory(options: VoiceOptions, reactor: Any) -> TencentVoiceProvider:
    return TencentVoiceProvider(options, reactor)
