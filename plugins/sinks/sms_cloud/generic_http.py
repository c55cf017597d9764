"""Provider ``http``: a local SMS gateway reached by a configurable HTTP request.

The request is a template: the URL, the headers and a JSON or form body, whose strings may
hold placeholders filled per message — ``{phones}`` (the numbers joined by
``phone_separator``), ``{phone}`` (one number; ``mode: per_phone`` only), ``{text}``,
``{template}`` (the message kind), ``{key}`` and any parameter of the message by name
(``{device}``, ``{value}``…). In a JSON body the string ``"{phone_list}"`` alone becomes a
JSON list of the numbers. Values put into the URL are percent-encoded. With ``method:
GET`` the body's fields go into the query string.

An answer succeeds when its status is 2xx and, if ``success`` is set, the JSON field it
names (dotted path, e.g. ``result.code``) equals its value. 408, 429, 5xx, no answer and
timeouts are retried; other 4xx are permanent; a 2xx whose JSON says otherwise is retried
unless ``body_failure: permanent``.
"""

from __future__ import annotations

import json
import re
import string as _string
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote, urlencode

from twisted.internet import defer
from twisted.logger import Logger

from hub.contracts import SendResult, SmsMessage
from hub.validate import Invalid, Section, choice, describe, number, string
from plugins.sinks.sms_cloud import common, http_client

_log = Logger(namespace="hub.sms.http")

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
PHONE_LIST = "{phone_list}"


@dataclass(frozen=True)
class HttpOptions:
    url: str
    method: str = "POST"
    headers: Mapping[str, str] = field(default_factory=dict)
    body_format: str = "json"
    body: Any = None
    mode: str = "per_phone"
    phone_format: str = "e164"
    phone_separator: str = ","
    success_field: str | None = None
    success_value: Any = None
    message_id_field: str | None = None
    body_failure: str = "transient"
    timeout: float = 10.0

    def __repr__(self) -> str:  # header values may be credentials
        return (f"HttpOptions(method={self.method!r}, url={self.url!r}, "
                f"headers={sorted(self.headers)}, mode={self.mode!r})")


def placeholders(text: str) -> list[str]:
    """The placeholder names in ``text``; only plain names are allowed (``{x.y}`` or
    ``{x[0]}`` would let a template reach into objects)."""
    try:
        parsed = list(_string.Formatter().parse(text))
    except ValueError as e:
        raise Invalid(f"{text!r} is not a valid template: {e}") from None
    names = []
    for _, name, spec, conv in parsed:
        if name is None:
            continue
        if not _NAME.fullmatch(name) or spec or conv:
            raise Invalid(f"{text!r}: placeholder {{{name}}} must be a plain name such as "
                          "{text} or {device}")
        names.append(name)
    return names


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


def _headers(v: Any) -> dict[str, str]:
    if not isinstance(v, dict):
        raise Invalid(f"expected a mapping of header names to values, got {describe(v)}")
    for k, val in v.items():
        if not isinstance(k, str) or not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", k):
            raise Invalid(f"{describe(k)} is not a header name")
        if not isinstance(val, str) or "\n" in val or "\r" in val:
            raise Invalid(f"{k}: expected a one-line string or {{env: NAME}}")
    return dict(v)


def _dotted(v: Any) -> str:
    return string(r"[^.]+(\.[^.]+)*", "a dotted field path such as result.code")(v)


def check_options(s: Section) -> HttpOptions:
    opts = HttpOptions(
        url=s.get("url", common.url),
        method=s.get("method", choice("GET", "POST", "PUT"), "POST"),
        headers=s.get("headers", _headers, {}),
        body_format=s.get("body_format", choice("json", "form"), "json"),
        body=s.raw("body", None),
        mode=s.get("mode", choice("per_phone", "batch"), "per_phone"),
        phone_format=s.get("phone_format", choice("e164", "national"), "e164"),
        phone_separator=s.get("phone_separator", string(r".+", "a separator"), ","),
        message_id_field=s.get("message_id_field", _dotted, None),
        body_failure=s.get("body_failure", choice("transient", "permanent"), "transient"),
        timeout=s.get("timeout", number(0.1, 300, "s"), 10.0),
    )
    success = s.section("success") if "success" in s else None
    if success is not None:
        opts = replace(opts, success_field=success.get("field", _dotted),
                       success_value=success.raw("value"))
        success.finish()
    body = opts.body
    if body is not None and opts.body_format == "form" and not (
            isinstance(body, dict) and all(isinstance(v, (str, int, float))
                                           for v in body.values())):
        s.checker.error(s.path / "body", "a form body is a flat mapping of names to strings")
    for key, texts in (("url", [opts.url] if opts.url else []),
                       ("body", _strings(body))):
        for text in texts:
            if text == PHONE_LIST and key == "body":
                continue
            names = s.checker.check(s.path / key, placeholders, text, default=[])
            if "phone" in names and opts.mode == "batch":
                s.checker.error(s.path / key, "{phone} needs mode: per_phone "
                                "(in batch mode use {phones} or \"{phone_list}\")")
    s.finish(allowed_extra=("type",))
    return opts


class _Values(dict):
    def __missing__(self, key: str) -> str:
        raise KeyError(key)


def get_path(doc: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(doc, dict) and part in doc:
            doc = doc[part]
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            return None
    return doc


class HttpProvider:
    """Sends through a configured HTTP request; see the module docstring."""

    name = "http"

    def __init__(self, options: HttpOptions, reactor: Any) -> None:
        self.options = options
        self._reactor = reactor
        self._agent = http_client.make_agent(reactor, options.timeout)

    def __repr__(self) -> str:
        return f"HttpProvider({self.options!r})"

    def render(self, message: SmsMessage, phones: tuple[str, ...]
               ) -> tuple[str, dict[str, str], bytes | None]:
        """(url, headers, body) for ``phones``; raises KeyError naming a placeholder the
        message has no value for."""
        o = self.options
        numbers = [common.mainland(p) if o.phone_format == "national" else p for p in phones]
        values = _Values(message.params)
        values.update(phones=o.phone_separator.join(numbers), text=message.text,
                      template=message.template, key=message.key)
        if o.mode == "per_phone":
            values["phone"] = numbers[0]

        def fill(node: Any) -> Any:
            if node == PHONE_LIST:
                return numbers
            if isinstance(node, str):
                return node.format_map(values)
            if isinstance(node, dict):
                return {fill(k): fill(v) for k, v in node.items()}
            if isinstance(node, list):
                return [fill(v) for v in node]
            return node

        url = o.url.format_map(_Values({k: quote(str(v), safe="") for k, v in values.items()}))
        headers = dict(o.headers)
        body: bytes | None = None
        filled = fill(o.body) if o.body is not None else None
        if o.method == "GET" or o.body_format == "form":
            form = urlencode({k: str(v) for k, v in (filled or {}).items()}, quote_via=quote)
            if o.method == "GET" and form:
                url += ("&" if "?" in url else "?") + form
            else:
                body = form.encode("ascii")
                headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif filled is not None:
            body = json.dumps(filled, ensure_ascii=False).encode("utf-8")
            headers.setdefault("Content-Type", "application/json; charset=utf-8")
        return url, headers, body

    def send(self, message: SmsMessage) -> defer.Deferred:
        if self.options.mode == "batch":
            return self._send_group(message, message.phones)
        return common.gather(message, lambda p: self._send_one(message, p), self.name)

    def _send_one(self, message: SmsMessage, phone: str) -> defer.Deferred:
        return self._send_group(message, (phone,)).addCallback(lambda results: results[0])

    def _send_group(self, message: SmsMessage, phones: tuple[str, ...]) -> defer.Deferred:
        try:
            url, headers, body = self.render(message, phones)
        except KeyError as e:
            error = f"the request template needs {{{e.args[0]}}}, which message has no value for"
            return defer.succeed([SendResult(p, False, "", True, error) for p in phones])
        d = http_client.request(self._agent, self._reactor, self.options.method, url,
                                headers, body, self.options.timeout)
        return d.addCallback(self._read, message, phones)

    def _read(self, response: http_client.HttpResponse, message: SmsMessage,
              phones: tuple[str, ...]) -> list[SendResult]:
        o = self.options
        status = response.status
        if status in (408, 429) or status >= 500 or status < 200 or 300 <= status < 400:
            raise common.ProviderError(self.name, f"HTTP {status}")
        if status >= 400:
            _log.warn("gateway refused message {key}: HTTP {status}", key=message.key,
                      status=status)
            return [SendResult(p, False, "", True, f"HTTP {status}") for p in phones]
        doc = common.load_json(response.body)
        if o.success_field is not None:
            got = get_path(doc, o.success_field)
            if not (got == o.success_value or str(got) == str(o.success_value)):
                error = f"{o.success_field} is {got!r}, not {o.success_value!r}"
                if o.body_failure == "transient":
                    raise common.ProviderError(self.name, "refused", error)
                return [SendResult(p, False, "", True, error) for p in phones]
        message_id = ""
        if o.message_id_field is not None:
            found = get_path(doc, o.message_id_field)
            message_id = "" if found is None else str(found)
        return [SendResult(p, True, message_id) for p in phones]


def factory(options: HttpOptions, reactor: Any) -> HttpProvider:
    return HttpProvider(options, reactor)
