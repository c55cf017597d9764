"""What the three providers share: option checks, phone formats and result helpers."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet import defer

from hub.config import Secret
from hub.contracts import SendResult, SmsMessage
from hub.validate import Invalid, describe, string

#: The message kinds the ``sms`` sink sends (``SmsMessage.template``), and ``reminder``: the
#: alarm desk's hazard reminders (隐患提醒) before and after a deadline.
KINDS = ("alarm", "fault", "offline", "recovery", "summary", "reminder")


class ProviderError(Exception):
    """The provider refused the whole attempt in a way worth retrying (throttled, a 5xx,
    credentials an operator must fix). ``code`` is the provider's own error code."""

    def __init__(self, provider: str, code: str, message: str = "") -> None:
        super().__init__(f"{provider}: {code}" + (f": {message}" if message else ""))
        self.provider = provider
        self.code = code


def secret(v: Any) -> str | None:
    """A credential, only as ``{env: NAME}`` or ``{file: PATH}`` so it never sits in the
    configuration file (and is shown as ``***`` wherever the options are printed)."""
    if v is None:  # an {env:}/{file:} that could not be read: already reported
        return None
    if not isinstance(v, Secret):
        raise Invalid("write it as {env: NAME} or {file: PATH}, not in the file itself"
                      if isinstance(v, str) else
                      f"expected {{env: NAME}} or {{file: PATH}}, got {describe(v)}")
    return v


def maybe_secret(v: Any) -> str | None:
    """An identifier that may be kept secret or written plainly (an AccessKey id)."""
    if v is None or isinstance(v, Secret):  # None: an unreadable {env:}, already reported
        return v
    return string(r".+", "a non-empty string")(v)


def url(v: Any) -> str:
    v = string()(v)
    if not v.startswith(("http://", "https://")):
        raise Invalid(f"{v!r} is not an http:// or https:// URL")
    return v


def non_empty(what: str) -> Callable[[Any], str]:
    return string(r"(?s).+", what)


def kind_map(check_value: Callable[[Any], Any]) -> Callable[[Any], dict[str, Any]]:
    """A mapping from message kinds to ``check_value(entry)``; unknown kinds are errors
    (a typo such as ``alram`` would otherwise silently leave alarms unsent). A provider
    keeps it as ``templates`` in its options: the ``sms`` sink's own check then requires a
    template for every kind its routes and storm control send, and checks each template's
    ``params`` against the fields of that kind."""

    def check(v: Any) -> dict[str, Any]:
        if not isinstance(v, dict) or not v:
            raise Invalid(f"expected a mapping of message kinds ({', '.join(KINDS)}) to "
                          f"templates, got {describe(v)}")
        out = {}
        for k, entry in v.items():
            if k not in KINDS:
                raise Invalid(f"{describe(k)} is not a message kind ({', '.join(KINDS)})")
            try:
                out[k] = check_value(entry)
            except Invalid as e:
                raise Invalid(f"{k}: {e}") from None
        return out

    return check


def name_list(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        raise Invalid(f"expected a list of parameter names, got {describe(v)}")
    return tuple(v)


def mainland(phone: str) -> str:
    """The form Alibaba Cloud wants: mainland numbers without ``+86``, others as
    country code + number without ``+``."""
    digits = phone.lstrip("+")
    if phone.startswith("+86") and len(digits) == 13:
        return digits[2:]
    return digits


def every(message: SmsMessage, ok: bool, permanent: bool = False, error: str = "",
          message_id: str = "") -> list[SendResult]:
    return [SendResult(p, ok, message_id, permanent, error) for p in message.phones]


def combine(message: SmsMessage, per_phone: Sequence[tuple[bool, Any]],
            provider: str) -> list[SendResult]:
    """Results of one request per phone, in order. A phone whose request failed
    transiently gets ``ok=False, permanent=False``; when every phone failed that way the
    whole attempt fails, so the sink retries it as one."""
    if per_phone and all(not ok for ok, _ in per_phone):
        per_phone[0][1].raiseException()
    out = []
    for phone, (ok, value) in zip(message.phones, per_phone, strict=True):
        if ok:
            out.append(value)
        else:
            out.append(SendResult(phone, False, "", False,
                                  f"{provider}: {value.getErrorMessage()}"[:300]))
    return out


def gather(message: SmsMessage, send_one: Callable[[str], defer.Deferred],
           provider: str) -> defer.Deferred:
    ds = [defer.maybeDeferred(send_one, p) for p in message.phones]
    d = defer.DeferredList(ds, consumeErrors=True)
    return d.addCallback(lambda results: combine(message, results, provider))


def load_json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
