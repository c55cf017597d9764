"""Provider ``aliyun``: Alibaba Cloud SMS, Dysmsapi ``SendSms`` (version 2017-05-25).

Signed with V3, ``ACS3-HMAC-SHA256`` (:mod:`.aliyun_v3`; Alibaba has closed its V2 RPC
signature to new integrations): a POST to ``/`` with the API's parameters in the query,
an empty body, and the ``x-acs-*`` headers. ``signature: v2`` keeps the old HMAC-SHA1 RPC
form (:mod:`.aliyun_sign`, parameters in a form body) for accounts or gateways that still
need it.

One signed POST per phone number (``PhoneNumbers`` accepts a list, but the answer then has
one code for all of them: a single bad number would fail the others). The message's kind
picks the ``TemplateCode``; its params become ``TemplateParam`` (JSON). ``BizId`` is the
message id.

How the answer's ``Code`` is read (codes from "API 错误码",
https://help.aliyun.com/document_detail/101346.html): ``OK`` is success; codes that
waiting cannot fix (a bad number, a template or signature the provider refused, parameters
the template does not take) are permanent for that phone; everything else — throttling,
``isv.BUSINESS_LIMIT_CONTROL`` (per-number frequency limits), day and month limits,
system errors, and also credentials, permissions and balance, which an operator fixes
without the alarm having to be lost — is retried.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from twisted.internet import defer
from twisted.logger import Logger

from hub.contracts import SendResult, SmsMessage
from hub.validate import Invalid, Section, choice, describe, number, string
from plugins.sinks.sms_cloud import aliyun_sign, aliyun_v3, common, http_client

_log = Logger(namespace="hub.sms.aliyun")

ACTION = "SendSms"
VERSION = "2017-05-25"

PERMANENT_CODES = frozenset({
    "isv.MOBILE_NUMBER_ILLEGAL", "isv.MOBILE_COUNT_OVER_LIMIT",
    "isv.DOMESTIC_NUMBER_NOT_SUPPORTED", "isv.SMS_TEMPLATE_ILLEGAL",
    "isv.SMS_SIGNATURE_ILLEGAL", "isv.SMS_SIGN_ILLEGAL", "isv.SIGN_STATE_ILLEGAL",
    "isv.SMS_SIGNATURE_SCENE_ILLEGAL", "isv.TEMPLATE_MISSING_PARAMETERS",
    "isv.TEMPLATE_PARAMS_ILLEGAL", "isv.INVALID_PARAMETERS", "isv.INVALID_JSON_PARAM",
    "isv.PARAM_LENGTH_LIMIT", "isv.PARAM_NOT_SUPPORT_URL", "isv.SMS_CONTENT_ILLEGAL",
    "isv.BLACK_KEY_CONTROL_LIMIT", "isv.EXTEND_CODE_ERROR", "isv.MOBILE_IN_BLACK",
})


@dataclass(frozen=True)
class Template:
    code: str
    params: tuple[str, ...] | None = None  # None: every param of the message


@dataclass(frozen=True)
class AliyunOptions:
    access_key_id: str
    access_key_secret: str
    sign_name: str
    templates: Mapping[str, Template]
    region: str = "cn-hangzhou"
    endpoint: str = "https://dysmsapi.aliyuncs.com/"
    timeout: float = 10.0
    signature: str = "v3"  # v3 (ACS3-HMAC-SHA256) | v2 (HMAC-SHA1 RPC, legacy)

    def __repr__(self) -> str:  # the credentials never reach a log
        return (f"AliyunOptions(endpoint={self.endpoint!r}, sign_name={self.sign_name!r}, "
                f"signature={self.signature!r}, templates={sorted(self.templates)})")


def _template(v: Any) -> Template:
    if isinstance(v, str) and v:
        return Template(v)
    if isinstance(v, dict) and set(v) <= {"code", "params"} and "code" in v:
        code = string(r".+", "a template code")(v["code"])
        return Template(code, common.name_list(v["params"]) if "params" in v else None)
    raise Invalid(f"expected a template code such as SMS_123456 or {{code: ..., params: "
                  f"[...]}}, got {describe(v)}")


def check_options(s: Section) -> AliyunOptions:
    opts = AliyunOptions(
        access_key_id=s.get("access_key_id", common.maybe_secret),
        access_key_secret=s.get("access_key_secret", common.secret),
        sign_name=s.get("sign_name", common.non_empty("a signature name")),
        templates=s.get("templates", common.kind_map(_template)),
        region=s.get("region", string(r"[a-z0-9-]+", "a region id"), "cn-hangzhou"),
        endpoint=s.get("endpoint", common.url, "https://dysmsapi.aliyuncs.com/"),
        timeout=s.get("timeout", number(0.1, 300, "s"), 10.0),
        signature=s.get("signature", choice("v3", "v2"), "v3"),
    )
    s.finish(allowed_extra=("type",))
    return opts


class AliyunProvider:
    """Sends through Dysmsapi; see the module docstring for how answers are read."""

    name = "aliyun"

    def __init__(self, options: AliyunOptions, reactor: Any,
                 nonce: Callable[[], str] = lambda: str(uuid.uuid4())) -> None:
        self.options = options
        self._reactor = reactor
        self._nonce = nonce
        self._agent = http_client.make_agent(reactor, options.timeout)

    def __repr__(self) -> str:
        return f"AliyunProvider({self.options!r})"

    def api_params(self, message: SmsMessage, phone: str) -> dict[str, str] | str:
        """SendSms's own parameters for one phone, or why there is none."""
        found = template_for(self.options.templates, message, "template")
        if isinstance(found, str):
            return found
        code, param = found
        return {"PhoneNumbers": common.mainland(phone), "SignName": self.options.sign_name,
                "TemplateCode": code, "TemplateParam": param}

    def request_params(self, message: SmsMessage, phone: str) -> dict[str, str] | str:
        """The V2-signed parameters of the request for one phone, or why there is none."""
        api = self.api_params(message, phone)
        if isinstance(api, str):
            return api
        o = self.options
        params = {
            "AccessKeyId": o.access_key_id, "Action": ACTION, "Format": "JSON",
            "RegionId": o.region, "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": self._nonce(), "SignatureVersion": "1.0",
            "Timestamp": aliyun_sign.timestamp(self._reactor.seconds()), "Version": VERSION,
            **api}
        return aliyun_sign.sign("POST", params, o.access_key_secret)

    def request_v3(self, message: SmsMessage, phone: str
                   ) -> tuple[str, dict[str, str], bytes] | str:
        """(url, headers, body) of the V3-signed request for one phone, or why none."""
        api = self.api_params(message, phone)
        if isinstance(api, str):
            return api
        return v3_request(self.options.endpoint, ACTION, VERSION, api,
                          self.options.access_key_id, self.options.access_key_secret,
                          self._reactor.seconds(), self._nonce())

    def send(self, message: SmsMessage) -> defer.Deferred:
        return common.gather(message, lambda phone: self._send_one(message, phone), self.name)

    def _send_one(self, message: SmsMessage, phone: str) -> Any:
        if self.options.signature == "v3":
            built = self.request_v3(message, phone)
            if isinstance(built, str):
                return SendResult(phone, False, "", True, built)
            url, headers, body = built
        else:
            params = self.request_params(message, phone)
            if isinstance(params, str):
                return SendResult(phone, False, "", True, params)
            url, body = self.options.endpoint, urlencode(params, quote_via=quote).encode("ascii")
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
        d = http_client.request(self._agent, self._reactor, "POST", url, headers, body,
                                self.options.timeout)
        return d.addCallback(self._read, message, phone)

    def _read(self, response: http_client.HttpResponse, message: SmsMessage,
              phone: str) -> SendResult:
        result = read_answer(self.name, response, phone, "BizId", PERMANENT_CODES)
        if result.permanent:
            _log.warn("aliyun refused message {key}: {error}", key=message.key,
                      error=result.error)
        return result


def read_answer(provider: str, response: http_client.HttpResponse, phone: str, id_field: str,
                permanent: frozenset[str]) -> SendResult:
    """An Alibaba Cloud answer's ``Code``: ``OK`` (the id in ``id_field``), a permanent
    refusal, or :class:`common.ProviderError` to retry."""
    doc = common.load_json(response.body)
    code = doc.get("Code") if isinstance(doc, dict) else None
    if not isinstance(code, str):
        raise common.ProviderError(provider, f"HTTP {response.status}", "answer without a Code")
    text = str(doc.get("Message", ""))[:200]
    if code == "OK":
        return SendResult(phone, True, str(doc.get(id_field, "")))
    if code in permanent:
        return SendResult(phone, False, "", True, f"{code}: {text}")
    raise common.ProviderError(provider, code, text)


def template_for(templates: Mapping[str, Any], message: SmsMessage, what: str
                 ) -> tuple[str, str] | str:
    """(template code, its parameters as JSON) for the message's kind, or why none."""
    template = templates.get(message.template)
    if template is None:
        return f"no {what} configured for message kind {message.template!r}"
    names = template.params if template.params is not None else sorted(message.params)
    missing = [n for n in names if n not in message.params]
    if missing:
        return f"message has no parameter {missing[0]!r} for template {template.code}"
    return template.code, json.dumps({n: message.params[n] for n in names},
                                     ensure_ascii=False, separators=(",", ":"))


def v3_request(endpoint: str, action: str, version: str, params: dict[str, str],
               key_id: str, secret: str, now: float, nonce: str
               ) -> tuple[str, dict[str, str], bytes]:
    """An RPC call signed with V3: the parameters in the query string of a POST to the
    endpoint's path, no body (as Alibaba's own fixed-parameter example)."""
    parts = urlsplit(endpoint)
    path = parts.path or "/"
    headers = aliyun_v3.sign("POST", parts.netloc, path, action, version, params, b"",
                             key_id, secret, aliyun_v3.timestamp(now), nonce)
    url = f"{parts.scheme}://{parts.netloc}{path}?{aliyun_v3.canonical_query(params)}"
    return url, headers, b""


def factory(options: AliyunOptions, reactor: Any) -> AliyunProvider:
    return AliyunProvider(options, reactor)
