"""Provider ``tencent``: Tencent Cloud SMS, API 3.0 ``SendSms`` (version 2021-01-11).

One signed POST for all the phones of a message (``PhoneNumberSet``, E.164); the answer's
``SendStatusSet`` has one entry per number, so each phone gets its own result and
``SerialNo`` as message id. The message's kind picks the ``TemplateId`` and the option
``params`` gives the order of ``TemplateParamSet`` (Tencent templates number their
variables {1}, {2}, … instead of naming them).

How codes are read (error codes of "短信 API 3.0 发送错误码",
https://cloud.tencent.com/document/api/382/59177, and the common ones,
https://cloud.tencent.com/document/api/382/38780): ``Ok`` is success; a number, template,
signature or parameter the provider refuses is permanent for that phone (or for all of
them when the whole request was refused for it); frequency limits (``LimitExceeded.*``),
internal errors and timeouts, request throttling, and credentials, permissions or balance
(fixed by an operator, without losing the alarm) are retried.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from twisted.internet import defer
from twisted.logger import Logger

from hub.contracts import SendResult, SmsMessage
from hub.validate import Invalid, Section, describe, number, string
from plugins.sinks.sms_cloud import common, http_client, tencent_sign

_log = Logger(namespace="hub.sms.tencent")

ACTION = "SendSms"
VERSION = "2021-01-11"
SERVICE = "sms"
CONTENT_TYPE = "application/json; charset=utf-8"
#: PhoneNumberSet takes at most 200 numbers per request.
MAX_PHONES = 200

PERMANENT_CODES = frozenset({
    "FailedOperation.PhoneNumberInBlacklist", "FailedOperation.ContainSensitiveWord",
    "FailedOperation.SignatureIncorrectOrUnapproved",
    "FailedOperation.TemplateIncorrectOrUnapproved",
    "FailedOperation.TemplateParamSetNotMatchApprovedTemplate",
    "FailedOperation.MissingSignature", "FailedOperation.MissingTemplate",
    "FailedOperation.JsonParseFail", "FailedOperation.FailResolvePacket",
    "InvalidParameter", "InvalidParameterValue", "MissingParameter",
})
PERMANENT_PREFIXES = ("InvalidParameterValue.", "InvalidParameter.", "MissingParameter.",
                      "UnsupportedOperation.")


def is_permanent(code: str) -> bool:
    return code in PERMANENT_CODES or code.startswith(PERMANENT_PREFIXES)


def signed_headers(secret_id: str, secret_key: str, host: str, region: str, action: str,
                   version: str, service: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of an API 3.0 POST of ``body`` (shared with :mod:`.tencent_voice`)."""
    signed = {"Content-Type": CONTENT_TYPE, "Host": host, "X-TC-Action": action}
    auth = tencent_sign.sign(secret_id, secret_key, service, timestamp, signed, body)
    return {**signed, "X-TC-Timestamp": str(timestamp), "X-TC-Version": version,
            "X-TC-Region": region, "Authorization": auth}


def read_answer(provider: str, response: http_client.HttpResponse
                ) -> tuple[dict[str, Any], tuple[str, str] | None]:
    """(the ``Response`` object, its ``Error`` as (code, message) or None); an answer
    without a ``Response`` is a :class:`common.ProviderError` (worth retrying)."""
    doc = common.load_json(response.body)
    answer = doc.get("Response") if isinstance(doc, dict) else None
    if not isinstance(answer, dict):
        raise common.ProviderError(provider, f"HTTP {response.status}",
                                   "answer without a Response")
    error = answer.get("Error")
    if isinstance(error, dict):
        return answer, (str(error.get("Code", "")), str(error.get("Message", ""))[:200])
    return answer, None


@dataclass(frozen=True)
class Template:
    id: str
    params: tuple[str, ...] = ()


@dataclass(frozen=True)
class TencentOptions:
    secret_id: str
    secret_key: str
    sdk_app_id: str
    sign_name: str
    templates: Mapping[str, Template]
    region: str = "ap-guangzhou"
    endpoint: str = "https://sms.tencentcloudapi.com/"
    timeout: float = 10.0

    def __repr__(self) -> str:  # the credentials never reach a log
        return (f"TencentOptions(endpoint={self.endpoint!r}, sdk_app_id={self.sdk_app_id!r}, "
                f"sign_name={self.sign_name!r}, templates={sorted(self.templates)})")


def _template(v: Any) -> Template:
    if isinstance(v, (str, int)) and not isinstance(v, bool):
        return Template(string(r"\d+", "a numeric template id")(v))
    if isinstance(v, dict) and set(v) <= {"id", "params"} and "id" in v:
        return Template(string(r"\d+", "a numeric template id")(v["id"]),
                        common.name_list(v["params"]) if "params" in v else ())
    raise Invalid(f"expected {{id: 123456, params: [device, value, ...]}}, got {describe(v)}")


def check_options(s: Section) -> TencentOptions:
    opts = TencentOptions(
        secret_id=s.get("secret_id", common.maybe_secret),
        secret_key=s.get("secret_key", common.secret),
        sdk_app_id=s.get("sdk_app_id", string(r"\d+", "a numeric SmsSdkAppId")),
        sign_name=s.get("sign_name", common.non_empty("a signature name")),
        templates=s.get("templates", common.kind_map(_template)),
        region=s.get("region", string(r"[a-z0-9-]+", "a region such as ap-guangzhou"),
                     "ap-guangzhou"),
        endpoint=s.get("endpoint", common.url, "https://sms.tencentcloudapi.com/"),
        timeout=s.get("timeout", number(0.1, 300, "s"), 10.0),
    )
    s.finish(allowed_extra=("type",))
    return opts


class TencentProvider:
    """Sends through the SMS API 3.0; see the module docstring for how answers are read."""

    name = "tencent"

    def __init__(self, options: TencentOptions, reactor: Any) -> None:
        self.options = options
        self._reactor = reactor
        self._agent = http_client.make_agent(reactor, options.timeout)
        self._host = urlsplit(options.endpoint).netloc

    def __repr__(self) -> str:
        return f"TencentProvider({self.options!r})"

    def build_request(self, message: SmsMessage, phones: tuple[str, ...]
                      ) -> tuple[dict[str, str], bytes] | str:
        """(headers, body) of the signed request, or why there is none."""
        o = self.options
        template = o.templates.get(message.template)
        if template is None:
            return f"no template configured for message kind {message.template!r}"
        missing = [n for n in template.params if n not in message.params]
        if missing:
            return f"message has no parameter {missing[0]!r} for template {template.id}"
        body = json.dumps({
            "PhoneNumberSet": list(phones), "SmsSdkAppId": o.sdk_app_id,
            "SignName": o.sign_name, "TemplateId": template.id,
            "TemplateParamSet": [message.params[n] for n in template.params],
            "SessionContext": message.key,
        }, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return signed_headers(o.secret_id, o.secret_key, self._host, o.region, ACTION, VERSION,
                              SERVICE, int(self._reactor.seconds()), body), body

    def send(self, message: SmsMessage) -> defer.Deferred:
        chunks = [message.phones[i:i + MAX_PHONES]
                  for i in range(0, len(message.phones), MAX_PHONES)]
        ds = [defer.maybeDeferred(self._send_chunk, message, c) for c in chunks]
        d = defer.gatherResults(ds, consumeErrors=True)
        d.addCallback(lambda parts: [r for part in parts for r in part])
        d.addErrback(lambda f: f.value.subFailure
                     if isinstance(f.value, defer.FirstError) else f)
        return d

    def _send_chunk(self, message: SmsMessage, phones: tuple[str, ...]) -> Any:
        built = self.build_request(message, phones)
        if isinstance(built, str):
            return [SendResult(p, False, "", True, built) for p in phones]
        headers, body = built
        d = http_client.request(self._agent, self._reactor, "POST", self.options.endpoint,
                                headers, body, self.options.timeout)
        return d.addCallback(self._read, message, phones)

    def _read(self, response: http_client.HttpResponse, message: SmsMessage,
              phones: tuple[str, ...]) -> list[SendResult]:
        answer, error = read_answer(self.name, response)
        if error is not None:
            code, text = error
            if is_permanent(code):
                _log.warn("tencent refused message {key}: {code} {text}", key=message.key,
                          code=code, text=text)
                return [SendResult(p, False, "", True, f"{code}: {text}") for p in phones]
            raise common.ProviderError(self.name, code, text)
        statuses = {s.get("PhoneNumber"): s for s in answer.get("SendStatusSet") or []
                    if isinstance(s, dict)}
        results = [self._status(p, statuses.get(p)) for p in phones]
        if all(not r.ok and not r.permanent for r in results):
            raise common.ProviderError(self.name, results[0].error.split(":")[0],
                                       "every number failed")
        for r in results:
            if not r.ok:
                _log.warn("tencent did not send message {key} to one number: {error}",
                          key=message.key, error=r.error)
        return results

    @staticmethod
    def _status(phone: str, status: Mapping[str, Any] | None) -> SendResult:
        if status is None:
            return SendResult(phone, False, "", False, "NoStatus: number missing in answer")
        code, text = str(status.get("Code", "")), str(status.get("Message", ""))[:200]
        if code == "Ok":
            return SendResult(phone, True, str(status.get("SerialNo", "")))
        return SendResult(phone, False, "", is_permanent(code), f"{code}: {text}")


def factory(options: TencentOptions, reactor: Any) -> TencentProvider:
    return TencentProvider(options, reactor)
